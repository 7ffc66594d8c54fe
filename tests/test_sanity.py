"""repro.sanity against known answers: analytic cases from each paper's definition, scikit-learn /
scikit-image / scipy, and Quantus where it implements the same computation.

Quantus is a test-only dependency and is not in the kit's requirements: its wheel imports OpenCV at
the top of quantus/functions/perturb_func.py (for rotations the kit does not use) and its TensorFlow
extra pins keras<3. The Quantus tests run where `quantus` and `cachetools` are importable: `make
test` installs them with
    pip install --target .testdeps --no-deps quantus==0.6.0 cachetools
and tests/conftest.py puts .testdeps on the path (OpenCV, when absent, is replaced by an empty module for the import only; no function used here
calls it), and are skipped with that reason elsewhere.
"""
import importlib
import sys
import types

import numpy as np
import pytest
import scipy.special
import scipy.stats
from skimage.filters import threshold_otsu
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

from repro.metrics import ssim
from repro.protocol import INCEPTION_STATES, LOGITS, ORIGINAL
from repro.sanity import (CHEXLOCALIZE_THRESHOLDS, ROAD_FRACTIONS, binarize_otsu, binarize_threshold,
                          bottom_up_states, constant_map, curve_auc, deletion_curve, emprt,
                          histogram_entropy, hit_rate, insertion_curve, iou, localization_iou,
                          logit_similarity, mean_iou, noise_map, noisy_average,
                          noisy_linear_imputation, pointing_hit, precision_scores, rise_blur,
                          road_curve, top_down_states, tune_threshold)
from repro.sanity.faithfulness import NEIGHBOUR_WEIGHTS


@pytest.fixture(scope="module")
def quantus():
    """Quantus 0.6.0, imported beside Keras 3 / numpy 2, or a skip saying why not."""
    stubbed = False
    try:
        importlib.import_module("cv2")
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")   # quantus imports it at the top, uses it for rotations only
        stubbed = True
    try:
        module = importlib.import_module("quantus")
    except ImportError as err:
        pytest.skip(f"Quantus not importable ({err}): pip install --target .testdeps --no-deps quantus==0.6.0 "
                    "cachetools (make test does)")
    finally:
        if stubbed:
            del sys.modules["cv2"]
    return module


def square_mask(size=16, rows=slice(4, 8), cols=slice(4, 8)):
    mask = np.zeros((size, size), bool)
    mask[rows, cols] = True
    return mask


def channel_first_model(seed=0, hidden=None):
    """A small Keras 3 classifier on (1, 8, 8) inputs (Quantus reads channel-first models correctly)."""
    import keras
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((1, 8, 8))
    x = keras.layers.Flatten()(inputs)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def probability_of(model, klass):
    """predict for repro.sanity: (B, 8, 8, 1) images -> softmax probability of `klass`."""
    def predict(images):
        logits = model.predict(np.moveaxis(images, -1, 1), verbose=0)
        return scipy.special.softmax(logits, axis=-1)[:, klass]
    return predict


# --- eMPRT --------------------------------------------------------------------------------------

def test_histogram_entropy_known_answers():
    assert histogram_entropy(np.full((8, 8), 0.3)) == 0.0                          # one bin
    assert histogram_entropy(np.arange(100.0).reshape(10, 10)) == pytest.approx(np.log(100))  # every bin once
    halves = np.zeros((8, 8))
    halves[:4] = 1.0
    assert histogram_entropy(halves) == pytest.approx(np.log(2))
    four_levels = np.repeat([0.0, 1 / 3, 2 / 3, 1.0], 16).reshape(8, 8)
    assert histogram_entropy(four_levels) == pytest.approx(np.log(4))
    assert histogram_entropy(four_levels, bins=2) == pytest.approx(np.log(2))    # two levels per bin
    assert np.isnan(histogram_entropy(np.full((8, 8), np.nan)))
    rng = np.random.default_rng(0)
    smap = rng.random((32, 32))
    counts, _ = np.histogram(smap, bins=100)
    p = counts[counts > 0] / counts.sum()
    assert histogram_entropy(smap) == pytest.approx(-(p * np.log(p)).sum())


def test_emprt_known_answers():
    rng = np.random.default_rng(1)
    smap = rng.random((16, 16))
    assert emprt(smap, smap) == 0.0                          # a map independent of the weights
    halves = np.zeros((8, 8))
    halves[:4] = 1.0
    four_levels = np.repeat([0.0, 1 / 3, 2 / 3, 1.0], 16).reshape(8, 8)
    assert emprt(halves, four_levels) == pytest.approx(1.0)   # log 4 / log 2 - 1
    assert emprt(four_levels, halves) == pytest.approx(-0.5)
    assert np.isnan(emprt(np.zeros((8, 8)), four_levels))      # zero complexity to rise from
    assert np.isnan(emprt(halves, np.full((8, 8), np.nan)))
    smooth = np.add.outer(np.linspace(0, 1, 16) ** 4, np.zeros(16))  # most pixels in few bins
    assert emprt(smooth, rng.random((16, 16))) > 0.1           # turning to noise raises complexity


def test_entropy_matches_quantus(quantus):
    from quantus.functions.complexity_func import discrete_entropy
    rng = np.random.default_rng(2)
    for bins in (100, 37):
        for smap in (rng.random((20, 20)), rng.random((20, 20)) ** 6, np.round(rng.random((20, 20)), 1)):
            assert histogram_entropy(smap, bins=bins) == pytest.approx(
                discrete_entropy(a=smap, x=smap, n_bins=bins), abs=1e-12)


def test_emprt_matches_quantus_efficient_mprt(quantus):
    """Quantus' EfficientMPRT on a Keras 3 model, explained by a function of its hidden weights: the
    kit's emprt of the maps Quantus produced for the trained and the fully randomized model equals
    Quantus' score image by image."""
    model = channel_first_model(hidden=64)
    produced = []

    def explain(model, inputs, targets, **kwargs):
        model = model.get_model() if hasattr(model, "get_model") else model
        weights = model.get_layer("hidden").get_weights()[0]
        maps = np.abs(np.asarray(inputs).reshape(len(inputs), 64) @ weights).reshape(len(inputs), 1, 8, 8)
        produced.append(maps)
        return maps

    rng = np.random.default_rng(3)
    images = rng.random((4, 1, 8, 8)).astype("float32")
    scores = quantus.EfficientMPRT(disable_warnings=True)(
        model=model, x_batch=images, y_batch=np.zeros(4, int), a_batch=None, channel_first=True,
        explain_func=explain)
    # Calls: the batch's explanations, the binning pass, the trained model, the fully randomized one.
    trained, randomized = produced[-2], produced[-1]
    assert not np.allclose(trained, randomized)
    for i in range(4):
        assert emprt(trained[i, 0], randomized[i, 0]) == pytest.approx(scores[i], rel=1e-12)


# --- sMPRT's noisy average -----------------------------------------------------------------------

def test_noisy_average_known_answers():
    rng = np.random.default_rng(4)
    images = (255 * rng.random((2, 64, 64, 1))).astype(np.float32)
    fixed = rng.random((2, 64, 64))
    ignores_input = noisy_average(lambda copies, i: np.repeat(fixed[i][None], len(copies), 0), images, seed=0)
    np.testing.assert_allclose(ignores_input, fixed, rtol=1e-12)
    identity = lambda copies, i: copies[..., 0]  # noqa: E731
    np.testing.assert_allclose(noisy_average(identity, images, seed=0, noise=0.0), images[..., 0], rtol=1e-6)
    np.testing.assert_allclose(noisy_average(identity, images, seed=0, samples=1), images[..., 0], rtol=1e-6)
    # The mean of 49 noisy copies and one clean: its deviation has sd noise (max - min) sqrt(49) / 50.
    averaged = noisy_average(identity, images, seed=0)
    for image, mean in zip(images, averaged):
        expected = 0.1 * (image.max() - image.min()) * np.sqrt(49) / 50
        assert np.std(mean - image[..., 0]) == pytest.approx(expected, rel=0.05)


def test_noisy_average_leaves_degenerate_maps_out():
    """A copy whose map is NaN (degenerate) is left out of the mean; NaN when every copy's is."""
    images = np.ones((2, 8, 8, 1))

    def explain(copies, i):      # image 0: the noisy copies' maps NaN, the clean copy's ones; image 1: all NaN
        maps = np.full((len(copies), 8, 8), np.nan if i == 1 else 5.0)
        if i == 0:
            maps[np.abs(copies - 1).max(axis=(1, 2, 3)) > 0] = np.nan   # every noisy copy
            maps[np.abs(copies - 1).max(axis=(1, 2, 3)) == 0] = 1.0     # the image itself
        return maps

    means = noisy_average(explain, images, seed=0, samples=6, batch_size=4)
    assert np.array_equal(means[0], np.ones((8, 8))) and np.isnan(means[1]).all()


def test_noisy_average_calls_batches_and_seeds():
    rng = np.random.default_rng(5)
    images = rng.random((3, 8, 8, 2)).astype(np.float32)
    calls = []

    def explain(copies, i):
        calls.append((i, copies.copy()))
        return copies.sum(axis=-1)

    first = noisy_average(explain, images, seed=7, samples=10, batch_size=4)
    assert [len(c) for _, c in calls] == [4, 4, 2] * 3 and [i for i, _ in calls] == [0] * 3 + [1] * 3 + [2] * 3
    for i in range(3):
        copies = np.concatenate([c for j, c in calls if j == i])
        assert np.array_equal(copies[-1], images[i])                               # the clean copy, last
        assert not any(np.array_equal(c, images[i]) for c in copies[:-1])          # every other noisy
    assert np.array_equal(noisy_average(explain, images, seed=7, samples=10, batch_size=50), first)
    assert not np.array_equal(noisy_average(explain, images, seed=8, samples=10), first)
    keyed = noisy_average(explain, images, seed=7, samples=10, keys=["a", "b", "c"])
    again = noisy_average(explain, images[[2, 0, 1]], seed=7, samples=10, keys=["c", "a", "b"])
    np.testing.assert_array_equal(keyed[[2, 0, 1]], again)        # an image's noise follows its key


def test_noisy_average_same_convention_as_quantus(quantus, monkeypatch):
    """Quantus' SmoothMPRT draws the same kind of copies: N calls, the last noise-free, the rest with
    sd 0.1 (max - min) per image. (Its noise is numpy's global state, so values cannot match.)"""
    rng = np.random.default_rng(6)
    images = (255 * rng.random((2, 1, 48, 48))).astype(np.float64)
    seen = []

    def record(model, inputs, targets, **kwargs):
        seen.append(np.array(inputs))
        return np.array(inputs)

    monkeypatch.setattr(quantus, "explain", record)
    metric = quantus.SmoothMPRT(nr_samples=20, abs=False, normalise=False, disable_warnings=True)
    metric.explain_smooth_batch(model=None, x_batch=images, y_batch=np.zeros(2, int))
    ours = []
    noisy_average(lambda copies, i: ours.append(copies) or copies[..., 0], np.moveaxis(images, 1, -1),
                  seed=0, samples=20, batch_size=20)
    assert len(seen) == 20 and np.array_equal(seen[-1], images)
    for i, image in enumerate(images):
        scale = 0.1 * (image.max() - image.min())
        quantus_sd = np.std(np.stack([s[i] for s in seen[:-1]]) - image) / scale
        kit_sd = np.std(ours[i][:-1, ..., 0] - image[0]) / scale
        assert quantus_sd == pytest.approx(1.0, rel=0.02) and kit_sd == pytest.approx(1.0, rel=0.02)
        assert np.array_equal(ours[i][-1, ..., 0], image[0])


# --- order of randomization ----------------------------------------------------------------------

def test_bottom_up_is_the_mirror_of_top_down():
    for states in (INCEPTION_STATES, (ORIGINAL, LOGITS, "block1", "block2", "block3")):
        down, up = top_down_states(states), bottom_up_states(states)
        assert down[0] == up[0] == (ORIGINAL, ())
        assert len(down) == len(up) == len(states)
        added_down = [state for state, _ in down[1:]]
        added_up = [groups[-1] for _, groups in up[1:]]
        assert added_up == added_down[::-1]                  # groups in the reverse order
        assert [state for state, _ in up[1:]] == [f"up_to_{group}" for group in added_up]   # never a top-down name
        for k in range(1, len(states)):
            assert up[k][1] == tuple(added_up[:k]) and down[k][1] == tuple(added_down[:k])   # cumulative
        assert set(up[-1][1]) == set(down[-1][1]) == set(states[1:])   # both end fully randomized
    assert [s for s, _ in bottom_up_states()] == [ORIGINAL] + [f"up_to_mixed{k}" for k in range(1, 11)] + ["up_to_logits"]


def test_top_down_states_are_what_the_cascade_randomizes():
    import keras
    from repro.models.cascade import _plan, cascade_weights, states_of
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    x = inputs
    for k in range(3):
        x = keras.layers.Conv2D(2, 3, padding="same", name=f"conv{k}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    plan = _plan(model, 3)
    trained = [w for layer in model.layers for w in layer.get_weights()]
    owners = [layer.name for layer in model.layers for _ in layer.get_weights()]
    for state, groups in top_down_states(states_of(model, groups=3)):
        weights = cascade_weights(model, state, groups=3)
        changed = {name for name, a, b in zip(owners, trained, weights) if not np.array_equal(a, b)}
        # Every weighted layer of the state's groups is re-drawn (its kernel at least), no other.
        assert changed == {name for g in groups for name in plan[g] if model.get_layer(name).weights}
    full = cascade_weights(model, top_down_states(states_of(model, groups=3))[-1][0], groups=3)
    for state, groups in bottom_up_states(states_of(model, groups=3))[1:]:
        weights = cascade_weights(model, state, groups=3)
        changed = [j for j, (a, b) in enumerate(zip(trained, weights)) if not np.array_equal(a, b)]
        assert {owners[j] for j in changed} == {name for g in groups for name in plan[g] if model.get_layer(name).weights}
        # ... with the top-down states' fresh values, so the last bottom-up state is the cascade's last.
        assert all(np.array_equal(weights[j], full[j]) for j in changed)
    assert all(np.array_equal(a, b) for a, b in zip(weights, full))
    with pytest.raises(ValueError, match="up_to_<group>"):
        cascade_weights(model, "up_to_nothing", groups=3)


# --- null maps -----------------------------------------------------------------------------------

def test_null_maps_and_how_they_score():
    from repro.saliency.postprocessing import postprocess
    constant = constant_map((128, 128))                          # the kit's map size
    assert constant.dtype == np.float32 and np.all(constant == 0.5)
    a = noise_map((128, 128), seed=0, key="img1/inception_r1/original")
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() < 1
    assert np.array_equal(a, noise_map((128, 128), seed=0, key="img1/inception_r1/original"))
    b = noise_map((128, 128), seed=0, key="img1/inception_r1/mixed1")
    other_image = noise_map((128, 128), seed=0, key="img2/inception_r1/original")
    # Raw, both controls are scorable: the constant never changes (SSIM 1), a noise map drawn per
    # state never agrees with itself: SSIM near C2 / (2 var + C2) = 0.021 (data range 2, uniform
    # noise var 1/12), which reads as a pass if "the similarity falls" is the test (Binder et al.),
    # but is also its random-pair baseline, so the kit's rule does not pass it.
    assert ssim(constant, constant) == 1.0 and ssim(a, a) == 1.0
    assert 0.0 < ssim(a, b) < 0.04 and abs(ssim(a, b) - ssim(a, other_image)) < 0.02
    # Through the kit's post-processing the constant is degenerate, and a constant "up to a tiny
    # perturbation" is stretched by the min-max into a full-range noise map: neither is a constant.
    assert np.isnan(postprocess(constant[None], "GCAM")).all()
    nudged = postprocess((constant.astype(np.float64) + 1e-6 * a)[None], "GCAM")[0]
    assert nudged.min() == 0.0 and nudged.max() == 1.0 and np.corrcoef(nudged.ravel(), a.ravel())[0, 1] > 0.99
    # Utility and eMPRT of the controls.
    mask = square_mask(128, slice(0, 32), slice(0, 32))         # 1/16 of the image
    assert precision_scores(mask, constant) == pytest.approx(((1 + 1 / 16) / 2, 1 / 16))
    assert np.isnan(emprt(constant, constant))
    assert abs(emprt(a, b)) < 0.002                              # about log(100) both


# --- random logit --------------------------------------------------------------------------------

def test_logit_similarity_known_answers():
    rng = np.random.default_rng(7)
    a, b = rng.random((16, 16)), rng.random((16, 16))
    assert logit_similarity(a, a) == pytest.approx(1.0)
    assert logit_similarity(a, a, measure="spearman") == pytest.approx(1.0)
    assert logit_similarity(a, 1 - a, measure="spearman") == pytest.approx(-1.0)
    assert logit_similarity(a, b) == ssim(a, b)
    assert logit_similarity(a, b, data_range=1.0) == ssim(a, b, data_range=1.0)
    assert logit_similarity(a, b, measure="spearman") == pytest.approx(scipy.stats.spearmanr(a.ravel(), b.ravel())[0])
    assert np.isnan(logit_similarity(a, np.full((16, 16), 0.5), measure="spearman"))
    assert np.isnan(logit_similarity(a, np.full((16, 16), np.nan)))


def test_logit_similarity_matches_quantus(quantus):
    from quantus.functions.similarity_func import correlation_spearman
    from quantus.functions.similarity_func import ssim as quantus_ssim
    rng = np.random.default_rng(8)
    a, b = rng.random((16, 16)), rng.random((16, 16)) ** 2
    joint = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    assert logit_similarity(a, b, data_range=joint) == pytest.approx(quantus_ssim(a, b), abs=1e-12)
    assert logit_similarity(a, b, measure="spearman") == pytest.approx(correlation_spearman(a.ravel(), b.ravel()))


# --- deletion and insertion ----------------------------------------------------------------------

def region_model(region):
    """The model's 'probability' is the mean of the pixels in `region` (images of ones: 1 untouched)."""
    return lambda images: images[:, region, 0].mean(axis=1)


def test_deletion_and_insertion_by_hand():
    image = np.ones((4, 4, 1))
    region = np.zeros((4, 4), bool)
    region[:2, :2] = True
    predict = region_model(region)
    on_target = region.astype(float)
    # Four steps of four pixels: the region goes in the first step.
    curve = deletion_curve(image, on_target, predict, 4)
    np.testing.assert_array_equal(curve.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(curve.scores, [1, 0, 0, 0, 0])
    assert curve.auc == 0.125                                   # 0.25 * (1 + 0) / 2
    # Pixel by pixel: 1, .75, .5, .25, then 0 over 12 sixteenths: (1/16) * (7/8 + 5/8 + 3/8 + 1/8).
    assert deletion_curve(image, on_target, predict, 16).auc == pytest.approx(0.125)
    assert deletion_curve(image, 1 - on_target, predict, 16).auc == pytest.approx(12 / 16 + 0.125)
    assert insertion_curve(image, on_target, predict, 16, substrate="zeros").auc == pytest.approx(1 - 0.125)
    assert insertion_curve(image, 1 - on_target, predict, 16, substrate=0.0).auc == pytest.approx(0.125)
    # A model blind to the order: every map gives the straight line from 1 to 0.
    rng = np.random.default_rng(9)
    mean_model = lambda images: images.mean(axis=(1, 2, 3))  # noqa: E731
    assert deletion_curve(image, rng.random((4, 4)), mean_model, 16).auc == pytest.approx(0.5)
    # Ties go in raster order: a constant map deletes pixel (0, 0) first.
    first_pixel = lambda images: images[:, 0, 0, 0]  # noqa: E731
    np.testing.assert_array_equal(deletion_curve(image, np.zeros((4, 4)), first_pixel, 16).scores[:3], [1, 0, 0])
    assert curve_auc([0, 0.5, 1], [1, 1, 0]) == pytest.approx(0.75)


def test_perturbation_curves_batch_and_degenerate_maps():
    rng = np.random.default_rng(10)
    image = rng.random((6, 5, 3)).astype(np.float32)
    smap = rng.random((6, 5))
    seen = []

    def predict(images):
        seen.append(images.copy())
        return images.mean(axis=(1, 2, 3))

    curve = deletion_curve(image, smap, predict, 7, batch_size=3)
    assert [len(b) for b in seen] == [3, 3, 2]
    every = np.concatenate(seen)
    assert np.array_equal(every[0], image) and np.array_equal(every[-1], np.zeros_like(image))
    np.testing.assert_array_equal(deletion_curve(image, smap, predict, 7, batch_size=64).scores, curve.scores)
    np.testing.assert_allclose(curve.fractions, np.round(np.linspace(0, 30, 8)) / 30)
    # The most relevant pixel goes first.
    changed = np.any(every[1] != image, axis=-1)
    assert changed[np.unravel_index(np.argmax(smap), smap.shape)]
    seen.clear()
    inserted = insertion_curve(image, smap, predict, 7)
    np.testing.assert_allclose(seen[0][0], rise_blur(image), rtol=1e-6)
    assert np.array_equal(seen[-1][-1], image) and inserted.scores[-1] == pytest.approx(image.mean())

    def never(images):
        raise AssertionError("a NaN map has no order; the model must not be called")

    nan_map = np.full((6, 5), np.nan)
    assert np.isnan(deletion_curve(image, nan_map, never, 7).scores).all()
    assert np.isnan(insertion_curve(image, nan_map, never, 7).auc)


def test_rise_blur():
    image = np.full((32, 32, 2), 100.0)
    blurred = rise_blur(image)
    np.testing.assert_allclose(blurred[5:-5, 5:-5], 100.0)      # the kernel sums to 1
    assert blurred[0, 0, 0] < blurred[0, 16, 0] < 100.0          # zero padding darkens the border
    rng = np.random.default_rng(11)
    noisy = rng.random((32, 32, 1))
    assert np.std(rise_blur(noisy)[5:-5, 5:-5]) < 0.2 * np.std(noisy)


def test_deletion_matches_quantus_pixel_flipping(quantus):
    """Quantus' PixelFlipping (black = 0 baseline, 4 pixels a step) on a Keras 3 model: its curve is
    the kit's deletion curve after the first point (Quantus does not score the unperturbed image)."""
    model = channel_first_model(seed=1)
    rng = np.random.default_rng(12)
    images = rng.random((3, 1, 8, 8)).astype("float32")
    maps = rng.permutation(192).reshape(3, 1, 8, 8) / 191.0     # no ties
    classes = np.array([0, 1, 1])
    curves = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, normalise=False,
                                   disable_warnings=True)(
        model=model, x_batch=images, y_batch=classes, a_batch=maps, channel_first=True)
    for i in range(3):
        ours = deletion_curve(np.moveaxis(images[i], 0, -1), maps[i, 0], probability_of(model, classes[i]), 16,
                              baseline=0.0)
        np.testing.assert_allclose(ours.scores[1:], curves[i], rtol=1e-5, atol=1e-6)


# --- ROAD ----------------------------------------------------------------------------------------

def test_imputation_of_a_ramp_is_exact():
    rows, cols = np.mgrid[:12, :15]
    ramp = np.stack([3.0 * rows - 2.0 * cols + 7.0, 0.5 * cols - rows], axis=-1)
    removed = np.zeros((12, 15), bool)
    removed[3:8, 4:11] = True
    removed[9, 2] = True
    imputed = noisy_linear_imputation(ramp, removed, noise=0.0)
    np.testing.assert_allclose(imputed, ramp, atol=1e-10)
    assert np.array_equal(noisy_linear_imputation(ramp[..., 0], removed, noise=0.0)[~removed], ramp[..., 0][~removed])


def test_imputation_solves_the_mean_of_neighbours_and_stays_in_range():
    rng = np.random.default_rng(13)
    image = 255 * rng.random((20, 17, 3))
    removed = rng.random((20, 17)) < 0.7
    imputed = noisy_linear_imputation(image, removed, noise=0.0)
    assert np.array_equal(imputed[~removed], image[~removed])
    assert image[~removed].min() <= imputed[removed].min() and imputed[removed].max() <= image[~removed].max()
    for r, c in zip(*np.nonzero(removed)):        # each removed pixel: the weighted mean of its neighbours
        total, weight = 0.0, 0.0
        for (dr, dc), w in NEIGHBOUR_WEIGHTS:
            if 0 <= r + dr < 20 and 0 <= c + dc < 17:
                total, weight = total + w * imputed[r + dr, c + dc], weight + w
        np.testing.assert_allclose(imputed[r, c], total / weight, atol=1e-9)
    noisy = noisy_linear_imputation(image, removed, rng=np.random.default_rng(0))
    assert np.std(noisy[removed] - imputed[removed]) == pytest.approx(0.01 * 255, rel=0.05)
    assert np.array_equal(noisy[~removed], image[~removed])


def test_imputation_matches_quantus(quantus):
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation
    rng = np.random.default_rng(14)
    for fraction in (0.1, 0.5, 0.9):
        image = rng.random((3, 16, 16))
        removed = rng.random((16, 16)) < fraction
        theirs = quantus_imputation(image, np.flatnonzero(removed), noise=0.0)
        ours = noisy_linear_imputation(np.moveaxis(image, 0, -1), removed, noise=0.0)
        np.testing.assert_allclose(np.moveaxis(ours, -1, 0), theirs, atol=1e-10)


def test_road_known_answers():
    image = np.zeros((16, 16, 1))
    region = square_mask(16)                      # 16 of 256 pixels
    image[region] = 255.0
    predict = lambda images: images[:, region, 0].mean(axis=1) / 255  # noqa: E731
    fractions = (16 / 256, 0.5)
    morf = road_curve(image, region.astype(float), predict, fractions, seed=0, noise=0.0)
    lerf = road_curve(image, region.astype(float), predict, fractions, order="lerf", seed=0, noise=0.0)
    # MoRF removes the square first, imputed from its black surround: gone. LeRF removes background.
    np.testing.assert_allclose(morf.scores, [0, 0], atol=1e-12)
    np.testing.assert_allclose(lerf.scores, [1, 1])
    # A constant image imputes to itself: ROAD leaves no trace of where pixels were removed.
    flat = np.full((16, 16, 1), 80.0)
    curve = road_curve(flat, np.random.default_rng(0).random((16, 16)), lambda x: x.mean(axis=(1, 2, 3)) / 80,
                       seed=0, noise=0.0)
    np.testing.assert_allclose(curve.scores, 1.0)
    assert tuple(curve.fractions) == ROAD_FRACTIONS
    # The same arguments give the same curve; the seed changes the imputation noise.
    rng = np.random.default_rng(15)
    image, smap = 255 * rng.random((16, 16, 1)), rng.random((16, 16))
    mean = lambda x: x.mean(axis=(1, 2, 3)) / 255  # noqa: E731
    first = road_curve(image, smap, mean, seed=3)
    assert np.array_equal(first.scores, road_curve(image, smap, mean, seed=3, batch_size=2).scores)
    assert not np.array_equal(first.scores, road_curve(image, smap, mean, seed=4).scores)

    def never(images):
        raise AssertionError("a NaN map has no order; the model must not be called")

    assert np.isnan(road_curve(image, np.full((16, 16), np.nan), never, seed=0).scores).all()


def test_road_matches_quantus(quantus):
    """Quantus' ROAD (MoRF, noise 0) reports whether the class survives each fraction: that is the
    kit's ROAD probability above 0.5 for a two-class model. The model is linear, centred on the
    images' mean so that removals flip its class, and the maps rank the pixels by their share of
    the logit (no ties, far beyond the 1e-4 tie-breaker)."""
    model = channel_first_model(seed=2)
    rng = np.random.default_rng(16)
    images = rng.random((8, 1, 8, 8)).astype("float32")
    weights = 3 * rng.normal(size=64)
    centre = images.reshape(8, 64).mean(axis=0)
    model.get_layer("logits").set_weights([np.stack([np.zeros(64), weights], 1), np.array([0.0, -weights @ centre])])
    share = np.abs(weights * (images.reshape(8, 64) - centre))
    maps = (np.argsort(np.argsort(share, axis=1), axis=1) / 63.0).reshape(8, 1, 8, 8)
    classes = np.argmax(model.predict(images, verbose=0), axis=-1)
    percentages = [10, 30, 50, 70, 90]
    theirs = quantus.ROAD(percentages=percentages, noise=0.0, normalise=False, disable_warnings=True)(
        model=model, x_batch=images, y_batch=classes, a_batch=maps, channel_first=True)
    survived = np.array([road_curve(np.moveaxis(images[i], 0, -1), maps[i, 0], probability_of(model, classes[i]),
                                    [p / 100 for p in percentages], seed=0, noise=0.0).scores > 0.5
                         for i in range(8)])
    assert 0 < survived.mean() < 1                               # the classes do flip
    np.testing.assert_allclose([theirs[p] for p in percentages], survived.mean(axis=0))


# --- localization --------------------------------------------------------------------------------

def test_a_map_equal_to_the_mask_scores_perfectly():
    mask = square_mask()
    smap = mask.astype(float)
    assert np.array_equal(binarize_otsu(smap), mask) and localization_iou(mask, smap) == 1.0
    for threshold in CHEXLOCALIZE_THRESHOLDS:
        assert localization_iou(mask, smap, threshold=threshold) == 1.0
    assert pointing_hit(mask, smap) == 1.0 and pointing_hit(mask, smap, ties="any") == 1.0
    assert precision_scores(mask, smap) == (1.0, 1.0)


def test_a_constant_map():
    mask = square_mask()
    constant = np.full((16, 16), 0.5)
    assert not binarize_otsu(constant).any() and not binarize_threshold(constant, 0.2).any()
    assert np.isnan(localization_iou(mask, constant))                               # true positives only
    assert localization_iou(mask, constant, true_positive_only=False) == 0.0
    assert pointing_hit(mask, constant) == 0.0                  # np.argmax takes pixel (0, 0)
    assert pointing_hit(mask, constant, ties="any") == 1.0      # Quantus counts any tied maximum
    assert precision_scores(mask, constant) == pytest.approx(((1 + 1 / 16) / 2, 1 / 16))
    nan_map = np.full((16, 16), np.nan)
    assert np.isnan(localization_iou(mask, nan_map)) and np.isnan(pointing_hit(mask, nan_map))
    assert np.isnan(precision_scores(mask, nan_map).average_precision)


def test_iou_by_hand_and_empty_cases():
    mask, prediction = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    prediction[1:3, 1:3] = True
    assert iou(mask, prediction) == pytest.approx(1 / 7)
    empty = np.zeros((6, 6), bool)
    assert np.isnan(iou(mask, empty)) and iou(mask, empty, true_positive_only=False) == 0.0
    assert np.isnan(iou(empty, prediction)) and iou(empty, prediction, true_positive_only=False) == 0.0
    assert np.isnan(iou(empty, empty, true_positive_only=False))
    assert mean_iou([0.5, np.nan, 1.0]) == 0.75 and np.isnan(mean_iou([np.nan]))
    assert hit_rate([1.0, 0.0, np.nan, 1.0]) == pytest.approx(2 / 3)


def test_otsu_binarization():
    rng = np.random.default_rng(17)
    smap = 0.2 * rng.random((32, 32))
    ring = np.zeros((32, 32), bool)
    ring[8:20, 8:20] = True
    ring[11:17, 11:17] = False
    smap[ring] += 0.7
    smap[28, 28] = 0.95                                         # a one-pixel spike
    eight_bit = (255 * (smap - smap.min()) / (smap.max() - smap.min())).astype(np.uint8)
    plain = binarize_otsu(smap, contour_fill=False)
    assert np.array_equal(plain, eight_bit > threshold_otsu(eight_bit))
    assert np.array_equal(plain, ring | (np.arange(32 * 32).reshape(32, 32) == 28 * 32 + 28))
    filled = binarize_otsu(smap)
    solid = np.zeros((32, 32), bool)
    solid[8:20, 8:20] = True
    assert np.array_equal(filled, solid)                        # hole filled, the spike dropped
    assert np.array_equal(binarize_threshold(smap, 0.5), (smap - smap.min()) / (smap.max() - smap.min()) > 0.5)


def test_threshold_tuning_finds_the_best_threshold():
    def map_of(mask):
        smap = np.where(mask, 1.0, 0.45)          # after min-max the background sits at 0.45 ...
        smap[15, 15] = 0.0                         # ... because one pixel is the minimum
        return smap

    masks = [square_mask(), square_mask(rows=slice(9, 13))]
    tuning = tune_threshold([map_of(m) for m in masks], masks)
    assert tuning.thresholds == CHEXLOCALIZE_THRESHOLDS
    np.testing.assert_allclose(tuning.mean_ious, [16 / 255] * 3 + [1.0] * 4)  # all but one pixel, then the mask
    assert tuning.threshold == 0.5                               # the first of the best
    assert np.isnan(tune_threshold([np.full((16, 16), np.nan)], masks[:1]).threshold)


def test_pointing_game_ties_and_quantus(quantus):
    mask = square_mask()
    smap = np.zeros((16, 16))
    smap[0, 0] = smap[5, 5] = 1.0                 # two maxima, the second inside
    assert pointing_hit(mask, smap) == 0.0 and pointing_hit(mask, smap, ties="any") == 1.0
    assert np.isnan(pointing_hit(np.zeros((16, 16), bool), smap))
    rng = np.random.default_rng(18)
    maps = np.round(rng.random((20, 16, 16)), 1)                 # many ties
    masks = rng.random((20, 16, 16)) < 0.2
    theirs = quantus.PointingGame(disable_warnings=True).evaluate_batch(a_batch=maps, s_batch=masks)
    ours = [pointing_hit(m, a, ties="any") for m, a in zip(masks, maps)]
    np.testing.assert_array_equal(np.asarray(theirs, dtype=float), ours)


def test_precision_scores_match_sklearn():
    rng = np.random.default_rng(19)
    mask = rng.random((20, 20)) < 0.1
    smap = rng.random((20, 20)) + 0.3 * mask
    precision, recall, _ = precision_recall_curve(mask.ravel(), smap.ravel())
    scores = precision_scores(mask, smap)
    assert scores.trapezoid == pytest.approx(auc(recall, precision))
    assert scores.average_precision == pytest.approx(average_precision_score(mask.ravel(), smap.ravel()))


# --- messages at the door ------------------------------------------------------------------------

IMAGE = np.zeros((4, 4, 1))


@pytest.mark.parametrize("call, message", [
    (lambda: histogram_entropy(np.zeros(4)), "2-D map"),
    (lambda: histogram_entropy(np.zeros((4, 4)), bins=0), "positive integer"),
    (lambda: emprt(np.zeros((4, 4)), np.zeros((5, 5))), "same shape"),
    (lambda: emprt(np.full((4, 4), np.inf), np.zeros((4, 4))), "infinite"),
    (lambda: noisy_average(lambda c, i: c, np.zeros((4, 4, 1)), seed=0), r"\(N, H, W, C\)"),
    (lambda: noisy_average(lambda c, i: c, np.zeros((1, 4, 4, 1)), seed=0, keys=["a", "b"]), "2 keys for 1"),
    (lambda: noisy_average(lambda c, i: c[:1], np.zeros((1, 4, 4, 1)), seed=0, samples=3), "explain returned"),
    (lambda: noisy_average(lambda c, i: c, np.zeros((1, 4, 4, 1)), seed=-1), "seed"),
    (lambda: bottom_up_states(("logits", "original")), "starting"),
    (lambda: noise_map((4,), seed=0), "two positive integers"),
    (lambda: constant_map((4, 4), value=2.0), r"\[0, 1\]"),
    (lambda: logit_similarity(np.zeros((8, 8)), np.zeros((8, 8)), measure="pearson"), "measure"),
    (lambda: deletion_curve(IMAGE, np.zeros((4, 5)), lambda x: x.mean((1, 2, 3)), 4), "image's size"),
    (lambda: deletion_curve(IMAGE, np.zeros((4, 4)), lambda x: x.mean((1, 2, 3)), 17), "steps"),
    (lambda: deletion_curve(IMAGE, np.zeros((4, 4)), lambda x: x.mean((1, 2)), 4), "one probability per image"),
    (lambda: deletion_curve(IMAGE, np.zeros((4, 4)), lambda x: x.mean((1, 2, 3)), 4, baseline="mean"), "baseline"),
    (lambda: insertion_curve(IMAGE, np.zeros((4, 4)), lambda x: x.mean((1, 2, 3)), 4, substrate=np.zeros(3)), "shape"),
    (lambda: curve_auc([0, 1, 0.5], [1, 1, 1]), "increase"),
    (lambda: noisy_linear_imputation(np.zeros((4, 4)), np.ones((4, 4), bool), noise=0.0), "every pixel"),
    (lambda: noisy_linear_imputation(np.zeros((4, 4)), np.eye(4, dtype=bool)), "rng"),
    (lambda: noisy_linear_imputation(np.zeros((4, 4)), np.zeros((4, 5), bool)), "removed of shape"),
    (lambda: road_curve(IMAGE, np.zeros((4, 4)), lambda x: x.mean((1, 2, 3)), [0.5, 1.0], seed=0), "fractions"),
    (lambda: road_curve(IMAGE, np.zeros((4, 4)), lambda x: x.mean((1, 2, 3)), order="up", seed=0), "order"),
    (lambda: binarize_otsu(np.full((4, 4), np.nan)), "degenerate"),
    (lambda: binarize_threshold(np.zeros((4, 4)), 1.5), r"\[0, 1\]"),
    (lambda: iou(np.zeros((4, 4)), np.zeros((4, 5))), "same shape"),
    (lambda: iou(np.full((4, 4), 2), np.zeros((4, 4))), "boolean or 0/1"),
    (lambda: localization_iou(np.zeros((4, 4)), np.zeros((4, 4)), threshold="mean"), "otsu"),
    (lambda: tune_threshold([np.zeros((4, 4))], []), "as many maps as masks"),
    (lambda: pointing_hit(np.zeros((4, 4)), np.zeros((4, 4)), ties="last"), "ties"),
])
def test_bad_input_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()
