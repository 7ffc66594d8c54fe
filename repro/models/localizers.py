"""Per-pixel maps of the localization networks: the high baselines of the utility and SSIM tests.

U-Net: its per-pixel probability. RetinaNet: each pixel the highest confidence of the detected
boxes covering it, 0 elsewhere (retinanet.detections_to_score_map).
"""
from __future__ import annotations

import keras
import numpy as np

from repro.models import retinanet

ARCHITECTURES = ("unet", "retinanet")


def localizer_maps(model: keras.Model, images: np.ndarray, arch: str, *, batch_size: int = 16) -> np.ndarray:
    """(N, S, S) float32 maps of [0, 255] model inputs."""
    if arch == "unet":
        return model.predict(images, batch_size=batch_size, verbose=0)[..., 0].astype(np.float32)
    if arch == "retinanet":
        return retinanet.score_maps(model, images, batch_size=batch_size).astype(np.float32)
    raise ValueError(f"unknown localizer architecture {arch!r}; expected one of {ARCHITECTURES}")
