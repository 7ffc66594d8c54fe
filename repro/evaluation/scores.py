"""Per-image scores of the four trustworthiness tests, from maps already computed.

Everything here works on arrays of maps (N, H, W) in [0, 1] and returns plain per-image scores, so
that the tests can be checked on known answers without any model. Degenerate cases (empty masks,
constant maps, NaN SSIM) are counted in `Degenerate`, never silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from skimage.filters import sobel

from repro.metrics import auprc, is_constant, roc_auc, ssim

# The localization network that is each data set's high baseline, as the score tables name it.
HIGH_BASELINE = {"siim": "U-Net", "rsna": "RetinaNet"}
# The last cascade state: every block from the logits down to mixed1 randomized.
FULLY_RANDOMIZED = "mixed1"


@dataclass
class Degenerate:
    """Counts of degenerate inputs met while scoring, reported beside the results."""
    empty_masks: int = 0
    constant_maps: dict[str, int] = field(default_factory=dict)
    nan_ssim: dict[str, int] = field(default_factory=dict)

    def count_constant(self, group: str, maps: np.ndarray) -> None:
        self.constant_maps[group] = self.constant_maps.get(group, 0) + sum(is_constant(m) for m in maps)

    def count_nan(self, group: str, values: np.ndarray) -> None:
        self.nan_ssim[group] = self.nan_ssim.get(group, 0) + int(np.isnan(values).sum())


def utility(maps: np.ndarray, masks: np.ndarray, *, auprc_method: str = "trapezoid") -> dict[str, np.ndarray]:
    """Per-image AUPRC and ROC AUC of each map against its mask (NaN for an empty mask)."""
    maps, masks = _check_stack(maps, "maps"), _check_stack(masks, "masks")
    if maps.shape != masks.shape:
        raise ValueError(f"utility: maps {maps.shape} and masks {masks.shape} differ in shape")
    return {"auprc": np.array([auprc(k, m, method=auprc_method) for m, k in zip(maps, masks)]),
            "roc_auc": np.array([roc_auc(k, m) for m, k in zip(maps, masks)])}


def paired_ssim(maps_a: np.ndarray, maps_b: np.ndarray, *, data_range: float = 2.0) -> np.ndarray:
    """SSIM between map i of two stacks, per image (repeatability, reproducibility, cascade)."""
    maps_a, maps_b = _check_stack(maps_a, "maps_a"), _check_stack(maps_b, "maps_b")
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"paired_ssim: stacks differ in shape: {maps_a.shape} and {maps_b.shape}")
    return np.array([ssim(a, b, data_range=data_range) for a, b in zip(maps_a, maps_b)])


def random_pair_baseline(maps: np.ndarray, *, pairs_per_image: int = 50, seed: int = 0,
                         data_range: float = 2.0) -> np.ndarray:
    """The randomization baseline: for each image i, the mean SSIM of its map with the maps of
    `pairs_per_image` other images j != i drawn at random (with replacement when there are fewer
    others than that), all from the trained model."""
    maps = _check_stack(maps, "maps")
    n = len(maps)
    if n < 2:
        raise ValueError("random_pair_baseline: needs at least 2 maps")
    rng = np.random.default_rng(seed)
    baseline = np.empty(n)
    for i in range(n):
        others = np.delete(np.arange(n), i)
        partners = rng.choice(others, size=pairs_per_image, replace=len(others) < pairs_per_image)
        baseline[i] = np.mean([ssim(maps[i], maps[j], data_range=data_range) for j in partners])
    return baseline


def average_mask(masks: np.ndarray) -> np.ndarray:
    """The AVG baseline: the mean of the training + validation masks (pass those in)."""
    masks = _check_stack(masks, "masks")
    return masks.astype(np.float32).mean(axis=0)


def edge_control(images: np.ndarray) -> np.ndarray:
    """EDGE control: a Sobel edge map of each input, which ignores the model entirely; scaled to
    [0, 1] per image. It must FAIL the randomization test (its maps never change)."""
    images = _check_stack(np.asarray(images, dtype=np.float32), "images")
    edges = np.stack([sobel(image) for image in images])
    top = edges.reshape(len(edges), -1).max(axis=1)[:, None, None]
    return np.divide(edges, top, out=np.zeros_like(edges), where=top > 0).astype(np.float32)


def oracle_control(evidence: np.ndarray) -> np.ndarray:
    """ORACLE control: the phantom's true evidence region as a map. It must beat AVG on utility."""
    return _check_stack(evidence, "evidence").astype(np.float32)


def _check_stack(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a stack of 2-D maps (N, H, W), got shape {array.shape}")
    return array
