"""RSNA Pneumonia Detection: the Kaggle folder layout and the box-to-mask rule.

Layout: stage_2_train_images/<patientId>.dcm, stage_2_train_labels.csv (patientId, x, y, width,
height, Target; one row per box, Target=0 rows have empty boxes) and stage_2_detailed_class_info.csv
(patientId, class). The paper kept "Normal" and "Lung Opacity" and dropped the
"No Lung Opacity / Not Normal" class (docs/protocol.md, Data). A patient with Target=1 boxes and
a "Not Normal" class row is kept as positive, with a warning naming the rows of both files; a
Target=0 row with a box is refused.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repro.data.ids import check_id
from repro.data.labels import read_label_csv

log = logging.getLogger(__name__)

NOT_NORMAL = "No Lung Opacity / Not Normal"
LABELS_CSV = "stage_2_train_labels.csv"
CLASS_CSV = "stage_2_detailed_class_info.csv"
IMAGE_DIR = "stage_2_train_images"
BOX = ("x", "y", "width", "height")      # a box's columns, in both the labels file and a folder's boxes.csv


@dataclass(frozen=True)
class RsnaRecord:
    image_id: str            # the patientId
    dicom_path: Path
    label: int
    boxes: tuple[tuple[float, float, float, float], ...]  # (x, y, width, height) in source pixels
    csv_rows: tuple[int, ...]                               # 1-based data rows of the labels CSV


def load_rsna_records(root: str | Path, *, drop_not_normal: bool = True,
                      missing: list[str] | None = None) -> list[RsnaRecord]:
    """One record per patientId of the labels CSV, in order of first appearance. A patient without
    a DICOM is an error, or, when a `missing` list is given, appended to it and left out."""
    root = Path(root)
    labels_path, class_path, image_dir = root / LABELS_CSV, root / CLASS_CSV, root / IMAGE_DIR
    labels = read_label_csv(labels_path, ["patientId", "x", "y", "width", "height", "Target"])
    classes = read_label_csv(class_path, ["patientId", "class"]) if class_path.is_file() else None
    if drop_not_normal and classes is None:
        raise FileNotFoundError(f"{class_path} is needed to drop the '{NOT_NORMAL}' class "
                                "(or keep it with drop_not_normal=False)")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"RSNA image folder not found: {image_dir}")
    not_normal: dict[str, list[int]] = {}   # patientId -> its "Not Normal" rows of the class file
    if classes is not None:
        for patient_id, row in classes.loc[classes["class"] == NOT_NORMAL, ["patientId", "row"]].itertuples(index=False):
            not_normal.setdefault(patient_id, []).append(int(row))
        unclassified = [p for p in labels["patientId"].unique() if p not in set(classes["patientId"])]
        if unclassified:
            raise ValueError(f"{class_path.name}: {len(unclassified)} patientId(s) of {labels_path.name} have "
                             f"no class row, e.g. {unclassified[:3]}; the two files must list the same patients")

    records = []
    for patient_id, rows in labels.groupby("patientId", sort=False):
        check_id(patient_id, where=f"{labels_path.name}: row {rows['row'].iloc[0]}")
        targets = set(rows["Target"])
        if not targets <= {"0", "1"} or len(targets) != 1:
            raise ValueError(f"{labels_path.name}: patientId {patient_id} has Target values "
                             f"{sorted(targets)} (rows {list(rows['row'])}); expected all 0 or all 1")
        label = int(targets.pop())
        if label:
            boxes = tuple(_parse_box(row, labels_path.name) for _, row in rows.iterrows())
        else:
            _check_no_box(rows, labels_path.name)
            boxes = ()
        if drop_not_normal and patient_id in not_normal:
            if not label:
                continue
            # A box outranks a class row: the patient is kept as positive, and the user is told.
            log.warning("patientId %s: %s row(s) %s say '%s', %s row(s) %s give Target=1 boxes; kept as positive",
                        patient_id, class_path.name, _rows(not_normal[patient_id]), NOT_NORMAL, labels_path.name,
                        _rows(rows["row"]))
        dicom_path = image_dir / f"{patient_id}.dcm"
        if not dicom_path.is_file():
            message = (f"{labels_path.name}: patientId {patient_id} (row {rows['row'].iloc[0]}) "
                       f"has no DICOM at {dicom_path}")
            if missing is None:
                raise FileNotFoundError(message)
            missing.append(message)
            continue
        records.append(RsnaRecord(patient_id, dicom_path, label, boxes, tuple(int(r) for r in rows["row"])))
    return records


def boxes_to_mask(boxes, source_size: tuple[int, int], size: int, *, where: str = "") -> np.ndarray:
    """Fill boxes into a (size, size) mask with the authors' rule.

    The corners are first truncated to whole source pixels, int(x) and int(x + width), then
    rescaled as int(size * (c / 1023)) for a 1024-pixel source, i.e. with the source's last index
    as the divisor, and filled with inclusive ends: mask[y0:y1 + 1, x0:x1 + 1] = True
    (create_maps_rsna.py L194-197 and L274-277; docs/protocol.md). Boxes reaching outside the
    image are clipped with a warning.
    """
    height, width = source_size
    mask = np.zeros((size, size), dtype=bool)
    for x, y, w, h in boxes:
        x1, y1 = x + w, y + h
        clipped = (max(x, 0.0), max(y, 0.0), min(x1, width - 1.0), min(y1, height - 1.0))
        if clipped != (x, y, x1, y1):
            log.warning("%sbox (x=%s, y=%s, w=%s, h=%s) reaches outside the %dx%d image: clipped",
                        f"{where}: " if where else "", x, y, w, h, width, height)
        cx0, cy0, cx1, cy1 = clipped
        if cx1 < cx0 or cy1 < cy0:
            continue  # entirely outside
        c0, c1 = (int(size * (int(c) / (width - 1))) for c in (cx0, cx1))
        r0, r1 = (int(size * (int(c) / (height - 1))) for c in (cy0, cy1))
        mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask


def _parse_box(row: pd.Series, csv_name: str) -> tuple[float, float, float, float]:
    where = f"{csv_name}: row {row['row']} (patientId {row['patientId']})"
    try:
        box = tuple(float(row[k]) for k in BOX)
    except ValueError:
        raise ValueError(f"{where}: Target=1 but the box is missing or not numeric ({_cells(row)})") from None
    problem = box_problem(box)
    if problem:
        raise ValueError(f"{where}: Target=1 but the box ({_cells(row)}) {problem}")
    return box


def box_problem(box: tuple[float, float, float, float]) -> str | None:
    """Why a box (x, y, width, height) cannot be drawn, or None: every value must be a finite
    number, width and height positive (a box reaching outside the image is clipped instead)."""
    if not all(math.isfinite(v) for v in box):
        return "has a value that is not a finite number"
    if box[2] <= 0 or box[3] <= 0:
        return "has no positive width and height"
    return None


def _check_no_box(rows: pd.DataFrame, csv_name: str) -> None:
    """A Target=0 row has empty box cells (as every such row of the competition's file): one with a
    box contradicts itself (is the patient positive or not?) and is refused."""
    for _, row in rows.iterrows():
        if any(row[k] for k in BOX):
            raise ValueError(f"{csv_name}: row {row['row']} (patientId {row['patientId']}): Target=0 but the row "
                             f"has a box ({_cells(row)}); a row without pneumonia leaves x, y, width, height empty")


def _cells(row: pd.Series) -> str:
    return ", ".join(f"{k}={row[k]!r}" for k in BOX)


def _rows(rows) -> str:
    return ", ".join(str(int(r)) for r in rows)
