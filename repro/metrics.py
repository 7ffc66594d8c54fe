"""Per-image scores: localization utility (AUPRC, ROC AUC) and map similarity (SSIM).

Plain functions on arrays, the truth first and the scores second (as scikit-learn's metrics),
validated at the door. Degenerate inputs have documented results:
- a degenerate saliency map is all NaN (repro.saliency.postprocessing, as the authors' pipeline made
  it): every score of it is NaN, and the evaluation drops and counts those;
- an empty mask (no positive pixel): AUPRC and ROC AUC are undefined -> NaN;
- a constant but finite map (a localizer that found nothing): every pixel ties, so the
  precision-recall "curve" is the two points (recall 1, precision = mask fraction) and (recall 0,
  precision 1). The authors' trapezoidal AUPRC then scores (1 + fraction) / 2; average precision
  scores the fraction; ROC AUC scores 0.5.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter
from skimage.metrics import structural_similarity
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

AUPRC_METHODS = ("trapezoid", "average_precision")
SSIM_WINDOW = 7          # skimage's default window: 7 x 7, uniform
SSIM_K1, SSIM_K2 = 0.01, 0.03


def auprc(mask: np.ndarray, smap: np.ndarray, *, method: str = "trapezoid") -> float:
    """Area under the precision-recall curve of `smap` scoring the pixels of `mask`.

    method="trapezoid" is the authors' computation (precision_recall_curve, then
    sklearn.metrics.auc(recall, precision)); "average_precision" is sklearn's step-wise
    average_precision_score, which does not interpolate between operating points.
    """
    if method not in AUPRC_METHODS:
        raise ValueError(f"auprc: method must be one of {AUPRC_METHODS}, got {method!r}")
    labels, scores = _pixels(mask, smap, "auprc")
    if scores is None or not labels.any():
        return float("nan")
    if method == "average_precision":
        return float(average_precision_score(labels, scores))
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(auc(recall, precision))


def roc_auc(mask: np.ndarray, smap: np.ndarray) -> float:
    """Pixel-wise ROC AUC of `smap` against `mask` (NaN for an empty or full mask, or a NaN map)."""
    labels, scores = _pixels(mask, smap, "roc_auc")
    if scores is None or labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 2.0) -> float:
    """skimage's structural similarity with its defaults (7x7 uniform window, K1 0.01, K2 0.03).

    data_range=2.0 reproduces the paper: the skimage of its time took the float dtype's range
    (-1..1) when none was given; today's requires it explicitly (docs/protocol.md, SSIM).
    NaN when either map is NaN anywhere (a degenerate map).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    _check_pair(a, b, data_range)
    if np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    return float(structural_similarity(a, b, data_range=data_range))


def ssim_pairs(a, b, *, data_range: float = 2.0) -> np.ndarray:
    """SSIM of a[i] and b[i] for every i: (N,) float64, equal to `ssim` pair by pair.

    `a` and `b` are stacks (N, H, W), or SsimStats of stacks to reuse their local statistics
    across calls (the original maps of the cascade test meet eleven randomized states).
    scikit-image computes one pair per call from scratch; the evaluation needs tens of thousands
    (the random-pair baseline alone is 50 pairs per image, method and replicate). The arithmetic
    here is skimage's, filter for filter, so the values are equal to the last bit; only each map's
    local mean and second moment are computed once instead of once per pair.
    """
    a = a if isinstance(a, SsimStats) else SsimStats(a)
    b = b if isinstance(b, SsimStats) else SsimStats(b)
    if len(a) != len(b) or a.shape != b.shape:
        raise ValueError(f"ssim_pairs: stacks differ: {len(a)} maps {a.shape} and {len(b)} maps {b.shape}")
    return np.array([ssim_of(a, i, b, i, data_range=data_range) for i in range(len(a))])


class SsimStats:
    """A stack of maps (N, H, W) with each map's local mean and local mean of squares (7x7 window)."""

    def __init__(self, maps: np.ndarray):
        maps = np.asarray(maps, dtype=np.float64)
        if maps.ndim != 3:
            raise ValueError(f"ssim: expected a stack of 2-D maps (N, H, W), got shape {maps.shape}")
        if min(maps.shape[1:]) < SSIM_WINDOW:
            raise ValueError(f"ssim: maps must be at least {SSIM_WINDOW}x{SSIM_WINDOW} (the window), "
                             f"got {maps.shape[1:]}")
        self.maps = maps
        self.nan = np.isnan(maps).any(axis=(1, 2))
        self.mean = [None if bad else uniform_filter(m, size=SSIM_WINDOW) for m, bad in zip(maps, self.nan)]
        self.square = [None if bad else uniform_filter(m * m, size=SSIM_WINDOW) for m, bad in zip(maps, self.nan)]

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def shape(self) -> tuple[int, int]:
        return self.maps.shape[1:]


def ssim_of(a: SsimStats, i: int, b: SsimStats, j: int, *, data_range: float = 2.0) -> float:
    """SSIM of map i of `a` and map j of `b`: skimage.metrics.structural_similarity (2-D, uniform
    7x7 window, use_sample_covariance=True) on precomputed local statistics; NaN for a NaN map."""
    if not data_range > 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")
    if a.nan[i] or b.nan[j]:
        return float("nan")
    x, y = a.maps[i], b.maps[j]
    ux, uy, uxx, uyy = a.mean[i], b.mean[j], a.square[i], b.square[j]
    uxy = uniform_filter(x * y, size=SSIM_WINDOW)
    n = SSIM_WINDOW ** 2
    cov_norm = n / (n - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    pad = (SSIM_WINDOW - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


def is_constant(smap: np.ndarray) -> bool:
    """True for a map whose pixels all tie (a localizer that found nothing, say)."""
    smap = np.asarray(smap)
    return bool(smap.size == 0 or np.all(smap == smap.flat[0]))


def _check_pair(a: np.ndarray, b: np.ndarray, data_range: float) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"ssim: expected two 2-D maps of the same shape, got {a.shape} and {b.shape}")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: maps must be at least {SSIM_WINDOW}x{SSIM_WINDOW} (the window), got {a.shape}")
    if not data_range > 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")


def _pixels(mask, smap, name):
    """(labels, scores) flattened; scores None for a NaN (degenerate) map."""
    mask, smap = np.asarray(mask), np.asarray(smap, dtype=np.float64)
    if mask.shape != smap.shape or mask.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask and a map of the same shape, "
                         f"got {mask.shape} and {smap.shape}")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name}: the mask must be boolean or 0/1")
    if np.isinf(smap).any():
        raise ValueError(f"{name}: the map has infinite values")
    if np.isnan(smap).any():
        return mask.astype(bool).ravel(), None
    return mask.astype(bool).ravel(), smap.ravel()
