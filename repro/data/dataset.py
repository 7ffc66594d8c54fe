"""A data set at model resolution: images, masks, labels and splits, cached once per input size.

Both competitions (and the synthetic phantoms, which use the same layouts) load into one
`Dataset`. Decoding a thousand 1024-pixel DICOMs takes minutes, so the decoded, resized arrays
are cached as a compressed .npz per (data set, input size, source fingerprint): a second run
reads the cache, and any change to the label CSVs or the DICOM files (name, size or mtime)
changes the fingerprint and rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.transform import resize
from tqdm.auto import tqdm

from repro.data import rsna, siim
from repro.data.dicom import read_dicom
from repro.data.splits import paper_split, read_split_csv
from repro.data.tables import read_label_csv
from repro.io import write_npz

log = logging.getLogger(__name__)

DATASETS = ("siim", "rsna")
TRUTH_CSV = "phantom-truth.csv"   # written by the phantom generator beside the Kaggle files
CACHE_VERSION = 1                  # bump when the cached arrays' meaning changes


@dataclass
class Dataset:
    """Arrays at model resolution; row i of every array is image ids[i]."""
    name: str
    size: int
    ids: np.ndarray          # (N,) str
    labels: np.ndarray       # (N,) int8, 1 = finding present
    splits: np.ndarray       # (N,) str: train / val / test
    images: np.ndarray       # (N, S, S) uint8, brighter = denser
    masks: np.ndarray        # (N, S, S) bool: SIIM masks or RSNA filled boxes
    evidence: np.ndarray | None = None    # (N, S, S) bool: the phantoms' true evidence region
    confounder: np.ndarray | None = None  # (N,) bool: the phantoms' confounder flag

    def indices(self, split: str | None = None, *, positive: bool | None = None) -> np.ndarray:
        keep = np.ones(len(self.ids), dtype=bool)
        if split is not None:
            keep &= self.splits == split
        if positive is not None:
            keep &= (self.labels == 1) == positive
        return np.flatnonzero(keep)

    def model_inputs(self, indices=None) -> np.ndarray:
        """float32 (n, S, S, 3) in [0, 255]: grayscale copied into 3 channels, as the paper.

        Each model applies its own input scaling (Inception [-1, 1], DenseNet ImageNet mean/std).
        """
        images = self.images if indices is None else self.images[indices]
        return np.repeat(images[..., None].astype(np.float32), 3, axis=-1)


def load_dataset(name: str, root: str | Path, size: int, *, cache_dir: str | Path,
                 split_csv: str | Path | None = None, drop_not_normal: bool = True,
                 progress: bool = True) -> Dataset:
    """Load SIIM or RSNA from its Kaggle layout at `size` x `size`, through the cache."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    if int(size) < 32:
        raise ValueError(f"input size must be at least 32 pixels, got {size}")
    root = Path(root)
    records = (siim.load_siim_records(root) if name == "siim"
               else rsna.load_rsna_records(root, drop_not_normal=drop_not_normal))
    if not records:
        raise ValueError(f"{root}: no images listed in the {name} label file")
    fingerprint = _fingerprint(name, root, size, records, split_csv, drop_not_normal)
    cache_path = Path(cache_dir) / f"{name}-{size}px-{fingerprint[:16]}.npz"
    if cache_path.is_file():
        log.info("reading cached %s arrays from %s", name, cache_path)
        return _read_cache(cache_path)

    _remove_stale(Path(cache_dir), name, size, keep=cache_path)
    dataset = _decode(name, root, size, records, split_csv, progress)
    arrays = {k: v for k, v in vars(dataset).items() if isinstance(v, np.ndarray)}
    write_npz(cache_path, meta=np.array(json.dumps({"name": name, "size": size})), **arrays)
    log.info("cached %s arrays in %s", name, cache_path)
    return dataset


def _decode(name, root, size, records, split_csv, progress) -> Dataset:
    n = len(records)
    ids = np.array([r.image_id for r in records])
    images = np.zeros((n, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    truth = _read_truth(root)
    evidence = np.zeros((n, size, size), dtype=bool) if truth is not None else None
    for i, record in enumerate(tqdm(records, desc=f"decoding {name} DICOMs", disable=None if progress else True)):
        pixels = read_dicom(record.dicom_path)
        images[i] = np.round(_resize(pixels, size) * 255.0).astype(np.uint8)
        if name == "siim":
            masks[i] = _resize_mask(siim.decode_record_mask(record, *pixels.shape), size)
        else:
            masks[i] = rsna.boxes_to_mask(record.boxes, pixels.shape, size,
                                          where=f"patientId {record.image_id}")
        if truth is not None:
            rle = truth["Evidence"].get(ids[i], "-1")
            evidence[i] = _resize_mask(siim.rle_decode(rle, *pixels.shape, where=f"{TRUTH_CSV}: {ids[i]}"), size)
    split = read_split_csv(split_csv, ids) if split_csv else paper_split(ids)
    confounder = None
    if truth is not None:
        confounder = np.array([truth["Confounder"].get(i, "0") == "1" for i in ids])
    return Dataset(name=name, size=size, ids=ids,
                   labels=np.array([r.label for r in records], dtype=np.int8),
                   splits=np.array([split[i] for i in ids]), images=images, masks=masks,
                   evidence=evidence, confounder=confounder)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image
    return resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Area-weighted downsampling, then a pixel is in the mask when at least half of it was."""
    if mask.shape == (size, size):
        return mask
    return _resize(mask.astype(np.float32), size) >= 0.5


def _read_truth(root: Path) -> dict[str, dict[str, str]] | None:
    path = root / TRUTH_CSV
    if not path.is_file():
        return None
    table = read_label_csv(path, ["ImageId", "Evidence", "Confounder"])
    return {column: dict(zip(table["ImageId"], table[column])) for column in ("Evidence", "Confounder")}


def _fingerprint(name, root: Path, size, records, split_csv, drop_not_normal) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, name, int(size), bool(drop_not_normal)]).encode())
    label_files = [root / "train-rle.csv"] if name == "siim" else [root / rsna.LABELS_CSV, root / rsna.CLASS_CSV]
    for path in [*label_files, root / TRUTH_CSV, *([Path(split_csv)] if split_csv else [])]:
        digest.update(str(path.name).encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    for record in records:
        stat = record.dicom_path.stat()
        digest.update(f"{record.dicom_path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read_cache(path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        arrays = {k: stored[k] for k in stored.files if k != "meta"}
    return Dataset(name=meta["name"], size=meta["size"], **arrays)


def _remove_stale(cache_dir: Path, name: str, size: int, *, keep: Path) -> None:
    for old in cache_dir.glob(f"{name}-{size}px-*.npz"):
        if old != keep:
            log.info("source changed: removing stale cache %s", old)
            old.unlink()
