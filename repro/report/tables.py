"""Tables 2-4 from per-image scores, with the paper's rows, columns and verdict markers.

Input: the evaluation's long score table, columns
    dataset, test, metric, group, state, image, score
where test is utility / randomization / repeatability / reproducibility (see repro.evaluation).
Output: first `result_cells`, every cell in published.csv's schema (so the fidelity grade compares
like with like), then `render_table` lays the cells out as the paper printed them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro.evaluation.scores import FULLY_RANDOMIZED, HIGH_BASELINE
from repro.io import write_text
from repro.report.published import METHODS
from repro.stats import FAIL, PASS, UNCERTAIN, format_p, mixed_model_contrasts

DATASET_TITLES = {"siim": "SIIM-ACR pneumothorax segmentation", "rsna": "RSNA pneumonia detection"}
MARKERS = {FAIL: "†", PASS: "‡", UNCERTAIN: "§", "": ""}
LOW_BASELINE = 0.5
CELL_DECIMALS = 4
CELL_COLUMNS = ["table", "dataset", "method", "column", "mean", "sd", "p", "verdict"]


def result_cells(scores: pd.DataFrame, dataset: str, *, methods=METHODS, controls=()) -> pd.DataFrame:
    """Every cell of Tables 2-4 for one data set (methods first, then the harness controls)."""
    scores = scores[scores["dataset"] == dataset]
    high = HIGH_BASELINE[dataset]
    cells = []
    for table, metric in ((2, "roc_auc"), (3, "auprc")):
        cells += _utility_cells(scores, dataset, table, metric, high, methods, controls)
    cells += _randomization_cells(scores, dataset, [*methods, *controls])
    cells += _similarity_cells(scores, dataset, high, methods, controls)
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


def _utility_cells(scores, dataset, table, metric, high, methods, controls):
    column = "AUC" if metric == "roc_auc" else "AUPRC"
    trained = scores[(scores["test"] == "utility") & (scores["metric"] == metric)
                     & (scores["state"] == "trained")]
    cells = [_value_cell(table, dataset, group, column, trained) for group in ("AVG", high)]
    families = [list(methods)] + [[control] for control in controls]  # controls stay out of the methods' Tukey family
    for family in families:
        data = trained[trained["group"].isin([*family, "AVG", high])]
        pairs = [(m, reference) for m in family for reference in ("AVG", high)]
        contrasts = iter(mixed_model_contrasts(_for_model(data), pairs))
        for method in family:
            cells.append(_value_cell(table, dataset, method, column, trained))
            for name in ("P_AVG", "P_High"):
                cells.append(_p_cell(table, dataset, method, name, next(contrasts)))
    return cells


def _randomization_cells(scores, dataset, methods):
    cascade = scores[(scores["test"] == "randomization") & (scores["metric"] == "ssim")]
    cells = []
    for method in methods:
        mine = cascade[cascade["group"] == method]
        baseline = mine[mine["state"] == "baseline"]
        randomized = mine[mine["state"] == FULLY_RANDOMIZED]
        cells.append(_value_cell(3, dataset, method, "RandBaseline", baseline))
        cells.append(_value_cell(3, dataset, method, "FullyRandomized", randomized))
        data = pd.concat([randomized.assign(group="randomized"), baseline.assign(group="baseline")])
        (contrast,) = mixed_model_contrasts(_for_model(data), [("randomized", "baseline")], higher_is_pass=False)
        cells.append(_p_cell(3, dataset, method, "P_Randomization", contrast))
    return cells


def _similarity_cells(scores, dataset, high, methods, controls):
    cells = []
    for test, short, column in (("repeatability", "Repeat", "Repeatability"),
                                ("reproducibility", "Reprod", "Reproducibility")):
        ssims = scores[(scores["test"] == test) & (scores["metric"] == "ssim")]
        cells.append(_value_cell(4, dataset, high, column, ssims))
        cells.append([4, dataset, "LOW", column, LOW_BASELINE, np.nan, "", ""])
        for family in [list(methods)] + [[control] for control in controls]:
            data = ssims[ssims["group"].isin([*family, high])]
            pairs = [(m, reference) for m in family for reference in (high, LOW_BASELINE)]
            contrasts = iter(mixed_model_contrasts(_for_model(data), pairs))
            for method in family:
                cells.append(_value_cell(4, dataset, method, column, ssims))
                cells.append(_p_cell(4, dataset, method, f"P_{short}_High", next(contrasts)))
                cells.append(_p_cell(4, dataset, method, f"P_{short}_Low", next(contrasts)))
    return cells


def _value_cell(table, dataset, group, column, scores):
    values = scores.loc[scores["group"] == group, "score"].astype(float)
    values = values[np.isfinite(values)]
    if values.empty:
        raise ValueError(f"Table {table}, {dataset}: no finite {column} score for {group}")
    # Four decimals (the paper prints two): TensorFlow's multi-threaded CPU kernels make maps, and so
    # scores, differ between runs in the last bits; rounded cells are identical run to run.
    return [table, dataset, group, column, round(float(values.mean()), CELL_DECIMALS),
            round(float(values.std(ddof=1)), CELL_DECIMALS), "", ""]


def _p_cell(table, dataset, method, column, contrast):
    return [table, dataset, method, column, np.nan, np.nan, format_p(contrast.p_value), contrast.verdict]


def _for_model(scores: pd.DataFrame) -> pd.DataFrame:
    return scores[["image", "group", "score"]]


# --- layout -------------------------------------------------------------------------------------

_LAYOUT = {
    2: [("AUC", "AUC"), ("P_AVG", "P Value (AVG)"), ("P_High", "P Value*")],
    3: [("AUPRC", "AUPRC"), ("P_AVG", "P Value (AVG)"), ("P_High", "P Value*"),
        ("RandBaseline", "Baseline"), ("FullyRandomized", "Fully Randomized"), ("P_Randomization", "P Value")],
    4: [("Repeatability", "Repeatability SSIM"), ("P_Repeat_High", "P Value*"), ("P_Repeat_Low", "P Value (Low)"),
        ("Reproducibility", "Reproducibility SSIM"), ("P_Reprod_High", "P Value*"), ("P_Reprod_Low", "P Value (Low)")],
}


def render_table(cells: pd.DataFrame, table: int) -> pd.DataFrame:
    """The paper's layout: a title row per data set, then its rows; 'NA' where nothing applies."""
    if table not in _LAYOUT:
        raise ValueError(f"table must be 2, 3 or 4, got {table}")
    cells = cells[cells["table"] == table]
    rows = []
    for dataset in [d for d in DATASET_TITLES if d in set(cells["dataset"])]:
        rows.append([DATASET_TITLES[dataset]] + [""] * len(_LAYOUT[table]))
        mine = cells[cells["dataset"] == dataset]
        for method in dict.fromkeys(mine["method"]):
            by_column = {row.column: row for row in mine[mine["method"] == method].itertuples()}
            rows.append([method] + [_format_cell(by_column.get(key)) for key, _ in _LAYOUT[table]])
    return pd.DataFrame(rows, columns=["Dataset and Saliency Method"] + [title for _, title in _LAYOUT[table]])


def _format_cell(cell) -> str:
    if cell is None:
        return "NA"
    if cell.column.startswith("P_"):
        return f"{cell.p} {MARKERS[cell.verdict]}".strip()
    if np.isnan(cell.sd):
        return f"{cell.mean:g}"
    return f"{cell.mean:.2f} ± {cell.sd:.2f}"


def write_table(cells: pd.DataFrame, table: int, out_dir: str | Path) -> list[Path]:
    """Table N as CSV, Markdown and LaTeX in out_dir (each written atomically)."""
    layout = render_table(cells, table)
    out_dir = Path(out_dir)
    note = ("† did not pass, ‡ passed, § no significant difference. *P values against U-Net (SIIM-ACR) "
            "or RetinaNet (RSNA).")
    latex = layout.to_latex(index=False)
    for symbol, command in (("±", "$\\pm$"), ("†", "\\textsuperscript{\\dag}"),
                            ("‡", "\\textsuperscript{\\ddag}"), ("§", "\\textsuperscript{\\S}")):
        latex = latex.replace(symbol, command)
    return [write_text(out_dir / f"table{table}.csv", layout.to_csv(index=False)),
            write_text(out_dir / f"table{table}.md", f"**Table {table}**\n\n{layout.to_markdown(index=False)}\n\n{note}\n"),
            write_text(out_dir / f"table{table}.tex", latex)]
