"""IG (integrated gradients) and SIG (SmoothGrad of IG), with baselines named by what they mean.

Baselines are given in terms of the model-ready input, whose pixel range the caller states as
input_range=(lo, hi) (default (0, 255): models that scale their own input):
  "black"      every pixel lo  (the authors' all -1 baseline after Inception scaling is black)
  "white"      every pixel hi
  "image_min"  every pixel the image's own minimum (PAIR XRAI's first default baseline)
  "image_max"  every pixel the image's own maximum (PAIR XRAI's second default baseline)
  a number     every pixel that value
SIG keeps the baseline of the unperturbed image for every noisy copy, as PAIR's GetSmoothedMask
does with a given x_baseline.
"""
from __future__ import annotations

import functools
import numpy as np

from .blocks import Block, attributions, integrated_gradients_block, job
from .context import Context
from .params import BASELINES, is_baseline
from .smoothing import smoothed_job

def integrated_gradients(ctx: Context, images: np.ndarray, *, x_steps: int, baseline) -> np.ndarray:
    engine = ctx.engine()
    targets = ctx.targets(engine, images, perturbed=True)
    jobs = [job(path_block, [(x, baseline, x_steps, t, ctx.input_range)])
            for x, t in zip(images, targets)]
    return attributions(engine, jobs, ctx.batch_size)


def smooth_integrated_gradients(ctx: Context, images: np.ndarray, *, x_steps: int, baseline,
                                nsamples: int, stdev_spread: float, magnitude: bool) -> np.ndarray:
    engine = ctx.engine()
    targets = ctx.targets(engine, images, perturbed=True)
    jobs = [smoothed_job(x, functools.partial(integrated_gradients_block,
                                              baseline=baseline_image(baseline, x, ctx.input_range),
                                              x_steps=x_steps, target=t),
                         seed=ctx.seed, nsamples=nsamples, stdev_spread=stdev_spread,
                         magnitude=magnitude)
            for x, t in zip(images, targets)]
    return attributions(engine, jobs, ctx.batch_size)


def path_block(x: np.ndarray, baseline, x_steps: int, target: int,
               input_range: tuple[float, float]) -> Block:
    """The IG block of x from a named (or numeric) baseline."""
    return integrated_gradients_block(x, baseline_image(baseline, x, input_range), x_steps, target)


def baseline_image(spec, x: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """The constant image a baseline name (or number) stands for, shaped like x."""
    if not is_baseline(spec):
        raise ValueError(f"baseline must be one of {BASELINES} or a number, got {spec!r}")
    values = {"black": lambda: input_range[0], "white": lambda: input_range[1],
              "image_min": lambda: np.min(x), "image_max": lambda: np.max(x)}
    value = values[spec]() if isinstance(spec, str) else spec
    return np.full_like(x, value, dtype=np.float32)
