"""The main job end to end on the smoke experiment: tables, figures, grade, provenance, the image
ids and dropped maps each test used, resume after a kill, a subset of methods, the exit code of a
failed control check, and byte-identical reruns (training included) in this process and on a Dask
cluster with a worker killed mid-run (the session's smoke run, tests/conftest.py). The smoke run trains every model for one epoch: it checks the
plumbing, not the science (the demo run does that)."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro import pipeline, results
from repro.cli import main
from repro.experiments import load_experiment
from repro.protocol import INCEPTION_STATES
from repro.report.published import published_cells
from tests.helpers import copy_run


def test_tables_figures_grade_and_report_are_written(smoke_run):
    out = smoke_run.results
    for name in ("table2", "table3", "table4"):
        for suffix in ("csv", "md", "tex"):
            assert (out / f"{name}.{suffix}").stat().st_size > 0
    for name in ("figure2", "figure3", "figure4"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert (out / "grade.md").read_text().startswith("# Fidelity grade")
    assert (out / "report.md").read_text().startswith("# Saliency-map trustworthiness report")
    # Every cell the paper printed is measured (the published schema, both data sets).
    key = ["table", "dataset", "method", "column"]
    assert set(map(tuple, published_cells()[key].values)) <= set(map(tuple, smoke_run.cells[key].values))
    assert not re.search(r"\bnan\b", (out / "table3.csv").read_text(), flags=re.IGNORECASE)
    assert {"n", "form", "comparison", "bootstrap_agreement", "replicate_agreement", "fragile"} <= set(smoke_run.cells)


def test_main_command_prints_stages_verdicts_and_the_grade(smoke_run):
    for stage in ("[data", "[train", "[maps]", "[scores]", "[statistics", "[tables, figures, grade, HTML report]",
                  "[done]"):
        assert stage in smoke_run.printed
    # Each stage's own duration, after it (not the time since the run started, before it).
    done = re.findall(r"^\[(\w+)\] done in (\d+) s, peak memory [\d.]+ GB$", smoke_run.printed, flags=re.MULTILINE)
    assert [name for name, _ in done] == ["data", "train", "maps", "scores", "statistics", "report"]
    total = float(re.search(r"^\[done\] (\d+) s", smoke_run.printed, flags=re.MULTILINE).group(1))
    assert sum(int(seconds) for _, seconds in done) <= total + len(done)
    assert "siim: 120 images" in smoke_run.printed and "fidelity grade:" in smoke_run.printed
    assert re.search(r"^  EDGE ", smoke_run.printed, flags=re.MULTILINE)    # the controls' verdict rows
    grade = json.loads((smoke_run.results / "grade.json").read_text())
    assert grade["headline"] in smoke_run.printed


def test_each_test_s_images_and_the_dropped_maps_are_written(smoke_run):
    images = pd.read_csv(smoke_run.results / "images.csv", dtype=str)
    counts = images.groupby(["dataset", "test"]).size()
    assert counts[("siim", "utility")] == 3 and counts[("siim", "randomization")] == 3
    assert counts[("rsna", "cascade_curves")] == 1
    # At 80 px InceptionV3's mixed10 is 1x1: every Grad-CAM is constant, so every GCAM map is
    # degenerate, dropped from every comparison and counted; its cells are not measured.
    degenerate = json.loads((smoke_run.results / "degenerate.json").read_text())
    assert degenerate["siim"]["degenerate_maps"]["GCAM"]["inception_r1/original"] == 3
    gcam = smoke_run.cells[(smoke_run.cells.method == "GCAM") & (smoke_run.cells.table == 3)]
    assert (gcam.loc[gcam.column == "AUPRC", "n"] == 0).all()
    assert set(gcam.loc[gcam.column.str.startswith("P_"), "verdict"]) == {"not measured"}
    grad = smoke_run.cells[(smoke_run.cells.method == "GRAD") & (smoke_run.cells.table == 3)
                           & (smoke_run.cells.column == "AUPRC")]
    assert (grad["n"] == 3).all()


def test_provenance_record(smoke_run):
    record = json.loads((smoke_run.run_dir / "provenance.json").read_text())
    assert record["experiment"] == "smoke" and len(record["experiment_hash"]) == 64
    assert record["deterministic"] is True and record["seeds"]["models"]["inception_r2"] == 2
    assert set(record["results_sha256"]) >= {"cells.csv", "scores.csv", "table3.md", "grade.json", "models.json"}
    assert record["packages"]["tensorflow"] and record["packages"]["saliency"] == "0.2.1"
    assert record["wall_seconds"] > 0 and record["peak_memory_gb"] > 0
    assert {"cpu", "vector_extensions"} <= set(record["machine"]) or not Path("/proc/cpuinfo").exists()
    assert {"data", "train", "maps", "scores", "statistics", "report"} <= set(record["stages"])


def test_control_check_names_a_control_that_misbehaves(smoke_run):
    """Three test images and one-epoch models cannot show the controls' effects reliably (the demo
    run does): the smoke run says its controls were not checked. The check itself is tested here on
    the run's cells with planted verdicts and a planted number of images."""
    from repro.report.summary import unchecked_controls
    assert unchecked_controls(smoke_run.cells) == [
        f"{d}: controls not checked (3 utility images; the check needs 10)" for d in ("siim", "rsna")]
    assert "siim: controls not checked" in smoke_run.printed
    cells = smoke_run.cells.copy()
    cells.loc[(cells.method == "AVG") & (cells.column == "AUPRC"), "n"] = 20
    assert unchecked_controls(cells) == []
    edge = (cells.table == 3) & (cells.method == "EDGE") & (cells.column == "P_Randomization")
    oracle = (cells.table == 3) & (cells.method == "ORACLE") & (cells.column == "P_AVG")
    cells.loc[edge, "verdict"], cells.loc[oracle, "verdict"] = "did not pass", "pass"
    assert pipeline.check_controls(cells) == []
    cells.loc[edge & (cells.dataset == "siim"), "verdict"] = "uncertain"
    cells.loc[oracle & (cells.dataset == "rsna"), "verdict"] = "did not pass"
    assert pipeline.check_controls(cells) == [
        "siim: the EDGE control (ignores the model) should FAIL the randomization test, but its verdict is 'uncertain'",
        "rsna: the ORACLE control (the true evidence) should beat AVG on utility, but its verdict is 'did not pass'"]


def test_resume_after_interruption_gives_identical_results(smoke_run, tmp_path):
    """A killed run leaves some maps, a half-written file and no results; the rerun computes only
    what is missing and ends with the same bytes."""
    copy_run(smoke_run, tmp_path)
    experiment = load_experiment("smoke", run_dir=tmp_path)
    state = tmp_path / "maps" / "siim" / "inception_r2" / "mixed7"
    lost = [state / "SG" / f"{image}.npz" for image in pd.read_csv(smoke_run.results / "images.csv", dtype=str)
            .query("dataset == 'siim' and test == 'cascade_curves'")["image"]]
    lost += sorted((tmp_path / "maps" / "siim" / "inception_r1" / "original" / "GRAD").glob("*.npz"))[:1]
    for path in lost:
        path.unlink()
    (state / "XRAI" / ".half.npz.x1y2.tmp").write_bytes(b"partial")   # what a kill mid-write leaves
    shutil.rmtree(tmp_path / "results")
    models = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.keras")}
    pipeline.run_all(experiment, progress=False)
    for name in ("cells.csv", "scores.csv", "table3.md", "grade.json", "images.csv", "report.md",
                 "report/index.html", "report/images-siim.html", "report/cascade.html"):
        assert (tmp_path / "results" / name).read_bytes() == (smoke_run.results / name).read_bytes(), name
    assert {p: p.stat().st_mtime_ns for p in models} == models  # no model retrained
    assert all(p.is_file() for p in lost)


def test_data_sets_scored_side_by_side_give_the_same_bytes(smoke_run, tmp_path):
    """stage_scores hands each data set to its own spawned process: the files are those the smoke
    run wrote (scored on its Dask workers) and an in-process run writes (the resume test)."""
    from repro.execution import InProcess
    copy_run(smoke_run, tmp_path, parts=("data", "cache", "models", "maps"))
    experiment = load_experiment("smoke", run_dir=tmp_path)
    datasets = pipeline.stage_data(experiment, progress=False)
    plans = {name: pipeline.plan_maps(experiment, dataset) for name, dataset in datasets.items()}
    pipeline.stage_scores(experiment, datasets, plans, InProcess(2))
    for name in ("scores.csv", "images.csv", "degenerate.json"):
        assert (tmp_path / "results" / name).read_bytes() == (smoke_run.results / name).read_bytes(), name


def test_xrai_segments_made_in_advance_on_two_processes_are_the_cluster_run_s_files(smoke_run, tmp_path):
    """InProcess(2) segments XRAI's images first, half of them in each of two spawned processes:
    the segment cache holds the very files the smoke run's Dask workers wrote, one per image."""
    from repro.evaluation.maps import xrai_images
    from repro.execution import InProcess
    copy_run(smoke_run, tmp_path, parts=("data", "cache", "models"))   # no maps, no segments
    experiment = load_experiment("smoke", run_dir=tmp_path)
    datasets = pipeline.prepare_data(experiment, progress=False)
    tasks = [task for dataset in datasets.values() for task in pipeline.plan_maps(experiment, dataset).tasks]
    InProcess(2).segment(pipeline.map_context(experiment), tasks)
    for name, ids in xrai_images(tasks).items():
        ours, cluster = (run.layout.segments_dir(name) for run in (experiment, smoke_run.experiment))
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in cluster.iterdir())
        assert len(list(ours.iterdir())) == len(set(ids)) > 1   # distinct phantoms: one file each
        for path in ours.iterdir():
            assert path.read_bytes() == (cluster / path.name).read_bytes(), path


def test_a_resumed_run_whose_xrai_maps_are_done_segments_nothing(smoke_run, tmp_path, monkeypatch):
    from repro.execution import InProcess
    copy_run(smoke_run, tmp_path, parts=("data", "cache", "models", "maps"))
    experiment = load_experiment("smoke", run_dir=tmp_path)
    datasets = pipeline.prepare_data(experiment, progress=False)
    tasks = [task for dataset in datasets.values() for task in pipeline.plan_maps(experiment, dataset).tasks]
    assert any(task.method == "XRAI" for task in tasks)
    jobs = []
    monkeypatch.setattr(InProcess, "map", lambda self, function, given: jobs.extend(given))
    InProcess(2).segment(pipeline.map_context(experiment), tasks)
    assert jobs == []


def test_a_subset_of_methods_runs_through_and_a_failed_control_exits_3(smoke_run, tmp_path, monkeypatch, capsys):
    """The maps of the subset are the run's own (a map's fingerprint does not depend on the other
    methods): only the scores, statistics and reports are computed again."""
    copy_run(smoke_run, tmp_path, parts=("data", "cache", "models", "maps"))
    monkeypatch.setattr(pipeline, "check_controls", lambda cells: ["siim: a planted control failure"])
    code = main(["all", "--experiment", "smoke", "--run-dir", str(tmp_path), "--set", "saliency.methods=[GRAD, IG]"])
    printed = capsys.readouterr()
    assert code == 3 and "CONTROL CHECK FAILED: siim: a planted control failure" in printed.err
    with pytest.raises(ValueError, match="holds results made with other settings than these: saliency.methods"):
        results.read_cells(load_experiment("smoke", run_dir=tmp_path))        # the full set's settings
    cells = results.read_cells(load_experiment("smoke", run_dir=tmp_path, overrides=["saliency.methods=[GRAD, IG]"]))
    assert set(cells.method) == {"AVG", "U-Net", "RetinaNet", "LOW", "GRAD", "IG", "EDGE", "ORACLE"}
    table3 = (tmp_path / "results" / "table3.md").read_text()
    assert "| GRAD " in table3 and "| XRAI " not in table3
    for name in ("figure2.png", "figure3.png", "figure4.png", "grade.md", "report.md"):
        assert (tmp_path / "results" / name).stat().st_size > 0
    assert json.loads((tmp_path / "results" / "grade.json").read_text())["summary"]["findings_not_measured"] > 0
    scores = pd.read_csv(tmp_path / "results" / "scores.csv", dtype=str, keep_default_na=False)
    full = pd.read_csv(smoke_run.results / "scores.csv", dtype=str, keep_default_na=False)
    full = full[full.group.isin(set(scores.group))].reset_index(drop=True)
    pd.testing.assert_frame_equal(scores, full)


def test_unchanged_scores_reuse_the_statistics_and_changed_ones_do_not(smoke_run, tmp_path, monkeypatch, capsys):
    """The stability resampling takes minutes: a rerun whose scores and settings are unchanged reads
    cells.csv back; other scores (or a damaged record of what made the cells) compute them again."""
    copy_run(smoke_run, tmp_path, parts=("results",))
    experiment = load_experiment("smoke", run_dir=tmp_path)
    scores = pd.read_csv(tmp_path / "results" / "scores.csv", dtype={"image": str, "model": str})
    before = (tmp_path / "results" / "cells.csv").read_bytes()
    from repro.statistics import run
    real, calls = run.verdict_stability, []
    monkeypatch.setattr(run, "verdict_stability", lambda *a, **k: calls.append(1) or real(*a, **k))
    reused = pipeline.stage_statistics(experiment, scores)
    assert calls == [] and "cells.csv reused" in capsys.readouterr().out
    assert (tmp_path / "results" / "cells.csv").read_bytes() == before and len(reused) == len(smoke_run.cells)
    pipeline.stage_statistics(experiment, scores.iloc[1:], progress=False)
    assert calls and (tmp_path / "results" / "cells.csv").read_bytes() != before
    calls.clear()
    (tmp_path / "results" / "statistics.json").write_text("null")
    pipeline.stage_statistics(experiment, scores, progress=False)
    assert calls and (tmp_path / "results" / "cells.csv").read_bytes() == before


CHECKED_METHODS = ("GRAD", "SG", "XRAI")   # a gradient, seeded noise, XRAI (segmentation tasks on the cluster)
RETRAINED = ("inception_r2", "unet_r1")   # trained again here: a replicate trained second there, a localizer


def test_in_process_gives_the_cluster_run_s_bits(smoke_run, tmp_path):
    """The SIIM-like half of the smoke run again, in this process, on the session's smoke models
    (trained once, on the cluster) but two, which are trained here again and come out with the
    cluster run's weights to the last bit (training is deterministic in any process, a replicate
    trained alone equals one trained after another in its process, and a killed worker changed
    nothing); the maps are computed here from nothing, the scores are the same bytes, and so are
    the tables made from them."""
    import keras

    from repro.protocol import KAGGLE_DATASETS
    from repro.statistics.cells import result_cells
    assert smoke_run.killed, "the smoke run's worker was not killed: the fixture did not test anything"
    assert json.loads((smoke_run.run_dir / "provenance.json").read_text())["cluster"] == "local:2"
    copy_run(smoke_run, tmp_path, parts=("data", "cache", "models"))   # no maps, no results
    experiment = load_experiment("smoke", run_dir=tmp_path, overrides=[
        "data.datasets=[siim]", f"saliency.methods=[{', '.join(CHECKED_METHODS)}]"])
    for name in RETRAINED:
        for path in (tmp_path / "models" / "siim").glob(f"{name}.*"):
            path.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.keras")}
    report = pipeline.run_all(experiment, progress=False)
    assert report.provenance["cluster"] == "in-process"
    assert {p: p.stat().st_mtime_ns for p in kept} == kept     # the others reused, not trained again
    for name in RETRAINED:
        ours = keras.models.load_model(tmp_path / "models" / "siim" / f"{name}.keras", compile=False)
        theirs = keras.models.load_model(smoke_run.run_dir / "models" / "siim" / f"{name}.keras", compile=False)
        assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), theirs.get_weights())), name
    mine = pd.read_csv(tmp_path / "results" / "scores.csv", dtype=str, keep_default_na=False)
    reference = pd.read_csv(smoke_run.results / "scores.csv", dtype=str, keep_default_na=False)
    reference = reference[(reference.dataset == "siim") & reference.group.isin(set(mine.group))]
    pd.testing.assert_frame_equal(mine, reference.reset_index(drop=True))
    assert set(mine.state) >= set(INCEPTION_STATES[1:]) and set(mine.group) >= set(CHECKED_METHODS)
    # The tables are a function of the scores: the cluster run's scores give this run's cells.
    cluster = pd.read_csv(smoke_run.results / "scores.csv", dtype={"image": str, "model": str})
    expected = result_cells(cluster[cluster.group.isin(set(mine.group))], KAGGLE_DATASETS["siim"],
                            pipeline.main_choice(experiment, "siim"), methods=CHECKED_METHODS,
                            controls=("EDGE", "ORACLE"))
    cells = results.read_cells(experiment)
    key = ["table", "method", "column", "mean", "sd", "n", "p", "verdict"]
    pd.testing.assert_frame_equal(cells[key].reset_index(drop=True), expected[key].reset_index(drop=True),
                                  check_dtype=False)


def test_a_second_run_on_the_same_directory_is_refused(smoke_run, capsys):
    from repro.io import RunLock
    with RunLock(smoke_run.run_dir / ".lock"):
        code = main(["all", "--experiment", "smoke", "--run-dir", str(smoke_run.run_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "is in use by pid" in err and len(err.strip().splitlines()) == 1


def test_the_driver_plans_trains_and_reports_without_tensorflow(smoke_run):
    """What the driver of a cluster run (or of isolated trainings) runs itself never imports
    TensorFlow, so that it holds none of its memory."""
    import subprocess
    import sys
    code = f"""
import sys
from repro import pipeline, results
from repro.experiments import load_experiment
experiment = load_experiment("smoke", run_dir={str(smoke_run.run_dir)!r})
datasets = pipeline.prepare_data(experiment, progress=False)
pipeline.train_context(experiment)
pipeline.check_model_files(experiment)
plans = {{name: pipeline.plan_maps(experiment, dataset) for name, dataset in datasets.items()}}
pipeline.map_context(experiment)
scores = results.read_scores(experiment)
results.read_report(experiment)
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TensorFlow was imported"
print("ok", sum(len(plan.tasks) for plan in plans.values()))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ok "), done.stderr[-2000:]


def test_in_process_work_spreads_over_processes_and_trains_by_architecture(monkeypatch):
    """`map` gives its jobs' results in order from any number of processes; `train` hands each
    architecture's jobs, of every data set, to one process (one traced training step), or each
    data set's to its own where the runtime asks."""
    from types import SimpleNamespace

    from repro import execution
    from repro.execution import InProcess
    jobs = [(2, 3), (3, 2), (5, 0), (7, 1)]
    assert InProcess(2).map(pow, jobs) == InProcess(1).map(pow, jobs) == [8, 9, 1, 7]

    calls = []
    monkeypatch.setattr(execution, "train_groups", lambda context, group, progress: calls.append(group) or [])
    models = {"r1": SimpleNamespace(arch="inception_v3"), "r2": SimpleNamespace(arch="inception_v3"),
              "dn": SimpleNamespace(arch="densenet121"), "unet": SimpleNamespace(arch="unet")}
    jobs = [("siim", ("r1", "r2")), ("siim", ("dn",)), ("siim", ("unet",)), ("rsna", ("r1", "r2")), ("rsna", ("dn",))]
    InProcess().train(SimpleNamespace(models=models, process_per_dataset=()), jobs, progress=False)
    assert calls == [[("siim", ("r1", "r2")), ("rsna", ("r1", "r2"))], [("siim", ("dn",)), ("rsna", ("dn",))],
                     [("siim", ("unet",))]]
    calls.clear()   # runtime.training.process_per_dataset: those architectures' data sets apart
    InProcess().train(SimpleNamespace(models=models, process_per_dataset=("densenet121",)), jobs, progress=False)
    assert calls == [[("siim", ("r1", "r2")), ("rsna", ("r1", "r2"))], [("siim", ("dn",))], [("siim", ("unet",))],
                     [("rsna", ("dn",))]]
