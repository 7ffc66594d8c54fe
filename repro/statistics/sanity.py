"""The sanity checks' cells: means, sds, n, P values and verdicts, through the same mixed model.

Input: the sanity checks' per-image scores (repro.evaluation.sanity, SCORE_COLUMNS). Output: one
row per cell (SANITY_CELL_COLUMNS): a value cell (mean and sd over images) or a P-value cell with its
verdict, from `lmer(score ~ group + (1 | image))` and multcomp's single-step Tukey contrasts, as the
paper's cells (repro.statistics.mixed). The verdict rule of each check (docs/sanity-checks.md):
- emprt: the mean eMPRT above 0 (a map that ignores the weights scores 0), as the paper's constant
  comparisons are made (evaluation.constant_comparison); P_Zero;
- smprt: the paper's randomization rule on denoised maps (replicate 1's denoised fully randomized
  map's SSIM to its denoised trained map below the denoised maps' random-pair baseline); P_Randomization;
- bottom_up: the paper's randomization rule at the first bottom-up state (the lowest group
  randomized; its last state is the cascade's last); P_BottomUp;
- null_maps: the paper's randomization rule (fully randomized SSIM below the random-pair baseline);
  P_Randomization; a null map that passes means the harness is broken;
- random_logit: the predicted class's map against the other class's, below the random-pair baseline
  (the randomization rule with the other class in place of the randomized model); P_Logit;
- localization: IoU (Otsu; and at the threshold tuned on the validation positives, IoUTuned) and
  hit rate above AVG and the localization network, as utility;
- average_precision: the utility verdicts with average precision for AUPRC (P_AP_AVG, P_AP_High),
  compared in the report with Table 3's trapezoidal ones;
- deletion: the deletion AUC below the noise map's, the insertion AUC above it;
- road: the gap AUC(LeRF) - AUC(MoRF) above the noise map's.
Where several replicates are scored (emprt, bottom_up, null_maps), each image's score is the mean over them.
Stability: the cells' verdicts on cluster bootstrap resamples of the images (repro.statistics.stability).
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from repro.protocol import (AVERAGE_PRECISION, AVG, BOTTOM_UP, CONTROLS, DELETION, EMPRT, LOCALIZATION, NOT_MEASURED,
                            NULL_CONTROLS, NULL_MAPS, RANDOM_LOGIT, ROAD, SMPRT, DatasetSpec)
from repro.statistics.cells import CELL_DECIMALS, ModelChoice, PostHoc
from repro.statistics.mixed import format_p
from repro.statistics.stability import resample_images

SANITY_CELL_COLUMNS = ["test", "dataset", "method", "column", "mean", "sd", "n", "p", "verdict", "comparison", "fit",
                       "icc"]
NULL_GROUPS = NULL_CONTROLS
NOISE = NULL_CONTROLS[1]
KEY = ["test", "dataset", "method", "column"]


def run_sanity_cells(scores: pd.DataFrame, specs: dict[str, DatasetSpec], choices: dict[str, ModelChoice], *,
                     methods, evaluation) -> pd.DataFrame:
    """Every data set's sanity cells, with their bootstrap stability when evaluation.stability asks
    for resamples (the `fragile` column; False where a cell has no verdict to resample)."""
    stability, rule = evaluation.stability, evaluation.constant_comparison
    cells = []
    for name, spec in specs.items():
        mine = scores[scores["dataset"] == name]
        controls = tuple(g for g in (*CONTROLS, NOISE) if g in set(mine["group"]))
        found = sanity_cells(mine, spec, choices[name], methods=methods, controls=controls, post_hoc=PostHoc(rule))
        if stability.resamples:
            firmness = sanity_stability(mine, found, spec, choices[name], methods=methods, controls=controls,
                                        resamples=stability.resamples, seed=stability.seed,
                                        fragile_above=stability.fragile_above, constant_rule=rule)
            found = found.merge(firmness, on=KEY, how="left")
        cells.append(found)
    cells = pd.concat(cells, ignore_index=True)
    if "fragile" not in cells:
        cells["fragile"] = False
    cells["fragile"] = cells["fragile"].astype("boolean").fillna(False).astype(bool)
    return cells


def sanity_cells(scores: pd.DataFrame, dataset: DatasetSpec, choice: ModelChoice, *, methods, controls=(),
                 post_hoc: PostHoc | None = None) -> pd.DataFrame:
    """Every cell of the sanity checks scored in `scores` for one data set (methods, then controls)."""
    post_hoc = post_hoc or PostHoc()
    scores = scores[scores["dataset"] == dataset.name]
    name = dataset.name
    cells: list[list] = []
    tests = set(scores["test"])
    if EMPRT in tests:
        rows = _image_means(scores[(scores["test"] == EMPRT) & scores["model"].isin(choice.replicates)])
        for family in _families(methods, dict.fromkeys([*controls, NOISE]), rows):
            contrasts = iter(post_hoc.contrasts(f"{name} emprt {'+'.join(family)}", rows[rows["group"].isin(family)],
                                                [(group, 0.0) for group in family]))
            for group in family:
                cells.append(_value_cell(EMPRT, name, group, "eMPRT", rows))
                cells.append(_p_cell(EMPRT, name, group, "P_Zero", next(contrasts), f"{group} eMPRT vs 0"))
    if SMPRT in tests:
        rows = scores[(scores["test"] == SMPRT) & (scores["model"] == choice.utility)]
        cells += _against_baseline(post_hoc, SMPRT, name, rows, methods, label="smprt",
                                   tested=("denoised randomized", "FullyRandomized"), p_column="P_Randomization",
                                   what="denoised fully randomized")
    if BOTTOM_UP in tests:
        rows = scores[(scores["test"] == BOTTOM_UP) & (scores["metric"] == "ssim")
                      & scores["model"].isin(choice.replicates)]
        cells += _against_baseline(post_hoc, BOTTOM_UP, name, rows, dict.fromkeys([*methods, *controls, NOISE]),
                                   label="bottom up",
                                   tested=("lowest group randomized", "LowestRandomized"), p_column="P_BottomUp",
                                   what="lowest group randomized", image_means=True)
    if NULL_MAPS in tests:
        rows = scores[(scores["test"] == NULL_MAPS) & scores["model"].isin(choice.replicates)]
        cells += _against_baseline(post_hoc, NULL_MAPS, name, rows, NULL_GROUPS, label="null maps",
                                   tested=("randomized", "FullyRandomized"), p_column="P_Randomization",
                                   what="fully randomized", image_means=True)
    if RANDOM_LOGIT in tests:
        rows = scores[(scores["test"] == RANDOM_LOGIT) & (scores["model"] == choice.utility)]
        cells += _against_baseline(post_hoc, RANDOM_LOGIT, name, rows, [*methods, *controls], label="random logit",
                                   tested=("other class", "OtherClass"), p_column="P_Logit",
                                   what="other class's map")
    high = dataset.high_baseline if choice.localizer else None
    for test, metric, column, short in ((LOCALIZATION, "iou_otsu", "IoU", "IoU"),
                                        (LOCALIZATION, "iou_tuned", "IoUTuned", "IoUTuned"),
                                        (LOCALIZATION, "hit", "HitRate", "Hit"), (AVERAGE_PRECISION, "ap", "AP", "AP")):
        if test not in tests:
            continue
        rows = scores[(scores["test"] == test) & (scores["metric"] == metric)]
        rows = rows[(rows["model"] == choice.utility) | (rows["group"] == AVG)
                    | ((rows["group"] == high) & (rows["model"] == choice.localizer))]
        if rows.empty:
            continue
        references = [AVG] + ([high] if high else [])
        if metric == "iou_tuned":   # the threshold each group's maps were cut at (the same on every image)
            thresholds = scores[(scores["test"] == test) & (scores["metric"] == "tuned_threshold")]
            cells += [_value_cell(test, name, group, "Threshold", thresholds)
                      for group in dict.fromkeys(thresholds["group"])]
        cells += [_value_cell(test, name, group, column, rows) for group in references]
        for family in _families(methods, controls, rows):
            data = rows[rows["group"].isin([*family, *references])]
            contrasts = iter(post_hoc.contrasts(f"{name} {test} {metric} {'+'.join(family)}", data,
                                                [(group, ref) for group in family for ref in references]))
            for group in family:
                cells.append(_value_cell(test, name, group, column, rows))
                cells.append(_p_cell(test, name, group, f"P_{short}_AVG", next(contrasts), f"{group} vs {AVG}"))
                if high:
                    cells.append(_p_cell(test, name, group, f"P_{short}_High", next(contrasts), f"{group} vs {high}"))
    for test, metric, column, p_column, higher in ((DELETION, "deletion_auc", "DeletionAUC", "P_Deletion_Noise", False),
                                                   (DELETION, "insertion_auc", "InsertionAUC", "P_Insertion_Noise", True),
                                                   (ROAD, "road_gap", "RoadGap", "P_Road_Noise", True)):
        if test not in tests:
            continue
        rows = scores[(scores["test"] == test) & (scores["metric"] == metric) & (scores["model"] == choice.utility)]
        cells.append(_value_cell(test, name, NOISE, column, rows))
        for family in _families(methods, [c for c in controls if c != NOISE], rows):
            data = rows[rows["group"].isin([*family, NOISE])]
            contrasts = iter(post_hoc.contrasts(f"{name} {test} {metric} {'+'.join(family)}", data,
                                                [(group, NOISE) for group in family], higher_is_pass=higher))
            for group in family:
                cells.append(_value_cell(test, name, group, column, rows))
                cells.append(_p_cell(test, name, group, p_column, next(contrasts), f"{group} vs {NOISE}"))
        if test == ROAD:
            for metric_, column_ in (("road_morf", "MoRF"), ("road_lerf", "LeRF")):
                mine = scores[(scores["test"] == ROAD) & (scores["metric"] == metric_) & (scores["model"] == choice.utility)]
                cells += [_value_cell(ROAD, name, group, column_, mine) for group in dict.fromkeys(mine["group"])]
    return pd.DataFrame(cells, columns=SANITY_CELL_COLUMNS)


def sanity_stability(scores: pd.DataFrame, cells: pd.DataFrame, dataset: DatasetSpec, choice: ModelChoice, *,
                     methods, controls=(), resamples: int, seed: int, fragile_above: float,
                     constant_rule: str = "studentized_range") -> pd.DataFrame:
    """Each verdict cell's bootstrap agreement: the share of `resamples` cluster bootstrap resamples
    of the images (repro.statistics.stability.resample_images) that give the run's verdict; fragile
    above `fragile_above` flips, as the paper's cells."""
    mine = scores[scores["dataset"] == dataset.name]
    verdicts = _verdicts(cells[cells["dataset"] == dataset.name])
    # Seeded per data set as the paper's cells are (repro.statistics.stability), and apart from them.
    seeds = np.random.SeedSequence([seed, zlib.crc32(f"sanity/{dataset.name}".encode())]).generate_state(resamples)
    agree: dict[tuple, list[bool]] = {key: [] for key in verdicts.index}
    for value in seeds:
        resample = resample_images(mine, np.random.default_rng(int(value)))
        again = _verdicts(sanity_cells(resample, dataset, choice, methods=methods, controls=controls,
                                       post_hoc=PostHoc(constant_rule, verdicts_only=True)))
        for key, verdict in verdicts.items():
            if key in again.index:
                agree[key].append(again[key] == verdict)
    rows = []
    for key, same in agree.items():
        share = float(np.mean(same)) if same else np.nan
        rows.append([*key, share, len(same), bool(np.isfinite(share) and 1 - share > fragile_above)])
    return pd.DataFrame(rows, columns=KEY + ["bootstrap_agreement", "bootstrap_resamples", "fragile"])


def _verdicts(cells: pd.DataFrame) -> pd.Series:
    found = cells[cells["column"].str.startswith("P_") & ~cells["verdict"].isin(["", NOT_MEASURED])]
    return found.set_index(KEY)["verdict"]


def _against_baseline(post_hoc: PostHoc, test: str, dataset: str, rows: pd.DataFrame, groups, *, label: str,
                      tested: tuple[str, str], p_column: str, what: str, image_means: bool = False) -> list[list]:
    """The paper's randomization rule for each group in `rows` (state "baseline": its random-pair
    baseline; any other state: the maps tested against the trained ones), each group a family of
    its own; image_means: each image's score is the mean over the replicates scored."""
    cells = []
    for group in groups:
        mine = rows[rows["group"] == group]
        if mine.empty:
            continue
        scored, baseline = mine[mine["state"] != "baseline"], mine[mine["state"] == "baseline"]
        if image_means:
            scored, baseline = _image_means(scored), _image_means(baseline)
        cells += _below_baseline(post_hoc, test, dataset, group, scored, baseline, tested=tested, p_column=p_column,
                                 family=f"{dataset} {label} {group}",
                                 comparison=f"{group} {what} vs its random-pair baseline")
    return cells


def _below_baseline(post_hoc: PostHoc, test: str, dataset: str, group: str, scored: pd.DataFrame,
                    baseline: pd.DataFrame, *, tested: tuple[str, str], p_column: str, family: str,
                    comparison: str) -> list[list]:
    """The paper's randomization rule for one group: the value cells of the tested maps' SSIM
    (`tested`: its label and column) and of its random-pair baseline, and the P cell of "tested
    below baseline"."""
    label, column = tested
    scored, baseline = scored.assign(group=label), baseline.assign(group="baseline")
    (contrast,) = post_hoc.contrasts(family, pd.concat([scored, baseline]), [(label, "baseline")], higher_is_pass=False)
    return [_value_cell(test, dataset, label, column, scored, label=group),
            _value_cell(test, dataset, "baseline", "RandBaseline", baseline, label=group),
            _p_cell(test, dataset, group, p_column, contrast, comparison)]


def _families(methods, controls, rows: pd.DataFrame) -> list[list[str]]:
    """The methods as one family, each control present in `rows` as a family of its own (as Tables 2-4)."""
    present = set(rows["group"])
    families = [[m for m in methods if m in present]]
    families += [[control] for control in controls if control in present]
    return [family for family in families if family]


def _image_means(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, image): the mean of its finite scores over the replicates (NaN when none)."""
    finite = rows[np.isfinite(rows["score"].astype(float))]
    means = finite.groupby(["group", "image"], sort=False)["score"].mean().reset_index()
    missing = rows[["group", "image"]].drop_duplicates().merge(means, how="left", on=["group", "image"])
    return missing.assign(model="mean over replicates")


def _value_cell(test, dataset, group, column, rows, *, label=None):
    values = rows.loc[rows["group"] == group, "score"].astype(float)
    values = values[np.isfinite(values)]
    method = label or group
    if values.empty:
        return [test, dataset, method, column, np.nan, np.nan, 0, "", "", "no finite score", "", np.nan]
    sd = float(values.std(ddof=1)) if len(values) > 1 else np.nan
    return [test, dataset, method, column, round(float(values.mean()), CELL_DECIMALS), round(sd, CELL_DECIMALS),
            int(len(values)), "", "", "", "", np.nan]


def _p_cell(test, dataset, method, column, contrast, comparison):
    icc = round(float(contrast.icc), CELL_DECIMALS) if np.isfinite(contrast.icc) else np.nan
    return [test, dataset, method, column, np.nan, np.nan, contrast.n, format_p(contrast.p_value), contrast.verdict,
            comparison, contrast.fit, icc]
