"""backend="pair": the paper's eight methods through PAIR saliency's own classes, image by image.

The reference path, for users who want PAIR's code to compute every number: each image goes to
PAIR's GetMask / GetSmoothedMask with the engine's compiled call_model_function (one image per
call, no cross-image batching). It computes the same maps as the batched path (tested):
- SmoothGrad noise: PAIR draws it from np.random.normal; for the call, that function is the
  image's own seeded generator (smoothing.image_rng), so both paths add the same noise;
- Grad-CAM: PAIR's GetMask without its resize (should_resize=False gives the ReLU map at the
  layer's resolution), then the same normalisation and `resize` (legacy or centred) as gradcam.py;
- XRAI: PAIR segments the image itself (the same Felzenszwalb segments the cache holds).
"""
from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import saliency.core as pair

from .context import Context
from .engine import default_conv_layer
from .gradcam import upsample
from .integrated import baseline_image
from .postprocessing import postprocess
from .smoothing import image_rng


def _per_image(ctx: Context, images, compute, *, layer=None, guided=False) -> np.ndarray:
    engine = ctx.engine(layer=layer, guided=guided)
    targets = ctx.targets(engine, images, perturbed=True)
    return np.stack([compute(x, engine.call_model_function, {"target": int(t)})
                     for x, t in zip(images, targets)]).astype(np.float32)


@contextlib.contextmanager
def _image_noise(ctx: Context, x: np.ndarray):
    """PAIR's np.random.normal draws, for one call, from the image's seeded generator (the batched
    path's noise, in the same order). Worker processes are single-threaded, so nothing else draws."""
    with mock.patch.object(np.random, "normal", image_rng(x, ctx.seed).normal):
        yield


def grad(ctx, images):
    return _per_image(ctx, images, pair.GradientSaliency().GetMask)


def guided_backprop(ctx, images):
    return _per_image(ctx, images, pair.GradientSaliency().GetMask, guided=True)


def smoothgrad(ctx, images, *, nsamples, stdev_spread, magnitude):
    def compute(x, function, args):
        with _image_noise(ctx, x):
            return pair.GradientSaliency().GetSmoothedMask(x, function, args, stdev_spread=stdev_spread,
                                                           nsamples=nsamples, magnitude=magnitude)
    return _per_image(ctx, images, compute)


def integrated_gradients(ctx, images, *, x_steps, baseline):
    def compute(x, function, args):
        return pair.IntegratedGradients().GetMask(x, function, args, x_steps=x_steps, batch_size=ctx.batch_size,
                                                  x_baseline=baseline_image(baseline, x, ctx.input_range))
    return _per_image(ctx, images, compute)


def smooth_integrated_gradients(ctx, images, *, x_steps, baseline, nsamples, stdev_spread, magnitude):
    def compute(x, function, args):
        with _image_noise(ctx, x):
            return pair.IntegratedGradients().GetSmoothedMask(
                x, function, args, stdev_spread=stdev_spread, nsamples=nsamples, magnitude=magnitude,
                x_steps=x_steps, batch_size=ctx.batch_size,
                x_baseline=baseline_image(baseline, x, ctx.input_range))
    return _per_image(ctx, images, compute)


def gradcam(ctx, images, *, layer, resize):
    def compute(x, function, args):
        cam = pair.GradCam().GetMask(x, function, args, should_resize=False, three_dims=False)
        if cam.max() > 0:    # PAIR's own normalisation, which it applies only when it resizes
            cam = cam / cam.max()
        return upsample(cam, x.shape[:2], resize)
    return _per_image(ctx, images, compute, layer=layer or default_conv_layer(ctx.model))


def guided_gradcam(ctx, images, *, layer, resize):
    return (postprocess(guided_backprop(ctx, images), "GBP")
            * postprocess(gradcam(ctx, images, layer=layer, resize=resize), "GCAM"))


def xrai(ctx, images, *, x_steps, baselines, area_threshold, algorithm):
    parameters = pair.XRAIParameters(steps=x_steps, area_threshold=area_threshold, algorithm=algorithm)

    def compute(x, function, args):
        return pair.XRAI().GetMask(x, function, args, batch_size=ctx.batch_size, extra_parameters=parameters,
                                   baselines=[baseline_image(b, x, ctx.input_range) for b in baselines])
    return _per_image(ctx, images, compute)


PAIR_METHODS = {"GRAD": grad, "SG": smoothgrad, "IG": integrated_gradients, "SIG": smooth_integrated_gradients,
                "GCAM": gradcam, "XRAI": xrai, "GBP": guided_backprop, "GGCAM": guided_gradcam}
