"""Train / validation / test splits.

The paper's 81/9/10 split is made as the authors' code did: scikit-learn's
train_test_split(test_size=0.1, random_state=1) twice (first test off the whole list, then
validation off the rest), unstratified, over the image ids in the label CSV's order. For the
10,675 SIIM ids that gives 8646/961/1068, the paper's counts. For the 14,863 RSNA ids it gives
12038/1338/1487 where the paper reports 12039/1338/1486: the paper's RSNA split was made some
other way that is not published.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from repro.data.tables import read_label_csv

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}


def paper_split(ids, *, test_size: float = 0.1, random_state: int = 1) -> dict[str, str]:
    """Map each id to "train", "val" or "test" as the authors' code split it."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("paper_split: ids must be unique")
    if len(ids) < 3:
        raise ValueError(f"paper_split: need at least 3 ids to make three splits, got {len(ids)}")
    train_val, test = train_test_split(ids, test_size=test_size, random_state=random_state)
    train, val = train_test_split(train_val, test_size=test_size, random_state=random_state)
    split = {i: "train" for i in train}
    split.update({i: "val" for i in val})
    split.update({i: "test" for i in test})
    return split


def read_split_csv(path: str | Path, ids) -> dict[str, str]:
    """An explicit split: a CSV with columns Image_ID and Split (train / val / test).

    Every id of the data set must be listed exactly once; ids the CSV lists but the data set lacks
    are an error too, since they mean the CSV belongs to another data set.
    """
    path = Path(path)
    table = read_label_csv(path, ["Image_ID", "Split"])
    split: dict[str, str] = {}
    for image_id, value, row in zip(table["Image_ID"], table["Split"], table["row"]):
        name = _SPLIT_ALIASES.get(value.lower())
        if name is None:
            raise ValueError(f"{path}: row {row}: Split {value!r} is not one of train, val, test")
        if image_id in split:
            raise ValueError(f"{path}: row {row}: Image_ID {image_id} is listed twice")
        split[image_id] = name
    ids = list(ids)
    missing = [i for i in ids if i not in split]
    extra = sorted(set(split) - set(ids))
    if missing:
        raise ValueError(f"{path}: {len(missing)} image id(s) of the data set have no split, "
                         f"e.g. {missing[:3]}")
    if extra:
        raise ValueError(f"{path}: {len(extra)} Image_ID(s) are not in the data set, e.g. {extra[:3]}")
    return {i: split[i] for i in ids}


def split_counts(splits: np.ndarray) -> dict[str, int]:
    return {name: int(np.sum(splits == name)) for name in SPLITS}
