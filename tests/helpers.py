"""Shared test helpers: score tables with planted answers (no model, no maps), and copies of runs."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from repro.evaluation.scoring import SCORE_COLUMNS
from repro.protocol import INCEPTION_STATES, KAGGLE_DATASETS, PAPER_METHODS
from repro.statistics.cells import ModelChoice

REPLICATES = ("r1", "r2", "r3")
OTHER = "densenet"


def main_choice(dataset: str = "siim") -> ModelChoice:
    localizer = KAGGLE_DATASETS[dataset].localizer
    return ModelChoice(utility="r1", replicates=REPLICATES, repeatability="r1~r2", reproducibility=f"r1~{OTHER}",
                       localizer=f"{localizer}_r1", localizer_pair=f"{localizer}_r1~{localizer}_r2")


def synthetic_scores(dataset: str = "siim", n_images: int = 25, seed: int = 0, methods=PAPER_METHODS) -> pd.DataFrame:
    """Scores with planted answers: XRAI beats AVG on utility, GRAD falls below its randomization
    baseline, XRAI stays above it, the high baseline beats everything; three replicates."""
    rng = np.random.default_rng(seed)
    spec = KAGGLE_DATASETS[dataset]
    high, choice = spec.high_baseline, main_choice(dataset)
    rows = []

    def add(test, metric, group, model, state, centre, spread=0.03):
        for i in range(n_images):
            rows.append((dataset, test, metric, group, model, state, f"img{i}", centre + rng.normal(0, spread)))

    for metric in ("auprc", "roc_auc"):
        add("utility", metric, "AVG", "AVG", "trained", 0.15)
        add("utility", metric, high, choice.localizer, "trained", 0.45)
        for replicate in REPLICATES:
            for method in methods:
                add("utility", metric, method, replicate, "trained", 0.25 if method == "XRAI" else 0.05)
    for replicate in REPLICATES:
        for method in methods:
            add("randomization", "ssim", method, replicate, "baseline", 0.3)
            for state in INCEPTION_STATES[1:]:
                add("randomization", "ssim", method, replicate, state, 0.45 if method == "XRAI" else 0.15)
    for method in methods:
        for pair in ("r1~r2", "r1~r3", "r2~r3"):
            add("repeatability", "ssim", method, pair, "trained", 0.7 if method == "XRAI" else 0.3)
        for replicate in REPLICATES:
            add("reproducibility", "ssim", method, f"{replicate}~{OTHER}", "trained", 0.2)
    for test in ("repeatability", "reproducibility"):
        add(test, "ssim", high, choice.localizer_pair, "trained", 0.95)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def finished_results(experiment) -> None:
    """What a finished run of `experiment` leaves for the commands that read results, in seconds:
    experiment.json, results/cells.csv (the paper's own cells), results/scores.csv (planted) and
    provenance.json as the pipeline writes it. No data, models or maps."""
    from repro.experiments import REPOSITORY, resolved_config
    from repro.io import write_json, write_text
    from repro.provenance import StageClock, provenance_record
    from repro.report.published import published_cells
    layout = experiment.layout
    write_json(layout.settings_file, resolved_config(experiment))
    cells = published_cells().assign(n=100, form="replicates", comparison="", bootstrap_agreement=np.nan,
                                     replicate_agreement=np.nan, fragile=False)
    write_text(layout.result("cells.csv"), cells.to_csv(index=False))
    write_text(layout.result("scores.csv"), synthetic_scores(n_images=3).to_csv(index=False))
    clock = StageClock()
    clock.stop()
    write_json(layout.provenance_file, provenance_record(experiment, clock, cluster=None, repository=REPOSITORY))


def copy_run(run, target, *, parts=("data", "cache", "models", "maps", "results")):
    """A copy of a run directory's parts (mtimes kept, so the data fingerprints still match)."""
    for part in parts:
        if (run.run_dir / part).exists():
            shutil.copytree(run.run_dir / part, target / part)
    for name in ("data-summary.json",):
        if (run.run_dir / name).exists():
            shutil.copy2(run.run_dir / name, target / name)
    return target


def kill_a_worker_once_maps_appear(run_dir: Path, killed: list, stop: threading.Event) -> None:
    """Kill one Dask worker process (SIGKILL) of this process once the maps stage has written a
    few maps under run_dir; its pid goes into `killed`."""
    import psutil
    while not stop.wait(0.2):
        if len(list((run_dir / "maps").rglob("*.npz"))) >= 10:
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
            if workers:
                workers[0].kill()
                killed.append(workers[0].pid)
                return
