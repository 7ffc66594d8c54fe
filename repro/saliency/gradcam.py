"""GCAM (Grad-CAM) and GGCAM (guided Grad-CAM).

Grad-CAM is PAIR's GradCam.GetMask (should_resize=True), vectorized over a batch: channel-mean
gradient weights, weighted sum of the layer's channels, ReLU, divided by its maximum when that is
positive, then skimage's resize to the input size (bilinear, order=1, mode "reflect").
The layer defaults to the model's last layer with a 4-D output (mixed10 in InceptionV3, "relu"
in DenseNet121: the layers the authors used); pass layer=<name> for anything else.
"""
from __future__ import annotations

import numpy as np
from saliency.core.base import CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS
from skimage.transform import resize

from .context import Context
from .engine import default_conv_layer
from .gradients import guided_backprop
from .postprocess import postprocess


def gradcam(ctx: Context, images: np.ndarray, *, layer: str | None) -> np.ndarray:
    engine = ctx.engine(layer=layer or default_conv_layer(ctx.model))
    targets = ctx.targets(engine, images, perturbed=False)
    maps = []
    for start in range(0, len(images), ctx.batch_size):
        stop = start + ctx.batch_size
        outputs = engine(images[start:stop], targets[start:stop],
                         (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS))
        maps += [resize(cam, images.shape[1:3])
                 for cam in _cams(outputs[CONVOLUTION_LAYER_VALUES],
                                  outputs[CONVOLUTION_OUTPUT_GRADIENTS])]
    return np.stack(maps).astype(np.float32)


def guided_gradcam(ctx: Context, images: np.ndarray, *, layer: str | None) -> np.ndarray:
    """The authors' GGCAM: post-processed GBP times post-processed GCAM."""
    return (postprocess(guided_backprop(ctx, images), "GBP")
            * postprocess(gradcam(ctx, images, layer=layer), "GCAM"))


def _cams(values: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """(N, h, w) Grad-CAM maps at the layer's resolution, each scaled to a maximum of 1."""
    weights = gradients.mean(axis=(1, 2))
    cams = np.maximum(np.einsum("nhwc,nc->nhw", values, weights), 0)
    peaks = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peaks, out=cams, where=peaks > 0)
