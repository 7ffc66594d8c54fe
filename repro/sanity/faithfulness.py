"""Faithfulness: does the model's output fall when the pixels a map ranks first are taken away?

- Deletion and insertion (Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of
  Black-box Models", BMVC 2018, its deletion and insertion metrics; the authors' code:
  github.com/eclique/RISE, evaluation.py and Evaluation.ipynb): pixels are replaced most-relevant
  first, in equal steps, by a baseline (deletion) or moved from the image onto a blurred substrate
  (insertion); the curve is the model's probability of the explained class after each step, and
  its area (trapezoid over the fraction of pixels changed) the score: low for deletion, high for
  insertion is faithful.
- ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
  ICML 2022; the authors' code: github.com/tleemann/road_evaluation, road/imputations.py and
  road/imputed_dataset.py): removed pixels are not set to a constant, whose shape would tell the
  model where they were, but imputed by noisy linear imputation, the solution of a sparse linear
  system in which each removed pixel is the weighted mean of its eight neighbours, plus noise.
  Pixels are removed most relevant first (MoRF) or least relevant first (LeRF) at given fractions.

The model enters as `predict(images) -> (B,)` probabilities of the explained class (for the kit,
softmax of the classifier's logits at the class predicted for the unperturbed image); images are
model-ready (H, W, C) arrays (the kit's are float32 in [0, 255]), and every perturbed image goes
through `predict` in batches of at most `batch_size`.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage, sparse
from scipy.integrate import trapezoid
from scipy.sparse.linalg import spsolve

# RISE's insertion substrate: the image blurred by an 11 x 11 Gaussian kernel of sigma 5
# (Evaluation.ipynb: klen = 11, ksig = 5; evaluation.py: gkern, conv2d with padding klen // 2).
RISE_BLUR_SIZE = 11
RISE_BLUR_SIGMA = 5.0
# ROAD: NoisyLinearImputer(noise=0.01) on images in [0, 1] (road.py, run_road's default); the kit's
# images are in [0, 255], so the noise is 0.01 of the value range.
ROAD_NOISE = 0.01
# ROAD: the fractions of pixels removed along its curves (ours: 10% ... 90%, every 10%; Quantus'
# ROAD default is 1%, 3%, ..., 99%).
ROAD_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(1, 10))
# ROAD's tie-breaker: 1e-4 N(0, 1) added to the min-max scaled map (imputed_dataset.py, random_v).
ROAD_TIE_NOISE = 1e-4
# The eight neighbours of a pixel and their weights in the imputation: 1/6 for the four that share
# an edge, 1/12 for the four diagonal ones (imputations.py, neighbors_weights).
NEIGHBOUR_WEIGHTS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
                     ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))
ORDERS = ("morf", "lerf")

Predict = Callable[[np.ndarray], np.ndarray]


class Curve(NamedTuple):
    """A perturbation curve: the model's probability after each fraction of pixels changed."""
    fractions: np.ndarray   # (K,) fraction of the pixels changed, increasing
    scores: np.ndarray      # (K,) probability of the explained class; NaN for a NaN map

    @property
    def auc(self) -> float:
        return curve_auc(self.fractions, self.scores)


def curve_auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Area under a perturbation curve by the trapezoid over the fraction of pixels changed.

    Petsiuk et al. 2018 (the area under the deletion / insertion curve); RISE's
    evaluation.py auc() is the same trapezoid on its equally spaced steps. NaN if a score is NaN.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if fractions.ndim != 1 or fractions.shape != scores.shape or len(fractions) < 2:
        raise ValueError(f"curve_auc: expected two 1-D arrays of the same length >= 2, got "
                         f"{fractions.shape} and {scores.shape}")
    if not np.all(np.diff(fractions) > 0):
        raise ValueError("curve_auc: the fractions must increase")
    if np.isnan(scores).any():
        return float("nan")
    return float(trapezoid(scores, fractions))


# --- deletion and insertion (Petsiuk et al. 2018) --------------------------------------------------

def deletion_curve(image: np.ndarray, smap: np.ndarray, predict: Predict, steps: int, *,
                   baseline: str | float | np.ndarray = "zeros", batch_size: int = 16) -> Curve:
    """Deletion: the probability as the map's pixels are replaced by `baseline`, most relevant first.

    Petsiuk et al. 2018 (deletion); RISE's CausalMetric(mode="del", substrate_fn=torch.zeros_like).
    steps: the number of equal steps (steps + 1 model inputs: the image, then after each step);
    RISE used 224 steps of 224 pixels on 224 x 224 images, one image row per step.
    baseline: "zeros" (RISE's zeros_like, here zeros of the model-ready input: black for the kit's
    [0, 255] images; RISE's zeros were in its ImageNet-normalized space, i.e. the mean colour),
    "blur" (rise_blur), a number, or an array of the image's shape.
    Ties in the map are broken in raster order (a stable sort). A NaN (degenerate) map has no order:
    its curve is NaN and the model is not called.
    """
    image, smap = _image_and_map(image, smap, "deletion_curve")
    finish = _reference(image, baseline, "deletion_curve", "baseline")
    return _perturbation_curve(image, finish, smap, predict, steps, batch_size, "deletion_curve")


def insertion_curve(image: np.ndarray, smap: np.ndarray, predict: Predict, steps: int, *,
                    substrate: str | float | np.ndarray = "blur", batch_size: int = 16) -> Curve:
    """Insertion: the probability as the image's pixels are put onto `substrate`, most relevant first.

    Petsiuk et al. 2018 (insertion, from a blurred image); RISE's
    CausalMetric(mode="ins", substrate_fn=blur) with blur = rise_blur. Options and ties as
    deletion_curve; the first point is the substrate's probability, the last the image's.
    """
    image, smap = _image_and_map(image, smap, "insertion_curve")
    start = _reference(image, substrate, "insertion_curve", "substrate")
    return _perturbation_curve(start, image, smap, predict, steps, batch_size, "insertion_curve")


def rise_blur(image: np.ndarray) -> np.ndarray:
    """RISE's insertion substrate: each channel correlated with an 11 x 11 Gaussian kernel of sigma
    5, zero-padded at the border (evaluation.py gkern: gaussian_filter of a centred delta, whose
    reflect mode keeps the kernel's sum 1; Evaluation.ipynb: conv2d(x, kern, padding=5)). The
    zero padding darkens a 5-pixel border toward 0, as RISE's does toward its 0."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3:
        raise ValueError(f"rise_blur: expected an image (H, W, C), got shape {image.shape}")
    delta = np.zeros((RISE_BLUR_SIZE, RISE_BLUR_SIZE))
    delta[RISE_BLUR_SIZE // 2, RISE_BLUR_SIZE // 2] = 1.0
    kernel = ndimage.gaussian_filter(delta, RISE_BLUR_SIGMA)
    return np.stack([ndimage.correlate(image[..., c], kernel, mode="constant", cval=0.0)
                     for c in range(image.shape[-1])], axis=-1)


def _perturbation_curve(start, finish, smap, predict, steps, batch_size, name) -> Curve:
    """Images k = 0..steps: `start` with its first bounds[k] pixels in the map's order from `finish`."""
    pixels = smap.size
    if not (_is_int(steps) and 1 <= steps <= pixels):
        raise ValueError(f"{name}: steps must be an integer in [1, {pixels}] (the map's pixels), got {steps!r}")
    _check_batch_size(batch_size, name)
    # Equal steps of pixels (RISE: `step` pixels each; the same when steps divides H * W).
    bounds = np.round(np.linspace(0, pixels, steps + 1)).astype(int)
    fractions = bounds / pixels
    if np.isnan(smap).any():
        return Curve(fractions, np.full(len(bounds), np.nan))
    order = np.argsort(-smap.ravel(), kind="stable")
    channels = start.shape[-1]
    current = start.reshape(pixels, channels).copy()
    source = finish.reshape(pixels, channels)
    scores = []
    for first in range(0, len(bounds), batch_size):
        batch = []
        for k in range(first, min(first + batch_size, len(bounds))):
            if k > 0:
                changed = order[bounds[k - 1]:bounds[k]]
                current[changed] = source[changed]
            batch.append(current.reshape(start.shape).copy())
        scores.append(_predict(predict, np.stack(batch), name))
    return Curve(fractions, np.concatenate(scores))


# --- ROAD (Rong et al. 2022) ----------------------------------------------------------------------

def noisy_linear_imputation(image: np.ndarray, removed: np.ndarray, *, noise: float = ROAD_NOISE,
                            value_range: float = 255.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """ROAD's noisy linear imputation of the `removed` pixels of `image` (H, W) or (H, W, C).

    Rong et al. 2022 (noisy linear imputation); as the authors' NoisyLinearImputer computes it
    (road/imputations.py): every removed pixel i gets the equation
        sum_{j in N(i)} w_j (x_j - x_i) = 0,
    over its neighbours inside the image (w = 1/6 for the four sharing an edge, 1/12 for the four
    diagonal), i.e. x_i is the weighted mean of its neighbours; neighbours that are kept move to the
    right-hand side. The sparse system (one unknown per removed pixel and channel) is solved by
    scipy.sparse.linalg.spsolve, and N(0, (noise * value_range)^2) noise is added to the solution
    (the authors' noise 0.01 is absolute on [0, 1] images; the kit's span 255).
    Without noise a linear ramp is imputed exactly wherever no neighbour is cut off by the border,
    and every imputed value lies between the smallest and largest kept value (each is a weighted
    mean of its neighbours). Removing every pixel leaves nothing to impute from: an error.
    rng: a seeded numpy Generator, required when noise > 0.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"noisy_linear_imputation: expected a float image (H, W) or (H, W, C), got "
                         f"{image.dtype} {image.shape}")
    removed = _mask(removed, image.shape[:2], "noisy_linear_imputation", "removed")
    if not (np.isfinite(noise) and noise >= 0 and np.isfinite(value_range) and value_range > 0):
        raise ValueError(f"noisy_linear_imputation: noise must be >= 0 and value_range > 0, got "
                         f"{noise!r} and {value_range!r}")
    if noise > 0 and not isinstance(rng, np.random.Generator):
        raise ValueError("noisy_linear_imputation: noise > 0 needs rng, a seeded numpy Generator")
    height, width = removed.shape
    flat = image.reshape(height * width, -1).astype(np.float64)
    unknown = np.flatnonzero(removed)
    if len(unknown) == 0:
        return image.copy()
    if len(unknown) == removed.size:
        raise ValueError("noisy_linear_imputation: every pixel is removed; nothing to impute from")
    variable = np.full(removed.size, -1)
    variable[unknown] = np.arange(len(unknown))
    rows, cols = np.divmod(unknown, width)
    equation = np.arange(len(unknown))
    diagonal = np.zeros(len(unknown))
    rhs = np.zeros((len(unknown), flat.shape[1]))
    a_rows, a_cols, a_values = [], [], []
    for (dr, dc), weight in NEIGHBOUR_WEIGHTS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbour = r[inside] * width + c[inside]
        diagonal[inside] += weight   # neighbours outside the image drop out of the mean
        is_unknown = removed.ravel()[neighbour]
        a_rows.append(equation[inside][is_unknown])
        a_cols.append(variable[neighbour[is_unknown]])
        a_values.append(np.full(int(is_unknown.sum()), weight))
        # Each equation meets each offset once, so plain indexing adds no duplicate.
        rhs[equation[inside][~is_unknown]] -= weight * flat[neighbour[~is_unknown]]
    a_rows.append(equation)
    a_cols.append(equation)
    a_values.append(-diagonal)
    system = sparse.csc_matrix((np.concatenate(a_values), (np.concatenate(a_rows), np.concatenate(a_cols))),
                               shape=(len(unknown), len(unknown)))
    solution = np.asarray(spsolve(system, rhs)).reshape(len(unknown), flat.shape[1])
    if noise > 0:
        solution = solution + noise * value_range * rng.standard_normal(solution.shape)
    result = flat.copy()
    result[unknown] = solution
    return result.reshape(image.shape).astype(image.dtype)


def road_curve(image: np.ndarray, smap: np.ndarray, predict: Predict,
               fractions: Sequence[float] = ROAD_FRACTIONS, *, order: str = "morf", seed: int,
               key: Hashable = "", noise: float = ROAD_NOISE, value_range: float = 255.0,
               batch_size: int = 16) -> Curve:
    """ROAD: the probability after removing a fraction of the pixels, imputed by noisy_linear_imputation.

    Rong et al. 2022 (ROAD; MoRF and LeRF orders); as road/imputed_dataset.py ranks pixels: the map
    min-max scaled plus 1e-4 N(0, 1) to break ties, most relevant first. order="morf" removes the
    top int(H W f) pixels at fraction f, "lerf" the bottom int(H W f). `fractions` is the fraction
    removed in both orders (the authors' LeRF parameter is the fraction kept: their th_p = p
    removes salient_order[int(HW p):], which is the kit's LeRF at f = 1 - p up to rounding).
    Each fraction is imputed from the original image. seed, key: numpy's Generator seeded with
    (seed, crc32(str(key))) draws the tie-breaker, then each fraction's imputation noise in order;
    the same arguments give the same curve. A NaN map gives a NaN curve without model calls.
    """
    image, smap = _image_and_map(image, smap, "road_curve")
    if order not in ORDERS:
        raise ValueError(f"road_curve: order must be one of {ORDERS}, got {order!r}")
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) == 0 or not np.all((fractions >= 0) & (fractions < 1)) \
            or not np.all(np.diff(fractions) > 0):
        raise ValueError(f"road_curve: fractions must increase within [0, 1), got {fractions.tolist()}")
    if not (_is_int(seed) and seed >= 0):
        raise ValueError(f"road_curve: seed must be an integer >= 0, got {seed!r}")
    _check_batch_size(batch_size, "road_curve")
    if np.isnan(smap).any():
        return Curve(fractions, np.full(len(fractions), np.nan))
    rng = np.random.default_rng([int(seed), zlib.crc32(str(key).encode())])
    low, high = smap.min(), smap.max()
    scaled = (smap - low) / (high - low) if high > low else np.zeros_like(smap)
    ranking = np.argsort(-(scaled + ROAD_TIE_NOISE * rng.standard_normal(smap.shape)).ravel(), kind="stable")
    if order == "lerf":
        ranking = ranking[::-1]
    pixels = smap.size
    imputed = []
    for fraction in fractions:
        removed = np.zeros(pixels, dtype=bool)
        removed[ranking[:int(pixels * fraction)]] = True
        imputed.append(noisy_linear_imputation(image, removed.reshape(smap.shape), noise=noise,
                                               value_range=value_range, rng=rng))
    imputed = np.stack(imputed).astype(image.dtype)
    scores = [_predict(predict, imputed[i:i + batch_size], "road_curve") for i in range(0, len(imputed), batch_size)]
    return Curve(fractions, np.concatenate(scores))


# --- helpers --------------------------------------------------------------------------------------

def _image_and_map(image, smap, name):
    image = np.asarray(image)
    smap = np.asarray(smap, dtype=np.float64)
    if image.ndim != 3 or not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name}: expected a float image (H, W, C), got {image.dtype} {image.shape}")
    if smap.shape != image.shape[:2]:
        raise ValueError(f"{name}: expected a map of the image's size {image.shape[:2]}, got {smap.shape}")
    if np.isinf(smap).any():
        raise ValueError(f"{name}: the map has infinite values")
    if not np.isfinite(image).all():
        raise ValueError(f"{name}: the image has non-finite values")
    return image, smap


def _reference(image, reference, name, what):
    """The baseline / substrate image: "zeros", "blur", a number or an array of the image's shape."""
    if isinstance(reference, str):
        if reference == "zeros":
            return np.zeros_like(image)
        if reference == "blur":
            return rise_blur(image).astype(image.dtype)
        raise ValueError(f'{name}: {what} must be "zeros", "blur", a number or an array, got {reference!r}')
    reference = np.asarray(reference, dtype=image.dtype)
    if reference.ndim == 0:
        return np.full_like(image, reference)
    if reference.shape != image.shape:
        raise ValueError(f"{name}: a {what} array must have the image's shape {image.shape}, got {reference.shape}")
    return reference


def _predict(predict, batch, name) -> np.ndarray:
    scores = np.asarray(predict(batch), dtype=np.float64)
    if scores.shape != (len(batch),):
        raise ValueError(f"{name}: predict must return one probability per image, shape ({len(batch)},); "
                         f"got {scores.shape}")
    return scores


def _mask(mask, shape, name, what) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name}: expected {what} of shape {shape}, got {mask.shape}")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{name}: {what} must be boolean or 0/1")
    return mask.astype(bool)


def _check_batch_size(batch_size, name) -> None:
    if not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"{name}: batch_size must be a positive integer, got {batch_size!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
