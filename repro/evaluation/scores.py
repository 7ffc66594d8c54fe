"""Per-image scores of the four trustworthiness tests, from maps already computed.

Plain functions on stacks of maps (N, H, W) in [0, 1]; no model, no files, so every one is checked
on known answers. A degenerate map is all NaN (repro.saliency.postprocessing, as the authors'
pipeline made it): its scores are NaN, which the statistics drop and the reports count.
"""
from __future__ import annotations

import numpy as np
from skimage.filters import sobel

from repro.metrics import SsimStats, auprc, roc_auc, ssim_of, ssim_pairs


def utility(masks: np.ndarray, maps: np.ndarray, *, auprc_method: str = "trapezoid") -> dict[str, np.ndarray]:
    """Per-image AUPRC and ROC AUC of each map against its mask (NaN: empty mask or degenerate map)."""
    masks, maps = _check_stack(masks, "masks"), _check_stack(maps, "maps")
    if maps.shape != masks.shape:
        raise ValueError(f"utility: masks {masks.shape} and maps {maps.shape} differ in shape")
    return {"auprc": np.array([auprc(k, m, method=auprc_method) for k, m in zip(masks, maps)]),
            "roc_auc": np.array([roc_auc(k, m) for k, m in zip(masks, maps)])}


def paired_ssim(maps_a, maps_b, *, data_range: float = 2.0) -> np.ndarray:
    """SSIM between map i of two stacks, per image (repeatability, reproducibility, cascade).
    Either stack may be given as SsimStats to reuse its local statistics."""
    return ssim_pairs(maps_a, maps_b, data_range=data_range)


def random_pair_baseline(maps: np.ndarray, *, pairs_per_image: int = 50, seed: int | list = 0,
                         data_range: float = 2.0) -> np.ndarray:
    """The randomization baseline: for each image i, the mean SSIM of its map with the maps of
    `pairs_per_image` images j != i drawn uniformly at random with replacement, all from the
    trained model (the authors' randomization_plot scripts: 50 draws per image, idx1 != idx2).
    Degenerate partners are left out of the mean; a degenerate map i gets NaN."""
    stats = maps if isinstance(maps, SsimStats) else SsimStats(_check_stack(maps, "maps"))
    n = len(stats)
    if n < 2:
        raise ValueError("random_pair_baseline: needs at least 2 maps")
    rng = np.random.default_rng(seed)
    baseline = np.full(n, np.nan)
    for i in range(n):
        partners = rng.integers(0, n - 1, size=pairs_per_image)
        partners += partners >= i          # uniform over the others: skip i itself
        if stats.nan[i]:
            continue
        values = np.array([ssim_of(stats, i, stats, j, data_range=data_range) for j in partners])
        if np.isfinite(values).any():
            baseline[i] = float(np.nanmean(values))
    return baseline


def average_mask(masks: np.ndarray) -> np.ndarray:
    """The AVG baseline: the mean of the training + validation masks, negatives (empty masks)
    included, as the authors' utility script formed it (pass those masks in)."""
    masks = _check_stack(masks, "masks")
    return masks.astype(np.float32).mean(axis=0)


def edge_control(images: np.ndarray) -> np.ndarray:
    """EDGE control: a Sobel edge map of each grey image, which ignores the model entirely; scaled
    to [0, 1] per image. It must FAIL the randomization test (its maps never change)."""
    images = _check_stack(np.asarray(images, dtype=np.float32), "images")
    edges = np.stack([sobel(image) for image in images])
    top = edges.reshape(len(edges), -1).max(axis=1)[:, None, None]
    return np.divide(edges, top, out=np.zeros_like(edges), where=top > 0).astype(np.float32)


def oracle_control(evidence: np.ndarray) -> np.ndarray:
    """ORACLE control: the phantom's true evidence region as a map. It must beat AVG on utility."""
    return _check_stack(evidence, "evidence").astype(np.float32)


def as_uint8(maps: np.ndarray) -> np.ndarray:
    """Maps in [0, 1] as 8-bit images, as the authors' U-Net maps were stored (PNG, read back with
    cv2.imread): scikit-image then takes the uint8 data range, 255."""
    return np.round(np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)


def is_all_nan(maps: np.ndarray) -> np.ndarray:
    """(N,) bool: maps that are all NaN, as repro.saliency stores a degenerate map (its own
    is_degenerate also finds constant or non-finite maps before they are post-processed)."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    return np.isnan(flat).all(axis=1)


def _check_stack(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a stack of 2-D maps (N, H, W), got shape {array.shape}")
    return array
