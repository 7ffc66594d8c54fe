"""A run's statistics: every data set's cells of Tables 2-4 with their verdicts' stability
(results/cells.csv), reused while the scores, the results' settings and the statistics code are
those that made them (results/statistics.json), since the stability resampling takes minutes and
gives the same bits again.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import pandas as pd

from repro.experiments import Evaluation
from repro.io import fingerprint, read_json_object, sha256_file, write_json, write_text
from repro.layout import RunLayout
from repro.protocol import CONTROLS, DatasetSpec
from repro.statistics import cells as statistics_cells
from repro.statistics import mixed as statistics_mixed
from repro.statistics import stability as statistics_stability
from repro.statistics.cells import ModelChoice, PostHoc, result_cells
from repro.statistics.stability import verdict_stability


def run_statistics(scores: pd.DataFrame, datasets: dict[str, DatasetSpec], choices: dict[str, ModelChoice], *,
                   methods: tuple[str, ...], evaluation: Evaluation, results_fingerprint: str, layout: RunLayout,
                   run_in_parallel: Callable, progress: bool = True) -> pd.DataFrame:
    """Every cell of Tables 2-4 with its verdict's stability, written to results/cells.csv (or read
    back from it when nothing it is made from changed). `choices`: each data set's models for the
    cells; `results_fingerprint`: the experiment's (its results' settings and code versions)."""
    made_from, cells_path = statistics_fingerprint(scores, results_fingerprint), layout.result("cells.csv")
    if cells_path.is_file() and _statistics_made_from(layout) == (made_from, sha256_file(cells_path)):
        if progress:
            print("statistics: the scores and settings are unchanged, cells.csv reused", flush=True)
        return read_cells_file(cells_path)
    form, stability, rule = evaluation.randomization_cells, evaluation.stability, evaluation.constant_comparison
    frames = []
    for name, spec in datasets.items():
        choice = choices[name]
        mine, cells = dataset_cells(scores, spec, choice, methods=methods, form=form, post_hoc=PostHoc(rule))
        if stability.resamples or len(choice.replicates) > 1:
            firmness = verdict_stability(mine, cells, spec, choice, methods=methods, form=form,
                                         resamples=stability.resamples, seed=stability.seed,
                                         fragile_above=stability.fragile_above, constant_rule=rule,
                                         run_in_parallel=run_in_parallel)
            cells = cells.merge(firmness, on=["table", "dataset", "method", "column"], how="left")
        frames.append(cells)
    cells = pd.concat(frames, ignore_index=True)
    if "fragile" not in cells:
        cells["fragile"] = False
    cells["fragile"] = cells["fragile"].astype("boolean").fillna(False).astype(bool)
    write_text(cells_path, cells.to_csv(index=False))
    write_json(layout.result("statistics.json"), {"made_from": made_from, "cells_sha256": sha256_file(cells_path)})
    return cells


def dataset_cells(scores: pd.DataFrame, spec: DatasetSpec, choice: ModelChoice, *, methods: tuple[str, ...],
                  form: str, post_hoc: PostHoc) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One data set's scores and its cells of Tables 2-4 (no stability), with the models of `choice`."""
    mine = scores[scores["dataset"] == spec.name]
    controls = tuple(c for c in CONTROLS if c in set(mine["group"]))
    return mine, result_cells(mine, spec, choice, methods=methods, controls=controls, form=form, post_hoc=post_hoc)


def statistics_fingerprint(scores: pd.DataFrame, results_fingerprint: str) -> str:
    """What the cells are made from: the scores (their values, not their file), the results'
    settings and code versions, and the statistics modules' own source (an edit to them that
    forgets to bump STATISTICS_VERSION still computes the cells again)."""
    values = pd.util.hash_pandas_object(scores.reset_index(drop=True), index=False).to_numpy()
    modules = (statistics_mixed, statistics_cells, statistics_stability)
    source = b"".join(Path(module.__file__).read_bytes() for module in modules)
    return fingerprint({"scores": hashlib.sha256(values.tobytes()).hexdigest(),
                        "settings": results_fingerprint, "code": hashlib.sha256(source).hexdigest()})


def _statistics_made_from(layout: RunLayout) -> tuple[str, str] | None:
    try:
        record = read_json_object(layout.result("statistics.json"))
    except ValueError:      # absent or damaged: computed again
        return None
    return record.get("made_from"), record.get("cells_sha256")


def read_cells_file(path: Path) -> pd.DataFrame:
    """A cells.csv as written: its P values, verdicts and labels as text, its empty means as NaN."""
    cells = pd.read_csv(path, dtype={"p": str, "verdict": str, "form": str, "comparison": str, "fit": str},
                        keep_default_na=False, na_values={c: [""] for c in ("mean", "sd", "bootstrap_agreement",
                                                                           "replicate_agreement", "icc")})
    cells["fragile"] = cells["fragile"].astype(str) == "True"
    return cells
