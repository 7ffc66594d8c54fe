"""A data set of your own, from a folder: images, a labels CSV, and masks or boxes.

Layout (names set in the experiment's `data.folder.<name>` section):

    <root>/labels.csv      image,label[,split]   image = file name under <root>/images (any suffix)
    <root>/images/         PNG, JPEG or DICOM files
    <root>/masks/          PNG masks named like the images (non-zero = finding), for positives; or
    <root>/boxes.csv       image,x,y,width,height in source pixels, one row per box

Without a `split` column the experiment's `data.split` applies (the authors' procedure by default).
The arrays are cached like the Kaggle data sets'.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import io as skio
from tqdm.auto import tqdm

from repro.data.dataset import Dataset, cached, resize_image, resize_mask, source_fingerprint, split_of, to_grey_levels
from repro.data.dicom import read_dicom
from repro.data.ids import check_id
from repro.data.rsna import BOX, box_problem, boxes_to_mask
from repro.data.splits import SPLIT_ALIASES
from repro.data.labels import read_label_csv

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
CACHE_VERSION = 1


def load_folder_dataset(name: str, root, size: int, folder, *, cache_dir, split="paper",
                        progress: bool = True) -> Dataset:
    """Load a folder data set described by `folder` (root, labels, masks | boxes) at `size` px."""
    root = Path(root)
    labels_path = root / folder.labels
    table = read_label_csv(labels_path, ["image", "label"])
    image_dir = root / "images"
    files = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES} \
        if image_dir.is_dir() else {}
    ids, paths, labels = [], [], []
    for image, label, row in zip(table["image"], table["label"], table["row"]):
        where = f"{labels_path}: row {row}"
        image_id = check_id(Path(image).stem, where=where)
        if image_id not in files:
            raise FileNotFoundError(f"{where}: no image {image_id}.png/.jpg/.dcm under {image_dir}")
        if label not in ("0", "1"):
            raise ValueError(f"{where}: label {label!r} must be 0 or 1")
        ids.append(image_id)
        paths.append(files[image_id])
        labels.append(int(label))
    if len(set(ids)) != len(ids):
        raise ValueError(f"{labels_path}: an image is listed twice")
    boxes = _read_boxes(root / folder.boxes, set(ids)) if folder.boxes else None
    truth_files = [labels_path] + ([root / folder.boxes] if folder.boxes else [])
    mask_paths = []
    if folder.masks:
        mask_dir = root / folder.masks
        masks = {p.stem: p for p in mask_dir.glob("*.png")} if mask_dir.is_dir() else {}
        for image_id, label in zip(ids, labels):
            if label and image_id not in masks:
                raise FileNotFoundError(f"{labels_path}: positive image {image_id} has no mask {mask_dir / image_id}.png")
        mask_paths = [masks[i] for i in ids if i in masks]
    if "split" in table.columns:
        split = _split_column(table, labels_path, ids)
    fingerprint = source_fingerprint([CACHE_VERSION, "folder", name, int(size)], root, truth_files,
                                     paths + mask_paths, split if not isinstance(split, dict) else "paper")

    def build() -> Dataset:
        images = np.zeros((len(ids), size, size), dtype=np.uint16)
        masks_out = np.zeros((len(ids), size, size), dtype=bool)
        for i, path in enumerate(tqdm(paths, desc=f"decoding {name} images", disable=None if progress else True)):
            pixels = _read_image(path)
            images[i] = to_grey_levels(resize_image(pixels, size))
            if folder.masks and labels[i]:
                mask = _read_image(root / folder.masks / f"{ids[i]}.png") > 0
                if mask.shape != pixels.shape:
                    raise ValueError(f"{root / folder.masks / ids[i]}.png: mask is {mask.shape}, image {pixels.shape}")
                masks_out[i] = resize_mask(mask, size)
            elif boxes is not None:
                masks_out[i] = boxes_to_mask(boxes.get(ids[i], ()), pixels.shape, size, where=f"image {ids[i]}")
        if isinstance(split, dict):
            splits = np.array([split[i][0] for i in ids])
            rank = np.array([split[i][1] for i in ids], dtype=np.int32)
        else:
            splits, rank = split_of(ids, split)
        return Dataset(name=name, size=size, ids=np.array(ids), labels=np.array(labels, dtype=np.int8),
                       splits=splits, split_rank=rank, images=images, masks=masks_out, fingerprint=fingerprint)

    return cached(Path(cache_dir), name, size, fingerprint, build)


def _read_image(path: Path) -> np.ndarray:
    """float (H, W) in [0, 1] for DICOM / PNG / JPEG (colour is averaged to grey)."""
    if path.suffix.lower() == ".dcm":
        return read_dicom(path)
    try:
        image = skio.imread(path)
    except Exception as err:
        raise ValueError(f"{path}: cannot read image ({' '.join(str(err).split())})") from None
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1)
    top = 65535.0 if image.dtype == np.uint16 else 255.0 if image.dtype == np.uint8 else max(float(image.max()), 1.0)
    return image.astype(np.float64) / top


def _read_boxes(path: Path, ids: set[str]) -> dict[str, list[tuple[float, float, float, float]]]:
    table = read_label_csv(path, ["image", "x", "y", "width", "height"])
    boxes: dict[str, list] = {}
    for _, row in table.iterrows():
        image_id = Path(row["image"]).stem
        if image_id not in ids:
            raise ValueError(f"{path}: row {row['row']}: image {image_id} is not in the labels file")
        try:
            box = tuple(float(row[k]) for k in BOX)
        except ValueError:
            raise ValueError(f"{path}: row {row['row']}: x, y, width, height must be numbers") from None
        problem = box_problem(box)
        if problem:
            raise ValueError(f"{path}: row {row['row']}: the box ({', '.join(f'{k}={row[k]}' for k in BOX)}) {problem}")
        boxes.setdefault(image_id, []).append(box)
    return boxes


def _split_column(table, path: Path, ids: list[str]) -> dict[str, tuple[str, int]]:
    split, counts = {}, {}
    for image_id, value, row in zip(ids, table["split"], table["row"]):
        name = SPLIT_ALIASES.get(value.lower())
        if name is None:
            raise ValueError(f"{path}: row {row}: split {value!r} is not one of train, val, test")
        split[image_id] = (name, counts.get(name, 0))
        counts[name] = counts.get(name, 0) + 1
    return split
