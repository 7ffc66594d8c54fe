"""Gradient-based attributions as blocks of model inputs, run through the engine in full batches.

A `Block` is the set of model inputs whose gradients make one attribution: one row for a plain
gradient, x_steps rows for an integrated-gradients path. A `Job` is one image's blocks and how
to combine their attributions: SmoothGrad averages (squared) attributions of noisy copies, XRAI
averages IG over its baselines. `attributions` streams the rows of all jobs through the model
`batch_size` rows at a time, across block and image boundaries: a GRAD image's single row shares
its call with the next images, and a Smooth-IG image's 625 rows are split over many calls.
Blocks are generated lazily, so memory holds about one batch of rows, whatever the method.
"""
from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:   # engine.py imports TensorFlow; the XRAI segment cache (through smoothing.py) must not
    from .engine import GradientEngine


@dataclass(frozen=True)
class Block:
    rows: np.ndarray                            # (k, H, W, C) float32 model inputs
    target: int                                 # class index, or engine.PREDICTED
    finish: Callable[[np.ndarray], np.ndarray]  # the rows' gradients (k, H, W, C) -> attribution


@dataclass(frozen=True)
class Job:
    blocks: Iterable[Block]                            # usually lazy: consumed once, in order
    n_blocks: int
    combine: Callable[[list[np.ndarray]], np.ndarray]  # block attributions -> image attribution


def job(make_block: Callable[..., Block], arguments: list[tuple], combine=None) -> Job:
    """A job of the blocks make_block(*args), one per args, each built only when the stream
    reaches it (an image's IG rows are not materialized while earlier images run)."""
    def blocks():
        for args in arguments:
            yield make_block(*args)

    return Job(blocks(), len(arguments), combine or _only)


def _only(attributions: list[np.ndarray]) -> np.ndarray:
    (attribution,) = attributions
    return attribution


def gradient_block(x: np.ndarray, target: int) -> Block:
    """The input gradient at x (GRAD, GBP, and each SmoothGrad sample)."""
    return Block(x[None].astype(np.float32), target, lambda gradients: gradients[0])


def integrated_gradients_block(x: np.ndarray, baseline: np.ndarray, x_steps: int, target: int
                               ) -> Block:
    """PAIR IntegratedGradients.GetMask's Riemann sum: x_steps points from baseline to x, both
    ends included (np.linspace), mean gradient times (x - baseline)."""
    x_diff = x - baseline
    alphas = np.linspace(0, 1, x_steps).reshape(-1, *[1] * x.ndim)
    rows = (baseline + alphas * x_diff).astype(np.float32)
    return Block(rows, target, lambda gradients: gradients.sum(axis=0) * x_diff / x_steps)


def attributions(engine: GradientEngine, jobs: list[Job], batch_size: int) -> np.ndarray:
    """One attribution per job, stacked: (N, H, W, C) float32."""
    results = _finished_blocks(engine, itertools.chain.from_iterable(j.blocks for j in jobs),
                               batch_size)
    return np.stack([j.combine([next(results) for _ in range(j.n_blocks)])
                     for j in jobs]).astype(np.float32)


def _finished_blocks(engine: GradientEngine, blocks: Iterable[Block], batch_size: int
                     ) -> Iterator[np.ndarray]:
    """Each block's attribution, in order, computing gradients `batch_size` rows per call."""
    pending = collections.deque()  # blocks whose rows have been handed out, oldest first

    def rows():
        for block in blocks:
            pending.append(block)
            for row in block.rows:
                yield row, block.target

    received = []  # gradient rows not yet claimed by their block
    for batch in _batched(rows(), batch_size):
        batch_rows, targets = zip(*batch)
        received.extend(engine.input_gradients(np.stack(batch_rows), np.array(targets)))
        while pending and len(received) >= len(pending[0].rows):
            block = pending.popleft()
            k = len(block.rows)
            yield block.finish(np.stack(received[:k]))
            del received[:k]


def _batched(iterable, n: int):
    """itertools.batched (Python 3.12+) for 3.10 and 3.11."""
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, n)):
        yield batch
