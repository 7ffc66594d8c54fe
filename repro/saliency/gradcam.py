"""GCAM (Grad-CAM) and GGCAM (guided Grad-CAM).

Grad-CAM is PAIR's GradCam.GetMask, vectorized over a batch: channel-mean gradient weights,
weighted sum of the layer's channels, ReLU, divided by its maximum when that is positive, then
resized to the input size in one of two ways (`resize`):
  "legacy"   TF1's tf.image.resize_bilinear with its defaults (align_corners=False,
             half_pixel_centers=False), as the TF1 PAIR release the authors ran (their GradCam,
             L77-79): source coordinate = output index x (in / out), so the map sits about half
             a cell towards the top left. `legacy_resize` reimplements it in numpy (tested
             against tf.compat.v1.image.resize_bilinear) so that no graph call is needed.
  "centred"  skimage's resize (bilinear, order=1, mode "reflect"): today's PAIR GradCam.
The layer defaults to the model's last layer with a 4-D output (mixed10 in InceptionV3, "relu"
in DenseNet121: the layers the authors used); pass layer=<name> for anything else.
"""
from __future__ import annotations

import numpy as np
from saliency.core.base import CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS
from skimage.transform import resize as skimage_resize

from .context import Context
from .engine import default_conv_layer
from .gradients import guided_backprop
from .postprocessing import postprocess


def gradcam(ctx: Context, images: np.ndarray, *, layer: str | None, resize: str) -> np.ndarray:
    engine = ctx.engine(layer=layer or default_conv_layer(ctx.model))
    targets = ctx.targets(engine, images, perturbed=False)
    maps = []
    for start in range(0, len(images), ctx.batch_size):
        stop = start + ctx.batch_size
        outputs = engine(images[start:stop], targets[start:stop],
                         (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS))
        maps += [upsample(cam, images.shape[1:3], resize)
                 for cam in _cams(outputs[CONVOLUTION_LAYER_VALUES],
                                  outputs[CONVOLUTION_OUTPUT_GRADIENTS])]
    return np.stack(maps).astype(np.float32)


def guided_gradcam(ctx: Context, images: np.ndarray, *, layer: str | None, resize: str) -> np.ndarray:
    """The authors' GGCAM: post-processed GBP times post-processed GCAM (NaN where GCAM is degenerate)."""
    return (postprocess(guided_backprop(ctx, images), "GBP")
            * postprocess(gradcam(ctx, images, layer=layer, resize=resize), "GCAM"))


def upsample(cam: np.ndarray, shape: tuple[int, int], how: str) -> np.ndarray:
    if how == "legacy":
        return legacy_resize(cam, shape)
    if how == "centred":
        return skimage_resize(cam, shape)
    raise ValueError(f"resize must be 'legacy' or 'centred', got {how!r}")


def legacy_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False) of a 2-D array:
    output pixel i reads source coordinate i * (in / out), interpolating between floor and the
    next index, clamped at the last row / column."""
    def axis(n_in: int, n_out: int):
        position = np.arange(n_out) * (n_in / n_out)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low)[:, None]

    image = np.asarray(image, dtype=np.float64)
    (r0, r1, fr), (c0, c1, fc) = axis(image.shape[0], shape[0]), axis(image.shape[1], shape[1])
    top = image[r0][:, c0] * (1 - fc.T) + image[r0][:, c1] * fc.T
    bottom = image[r1][:, c0] * (1 - fc.T) + image[r1][:, c1] * fc.T
    return top * (1 - fr) + bottom * fr


def _cams(values: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """(N, h, w) Grad-CAM maps at the layer's resolution, each scaled to a maximum of 1."""
    weights = gradients.mean(axis=(1, 2))
    cams = np.maximum(np.einsum("nhwc,nc->nhw", values, weights), 0)
    peaks = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peaks, out=cams, where=peaks > 0)
