"""A run's results, read back and published.

Every reader of results (tables, figures, grade, report, notebooks) goes through `current_result`,
which checks that the finished run recorded in provenance.json wrote the file, with the settings
and code versions of now; `publish` copies the results a visitor sees to the experiment's
publish_dir (the demo: the repository's figures/ and the README's results section).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from repro.experiments import Experiment, results_fingerprint_of, results_settings, settings_changes
from repro.io import atomic_folder, read_json_object, sha256_file, write_bytes
from repro.protocol import SANITY_TESTS
from repro.report.readme import update_readme
from repro.report.summary import RunReport, check_controls
from repro.statistics.run import read_cells_file
from repro.versions import CODE_VERSIONS


PUBLISHED_FILES = ("report.md", "models.json", "table2.md", "table3.md", "table4.md", "table2.csv", "table3.csv", "table4.csv",
                   "cells.csv", "grade.md", "grade.json", "degenerate.json", "images.csv",
                   "figure2.png", "figure3.png", "figure4.png", "figure2.pdf", "figure3.pdf", "figure4.pdf")
# The sanity checks' results, where a run has them (evaluation.sanity).
PUBLISHED_SANITY_FILES = ("table_sanity.md", "sanity_cells.csv", "sanity_findings.csv",
                          *(f"figure_sanity_{test}.{kind}" for test in SANITY_TESTS for kind in ("png", "pdf")))


def publish(experiment: Experiment) -> list[Path]:
    """Copy the run's tables, figures, grade, provenance and HTML report (report/) to the
    experiment's publish_dir (the demo: the repository's figures/, so that a visitor sees results
    without running anything)."""
    target = experiment.publish_dir
    if target is None:
        return []
    copied = []
    sources = [experiment.layout.result(name) for name in (*PUBLISHED_FILES, *PUBLISHED_SANITY_FILES)]
    sources.append(experiment.layout.provenance_file)
    for source in sources:
        if source.is_file():
            copied.append(write_bytes(target / source.name, source.read_bytes()))
    report = experiment.layout.report_dir
    if report.is_dir() and experiment.settings.publish_report:   # the HTML report, replacing the published one whole
        with atomic_folder(target / report.name) as folder:
            shutil.copytree(report, folder, dirs_exist_ok=True)
        copied.append(target / report.name / "index.html")
    if experiment.publish_readme is not None:
        copied.append(update_readme(experiment.publish_readme, target))
    return copied


def current_result(experiment: Experiment, name: str, what: str) -> Path:
    """results/<name>, checked before anyone reads it: the finished run that provenance.json records
    wrote it (its SHA-256 is there), with the settings the experiment has now (the results
    fingerprint is there). Otherwise an error saying why, with the command that brings the results
    up to date. Every reader of results (tables, figures, grade, report, notebooks) goes through
    here, so that none shows results of other settings as if they were these."""
    layout, update = experiment.layout, f"run: {experiment.command('all')}"
    path = layout.result(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} yet ({update})")
    try:
        provenance = read_json_object(layout.provenance_file)
    except ValueError as err:
        raise ValueError(f"{path}: the record of the run that made it is missing or damaged ({err}), so its "
                         f"settings are unknown ({update})") from None
    made_with = provenance.get("results_fingerprint")
    if made_with != experiment.results_fingerprint:
        code = provenance.get("code_versions")
        if code != CODE_VERSIONS:
            changes = settings_changes(code, CODE_VERSIONS) if isinstance(code, dict) else []
            raise ValueError(f"{layout.results_dir} holds results made by another version of the kit"
                             f"{': ' + '; '.join(changes) if changes else ''} ({update})")
        raise ValueError(f"{layout.results_dir} holds results made with other settings than these"
                         f"{_settings_changes(experiment, made_with)} ({update})")
    digests = provenance.get("results_sha256")
    if not isinstance(digests, dict) or digests.get(name) != sha256_file(path):
        raise ValueError(f"{path} is not the file the last finished run wrote (a run that did not finish, or "
                         f"an edit, changed it) ({update})")
    return path


def _settings_changes(experiment: Experiment, made_with) -> str:
    """': key: old then, new now; ...' when the run directory's experiment.json holds the settings
    the results were made with (it is written when a run starts); '' when it does not."""
    try:
        written = read_json_object(experiment.layout.settings_file)
    except ValueError:
        return ""
    if results_fingerprint_of(written) != made_with:
        return ""
    changes = settings_changes(results_settings(written), results_settings(experiment.settings.model_dump(mode="json")))
    if not changes:
        return ""
    return ": " + "; ".join(changes[:3]) + (f" (and {len(changes) - 3} more)" if len(changes) > 3 else "")


def read_scores(experiment: Experiment) -> pd.DataFrame:
    """The run's scores.csv (per image), made with the experiment's current settings."""
    return pd.read_csv(current_result(experiment, "scores.csv", "scores"), dtype={"image": str, "model": str})


def read_cells(experiment: Experiment) -> pd.DataFrame:
    """The run's cells.csv (Tables 2-4 in the published schema, with n and stability), made with
    the experiment's current settings."""
    return read_cells_file(current_result(experiment, "cells.csv", "tables"))


def read_sanity_cells(experiment: Experiment) -> pd.DataFrame:
    """The run's sanity_cells.csv (the sanity checks' cells, in cells.csv's form), made with the
    experiment's current settings."""
    return read_cells_file(current_result(experiment, "sanity_cells.csv", "sanity checks"))


def read_report(experiment: Experiment) -> RunReport:
    """The report of the last finished run, from its files."""
    cells = read_cells(experiment)   # checked: made with these settings
    grade_path = experiment.layout.result("grade.json")
    grade = read_json_object(grade_path) if grade_path.is_file() else None
    models_path = experiment.layout.result("models.json")
    models = read_json_object(models_path) if models_path.is_file() else {}
    return RunReport(experiment, cells, grade, check_controls(cells), read_json_object(experiment.layout.provenance_file),
                     models)
