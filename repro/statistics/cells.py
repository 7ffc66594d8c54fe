"""Every cell of Tables 2-4 from per-image scores: means, sds, n, P values and verdicts.

Input: the evaluation's long score table (repro.evaluation.scores.SCORE_COLUMNS):
    dataset, test, metric, group, model, state, image, score
NaN scores (degenerate maps) are dropped from every comparison and counted in each cell's n.
Output: one row per cell in the schema of repro/report/published.csv (table, dataset, method,
column, mean, sd, p, verdict) plus n (scores behind the cell), form (how mean and sd were taken)
and comparison (what the verdict compared).

Which model's scores fill the cells is a `ModelChoice`: the paper's (replicate 1 for utility, all
replicates for randomization, replicate 1 vs 2, replicate 1 vs DenseNet121) or, for the stability
analysis, another replicate in their place.

Randomization cells come in two forms (evaluation.randomization_cells):
- "replicates", the authors' randomization_plot scripts: the fully randomized SSIM is the mean over
  replicates of each replicate's mean over images, and its sd the population sd (np.std) across
  those replicate means; the baseline is replicate 1's, as their script drew it (mean and sd over
  its images).
- "per_image": each image's SSIM averaged over replicates (and likewise its baseline), then mean
  and sd (ddof 1) across images.
The P value is the same in both: the mixed model fitted to every finite per-image score of the
fully randomized replicates against the baseline scores the form uses.

Each P-value cell also says which model was fitted (`fit`: mixed, singular, or least squares where
no image was scored twice) and the fit's image intra-class correlation (`icc`). Every family a
table fits can be recorded (`PostHoc.families`), so that `repro statistics --export-r` can hand the
same data to R.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from repro.experiments import Roles
from repro.protocol import (AVG, FAIL, LOW, LOW_SSIM, NOT_MEASURED, RANDOMIZATION, REPEATABILITY,
                            REPRODUCIBILITY, UTILITY, DatasetSpec, pair_label)
from repro.statistics.mixed import fitted_rows, format_p, mixed_model_contrasts

CELL_DECIMALS = 4
CELL_COLUMNS = ["table", "dataset", "method", "column", "mean", "sd", "n", "p", "verdict", "form", "comparison",
                "fit", "icc"]
FORMS = ("replicates", "per_image")
SHORT = {REPEATABILITY: "Repeat", REPRODUCIBILITY: "Reprod"}
VALUE_COLUMN = {REPEATABILITY: "Repeatability", REPRODUCIBILITY: "Reproducibility"}


@dataclass(frozen=True)
class ModelChoice:
    """Whose scores fill the cells (model names as the score table's `model` column has them)."""
    utility: str                         # the classifier whose maps are scored for utility
    replicates: tuple[str, ...]          # the cascade replicates (Table 3 randomization)
    repeatability: str | None            # a pair label "a~b", None when not measured
    reproducibility: str | None
    localizer: str | None                # the localization network scored for utility (high baseline)
    localizer_pair: str | None           # the pair of localizers whose SSIM is the high baseline


def main_choice(roles: Roles, localizers: tuple[str, ...]) -> ModelChoice:
    """The paper's choice of models for the cells: replicate 1 for utility, the roles' pairs, the
    first localizer of the data set (and the first two's pair for the SSIM high baseline)."""
    return ModelChoice(
        utility=roles.replicates[0], replicates=roles.replicates,
        repeatability=pair_label(*roles.repeatability) if roles.repeatability else None,
        reproducibility=pair_label(*roles.reproducibility) if roles.reproducibility else None,
        localizer=localizers[0] if localizers else None,
        localizer_pair=pair_label(*localizers[:2]) if len(localizers) >= 2 else None)


@dataclass
class PostHoc:
    """How the cells' comparisons are tested: `constant_rule` says how a group is compared with a
    constant (repro.statistics.mixed.CONSTANT_RULES); `verdicts_only` (the bootstrap resamples) stops
    refining an estimated P value once its side of alpha is clear. When `families` is a list, every
    family fitted is appended to it as (name, the rows fitted, pairs, contrasts): what an export to R
    needs."""
    constant_rule: str = "studentized_range"
    verdicts_only: bool = False
    families: list | None = field(default=None)

    def contrasts(self, name: str, data: pd.DataFrame, pairs, *, higher_is_pass: bool = True):
        found = mixed_model_contrasts(data, pairs, higher_is_pass=higher_is_pass, constant_rule=self.constant_rule,
                                      verdicts_only=self.verdicts_only)
        if self.families is not None:
            self.families.append((name, fitted_rows(data), list(pairs), found))
        return found


def result_cells(scores: pd.DataFrame, dataset: DatasetSpec, choice: ModelChoice, *, methods,
                 controls=(), form: str = "replicates", post_hoc: PostHoc | None = None) -> pd.DataFrame:
    """Every cell of Tables 2-4 for one data set (methods first, then the harness controls)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    post_hoc = post_hoc or PostHoc()
    scores = scores[scores["dataset"] == dataset.name]
    high = dataset.high_baseline if choice.localizer else None
    cells = []
    for table, metric in ((2, "roc_auc"), (3, "auprc")):
        cells += _utility_cells(scores, dataset.name, table, metric, high, choice, methods, controls, post_hoc)
    cells += _randomization_cells(scores, dataset.name, choice, [*methods, *controls], form, post_hoc)
    for test in (REPEATABILITY, REPRODUCIBILITY):
        cells += _similarity_cells(scores, dataset.name, test, high, choice, methods, controls, post_hoc)
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


# --- the three kinds of cell ------------------------------------------------------------------------

def _utility_cells(scores, dataset, table, metric, high, choice, methods, controls, post_hoc):
    column = "AUC" if metric == "roc_auc" else "AUPRC"
    rows = scores[(scores["test"] == UTILITY) & (scores["metric"] == metric) & (scores["state"] == "trained")]
    mine = rows[(rows["model"] == choice.utility) | (rows["group"] == AVG)
                | ((rows["group"] == high) & (rows["model"] == choice.localizer))]
    cells = [_value_cell(table, dataset, AVG, column, mine)]
    if high:
        cells.append(_value_cell(table, dataset, high, column, mine))
    references = [AVG] + ([high] if high else [])
    for family in [list(methods)] + [[control] for control in controls]:  # controls: families of their own
        data = mine[mine["group"].isin([*family, *references])]
        contrasts = iter(post_hoc.contrasts(f"{dataset} table {table} {column} {'+'.join(family)}", data,
                                            [(m, r) for m in family for r in references]))
        for method in family:
            cells.append(_value_cell(table, dataset, method, column, mine))
            cells.append(_p_cell(table, dataset, method, "P_AVG", next(contrasts), f"{method} vs {AVG}"))
            if high:
                cells.append(_p_cell(table, dataset, method, "P_High", next(contrasts), f"{method} vs {high}"))
            else:
                cells.append(_not_measured(table, dataset, method, "P_High", "no localization network"))
    return cells


def _randomization_cells(scores, dataset, choice, methods, form, post_hoc):
    rows = scores[(scores["test"] == RANDOMIZATION) & scores["model"].isin(choice.replicates)]
    fully = _fully_randomized_state(rows)
    cells = []
    for method in methods:
        mine = rows[rows["group"] == method]
        randomized = mine[mine["state"] == fully]
        baseline = mine[mine["state"] == "baseline"]
        if form == "replicates":
            baseline = baseline[baseline["model"] == choice.replicates[0]]
            randomized_cell = _replicate_cell(3, dataset, method, "FullyRandomized", randomized)
            baseline_cell = _value_cell(3, dataset, method, "RandBaseline", baseline)
            test_data = pd.concat([randomized.assign(group="randomized"), baseline.assign(group="baseline")])
        else:
            randomized, baseline = _image_means(randomized), _image_means(baseline)
            randomized_cell = _value_cell(3, dataset, method, "FullyRandomized", randomized)
            baseline_cell = _value_cell(3, dataset, method, "RandBaseline", baseline)
            test_data = pd.concat([randomized.assign(group="randomized"), baseline.assign(group="baseline")])
        baseline_cell[CELL_COLUMNS.index("form")] = randomized_cell[CELL_COLUMNS.index("form")] = form
        cells += [baseline_cell, randomized_cell]
        (contrast,) = post_hoc.contrasts(f"{dataset} table 3 randomization {method}", test_data,
                                         [("randomized", "baseline")], higher_is_pass=False)
        cells.append(_p_cell(3, dataset, method, "P_Randomization", contrast,
                             f"{method} fully randomized ({fully}) vs its random-pair baseline", form=form))
    return cells


def _similarity_cells(scores, dataset, test, high, choice, methods, controls, post_hoc):
    short, column = SHORT[test], VALUE_COLUMN[test]
    pair = getattr(choice, test)
    rows = scores[(scores["test"] == test) & (scores["metric"] == "ssim")]
    mine = rows[(rows["model"] == pair) | ((rows["group"] == high) & (rows["model"] == choice.localizer_pair))]
    cells = []
    if high:
        cells.append(_value_cell(4, dataset, high, column, mine))
    cells.append([4, dataset, LOW, column, LOW_SSIM, np.nan, 0, "", "", "constant", "the paper's low baseline", "", np.nan])
    for family in [list(methods)] + [[control] for control in controls]:
        if pair is None:
            for method in family:
                cells.append(_not_measured(4, dataset, method, column, f"no {test} pair of models"))
                for name in (f"P_{short}_High", f"P_{short}_Low"):
                    cells.append(_not_measured(4, dataset, method, name, f"no {test} pair of models"))
            continue
        references = ([high] if high else []) + [LOW_SSIM]
        data = mine[mine["group"].isin([*family, *([high] if high else [])])]
        contrasts = iter(post_hoc.contrasts(f"{dataset} table 4 {test} {'+'.join(family)}", data,
                                            [(m, r) for m in family for r in references]))
        for method in family:
            cells.append(_value_cell(4, dataset, method, column, mine))
            if high:
                cells.append(_p_cell(4, dataset, method, f"P_{short}_High", next(contrasts), f"{method} vs {high}"))
            else:
                cells.append(_not_measured(4, dataset, method, f"P_{short}_High", "no localization networks"))
            cells.append(_p_cell(4, dataset, method, f"P_{short}_Low", next(contrasts), f"{method} vs SSIM {LOW_SSIM}"))
    return cells


# --- helpers ----------------------------------------------------------------------------------------

def _fully_randomized_state(rows: pd.DataFrame) -> str:
    """The last state of the cascade (mixed1 for InceptionV3): the states in the score table's
    order, without the original model and the baseline."""
    states = [s for s in dict.fromkeys(rows["state"]) if s not in ("original", "baseline")]
    if not states:
        raise ValueError("randomization scores hold no randomized state")
    return states[-1]


def _finite(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[np.isfinite(rows["score"].astype(float))]


def _value_cell(table, dataset, group, column, rows):
    values = _finite(rows[rows["group"] == group])["score"].astype(float)
    if values.empty:
        return [table, dataset, group, column, np.nan, np.nan, 0, "", "", "per_image", "no finite score", "", np.nan]
    # Four decimals (the paper prints two), so that tables compare cleanly across runs.
    sd = float(values.std(ddof=1)) if len(values) > 1 else np.nan
    return [table, dataset, group, column, round(float(values.mean()), CELL_DECIMALS),
            round(sd, CELL_DECIMALS), int(len(values)), "", "", "per_image", "", "", np.nan]


def _replicate_cell(table, dataset, group, column, rows):
    """The authors' form: the mean of the replicates' means, and the population sd across them."""
    rows = _finite(rows[rows["group"] == group])
    means = rows.groupby("model", sort=False)["score"].mean().astype(float)
    if means.empty:
        return [table, dataset, group, column, np.nan, np.nan, 0, "", "", "replicates", "no finite score", "", np.nan]
    return [table, dataset, group, column, round(float(means.mean()), CELL_DECIMALS),
            round(float(means.std(ddof=0)), CELL_DECIMALS), int(len(rows)), "", "", "replicates",
            f"{len(means)} replicates", "", np.nan]


def _image_means(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, image): the mean of its finite scores over the replicates."""
    rows = _finite(rows)
    means = rows.groupby(["group", "image"], sort=False)["score"].mean().reset_index()
    return means.assign(model="mean over replicates")


def _p_cell(table, dataset, method, column, contrast, comparison, form="per_image"):
    icc = round(float(contrast.icc), CELL_DECIMALS) if np.isfinite(contrast.icc) else np.nan
    return [table, dataset, method, column, np.nan, np.nan, contrast.n, format_p(contrast.p_value),
            contrast.verdict, form, comparison, contrast.fit, icc]


def _not_measured(table, dataset, method, column, why):
    return [table, dataset, method, column, np.nan, np.nan, 0, "", NOT_MEASURED, "", why, "", np.nan]


def verdict_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The P-value cells that carry a verdict (what the stability analysis resamples)."""
    return cells[cells["column"].str.startswith("P_") & (cells["verdict"] != NOT_MEASURED)
                 & (cells["verdict"] != "")]


__all__ = ["CELL_COLUMNS", "FAIL", "ModelChoice", "PostHoc", "main_choice", "result_cells", "verdict_cells"]
