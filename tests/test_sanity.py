"""repro.sanity against known answers: analytic cases from each paper's definition, scikit-learn /
scikit-image / scipy, and Quantus where it implements the same computation.

Quantus is a test-only dependency and is not in the kit's requirements: its wheel imports OpenCV at
the top of quantus/functions/perturb_func.py (for rotations the kit does not use) and its TensorFlow
extra pins keras<3. The Quantus tests run where `quantus` and `cachetools` are importable, e.g.
    pip install --target .testdeps --no-deps quantus cachetools
    PYTHONPATH=.testdeps pytest tests/test_sanity.py
(OpenCV, when absent, is replaced by an empty module for the import only; no function used here
calls it), and are skipped with that reason elsewhere.
"""
import importlib
import sys
import types

import numpy as np
import pytest
import scipy.special
import scipy.stats

from repro.metrics import auprc, ssim
from repro.protocol import INCEPTION_STATES, LOGITS, ORIGINAL
from repro.sanity import (bottom_up_states, constant_map, emprt, histogram_entropy, logit_similarity,
                          noise_map, noisy_average, top_down_states)


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
        pytest.skip(f"Quantus not importable ({err}): pip install --target .testdeps --no-deps quantus "
                    "cachetools, then PYTHONPATH=.testdeps")
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
        added_up = [state for state, _ in up[1:]]
        assert added_up == added_down[::-1]                  # groups in the reverse order
        for k in range(1, len(states)):
            assert up[k][1] == tuple(added_up[:k]) and down[k][1] == tuple(added_down[:k])   # cumulative
        assert set(up[-1][1]) == set(down[-1][1]) == set(states[1:])   # both end fully randomized
    assert [s for s, _ in bottom_up_states()] == [ORIGINAL] + [f"mixed{k}" for k in range(1, 11)] + [LOGITS]


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


# --- null maps -----------------------------------------------------------------------------------

def test_null_maps_and_how_they_score():
    from repro.saliency.postprocessing import postprocess
    constant = constant_map((128, 128))                          # the kit's map size
    assert constant.dtype == np.float32 and np.all(constant == 0.5)
    a = noise_map((128, 128), seed=0, key="img1/inception_r1/original")
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() < 1
    assert np.array_equal(a, noise_map((128, 128), seed=0, key="img1/inception_r1/original"))
    b = noise_map((128, 128), seed=0, key="img1/inception_r1/mixed1")
    # Raw, both controls are scorable: the constant never changes (SSIM 1, fails randomization),
    # a noise map drawn per state never agrees with itself: SSIM near C2 / (2 var + C2) = 0.021
    # (data range 2, uniform noise var 1/12), it "passes" (Binder et al.).
    assert ssim(constant, constant) == 1.0 and ssim(a, a) == 1.0
    assert 0.0 < ssim(a, b) < 0.04
    # Through the kit's post-processing the constant is degenerate, and a constant "up to a tiny
    # perturbation" is stretched by the min-max into a full-range noise map: neither is a constant.
    assert np.isnan(postprocess(constant[None], "GCAM")).all()
    nudged = postprocess((constant.astype(np.float64) + 1e-6 * a)[None], "GCAM")[0]
    assert nudged.min() == 0.0 and nudged.max() == 1.0 and np.corrcoef(nudged.ravel(), a.ravel())[0, 1] > 0.99
    # Utility and eMPRT of the controls.
    mask = square_mask(128, slice(0, 32), slice(0, 32))         # 1/16 of the image
    assert (auprc(mask, constant), auprc(mask, constant, method="average_precision")) == pytest.approx(
        ((1 + 1 / 16) / 2, 1 / 16))
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


# --- messages at the door ------------------------------------------------------------------------

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
])
def test_bad_input_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()
