"""Raw attributions -> (N, H, W) maps in [0, 1] as the authors' scripts did; degenerate maps NaN.

The authors passed every map through PAIR's VisualizeImageGrayscale (sum of |values| over the
channels, divide by the 99th percentile after subtracting the minimum, clip to [0, 1]) and then
min-max scaled it per image. Here:
  GRAD, SG, IG, SIG, GBP (N, H, W, C): exactly that.
  GCAM, XRAI (N, H, W):   the same without the channel sum and without |.|: Grad-CAM is already
                          non-negative after its ReLU, and XRAI's region scores are signed ranks
                          (taking |.| would promote the least important regions). The authors'
                          GCAM went through VisualizeImageGrayscale as three identical channels,
                          which gives the same map.
  GGCAM (N, H, W):        already the product of the post-processed GBP and GCAM maps (the
                          authors' ggcam = gbp_mask * grad_mask_2d): min-max only.

A map is degenerate when it is constant, non-finite, or has its 99th percentile at its minimum
(fewer than 1% of the pixels above the floor): VisualizeImageGrayscale divides by zero there and
the authors' maps became NaN and their SSIM analysis dropped them. Degenerate maps come out all
NaN here too, so every score of such a map is missing (never a number computed from zeros), and
`is_degenerate` finds them in memory or in a map store; a random model's Grad-CAM is a typical case
(every channel-weighted sum negative, so ReLU leaves zeros).
"""
from __future__ import annotations

import numpy as np

PERCENTILE = 99


def postprocess(raw: np.ndarray, method: str) -> np.ndarray:
    """(N, H, W) float32 maps in [0, 1] from saliency_maps(..., raw=True) output."""
    if method == "GGCAM":
        return np.stack([_min_max(m) for m in raw]).astype(np.float32)
    maps = np.abs(raw).sum(axis=-1) if raw.ndim == 4 else raw
    return np.stack([_min_max(_clip_to_percentile(m)) for m in maps]).astype(np.float32)


def is_degenerate(maps: np.ndarray) -> np.ndarray:
    """(N,) bool: maps that are constant or not finite (degenerate maps post-process to NaN)."""
    flat = np.asarray(maps).reshape(len(maps), -1)
    return ~np.isfinite(flat).all(axis=1) | (flat.max(axis=1) <= flat.min(axis=1))


def _clip_to_percentile(image_2d: np.ndarray) -> np.ndarray:
    """VisualizeImageGrayscale after its channel sum."""
    vmax = np.percentile(image_2d, PERCENTILE)
    vmin = np.min(image_2d)
    if not (np.isfinite(vmax) and np.isfinite(vmin) and vmax > vmin):
        return np.full_like(image_2d, np.nan)
    return np.clip((image_2d - vmin) / (vmax - vmin), 0, 1)


def _min_max(image_2d: np.ndarray) -> np.ndarray:
    low, high = np.min(image_2d), np.max(image_2d)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        return np.full_like(image_2d, np.nan)
    return (image_2d - low) / (high - low)
