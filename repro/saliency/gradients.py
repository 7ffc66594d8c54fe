"""GRAD (input gradient), GBP (guided backprop) and SG (SmoothGrad of the input gradient).

Each equals PAIR's GradientSaliency.GetMask / GetSmoothedMask on one image (tests check this);
here the images, and the noise samples, share batched model calls.
"""
from __future__ import annotations

import functools

import numpy as np

from .blocks import attributions, gradient_block, job
from .context import Context
from .smoothing import smoothed_job


def grad(ctx: Context, images: np.ndarray) -> np.ndarray:
    return _gradients(ctx, images, guided=False)


def guided_backprop(ctx: Context, images: np.ndarray) -> np.ndarray:
    """The input gradient with every ReLU passing only positive gradients of positive units."""
    return _gradients(ctx, images, guided=True)


def smoothgrad(ctx: Context, images: np.ndarray, *, nsamples: int, stdev_spread: float,
               magnitude: bool) -> np.ndarray:
    engine = ctx.engine()
    targets = ctx.targets(engine, images, perturbed=True)
    jobs = [smoothed_job(x, functools.partial(gradient_block, target=t), seed=ctx.seed,
                         nsamples=nsamples, stdev_spread=stdev_spread, magnitude=magnitude)
            for x, t in zip(images, targets)]
    return attributions(engine, jobs, ctx.batch_size)


def _gradients(ctx: Context, images: np.ndarray, *, guided: bool) -> np.ndarray:
    engine = ctx.engine(guided=guided)
    targets = ctx.targets(engine, images, perturbed=False)
    jobs = [job(gradient_block, [(x, t)]) for x, t in zip(images, targets)]
    return attributions(engine, jobs, ctx.batch_size)
