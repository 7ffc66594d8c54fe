"""Fresh augmentation every epoch: random horizontal flips and small shifts, masks moved alike.

A fixed training set without augmentation is memorized when training from scratch
(notes/training-from-scratch.md); flips and shifts of a few pixels are enough to prevent it.
"""
from __future__ import annotations

import numpy as np


def augment(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, *, flip: bool,
            shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Augmented copies of images (n, S, S, ...) and masks (n, S, S).

    flip: each image is mirrored left-right with probability 1/2.
    shift: each image moves by a whole number of pixels drawn uniformly from
    [-shift * S, shift * S] along each axis; what enters the frame is 0 (black, or no mask).
    """
    images, masks = images.copy(), masks.copy()
    size = images.shape[1]
    reach = int(round(shift * size))
    for i in range(len(images)):
        if flip and rng.random() < 0.5:
            images[i], masks[i] = images[i, :, ::-1], masks[i, :, ::-1]
        if reach:
            dy, dx = rng.integers(-reach, reach + 1, size=2)
            images[i], masks[i] = _shift(images[i], dy, dx), _shift(masks[i], dy, dx)
    return images, masks


def _shift(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    moved = np.zeros_like(array)
    size_y, size_x = array.shape[:2]
    moved[max(dy, 0):size_y + min(dy, 0), max(dx, 0):size_x + min(dx, 0)] = \
        array[max(-dy, 0):size_y + min(-dy, 0), max(-dx, 0):size_x + min(-dx, 0)]
    return moved
