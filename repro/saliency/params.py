"""Every method's parameters: names, checks and the named presets, without importing TensorFlow.

The experiment loader validates `saliency.overrides` with `resolve_params` before anything heavy
starts; the presets are data (presets.yaml) and every value's source is in PARAMETERS.md.
"""
from __future__ import annotations

import copy
import functools
import numbers
from pathlib import Path

import yaml

from repro.protocol import METHODS

PRESETS = ("paper", "authors_code")
BASELINES = ("black", "white", "image_min", "image_max")
RESIZES = ("legacy", "centred")

# Each method's keyword parameters, in the order its implementation declares them
# (tests/test_saliency_presets.py checks this against the implementations' signatures).
METHOD_PARAMETERS: dict[str, tuple[str, ...]] = {
    "GRAD": (),
    "SG": ("nsamples", "stdev_spread", "magnitude"),
    "IG": ("x_steps", "baseline"),
    "SIG": ("x_steps", "baseline", "nsamples", "stdev_spread", "magnitude"),
    "GCAM": ("layer", "resize"),
    "XRAI": ("x_steps", "baselines", "area_threshold", "algorithm"),
    "GBP": (),
    "GGCAM": ("layer", "resize"),
    "GIG": ("x_steps", "baseline", "fraction", "max_dist"),
    "BIG": ("x_steps", "max_sigma", "grad_step", "sqrt"),
    "OCC": ("size", "value", "stride"),
    "GCAMPP": ("layer",),
    "SCAM": ("layer", "max_n"),
    "LCAM": ("layer",),
}


def is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_int(value) -> bool:
    return is_integer(value) and value >= 1


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_baseline(value) -> bool:
    return value in BASELINES or _number(value)


# parameter -> (check, what a valid value is)
CHECKS = {
    "x_steps": (is_positive_int, "a positive integer"),
    "nsamples": (is_positive_int, "a positive integer"),
    "stdev_spread": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "magnitude": (lambda v: isinstance(v, bool), "True or False"),
    "baseline": (is_baseline, f"one of {BASELINES} or a number"),
    "baselines": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(map(is_baseline, v)),
                  f"a non-empty list of {BASELINES} or numbers"),
    "area_threshold": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "algorithm": (lambda v: v in ("full", "fast"), '"full" or "fast"'),
    "layer": (lambda v: v is None or isinstance(v, str), "a layer name or None (the default)"),
    "resize": (lambda v: v in RESIZES, f"one of {RESIZES}"),
    "fraction": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "max_dist": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "max_sigma": (lambda v: _number(v) and v > 0, "a number > 0"),
    "grad_step": (lambda v: _number(v) and v > 0, "a number > 0"),
    "sqrt": (lambda v: isinstance(v, bool), "True or False"),
    "size": (is_positive_int, "a positive integer (pixels)"),
    "value": (_number, "a number (the occluding pixel value)"),
    "stride": (is_positive_int, "a positive integer (pixels between window positions)"),
    "max_n": (lambda v: v is None or is_positive_int(v), "a positive integer or None (all channels)"),
}


def method_parameters(method: str) -> tuple[str, ...]:
    """The names of a method's parameters."""
    _check_method(method)
    return METHOD_PARAMETERS[method]


def load_preset(name: str) -> dict[str, dict]:
    """{method: {parameter: value}} of a preset; a fresh copy, safe to modify."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {PRESETS}")
    return copy.deepcopy(_presets()[name])


def resolve_params(method: str, preset: str = "paper", **params) -> dict:
    """The preset's parameters of `method`, updated with `params`, checked."""
    valid = method_parameters(method)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"{method} has no parameter {unknown}; valid: {list(valid)}")
    resolved = {**load_preset(preset)[method], **params}
    for name, value in resolved.items():
        check, expected = CHECKS[name]
        if not check(value):
            raise ValueError(f"{method} parameter {name} must be {expected}, got {value!r}")
    return resolved


def _check_method(method) -> None:
    if method not in METHOD_PARAMETERS:
        raise ValueError(f"unknown saliency method {method!r}; valid: {list(METHODS)}")


@functools.cache
def _presets() -> dict:
    return yaml.safe_load((Path(__file__).with_name("presets.yaml")).read_text())
