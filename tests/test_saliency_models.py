"""Tiny Keras models with known saliency answers, shared by the test_saliency_* files.

The tests in this file only check that each model computes the formula its docstring states.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

SIZE = 32
# Class c's region: rows 4-11 x columns 4-11 for class 0, rows 20-27 x columns 18-25 for class 1.
REGIONS = ((slice(4, 12), slice(4, 12)), (slice(20, 28), slice(18, 26)))
OUTSIDE_WEIGHT = 1e-3


class RegionEnergy(keras.layers.Layer):
    """logit_c = sum over pixels and channels of w_c * (x / 255)^2, w_c = 1 in region c and
    OUTSIDE_WEIGHT elsewhere: the input gradient of class c lives (almost) only in region c."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        weights = np.full((len(REGIONS), SIZE, SIZE, 1), OUTSIDE_WEIGHT, np.float32)
        for c, region in enumerate(REGIONS):
            weights[(c, *region)] = 1.0
        self.region_weights = weights

    def call(self, x):
        energy = keras.ops.square(x / 255.0)
        return keras.ops.stack([keras.ops.sum(w * energy, axis=(1, 2, 3))
                                for w in self.region_weights], axis=1)


def region_model() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, RegionEnergy()(inputs))


def region_logits(x: np.ndarray) -> np.ndarray:
    """RegionEnergy's formula in numpy: (N, 2)."""
    return np.stack([((w * (x / 255.0) ** 2).sum(axis=(1, 2, 3)))
                     for w in RegionEnergy().region_weights], axis=1)


def region_masks() -> list[np.ndarray]:
    masks = []
    for region in REGIONS:
        mask = np.zeros((SIZE, SIZE), bool)
        mask[region] = True
        masks.append(mask)
    return masks


def cnn(seed: int = 0, classes: int = 3) -> keras.Model:
    """A small random ReLU CNN with its own input scaling ([0, 255] -> [-1, 1]), like the
    project's classifiers; its last 4-D layer is "last_relu"."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(8, 3, padding="same")(h)
    h = keras.layers.Activation("relu", name="last_relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(classes)(h))


def cam_model(a0: float, a1: float) -> keras.Model:
    """Grad-CAM with a known answer.

    Layer "pick" copies the red and green channels; "pool" averages 4x4 blocks (an 8x8 map, the
    last 4-D layer); logit 1 = a0 * mean(pool red) + a1 * mean(pool green), logit 0 = 0. The
    gradient of logit 1 on pool channel c is a_c / 64 everywhere, so class 1's Grad-CAM is
    relu(a0 * red_8x8 + a1 * green_8x8) / its max, resized to 32x32.
    """
    inputs = keras.Input((SIZE, SIZE, 3))
    pick = keras.layers.Conv2D(2, 1, use_bias=False, name="pick")
    pool = keras.layers.AveragePooling2D(4, name="pool")
    head = keras.layers.Dense(2, use_bias=False)
    outputs = head(keras.layers.GlobalAveragePooling2D()(pool(pick(inputs))))
    model = keras.Model(inputs, outputs)
    pick.set_weights([np.eye(3, 2, dtype=np.float32).reshape(1, 1, 3, 2)])
    head.set_weights([np.array([[0.0, a0], [0.0, a1]], np.float32)])
    return model


def images(n: int, seed: int = 0) -> np.ndarray:
    """Model-ready images in [0, 255]."""
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)




def predicted(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.argmax(model(x).numpy(), axis=1)


def test_region_model_computes_its_formula():
    x = images(3)
    np.testing.assert_allclose(region_model()(x).numpy(), region_logits(x), rtol=1e-5)


def test_cam_model_computes_its_formula():
    x = images(2)
    red, green = x[..., 0].mean(axis=(1, 2)), x[..., 1].mean(axis=(1, 2))
    np.testing.assert_allclose(cam_model(2.0, -1.0)(x).numpy()[:, 1], 2 * red - green, rtol=1e-4)
