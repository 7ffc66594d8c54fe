"""SmoothGrad over any block-based method, with noise that depends only on (seed, image pixels).

PAIR's CoreSaliency.GetSmoothedMask calls GetMask once per noise sample; here the samples become
blocks of one job, so they run in shared batches. The math is PAIR's: stdev = stdev_spread *
(max(x) - min(x)); nsamples draws of normal(0, stdev, x.shape) added to x; the attributions are
squared when magnitude is True, then averaged.

Noise comes from a numpy Generator seeded with (seed, hash of the image's pixels), drawn sample by
sample in PAIR's order. A map therefore depends neither on the batch an image came in nor on the
images around it (a resumed run equals an uninterrupted one). The pipeline passes a seed of its
own per model and randomization state (repro.evaluation.plan.noise_seed), so the maps that the
tests compare with each other never share noise.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from .blocks import Block, Job


def image_digest(image: np.ndarray) -> bytes:
    """16-byte BLAKE2b digest of an image's float32 pixels and shape."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    digest = hashlib.blake2b(np.array(image.shape, np.int64).tobytes(), digest_size=16)
    digest.update(image.tobytes())
    return digest.digest()


def image_rng(image: np.ndarray, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(image_digest(image), "little")])


def smoothed_job(x: np.ndarray, make_block: Callable[[np.ndarray], Block], *, seed: int,
                 nsamples: int, stdev_spread: float, magnitude: bool) -> Job:
    """The SmoothGrad job of x: `make_block(noisy x)` per sample, combined as PAIR does."""
    stdev = stdev_spread * (np.max(x) - np.min(x))
    rng = image_rng(x, seed)
    blocks = (make_block(x + rng.normal(0, stdev, x.shape)) for _ in range(nsamples))

    def combine(attributions: list[np.ndarray]) -> np.ndarray:
        if magnitude:
            attributions = [a * a for a in attributions]
        return np.sum(attributions, axis=0) / nsamples

    return Job(blocks, nsamples, combine)
