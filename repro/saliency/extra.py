"""Six methods beyond the paper: GIG, BIG, OCC (PAIR saliency core) and GCAMPP, SCAM, LCAM
(tf-keras-vis). Each returns raw attributions; the caller post-processes them.

GIG (Guided IG; Kapishnikov et al. 2021, "Guided Integrated Gradients"): PAIR's GuidedIG.GetMask,
one image at a time (its adaptive path asks for one gradient per step), from a named baseline
as IG's (`integrated.baseline_image`). PAIR 0.2.1 calls np.quantile(..., interpolation='lower'),
a keyword NumPy 2.4 no longer accepts (TypeError): where NumPy lacks it, PAIR's guided_ig module
is given a numpy that passes it on as method= (the same quantile); nothing else changes.

BIG (Blur IG; Xu et al. 2020, "Attribution in Scale and Space"): PAIR's BlurIG.GetMask, the
blurred copies batched ctx.batch_size at a time. PAIR's batched loop weights a whole batch by the
sigma step of its last row, which is right only for evenly spaced sigmas: with sqrt=True
(uneven steps) it is called with batch_size=1, which gives the correct sum.

OCC (occlusion; Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks"):
PAIR's Occlusion.GetMask re-expressed in batches: the target logit minus the logit with a
size x size window set to `value`, summed over the windows covering each pixel, in PAIR's
window order. PAIR calls the model once per window (at stride 1 that is (S - size + 1)^2 calls
per image: 12,996 at 128 px); here the occluded copies go through the compiled forward pass
ctx.batch_size at a time, with the same numbers (tested against PAIR). `stride` (ours; 1 = PAIR)
moves the window by more than one pixel, for runs that cannot afford every position.

GCAMPP (Grad-CAM++; Chattopadhay et al. 2018), SCAM (Score-CAM; Wang et al. 2020) and LCAM
(LayerCAM; Jiang et al. 2021): tf-keras-vis's GradcamPlusPlus, Scorecam and Layercam, which work
with Keras 3 here. They explain the target logit at exactly the named layer (default: the last
4-D layer, as GCAM; no seeking back to a Conv layer), with expand_cam=True (scipy's linear zoom
to the input size) and normalize_cam=False. No model modifier is given, so tf-keras-vis never
clones: each call rebuilds a sub-model over the model's own layers and sees in-place weight
changes. As implemented there, Grad-CAM++ differentiates exp(logit) (the paper's closed-form
alphas), and Score-CAM weighs each channel by the target's softmax probability on the input
masked by that channel's normalised upsampled activation (max_n < channels: Faster Score-CAM,
the max_n channels of largest spatial std). Score-CAM runs one image per call so that each
image's channel choice is its own (tf-keras-vis pools the choice over a batch).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import warnings

import numpy as np
import saliency.core as pair
import saliency.core.guided_ig as pair_guided_ig
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.scores import CategoricalScore

from .context import Context
from .engine import default_conv_layer
from .integrated import baseline_image


class _NumpyWithQuantileInterpolation:
    """numpy, with np.quantile's old `interpolation=` keyword passed on as method=."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, *args, interpolation="linear", **kwargs):
        return np.quantile(a, q, *args, method=interpolation, **kwargs)


if "interpolation" not in inspect.signature(np.quantile).parameters:
    pair_guided_ig.np = _NumpyWithQuantileInterpolation()


def guided_ig(ctx: Context, images: np.ndarray, *, x_steps: int, baseline, fraction: float,
              max_dist: float) -> np.ndarray:
    engine = ctx.engine()
    return np.stack([pair.GuidedIG().GetMask(
        x, engine.call_model_function, {"target": int(t)},
        x_baseline=baseline_image(baseline, x, ctx.input_range), x_steps=x_steps,
        fraction=fraction, max_dist=max_dist)
        for x, t in zip(images, ctx.targets(engine, images, perturbed=True))]).astype(np.float32)


def blur_ig(ctx: Context, images: np.ndarray, *, x_steps: int, max_sigma: float,
            grad_step: float, sqrt: bool) -> np.ndarray:
    engine = ctx.engine()
    return np.stack([pair.BlurIG().GetMask(
        x, engine.call_model_function, {"target": int(t)}, max_sigma=max_sigma, steps=x_steps,
        grad_step=grad_step, sqrt=sqrt, batch_size=1 if sqrt else ctx.batch_size)
        for x, t in zip(images, ctx.targets(engine, images, perturbed=True))]).astype(np.float32)


def occlusion(ctx: Context, images: np.ndarray, *, size: int, value: float, stride: int) -> np.ndarray:
    engine = ctx.engine()
    maps = []
    for x, target in zip(images, ctx.targets(engine, images, perturbed=True)):
        height, width = x.shape[:2]
        windows = [(row, col) for row in range(0, 1 + height - size, stride)
                   for col in range(0, 1 + width - size, stride)]
        original = engine.logits(x[None], 1)[0, target]
        scores = np.zeros_like(x)
        for start in range(0, len(windows), ctx.batch_size):
            chunk = windows[start:start + ctx.batch_size]
            occluded = np.repeat(x[None], len(chunk), axis=0)
            for k, (row, col) in enumerate(chunk):
                occluded[k, row:row + size, col:col + size] = value
            drops = original - engine.logits(occluded, len(chunk))[:, target]
            for (row, col), drop in zip(chunk, drops):
                scores[row:row + size, col:col + size] += drop
        maps.append(scores)
    return np.stack(maps).astype(np.float32)


def gradcam_plus_plus(ctx: Context, images: np.ndarray, *, layer: str | None) -> np.ndarray:
    return _gradient_cam(GradcamPlusPlus, ctx, images, layer)


def layercam(ctx: Context, images: np.ndarray, *, layer: str | None) -> np.ndarray:
    return _gradient_cam(Layercam, ctx, images, layer)


def scorecam(ctx: Context, images: np.ndarray, *, layer: str | None,
             max_n: int | None) -> np.ndarray:
    cam = Scorecam(ctx.model, clone=False)
    layer = layer or default_conv_layer(ctx.model)
    if max_n is not None and max_n >= ctx.model.get_layer(layer).output.shape[-1]:
        max_n = None    # as many channels as the layer has, or more: full Score-CAM
    maps = []
    for x, t in zip(images, _targets(ctx, images)):
        # Scorecam runs model.predict on a one-input list: silence its progress bar and the
        # Keras 3 warning about the input structure.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            maps.append(cam(CategoricalScore([int(t)]), x[None], penultimate_layer=layer,
                            seek_penultimate_conv_layer=False, batch_size=ctx.batch_size,
                            max_N=max_n, expand_cam=True, normalize_cam=False)[0])
    return np.stack(maps).astype(np.float32)


def _gradient_cam(kind, ctx: Context, images: np.ndarray, layer: str | None) -> np.ndarray:
    cam = kind(ctx.model, clone=False)
    layer = layer or default_conv_layer(ctx.model)
    targets = _targets(ctx, images)
    maps = [cam(CategoricalScore([int(t) for t in targets[start:start + ctx.batch_size]]),
                images[start:start + ctx.batch_size], penultimate_layer=layer,
                seek_penultimate_conv_layer=False, expand_cam=True, normalize_cam=False)
            for start in range(0, len(images), ctx.batch_size)]
    return np.concatenate(maps).astype(np.float32)


def _targets(ctx: Context, images: np.ndarray) -> np.ndarray:
    return ctx.targets(ctx.engine(), images, perturbed=True)
