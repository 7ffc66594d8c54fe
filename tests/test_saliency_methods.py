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
from benchmarks.reference import stock_call_model_function
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
    from repro.saliency.gradcam import legacy_resize
    pooled = x.reshape(3, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    for how, upsample in (("centred", resize), ("legacy", legacy_resize)):
        cams = saliency_maps(cam_model(1.0, -1.0), x, "GCAM", target=1, raw=True, resize=how)
        for cam, p in zip(cams, pooled):
            expected = np.maximum(p[..., 0] - p[..., 1], 0)
            np.testing.assert_allclose(cam, upsample(expected / expected.max(), (32, 32)), atol=1e-5)


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
    if method == "GCAM":
        params["resize"] = "centred"     # stock PAIR resizes with skimage
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


# XRAI's ranking: PAIR's algorithm, bit for bit --------------------------------------------------

@pytest.mark.parametrize("case", ["smooth", "ties", "partial area", "small image"])
def test_rank_regions_is_pairs_full_xrai_bit_for_bit(case):
    from scipy.ndimage import gaussian_filter
    from saliency.core.xrai import _get_segments_felzenszwalb
    from repro.saliency.xrai import rank_regions
    rng = np.random.default_rng(3)
    size = 40 if case == "small image" else 96
    grey = gaussian_filter(rng.uniform(0, 255, (size, size)), 2)
    segments = _get_segments_felzenszwalb(np.repeat(grey[..., None], 3, axis=-1))
    attr = gaussian_filter(rng.normal(size=(size, size)), 3).astype(np.float32)
    if case == "ties":   # whole blocks of equal attribution: equal gains, the first segment wins
        attr = np.round(attr * 2).astype(np.float32)
    threshold = 0.4 if case == "partial area" else 1.0
    reference, _ = pair.XRAI._xrai(attr, segments, area_perc_th=threshold, min_pixel_diff=50)
    ours = rank_regions(attr, segments, area_threshold=threshold)
    assert ours.dtype == reference.dtype and len(segments) > 20
    np.testing.assert_array_equal(ours, reference)


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
        channels = (3,) if method in ("GRAD", "SG", "IG", "SIG", "GBP", "GIG", "BIG", "OCC") else ()
        assert raw.shape == (2, 32, 32, *channels) and raw.dtype == np.float32
        maps = saliency_maps(model, x, method, **fast(method))
        assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
        assert maps.min() == 0 and maps.max() == 1
        np.testing.assert_allclose(maps, postprocess(raw, method), atol=1e-6)


# Degenerate maps ---------------------------------------------------------------------------------

def test_all_zero_gradcam_is_a_degenerate_all_nan_map():
    """a0 = a1 = -1 on positive images: every weighted sum is negative, ReLU leaves zeros; the
    authors' division by the maximum made such a map NaN, and it is dropped from the scores."""
    model, x = cam_model(-1.0, -1.0), images(2, seed=13)
    assert not saliency_maps(model, x, "GCAM", target=1, raw=True).any()
    for method in ("GCAM", "GGCAM"):
        maps = saliency_maps(model, x, method, target=1)
        assert np.isnan(maps).all() and is_degenerate(maps).all()


def test_degenerate_maps_post_process_to_nan_and_real_maps_never_do():
    raw = np.zeros((5, 16, 16, 3), np.float32)
    raw[1, 0, 0] = np.nan                       # non-finite gradient
    raw[2] = 5.0                                # constant
    raw[3, :, :4] = 1.0                         # a quarter of the pixels above the floor: a real map
    raw[4, 0, 0] = 1.0                          # one pixel in 256 above the floor: the 99th percentile is the floor
    maps = postprocess(raw, "GRAD")
    np.testing.assert_array_equal(np.isnan(maps).all(axis=(1, 2)), [True, True, True, False, True])
    assert not np.isnan(maps[3]).any() and maps[3].min() == 0 and maps[3].max() == 1
    np.testing.assert_array_equal(is_degenerate(maps), [True, True, True, False, True])
    np.testing.assert_array_equal(is_degenerate(raw), [True, True, True, False, False])


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


# The authors' Grad-CAM resize ----------------------------------------------------------------------

@pytest.mark.parametrize("shape,out", [((2, 2), (128, 128)), ((9, 9), (320, 320)), ((3, 5), (17, 40))])
def test_legacy_resize_is_tf1_resize_bilinear(shape, out):
    """TF1's tf.image.resize_bilinear defaults (align_corners=False, half_pixel_centers=False),
    which the authors' PAIR GradCam used, from TensorFlow's own legacy op."""
    import tensorflow as tf

    from repro.saliency.gradcam import legacy_resize
    cam = np.random.default_rng(0).random(shape).astype(np.float32)
    expected = tf.compat.v1.image.resize_bilinear(cam[None, ..., None], out, align_corners=False,
                                                  half_pixel_centers=False).numpy()[0, ..., 0]
    np.testing.assert_allclose(legacy_resize(cam, out), expected, rtol=1e-6, atol=1e-6)
    centred = resize(cam, out)
    assert np.abs(centred - expected).max() > 0.01      # the half-cell shift the option is about


def test_gradcam_resize_option_chooses_the_upsampling():
    x, model = images(2, seed=4), cam_model(1.0, -1.0)
    legacy = saliency_maps(model, x, "GCAM", target=1, raw=True, resize="legacy")
    centred = saliency_maps(model, x, "GCAM", target=1, raw=True, resize="centred")
    np.testing.assert_array_equal(legacy, saliency_maps(model, x, "GCAM", target=1, raw=True))  # the default
    assert legacy.shape == centred.shape == (2, 32, 32) and not np.allclose(legacy, centred)
    assert load_preset("paper")["GCAM"]["resize"] == load_preset("authors_code")["GCAM"]["resize"] == "legacy"


# The two backends ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM"])
def test_pair_backend_equals_the_batched_backend(model, method):
    """backend="pair" runs PAIR's own classes image by image; it gives the batched engine's maps."""
    x = images(3, seed=15)
    batched = saliency_maps(model, x, method, seed=5, batch_size=4, **fast(method))
    reference = saliency_maps(model, x, method, seed=5, batch_size=4, backend="pair", **fast(method))
    np.testing.assert_allclose(batched, reference, atol=1e-4)
    with pytest.raises(ValueError, match="backend must be one of"):
        saliency_maps(model, x, method, backend="captum")


# SmoothGrad noise per model and state --------------------------------------------------------------

def test_noise_is_independent_per_model_and_state_and_repeatable():
    from repro.evaluation.plan import noise_seed
    seeds = {(m, s): noise_seed(0, "independent", m, s) for m in ("r1", "r2") for s in ("original", "mixed1")}
    assert len(set(seeds.values())) == 4
    assert seeds == {(m, s): noise_seed(0, "independent", m, s) for m, s in seeds}
    assert {noise_seed(0, "shared", m, s) for m, s in seeds} == {0}
    assert noise_seed(1, "independent", "r1", "original") != seeds[("r1", "original")]
    # The noise itself: the same image under two states' seeds gets different draws.
    x = images(1, seed=16)[0]
    first, second = (image_rng(x, seeds[("r1", s)]).normal(size=8) for s in ("original", "mixed1"))
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, image_rng(x, seeds[("r1", "original")]).normal(size=8))
