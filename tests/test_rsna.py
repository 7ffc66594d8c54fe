import logging

import numpy as np
import pytest

from repro.data.rsna import boxes_to_mask, load_rsna_records


def test_loader_drops_not_normal_by_default(rsna_root):
    records = load_rsna_records(rsna_root)
    assert [r.image_id for r in records] == ["p0", "p2", "p3", "p4"]
    assert [r.label for r in records] == [0, 1, 1, 1]
    assert records[3].boxes == ((1.0, 2.0, 3.0, 4.0), (40.0, 40.0, 10.0, 10.0))
    kept = load_rsna_records(rsna_root, drop_not_normal=False)
    assert [r.image_id for r in kept] == ["p0", "p1", "p2", "p3", "p4"]


def test_box_rule_known_answer():
    # 1024 source to 256: int(256 * c / 1023) with inclusive ends (the authors' rule).
    mask = boxes_to_mask([(100.0, 200.0, 50.0, 30.0)], (1024, 1024), 256)
    x0, x1 = int(256 * 100 / 1023), int(256 * 150 / 1023)
    y0, y1 = int(256 * 200 / 1023), int(256 * 230 / 1023)
    expected = np.zeros((256, 256), bool)
    expected[y0:y1 + 1, x0:x1 + 1] = True
    np.testing.assert_array_equal(mask, expected)
    assert (x0, x1, y0, y1) == (25, 37, 50, 57)


def test_full_image_box_fills_everything():
    assert boxes_to_mask([(0, 0, 63, 63)], (64, 64), 32).all()


def test_box_outside_is_clipped_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        mask = boxes_to_mask([(50.0, 50.0, 30.0, 30.0)], (64, 64), 64, where="row 9")
    assert "row 9" in caplog.text and "clipped" in caplog.text
    assert mask[50:, 50:].all() and mask.sum() == 14 * 14


def test_target_one_without_box_names_row(rsna_root):
    csv = rsna_root / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text().replace("p2,10,20,15,5,1", "p2,,,,,1"))
    with pytest.raises(ValueError, match=r"row 3 \(patientId p2\).*Target=1 but the box"):
        load_rsna_records(rsna_root)


def test_mixed_targets_rejected(rsna_root):
    csv = rsna_root / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text() + "p3,,,,,0\n")
    with pytest.raises(ValueError, match="patientId p3 has Target values"):
        load_rsna_records(rsna_root)


def test_missing_files(rsna_root):
    (rsna_root / "stage_2_train_images" / "p2.dcm").unlink()
    with pytest.raises(FileNotFoundError, match="p2"):
        load_rsna_records(rsna_root)
    (rsna_root / "stage_2_detailed_class_info.csv").unlink()
    with pytest.raises(FileNotFoundError, match="stage_2_detailed_class_info.csv"):
        load_rsna_records(rsna_root)


def test_fractional_corners_are_truncated_before_rescaling():
    # The authors' rule: int(x) and int(x + w) first, then int(S * (c / 1023)).
    # x = 409.9: truncating first gives int(256 * 409 / 1023) = 102; rescaling the float, 102 too,
    # but x + w = 511.99 gives 127 (truncated) where the float gives int(128.1) = 128.
    mask = boxes_to_mask([(409.9, 0.0, 102.09, 10.0)], (1024, 1024), 256)
    columns = np.flatnonzero(mask.any(axis=0))
    assert (columns[0], columns[-1]) == (102, 127)


def test_target_one_with_not_normal_class_is_kept_with_warning(rsna_root, caplog):
    classes = rsna_root / "stage_2_detailed_class_info.csv"
    classes.write_text(classes.read_text() + "p2,No Lung Opacity / Not Normal\n")
    with caplog.at_level(logging.WARNING):
        records = load_rsna_records(rsna_root)
    assert "p2" in [r.image_id for r in records]
    assert caplog.messages == ["patientId p2: stage_2_detailed_class_info.csv row(s) 7 say 'No Lung Opacity / Not Normal', "
                               "stage_2_train_labels.csv row(s) 3 give Target=1 boxes; kept as positive"]


@pytest.mark.parametrize("drop_not_normal", [True, False])
def test_a_target_zero_row_with_a_box_is_refused_naming_the_row(rsna_root, drop_not_normal):
    csv = rsna_root / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text().replace("p1,,,,,0", "p1,10,20,15,,0"))    # p1 is Not Normal: dropped or kept
    with pytest.raises(ValueError, match=r"^stage_2_train_labels.csv: row 2 \(patientId p1\): Target=0 but the row has a "
                                         r"box \(x='10', y='20', width='15', height=''\); a row without pneumonia leaves "
                                         r"x, y, width, height empty$"):
        load_rsna_records(rsna_root, drop_not_normal=drop_not_normal)


@pytest.mark.parametrize("box", ["nan,20,15,5", "10,20,inf,5", "10,20,-15,5"])
def test_a_target_one_box_that_cannot_be_drawn_is_refused_naming_the_row(rsna_root, box):
    csv = rsna_root / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text().replace("p2,10,20,15,5,1", f"p2,{box},1"))
    with pytest.raises(ValueError, match=r"^stage_2_train_labels.csv: row 3 \(patientId p2\): Target=1 but the box "
                                         r"\(x=.*\) has (a value that is not a finite number|no positive width and height)$"):
        load_rsna_records(rsna_root)


def test_patient_without_class_row_is_an_error(rsna_root):
    classes = rsna_root / "stage_2_detailed_class_info.csv"
    classes.write_text("\n".join(line for line in classes.read_text().splitlines() if not line.startswith("p3")) + "\n")
    with pytest.raises(ValueError, match=r"no class row, e.g. \['p3'\]"):
        load_rsna_records(rsna_root)


def test_id_escaping_the_root_is_refused(rsna_root):
    csv = rsna_root / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text().replace("p0,,,,,0", "../p0,,,,,0"))
    classes = rsna_root / "stage_2_detailed_class_info.csv"
    classes.write_text(classes.read_text().replace("p0,Normal", "../p0,Normal"))
    with pytest.raises(ValueError, match=r"row 1: image id '../p0' cannot be used as a file name"):
        load_rsna_records(rsna_root, drop_not_normal=False)
