"""XRAI: PAIR's region ranking over integrated gradients computed in shared batches.

PAIR's XRAI.GetMask computes IG from each baseline (x_steps points, batch_size rows per call),
averages them, takes the channel maximum, segments the image and ranks the segments. Here the IG
of all images and baselines runs through the batched engine (the same Riemann sum, see
blocks.integrated_gradients_block), the segments come from the cache, and the ranking is
`rank_regions`: PAIR's "full" algorithm (XRAI._xrai) step for step, on each segment's pixel list.

Why not PAIR's own loop: every step it recomputes, for each of the ~200 remaining segments, the
pixels it would add and their mean attribution, over whole-image boolean masks (0.3 s per 128 px
map, more than the image's IG on two cores). A segment's gain changes only when the region just
added overlaps it, so `rank_regions` recomputes only those, each from its own pixels. The
arithmetic is PAIR's (the same float32 values, in raster order, averaged by the same numpy mean),
so the maps are bit for bit PAIR's (tests/test_saliency_methods.py). PAIR's "fast" algorithm, and
any attribution that is not finite, go to PAIR itself.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from saliency.core.xrai import XRAI, XRAIParameters

from .blocks import attributions, job
from .context import Context
from .integrated import path_block

MIN_PIXEL_DIFF = XRAIParameters().experimental_params["min_pixel_diff"]   # PAIR's: 50


def xrai(ctx: Context, images: np.ndarray, *, x_steps: int, baselines: list, area_threshold: float,
         algorithm: str) -> np.ndarray:
    engine = ctx.engine()
    targets = ctx.targets(engine, images, perturbed=True)
    jobs = [job(path_block, [(x, b, x_steps, t, ctx.input_range) for b in baselines], _mean)
            for x, t in zip(images, targets)]
    integrated = attributions(engine, jobs, ctx.batch_size)
    parameters = XRAIParameters(steps=x_steps, area_threshold=area_threshold, algorithm=algorithm)
    maps = []
    for x, attribution in zip(images, integrated):
        attr = attribution.max(axis=-1) if attribution.ndim > 2 else attribution   # PAIR: channel max
        if algorithm == "full" and np.isfinite(attr).all():
            maps.append(rank_regions(attr, ctx.segments.get(x), area_threshold=area_threshold))
        else:   # no call_model_function: with base_attribution given, PAIR's XRAI never calls the model
            maps.append(XRAI().GetMask(x, None, base_attribution=attribution, segments=ctx.segments.get(x),
                                       extra_parameters=parameters))
    return np.stack(maps).astype(np.float32)


def rank_regions(attr: np.ndarray, segments: list[np.ndarray], *, area_threshold: float = 1.0,
                 min_pixel_diff: int = MIN_PIXEL_DIFF) -> np.ndarray:
    """PAIR's XRAI._xrai attribution map (float64, attr's shape) for finite (H, W) attributions.

    Greedily, until the covered area exceeds `area_threshold` or no segment is left: a segment that
    adds fewer than `min_pixel_diff` uncovered pixels is dropped; of the others the one whose
    uncovered pixels have the highest mean attribution (the first such, in segment order) is added,
    and those pixels get that mean. Pixels never covered get their own mean attribution."""
    flat = attr.ravel()
    pixels = [np.flatnonzero(mask) for mask in segments]    # ascending: boolean indexing's order
    owners = scipy.sparse.csr_matrix(                       # pixel -> the segments that hold it
        (np.ones(sum(map(len, pixels)), bool),
         (np.concatenate([np.zeros(0, int), *pixels]), np.repeat(np.arange(len(pixels)), list(map(len, pixels))))),
        shape=(flat.size, len(pixels)))
    covered = np.zeros(flat.size, bool)
    gains = np.full(len(pixels), -np.inf)                   # -inf: dropped or added
    alive = np.ones(len(pixels), bool)

    def update(keys) -> None:
        for key in keys:
            added = pixels[key][~covered[pixels[key]]]
            if len(added) < min_pixel_diff:
                alive[key], gains[key] = False, -np.inf
            else:
                gains[key] = flat[added].mean()

    output = np.full(flat.size, -np.inf)
    update(range(len(pixels)))
    area = 0.0
    while area <= area_threshold and alive.any():
        best = int(np.argmax(gains))                        # the first of the highest, as PAIR's strict >
        added = pixels[best][~covered[pixels[best]]]
        output[added] = gains[best]
        covered[added] = True
        area = np.mean(covered)
        alive[best], gains[best] = False, -np.inf
        update(key for key in np.unique(owners[added].indices) if alive[key])
    uncovered = output == -np.inf
    if uncovered.any():
        output[uncovered] = flat[uncovered].mean()
    return output.reshape(attr.shape)


def _mean(attributions_per_baseline: list[np.ndarray]) -> np.ndarray:
    return np.mean(attributions_per_baseline, axis=0)
