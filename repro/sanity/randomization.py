"""Randomization checks after the paper: eMPRT, sMPRT's noisy averaging, bottom-up order, null maps,
and the random-logit similarity.

- eMPRT (Hedstroem et al., "A Fresh Look at Sanity Checks for Saliency Maps", 2024, arXiv
  2405.02383): a map's complexity is the entropy of the histogram of its values; the score is the
  relative rise of that complexity from the trained to the fully randomized model. A map that
  ignores the weights scores 0; one that turns to noise when the weights do scores above 0.
- sMPRT (same paper): each map is first averaged over noisy copies of the input, so that the
  comparison between model states is not driven by gradient shattering noise.
- Bottom-up randomization and null-map controls (Binder et al., "Shortcomings of Top-Down
  Randomization-Based Sanity Checks for Evaluations of Deep Neural Network Explanations", CVPR
  2023): top-down randomization can be passed by maps that carry no information about the model
  (a noise map drawn anew per call); the kit scores such maps beside EDGE as controls.
- Random logit (Sixt et al., "When Explanations Lie: Why Many Modified BP Attributions Fail",
  ICML 2020): the map of the predicted class against the map of the other class.

The reference implementation of the first two is Quantus 0.6.0 (its authors' library):
quantus/metrics/randomisation/efficient_mprt.py and smooth_mprt.py; the choices below follow it
and docs/sanity-checks.md says where.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import scipy.stats

from repro.metrics import is_constant, ssim
from repro.protocol import INCEPTION_STATES, LOGITS, ORIGINAL, bottom_up_state

# Quantus 0.6.0 EfficientMPRT: complexity_func=discrete_entropy with n_bins=100 when no binning
# rule is asked for (efficient_mprt.py, find_n_bins; complexity_func.py, discrete_entropy).
EMPRT_BINS = 100
# Quantus 0.6.0 SmoothMPRT defaults: nr_samples=50, noise_magnitude=0.1, std = 0.1 (max - min) of
# each input ("set based on ImageNet experiment in the reference paper", smooth_mprt.py).
SMPRT_SAMPLES = 50
SMPRT_NOISE = 0.1
SIMILARITY_MEASURES = ("ssim", "spearman")


# --- eMPRT ----------------------------------------------------------------------------------------

def histogram_entropy(smap: np.ndarray, *, bins: int = EMPRT_BINS) -> float:
    """eMPRT's complexity of a map: H = -sum_k p_k log p_k over a histogram of its values.

    Hedstroem et al. 2024 (eMPRT: explanation complexity as discrete entropy); the binning and log
    as Quantus 0.6.0 computes it (complexity_func.discrete_entropy: np.histogram(map, bins=100),
    equal-width bins over the map's own min..max, then scipy.stats.entropy of the counts, natural
    log). Values: 0 for a constant map (one bin holds every pixel), log(bins) at most (every bin
    equally full); NaN for a degenerate (NaN) map.
    """
    smap = _map(smap, "histogram_entropy")
    if not (_is_int(bins) and bins >= 1):
        raise ValueError(f"histogram_entropy: bins must be a positive integer, got {bins!r}")
    if np.isnan(smap).any():
        return float("nan")
    counts, _ = np.histogram(smap, bins=int(bins))
    return float(scipy.stats.entropy(counts))


def emprt(original_map: np.ndarray, randomized_map: np.ndarray, *, bins: int = EMPRT_BINS) -> float:
    """eMPRT score of one image: (H(randomized) - H(original)) / H(original), H = histogram_entropy.

    Hedstroem et al. 2024 (eMPRT, "the relative rise in explanation complexity" between the
    original and the fully randomized model); Quantus 0.6.0 efficient_mprt.py computes
    `(b - a) / a` over the two states' complexities. 0 for a map that does not change with the
    weights; NaN when the original map has zero complexity (a constant map: the rise relative to
    nothing is undefined) or either map is NaN.
    """
    a = _map(original_map, "emprt")
    b = _map(randomized_map, "emprt")
    if a.shape != b.shape:
        raise ValueError(f"emprt: expected two maps of the same shape, got {a.shape} and {b.shape}")
    before, after = histogram_entropy(a, bins=bins), histogram_entropy(b, bins=bins)
    if not before > 0:  # zero or NaN
        return float("nan")
    return (after - before) / before


# --- sMPRT ----------------------------------------------------------------------------------------

def noisy_average(explain: Callable[[np.ndarray, int], np.ndarray], images: np.ndarray, *, seed: int,
                  keys: Sequence[Hashable] | None = None, samples: int = SMPRT_SAMPLES,
                  noise: float = SMPRT_NOISE, batch_size: int = 16) -> np.ndarray:
    """sMPRT's denoised maps: each image's map averaged over `samples` noisy copies of it.

    Hedstroem et al. 2024 (sMPRT); as Quantus 0.6.0 SmoothMPRT.explain_smooth_batch computes it:
    copies x + eps with eps ~ N(0, (noise * (max(x) - min(x)))^2) per pixel and channel, the last
    copy noise-free ("to compute the true output"), and the mean of the `samples` maps.

    explain(copies, i): the maps of `copies` (B, H, W, C), all copies of image i, as an array whose
    first axis is B. Phase 2 passes the kit's saliency call with the class fixed to the one
    predicted for the unperturbed image i (a noisy copy must not change which class is
    explained), and raw=True so the mean is taken before post-processing, as Quantus averages
    attributions and normalises after. Calls carry at most `batch_size` copies.
    seed, keys: image i's noise comes from numpy's Generator seeded with (seed, crc32(str(key_i)));
    keys default to the images' positions. Give each (image, model, state) its own key for
    independent noise, the kit's rule for SmoothGrad (docs/protocol.md).
    Returns (N, ...) float64: the mean map of each image. Ours: a copy whose map is degenerate (any
    pixel not finite: the kit's degenerate maps are all NaN, e.g. a Guided Grad-CAM whose Grad-CAM is
    all zero) is left out of its image's mean, as the scores leave degenerate maps out; NaN when every copy's is.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0 or not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"noisy_average: expected a non-empty float batch (N, H, W, C), got "
                         f"{images.dtype} {images.shape}")
    if not (_is_int(samples) and samples >= 1):
        raise ValueError(f"noisy_average: samples must be a positive integer, got {samples!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noisy_average: noise must be a finite number >= 0, got {noise!r}")
    if not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"noisy_average: batch_size must be a positive integer, got {batch_size!r}")
    if not (_is_int(seed) and seed >= 0):
        raise ValueError(f"noisy_average: seed must be an integer >= 0, got {seed!r}")
    keys = list(range(len(images))) if keys is None else list(keys)
    if len(keys) != len(images):
        raise ValueError(f"noisy_average: {len(keys)} keys for {len(images)} images")
    means = []
    for i, (image, key) in enumerate(zip(images, keys)):
        rng = _generator(seed, key)
        std = noise * float(image.max() - image.min())
        eps = rng.standard_normal((samples - 1, *image.shape)) * std
        copies = np.concatenate([image[None] + eps, image[None]]).astype(images.dtype)
        total, used = None, 0
        for start in range(0, samples, batch_size):
            chunk = copies[start:start + batch_size]
            maps = np.asarray(explain(chunk, i), dtype=np.float64)
            if maps.ndim < 1 or len(maps) != len(chunk) or (total is not None and maps.shape[1:] != total.shape):
                raise ValueError(f"noisy_average: explain returned {maps.shape} for {len(chunk)} copies of image {i}"
                                 + ("" if total is None else f"; earlier calls gave maps of shape {total.shape}"))
            defined = np.isfinite(maps.reshape(len(maps), -1)).all(axis=1)   # a degenerate (NaN) map: left out
            total = np.zeros(maps.shape[1:]) if total is None else total
            total += maps[defined].sum(axis=0)
            used += int(defined.sum())
        means.append(total / used if used else np.full(total.shape, np.nan))
    return np.stack(means)


# --- order of randomization -----------------------------------------------------------------------

def top_down_states(states: Sequence[str] = INCEPTION_STATES) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(state, groups randomized in it) of the paper's cascade: the head, then blocks top down.

    `states` is a model's top-down state list, original first (repro.models.cascade.states_of;
    INCEPTION_STATES: original, logits, mixed10, ..., mixed1). State k randomizes the first k
    groups, as cascade_weights does (Adebayo et al. 2018; the paper's Figure 3).
    """
    groups = _groups(states)
    return ((ORIGINAL, ()),) + tuple((group, groups[:k + 1]) for k, group in enumerate(groups))


def bottom_up_states(states: Sequence[str] = INCEPTION_STATES) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(state, groups randomized in it) of bottom-up randomization: the mirror of the top-down cascade.

    The lowest randomized group first (for InceptionV3 mixed1, then mixed2, ..., mixed10, then the
    head "logits"), each state keeping the groups below it randomized: Binder et al. 2023 (bottom-up
    beside top-down) and Quantus' layer_order="bottom_up", which Hedstroem et al. 2024 recommend.
    The groups never randomized top-down (InceptionV3's mixed0 and stem) stay trained here too, so
    the last state randomizes the same weights as the cascade's last. A state is named
    "up_to_<group>" after the group it adds (repro.protocol.bottom_up_state: "up_to_mixed3" has
    mixed1-3 random), never as a top-down state, and repro.models.cascade.cascade_weights takes it.
    """
    groups = _groups(states)[::-1]
    return ((ORIGINAL, ()),) + tuple((bottom_up_state(group), groups[:k + 1]) for k, group in enumerate(groups))


def bottom_up_split(states: Sequence[str] = INCEPTION_STATES) -> tuple[str, tuple[str, ...]]:
    """(first, later) bottom-up states of a model with these top-down states: the first randomizes
    only the lowest group (the bottom-up check's verdict is taken there), the later ones add the
    groups above it one by one. The maps stage plans and the scores read exactly these."""
    first, *later = (state for state, _ in bottom_up_states(states)[1:])
    return first, tuple(later)


def _groups(states: Sequence[str]) -> tuple[str, ...]:
    states = tuple(states)
    if len(states) < 2 or states[0] != ORIGINAL or states[1] != LOGITS:
        raise ValueError(f"expected a top-down state list starting ({ORIGINAL!r}, {LOGITS!r}, ...), got {states}")
    if len(set(states)) != len(states):
        raise ValueError(f"state names repeat: {states}")
    return states[1:]


# --- null maps (Binder et al. 2023) ---------------------------------------------------------------

def constant_map(shape: tuple[int, int], value: float = 0.5) -> np.ndarray:
    """A map that says nothing: every pixel `value` (float32). Score it raw: the kit's
    post-processing turns a constant map into NaN (degenerate) and drops it, as the authors' did."""
    _check_shape(shape, "constant_map")
    if not (np.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"constant_map: value must be in [0, 1] as the kit's maps, got {value!r}")
    return np.full(shape, value, dtype=np.float32)


def noise_map(shape: tuple[int, int], *, seed: int, key: Hashable = "") -> np.ndarray:
    """A map independent of model and image: uniform [0, 1) per pixel (float32), from numpy's
    Generator seeded with (seed, crc32(str(key))). A key per (image, model, state) draws it anew
    per call: its SSIM between states falls to about 0.02, a pass if the test is read as "the
    similarity falls" (Binder et al. 2023), though not under the kit's rule, as two images' noise
    maps are as unalike (the random-pair baseline). One key per image gives the same map in every
    state (SSIM 1). Already in [0, 1] and never degenerate: scorable raw or post-processed."""
    _check_shape(shape, "noise_map")
    if not (_is_int(seed) and seed >= 0):
        raise ValueError(f"noise_map: seed must be an integer >= 0, got {seed!r}")
    return _generator(seed, key).random(shape).astype(np.float32)


# --- random logit (Sixt et al. 2020) --------------------------------------------------------------

def logit_similarity(predicted_map: np.ndarray, other_map: np.ndarray, *, measure: str = "ssim",
                     data_range: float = 2.0) -> float:
    """Similarity of the map explaining the predicted class and the map explaining the other class.

    Sixt et al. 2020 (random-logit test: maps of the explained logit and of a random other logit);
    Quantus 0.6.0 RandomLogit, which implements it, defaults to SSIM (but of the flattened maps,
    1-D windows along raster rows). With the kit's two-class classifiers "a random other logit" is
    the other class. measure="ssim": repro.metrics.ssim (2-D) with the kit's data_range 2 by
    default, so the number sits on the randomization test's scale (Quantus takes the two maps'
    joint range; pass data_range to match it); "spearman": Spearman rank correlation of the pixels
    (Adebayo et al. 2018's other similarity, Quantus' default for MPRT). NaN for a NaN map;
    Spearman is NaN for a constant map (its ranks all tie).
    """
    if measure not in SIMILARITY_MEASURES:
        raise ValueError(f"logit_similarity: measure must be one of {SIMILARITY_MEASURES}, got {measure!r}")
    a = _map(predicted_map, "logit_similarity")
    b = _map(other_map, "logit_similarity")
    if a.shape != b.shape:
        raise ValueError(f"logit_similarity: expected two maps of the same shape, got {a.shape} and {b.shape}")
    if measure == "ssim":
        return ssim(a, b, data_range=data_range)
    if np.isnan(a).any() or np.isnan(b).any() or is_constant(a) or is_constant(b):
        return float("nan")
    return float(scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic)


# --- helpers --------------------------------------------------------------------------------------

def _map(smap, name: str) -> np.ndarray:
    smap = np.asarray(smap, dtype=np.float64)
    if smap.ndim != 2 or smap.size == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D map, got shape {smap.shape}")
    if np.isinf(smap).any():
        raise ValueError(f"{name}: the map has infinite values")
    return smap


def _check_shape(shape, name: str) -> None:
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(_is_int(s) and s >= 1 for s in shape)):
        raise ValueError(f"{name}: shape must be a tuple of two positive integers (H, W), got {shape!r}")


def _generator(seed: int, key: Hashable) -> np.random.Generator:
    """numpy's Generator for (seed, key): crc32 of the key's text, so the draw is the same in every
    process (Python's hash() of a string is salted per process)."""
    return np.random.default_rng([int(seed), zlib.crc32(str(key).encode())])


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
