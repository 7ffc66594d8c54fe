import numpy as np
import pytest

from repro.data.splits import paper_split, read_split_csv, split_counts


@pytest.mark.parametrize("n, expected", [(10675, (8646, 961, 1068)),   # SIIM: the paper's counts
                                         (14863, (12038, 1338, 1487))])  # RSNA: the paper has 12039/1338/1486
def test_paper_split_counts(n, expected):
    split = paper_split([f"id{i}" for i in range(n)])
    counts = split_counts(np.array(list(split.values())))
    assert (counts["train"], counts["val"], counts["test"]) == expected


def test_paper_split_is_deterministic_and_order_dependent():
    ids = [f"id{i}" for i in range(100)]
    assert paper_split(ids) == paper_split(ids)
    assert paper_split(ids) != paper_split(ids[::-1])


def test_split_csv(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("Image_ID,Split\na,train\nb,Validation\nc,test\n")
    assert read_split_csv(path, ["a", "b", "c"]) == {"a": "train", "b": "val", "c": "test"}
    with pytest.raises(ValueError, match="1 image id.*no split"):
        read_split_csv(path, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="not in the data set"):
        read_split_csv(path, ["a", "b"])
    path.write_text("Image_ID,Split\na,train\nb,holdout\n")
    with pytest.raises(ValueError, match="row 2: Split 'holdout'"):
        read_split_csv(path, ["a", "b"])
    path.write_text("Image_ID,Split\na,train\na,test\n")
    with pytest.raises(ValueError, match="row 2: Image_ID a is listed twice"):
        read_split_csv(path, ["a"])
