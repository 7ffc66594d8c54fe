"""saliency_maps: the eight methods of the paper behind one call, with validated parameters."""
from __future__ import annotations

import inspect
import numbers

import keras
import numpy as np

from . import gradcam, gradients, integrated, xrai
from .context import Context
from .postprocess import postprocess
from .presets import load_preset
from .segments import SegmentCache

METHODS = ("GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM")

# Each implementation takes (Context, images) and its parameters as keyword-only arguments, and
# returns raw attributions: (N, H, W, C) for the input-space methods, (N, H, W) for the others.
REGISTRY = {
    "GRAD": gradients.grad,
    "SG": gradients.smoothgrad,
    "IG": integrated.integrated_gradients,
    "SIG": integrated.smooth_integrated_gradients,
    "GCAM": gradcam.gradcam,
    "XRAI": xrai.xrai,
    "GBP": gradients.guided_backprop,
    "GGCAM": gradcam.guided_gradcam,
}

DEFAULT_BATCH_SIZE = 16
DEFAULT_INPUT_RANGE = (0.0, 255.0)
_SEGMENTS = SegmentCache()  # in memory, shared by every call without a segment_cache

def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return _integer(value) and value >= 1


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# parameter -> (check, what a valid value is)
_CHECKS = {
    "x_steps": (_positive_int, "a positive integer"),
    "nsamples": (_positive_int, "a positive integer"),
    "stdev_spread": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "magnitude": (lambda v: isinstance(v, bool), "True or False"),
    "baseline": (integrated.is_baseline, f"one of {integrated.BASELINES} or a number"),
    "baselines": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                  and all(map(integrated.is_baseline, v)),
                  f"a non-empty list of {integrated.BASELINES} or numbers"),
    "area_threshold": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "algorithm": (lambda v: v in ("full", "fast"), '"full" or "fast"'),
    "layer": (lambda v: v is None or isinstance(v, str), "a layer name or None (the default)"),
}


def saliency_maps(model: keras.Model, images: np.ndarray, method: str, *,
                  target: int | str = "predicted", batch_size: int | None = None, seed: int = 0,
                  raw: bool = False, preset: str = "paper",
                  input_range: tuple[float, float] = DEFAULT_INPUT_RANGE,
                  segment_cache: SegmentCache | None = None, **params) -> np.ndarray:
    """Saliency maps of `images` (N, H, W, C), model-ready, for `model` (which outputs logits).

    method: one of METHODS. params: the method's parameters (see method_parameters), each
    defaulting to the named preset's value (load_preset(preset); sources in PARAMETERS.md).
    target: "predicted" (the class the model predicts for the unperturbed image, as the paper)
    or a class index. batch_size: rows per model call (default 16): images, noise samples and
    integration steps share calls. seed: SmoothGrad noise, drawn per image from (seed, pixels).
    input_range: the model-ready pixel range; "black" / "white" baselines are its ends.
    segment_cache: where XRAI finds segments (default: an in-memory cache shared by all calls).

    Returns (N, H, W) float32 maps in [0, 1] post-processed as the authors did (postprocess.py);
    degenerate maps (e.g. an all-zero Grad-CAM) are all zeros: find them with is_degenerate.
    raw=True returns the attributions before post-processing: (N, H, W, C) float32 for GRAD, SG,
    IG, SIG and GBP (PAIR's GetMask output per image), (N, H, W) for GCAM (resized, before the
    percentile clip), XRAI (PAIR's XRAI output) and GGCAM (the product before min-max);
    postprocess(raw_maps, method) turns them into the maps.
    """
    implementation = _implementation(method)
    params = resolve_params(method, preset, **params)
    images = _model_ready(model, images)
    ctx = Context(model, _target(model, target), _batch_size(batch_size), _seed(seed),
                  _input_range(input_range), segment_cache or _SEGMENTS)
    attributions = implementation(ctx, images, **params)
    return attributions if raw else postprocess(attributions, method)


def method_parameters(method: str) -> tuple[str, ...]:
    """The names of a method's parameters."""
    signature = inspect.signature(_implementation(method))
    return tuple(name for name, p in signature.parameters.items() if p.kind == p.KEYWORD_ONLY)


def resolve_params(method: str, preset: str = "paper", **params) -> dict:
    """The preset's parameters of `method`, updated with `params`, checked."""
    valid = method_parameters(method)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{method} has no parameter {unknown}; valid: {list(valid)}")
    resolved = {**load_preset(preset)[method], **params}
    for name, value in resolved.items():
        check, expected = _CHECKS[name]
        if not check(value):
            raise ValueError(f"{method} parameter {name} must be {expected}, got {value!r}")
    return resolved


def _implementation(method: str):
    if method not in REGISTRY:
        raise ValueError(f"unknown saliency method {method!r}; valid: {METHODS}")
    return REGISTRY[method]


def _model_ready(model: keras.Model, images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    expected = tuple(model.input_shape[1:])
    if images.ndim != 4 or len(images) == 0 or any(
            e is not None and e != s for e, s in zip(expected, images.shape[1:])):
        raise ValueError(f"images must be a non-empty batch shaped "
                         f"(N, {', '.join(map(str, expected))}), got {images.shape}")
    return images


def _target(model: keras.Model, target) -> int | str:
    num_classes = model.output_shape[-1]
    if len(model.output_shape) != 2:
        raise ValueError(f"the model must output (N, classes) logits, not {model.output_shape}")
    if target == "predicted":
        return target
    if _integer(target) and 0 <= target < num_classes:
        return int(target)
    raise ValueError(f'target must be "predicted" or a class index in [0, {num_classes}), '
                     f"got {target!r}")


def _batch_size(batch_size) -> int:
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if not _positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _seed(seed) -> int:
    if not (_integer(seed) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _input_range(input_range) -> tuple[float, float]:
    low, high = (float(v) for v in input_range)
    if not low < high:
        raise ValueError(f"input_range must be (low, high) with low < high, got {input_range!r}")
    return low, high
