"""Localization as cheXlocalize scores it, and average precision beside the paper's trapezoid.

Saporta et al., "Benchmarking saliency methods for chest X-ray interpretation", Nature Machine
Intelligence 4, 867-878 (2022), and its code (github.com/rajpurkarlab/cheXlocalize):
- a map becomes a segmentation by Otsu's threshold (heatmap_to_segmentation.py, the default) or by
  a fixed threshold on the min-max scaled map, tuned per pathology to maximize mIoU on the
  validation set over 0.2, 0.3, ..., 0.8 (tune_heatmap_threshold.py);
- IoU per image (eval.py calculate_iou), mIoU their mean over images (NaN ones left out);
- hit rate: the pointing game, a hit when the map's maximum lies inside the finding (eval.py).
The kit's masks are SIIM-ACR's segmentations and RSNA's boxes drawn as masks (repro/data).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from repro.metrics import auprc

# tune_heatmap_threshold.py: np.arange(0.2, .8, .1), which floating point makes 0.2, ..., 0.7 and
# 0.8000000000000003: the seven values its docstring names. The kit writes them rounded.
CHEXLOCALIZE_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
TIES = ("first", "any")


# --- binarization ---------------------------------------------------------------------------------

def binarize_threshold(smap: np.ndarray, threshold: float) -> np.ndarray:
    """The map's segmentation at a fixed threshold: min-max scaled map > threshold (bool).

    cheXlocalize heatmap_to_segmentation.py cam_to_segmentation with a threshold
    (`mask - mask.min()`, divided by its max, `mask > threshold`). A constant map stands out
    nowhere: all False. A NaN (degenerate) map has no segmentation: an error (localization_iou
    scores it NaN).
    """
    if not (np.isfinite(threshold) and 0 <= threshold <= 1):
        raise ValueError(f"binarize_threshold: threshold must be in [0, 1], got {threshold!r}")
    scaled = _scaled(smap, "binarize_threshold")
    return scaled > threshold


def binarize_otsu(smap: np.ndarray, *, contour_fill: bool = True) -> np.ndarray:
    """The map's segmentation by Otsu's threshold on its 8-bit version (bool).

    cheXlocalize heatmap_to_segmentation.py cam_to_segmentation without a threshold: the min-max
    scaled map times 255 cast to uint8 (truncation), Otsu's threshold (OpenCV THRESH_OTSU there,
    skimage.filters.threshold_otsu here: the same criterion, the between-class variance over the
    256 levels, foreground above the threshold). cheXlocalize then redraws the mask from its
    contours (cv2.findContours, every contour filled as a polygon), which fills holes and drops
    components of one pixel; contour_fill=True does the same with scipy.ndimage
    (binary_fill_holes, then 8-connected components of one pixel removed), False returns Otsu's
    mask as is. A constant map: all False; a NaN map: an error, as binarize_threshold.
    """
    scaled = _scaled(smap, "binarize_otsu")
    eight_bit = (255 * scaled).astype(np.uint8)
    if eight_bit.min() == eight_bit.max():
        return np.zeros(eight_bit.shape, dtype=bool)
    segmentation = eight_bit > threshold_otsu(eight_bit)
    if contour_fill:
        segmentation = ndimage.binary_fill_holes(segmentation)
        labels, count = ndimage.label(segmentation, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        segmentation = segmentation & (sizes[labels] > 1)
    return segmentation


# --- IoU ------------------------------------------------------------------------------------------

def iou(mask: np.ndarray, prediction: np.ndarray, *, true_positive_only: bool = True) -> float:
    """Intersection over union of a binary prediction and the finding's mask.

    cheXlocalize eval.py calculate_iou: with true_positive_only (its default, and what threshold
    tuning uses) NaN when the prediction or the mask is empty, so an image counts only where both
    exist; otherwise NaN only when both are empty (the union is empty), and 0 when one is.
    """
    mask = _binary(mask, "iou", "mask")
    prediction = _binary(prediction, "iou", "prediction")
    if mask.shape != prediction.shape:
        raise ValueError(f"iou: expected a mask and a prediction of the same shape, got {mask.shape} and "
                         f"{prediction.shape}")
    union = np.logical_or(mask, prediction).sum()
    if (true_positive_only and not (mask.any() and prediction.any())) or union == 0:
        return float("nan")
    return float(np.logical_and(mask, prediction).sum() / union)


def localization_iou(mask: np.ndarray, smap: np.ndarray, *, threshold: str | float = "otsu",
                     true_positive_only: bool = True, contour_fill: bool = True) -> float:
    """IoU of the map's segmentation (threshold="otsu" or a number in [0, 1]) with the mask.
    NaN for a NaN (degenerate) map, whose segmentation is undefined."""
    smap = np.asarray(smap, dtype=np.float64)
    if np.asarray(mask).shape != smap.shape:
        raise ValueError(f"localization_iou: expected a mask and a map of the same shape, got "
                         f"{np.asarray(mask).shape} and {smap.shape}")
    if np.isnan(smap).any():
        return float("nan")
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f'localization_iou: threshold must be "otsu" or a number in [0, 1], got {threshold!r}')
        prediction = binarize_otsu(smap, contour_fill=contour_fill)
    else:
        prediction = binarize_threshold(smap, threshold)
    return iou(mask, prediction, true_positive_only=true_positive_only)


def mean_iou(ious: Sequence[float]) -> float:
    """mIoU: the mean of the per-image IoUs, NaN ones left out (cheXlocalize eval.py: pandas'
    mean; tune_heatmap_threshold.py: np.nanmean). NaN when every IoU is NaN."""
    return _nan_mean(ious, "mean_iou")


class Tuning(NamedTuple):
    threshold: float           # the first threshold with the highest mIoU (NaN if none scored)
    thresholds: tuple          # the thresholds tried
    mean_ious: np.ndarray      # mIoU at each


def tune_threshold(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                   thresholds: Sequence[float] = CHEXLOCALIZE_THRESHOLDS) -> Tuning:
    """The threshold that maximizes mIoU over (map, mask) pairs: cheXlocalize's validation tuning.

    tune_heatmap_threshold.py: for each threshold the mIoU with true_positive_only IoUs, the first
    threshold reaching the maximum (list.index(max(...))). Run it on the validation set's maps and
    use the threshold on the test set, as the paper does.
    """
    maps, masks = list(maps), list(masks)
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"tune_threshold: expected as many maps as masks (at least one), got {len(maps)} "
                         f"and {len(masks)}")
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds:
        raise ValueError("tune_threshold: no thresholds to try")
    scores = np.array([mean_iou([localization_iou(mask, smap, threshold=t) for smap, mask in zip(maps, masks)])
                       for t in thresholds])
    if np.isnan(scores).all():
        return Tuning(float("nan"), thresholds, scores)
    return Tuning(thresholds[int(np.nanargmax(scores))], thresholds, scores)


# --- pointing game --------------------------------------------------------------------------------

def pointing_hit(mask: np.ndarray, smap: np.ndarray, *, ties: str = "first") -> float:
    """1.0 when the map's maximum lies inside the mask, 0.0 when not; NaN for an empty mask or a NaN map.

    cheXlocalize eval.py get_hit_rates: np.argmax of the map, the first maximum in raster order
    (ties="first"). ties="any" counts a hit when any pixel at the maximum is inside, as Quantus'
    PointingGame does (a constant map then hits every non-empty mask).
    """
    if ties not in TIES:
        raise ValueError(f"pointing_hit: ties must be one of {TIES}, got {ties!r}")
    mask = _binary(mask, "pointing_hit", "mask")
    smap = np.asarray(smap, dtype=np.float64)
    if smap.shape != mask.shape:
        raise ValueError(f"pointing_hit: expected a mask and a map of the same shape, got {mask.shape} and "
                         f"{smap.shape}")
    if np.isinf(smap).any():
        raise ValueError("pointing_hit: the map has infinite values")
    if np.isnan(smap).any() or not mask.any():
        return float("nan")
    if ties == "first":
        return float(mask.ravel()[np.argmax(smap)])
    return float(mask[smap == smap.max()].any())


def hit_rate(hits: Sequence[float]) -> float:
    """The fraction of hits over images, NaN ones (empty masks, NaN maps) left out."""
    return _nan_mean(hits, "hit_rate")


# --- utility: average precision beside the trapezoid ----------------------------------------------

class PrecisionScores(NamedTuple):
    trapezoid: float           # the authors' AUPRC (precision_recall_curve, then auc)
    average_precision: float   # scikit-learn's average_precision_score (step-wise)


def precision_scores(mask: np.ndarray, smap: np.ndarray) -> PrecisionScores:
    """The utility score two ways: the paper's trapezoidal AUPRC and scikit-learn's average precision,
    both repro.metrics.auprc (NaN for an empty mask or a NaN map). The trapezoid interpolates
    linearly between operating points and is optimistic where the map ties: a constant map scores
    (1 + f) / 2 against average precision's f, f the mask's fraction of the image."""
    return PrecisionScores(auprc(mask, smap), auprc(mask, smap, method="average_precision"))


# --- helpers --------------------------------------------------------------------------------------

def _scaled(smap, name) -> np.ndarray:
    smap = np.asarray(smap, dtype=np.float64)
    if smap.ndim != 2 or smap.size == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D map, got shape {smap.shape}")
    if not np.isfinite(smap).all():
        raise ValueError(f"{name}: the map is not finite (a degenerate map has no segmentation; "
                         "localization_iou scores it NaN)")
    low, high = smap.min(), smap.max()
    return (smap - low) / (high - low) if high > low else np.zeros_like(smap)


def _binary(array, name, what) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D {what}, got shape {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name}: the {what} must be boolean or 0/1")
    return array.astype(bool)


def _nan_mean(values, name) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of per-image scores, got shape {values.shape}")
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else float("nan")
