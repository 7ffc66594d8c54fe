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
    assert read_split_csv(path, ["a", "b", "c"]) == {"train": ["a"], "val": ["b"], "test": ["c"]}
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


def test_the_authors_split_files_read_as_they_are(tmp_path):
    """As the released pneumonia_splits.csv / pneumothorax_splits.csv: pandas' unnamed index
    column, RSNA ids with a .png suffix, SIIM ids that are dotted UIDs (only a real image suffix
    is stripped from them)."""
    rsna = tmp_path / "pneumonia_splits.csv"
    rsna.write_text(",Image_ID,Split\n0,0004cfab-14fd.png,train\n1,00313ee0-9eaa.png,valid\n"
                    "2,00322d4d-1c29.png,test\n")
    assert read_split_csv(rsna, ["0004cfab-14fd", "00313ee0-9eaa", "00322d4d-1c29"]) == {
        "train": ["0004cfab-14fd"], "val": ["00313ee0-9eaa"], "test": ["00322d4d-1c29"]}
    uids = ["1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090",
            "1.2.276.0.7230010.3.1.4.8323329.12743.1517875241.599591"]
    siim = tmp_path / "pneumothorax_splits.csv"
    siim.write_text(f",Image_ID,Split\n0,{uids[0]}.dcm,train\n1,{uids[1]},test\n")
    assert read_split_csv(siim, uids) == {"train": [uids[0]], "val": [], "test": [uids[1]]}
    with pytest.raises(ValueError, match="have no split"):       # a UID is never cut at its dots
        read_split_csv(siim, [u.rsplit(".", 1)[0] for u in uids])
    with pytest.raises(ValueError, match="no split"):
        read_split_csv(rsna, ["0004cfab-14fd", "00313ee0-9eaa", "00322d4d-1c29", "unknown"])
