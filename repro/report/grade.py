"""The fidelity grade: a run's Tables 2-4 side by side with the published ones.

Both sides are cell tables in published.csv's schema (repro.report.tables.result_cells makes ours).
The grade has four parts:
- per value cell: our mean minus the published mean, and in units of the published sd only where
  our sd measures the same thing as the paper's (not the LOW constant, not the randomization
  baseline whose published sd has no known source, the fully randomized cells only when they are
  in the authors' replicate form, not the paper's impossible GBP sd of 0.83);
- per P-value cell: whether our verdict (pass / did not pass / uncertain) agrees with the paper's,
  counted separately for our firm and our fragile verdicts (repro.statistics.stability);
- per criterion and data set: Spearman's rank correlation of the methods' means;
- the paper's findings, checked one by one on our cells, as the paper states them: agree /
  disagree / not measured, with the places where the paper contradicts itself named instead of
  guessed.
A data set whose localization network scored below AVG on utility has no ceiling
(repro.report.summary.localizers_below_avg): the verdicts against that network (P_High,
P_Repeat_High, P_Reprod_High) and the findings that rest on it are not measured, not disagreements.
One headline sums it up: findings agreeing, and verdicts agreeing (firm ones apart).
A run with the sanity checks adds the published directions of effect of the papers behind them
(repro.report.sanity.published_directions) as rows of their own, "beyond the paper": graded the
same way (agree / disagree / not measured) but not in the headline, which counts the findings of
the paper the kit reproduces (those papers studied other models and data).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from repro.io import write_json, write_text
from repro.protocol import KAGGLE_DATASETS, NOT_MEASURED, PAPER_METHODS
from repro.report.published import published_cells
from repro.report.summary import localizers_below_avg

AGREE, DISAGREE = "agree", "disagree"
NAMES = {name: spec.short for name, spec in KAGGLE_DATASETS.items()}
# Published sds whose meaning our cells do not share (see the module docstring).
_NO_SD_UNITS = {("rsna", "GBP", "Repeatability")}
# The verdicts against the localization network (the paper's high baselines).
HIGH_BASELINE_COLUMNS = ("P_High", "P_Repeat_High", "P_Reprod_High")


# --- the cells --------------------------------------------------------------------------------

def compare_cells(ours: pd.DataFrame, published: pd.DataFrame | None = None, *,
                  randomization_form: str = "replicates") -> pd.DataFrame:
    """One row per published cell: ours beside the paper's, with differences and verdict agreement."""
    published = published_cells() if published is None else published
    key = ["table", "dataset", "method", "column"]
    ours = ours.copy()
    if "fragile" not in ours:
        ours["fragile"] = False
    merged = published.merge(ours[key + ["mean", "sd", "p", "verdict", "fragile"]], on=key, how="left",
                             suffixes=("_paper", "_ours"))
    merged["fragile"] = merged["fragile"].astype("boolean").fillna(False).astype(bool)
    merged["difference"] = merged["mean_ours"] - merged["mean_paper"]
    comparable = (merged["sd_paper"] > 0) & (merged["column"] != "RandBaseline") & ~merged.apply(
        lambda r: (r["dataset"], r["method"], r["column"]) in _NO_SD_UNITS, axis=1)
    if randomization_form != "replicates":
        comparable &= merged["column"] != "FullyRandomized"
    with np.errstate(divide="ignore", invalid="ignore"):
        merged["difference_in_sd"] = np.where(comparable, merged["difference"] / merged["sd_paper"], np.nan)
    merged["verdict_agreement"] = [
        _verdict_agreement(paper, mine) for paper, mine in zip(merged["verdict_paper"], merged["verdict_ours"])]
    no_ceiling = [below.dataset for below in localizers_below_avg(ours)]
    merged.loc[merged["dataset"].isin(no_ceiling) & merged["column"].isin(HIGH_BASELINE_COLUMNS)
               & (merged["verdict_agreement"] != "paper printed no verdict"), "verdict_agreement"] = NOT_MEASURED
    merged.loc[~merged["column"].str.startswith("P_"), "verdict_agreement"] = ""
    return merged


def _verdict_agreement(paper, mine) -> str:
    if paper == "":
        return "paper printed no verdict"
    if not isinstance(mine, str) or mine in ("", NOT_MEASURED):
        return NOT_MEASURED
    return AGREE if paper == mine else DISAGREE


def rank_correlations(ours: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Spearman's rho between our and the paper's ordering of the eight methods, per criterion."""
    published = published_cells() if published is None else published
    rows = []
    for (table, dataset, column), paper in published[~published["column"].str.startswith("P_")].groupby(
            ["table", "dataset", "column"]):
        paper = paper[paper["method"].isin(PAPER_METHODS)].set_index("method")["mean"]
        mine = ours[(ours["table"] == table) & (ours["dataset"] == dataset) & (ours["column"] == column)]
        mine = mine[mine["method"].isin(PAPER_METHODS)].set_index("method")["mean"]
        common = [m for m in PAPER_METHODS if m in paper.index and m in mine.index]
        rho = spearmanr(paper[common], mine[common]).statistic if len(common) >= 3 else np.nan
        rows.append({"table": table, "dataset": dataset, "criterion": column, "methods": len(common),
                     "spearman_rho": float(rho)})
    return pd.DataFrame(rows)


# --- the findings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    claim: str
    source: str
    check: Callable[[pd.DataFrame], bool | None]   # True = holds in the cells, None = not measured
    caveat: str = ""
    localizer_of: str | None = None   # the data set whose localization network the claim compares with


def _means(cells, table, dataset, column, methods=PAPER_METHODS) -> pd.Series | None:
    rows = cells[(cells["table"] == table) & (cells["dataset"] == dataset) & (cells["column"] == column)
                 & cells["method"].isin(methods)]
    means = rows.set_index("method")["mean"].dropna()
    return means if len(means) == len(methods) else None


def _verdicts(cells, table, dataset, column, methods=PAPER_METHODS) -> pd.Series | None:
    rows = cells[(cells["table"] == table) & (cells["dataset"] == dataset) & (cells["column"] == column)
                 & cells["method"].isin(methods)]
    verdicts = rows.set_index("method")["verdict"]
    return verdicts if len(verdicts) == len(methods) else None


def _best(table, column, best="XRAI", lowest=False):
    def check(cells, dataset):
        means = _means(cells, table, dataset, column)
        if means is None:
            return None
        return (means.idxmin() if lowest else means.idxmax()) == best
    return check


def _all_verdicts(table, column, verdict, methods=PAPER_METHODS):
    def check(cells, dataset):
        verdicts = _verdicts(cells, table, dataset, column, methods)
        return None if verdicts is None else bool((verdicts == verdict).all())
    return check


def _all_but(table, column, verdict, exception):
    """Every method but `exception` has `verdict` (the paper: seven of eight did not beat AVG)."""
    def check(cells, dataset):
        verdicts = _verdicts(cells, table, dataset, column)
        return None if verdicts is None else bool((verdicts.drop(exception) == verdict).all())
    return check


def _repeat_above_reprod(cells, dataset):
    repeat, reprod = _means(cells, 4, dataset, "Repeatability"), _means(cells, 4, dataset, "Reproducibility")
    return None if repeat is None or reprod is None else bool((repeat > reprod).all())


def _per_dataset(claim, source, check, caveat="", *, localizer=False):
    return [Finding(f"{NAMES[d]}: {claim}", source, lambda cells, d=d: check(cells, d), caveat,
                    localizer_of=d if localizer else None) for d in NAMES]


FINDINGS: list[Finding] = [
    *_per_dataset("XRAI has the highest utility (AUPRC) of the eight methods", "Results; Table 3",
                  _best(3, "AUPRC")),
    *_per_dataset("SIG has the lowest utility (AUPRC) of the eight methods", "Results; Table 3",
                  _best(3, "AUPRC", best="SIG", lowest=True)),
    *_per_dataset("XRAI passes the utility test against the AVG mask", "Key Points; Table 3",
                  _all_verdicts(3, "P_AVG", "pass", methods=("XRAI",))),
    *_per_dataset("every method but XRAI fails the utility test against the AVG mask (7 of 8)",
                  "Results (Localization Utility); Table 3", _all_but(3, "P_AVG", "did not pass", "XRAI")),
    *_per_dataset("the localization network beats every method on utility", "Abstract; Table 3",
                  _all_verdicts(3, "P_High", "did not pass"), localizer=True),
    *_per_dataset("XRAI fails the randomization test", "Key Points; Table 3",
                  _all_verdicts(3, "P_Randomization", "did not pass", methods=("XRAI",))),
    *_per_dataset("Grad-CAM passes the randomization test", "Discussion; Table 3",
                  _all_verdicts(3, "P_Randomization", "pass", methods=("GCAM",))),
    *_per_dataset("GRAD, SG, SIG and GBP pass the randomization test", "Results; Table 3",
                  _all_verdicts(3, "P_Randomization", "pass", methods=("GRAD", "SG", "SIG", "GBP"))),
    *_per_dataset("XRAI has the highest repeatability of the eight methods", "Results; Table 4",
                  _best(4, "Repeatability")),
    *_per_dataset("XRAI has the highest reproducibility of the eight methods", "Results; Table 4",
                  _best(4, "Reproducibility")),
    *_per_dataset("SG has the lowest repeatability of the eight methods", "Results; Table 4",
                  _best(4, "Repeatability", best="SG", lowest=True)),
    Finding("RSNA: repeatability exceeds reproducibility for every method", "Results; Table 4",
            lambda cells: _repeat_above_reprod(cells, "rsna"),
            caveat="the text says this of the pneumonia data; in the paper's SIIM-ACR Table 4, SG and SIG "
                   "are more reproducible than repeatable"),
    Finding("SIIM-ACR: no method is as reproducible as the U-Nets", "Results; Table 4",
            lambda cells: _all_verdicts(4, "P_Reprod_High", "did not pass")(cells, "siim"), localizer_of="siim"),
    Finding("RSNA: no method is more repeatable than the RetinaNets except XRAI", "Key Points; Results",
            lambda cells: _xrai_sole_exception(cells),
            caveat="Table 4 marks XRAI's repeatability (0.84 vs RetinaNet 0.80) as 'did not pass', while "
                   "the text and Key Points say XRAI exceeded RetinaNet (P < .001): checked as the text says.",
            localizer_of="rsna"),
]

# Counted claims where the paper disagrees with itself: reported, never graded.
CONTRADICTIONS = [
    {"claim": "How many methods failed the randomization test",
     "paper_says": "Abstract: five (SIIM-ACR) and two (RSNA) of eight failed. Table 3: SIIM-ACR one did not pass "
                   "(XRAI), one uncertain (IG), one unmarked (GGCAM); RSNA one did not pass (XRAI), two uncertain "
                   "(IG, GGCAM).",
     "column": "P_Randomization"},
    {"claim": "Table 4 RSNA GBP repeatability sd",
     "paper_says": "0.56 +- 0.83: an sd of 0.83 on SSIM in [0, 1] around 0.56 is impossible; probably 0.08. "
                   "Its difference in sd units is not graded.",
     "column": "Repeatability"},
]


def _xrai_sole_exception(cells):
    verdicts = _verdicts(cells, 4, "rsna", "P_Repeat_High")
    if verdicts is None:
        return None
    others = verdicts.drop("XRAI")
    return bool(verdicts["XRAI"] == "pass" and (others == "did not pass").all())


def check_findings(cells: pd.DataFrame) -> pd.DataFrame:
    """Each finding's outcome; one resting on a localization network that scored below AVG is not
    measured, and its caveat says why."""
    no_ceiling = {below.dataset: below for below in localizers_below_avg(cells)}
    rows = []
    for finding in FINDINGS:
        holds, caveat = finding.check(cells), finding.caveat
        if finding.localizer_of in no_ceiling:
            holds = None
            caveat = "; ".join(filter(None, [f"not measured: {no_ceiling[finding.localizer_of].finding}", caveat]))
        outcome = NOT_MEASURED if holds is None else (AGREE if holds else DISAGREE)
        rows.append({"finding": finding.claim, "source": finding.source, "outcome": outcome, "caveat": caveat})
    return pd.DataFrame(rows)


def failed_randomization_counts(cells: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts = {}
    for dataset in NAMES:
        verdicts = _verdicts(cells, 3, dataset, "P_Randomization")
        if verdicts is not None:
            counts[dataset] = {v or "unmarked": int((verdicts == v).sum()) for v in sorted(set(verdicts))}
    return counts


# --- the report -------------------------------------------------------------------------------

def grade(ours: pd.DataFrame, *, randomization_form: str = "replicates", beyond: pd.DataFrame | None = None) -> dict:
    """Everything the grade says, as plain data (what the JSON holds). beyond: the published
    directions of the sanity checks' papers, checked on this run (finding, source, dataset,
    outcome, evidence), graded apart from the headline; None (a run without them): no such part."""
    cells = compare_cells(ours, randomization_form=randomization_form)
    p_cells = cells[cells["column"].str.startswith("P_")]
    measured = p_cells[p_cells["verdict_agreement"].isin([AGREE, DISAGREE])]
    firm, fragile = measured[~measured["fragile"]], measured[measured["fragile"]]
    values = cells[~cells["column"].str.startswith("P_") & cells["mean_ours"].notna() & (cells["method"] != "LOW")]
    findings = check_findings(ours)
    summary = {
        "value_cells_measured": int(len(values)),
        "median_abs_difference": _nan_to_none(values["difference"].abs().median()),
        "median_abs_difference_in_sd": _nan_to_none(values["difference_in_sd"].abs().median()),
        "value_cells_in_sd_units": int(values["difference_in_sd"].notna().sum()),
        "verdict_cells_measured": int(len(measured)),
        "verdicts_agreeing": int((measured["verdict_agreement"] == AGREE).sum()),
        "firm_verdicts": int(len(firm)),
        "firm_verdicts_agreeing": int((firm["verdict_agreement"] == AGREE).sum()),
        "fragile_verdicts": int(len(fragile)),
        "fragile_verdicts_agreeing": int((fragile["verdict_agreement"] == AGREE).sum()),
        "findings": int(len(findings)),
        "findings_agreeing": int((findings["outcome"] == AGREE).sum()),
        "findings_disagreeing": int((findings["outcome"] == DISAGREE).sum()),
        "findings_not_measured": int((findings["outcome"] == NOT_MEASURED).sum()),
    }
    report = {
        "headline": headline(summary),
        "summary": summary,
        "cells": cells.replace({np.nan: None}).to_dict(orient="records"),
        "rank_correlations": rank_correlations(ours).replace({np.nan: None}).to_dict(orient="records"),
        "findings": findings.to_dict(orient="records"),
        "contradictions_in_the_paper": CONTRADICTIONS,
        "failed_randomization_counts": {"ours": failed_randomization_counts(ours),
                                        "paper_table3": failed_randomization_counts(published_cells())},
    }
    if beyond is not None:
        measured = beyond[beyond["outcome"] != NOT_MEASURED]
        report["beyond_the_paper"] = {
            "summary": f"{int((measured['outcome'] == AGREE).sum())} of {len(measured)} measured published directions "
                       f"of the sanity checks' papers agree ({len(beyond) - len(measured)} not measured; not in the "
                       f"headline)",
            "findings": beyond.to_dict(orient="records")}
    return report


def headline(summary: dict) -> str:
    """The grade in one line: findings agreeing, verdicts agreeing (firm and fragile apart)."""
    s = summary
    measured = s["findings"] - s["findings_not_measured"]
    verdicts = s["verdict_cells_measured"]
    share = f" ({s['verdicts_agreeing'] / verdicts:.0%})" if verdicts else ""
    return (f"{s['findings_agreeing']} of {measured} of the paper's findings agree; "
            f"{s['verdicts_agreeing']} of {verdicts} verdicts agree{share} "
            f"(firm: {s['firm_verdicts_agreeing']} of {s['firm_verdicts']}, "
            f"fragile: {s['fragile_verdicts_agreeing']} of {s['fragile_verdicts']})")


def grade_markdown(report: dict) -> str:
    s = report["summary"]
    lines = ["# Fidelity grade: this run against Arun et al. 2021, Tables 2-4", "",
             f"**{report['headline']}**", "",
             f"- value cells measured: {s['value_cells_measured']} (the constant SSIM 0.5 left out); median "
             f"|ours - paper| = {_fmt(s['median_abs_difference'])}, or {_fmt(s['median_abs_difference_in_sd'])} "
             f"published sd over the {s['value_cells_in_sd_units']} cells whose sd means the same as ours",
             f"- verdicts agreeing: {s['verdicts_agreeing']} of {s['verdict_cells_measured']}; firm verdicts "
             f"{s['firm_verdicts_agreeing']} of {s['firm_verdicts']}, fragile (◊) {s['fragile_verdicts_agreeing']} "
             f"of {s['fragile_verdicts']}",
             f"- findings: {s['findings_agreeing']} agree, {s['findings_disagreeing']} disagree, "
             f"{s['findings_not_measured']} not measured", "", "## The paper's findings", "",
             "| finding | source | outcome |", "|---|---|---|"]
    for f in report["findings"]:
        caveat = f" ({f['caveat']})" if f["caveat"] else ""
        lines.append(f"| {f['finding']}{caveat} | {f['source']} | {f['outcome']} |")
    if "beyond_the_paper" in report:
        beyond = report["beyond_the_paper"]
        lines += ["", "## Beyond the paper: the sanity checks' published directions", "",
                  f"{beyond['summary']}. The papers behind the checks (docs/sanity-checks.md) studied other models "
                  "and data; their claims are checked on this run's cells, per data set.", "",
                  "| finding | source | data set | outcome | evidence |", "|---|---|---|---|---|"]
        lines += [f"| {f['finding']} | {f['source']} | {f['dataset']} | {f['outcome']} | {f['evidence']} |"
                  for f in beyond["findings"]]
    lines += ["", "## Where the paper contradicts itself", ""]
    lines += [f"- **{c['claim']}**: {c['paper_says']}" for c in report["contradictions_in_the_paper"]]
    counts = report["failed_randomization_counts"]
    lines += [f"- Randomization verdict counts, this run: {counts['ours']}; paper's Table 3: {counts['paper_table3']}",
              "", "## Method orderings (Spearman's rho, eight methods)", "",
              "| table | data set | criterion | rho |", "|---|---|---|---|"]
    lines += [f"| {r['table']} | {r['dataset']} | {r['criterion']} | {_fmt(r['spearman_rho'])} |"
              for r in report["rank_correlations"]]
    lines += ["", "## Cells", "", "| table | data set | method | column | paper | ours | diff (sd) | verdicts |",
              "|---|---|---|---|---|---|---|---|"]
    for c in report["cells"]:
        if c["column"].startswith("P_"):
            fragile = " ◊" if c["fragile"] else ""
            paper, ours, diff = (f"{c['p_paper']} {c['verdict_paper']}",
                                 f"{c['p_ours'] or ''} {c['verdict_ours'] or ''}{fragile}", "")
        else:
            paper, ours = _fmt(c["mean_paper"]), _fmt(c["mean_ours"])
            diff = f"{_fmt(c['difference'])} ({_fmt(c['difference_in_sd'])})"
        lines.append(f"| {c['table']} | {c['dataset']} | {c['method']} | {c['column']} | {paper} | {ours.strip()} "
                     f"| {diff} | {c['verdict_agreement']} |")
    return "\n".join(lines) + "\n"


def write_grade(ours: pd.DataFrame, out_dir, *, randomization_form: str = "replicates",
                beyond: pd.DataFrame | None = None) -> dict:
    report = grade(ours, randomization_form=randomization_form, beyond=beyond)
    write_json(f"{out_dir}/grade.json", report)
    write_text(f"{out_dir}/grade.md", grade_markdown(report))
    return report


def _fmt(value) -> str:
    return "NA" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


def _nan_to_none(value):
    return None if value is None or np.isnan(value) else float(value)
