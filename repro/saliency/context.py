"""What every method needs besides its own parameters: model, target, batch size, seed, ..."""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from .engine import PREDICTED, GradientEngine, engine_for
from .segments import SegmentCache


@dataclass(frozen=True)
class Context:
    model: keras.Model
    target: int | str                # "predicted" or a class index
    batch_size: int                  # rows per model call
    seed: int                        # SmoothGrad noise
    input_range: tuple[float, float]  # model-ready pixel range: "black" and "white" baselines
    segments: SegmentCache           # XRAI segments

    def engine(self, *, layer: str | None = None, guided: bool = False) -> GradientEngine:
        return engine_for(self.model, layer, guided)

    def targets(self, engine: GradientEngine, images: np.ndarray, *, perturbed: bool) -> np.ndarray:
        """One target class per image.

        "predicted" is the class predicted on the unperturbed image (the paper's choice). When the
        model's rows are the images themselves (perturbed=False) the engine finds it in the same
        forward pass as the gradients; noisy or interpolated rows need a forward pass first.
        """
        if self.target != "predicted":
            return np.full(len(images), self.target, np.int32)
        if perturbed:
            return engine.predicted_classes(images, self.batch_size)
        return np.full(len(images), PREDICTED, np.int32)
