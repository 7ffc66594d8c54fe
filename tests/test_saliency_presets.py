"""Presets: complete, documented in PARAMETERS.md with the same values, loaded safely."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import repro.saliency
from repro.saliency import METHODS, PRESETS, load_preset, method_parameters

PARAMETERS_MD = Path(repro.saliency.__file__).with_name("PARAMETERS.md")


def _documented() -> dict[tuple[str, str], tuple]:
    """(method, parameter) -> (paper value, authors_code value) from the first table."""
    rows = {}
    for line in PARAMETERS_MD.read_text().split("## Fixed settings")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in METHODS and cells[1] != "(none)":
            rows[(cells[0], cells[1])] = (yaml.safe_load(cells[2]), yaml.safe_load(cells[3]))
    return rows


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_sets_every_parameter_of_every_method(name):
    preset = load_preset(name)
    assert set(preset) == set(METHODS)
    for method in METHODS:
        assert set(preset[method]) == set(method_parameters(method)), method


def test_parameters_md_lists_every_parameter_with_the_preset_values():
    paper, code = load_preset("paper"), load_preset("authors_code")
    expected = {(m, p): (paper[m][p], code[m][p]) for m in METHODS for p in method_parameters(m)}
    assert _documented() == expected


def test_presets_differ_where_paper_and_code_differ():
    paper, code = load_preset("paper"), load_preset("authors_code")
    assert (paper["IG"]["x_steps"], code["IG"]["x_steps"]) == (25, 10)
    assert (paper["SIG"]["x_steps"], code["SIG"]["x_steps"]) == (25, 10)
    assert paper["IG"]["baseline"] == code["IG"]["baseline"] == "black"


def test_load_preset_returns_a_copy_and_rejects_unknown_names():
    load_preset("paper")["IG"]["x_steps"] = 1
    assert load_preset("paper")["IG"]["x_steps"] == 25
    with pytest.raises(ValueError, match="valid: \\('paper', 'authors_code'\\)"):
        load_preset("Paper")
