"""Per-image scores: localization utility (AUPRC, ROC AUC) and map similarity (SSIM).

Plain functions on arrays, validated at the door. Degenerate inputs have documented results:
- an empty mask (no positive pixel): AUPRC and ROC AUC are undefined -> NaN;
- a constant map: every pixel ties, so the precision-recall "curve" is the two points
  (recall 1, precision = mask fraction) and (recall 0, precision 1). The authors' trapezoidal
  AUPRC then scores (1 + fraction) / 2, far above any real map; average precision scores the
  fraction; ROC AUC scores 0.5. Callers count these with `is_constant` and report them;
- SSIM of two maps is finite whenever data_range > 0 (skimage's constants keep it so); NaN only
  comes from NaN input, and the evaluation counts and drops those as the paper did.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

AUPRC_METHODS = ("trapezoid", "average_precision")


def auprc(mask: np.ndarray, smap: np.ndarray, *, method: str = "trapezoid") -> float:
    """Area under the precision-recall curve of `smap` scoring the pixels of `mask`.

    method="trapezoid" is the authors' computation (precision_recall_curve, then
    sklearn.metrics.auc(recall, precision)); "average_precision" is sklearn's step-wise
    average_precision_score, which does not interpolate between operating points.
    """
    labels, scores = _pixels(mask, smap, "auprc")
    if method not in AUPRC_METHODS:
        raise ValueError(f"auprc: method must be one of {AUPRC_METHODS}, got {method!r}")
    if not labels.any():
        return float("nan")
    if method == "average_precision":
        return float(average_precision_score(labels, scores))
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(auc(recall, precision))


def roc_auc(mask: np.ndarray, smap: np.ndarray) -> float:
    """Pixel-wise ROC AUC of `smap` against `mask` (NaN for an empty or full mask)."""
    labels, scores = _pixels(mask, smap, "roc_auc")
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 2.0) -> float:
    """skimage's structural similarity with its defaults (7x7 uniform window, K1 0.01, K2 0.03).

    data_range=2.0 reproduces the paper: the skimage of its time took the float dtype's range
    (-1..1) when none was given; today's requires it explicitly (PROTOCOL-NOTES.md, SSIM).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"ssim: expected two 2-D maps of the same shape, got {a.shape} and {b.shape}")
    if min(a.shape) < 7:
        raise ValueError(f"ssim: maps must be at least 7x7 (the window), got {a.shape}")
    if not data_range > 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")
    return float(structural_similarity(a, b, data_range=data_range))


def is_constant(smap: np.ndarray) -> bool:
    """True for a map whose pixels all tie (all-zero Grad-CAM, say): its scores are degenerate."""
    smap = np.asarray(smap)
    return bool(smap.size == 0 or np.all(smap == smap.flat[0]))


def _pixels(mask, smap, name):
    mask, smap = np.asarray(mask), np.asarray(smap, dtype=np.float64)
    if mask.shape != smap.shape or mask.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask and a map of the same shape, "
                         f"got {mask.shape} and {smap.shape}")
    if not np.isfinite(smap).all():
        raise ValueError(f"{name}: the map has NaN or infinite values")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name}: the mask must be boolean or 0/1")
    return mask.astype(bool).ravel(), smap.ravel()
