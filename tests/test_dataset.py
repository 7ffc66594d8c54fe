import os

import numpy as np
import pytest

import repro.data.dataset as dataset_module
from repro.data.dataset import load_dataset
from repro.data.contents import format_summary, summarize


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    original = dataset_module.read_dicom

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(dataset_module, "read_dicom", counting)
    return calls


def test_siim_arrays(siim_root, tmp_path):
    root, masks = siim_root
    data = load_dataset("siim", root, 64, cache_dir=tmp_path / "cache", progress=False)
    assert list(data.ids) == ["img0", "img1", "img2", "img3"]
    assert data.images.dtype == np.uint16 and data.images.shape == (4, 64, 64)
    np.testing.assert_array_equal(data.masks[3], masks["img3"])
    assert list(data.labels) == [0, 0, 1, 1]
    assert set(data.splits) <= {"train", "val", "test"}
    inputs = data.model_inputs([2])
    assert inputs.shape == (1, 64, 64, 3) and inputs.dtype == np.float32
    assert inputs.max() <= 255 and np.array_equal(inputs[..., 0], inputs[..., 2])


def test_downsampled_mask_keeps_majority_pixels(siim_root, tmp_path):
    root, masks = siim_root
    data = load_dataset("siim", root, 32, cache_dir=tmp_path / "cache", progress=False)
    expected = masks["img2"].reshape(32, 2, 32, 2).mean(axis=(1, 3)) >= 0.5
    np.testing.assert_array_equal(data.masks[2], expected)


def test_cache_reused_then_invalidated(siim_root, tmp_path, count_decodes):
    root, _ = siim_root
    cache = tmp_path / "cache"
    first = load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    assert len(count_decodes) == 4
    second = load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    assert len(count_decodes) == 4  # no DICOM decoded again
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.splits, second.splits)
    assert len(list(cache.glob("*.npz"))) == 1

    csv = root / "train-rle.csv"
    csv.write_text(csv.read_text().replace("img1, -1", "img1, 0 10"))
    changed = load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    assert len(count_decodes) == 8
    assert changed.labels[1] == 1 and changed.masks[1].sum() == 10
    assert len(list(cache.glob("*.npz"))) == 1  # the stale cache is removed

    load_dataset("siim", root, 32, cache_dir=cache, progress=False)  # another size: another cache
    assert len(list(cache.glob("*.npz"))) == 2


def test_cache_invalidated_by_changed_dicom(siim_root, tmp_path, count_decodes):
    from repro.data.dicom import write_dicom
    root, _ = siim_root
    cache = tmp_path / "cache"
    load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    path = next(root.rglob("img0.dcm"))
    white = np.ones((64, 64))
    white[0, 0] = 0.0        # one dark pixel: a constant image is refused (test_dicom.py)
    write_dicom(path, white)
    reloaded = load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    assert len(count_decodes) == 8 and (reloaded.images[0] == 65535).sum() == 64 * 64 - 1


def test_no_temporary_files_left(siim_root, tmp_path):
    root, _ = siim_root
    cache = tmp_path / "cache"
    load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert next(cache.iterdir()).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_rsna_arrays_and_split_csv(rsna_root, tmp_path):
    split_csv = tmp_path / "split.csv"
    split_csv.write_text("Image_ID,Split\np0,train\np2,train\np3,val\np4,test\n")
    data = load_dataset("rsna", rsna_root, 32, cache_dir=tmp_path / "cache", split=split_csv,
                        progress=False)
    assert list(data.ids) == ["p0", "p2", "p3", "p4"]
    assert list(data.splits) == ["train", "train", "val", "test"]
    assert data.masks[2].all()           # the whole-image box
    assert not data.masks[0].any()
    # (1, 2, 3, 4) -> columns 0..2, rows 1..3; (40, 40, 10, 10) -> 20..25 both ways: int(32 * c / 63)
    assert data.masks[3].sum() == 3 * 3 + 6 * 6


def test_summary(rsna_root, tmp_path):
    data = load_dataset("rsna", rsna_root, 32, cache_dir=tmp_path / "cache", progress=False)
    summary = summarize(data)
    assert summary["images"] == 4 and summary["positive"] == 3
    assert summary["prevalence"] == pytest.approx(0.75)
    assert sum(s["images"] for s in summary["splits"].values()) == 4
    assert summary["mask_area"]["max"] == pytest.approx(1.0)
    assert "rsna: 4 images at 32 px, 3 positive (75.0%)" in format_summary(summary)


def test_bad_arguments(siim_root, tmp_path):
    root, _ = siim_root
    with pytest.raises(ValueError, match="unknown data set 'chexpert'"):
        load_dataset("chexpert", root, 64, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="at least 32"):
        load_dataset("siim", root, 8, cache_dir=tmp_path)


def test_split_list_follows_the_split_files_order(rsna_root, tmp_path):
    split_csv = tmp_path / "split.csv"
    split_csv.write_text(",Image_ID,Split\n0,p3.dcm,test\n1,p0,test\n2,p2,train\n3,p4,test\n")
    data = load_dataset("rsna", rsna_root, 32, cache_dir=tmp_path / "cache", split=split_csv, progress=False)
    assert list(data.ids[data.split_list("test")]) == ["p3", "p0", "p4"]
    assert list(data.ids[data.split_list("train")]) == ["p2"]


def test_damaged_cache_is_rebuilt(siim_root, tmp_path, count_decodes, caplog):
    root, _ = siim_root
    cache = tmp_path / "cache"
    first = load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    again = load_dataset("siim", root, 64, cache_dir=cache, progress=False)
    assert len(count_decodes) == 8 and "damaged cache" in caplog.text
    np.testing.assert_array_equal(first.images, again.images)
    assert again.fingerprint == first.fingerprint != ""


def test_twelve_bit_radiograph_keeps_its_grey_levels(tmp_path):
    """A 16-bit DICOM using 12 bits keeps ~4096 levels through the uint16 cache, not 15."""
    from repro.data.dicom import read_dicom, write_dicom
    ramp = np.tile(np.linspace(0, 1, 512), (8, 1))
    path = write_dicom(tmp_path / "ramp.dcm", ramp, bits=12)
    image = read_dicom(path)
    assert len(np.unique(image)) > 500
    assert image.min() == 0.0 and image.max() == 1.0


def test_signed_sixteen_bit_radiograph_keeps_its_grey_levels(tmp_path):
    """Signed 16-bit data (PixelRepresentation 1, values around zero) is read over its own range,
    not squeezed into 8 levels, and keeps its levels through the 16-bit cache."""
    import pydicom

    from repro.data.dataset import to_grey_levels
    from repro.data.dicom import read_dicom, write_dicom
    path = write_dicom(tmp_path / "signed.dcm", np.zeros((8, 512)), bits=16)
    ds = pydicom.dcmread(path)
    values = np.tile(np.linspace(-2000, 2000, 512).round().astype(np.int16), (8, 1))
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
    ds.PixelData = values.tobytes()
    ds.save_as(path)
    image = read_dicom(path)
    assert len(np.unique(image)) == 512 and image.min() == 0.0 and image.max() == 1.0
    np.testing.assert_array_equal(np.argsort(image[0], kind="stable"), np.arange(512))   # order kept
    assert len(np.unique(to_grey_levels(image))) == 512


def test_decoding_on_several_processes_gives_the_same_arrays(tmp_path, monkeypatch):
    """The paper's 25,538 DICOMs are decoded on every core (repro.data.dataset.PARALLEL_FROM); the
    arrays are those of one process, row for row."""
    from repro.data.phantoms import PhantomConfig, make_phantoms
    roots = make_phantoms(tmp_path / "data", 10, 0, config=PhantomConfig(size=96, rsna_prevalence=0.5), progress=False)
    one = load_dataset("rsna", roots["rsna"], 64, cache_dir=tmp_path / "a", processes=1, progress=False)
    monkeypatch.setattr(dataset_module, "CHUNK", 3)      # several chunks, on two processes
    two = load_dataset("rsna", roots["rsna"], 64, cache_dir=tmp_path / "b", processes=2, progress=False)
    for field in ("ids", "labels", "splits", "images", "masks", "evidence", "confounder"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field), err_msg=field)
    assert one.masks.any() and one.evidence.any()
