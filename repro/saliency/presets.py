"""Named parameter presets, kept as data in presets.yaml (sources in PARAMETERS.md)."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

PRESETS = ("paper", "authors_code")


def load_preset(name: str) -> dict[str, dict]:
    """{method: {parameter: value}} of a preset; a fresh copy, safe to modify."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {PRESETS}")
    return copy.deepcopy(_presets()[name])


@functools.cache
def _presets() -> dict:
    return yaml.safe_load((Path(__file__).with_name("presets.yaml")).read_text())
