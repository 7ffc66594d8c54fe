"""The eight methods: known answers on analytic models, equality with PAIR's unbatched path,
guided backprop, determinism, targets, degenerate maps and errors."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import saliency.core as pair
from skimage.transform import resize
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation
from tf_keras_vis.utils.scores import CategoricalScore

from repro.saliency import (METHODS, is_degenerate, load_preset, postprocess, saliency_maps)
from repro.saliency.engine import engine_for
from repro.saliency.reference import stock_call_model_function
from repro.saliency.smoothing import image_rng
from tests.test_saliency_models import (cam_model, cnn, images, predicted, region_logits,
                                        region_masks, region_model)

FAST = {"SG": {"nsamples": 4}, "SIG": {"nsamples": 3, "x_steps": 5}, "IG": {"x_steps": 8},
        "XRAI": {"x_steps": 5}}


def fast(method: str) -> dict:
    """Cheap sampling parameters for tests that are not about sampling."""
    return FAST.get(method, {})


@pytest.fixture(scope="module")
def model():
    return cnn()


# Known answers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GRAD", "SG", "IG", "SIG"])
def test_maps_concentrate_in_the_region_the_logit_reads(method):
    x = images(4, seed=1)
    maps = saliency_maps(region_model(), x, method, **fast(method))
    for smap, cls in zip(maps, np.argmax(region_logits(x), axis=1)):
        inside = region_masks()[cls]
        assert smap[inside].sum() / smap.sum() > 0.9


def test_ig_is_complete_on_the_quadratic_model():
    """Each attribution is w x^2 / 255^2 exactly (the mean of linspace(0, 1) is 1/2), so they
    sum to f(x) - f(0)."""
    x = images(3, seed=2)
    attributions = saliency_maps(region_model(), x, "IG", target=1, raw=True, x_steps=7)
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), region_logits(x)[:, 1], rtol=1e-4)


@pytest.mark.parametrize("baseline", ["black", "white", 100.0])
def test_ig_is_about_complete_on_a_relu_cnn(model, baseline):
    x = images(2, seed=3)
    attributions = saliency_maps(model, x, "IG", target=2, raw=True, x_steps=300,
                                 baseline=baseline)
    base_value = {"black": 0.0, "white": 255.0}.get(baseline, baseline)
    gap = model(x).numpy()[:, 2] - model(np.full_like(x, base_value)).numpy()[:, 2]
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), gap, rtol=0.02,
                               atol=0.02 * np.abs(gap).max())


def test_gradcam_gives_the_hand_computed_map():
    x = images(3, seed=4)
    cams = saliency_maps(cam_model(1.0, -1.0), x, "GCAM", target=1, raw=True)
    pooled = x.reshape(3, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    for cam, p in zip(cams, pooled):
        expected = np.maximum(p[..., 0] - p[..., 1], 0)
        np.testing.assert_allclose(cam, resize(expected / expected.max(), (32, 32)), atol=1e-5)


# The same numbers as PAIR's own classes, one image and one call at a time ------------------------

def _pair_reference(method, model, x, target, params, seed):
    """PAIR core's classes driven by the stock eager call_model_function, batch size 1."""
    args = {"target": int(target)}
    call = stock_call_model_function(model)
    noise_for = lambda: image_rng(x, seed).normal  # noqa: E731  (the noise saliency_maps draws)
    if method == "GRAD":
        return pair.GradientSaliency().GetMask(x, call, args)
    if method == "IG":
        return pair.IntegratedGradients().GetMask(x, call, args, x_steps=params["x_steps"],
                                                  x_baseline=np.zeros_like(x))
    if method == "GCAM":
        return pair.GradCam().GetMask(x, stock_call_model_function(model, "last_relu"), args,
                                      three_dims=False)
    if method == "XRAI":
        return pair.XRAI().GetMask(x, call, args,
                                   extra_parameters=pair.XRAIParameters(steps=params["x_steps"]))
    smoothing = dict(stdev_spread=params["stdev_spread"], nsamples=params["nsamples"],
                     magnitude=params["magnitude"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np.random, "normal", noise_for())
        if method == "SG":
            return pair.GradientSaliency().GetSmoothedMask(x, call, args, **smoothing)
        return pair.IntegratedGradients().GetSmoothedMask(
            x, call, args, x_steps=params["x_steps"], x_baseline=np.zeros_like(x), **smoothing)


@pytest.mark.parametrize("method", ["GRAD", "SG", "IG", "SIG", "GCAM", "XRAI"])
def test_batched_maps_equal_pair_unbatched(model, method):
    x = images(3, seed=5)
    params = {**load_preset("paper")[method], **fast(method)}
    ours = saliency_maps(model, x, method, raw=True, batch_size=4, seed=7, **params)
    for image, mine, target in zip(x, ours, predicted(model, x)):
        reference = _pair_reference(method, model, image, target, params, seed=7)
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize("method", ["GRAD", "SIG", "GCAM"])
def test_batch_size_does_not_change_maps(model, method):
    x = images(5, seed=6)
    one, many = (saliency_maps(model, x, method, raw=True, batch_size=b, **fast(method))
                 for b in (1, 7))
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-6 * np.abs(one).max())


def test_engine_answers_every_key_in_one_call(model):
    engine = engine_for(model, "last_relu")
    out = engine.call_model_function(images(3), {"target": 1}, [
        pair.INPUT_OUTPUT_GRADIENTS, pair.CONVOLUTION_LAYER_VALUES,
        pair.CONVOLUTION_OUTPUT_GRADIENTS, pair.OUTPUT_LAYER_VALUES])
    assert out[pair.INPUT_OUTPUT_GRADIENTS].shape == (3, 32, 32, 3)
    assert out[pair.CONVOLUTION_LAYER_VALUES].shape == (3, 16, 16, 8)
    assert out[pair.CONVOLUTION_OUTPUT_GRADIENTS].shape == (3, 16, 16, 8)
    np.testing.assert_allclose(out[pair.OUTPUT_LAYER_VALUES], model(images(3)).numpy()[:, 1],
                               rtol=1e-5)
    assert len(engine._functions) == 1


# Guided backprop ---------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:The structure of `inputs`")  # tf-keras-vis passes a list
def test_gbp_equals_tf_keras_vis_guided_gradients_and_differs_from_grad(model):
    x = images(3, seed=8)
    targets = predicted(model, x)
    ours = saliency_maps(model, x, "GBP", raw=True)
    reference = Saliency(model, model_modifier=GuidedBackpropagation())(
        CategoricalScore(list(targets)), x, gradient_modifier=None, normalize_map=False,
        keepdims=True)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    plain = saliency_maps(model, x, "GRAD", raw=True)
    assert np.abs(ours - plain).max() > 0.1 * np.abs(plain).max()


def test_gbp_leaves_the_model_untouched():
    model = cnn(seed=1)
    x = images(2, seed=9)
    weights = [w.copy() for w in model.get_weights()]
    activations = [getattr(layer, "activation", None) for layer in model.layers]
    logits, gradients = model(x).numpy(), saliency_maps(model, x, "GRAD", raw=True)
    saliency_maps(model, x, "GBP")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert activations == [getattr(layer, "activation", None) for layer in model.layers]
    np.testing.assert_array_equal(model(x).numpy(), logits)
    np.testing.assert_array_equal(saliency_maps(model, x, "GRAD", raw=True), gradients)


@pytest.mark.parametrize("method", ["GRAD", "GBP", "GCAM"])
def test_cached_engines_follow_weights_changed_in_place(method):
    """Cascading randomization re-initializes one model copy in place between states."""
    model, other, x = cnn(seed=4), cnn(seed=5), images(2, seed=14)
    before = saliency_maps(model, x, method, raw=True)
    model.set_weights(other.get_weights())
    after = saliency_maps(model, x, method, raw=True)
    np.testing.assert_allclose(after, saliency_maps(other, x, method, raw=True), rtol=1e-5,
                               atol=1e-7)
    assert not np.allclose(before, after)


# Determinism, targets ----------------------------------------------------------------------------

def test_same_seed_same_maps_whatever_the_batch(model):
    x = images(3, seed=10)
    first = saliency_maps(model, x, "SG", seed=3, **fast("SG"))
    np.testing.assert_array_equal(first, saliency_maps(model, x, "SG", seed=3, **fast("SG")))
    alone = saliency_maps(model, x[1:2], "SG", seed=3, **fast("SG"))
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)
    assert not np.allclose(first, saliency_maps(model, x, "SG", seed=4, **fast("SG")), atol=1e-3)


@pytest.mark.parametrize("method", ["GRAD", "IG"])
def test_target_index_and_predicted(method):
    """GRAD finds the predicted class in its own forward pass, IG with a separate one."""
    x = images(4, seed=11)
    x[:2, 20:28, 18:26] = 255.0  # images 0, 1 predict class 1 (bright region 1)
    x[2:, 4:12, 4:12] = 255.0    # images 2, 3 predict class 0
    model = region_model()
    by_class = [saliency_maps(model, x, method, target=c, raw=True, **fast(method)) for c in (0, 1)]
    chosen = saliency_maps(model, x, method, raw=True, **fast(method))
    np.testing.assert_allclose(chosen[:2], by_class[1][:2], rtol=1e-6)
    np.testing.assert_allclose(chosen[2:], by_class[0][2:], rtol=1e-6)
    assert not np.allclose(by_class[0], by_class[1])


def test_raw_shapes_and_postprocess_round_trip(model):
    x = images(2, seed=12)
    for method in METHODS:
        raw = saliency_maps(model, x, method, raw=True, **fast(method))
        channels = (3,) if method in ("GRAD", "SG", "IG", "SIG", "GBP") else ()
        assert raw.shape == (2, 32, 32, *channels) and raw.dtype == np.float32
        maps = saliency_maps(model, x, method, **fast(method))
        assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
        assert maps.min() == 0 and maps.max() == 1
        np.testing.assert_allclose(maps, postprocess(raw, method), atol=1e-6)


# Degenerate maps ---------------------------------------------------------------------------------

def test_all_zero_gradcam_gives_zero_maps_flagged_never_nan():
    """a0 = a1 = -1 on positive images: every weighted sum is negative, ReLU leaves zeros."""
    model, x = cam_model(-1.0, -1.0), images(2, seed=13)
    for method in ("GCAM", "GGCAM"):
        maps = saliency_maps(model, x, method, target=1)
        assert not np.isnan(maps).any() and not maps.any()
        assert is_degenerate(maps).all()


def test_postprocess_never_returns_nan():
    raw = np.zeros((4, 8, 8, 3), np.float32)
    raw[1, 0, 0] = np.nan                       # non-finite gradient
    raw[2] = 5.0                                # constant
    raw[3, :, :4] = 1.0                         # half the pixels above the floor: a real map
    maps = postprocess(raw, "GRAD")
    assert not np.isnan(maps).any()
    np.testing.assert_array_equal(is_degenerate(maps), [True, True, True, False])
    np.testing.assert_array_equal(is_degenerate(raw), [True, True, True, False])


# Errors ------------------------------------------------------------------------------------------

def test_unknown_method_or_parameter_is_a_clear_error(model):
    x = images(1)
    with pytest.raises(ValueError, match="valid: .*'GRAD'.*'GGCAM'"):
        saliency_maps(model, x, "LIME")
    with pytest.raises(ValueError,
                       match=r"IG has no parameter \['steps'\]; valid: \['x_steps', 'baseline'\]"):
        saliency_maps(model, x, "IG", steps=10)
    with pytest.raises(ValueError, match="x_steps must be a positive integer"):
        saliency_maps(model, x, "IG", x_steps=0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        saliency_maps(model, x, "IG", baseline="gray")
    with pytest.raises(ValueError, match="unknown preset"):
        saliency_maps(model, x, "IG", preset="mine")
    with pytest.raises(ValueError, match="target must be"):
        saliency_maps(model, x, "GRAD", target=3)
    with pytest.raises(ValueError, match="images must be"):
        saliency_maps(model, x[0], "GRAD")
    with pytest.raises(ValueError, match="not a layer of the model"):
        saliency_maps(model, x, "GCAM", layer="mixed10")
    with pytest.raises(ValueError, match="no layer with a 4-D output"):
        saliency_maps(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                        keras.layers.Dense(2)]), x, "GCAM")
