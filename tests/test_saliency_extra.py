"""GIG, BIG, OCC, GCAMPP, SCAM and LCAM (repro.saliency.extra): known answers on a linear model and
a one-conv model, equality with PAIR called directly, and no stale copy of the model."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import saliency.core as pair
import tensorflow as tf
from saliency.core.base import OUTPUT_LAYER_VALUES
from scipy.ndimage import gaussian_filter, zoom

from repro.saliency import extra
from repro.saliency.context import Context
from benchmarks.reference import stock_call_model_function
from repro.saliency.segments import SegmentCache


def context(model, target=1, batch_size=4, input_range=(0.0, 1.0)) -> Context:
    return Context(model=model, target=target, batch_size=batch_size, seed=0,
                   input_range=input_range, segments=SegmentCache())


def images(n, size, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def linear():
    """logits = flatten(x) @ W + b on 8x8x3 inputs."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    rng = np.random.default_rng(1)
    model.layers[-1].set_weights([rng.normal(size=(192, 2)).astype(np.float32),
                                  np.array([0.3, -0.2], np.float32)])
    return model


def linear_weights(model, target):
    return model.layers[-1].get_weights()[0][:, target].reshape(8, 8, 3)


def conv_model(seed=0):
    """16x16x3 -> Conv2D(4, stride 2) -> "relu" (8x8x4) -> global average pool -> 3 logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inputs)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


@pytest.fixture(scope="module")
def conv():
    return conv_model()


def layer_values(model, x, target):
    """The "relu" activations (N, 8, 8, 4), their gradients of the target logit, and the logits."""
    probe = keras.Model(model.inputs, [model.get_layer("relu").output, model.output])
    with tf.GradientTape() as tape:
        a, logits = probe(tf.constant(x))
        score = logits[:, target]
    return a.numpy(), tape.gradient(score, a).numpy(), logits.numpy()


def expand(cams):
    return zoom(cams, (1, 2, 2), order=1)


def output_call_model_function(model):
    """Eager PAIR call_model_function giving the target logit (OUTPUT_LAYER_VALUES)."""
    def call(x_value_batch, call_model_args=None, expected_keys=None):
        return {OUTPUT_LAYER_VALUES: model(x_value_batch).numpy()[:, call_model_args["target"]]}
    return call


# GIG ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("baseline, fraction, max_dist", [("black", 0.25, 0.02), (0.5, 1.0, 1.0),
                                                         ("white", 0.1, 0.5)])
def test_guided_ig_is_complete_on_a_linear_model(linear, baseline, fraction, max_dist):
    x = images(2, 8)
    maps = extra.guided_ig(context(linear), x, x_steps=20, baseline=baseline, fraction=fraction,
                           max_dist=max_dist)
    base = {"black": 0.0, "white": 1.0}.get(baseline, baseline)
    gap = linear(x).numpy()[:, 1] - linear(np.full_like(x, base)).numpy()[:, 1]
    assert maps.shape == x.shape and maps.dtype == np.float32
    np.testing.assert_allclose(maps.sum(axis=(1, 2, 3)), gap, rtol=1e-4)
    # Along any path a linear model's attribution is w * (x - baseline).
    np.testing.assert_allclose(maps, linear_weights(linear, 1) * (x - base), atol=1e-5)


def test_guided_ig_equals_pair_with_the_stock_call(conv):
    x = images(2, 16, seed=2)
    maps = extra.guided_ig(context(conv, target=2), x, x_steps=10, baseline="black",
                           fraction=0.25, max_dist=0.1)
    call = stock_call_model_function(conv)
    for smap, image in zip(maps, x):
        expected = pair.GuidedIG().GetMask(image, call, {"target": 2},
                                           x_baseline=np.zeros_like(image), x_steps=10,
                                           fraction=0.25, max_dist=0.1)
        np.testing.assert_allclose(smap, expected, atol=1e-5)


# BIG ---------------------------------------------------------------------------------------------

def test_blur_ig_is_about_complete_on_a_linear_model(linear):
    """Gradients are constant, so the sum is w . (x - blur(x, max_sigma)) up to the Riemann sum."""
    x = images(2, 8, seed=3)
    maps = extra.blur_ig(context(linear), x, x_steps=200, max_sigma=3.0, grad_step=0.001,
                         sqrt=False)
    blurred = np.stack([gaussian_filter(image, sigma=[3, 3, 0], mode="constant") for image in x])
    gap = ((x - blurred) * linear_weights(linear, 1)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(maps.sum(axis=(1, 2, 3)), gap, rtol=0.01,
                               atol=0.01 * np.abs(gap).max())
    # Each value's share too: w * (x - blurred x).
    expected = linear_weights(linear, 1) * (x - blurred)
    np.testing.assert_allclose(maps, expected, atol=0.01 * np.abs(expected).max())


@pytest.mark.parametrize("sqrt", [False, True])
def test_blur_ig_equals_pair_one_step_at_a_time(conv, sqrt):
    """Equal to PAIR's BlurIG at batch_size=1; with sqrt=True PAIR's batched loop is wrong (each
    batch is weighted by its last row's sigma step) and extra.blur_ig must not inherit that."""
    x = images(2, 16, seed=4)
    params = dict(max_sigma=4.0, steps=8, grad_step=0.01, sqrt=sqrt)
    maps = extra.blur_ig(context(conv, target=0, batch_size=4), x, x_steps=8, max_sigma=4.0,
                         grad_step=0.01, sqrt=sqrt)
    call = stock_call_model_function(conv)
    for smap, image in zip(maps, x):
        expected = pair.BlurIG().GetMask(image, call, {"target": 0}, batch_size=1, **params)
        np.testing.assert_allclose(smap, expected, rtol=1e-4, atol=1e-6)
    if sqrt:
        batched = pair.BlurIG().GetMask(x[0], call, {"target": 0}, batch_size=4, **params)
        assert not np.allclose(batched, maps[0], rtol=1e-3)


# OCC ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.0, 0.5])
def test_occlusion_is_the_hand_computed_sum_on_a_linear_model(linear, value):
    x = images(2, 8, seed=5)
    size = 3
    maps = extra.occlusion(context(linear, target=0), x, size=size, value=value, stride=1)
    # The logit lost per occluded value, in float64 (the model's float32 logits differ by ~1e-5).
    contribution = linear_weights(linear, 0).astype(np.float64) * (x - value)
    expected = np.zeros(x.shape)
    for r in range(8 - size + 1):
        for c in range(8 - size + 1):
            window = (slice(None), slice(r, r + size), slice(c, c + size))
            expected[window] += contribution[window].sum(axis=(1, 2, 3))[:, None, None, None]
    np.testing.assert_allclose(maps, expected, atol=1e-4)


def test_occlusion_equals_pair_with_an_eager_call(conv):
    x = images(2, 16, seed=6)
    maps = extra.occlusion(context(conv, target=1), x, size=4, value=0.25, stride=1)
    call = output_call_model_function(conv)
    for smap, image in zip(maps, x):
        expected = pair.Occlusion().GetMask(image, call, {"target": 1}, size=4, value=0.25)
        np.testing.assert_allclose(smap, expected, atol=1e-5)


def test_occlusion_stride_visits_every_stride_th_window(linear):
    x = images(1, 8, seed=7)
    contribution = linear_weights(linear, 0).astype(np.float64) * x
    expected = np.zeros(x.shape)
    for r in (0, 2, 4):
        for c in (0, 2, 4):
            window = (slice(None), slice(r, r + 4), slice(c, c + 4))
            expected[window] += contribution[window].sum(axis=(1, 2, 3))[:, None, None, None]
    maps = extra.occlusion(context(linear, target=0), x, size=4, value=0.0, stride=2)
    np.testing.assert_allclose(maps, expected, atol=1e-4)


# CAMs --------------------------------------------------------------------------------------------

def numpy_layercam(a, g):
    return np.maximum((np.maximum(g, 0) * a).sum(axis=-1), 0)


def numpy_gradcam_plus_plus(a, g, logits):
    """Grad-CAM++'s closed form for S = exp(logit) (Chattopadhay 2018, eq. 19), with
    tf-keras-vis's guards (0/0 -> 0) and its alphas scaled to sum to one over positions."""
    s = np.exp(logits)[:, None, None, None]
    first, second, third = s * g, s * g ** 2, s * g ** 3
    denominator = 2 * second + third * a.sum(axis=(1, 2), keepdims=True)
    alphas = second / (denominator + (second == 0))
    total = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / (total + (total == 0))
    weights = (np.maximum(first, 0) * alphas).sum(axis=(1, 2), keepdims=True)
    return np.maximum((weights * a).sum(axis=-1), 0)


def numpy_scorecam(model, x, a, target, channels):
    """Score-CAM (Wang 2020): channel k weighs softmax_target(model(x * mask_k)), mask_k its
    activation upsampled (linear, edge 'nearest') and scaled to [0, 1]."""
    cams = []
    for image, acts in zip(x, a):
        acts = acts[..., channels]
        up = zoom(acts, (2, 2, 1), order=1, mode="nearest")
        low, high = up.min(axis=(0, 1)), up.max(axis=(0, 1))
        masks = (up - low) / (high - low + keras.config.epsilon())
        masked = image[None] * np.moveaxis(masks, -1, 0)[..., None]
        weights = tf.nn.softmax(model(masked)).numpy()[:, target]
        cams.append(np.maximum((acts * weights).sum(axis=-1), 0))
    return np.stack(cams)


@pytest.mark.parametrize("method", ["gradcam_plus_plus", "layercam", "scorecam"])
def test_cams_have_the_input_size_and_use_the_predicted_class(conv, method):
    x = images(3, 16, seed=7)
    params = {"layer": None} | ({"max_n": None} if method == "scorecam" else {})
    maps = getattr(extra, method)(context(conv, target="predicted", batch_size=2), x, **params)
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32 and np.isfinite(maps).all()
    predicted = np.argmax(conv(x).numpy(), axis=1)
    for i, cls in enumerate(predicted):
        one = getattr(extra, method)(context(conv, target=int(cls)), x[i:i + 1], **params)
        np.testing.assert_allclose(maps[i], one[0], rtol=1e-5, atol=1e-7)


def test_layercam_is_the_hand_computed_map(conv):
    x = images(3, 16, seed=8)
    maps = extra.layercam(context(conv, target=1, batch_size=2), x, layer="relu")
    a, g, _ = layer_values(conv, x, 1)
    expected = numpy_layercam(a, g)
    assert expected.max() > 0
    np.testing.assert_allclose(maps, expand(expected), rtol=1e-4, atol=1e-7)


def test_gradcam_plus_plus_is_the_closed_form(conv):
    x = images(3, 16, seed=9)
    maps = extra.gradcam_plus_plus(context(conv, target=0, batch_size=2), x, layer="relu")
    a, g, logits = layer_values(conv, x, 0)
    expected = numpy_gradcam_plus_plus(a, g, logits[:, 0])
    assert expected.max() > 0
    np.testing.assert_allclose(maps, expand(expected), rtol=1e-4, atol=1e-7)


def test_scorecam_full_and_faster_are_the_hand_computed_maps(conv):
    x = images(2, 16, seed=10)
    ctx = context(conv, target=1, batch_size=3)
    a, _, _ = layer_values(conv, x, 1)
    full = extra.scorecam(ctx, x, layer="relu", max_n=None)
    np.testing.assert_allclose(full, expand(numpy_scorecam(conv, x, a, 1, [0, 1, 2, 3])),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(extra.scorecam(ctx, x, layer="relu", max_n=4), full, rtol=1e-6)
    # Faster Score-CAM: each image keeps its own two channels of largest spatial std.
    faster = extra.scorecam(ctx, x, layer="relu", max_n=2)
    for i in range(2):
        top = list(np.argsort(-a[i].std(axis=(0, 1)))[:2])
        expected = expand(numpy_scorecam(conv, x[i:i + 1], a[i:i + 1], 1, top))
        np.testing.assert_allclose(faster[i:i + 1], expected, rtol=1e-4, atol=1e-6)


# In-place weight changes (cascading randomization) ----------------------------------------------

def test_maps_follow_in_place_weight_changes():
    model = conv_model(seed=3)
    x = images(2, 16, seed=11)
    calls = {"GCAMPP": lambda ctx: extra.gradcam_plus_plus(ctx, x, layer="relu"),
             "LCAM": lambda ctx: extra.layercam(ctx, x, layer="relu"),
             "SCAM": lambda ctx: extra.scorecam(ctx, x, layer="relu", max_n=None),
             "OCC": lambda ctx: extra.occlusion(ctx, x, size=4, value=0.0, stride=1),
             "GIG": lambda ctx: extra.guided_ig(ctx, x, x_steps=5, baseline="black",
                                                fraction=0.25, max_dist=0.1)}
    before = {name: call(context(model, target=0)) for name, call in calls.items()}
    conv_layer = model.get_layer("conv")
    kernel, bias = conv_layer.get_weights()
    conv_layer.set_weights([np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32),
                            bias])
    after = {name: call(context(model, target=0)) for name, call in calls.items()}
    for name in calls:
        assert not np.allclose(before[name], after[name]), name
    a, g, _ = layer_values(model, x, 0)
    np.testing.assert_allclose(after["LCAM"], expand(numpy_layercam(a, g)), rtol=1e-4, atol=1e-7)
