"""Tables 2-4 in the paper's layout, from the cells (repro.statistics.cells).

Rows per data set: the baselines, the selected methods in the paper's order, then the harness
controls; columns as the paper printed them. Markers: † did not pass, ‡ passed, § no significant
difference (the paper's), ◊ fragile (the verdict flips in more than the experiment's threshold of
bootstrap resamples or replicates: repro.statistics.stability). A value cell shows its n when
degenerate maps left it fewer scores than the column's other cells.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro.io import write_text
from repro.protocol import FAIL, KAGGLE_DATASETS, NOT_MEASURED, PASS, UNCERTAIN

MARKERS = {FAIL: "†", PASS: "‡", UNCERTAIN: "§", NOT_MEASURED: "", "": ""}
FRAGILE = "◊"

LAYOUT = {
    2: [("AUC", "AUC"), ("P_AVG", "P Value (AVG)"), ("P_High", "P Value*")],
    3: [("AUPRC", "AUPRC"), ("P_AVG", "P Value (AVG)"), ("P_High", "P Value*"),
        ("RandBaseline", "Baseline"), ("FullyRandomized", "Fully Randomized"), ("P_Randomization", "P Value")],
    4: [("Repeatability", "Repeatability SSIM"), ("P_Repeat_High", "P Value*"), ("P_Repeat_Low", "P Value (Low)"),
        ("Reproducibility", "Reproducibility SSIM"), ("P_Reprod_High", "P Value*"), ("P_Reprod_Low", "P Value (Low)")],
}


def render_table(cells: pd.DataFrame, table: int, *, datasets=None) -> pd.DataFrame:
    """The paper's layout: a title row per data set, then its rows; 'NA' where nothing applies."""
    if table not in LAYOUT:
        raise ValueError(f"table must be 2, 3 or 4, got {table}")
    datasets = datasets or KAGGLE_DATASETS
    cells = cells[cells["table"] == table]
    rows = []
    for name in [d for d in datasets if d in set(cells["dataset"])]:
        rows.append([datasets[name].title] + [""] * len(LAYOUT[table]))
        mine = cells[cells["dataset"] == name]
        full_n = mine[~mine["column"].str.startswith("P_")].groupby("column")["n"].max()
        for method in dict.fromkeys(mine["method"]):
            by_column = {row.column: row for row in mine[mine["method"] == method].itertuples()}
            rows.append([method] + [format_cell(by_column.get(key), full_n.get(key)) for key, _ in LAYOUT[table]])
    return pd.DataFrame(rows, columns=["Dataset and Saliency Method"] + [title for _, title in LAYOUT[table]])


def format_cell(cell, full_n=None) -> str:
    """One cell as the tables print it: a P value with its verdict's markers, or mean ± sd (and its
    n when it has fewer scores than `full_n`, its column's)."""
    if cell is None:
        return "NA"
    if cell.column.startswith("P_"):
        if cell.verdict == NOT_MEASURED:
            return "not measured"
        text = f"{cell.p} {MARKERS[cell.verdict]}".strip()
        return f"{text} {FRAGILE}" if getattr(cell, "fragile", False) else text
    if cell.form == "constant":
        return f"{cell.mean:g}"
    if np.isnan(cell.mean):
        return "not measured"
    text = f"{cell.mean:.2f} ± {cell.sd:.2f}" if np.isfinite(cell.sd) else f"{cell.mean:.2f}"
    if full_n is not None and cell.n < full_n:
        text += f" (n={cell.n})"
    return text


def note(cells: pd.DataFrame, table: int, *, datasets=None, replicates=None) -> str:
    """The table's notes, naming the experiment's own localization networks and replicates."""
    cells = cells[cells["table"] == table]
    datasets = datasets or KAGGLE_DATASETS
    present = [datasets[d] for d in dict.fromkeys(cells["dataset"]) if d in datasets]
    highs = [f"{spec.high_baseline} ({spec.short})" for spec in present if spec.high_baseline]
    against = (f"*P values against {' or '.join(highs)}." if highs else
               "*P values against a localization network: not measured (the experiment has none).")
    lines = ["† did not pass, ‡ passed, § no significant difference; ◊ fragile (the verdict flips in "
             "more than the threshold share of bootstrap resamples or replicates, see cells.csv). " + against]
    if table == 3:
        names = f" ({', '.join(replicates)})" if replicates else ""
        first = f"{replicates[0]}'s" if replicates else "replicate 1's"
        forms = set(cells.loc[cells["column"] == "FullyRandomized", "form"])
        if "replicates" in forms:
            lines.append(f"Randomization: mean over the replicates{names} of each replicate's mean over "
                         "images, ± the sd across the replicate means (the authors' randomization_plot "
                         f"scripts); the baseline is {first}, mean ± sd over its images.")
        elif forms:
            lines.append(f"Randomization: per-image SSIMs averaged over the replicates{names}, mean ± sd across images.")
    values = cells[~cells["column"].str.startswith("P_") & (cells["form"] != "constant")]
    for dataset, mine in values.groupby("dataset", sort=False):
        counts = ", ".join(f"{column} {int(n)}" for column, n in mine.groupby("column", sort=False)["n"].max().items())
        lines.append(f"n ({dataset}, scores behind each value): {counts}; a cell with fewer shows its own.")
    return "\n".join(lines)


def write_table(cells: pd.DataFrame, table: int, out_dir: str | Path, *, datasets=None,
                replicates=None) -> list[Path]:
    """Table N as CSV, Markdown and LaTeX in out_dir (each written atomically)."""
    layout = render_table(cells, table, datasets=datasets)
    out_dir = Path(out_dir)
    text = note(cells, table, datasets=datasets, replicates=replicates)
    latex = layout.to_latex(index=False)
    for symbol, command in (("±", "$\\pm$"), ("†", "\\textsuperscript{\\dag}"), ("‡", "\\textsuperscript{\\ddag}"),
                            ("§", "\\textsuperscript{\\S}"), ("◊", "$\\lozenge$")):
        latex = latex.replace(symbol, command)
    return [write_text(out_dir / f"table{table}.csv", layout.to_csv(index=False)),
            write_text(out_dir / f"table{table}.md", f"**Table {table}**\n\n{layout.to_markdown(index=False)}\n\n"
                                                      f"{text}\n"),
            write_text(out_dir / f"table{table}.tex", latex)]
