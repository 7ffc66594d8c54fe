"""Figures 2-4 of the paper from the per-image scores, the cells' verdicts and a few example maps.

Each figure function takes (scores, cells, examples, *, datasets, choices, methods, form), where
choices holds each data set's ModelChoice (whose scores the paper's panels show), and returns the
matplotlib Figure; `save_figure` writes PNG and PDF (with no creation date, so a rerun writes the
same bytes). Any subset of the methods works. Verdicts are drawn where the figure shows the
comparison they come from, with the tables' markers († did not pass, ‡ passed, § uncertain) and ◊
on fragile verdicts.

Score table columns: dataset, test, metric, group, model, state, image, score (repro.evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from repro.io import atomic_path  # noqa: E402
from repro.protocol import AVG, LOW_SSIM, ORIGINAL, STATE_LABELS  # noqa: E402
from repro.report.tables import FRAGILE, MARKERS  # noqa: E402

LOW_COLOUR, HIGH_COLOUR = "#8ecae6", "#023e8a"
TITLE_PAD = 16   # points between a plot and its title: room for the verdict markers above the boxes
REPEAT_COLOUR, REPROD_COLOUR = "#ffb703", "#fb8500"


@dataclass
class Example:
    """One image for an example panel: rows of maps (e.g. one row per model), scores in titles."""
    image: np.ndarray                       # (H, W) grayscale
    mask: np.ndarray | None                 # (H, W) bool, outlined
    rows: dict[str, dict[str, np.ndarray]]  # row label -> method -> (H, W) map
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # row label -> method -> score


@dataclass
class Examples:
    """A data set's example panels: utility (Figure 2), cascade (3), similarity (4)."""
    utility: Example | None = None
    cascade: Example | None = None
    similarity: Example | None = None


def figure2(scores, cells, examples, *, datasets, choices, methods, form=None):
    """A/B: per-image utility (AUPRC) per method with the AVG and U-Net / RetinaNet baselines and
    each method's verdict against AVG; C/D: example maps."""
    names = _present_datasets(scores, datasets)
    figure, grid = _figure_grid(len(names), _any(examples, "utility"), example_height=0.32, gap=0.4)
    for column, name in enumerate(names):
        axis = figure.add_subplot(grid[0, column])
        rows = _main_utility(scores, choices[name], name)
        high = datasets[name].high_baseline
        groups = [g for g in [AVG, high, *methods, *_controls(rows)] if g and g in set(rows["group"])]
        _boxes(axis, [rows.loc[rows.group == g, "score"].dropna() for g in groups], groups,
               colours=[LOW_COLOUR if g == AVG else HIGH_COLOUR if g == high else None for g in groups])
        _verdict_marks(axis, cells, name, 3, "P_AVG", groups, positions=range(1, len(groups) + 1))
        axis.set_title(f"{'AB'[column]}  {datasets[name].title}", pad=TITLE_PAD)
        axis.set_ylabel("AUPRC (test set)")
        axis.set_xlabel("Method (marker: verdict against AVG)")
        example = getattr(examples.get(name), "utility", None)
        if example:
            _example_panel(figure, grid[1, column], example, f"{'CD'[column]}  Example maps")
    return figure


def figure3(scores, cells, examples, *, datasets, choices, methods, form="replicates"):
    """A: mean SSIM to the original map per cascade state and method (band: sd across replicate
    means, or across images in the per-image form), each method's randomization baseline dotted,
    its verdict in the legend; B: one image's maps, every method x every state."""
    names = _present_datasets(scores, datasets)
    strip_from = next((n for n in reversed(names) if getattr(examples.get(n), "cascade", None)), None)
    figure, grid = _figure_grid(len(names), strip_from is not None, example_height=1.2, gap=0.3)
    colours = dict(zip(methods, plt.get_cmap("tab20").colors))
    for column, name in enumerate(names):
        axis = figure.add_subplot(grid[0, column])
        rows = scores[(scores.dataset == name) & (scores.test == "randomization") & (scores.metric == "ssim")]
        states = [ORIGINAL] + [s for s in dict.fromkeys(rows["state"]) if s != "baseline"]
        x = np.arange(len(states))
        for method in [*[m for m in methods if m in set(rows["group"])], *_controls(rows)]:
            mine = rows[rows.group == method]
            means, spreads = zip(*[(1.0, 0.0) if s == ORIGINAL else _curve_point(mine[mine.state == s], form)
                                   for s in states])
            colour = colours.get(method, "black")
            label = f"{method} {_verdict_text(cells, name, 3, 'P_Randomization', method)}".strip()
            axis.plot(x, means, marker="o", markersize=3, color=colour, label=label)
            axis.fill_between(x, np.subtract(means, spreads), np.add(means, spreads), color=colour, alpha=0.12,
                              linewidth=0)
            axis.axhline(_baseline(mine, form), linestyle=":", color=colour, linewidth=1)
        axis.set_xticks(x, [STATE_LABELS.get(s, s) for s in states])
        axis.set_ylim(0, 1.05)
        axis.set_title(f"{'A' if column == 0 else ''}  {datasets[name].title}: cascading randomization")
        axis.set_xlabel("Randomized down to (block)")
        axis.set_ylabel("SSIM to the original map")
        axis.legend(fontsize=6, ncol=2, loc="lower left", title="method, randomization verdict",
                    title_fontsize=6)
    if strip_from is not None:
        _example_panel(figure, grid[1, :], examples[strip_from].cascade,
                       "B  Map degradation under cascading randomization", by_columns=True)
    return figure


def figure4(scores, cells, examples, *, datasets, choices, methods, form=None):
    """A/B: per-image repeatability and reproducibility SSIM per method (the paper's model pairs),
    the 0.5 line, the localization networks' SSIM, verdicts against 0.5; C/D: example maps."""
    names = _present_datasets(scores, datasets)
    figure, grid = _figure_grid(len(names), _any(examples, "similarity"), example_height=0.75, gap=0.62)
    for column, name in enumerate(names):
        axis = figure.add_subplot(grid[0, column])
        high = datasets[name].high_baseline
        groups = [g for g in [high, *methods] if g]
        positions, data, colours, labels = [], [], [], []
        for i, group in enumerate(groups):
            for offset, test, colour in ((-0.18, "repeatability", REPEAT_COLOUR), (0.18, "reproducibility", REPROD_COLOUR)):
                rows = _main_pair(scores, choices[name], name, test, group, high)
                positions.append(i + offset)
                data.append(rows["score"].dropna())
                colours.append(HIGH_COLOUR if group == high else colour)
            labels.append(group)
        _boxes(axis, data, None, colours=colours, positions=positions, width=0.32)
        for offset, short in ((-0.18, "Repeat"), (0.18, "Reprod")):
            _verdict_marks(axis, cells, name, 4, f"P_{short}_Low", groups, positions=[i + offset for i in range(len(groups))])
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.axhline(LOW_SSIM, linestyle="--", color=LOW_COLOUR)
        axis.set_title(f"{'AB'[column]}  {datasets[name].title}", pad=TITLE_PAD)
        axis.set_ylabel("SSIM between maps")
        axis.set_xlabel("Method (markers: verdicts against SSIM 0.5)")
        # Below the axis, where no box can be: the pairs as the experiment names its models.
        choice = choices[name]
        axis.legend(handles=[Line2D([], [], color=REPEAT_COLOUR, lw=6, label=f"repeatability ({_pair(choice.repeatability)})"),
                             Line2D([], [], color=REPROD_COLOUR, lw=6,
                                    label=f"reproducibility ({_pair(choice.reproducibility)})"),
                             Line2D([], [], color=LOW_COLOUR, ls="--", label="low baseline (SSIM 0.5)")]
                    + ([Line2D([], [], color=HIGH_COLOUR, lw=6, label=f"{high} ({_pair(choice.localizer_pair)})")]
                       if high and choice.localizer_pair else []),
                    fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)
        example = getattr(examples.get(name), "similarity", None)
        if example:
            _example_panel(figure, grid[1, column], example, f"{'CD'[column]}  Example maps")
    return figure


FIGURES = {2: figure2, 3: figure3, 4: figure4}


def save_figure(figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write name.png and name.pdf atomically, then close the figure."""
    paths = []
    for suffix in ("png", "pdf"):
        path = Path(out_dir) / f"{name}.{suffix}"
        metadata = {"CreationDate": None} if suffix == "pdf" else {}
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=suffix, dpi=120, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(figure)
    return paths


# --- what the panels show -------------------------------------------------------------------------

def _main_utility(scores, choice, dataset) -> pd.DataFrame:
    """Utility AUPRC rows of the paper's choice: replicate 1, the AVG mask, the first localizer."""
    rows = scores[(scores.dataset == dataset) & (scores.test == "utility") & (scores.metric == "auprc")
                  & (scores.state == "trained")]
    return rows[(rows.group == AVG) | (rows.model == choice.utility) | (rows.model == choice.localizer)]


def _main_pair(scores, choice, dataset, test, group, high) -> pd.DataFrame:
    """The paper's pair of a similarity test (the localizers' pair for the high baseline)."""
    model = choice.localizer_pair if group == high else getattr(choice, test)
    return scores[(scores.dataset == dataset) & (scores.test == test) & (scores.group == group)
                  & (scores.model == model)]


def _curve_point(rows: pd.DataFrame, form: str) -> tuple[float, float]:
    values = rows[np.isfinite(rows["score"])]
    if values.empty:
        return np.nan, 0.0
    if form == "replicates":
        means = values.groupby("model", sort=False)["score"].mean()
        return float(means.mean()), float(means.std(ddof=0))
    per_image = values.groupby("image", sort=False)["score"].mean()
    return float(per_image.mean()), float(per_image.std(ddof=1)) if len(per_image) > 1 else 0.0


def _baseline(rows: pd.DataFrame, form: str) -> float:
    baseline = rows[(rows.state == "baseline") & np.isfinite(rows["score"])]
    if form == "replicates" and not baseline.empty:
        baseline = baseline[baseline.model == baseline.model.iloc[0]]   # replicate 1's, as the authors'
    return float(baseline["score"].mean()) if not baseline.empty else np.nan


def _controls(rows) -> list[str]:
    return [c for c in ("EDGE", "ORACLE") if c in set(rows["group"])]


def _pair(label: str | None) -> str:
    """A pair of models as the score table names it ("a~b") in words."""
    return label.replace("~", " vs ") if label else "not measured"


def _verdict_text(cells, dataset, table, column, method) -> str:
    row = cells[(cells.dataset == dataset) & (cells.table == table) & (cells.column == column)
                & (cells.method == method)]
    if row.empty:
        return ""
    text = MARKERS.get(row["verdict"].iloc[0], "")
    return f"{text}{FRAGILE}" if bool(row["fragile"].iloc[0]) else text


def _verdict_marks(axis, cells, dataset, table, column, groups, *, positions) -> None:
    """The verdict marker of each group's cell above its box."""
    top = axis.get_ylim()[1]
    for group, x in zip(groups, positions):
        text = _verdict_text(cells, dataset, table, column, group)
        if text:
            axis.text(x, top, text, ha="center", va="bottom", fontsize=8)


def _present_datasets(scores, datasets) -> list[str]:
    return [d for d in datasets if d in set(scores["dataset"])]


def _any(examples, kind) -> bool:
    return any(getattr(e, kind, None) is not None for e in examples.values())


# --- drawing ----------------------------------------------------------------------------------------

def _figure_grid(columns: int, examples: bool, *, example_height: float, gap: float = 0.35):
    """A figure with a row of plots per data set and, when there are examples, an empty band (room
    for the plots' tick labels, axis label and legend) and a row for the example maps."""
    ratios = [1.0, gap, example_height] if examples else [1.0]
    figure = plt.figure(figsize=(6.5 * columns, 4.5 * sum(ratios)))
    grid = figure.add_gridspec(len(ratios), columns, height_ratios=ratios, hspace=0.0)
    return figure, _Rows(grid)


class _Rows:
    """The figure's grid as the figures index it: row 0 the plots, row 1 the example maps (the
    band between them is skipped)."""

    def __init__(self, grid):
        self.grid = grid

    def __getitem__(self, key):
        row, column = key
        return self.grid[2 if row == 1 else row, column]


def _boxes(axis, data, labels, *, colours, positions=None, width=0.6):
    """Box plots with a solid median and a dashed mean, as the paper draws them."""
    kept = [(d, c, p) for d, c, p in zip(data, colours, positions or range(1, len(data) + 1)) if len(d)]
    if kept:
        parts = axis.boxplot([d for d, _, _ in kept], positions=[p for _, _, p in kept], widths=width,
                             showmeans=True, meanline=True, patch_artist=True, showfliers=False,
                             medianprops={"color": "black", "linestyle": "-"},
                             meanprops={"color": "black", "linestyle": "--"})
        for patch, (_, colour, _) in zip(parts["boxes"], kept):
            patch.set_facecolor(colour or "#e9ecef")
    if labels is not None:
        axis.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right")


def _example_panel(figure, cell, example: Example, title: str, *, by_columns: bool = False):
    """A title row, then the image (its mask outlined), a column of row labels and each row's maps;
    by_columns puts the example's rows as columns (their labels on top, the methods as row labels).
    A degenerate (all NaN) map shows as an empty panel labelled "degenerate"."""
    methods = list(next(iter(example.rows.values())))
    row_labels, column_count = (methods, len(example.rows)) if by_columns else (list(example.rows), len(methods))
    if len(row_labels) == 1:   # one row: its label in the title, where a long model name fits
        title, row_labels = f"{title}: {row_labels[0]}", []
    sub = cell.subgridspec(max(len(row_labels), 1), column_count + 2, wspace=0.05, hspace=0.45,
                           width_ratios=[1.6, 0.3] + [1.0] * column_count)
    image_axis = figure.add_subplot(sub[:, 0])
    image_axis.set_anchor("N")   # at the top of the panel, under its title, however many rows follow
    # The panel's title above its image, left-aligned: it may run on over the label column.
    image_axis.set_title(title, fontsize=8, loc="left", pad=14 if by_columns else 10)
    image_axis.imshow(example.image, cmap="gray")
    if example.mask is not None and example.mask.any():
        image_axis.contour(example.mask, levels=[0.5], colors="yellow", linewidths=0.8)
    image_axis.axis("off")
    for i, label in enumerate(row_labels):
        label_axis = figure.add_subplot(sub[i, 1])
        label_axis.text(0.5, 0.5, label, fontsize=6 if len(label) <= 14 else 5, rotation=90, va="center",
                        ha="center")
        label_axis.axis("off")
    for r, (row_label, maps) in enumerate(example.rows.items()):
        for m, method in enumerate(methods):
            i, j = (m, r) if by_columns else (r, m)
            axis = figure.add_subplot(sub[i, j + 2])
            smap = maps[method]
            axis.imshow(np.nan_to_num(smap), cmap="inferno", vmin=0, vmax=1)
            score = example.scores.get(row_label, {}).get(method)
            text = method if score is None or not np.isfinite(score) else f"{method}\n{score:.2f}"
            if np.isnan(smap).all():
                text = f"{method}\n(degenerate)"
            if by_columns:
                text = STATE_LABELS.get(row_label, row_label) if m == 0 else ""
            axis.set_title(text, fontsize=6)
            axis.axis("off")
