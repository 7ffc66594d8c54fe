"""Figures 2-4 of the paper from the evaluation's per-image scores (and, for the example panels,
a few maps). Each function returns the matplotlib Figure; `save_figure` writes PNG and PDF.

Score table columns: dataset, test, metric, group, state, image, score (see repro.report.tables).
Example panels take `Example`s: one image with its mask and the maps to show beside it.
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
from repro.report.published import METHODS  # noqa: E402
from repro.evaluation.scores import HIGH_BASELINE  # noqa: E402
from repro.report.tables import DATASET_TITLES, LOW_BASELINE  # noqa: E402

CASCADE_STATES = ("original", "logits", *(f"mixed{k}" for k in range(10, 0, -1)))
CASCADE_LABELS = ("Orig", "Logits", *(str(k) for k in range(10, 0, -1)))
LOW_COLOUR, HIGH_COLOUR = "#8ecae6", "#023e8a"


@dataclass
class Example:
    """One image for an example panel: rows of maps (e.g. one row per model), scores in titles."""
    image: np.ndarray                       # (H, W) grayscale
    mask: np.ndarray | None                 # (H, W) bool, outlined
    rows: dict[str, dict[str, np.ndarray]]  # row label -> method -> (H, W) map
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # row label -> method -> score


def figure2(scores: pd.DataFrame, examples: dict[str, Example] | None = None, *, metric: str = "auprc"):
    """A/B: per-image utility per method with the AVG and U-Net / RetinaNet baselines; C/D: examples."""
    datasets = _datasets(scores)
    figure, grid = _figure_grid(len(datasets), examples, example_height=0.4)
    label = "AUPRC" if metric == "auprc" else "ROC AUC"
    for column, dataset in enumerate(datasets):
        axis = figure.add_subplot(grid[0, column])
        rows = scores[(scores.dataset == dataset) & (scores.test == "utility") & (scores.metric == metric)
                      & (scores.state == "trained")]
        groups = ["AVG", HIGH_BASELINE[dataset], *_present(rows, METHODS)]
        _boxes(axis, [rows.loc[rows.group == g, "score"].dropna() for g in groups], groups,
               colours=[LOW_COLOUR, HIGH_COLOUR] + [None] * (len(groups) - 2))
        axis.set_title(f"{'AB'[column]}  {DATASET_TITLES[dataset]}")
        axis.set_ylabel(f"{label} (test set)")
        axis.set_xlabel("Method")
        if examples and dataset in examples:
            _example_panel(figure, grid[1, column], examples[dataset], f"{'CD'[column]}  Example maps")
    return figure


def figure3(scores: pd.DataFrame, strip: Example | None = None):
    """A: mean SSIM to the original map per cascade state, per method, with each method's
    randomization baseline dotted; B: one image's maps, every method x every state."""
    datasets = _datasets(scores)
    figure, grid = _figure_grid(len(datasets), strip, example_height=1.2)
    colours = dict(zip(METHODS, plt.get_cmap("tab10").colors))
    for column, dataset in enumerate(datasets):
        axis = figure.add_subplot(grid[0, column])
        rows = scores[(scores.dataset == dataset) & (scores.test == "randomization") & (scores.metric == "ssim")]
        for method in _present(rows, rows["group"].unique()):
            mine = rows[rows.group == method]
            means = [mine.loc[mine.state == s, "score"].mean() if s != "original" else 1.0 for s in CASCADE_STATES]
            colour = colours.get(method, "black")
            axis.plot(range(len(CASCADE_STATES)), means, marker="o", markersize=3, color=colour, label=method)
            baseline = mine.loc[mine.state == "baseline", "score"].mean()
            axis.axhline(baseline, linestyle=":", color=colour, linewidth=1)
        axis.set_xticks(range(len(CASCADE_STATES)), CASCADE_LABELS)
        axis.set_ylim(0, 1.05)
        axis.set_title(f"{'A' if column == 0 else ''}  {DATASET_TITLES[dataset]}: cascading randomization")
        axis.set_xlabel("Randomized down to (InceptionV3 block)")
        axis.set_ylabel("SSIM to the original map")
        axis.legend(fontsize=7, ncol=2, loc="lower left")
    if strip:
        _example_panel(figure, grid[1, :], strip, "B  Map degradation under cascading randomization",
                       by_columns=True)
    return figure


def figure4(scores: pd.DataFrame, examples: dict[str, Example] | None = None):
    """A/B: per-image repeatability and reproducibility SSIM per method, the 0.5 line and the
    U-Net / RetinaNet baseline; C/D: maps from replicate 1, replicate 2 and DenseNet121."""
    datasets = _datasets(scores)
    figure, grid = _figure_grid(len(datasets), examples, example_height=0.8)
    for column, dataset in enumerate(datasets):
        axis = figure.add_subplot(grid[0, column])
        high = HIGH_BASELINE[dataset]
        rows = scores[(scores.dataset == dataset) & (scores.metric == "ssim")
                      & scores.test.isin(["repeatability", "reproducibility"])]
        methods = _present(rows, METHODS)
        positions, data, colours, labels = [], [], [], []
        for i, group in enumerate([high, *methods]):
            for offset, test, colour in ((-0.18, "repeatability", "#ffb703"), (0.18, "reproducibility", "#fb8500")):
                positions.append(i + offset)
                data.append(rows.loc[(rows.group == group) & (rows.test == test), "score"].dropna())
                colours.append(HIGH_COLOUR if group == high else colour)
            labels.append(group)
        _boxes(axis, data, None, colours=colours, positions=positions, width=0.32)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.axhline(LOW_BASELINE, linestyle="--", color=LOW_COLOUR, label="low baseline (SSIM 0.5)")
        axis.set_title(f"{'AB'[column]}  {DATASET_TITLES[dataset]}")
        axis.set_ylabel("SSIM between maps")
        axis.set_xlabel("Method")
        axis.legend(handles=[Line2D([], [], color="#ffb703", lw=6, label="repeatability (InceptionV3 r1 vs r2)"),
                             Line2D([], [], color="#fb8500", lw=6, label="reproducibility (InceptionV3 vs DenseNet121)"),
                             Line2D([], [], color=LOW_COLOUR, ls="--", label="low baseline (SSIM 0.5)")],
                    fontsize=7, loc="upper left")
        if examples and dataset in examples:
            _example_panel(figure, grid[1, column], examples[dataset], f"{'CD'[column]}  Example maps")
    return figure


def save_figure(figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write name.png and name.pdf atomically, then close the figure."""
    paths = []
    for suffix in ("png", "pdf"):
        path = Path(out_dir) / f"{name}.{suffix}"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=suffix, dpi=120, bbox_inches="tight")
        paths.append(path)
    plt.close(figure)
    return paths


def _figure_grid(columns: int, examples, *, example_height: float):
    """A figure with a row of plots per data set, and a row for the example maps when there are any."""
    ratios = [1.0, example_height] if examples else [1.0]
    figure = plt.figure(figsize=(6.5 * columns, 4.5 * sum(ratios)))
    return figure, figure.add_gridspec(len(ratios), columns, height_ratios=ratios)


def _boxes(axis, data, labels, *, colours, positions=None, width=0.6):
    """Box plots with a solid median and a dashed mean, as the paper draws them."""
    kept = [(d, c, p) for d, c, p in zip(data, colours, positions or range(1, len(data) + 1)) if len(d)]
    parts = axis.boxplot([d for d, _, _ in kept], positions=[p for _, _, p in kept], widths=width,
                         showmeans=True, meanline=True, patch_artist=True, showfliers=False,
                         medianprops={"color": "black", "linestyle": "-"},
                         meanprops={"color": "black", "linestyle": "--"})
    for patch, (_, colour, _) in zip(parts["boxes"], kept):
        patch.set_facecolor(colour or "#e9ecef")
    if labels is not None:
        axis.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right")


def _example_panel(figure, cell, example: Example, title: str, *, by_columns: bool = False):
    """Image (with its mask outlined) followed by each row's maps; by_columns puts rows as columns."""
    methods = list(next(iter(example.rows.values())))
    n_rows, n_cols = len(example.rows), len(methods) + 1
    if by_columns:
        n_rows, n_cols = len(methods), len(example.rows) + 1
    sub = cell.subgridspec(n_rows, n_cols, wspace=0.05, hspace=0.25)
    image_axis = figure.add_subplot(sub[:, 0] if n_rows > 1 else sub[0, 0])
    image_axis.imshow(example.image, cmap="gray")
    if example.mask is not None and example.mask.any():
        image_axis.contour(example.mask, levels=[0.5], colors="yellow", linewidths=0.8)
    image_axis.set_title(title, fontsize=8)
    image_axis.axis("off")
    for r, (row_label, maps) in enumerate(example.rows.items()):
        for m, method in enumerate(methods):
            i, j = (m, r + 1) if by_columns else (r, m + 1)
            axis = figure.add_subplot(sub[i, j])
            axis.imshow(maps[method], cmap="inferno", vmin=0, vmax=1)
            score = example.scores.get(row_label, {}).get(method)
            text = method if score is None else f"{method} {score:.2f}"
            axis.set_title(text if not by_columns else (row_label if m == 0 else ""), fontsize=6)
            if by_columns and r == 0:
                axis.set_ylabel(method, fontsize=6)
                axis.set_xticks([]), axis.set_yticks([])
            else:
                axis.axis("off")
            if not by_columns and m == 0:
                axis.text(-0.1, 0.5, row_label, fontsize=6, rotation=90, va="center", ha="right",
                          transform=axis.transAxes)


def _datasets(scores) -> list[str]:
    return [d for d in DATASET_TITLES if d in set(scores["dataset"])]


def _present(rows, groups) -> list[str]:
    present = set(rows["group"])
    return [g for g in groups if g in present]
