"""Train / validation / test splits.

The paper's 81/9/10 split is made as the authors' code did: scikit-learn's
train_test_split(test_size=0.1, random_state=1) twice (first test off the whole list, then
validation off the rest), unstratified, over the image ids in the label CSV's order. For the
10,675 SIIM ids that gives 8646/961/1068, the paper's counts. For the 14,863 RSNA ids it gives
12038/1338/1487 where the paper reports 12039/1338/1486: the paper's RSNA split was made some
other way that is not published.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from repro.data.labels import read_label_csv

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}


def paper_split_lists(ids, *, test_size: float = 0.1, val_size: float = 0.1,
                      random_state: int = 1) -> dict[str, list[str]]:
    """The authors' split: {"train": [...], "val": [...], "test": [...]}, each list in the order
    train_test_split returned it (the authors' later sampling walks the test list in that order).
    `val_size` is a fraction of what remains after the test images are taken off."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("paper_split: ids must be unique")
    if len(ids) < 3:
        raise ValueError(f"paper_split: need at least 3 ids to make three splits, got {len(ids)}")
    train_val, test = train_test_split(ids, test_size=test_size, random_state=random_state)
    train, val = train_test_split(train_val, test_size=val_size, random_state=random_state)
    return {"train": list(train), "val": list(val), "test": list(test)}


def paper_split(ids, **kwargs) -> dict[str, str]:
    """Map each id to "train", "val" or "test" as the authors' code split it."""
    lists = paper_split_lists(ids, **kwargs)
    return {i: name for name, members in lists.items() for i in members}


def read_split_csv(path: str | Path, ids) -> dict[str, list[str]]:
    """An explicit split: a CSV with columns Image_ID and Split (train / val / test), in row order.

    Every id of the data set must be listed exactly once; ids the CSV lists but the data set lacks
    are an error too, since they mean the CSV belongs to another data set. A leading unnamed index
    column (pandas' to_csv default) is ignored and a file suffix on Image_ID (.dcm, .png, .jpg) is
    dropped, so the authors' own split files read as they are.
    """
    path = Path(path)
    table = read_label_csv(path, ["Image_ID", "Split"])
    lists: dict[str, list[str]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    for image_id, value, row in zip(table["Image_ID"], table["Split"], table["row"]):
        image_id = re.sub(r"\.(dcm|png|jpe?g)$", "", image_id, flags=re.IGNORECASE)
        name = SPLIT_ALIASES.get(value.lower())
        if name is None:
            raise ValueError(f"{path}: row {row}: Split {value!r} is not one of train, val, test")
        if image_id in seen:
            raise ValueError(f"{path}: row {row}: Image_ID {image_id} is listed twice")
        seen.add(image_id)
        lists[name].append(image_id)
    ids = list(ids)
    missing = [i for i in ids if i not in seen]
    extra = sorted(seen - set(ids))
    if missing:
        raise ValueError(f"{path}: {len(missing)} image id(s) of the data set have no split, "
                         f"e.g. {missing[:3]}")
    if extra:
        raise ValueError(f"{path}: {len(extra)} Image_ID(s) are not in the data set, e.g. {extra[:3]}")
    return lists


def split_counts(splits: np.ndarray) -> dict[str, int]:
    return {name: int(np.sum(splits == name)) for name in SPLITS}
