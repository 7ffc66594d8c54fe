"""The README's results section, written from a published run's records, never by hand.

`results_section(figures_dir)` turns the files `publish` copies (provenance.json, grade.json,
cells.csv, images.csv, models.json and, for each comparison with another run, reproducibility*.json) into
Markdown; `update_readme` puts it between the README's two markers. The demo experiment publishes
to figures/ and names the README (`publish_readme`), so every demo run rewrites the section; a test
checks that the committed README matches the committed figures/.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from repro.io import write_text
from repro.protocol import KAGGLE_DATASETS, NOT_MEASURED
from repro.report.summary import NEAR_CHANCE, localizers_below_avg

BEGIN = "<!-- results: written by repro.report.readme from figures/; do not edit by hand -->"
END = "<!-- end of results -->"
MONITORS = {"auc": "ROC AUC", "pixel_ap": "pixel AP"}


def results_section(figures: str | Path) -> str:
    figures = Path(figures)
    provenance = json.loads((figures / "provenance.json").read_text())
    grade = json.loads((figures / "grade.json").read_text()) if (figures / "grade.json").is_file() else None
    cells = pd.read_csv(figures / "cells.csv", dtype={"p": str, "verdict": str}, keep_default_na=False)
    images = pd.read_csv(figures / "images.csv", dtype=str)
    models = json.loads((figures / "models.json").read_text()) if (figures / "models.json").is_file() else {}
    lines = [BEGIN, ""]
    commit = (provenance.get("commit") or "unknown")[:12]
    stages = ", ".join(f"{name} {stage['seconds'] / 60:.1f}" for name, stage in provenance["stages"].items())
    machine = provenance["machine"]
    cpu = (f" ({machine['cpu'] or 'CPU'}, vector extensions up to {machine['vector_extensions'][-1]})"
           if machine.get("vector_extensions") else "")
    lines.append(f"Run `{provenance['experiment']}` at commit `{commit}` ({provenance['finished']}), "
                 f"{provenance['cluster']}, on {machine['cores']} cores{cpu}: "
                 f"**{provenance['wall_seconds'] / 60:.0f} minutes** (minutes per stage: {stages}), "
                 f"**peak memory {provenance['peak_memory_gb']:.2f} GB** (all processes). TensorFlow "
                 f"{provenance['packages']['tensorflow']}, Keras {provenance['packages']['keras']}, PAIR saliency "
                 f"{provenance['packages']['saliency']}; op determinism "
                 f"{'on' if provenance['deterministic'] else 'off'}.")
    lines.append("")
    counts = images.groupby(["dataset", "test"]).size()
    no_ceiling = {below.dataset: below for below in localizers_below_avg(cells)}
    for dataset in dict.fromkeys(images["dataset"]):
        name = KAGGLE_DATASETS[dataset].short if dataset in KAGGLE_DATASETS else dataset
        scores = ", ".join(_model_score(model.split("/", 1)[1], record) for model, record in models.items()
                           if model.startswith(f"{dataset}/") and record["test"].get(record["monitor"]) is not None)
        lines.append(f"- {name}-like: {counts.get((dataset, 'utility'), 0)} positive test images for utility, "
                     f"{counts.get((dataset, 'randomization'), 0)} in the sample of the SSIM tests"
                     + (f"; test scores (classifiers ROC AUC, localizers pixel AP): {scores}" if scores else "")
                     + (f"; **warning: {no_ceiling[dataset].finding}: it is no ceiling, and the grade counts the "
                        f"findings that rest on it as not measured**" if dataset in no_ceiling else ""))
    verdicts = cells[cells["column"].str.startswith("P_") & ~cells["verdict"].isin(["", NOT_MEASURED])]
    methods = verdicts[~verdicts["method"].isin(["EDGE", "ORACLE"])]
    fragile = methods["fragile"].astype(str) == "True"
    lines.append(f"- verdicts of the methods: {len(methods)}, of which **{int((~fragile).sum())} firm** and "
                 f"{int(fragile.sum())} fragile (◊: the verdict flips in more than 10% of bootstrap resamples "
                 f"or replicates)")
    if grade is not None:
        lines.append(f"- fidelity grade: **{grade['headline']}**")
    checks = [(path.name, json.loads(path.read_text())) for path in sorted(figures.glob("reproducibility*.json"))]
    # a comparison belongs to this publication when every file it compared is this run's (a published
    # folder holds fewer files than the run's results/)
    checks = [(name, check) for name, check in checks
              if check["results_sha256"] and all(provenance["results_sha256"].get(file) == digest
                                                 for file, digest in check["results_sha256"].items())]
    for name, check in checks:
        lines.append(f"- checked against another run: {check['summary']} (figures/{name})")
    if not checks:
        lines.append("- checked against another run: not yet compared with a second run of this commit "
                     "(benchmarks/compare_runs.py)")
    lines += ["", END]
    return "\n".join(lines)


def _model_score(name: str, record: dict) -> str:
    """`inception_r3 0.950`, with the seeds given up when it was trained again (train.restart), and
    a classifier that learned next to nothing marked as such: its maps explain noise."""
    value = record["test"][record["monitor"]]
    score = f"{name} {value:.3f}" + (" **(near chance)**" if record["monitor"] == "auc" and value < NEAR_CHANCE else "")
    restarts = record.get("restarts") or []
    if restarts:
        given_up = "; ".join(f"seed {r['seed']}: validation {MONITORS.get(record['monitor'], record['monitor'])} "
                             f"{_number(r['val'].get(record['monitor']))}" for r in restarts)
        score += f" (from seed {record['seed']}, trained again after {given_up})"
    return score


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def update_readme(readme: str | Path, figures: str | Path) -> Path:
    """Replace the README's results section (between BEGIN and END) with the one `figures` gives."""
    readme = Path(readme)
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no results section (the lines {BEGIN!r} ... {END!r})")
    return write_text(readme, text[:start] + results_section(figures) + text[end + len(END):])


def readme_section(readme: str | Path) -> str:
    """The README's results section as it stands."""
    text = Path(readme).read_text()
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END)] if 0 <= start < end else ""
