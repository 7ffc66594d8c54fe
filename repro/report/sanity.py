"""The sanity checks' tables, figures and report section (docs/sanity-checks.md).

From the sanity cells (repro.statistics.sanity) and per-image scores (repro.evaluation.sanity):
- table_sanity.{csv,md}: one table per check family, rows per data set and method, columns as the
  check has them, with the paper's markers († did not pass, ‡ passed, § uncertain, ◊ fragile);
- figure_sanity_<family>.{png,pdf}: per-image box plots per data set and metric, each method's
  verdict above its box;
- `sanity_section`: the report.md section, with how many of Table 3's AUPRC verdicts average
  precision moves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro.io import write_text
from repro.protocol import (AVERAGE_PRECISION, BOTTOM_UP, BOTTOM_UP_PREFIX, CONTROLS, DELETION, EMPRT, FAIL,
                            LOCALIZATION, NOT_MEASURED, NULL_CONTROLS, NULL_MAPS, PASS, RANDOM_LOGIT, ROAD, SANITY_TESTS,
                            SMPRT)
from repro.report.tables import FRAGILE, MARKERS

TITLES = {
    EMPRT: "eMPRT: the rise in map complexity from the trained to the fully randomized model (Hedström et al. 2024)",
    SMPRT: "sMPRT: the randomization test on maps averaged over noisy copies of the image (Hedström et al. 2024)",
    BOTTOM_UP: "Bottom-up randomization: the lowest block randomized first (Binder et al. 2023)",
    NULL_MAPS: "Null maps through the randomization test (Binder et al. 2023)",
    RANDOM_LOGIT: "Random logit: the predicted class's map against the other class's (Sixt et al. 2020)",
    LOCALIZATION: "Localization as cheXlocalize scores it: IoU (Otsu; a threshold tuned on the validation set) "
                  "and hit rate (Saporta et al. 2022)",
    AVERAGE_PRECISION: "Utility with average precision (scikit-learn) for the trapezoidal AUPRC",
    DELETION: "Deletion and insertion AUCs (Petsiuk et al. 2018)",
    ROAD: "ROAD: AUC(LeRF) - AUC(MoRF) with noisy linear imputation (Rong et al. 2022)",
}
COLUMNS = {
    EMPRT: ["eMPRT", "P_Zero"],
    SMPRT: ["RandBaseline", "FullyRandomized", "P_Randomization"],
    BOTTOM_UP: ["RandBaseline", "LowestRandomized", "P_BottomUp"],
    NULL_MAPS: ["RandBaseline", "FullyRandomized", "P_Randomization"],
    RANDOM_LOGIT: ["RandBaseline", "OtherClass", "P_Logit"],
    LOCALIZATION: ["IoU", "P_IoU_AVG", "P_IoU_High", "Threshold", "IoUTuned", "P_IoUTuned_AVG", "P_IoUTuned_High",
                   "HitRate", "P_Hit_AVG", "P_Hit_High"],
    AVERAGE_PRECISION: ["AP", "P_AP_AVG", "P_AP_High"],
    DELETION: ["DeletionAUC", "P_Deletion_Noise", "InsertionAUC", "P_Insertion_Noise"],
    ROAD: ["MoRF", "LeRF", "RoadGap", "P_Road_Noise"],
}
RULES = {
    EMPRT: "passes when its mean eMPRT is significantly above 0 (the score of a map that ignores the weights)",
    SMPRT: "the paper's randomization rule on the denoised maps: passes when the denoised fully randomized map is "
           "significantly less like the denoised trained map (SSIM) than the random-pair baseline",
    BOTTOM_UP: "the paper's randomization rule at the first bottom-up state (only the lowest block randomized): passes "
               "when its map is significantly less like the trained map (SSIM) than the random-pair baseline; the "
               "curve shows every bottom-up state",
    NULL_MAPS: "the paper's randomization rule; a null map must not pass (one that does means the harness is broken)",
    RANDOM_LOGIT: "passes when the two classes' maps are significantly less alike (SSIM) than the random-pair "
                  "baseline; a map that explains the image, not the decision, does not pass",
    LOCALIZATION: "passes when significantly above AVG (and the localization network), as utility",
    AVERAGE_PRECISION: "Table 3's utility rule with average precision in place of the trapezoid",
    DELETION: "deletion passes when its AUC is significantly below the noise map's, insertion when above",
    ROAD: "passes when its gap is significantly above the noise map's",
}
METRICS = {EMPRT: ["emprt"], SMPRT: ["ssim"], BOTTOM_UP: ["ssim", "ssim_curve"], NULL_MAPS: ["ssim"], RANDOM_LOGIT: ["ssim"], LOCALIZATION: ["iou_otsu", "iou_tuned", "hit"], AVERAGE_PRECISION: ["ap"],
           DELETION: ["deletion_auc", "insertion_auc"], ROAD: ["road_gap"]}
VERDICT_COLUMN = {"emprt": "P_Zero", "iou_otsu": "P_IoU_AVG", "iou_tuned": "P_IoUTuned_AVG", "hit": "P_Hit_AVG", "ap": "P_AP_AVG",
                  "deletion_auc": "P_Deletion_Noise", "insertion_auc": "P_Insertion_Noise", "road_gap": "P_Road_Noise"}


def format_sanity_cell(cell) -> str:
    if cell is None:
        return "NA"
    if cell["column"].startswith("P_"):
        if cell["verdict"] == NOT_MEASURED:
            return "not measured"
        text = f"{cell['p']} {MARKERS.get(cell['verdict'], '')}".strip()
        return f"{text} {FRAGILE}" if bool(cell.get("fragile", False)) else text
    if not np.isfinite(cell["mean"]):
        return "NA"
    sd = "" if not np.isfinite(cell["sd"]) else f" ± {cell['sd']:.2f}"
    return f"{cell['mean']:.3f}{sd}"


def render_sanity_table(cells: pd.DataFrame, test: str, datasets) -> pd.DataFrame:
    """One check's table: a title row per data set, then a row per method (baselines first)."""
    mine = cells[cells["test"] == test]
    rows = []
    for name in [d for d in datasets if d in set(mine["dataset"])]:
        rows.append([datasets[name].title] + [""] * len(COLUMNS[test]))
        here = mine[mine["dataset"] == name]
        for method in dict.fromkeys(here["method"]):
            by_column = {row["column"]: row for _, row in here[here["method"] == method].iterrows()}
            rows.append([method] + [format_sanity_cell(by_column.get(c)) for c in COLUMNS[test]])
    return pd.DataFrame(rows, columns=["Dataset and method"] + COLUMNS[test])


def write_sanity_tables(cells: pd.DataFrame, out_dir: str | Path, *, datasets) -> list[Path]:
    """results/table_sanity.md (every check's table, with its rule and source) and sanity_cells.csv."""
    out_dir = Path(out_dir)
    parts = ["**Sanity checks adopted after the paper** (docs/sanity-checks.md; markers: † did not pass, "
             "‡ passed, § no significant difference, ◊ fragile)\n"]
    for test in SANITY_TESTS:
        if test in set(cells["test"]):
            table = render_sanity_table(cells, test, datasets)
            parts.append(f"### {TITLES[test]}\n\nVerdict: {RULES[test]}.\n\n{table.to_markdown(index=False)}\n")
    directions = published_directions(cells, datasets=datasets)
    if len(directions):
        parts.append("### Published directions of effect\n\nThe claims of the papers behind these checks that the kit "
                     "measures on its own methods, per data set (sanity_findings.csv).\n\n"
                     f"{directions.to_markdown(index=False)}\n")
    return [write_text(out_dir / "sanity_cells.csv", cells.to_csv(index=False)),
            write_text(out_dir / "sanity_findings.csv", directions.to_csv(index=False)),
            write_text(out_dir / "table_sanity.md", "\n".join(parts))]


def sanity_figures(scores: pd.DataFrame, cells: pd.DataFrame, out_dir: str | Path, *, datasets, methods,
                   choices) -> list[Path]:
    """figure_sanity_<check>.{png,pdf}: the per-image scores behind each check's cells."""
    from repro.report.figures import _boxes, plt, save_figure
    paths = []
    for test in [t for t in SANITY_TESTS if t in set(scores["test"])]:
        metrics = METRICS[test]
        names = [d for d in datasets if d in set(scores.loc[scores["test"] == test, "dataset"])]
        figure, axes = plt.subplots(len(metrics), len(names), figsize=(6.5 * len(names), 5.0 * len(metrics)),
                                    squeeze=False, gridspec_kw={"hspace": 0.65})   # room for the tick labels
        for row, metric in enumerate(metrics):
            for column, name in enumerate(names):
                axis = axes[row, column]
                rows = _figure_rows(scores, test, metric, name, choices[name])
                axis.set_title(f"{datasets[name].title}", pad=14)
                if metric == "ssim_curve":
                    _curve(axis, rows)
                    continue
                groups = list(dict.fromkeys(rows["group"]))
                _boxes(axis, [rows.loc[rows["group"] == g, "score"].dropna() for g in groups], groups,
                       colours=[None] * len(groups))
                top = axis.get_ylim()[1]
                for x, group in enumerate(groups, start=1):
                    mark = _mark(cells, test, name, group, metric)
                    if mark:
                        axis.text(x, top, mark, ha="center", va="bottom", fontsize=8)
                axis.set_ylabel({NULL_MAPS: "SSIM (fully randomized | baseline)",
                                 SMPRT: "SSIM, denoised (fully randomized | baseline)",
                                 BOTTOM_UP: "SSIM (lowest block randomized | baseline)",
                                 RANDOM_LOGIT: "SSIM (other class | baseline)"}.get(test, metric))
        figure.suptitle(TITLES[test], fontsize=10)
        paths += save_figure(figure, out_dir, f"figure_sanity_{test}")
    return paths


def _figure_rows(scores, test, metric, dataset, choice) -> pd.DataFrame:
    rows = scores[(scores["test"] == test) & (scores["metric"] == metric) & (scores["dataset"] == dataset)]
    if metric == "ssim_curve":   # every replicate's
        return rows[rows["model"].isin(choice.replicates)]
    if test in (EMPRT, NULL_MAPS, BOTTOM_UP):
        rows = rows[rows["model"] == choice.replicates[0]]
        if test in (NULL_MAPS, BOTTOM_UP):
            return _paired_boxes(rows, {"baseline": " baseline"}, " randomized")
        return rows
    if test in (RANDOM_LOGIT, SMPRT):
        rows = rows[rows["model"] == choice.utility]
        return _paired_boxes(rows, {"baseline": " baseline"}, " other" if test == RANDOM_LOGIT else " randomized")
    keep = (rows["model"] == choice.utility) | (rows["group"] == rows["model"]) | (rows["model"] == choice.localizer)
    return rows[keep]


def _curve(axis, rows: pd.DataFrame) -> None:
    """The bottom-up curve: each group's mean SSIM to the trained map over the images and replicates,
    per state in bottom-up order (as Figure 3 draws the top-down cascade)."""
    from matplotlib import colormaps
    states = list(dict.fromkeys(rows["state"]))
    colours = colormaps["tab20"].colors
    for k, group in enumerate(dict.fromkeys(rows["group"])):
        means = rows[rows["group"] == group].groupby("state")["score"].mean().reindex(states)
        control = group in (*CONTROLS, *NULL_CONTROLS)    # dashed: the maps that must not pass
        axis.plot(range(len(states)), means.to_numpy(), marker="o", markersize=3, label=group,
                  color=colours[(2 * k) % 20 + (k * 2 >= 20)], linestyle="--" if control else "-")
    axis.set_xticks(range(len(states)), [state.removeprefix(BOTTOM_UP_PREFIX) for state in states], rotation=45,
                    fontsize=7)
    axis.set_xlabel("randomized from the bottom up to")
    axis.set_ylabel("mean SSIM to the trained map")
    axis.set_ylim(-0.05, 1.05)
    axis.legend(fontsize=6, ncol=2)


def _paired_boxes(rows: pd.DataFrame, suffixes: dict[str, str], otherwise: str) -> pd.DataFrame:
    """Rows relabelled '<group> <state>', each group's boxes side by side in the groups' order."""
    order = {group: k for k, group in enumerate(dict.fromkeys(rows["group"]))}
    labelled = rows.assign(order=rows["group"].map(order), baseline=rows["state"] != "baseline",
                           group=rows["group"] + rows["state"].map(lambda state: suffixes.get(state, otherwise)))
    return labelled.sort_values(["order", "baseline"], kind="stable")


def _mark(cells, test, dataset, group, metric) -> str:
    column = VERDICT_COLUMN.get(metric)
    if column is None:
        return ""
    row = cells[(cells["test"] == test) & (cells["dataset"] == dataset) & (cells["method"] == group)
                & (cells["column"] == column)]
    if row.empty:
        return ""
    text = MARKERS.get(row["verdict"].iloc[0], "")
    return f"{text}{FRAGILE}" if "fragile" in row and bool(row["fragile"].iloc[0]) else text


# --- the published directions of effect, checked on the sanity cells -------------------------------
# Each: (claim as its paper states it, source, the test and check). Only claims whose text we read
# (the papers' abstracts), and only where the kit measures the same thing on its own methods.
AGREE, DISAGREE = "agree", "disagree"
CHEXLOCALIZE_METHODS = ("GCAM", "GCAMPP", "IG", "OCC")   # the kit's methods among cheXlocalize's seven


def _gradcam_localizes_best(cells, dataset):
    """GCAM's mean Otsu IoU is the highest among the methods cheXlocalize also evaluated."""
    rows = cells[(cells["test"] == LOCALIZATION) & (cells["dataset"] == dataset) & (cells["column"] == "IoU")
                 & cells["method"].isin(CHEXLOCALIZE_METHODS)].dropna(subset=["mean"])
    if "GCAM" not in set(rows["method"]) or len(rows) < 2:
        return None, "needs GCAM and another of " + ", ".join(CHEXLOCALIZE_METHODS)
    ranked = rows.sort_values("mean", ascending=False)
    evidence = ", ".join(f"{m} {v:.3f}" for m, v in zip(ranked["method"], ranked["mean"]))
    return ranked["method"].iloc[0] == "GCAM", f"mean IoU (Otsu): {evidence}"


def _guided_bp_ignores_the_class(cells, dataset):
    """GBP does not pass the random-logit test (its maps of the two classes are not less alike
    than two images' maps)."""
    row = cells[(cells["test"] == RANDOM_LOGIT) & (cells["dataset"] == dataset) & (cells["method"] == "GBP")
                & (cells["column"] == "P_Logit")]
    if row.empty or row["verdict"].iloc[0] in ("", NOT_MEASURED):
        return None, "needs GBP's random-logit verdict"
    other = cells[(cells["test"] == RANDOM_LOGIT) & (cells["dataset"] == dataset) & (cells["method"] == "GBP")
                  & (cells["column"] == "OtherClass")]
    mean = f"SSIM between the classes' maps {other['mean'].iloc[0]:.3f}; " if not other.empty else ""
    return row["verdict"].iloc[0] != PASS, f"{mean}verdict: {row['verdict'].iloc[0]}"


PUBLISHED_DIRECTIONS = [
    ("Grad-CAM generally localized pathologies better than the other evaluated saliency methods",
     "Saporta et al., Nature Machine Intelligence 2022, abstract", _gradcam_localizes_best),
    ("the explanations of Guided BP are independent of the parameters of later layers (so of the class explained)",
     "Sixt et al., ICML 2020, abstract", _guided_bp_ignores_the_class),
]


def published_directions(cells: pd.DataFrame, *, datasets) -> pd.DataFrame:
    """Each published direction per data set: agree, disagree or not measured, with the evidence."""
    rows = []
    for claim, source, check in PUBLISHED_DIRECTIONS:
        for name in [d for d in datasets if d in set(cells["dataset"])]:
            holds, evidence = check(cells, name)
            outcome = NOT_MEASURED if holds is None else AGREE if holds else DISAGREE
            rows.append({"finding": claim, "source": source, "dataset": name, "outcome": outcome, "evidence": evidence})
    return pd.DataFrame(rows, columns=["finding", "source", "dataset", "outcome", "evidence"])


def ap_moves(cells: pd.DataFrame, main_cells: pd.DataFrame) -> tuple[int, int, list[str]]:
    """How many of Table 3's AUPRC verdicts (P_AVG, P_High) average precision changes: (moved,
    compared, 'dataset method column: trapezoid -> AP' for each moved)."""
    moved, compared = [], 0
    ap = cells[(cells["test"] == AVERAGE_PRECISION) & cells["column"].isin(["P_AP_AVG", "P_AP_High"])]
    for _, row in ap.iterrows():
        column = row["column"].replace("P_AP_", "P_")
        paper = main_cells[(main_cells["table"] == 3) & (main_cells["dataset"] == row["dataset"])
                           & (main_cells["method"] == row["method"]) & (main_cells["column"] == column)]
        if paper.empty or paper["verdict"].iloc[0] in ("", NOT_MEASURED) or row["verdict"] in ("", NOT_MEASURED):
            continue
        compared += 1
        if paper["verdict"].iloc[0] != row["verdict"]:
            moved.append(f"{row['dataset']} {row['method']} {column}: {paper['verdict'].iloc[0]} -> {row['verdict']}")
    return len(moved), compared, moved


def sanity_section(cells: pd.DataFrame, main_cells: pd.DataFrame, *, datasets) -> str:
    """report.md's section: each check's verdicts per data set, the null controls, AP's moves."""
    lines = ["## Sanity checks adopted after the paper", "",
             "Each check, its source and its verdict rule: docs/sanity-checks.md; the tables: "
             "table_sanity.md; per-image scores: sanity_scores.csv.", ""]
    verdicts = cells[cells["column"].str.startswith("P_") & ~cells["verdict"].isin(["", NOT_MEASURED])]
    for test in [t for t in SANITY_TESTS if t in set(cells["test"])]:
        lines.append(f"- **{TITLES[test]}**. Verdict: {RULES[test]}.")
        for name in [d for d in datasets if d in set(verdicts["dataset"])]:
            mine = verdicts[(verdicts["test"] == test) & (verdicts["dataset"] == name)]
            for column in dict.fromkeys(mine["column"]):
                here = mine[mine["column"] == column]
                passed = [m for m, v in zip(here["method"], here["verdict"]) if v == PASS]
                failed = [m for m, v in zip(here["method"], here["verdict"]) if v == FAIL]
                lines.append(f"  - {datasets[name].short} {column}: passed {', '.join(passed) or 'none'}; "
                             f"did not pass {', '.join(failed) or 'none'}; "
                             f"{len(here) - len(passed) - len(failed)} uncertain")
    nulls = verdicts[(verdicts["test"] == NULL_MAPS) & (verdicts["verdict"] == PASS)]
    if NULL_MAPS in set(cells["test"]):
        lines.append("- Null-map check: " + ("every null map failed the randomization test, as it must."
                                             if nulls.empty else "**a null map passed the randomization test**: "
                                             + ", ".join(f"{r.dataset} {r.method}" for r in nulls.itertuples())
                                             + "; the harness is broken."))
    if AVERAGE_PRECISION in set(cells["test"]):
        count, compared, moved = ap_moves(cells, main_cells)
        lines.append(f"- Average precision for the trapezoidal AUPRC moves {count} of {compared} of Table 3's "
                     f"utility verdicts" + (f": {'; '.join(moved)}." if moved else "."))
    directions = published_directions(cells, datasets=datasets)
    measured = directions[directions["outcome"] != NOT_MEASURED]
    if len(directions):
        lines.append(f"- Published directions of effect: {int((measured['outcome'] == AGREE).sum())} of {len(measured)} "
                     f"measured agree ({len(directions) - len(measured)} not measured; table_sanity.md).")
        for row in measured.itertuples():
            lines.append(f"  - {datasets[row.dataset].short}: {row.outcome}: {row.finding} ({row.source}); {row.evidence}")
    return "\n".join(lines) + "\n"
