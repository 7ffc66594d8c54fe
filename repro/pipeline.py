"""The stages of `repro all`, each reusing what an earlier (possibly killed) run finished.

data (phantoms made if needed, arrays cached) -> train (finished models kept) -> maps and scores
(maps stored one by one) -> tables -> figures -> grade. Scores, tables, figures and the grade are
recomputed from the stored maps every time: cheap, and identical for identical maps.
Stages that need TensorFlow import it inside the function, so that `repro data ...` starts fast.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repro.data.dataset import Dataset
from repro.data.prepare import prepare_data
from repro.experiments import Experiment, load_experiment
from repro.io import write_bytes, write_json, write_text

log = logging.getLogger(__name__)


def results_dir(experiment: Experiment) -> Path:
    return experiment.run_dir / "results"


def evaluate(experiment: Experiment, datasets: dict[str, Dataset], *, progress: bool = True) -> pd.DataFrame:
    """Per-image scores of the four tests for every data set: results/scores.csv, degenerate.json."""
    from repro.evaluation.run import evaluate_dataset

    frames, degenerate = [], {}
    for name, dataset in datasets.items():
        frame, degenerate[name] = evaluate_dataset(experiment, dataset, progress=progress)
        frames.append(frame)
    scores = pd.concat(frames, ignore_index=True)
    out = results_dir(experiment)
    write_text(out / "scores.csv", scores.to_csv(index=False))
    write_json(out / "degenerate.json", {name: vars(counts) for name, counts in degenerate.items()})
    return scores


def read_scores(experiment: Experiment) -> pd.DataFrame:
    path = results_dir(experiment) / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scores yet (run: repro all --experiment {experiment.name})")
    return pd.read_csv(path, dtype={"image": str})


def read_cells(experiment: Experiment) -> pd.DataFrame:
    """The run's cells.csv (Tables 2-4 in the published schema), as make_tables wrote it."""
    path = results_dir(experiment) / "cells.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tables yet (run: repro all --experiment {experiment.name})")
    return pd.read_csv(path, dtype={"p": str, "verdict": str}, keep_default_na=False,
                       na_values={"mean": [""], "sd": [""]})


def make_tables(experiment: Experiment, scores: pd.DataFrame, tables=(2, 3, 4)) -> pd.DataFrame:
    """Tables 2-4 (CSV, Markdown, LaTeX) and every cell in the published schema (cells.csv)."""
    from repro.report.tables import result_cells, write_table

    controls = [c for c in ("EDGE", "ORACLE") if c in set(scores["group"])]
    cells = pd.concat([result_cells(scores, dataset, controls=tuple(
        c for c in controls if c in set(scores.loc[scores.dataset == dataset, "group"])))
        for dataset in dict.fromkeys(scores["dataset"])], ignore_index=True)
    out = results_dir(experiment)
    write_text(out / "cells.csv", cells.to_csv(index=False))
    for table in tables:
        write_table(cells, table, out)
    return cells


def check_controls(cells: pd.DataFrame) -> list[str]:
    """What the harness controls must show; each problem is one line (empty when all is well)."""
    problems = []
    for dataset in dict.fromkeys(cells["dataset"]):
        mine = cells[cells["dataset"] == dataset]

        def verdict(method, column):  # Table 3: AUPRC, the paper's utility metric
            row = mine[(mine.table == 3) & (mine.method == method) & (mine.column == column)]
            return row["verdict"].iloc[0] if len(row) else None

        edge = verdict("EDGE", "P_Randomization")
        if edge is not None and edge != "did not pass":
            problems.append(f"{dataset}: the EDGE control (ignores the model) should FAIL the randomization "
                            f"test, but its verdict is '{edge}'")
        oracle = verdict("ORACLE", "P_AVG")
        if oracle is not None and oracle != "pass":
            problems.append(f"{dataset}: the ORACLE control (the true evidence) should beat AVG on utility, "
                            f"but its verdict is '{oracle}'")
    return problems


def make_figures(experiment: Experiment, scores: pd.DataFrame, datasets: dict[str, Dataset],
                 figures=(2, 3, 4)) -> list[Path]:
    """Figures 2-4 (PNG and PDF) with example maps read from the map store."""
    from repro.report.figures import figure2, figure3, figure4, save_figure

    examples = {name: _examples(experiment, scores, dataset) for name, dataset in datasets.items()}
    makers = {
        2: lambda: figure2(scores, {n: e["utility"] for n, e in examples.items()}),
        3: lambda: figure3(scores, examples.get("rsna", next(iter(examples.values())))["cascade"]),
        4: lambda: figure4(scores, {n: e["similarity"] for n, e in examples.items()}),
    }
    paths = []
    for number in figures:
        paths += save_figure(makers[number](), results_dir(experiment), f"figure{number}")
    return paths


def _examples(experiment: Experiment, scores: pd.DataFrame, dataset: Dataset) -> dict:
    """Example panels for one data set: the test image with the median XRAI AUPRC."""
    from repro.evaluation.run import evaluation_settings, saliency_settings
    from repro.models import STATES
    from repro.report.figures import Example
    from repro.saliency.store import MapStore

    settings, methods = evaluation_settings(experiment), saliency_settings(experiment)["methods"]
    utility = scores[(scores.dataset == dataset.name) & (scores.test == "utility") & (scores.metric == "auprc")
                     & (scores.state == "trained")]
    xrai = utility[utility.group == "XRAI"].sort_values("score", kind="stable")
    image_id = xrai["image"].iloc[len(xrai) // 2]
    index = int(np.flatnonzero(dataset.ids == image_id)[0])
    store = MapStore(experiment.run_dir / "maps" / dataset.name)

    def row(key):
        return {m: store.get(key, m, image_id) for m in methods}

    r1, r2, other = settings["replicate_1"], settings["replicate_2"], settings["other_architecture"]
    mine = utility[utility.image == image_id].set_index("group")["score"]
    image, mask = dataset.images[index], dataset.masks[index]
    return {
        "utility": Example(image, mask, {"InceptionV3": row(f"{r1}.original")},
                           {"InceptionV3": {m: float(mine[m]) for m in methods}}),
        "cascade": Example(image, mask, {state: row(f"{r1}.{state}") for state in STATES}),
        "similarity": Example(image, mask, {"InceptionV3 r1": row(f"{r1}.original"),
                                            "InceptionV3 r2": row(f"{r2}.original"),
                                            "DenseNet121": row(f"{other}.original")}),
    }


def make_grade(experiment: Experiment, cells: pd.DataFrame) -> dict:
    from repro.report.grade import write_grade
    return write_grade(cells, results_dir(experiment))


def headline(cells: pd.DataFrame) -> str:
    """One line per data set and method: the verdicts of the four tests."""
    columns = {"utility vs AVG": (3, "P_AVG"), "randomization": (3, "P_Randomization"),
               "repeatability vs 0.5": (4, "P_Repeat_Low"), "reproducibility vs 0.5": (4, "P_Reprod_Low")}
    lines = []
    for dataset in dict.fromkeys(cells["dataset"]):
        mine = cells[cells["dataset"] == dataset]
        lines.append(f"{dataset}: " + " | ".join(columns))
        for method in dict.fromkeys(mine.loc[mine.column == "P_AVG", "method"]):
            verdicts = []
            for table, column in columns.values():
                row = mine[(mine.table == table) & (mine.method == method) & (mine.column == column)]
                verdicts.append(row["verdict"].iloc[0] if len(row) else "-")
            lines.append(f"  {method:<7}" + " | ".join(f"{v:<12}" for v in verdicts))
    return "\n".join(lines)


@dataclass
class RunResult:
    experiment: Experiment
    cells: pd.DataFrame
    grade: dict
    control_problems: list[str]
    seconds: float


def run_all(experiment: Experiment, *, progress: bool = True) -> RunResult:
    """Every stage, in order; each reuses what an earlier run finished."""
    from repro.data.preview import preview_grid
    from repro.data.summary import format_summary, summarize
    from repro.models import train_experiment

    started = time.perf_counter()

    def stage(name: str) -> None:
        if progress:
            print(f"[{name}] {time.perf_counter() - started:.0f} s", flush=True)

    stage(f"data: experiment {experiment.name}, run directory {experiment.run_dir}")
    datasets = prepare_data(experiment, progress=progress)
    summaries = {name: summarize(dataset) for name, dataset in datasets.items()}
    write_json(experiment.run_dir / "data-summary.json", summaries)
    for name, dataset in datasets.items():
        if progress:
            print(format_summary(summaries[name]))
        preview_grid(dataset, experiment.run_dir / "previews" / f"{name}.png")
    stage("train")
    train_experiment(experiment, progress=progress)
    stage("maps and scores")
    scores = evaluate(experiment, datasets, progress=progress)
    stage("tables")
    cells = make_tables(experiment, scores)
    stage("figures")
    make_figures(experiment, scores, datasets)
    stage("grade")
    report = make_grade(experiment, cells)
    publish(experiment)
    return RunResult(experiment, cells, report, check_controls(cells), time.perf_counter() - started)


PUBLISHED_FILES = ("table2.md", "table3.md", "table4.md", "table2.csv", "table3.csv", "table4.csv",
                   "cells.csv", "grade.md", "grade.json", "degenerate.json",
                   "figure2.png", "figure3.png", "figure4.png", "figure2.pdf", "figure3.pdf", "figure4.pdf")


def publish(experiment: Experiment) -> list[Path]:
    """Copy the run's tables, figures and grade to the experiment's `publish_dir` (the demo: the
    repository's figures/, so that a visitor sees results without running anything)."""
    target = experiment.config.get("publish_dir")
    if not target:
        return []
    target = Path(target)
    if not target.is_absolute():
        target = experiment.path.parent.parent / target   # relative to the repository root
    copied = []
    for name in PUBLISHED_FILES:
        source = results_dir(experiment) / name
        if source.is_file():
            copied.append(write_bytes(target / name, source.read_bytes()))
    return copied


def notebook_experiment() -> Experiment:
    """The run a walk-through notebook reads: $REPRO_EXPERIMENT (and $REPRO_RUN_DIR) when set,
    else the demo run when it has results, else the smoke run, made now if it has none (minutes)."""
    if os.environ.get("REPRO_EXPERIMENT"):
        return load_experiment(os.environ["REPRO_EXPERIMENT"], run_dir=os.environ.get("REPRO_RUN_DIR"))
    demo = load_experiment("demo")
    if (results_dir(demo) / "scores.csv").is_file():
        return demo
    smoke = load_experiment("smoke")
    if not (results_dir(smoke) / "scores.csv").is_file():
        run_all(smoke, progress=False)
    return smoke
