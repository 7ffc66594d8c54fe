"""saliency_maps: every method behind one call, with validated parameters.

The paper's eight methods run through the batched engine (`backend="batched"`, the default) or
through PAIR's own classes one image at a time (`backend="pair"`, the reference path; pairpath.py).
The six methods beyond the paper (GIG, BIG, OCC: PAIR classes; GCAMPP, SCAM, LCAM: tf-keras-vis)
have one path each (extra.py).
"""
from __future__ import annotations

from repro.runtime import import_tensorflow

import_tensorflow()   # quietly: TensorFlow's start-up lines (absl, oneDNN, cudart, cuInit) kept off stderr

import keras  # noqa: E402
import numpy as np  # noqa: E402

from repro.protocol import METHODS  # noqa: E402
from repro.worker import WORKER  # noqa: E402

from . import extra, gradcam, gradients, integrated, pairpath, xrai  # noqa: E402
from .context import Context  # noqa: E402
from .params import is_integer, is_positive_int, resolve_params  # noqa: E402
from .postprocessing import postprocess  # noqa: E402
from .segments import SegmentCache  # noqa: E402

BACKENDS = ("batched", "pair")

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
    "GIG": extra.guided_ig,
    "BIG": extra.blur_ig,
    "OCC": extra.occlusion,
    "GCAMPP": extra.gradcam_plus_plus,
    "SCAM": extra.scorecam,
    "LCAM": extra.layercam,
}
assert tuple(REGISTRY) == METHODS

DEFAULT_BATCH_SIZE = 16
DEFAULT_INPUT_RANGE = (0.0, 255.0)


def saliency_maps(model: keras.Model, images: np.ndarray, method: str, *,
                  target: int | str = "predicted", batch_size: int | None = None, seed: int = 0,
                  raw: bool = False, preset: str = "paper",
                  input_range: tuple[float, float] = DEFAULT_INPUT_RANGE,
                  segment_cache: SegmentCache | None = None, backend: str = "batched",
                  **params) -> np.ndarray:
    """Saliency maps of `images` (N, H, W, C), model-ready, for `model` (which outputs logits).

    method: one of METHODS. params: the method's parameters (see method_parameters), each
    defaulting to the named preset's value (load_preset(preset); sources in PARAMETERS.md).
    target: "predicted" (the class the model predicts for the unperturbed image, as the paper)
    or a class index. batch_size: rows per model call (default 16): images, noise samples and
    integration steps share calls. seed: SmoothGrad noise, drawn per image from (seed, pixels).
    input_range: the model-ready pixel range; "black" / "white" baselines are its ends.
    segment_cache: where XRAI finds segments (default: an in-memory cache shared by all calls).
    backend: "batched" (the compiled, batched engine) or "pair" (PAIR's classes image by image).

    Returns (N, H, W) float32 maps in [0, 1] post-processed as the authors did (postprocess.py);
    degenerate maps (e.g. an all-zero Grad-CAM) are all NaN, as the authors' division by zero made
    them, and are dropped from the scores: find them with is_degenerate.
    raw=True returns the attributions before post-processing: (N, H, W, C) float32 for GRAD, SG,
    IG, SIG and GBP (PAIR's GetMask output per image), (N, H, W) for GCAM (resized, before the
    percentile clip), XRAI (PAIR's XRAI output) and GGCAM (the product before min-max);
    postprocess(raw_maps, method) turns them into the maps.
    """
    implementation = _implementation(method)
    params = resolve_params(method, preset, **params)
    images = _model_ready(model, images)
    ctx = Context(model, _target(model, target), _batch_size(batch_size), _seed(seed),
                  _input_range(input_range), segment_cache or _segments_in_memory())
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "pair" and method in pairpath.PAIR_METHODS:
        implementation = pairpath.PAIR_METHODS[method]
    attributions = implementation(ctx, images, **params)
    return attributions if raw else postprocess(attributions, method)


def _segments_in_memory() -> SegmentCache:
    """The in-memory segment cache shared by every call without a segment_cache (this process's,
    held in repro.worker.WORKER.segments)."""
    if WORKER.segments is None:
        WORKER.segments = SegmentCache()
    return WORKER.segments


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
    if is_integer(target) and 0 <= target < num_classes:
        return int(target)
    raise ValueError(f'target must be "predicted" or a class index in [0, {num_classes}), '
                     f"got {target!r}")


def _batch_size(batch_size) -> int:
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if not is_positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _seed(seed) -> int:
    if not (is_integer(seed) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _input_range(input_range) -> tuple[float, float]:
    low, high = (float(v) for v in input_range)
    if not low < high:
        raise ValueError(f"input_range must be (low, high) with low < high, got {input_range!r}")
    return low, high
