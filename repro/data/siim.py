"""SIIM-ACR Pneumothorax: the competition's run-length encoding and the Kaggle folder layout.

Layout: DICOMs anywhere under the image folder (dicom-images-train/<study>/<series>/<ImageId>.dcm),
and train-rle.csv with columns ImageId, EncodedPixels (the original header is "ImageId, EncodedPixels"
with a leading space). "-1" means no pneumothorax; several rows for one ImageId are united.

The RLE is the competition's own (mask_functions.py in the competition kit): pairs (start, length)
where each start is RELATIVE to the end of the previous run, over the image flattened in
column-major order. Hand-written because no maintained library implements this variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.data.ids import check_id
from repro.data.labels import read_label_csv


class RLEError(ValueError):
    """Malformed run-length encoding; the message names the ImageId and CSV row when known."""


def rle_decode(rle: str, height: int, width: int, *, where: str = "") -> np.ndarray:
    """Decode one competition RLE string into a bool mask of shape (height, width).

    "-1" (or an empty string) decodes to an all-False mask. `where` prefixes error messages
    (the loader passes "ImageId X, row N").
    """
    prefix = f"{where}: " if where else ""
    text = str(rle).strip()
    mask = np.zeros(height * width, dtype=bool)
    if text in ("-1", ""):
        return mask.reshape(height, width)
    _check_rle_syntax(text, where=where or "RLE")
    numbers = np.array([int(token) for token in text.split()], dtype=np.int64)
    starts, lengths = numbers[0::2], numbers[1::2]
    ends = np.cumsum(starts + lengths)  # each start counts from the end of the previous run
    begins = ends - lengths
    if ends.size and ends[-1] > mask.size:
        raise RLEError(f"{prefix}RLE runs past the end of the {height}x{width} image "
                       f"(to pixel {ends[-1]} of {mask.size})")
    for begin, end in zip(begins, ends):
        mask[begin:end] = True
    # Column-major: the flat index walks down columns first.
    return mask.reshape(width, height).T


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask in the competition RLE; an empty mask gives "-1"."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode: expected a 2-D mask, got shape {mask.shape}")
    flat = mask.astype(bool).T.ravel()
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    if changes.size == 0:
        return "-1"
    begins, ends = changes[0::2], changes[1::2]
    previous_ends = np.concatenate([[0], ends[:-1]])
    pairs = np.stack([begins - previous_ends, ends - begins], axis=1).ravel()
    return " ".join(str(int(v)) for v in pairs)


@dataclass(frozen=True)
class SiimRecord:
    image_id: str
    dicom_path: Path
    label: int
    rles: tuple[str, ...]    # every non-empty RLE row for this image
    csv_rows: tuple[int, ...]  # 1-based data row numbers in train-rle.csv (header = row 0)


def find_dicoms(image_dir: str | Path) -> dict[str, Path]:
    """Map file stem -> path for every .dcm (or .DCM) under image_dir (the Kaggle folders nest them)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    found: dict[str, Path] = {}
    for path in sorted(p for p in image_dir.rglob("*") if p.suffix.lower() == ".dcm" and p.is_file()):
        if path.stem in found:
            raise ValueError(f"two DICOMs share the id {path.stem!r}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def load_siim_records(root: str | Path, *, csv_name: str = "train-rle.csv",
                      image_dir: str = "dicom-images-train", dicoms: dict[str, Path] | None = None,
                      missing: list[str] | None = None) -> list[SiimRecord]:
    """One record per ImageId of train-rle.csv, in the CSV's order of first appearance.

    The RLE syntax (integers, even count, no negatives) is checked now so that a bad row fails
    early; runs past the image end are caught when the mask is decoded at the DICOM's size.
    `dicoms` is find_dicoms' answer when the caller has it already; an ImageId without a DICOM is
    an error, or, when a `missing` list is given, appended to it (one line each) and left out.
    """
    root = Path(root)
    csv_path = root / csv_name
    table = read_label_csv(csv_path, ["ImageId", "EncodedPixels"])
    if dicoms is None:
        dicoms = find_dicoms(root / image_dir)
    records = []
    for image_id, rows in table.groupby("ImageId", sort=False):
        check_id(image_id, where=f"{csv_path.name}: row {rows['row'].iloc[0]}")
        if image_id not in dicoms:
            message = f"{csv_path}: ImageId {image_id} (row {rows['row'].iloc[0]}) has no DICOM under {root / image_dir}"
            if missing is None:
                raise FileNotFoundError(message)
            missing.append(message)
            continue
        rles, row_numbers, negative_rows = [], [], []
        for rle, row in zip(rows["EncodedPixels"], rows["row"]):
            where = f"{csv_path.name}: ImageId {image_id}, row {row}"
            if rle == "":
                raise RLEError(f"{where}: EncodedPixels is empty; write -1 for an image without pneumothorax")
            if rle == "-1":
                negative_rows.append(int(row))
                continue
            _check_rle_syntax(rle, where=where)
            rles.append(rle)
            row_numbers.append(int(row))
        if rles and negative_rows:
            raise RLEError(f"{csv_path.name}: ImageId {image_id} has both a -1 row (row {negative_rows[0]}) "
                           f"and mask rows (row {row_numbers[0]}); an image is either negative or positive")
        records.append(SiimRecord(image_id, dicoms[image_id], int(bool(rles)), tuple(rles),
                                  tuple(row_numbers) or (int(rows['row'].iloc[0]),)))
    return records


def decode_record_mask(record: SiimRecord, height: int, width: int) -> np.ndarray:
    """Union of all RLE rows of one record at the DICOM's resolution."""
    mask = np.zeros((height, width), dtype=bool)
    for rle, row in zip(record.rles, record.csv_rows):
        mask |= rle_decode(rle, height, width, where=f"ImageId {record.image_id}, row {row}")
    return mask


# A 1024x1024 image has 2**20 pixels; any start or length beyond 2**40 is a damaged row, and
# refusing it here keeps the int64 running sum of starts far from overflow.
_MAX_RLE_VALUE = 2 ** 40


def _check_rle_syntax(rle: str, *, where: str) -> None:
    tokens = rle.split()
    if not all(t.lstrip("-").isdigit() for t in tokens):
        raise RLEError(f"{where}: RLE has a token that is not an integer")
    if any(len(t) > 13 or int(t) > _MAX_RLE_VALUE for t in tokens):
        raise RLEError(f"{where}: RLE has a value larger than any image (over {_MAX_RLE_VALUE})")
    if len(tokens) % 2:
        raise RLEError(f"{where}: RLE has an odd number of values ({len(tokens)}); expected start/length pairs")
    if any(t.startswith("-") for t in tokens):
        raise RLEError(f"{where}: RLE has negative values")
