"""XRAI: PAIR's region ranking over integrated gradients computed in shared batches.

PAIR's XRAI.GetMask computes IG from each baseline (x_steps points, batch_size rows per call),
averages them, takes the channel maximum, segments the image and ranks the segments. Here the IG
of all images and baselines runs through the batched engine (the same Riemann sum, see
blocks.integrated_gradients_block), and PAIR's XRAI receives it as base_attribution together with
the image's cached segments, so only its ranking runs per image.
"""
from __future__ import annotations

import numpy as np
from saliency.core.xrai import XRAI, XRAIParameters

from .blocks import attributions, job
from .context import Context
from .integrated import path_block


def xrai(ctx: Context, images: np.ndarray, *, x_steps: int, baselines: list, area_threshold: float,
         algorithm: str) -> np.ndarray:
    engine = ctx.engine()
    targets = ctx.targets(engine, images, perturbed=True)
    jobs = [job(path_block, [(x, b, x_steps, t, ctx.input_range) for b in baselines], _mean)
            for x, t in zip(images, targets)]
    integrated = attributions(engine, jobs, ctx.batch_size)
    parameters = XRAIParameters(steps=x_steps, area_threshold=area_threshold, algorithm=algorithm)
    # No call_model_function: with base_attribution given, PAIR's XRAI never calls the model.
    return np.stack([XRAI().GetMask(x, None, base_attribution=attribution,
                                    segments=ctx.segments.get(x), extra_parameters=parameters)
                     for x, attribution in zip(images, integrated)]).astype(np.float32)


def _mean(attributions_per_baseline: list[np.ndarray]) -> np.ndarray:
    return np.mean(attributions_per_baseline, axis=0)
