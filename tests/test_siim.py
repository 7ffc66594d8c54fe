import numpy as np
import pytest

from repro.data.siim import RLEError, decode_record_mask, load_siim_records, rle_decode, rle_encode


def test_decode_known_answer_column_major():
    # 3x3: flat index k is row k % 3, column k // 3 (column-major).
    mask = rle_decode("1 2", 3, 3)
    expected = np.zeros((3, 3), bool)
    expected[1, 0] = expected[2, 0] = True
    np.testing.assert_array_equal(mask, expected)


def test_decode_starts_are_relative_to_previous_run_end():
    # "0 1 3 1": pixel 0, then 3 after the end of that run (index 1) -> pixel 4 = row 1, column 1.
    mask = rle_decode("0 1 3 1", 3, 3)
    assert set(zip(*np.nonzero(mask))) == {(0, 0), (1, 1)}


def test_decode_non_square_orientation():
    # height 2, width 3: pixels 2 and 3 are the whole of column 1.
    mask = rle_decode("2 2", 2, 3)
    np.testing.assert_array_equal(mask, [[False, True, False], [False, True, False]])


@pytest.mark.parametrize("empty", ["-1", " -1 ", ""])
def test_no_finding(empty):
    assert not rle_decode(empty, 4, 5).any()
    assert rle_decode(empty, 4, 5).shape == (4, 5)


def test_encode_known_answer_and_empty():
    expected = np.zeros((3, 3), bool)
    expected[0, 0] = expected[1, 1] = True
    assert rle_encode(expected) == "0 1 3 1"
    assert rle_encode(np.zeros((5, 5), bool)) == "-1"
    full = np.ones((2, 2), bool)
    assert rle_encode(full) == "0 4"


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(7, 11), (32, 32), (1, 9)]:
        for density in (0.05, 0.5, 0.95):
            mask = rng.random(shape) < density
            np.testing.assert_array_equal(rle_decode(rle_encode(mask), *shape), mask)


@pytest.mark.parametrize("rle, message", [("1 2 3", "odd number"), ("1 -2", "negative"),
                                          ("5 10", "past the end"), ("1 x", "not an integer")])
def test_malformed_rle(rle, message):
    with pytest.raises(RLEError, match=message):
        rle_decode(rle, 3, 3, where="ImageId abc, row 7")
    with pytest.raises(RLEError, match="ImageId abc, row 7"):
        rle_decode(rle, 3, 3, where="ImageId abc, row 7")


def test_loader_unites_rows_and_keeps_csv_order(siim_root):
    root, masks = siim_root
    records = load_siim_records(root)
    assert [r.image_id for r in records] == ["img0", "img1", "img2", "img3"]
    assert [r.label for r in records] == [0, 0, 1, 1]
    assert len(records[3].rles) == 2
    for record in records:
        np.testing.assert_array_equal(decode_record_mask(record, 64, 64), masks[record.image_id])


def test_loader_accepts_header_without_leading_space(siim_root):
    root, _ = siim_root
    csv = root / "train-rle.csv"
    csv.write_text(csv.read_text().replace("ImageId, EncodedPixels", "ImageId,EncodedPixels"))
    assert len(load_siim_records(root)) == 4


def test_loader_bad_row_names_image_and_row(siim_root):
    root, _ = siim_root
    csv = root / "train-rle.csv"
    lines = csv.read_text().splitlines()
    lines[3] = "img2, 1 2 3"  # data row 3
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(RLEError, match=r"ImageId img2, row 3.*odd"):
        load_siim_records(root)


def test_loader_run_past_end_names_image_and_row(siim_root):
    root, _ = siim_root
    csv = root / "train-rle.csv"
    csv.write_text(csv.read_text().replace(csv.read_text().splitlines()[3], "img2, 4000 200"))
    record = load_siim_records(root)[2]
    with pytest.raises(RLEError, match=r"ImageId img2, row 3.*past the end"):
        decode_record_mask(record, 64, 64)


def test_loader_missing_dicom_and_columns(siim_root):
    root, _ = siim_root
    csv = root / "train-rle.csv"
    csv.write_text(csv.read_text() + "ghost, -1\n")
    with pytest.raises(FileNotFoundError, match="ghost"):
        load_siim_records(root)
    csv.write_text("Id,Pixels\nimg0,-1\n")
    with pytest.raises(ValueError, match="missing column"):
        load_siim_records(root)


def _replace_row(root, index, text):
    csv = root / "train-rle.csv"
    lines = csv.read_text().splitlines()
    lines[index] = text
    csv.write_text("\n".join(lines) + "\n")


def test_empty_encoded_pixels_is_an_error_not_a_negative(siim_root):
    root, _ = siim_root
    _replace_row(root, 3, "img2, ")
    with pytest.raises(RLEError, match=r"ImageId img2, row 3: EncodedPixels is empty"):
        load_siim_records(root)


@pytest.mark.parametrize("rle", ["9223372036854775807 5", "99999999999999999999999 1"])
def test_huge_values_are_refused_without_overflow(siim_root, rle):
    root, _ = siim_root
    _replace_row(root, 3, f"img2, {rle}")
    with pytest.raises(RLEError, match=r"ImageId img2, row 3: RLE has a value larger than any image"):
        load_siim_records(root)


def test_negative_row_and_mask_row_for_one_image_is_an_error(siim_root):
    root, _ = siim_root
    csv = root / "train-rle.csv"
    csv.write_text(csv.read_text() + "img2, -1\n")
    with pytest.raises(RLEError, match=r"ImageId img2 has both a -1 row \(row 6\) and mask rows \(row 3\)"):
        load_siim_records(root)


def test_upper_case_dcm_suffix_is_found(siim_root):
    root, _ = siim_root
    path = next(root.rglob("img1.dcm"))
    path.rename(path.with_suffix(".DCM"))
    assert [r.dicom_path.suffix for r in load_siim_records(root)][1] == ".DCM"


@pytest.mark.parametrize("bad_id", ["../etc/passwd", "with space", "a/b"])
def test_ids_that_cannot_be_file_names_are_refused(siim_root, bad_id):
    root, _ = siim_root
    _replace_row(root, 1, f"{bad_id}, -1")
    with pytest.raises(ValueError, match="cannot be used as a file name"):
        load_siim_records(root)
