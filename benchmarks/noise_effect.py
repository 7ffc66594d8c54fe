"""What independent SmoothGrad noise per model state changes: SG and SIG again with shared noise.

The kit seeds SmoothGrad noise per (seed, image, model, state) (`saliency.noise: independent`):
the trained and randomized maps a test compares never share noise, as in the authors' unseeded
runs. With `saliency.noise: shared` an image gets the same noise under every model and state,
which correlates the maps being compared. Given a finished run, this script computes SG and SIG
again with shared noise on that run's models (a copy of its data, cache and models; nothing of
the original run is changed) and prints, per data set, the randomization and similarity cells of
both runs side by side.

    python benchmarks/noise_effect.py --experiment demo [--run-dir runs/demo] [--cluster local:2]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from repro import pipeline, results  # noqa: E402
from repro.experiments import load_experiment  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402

METHODS = ("SG", "SIG")
COLUMNS = {3: ("RandBaseline", "FullyRandomized", "P_Randomization"),
           4: ("Repeatability", "P_Repeat_Low", "Reproducibility", "P_Reprod_Low")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--run-dir")
    parser.add_argument("--cluster")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    independent = load_experiment(args.experiment, run_dir=args.run_dir)
    if independent.settings.saliency.noise != "independent":
        raise SystemExit(f"{args.experiment}: expected a run with saliency.noise: independent")
    work = Path(tempfile.mkdtemp(prefix="noise-effect-"))
    try:
        for part in ("data", "cache", "models"):
            if (independent.layout.root / part).exists():
                shutil.copytree(independent.layout.root / part, work / part)
        shared = load_experiment(args.experiment, run_dir=work, overrides=[
            f"saliency.methods=[{', '.join(METHODS)}]", "saliency.noise=shared", "publish_dir=null",
            "publish_readme=null"])
        report = pipeline.run_all(shared, progress=True, cluster=args.cluster)
        rows = compare(results.read_cells(independent), report.cells)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"rows": show_and_save(rows, markdown(rows), args.out)}


def compare(independent, shared) -> list[dict]:
    rows = []
    for table, columns in COLUMNS.items():
        for dataset in dict.fromkeys(independent["dataset"]):
            for method in METHODS:
                for column in columns:
                    pick = lambda cells: cells[(cells.table == table) & (cells.dataset == dataset)  # noqa: E731
                                               & (cells.method == method) & (cells.column == column)].iloc[0]
                    a, b = pick(independent), pick(shared)
                    value = column.startswith("P_")
                    rows.append({"dataset": dataset, "method": method, "column": column,
                                 "independent": f"{a['p']} {a['verdict']}" if value else f"{a['mean']:.3f}",
                                 "shared": f"{b['p']} {b['verdict']}" if value else f"{b['mean']:.3f}"})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| data set | method | cell | independent noise (the kit) | shared noise |", "|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['method']} | {r['column']} | {r['independent']} | {r['shared']} |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
