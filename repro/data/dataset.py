"""A data set at model resolution: images, masks, labels and splits, cached once per input size.

Both competitions (and the synthetic phantoms, which use the same layouts) load into one
`Dataset`. Decoding a thousand 1024-pixel DICOMs takes minutes, so the decoded, resized arrays
are cached as a compressed .npz per (data set, input size, source fingerprint): a second run
reads the cache, and any change to the label CSVs, the split or the DICOM files (name, size or
mtime) changes the fingerprint and rebuilds it; an unreadable cache file is rebuilt too.

Images are kept as uint16 (65,536 grey levels), so a 12-bit radiograph keeps its contrast through
the cache; `model_inputs` gives the [0, 255] float scale the Keras models expect.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from skimage.transform import resize
from tqdm.auto import tqdm

from repro.data import rsna, siim
from repro.data.dicom import read_dicom
from repro.data.splits import paper_split_lists, read_split_csv
from repro.data.labels import read_label_csv
from repro.io import write_npz
from repro.protocol import KAGGLE_DATASETS

log = logging.getLogger(__name__)

TRUTH_CSV = "phantom-truth.csv"   # written by the phantom generator beside the Kaggle files
CACHE_VERSION = 2                  # bump when the cached arrays' meaning changes
GREY_LEVELS = 65535                # uint16 full scale; 65535 / 257 = 255
# Decoding a 1024 px release DICOM into the 320 px cache takes 0.04-0.06 s of one core
# (benchmarks/bench_data.py): the paper's 25,538 would take about 20 minutes on one, so from this
# many images on, chunks of them are decoded on every core (spawned processes: a second or two to
# start, and the same arrays, in the same order, as one process).
PARALLEL_FROM = 2000
CHUNK = 64


@dataclass(frozen=True)
class KaggleReader:
    """How one Kaggle layout's label files become records, and a record a mask at model size (the
    rest of a data set's description is its repro.protocol.DatasetSpec)."""
    records: Callable[[Path, bool], list]                    # (root, drop_not_normal) -> records
    mask: Callable[[object, tuple[int, int], int], np.ndarray]   # (record, image shape, size) -> mask


READERS = {
    "siim": KaggleReader(
        records=lambda root, drop_not_normal: siim.load_siim_records(root),
        mask=lambda record, shape, size: resize_mask(siim.decode_record_mask(record, *shape), size)),
    "rsna": KaggleReader(
        records=lambda root, drop_not_normal: rsna.load_rsna_records(root, drop_not_normal=drop_not_normal),
        mask=lambda record, shape, size: rsna.boxes_to_mask(record.boxes, shape, size,
                                                            where=f"patientId {record.image_id}")),
}


@dataclass
class Dataset:
    """Arrays at model resolution; row i of every array is image ids[i]."""
    name: str
    size: int
    ids: np.ndarray          # (N,) str
    labels: np.ndarray       # (N,) int8, 1 = finding present
    splits: np.ndarray       # (N,) str: train / val / test
    images: np.ndarray       # (N, S, S) uint16, brighter = denser
    masks: np.ndarray        # (N, S, S) bool: SIIM masks or RSNA filled boxes
    evidence: np.ndarray | None = None    # (N, S, S) bool: the phantoms' true evidence region
    confounder: np.ndarray | None = None  # (N,) bool: the phantoms' confounder flag
    split_rank: np.ndarray | None = None  # (N,) int32: position in its split's list; default row order
    fingerprint: str = ""    # of the sources the arrays were decoded from

    def __post_init__(self):
        if self.split_rank is None:
            self.split_rank = np.zeros(len(self.ids), dtype=np.int32)
            for name in np.unique(self.splits):
                rows = self.splits == name
                self.split_rank[rows] = np.arange(rows.sum())

    def indices(self, split: str | None = None, *, positive: bool | None = None) -> np.ndarray:
        keep = np.ones(len(self.ids), dtype=bool)
        if split is not None:
            keep &= self.splits == split
        if positive is not None:
            keep &= (self.labels == 1) == positive
        return np.flatnonzero(keep)

    def split_list(self, split: str) -> np.ndarray:
        """Row indices of one split in the split's own order (the authors' test list order)."""
        rows = self.indices(split)
        return rows[np.argsort(self.split_rank[rows], kind="stable")]

    def pixels(self, indices=None) -> np.ndarray:
        """float32 (n, S, S) grey levels in [0, 255]."""
        images = self.images if indices is None else self.images[indices]
        return images.astype(np.float32) / (GREY_LEVELS / 255.0)

    def model_inputs(self, indices=None) -> np.ndarray:
        """float32 (n, S, S, 3) in [0, 255]: grayscale copied into 3 channels, as the paper.

        Each model applies its own input scaling (Inception [-1, 1], DenseNet ImageNet mean/std).
        """
        return np.repeat(self.pixels(indices)[..., None], 3, axis=-1)


def load_dataset(name: str, root: str | Path, size: int, *, cache_dir: str | Path,
                 split="paper", drop_not_normal: bool = True, progress: bool = True,
                 processes: int | None = None) -> Dataset:
    """Load SIIM or RSNA from its Kaggle layout at `size` x `size`, through the cache.

    `split` is "paper" (the authors' procedure), a split CSV path, or an object with
    test_fraction, val_fraction and seed (the same procedure with other fractions). `processes`
    decode the images when the cache is built (default: every core from PARALLEL_FROM images on).
    """
    if name not in READERS:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(READERS)}")
    if int(size) < 32:
        raise ValueError(f"input size must be at least 32 pixels, got {size}")
    root = Path(root)
    records = READERS[name].records(root, drop_not_normal)
    if not records:
        raise ValueError(f"{root}: no images listed in the {name} label file")
    label_files = [root / f for f in KAGGLE_DATASETS[name].label_files]
    fingerprint = source_fingerprint([CACHE_VERSION, name, int(size), bool(drop_not_normal)], root,
                                     label_files + [root / TRUTH_CSV], [r.dicom_path for r in records], split)
    return cached(Path(cache_dir), name, size, fingerprint,
                  lambda: _decode(name, root, size, records, split, fingerprint, progress, processes))


def cached(cache_dir: Path, name: str, size: int, fingerprint: str, build) -> Dataset:
    """The cached arrays for `fingerprint`, or `build()` written to the cache (stale ones removed)."""
    cache_path = cache_dir / f"{name}-{size}px-{fingerprint[:16]}.npz"
    if cache_path.is_file():
        try:
            dataset = _read_cache(cache_path)
            log.info("reading cached %s arrays from %s", name, cache_path)
            return dataset
        except Exception as err:  # truncated or damaged: decode again
            log.warning("%s: damaged cache (%s); decoding the images again", cache_path, err)
    _remove_stale(cache_dir, name, size, keep=cache_path)
    dataset = build()
    arrays = {k: v for k, v in vars(dataset).items() if isinstance(v, np.ndarray)}
    meta = {"name": name, "size": size, "fingerprint": fingerprint}
    write_npz(cache_path, meta=np.array(json.dumps(meta)), **arrays)
    log.info("cached %s arrays in %s", name, cache_path)
    return dataset


def split_of(ids, split) -> tuple[np.ndarray, np.ndarray]:
    """(split names, rank within split) for `ids`, from "paper", a CSV path or fractions."""
    if isinstance(split, str) and split == "paper":
        lists = paper_split_lists(ids)
    elif isinstance(split, (str, Path)):
        lists = read_split_csv(split, ids)
    else:
        lists = paper_split_lists(ids, test_size=split.test_fraction, val_size=split.val_fraction,
                                  random_state=split.seed)
    where = {i: (name, rank) for name, members in lists.items() for rank, i in enumerate(members)}
    return (np.array([where[i][0] for i in ids]), np.array([where[i][1] for i in ids], dtype=np.int32))


def _decode(name, root, size, records, split, fingerprint, progress, processes=None) -> Dataset:
    n = len(records)
    ids = np.array([r.image_id for r in records])
    images = np.zeros((n, size, size), dtype=np.uint16)
    masks = np.zeros((n, size, size), dtype=bool)
    truth = _read_truth(root)
    evidence = np.zeros((n, size, size), dtype=bool) if truth is not None else None
    if processes is None:
        processes = len(os.sched_getaffinity(0)) if n >= PARALLEL_FROM else 1
    starts = range(0, n, CHUNK)
    chunks = [(name, size, records[start:start + CHUNK],
               None if truth is None else [truth["Evidence"].get(i, "-1") for i in ids[start:start + CHUNK]])
              for start in starts]
    bar = tqdm(total=n, desc=f"decoding {name} DICOMs", disable=None if progress else True)
    with (ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) if processes > 1
          else _InProcess()) as pool:
        for start, (chunk_images, chunk_masks, chunk_evidence) in zip(starts, pool.map(_decode_chunk, *zip(*chunks))):
            stop = start + len(chunk_images)
            images[start:stop], masks[start:stop] = chunk_images, chunk_masks
            if evidence is not None:
                evidence[start:stop] = chunk_evidence
            bar.update(len(chunk_images))
    bar.close()
    splits, rank = split_of(list(ids), split)
    confounder = None
    if truth is not None:
        confounder = np.array([truth["Confounder"].get(i, "0") == "1" for i in ids])
    return Dataset(name=name, size=size, ids=ids, labels=np.array([r.label for r in records], dtype=np.int8),
                   splits=splits, split_rank=rank, images=images, masks=masks,
                   evidence=evidence, confounder=confounder, fingerprint=fingerprint)


def _decode_chunk(name: str, size: int, records: list, evidence_rles: list[str] | None):
    """Images, masks (and the phantoms' evidence) of some records at model size: one unit of decoding."""
    n = len(records)
    images = np.zeros((n, size, size), dtype=np.uint16)
    masks = np.zeros((n, size, size), dtype=bool)
    evidence = None if evidence_rles is None else np.zeros((n, size, size), dtype=bool)
    for i, record in enumerate(records):
        pixels = read_dicom(record.dicom_path)
        images[i] = to_grey_levels(resize_image(pixels, size))
        masks[i] = READERS[name].mask(record, pixels.shape, size)
        if evidence is not None:
            evidence[i] = resize_mask(siim.rle_decode(evidence_rles[i], *pixels.shape,
                                                       where=f"{TRUTH_CSV}: {record.image_id}"), size)
    return images, masks, evidence


class _InProcess:
    """The executor interface, run here (one process: no start-up, no copies)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(function, *iterables):
        return map(function, *iterables)


def to_grey_levels(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint16 grey levels."""
    return np.round(np.clip(image, 0.0, 1.0) * GREY_LEVELS).astype(np.uint16)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image
    return resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Area-weighted downsampling, then a pixel is in the mask when at least half of it was."""
    if mask.shape == (size, size):
        return mask
    return resize_image(mask.astype(np.float32), size) >= 0.5


def _read_truth(root: Path) -> dict[str, dict[str, str]] | None:
    path = root / TRUTH_CSV
    if not path.is_file():
        return None
    table = read_label_csv(path, ["ImageId", "Evidence", "Confounder"])
    return {column: dict(zip(table["ImageId"], table[column])) for column in ("Evidence", "Confounder")}


def source_fingerprint(settings, root: Path, label_files, image_paths, split) -> str:
    """sha256 over the settings, the label files' bytes, the split and each image's name, size, mtime."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings).encode())
    split_files = [Path(split)] if isinstance(split, (str, Path)) and str(split) != "paper" else []
    if not isinstance(split, (str, Path)):
        digest.update(json.dumps([split.test_fraction, split.val_fraction, split.seed]).encode())
    for path in [*label_files, *split_files]:
        digest.update(str(Path(path).name).encode())
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"<absent>")
    for path in image_paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read_cache(path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        arrays = {k: stored[k] for k in stored.files if k != "meta"}
    return Dataset(name=meta["name"], size=meta["size"], fingerprint=meta["fingerprint"], **arrays)


def _remove_stale(cache_dir: Path, name: str, size: int, *, keep: Path) -> None:
    for old in cache_dir.glob(f"{name}-{size}px-*.npz"):
        if old != keep:
            log.info("source changed: removing stale cache %s", old)
            old.unlink()
