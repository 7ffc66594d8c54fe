"""The stages of `repro all`, each reusing what an earlier (possibly killed) run finished.

data (phantoms made if needed, arrays cached) -> train (finished models kept, stale ones retrained)
-> maps (stored one by one, checked on read) -> scores -> statistics (cells, verdict stability)
-> tables, figures, grade -> provenance, publish. Scores and everything after them are recomputed
from the stored maps every time (cheap, and identical for identical maps), except the statistics,
reused while their scores and settings are unchanged (minutes of resampling).

This module only wires the stages: the work lives in the stages' packages (repro.data, .models,
.evaluation, .statistics, .report) and in repro.results; each function here hands them the
experiment's models, roles, typed settings and run layout, and none reads the experiment file
itself. What needs TensorFlow is imported inside the function that uses it, so that light commands
and the driver of a cluster run never start it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from repro.data.check import check_data
from repro.data.contents import format_summary, summarize
from repro.data.dataset import Dataset
from repro.data.prepare import data_sources, prepare_data
from repro.data.preview import preview_grid
from repro.evaluation import plan as evaluation_plan
from repro.evaluation.maps import MapContext
from repro.evaluation.plan import MapPlan
from repro.evaluation.sanity_run import run_sanity_scores
from repro.evaluation.scoring import SCORE_COLUMNS, score_one_dataset
from repro.execution import InProcess, executor_for
from repro.experiments import REPOSITORY, Experiment, TrainSettings, load_experiment, resolved_config
from repro.io import RunLock, link_missing_files, read_json_object, write_json, write_text
from repro.models.jobs import TrainContext, training_jobs
from repro.models.records import model_summary
from repro.models.weights import missing
from repro.provenance import StageClock, provenance_record
from repro.report.compare import compare as compare_runs
from repro.report.examples import examples_for
from repro.report.figures import FIGURES, save_figure
from repro.report.grade import write_grade
from repro.report.html import comparisons_of, write_html_report, write_provenance_page
from repro.report.sanity import published_directions, sanity_figures, sanity_section, write_sanity_tables
from repro.report.summary import RunReport, check_controls, report_markdown
from repro.report.tables import write_table
from repro.results import publish, read_cells, read_report, read_sanity_cells, read_scores
from repro.runtime import give_back_memory
from repro.statistics.cells import ModelChoice, PostHoc
from repro.statistics.cells import main_choice as statistics_choice
from repro.statistics.export import export_for_r
from repro.statistics.run import dataset_cells, run_statistics
from repro.statistics.sanity import run_sanity_cells
from repro.worker import WORKER

log = logging.getLogger(__name__)

# --- stages ---------------------------------------------------------------------------------------

def stage_reuse(experiment: Experiment, *, progress: bool = True) -> int:
    """runtime.reuse_from: links to another run directory's data, trained models and maps, for every
    file this run lacks (repro.io.link_missing_files). Nothing is trusted for being there: a model or
    map is used only where its fingerprint is the one this run wants, as this run's own files are,
    else trained or computed again. Returns the number of files linked."""
    source = experiment.settings.runtime.reuse_from
    if source is None:
        return 0
    root, layout = experiment.resolve(source), experiment.layout
    if root.resolve() == layout.root.resolve():
        return 0
    if not root.is_dir():
        if progress:
            print(f"reuse_from: {root} does not exist; this run makes its own data, models and maps", flush=True)
        return 0
    linked = sum(link_missing_files(root / folder, layout.root / folder) for folder in layout.REUSABLE)
    if progress:
        print(f"reuse_from: {linked} files of data, models and maps linked from {root}", flush=True)
    return linked


def stage_data(experiment: Experiment, *, progress: bool = True) -> dict[str, Dataset]:
    """The data checked (repro.data.check: one error naming every problem, before any work), then
    the data sets at model resolution, a summary of each and a preview grid."""
    _, line = check_data(experiment, progress=progress)
    if progress:
        print(line)
    datasets = prepare_data(experiment, progress=progress)
    summaries = {name: summarize(dataset) for name, dataset in datasets.items()}
    write_json(experiment.layout.data_summary, summaries)
    for name, dataset in datasets.items():
        if progress:
            print(format_summary(summaries[name]))
        preview_grid(dataset, experiment.layout.preview(name))
    return datasets


def train_jobs(experiment: Experiment, *, only: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """The units of training work of the experiment's models (repro.models.jobs.training_jobs)."""
    return training_jobs(experiment.models, experiment.datasets, only=only, source=f"experiment {experiment.name}")


def _train_settings(experiment: Experiment) -> dict[str, TrainSettings]:
    """The training settings of each architecture the kit trains."""
    archs = {spec.arch for spec in experiment.models.values() if spec.file is None}
    return {arch: experiment.train_settings(arch) for arch in archs}


def train_context(experiment: Experiment) -> TrainContext:
    runtime = experiment.settings.runtime
    weights_dir = None if runtime.weights_dir is None else str(experiment.resolve(runtime.weights_dir))
    return TrainContext(experiment.layout, data_sources(experiment), experiment.models, _train_settings(experiment),
                        runtime.deterministic, runtime.threads, runtime.training.isolated,
                        tuple(runtime.training.process_per_dataset), weights_dir)


def check_model_files(experiment: Experiment) -> list[dict]:
    """The user's model files loaded, checked and scored before any work (repro.models.files)."""
    specs = [spec for spec in experiment.models.values() if spec.file is not None]
    if not specs:
        return []
    from repro.models.files import file_model_records   # TensorFlow: only when there are files
    return file_model_records(specs, prepare_data(experiment, progress=False), experiment.settings.data.input_size)


def stage_train(experiment: Experiment, executor, *, only: str | None = None, progress: bool = True) -> list[dict]:
    """Train the kit's models (finished ones are kept); the records of those and of the user's
    model files."""
    absent = missing(experiment)     # a weights folder without the weights: say so before any training
    if absent:
        raise FileNotFoundError("; ".join(absent))
    files = check_model_files(experiment)
    jobs = train_jobs(experiment, only=only)
    if not jobs:
        return files
    return executor.train(train_context(experiment), jobs, progress=progress) + files


def plan_maps(experiment: Experiment, dataset: Dataset, *, methods=None, states=None) -> MapPlan:
    """What the tests need of one data set (repro.evaluation.plan), from the experiment's models,
    roles and settings."""
    return evaluation_plan.plan_maps(
        dataset, layout=experiment.layout, models=experiment.models, roles=experiment.roles,
        localizers=experiment.localizers(dataset.name), train=_train_settings(experiment),
        evaluation=experiment.settings.evaluation, saliency=experiment.settings.saliency,
        parameters=experiment.saliency_parameters, methods=methods, states=states,
        source=str(experiment.path), retrain=experiment.command("train"))


def map_context(experiment: Experiment) -> MapContext:
    settings = experiment.settings
    return MapContext(experiment.layout, data_sources(experiment), experiment.models, settings.saliency,
                      experiment.saliency_parameters, settings.evaluation.cascade, settings.runtime)


def stage_maps(experiment: Experiment, datasets: dict[str, Dataset], executor, *, methods=None, states=None,
               progress: bool = True) -> dict[str, MapPlan]:
    plans = {name: plan_maps(experiment, dataset, methods=methods, states=states)
             for name, dataset in datasets.items()}
    executor.maps(map_context(experiment), [t for plan in plans.values() for t in plan.tasks], progress=progress)
    return plans


def stage_scores(experiment: Experiment, datasets: dict[str, Dataset], plans: dict[str, MapPlan],
                 executor=None) -> pd.DataFrame:
    """Per-image scores of the four tests: results/scores.csv, images.csv, degenerate.json. The data
    sets are scored independently, side by side on the executor's processes (the same numbers)."""
    layout, settings = experiment.layout, experiment.settings
    jobs = [(experiment.datasets[name], dataset, plans[name], layout.maps_dir(name), experiment.roles,
             settings.saliency.methods, settings.evaluation) for name, dataset in datasets.items()]
    scored = (executor or InProcess()).map(score_one_dataset, jobs)
    scores = pd.concat([frame for frame, _, _ in scored], ignore_index=True)[SCORE_COLUMNS]
    write_text(layout.result("scores.csv"), scores.to_csv(index=False))
    write_text(layout.result("images.csv"), pd.concat([images for _, images, _ in scored]).to_csv(index=False))
    write_json(layout.result("degenerate.json"), {name: counts for name, (_, _, counts) in zip(datasets, scored)})
    return scores


def main_choice(experiment: Experiment, dataset: str) -> ModelChoice:
    """The paper's choice of models for one data set's cells (repro.statistics.cells.main_choice)."""
    return statistics_choice(experiment.roles, experiment.localizers(dataset))


def _choices(experiment: Experiment, datasets=None) -> dict[str, ModelChoice]:
    """main_choice of each data set (of the experiment's, or of `datasets`)."""
    return {name: main_choice(experiment, name) for name in (datasets if datasets is not None else experiment.datasets)}


def stage_statistics(experiment: Experiment, scores: pd.DataFrame, executor=None, *,
                     progress: bool = True) -> pd.DataFrame:
    """Every cell of Tables 2-4 with its verdict's stability: results/cells.csv, reused while its
    scores, settings and code are unchanged (repro.statistics.run)."""
    settings = experiment.settings
    return run_statistics(scores, experiment.datasets, _choices(experiment), methods=settings.saliency.methods,
                          evaluation=settings.evaluation, results_fingerprint=experiment.results_fingerprint,
                          layout=experiment.layout, run_in_parallel=(executor or InProcess()).map, progress=progress)


def export_statistics(experiment: Experiment, directory: Path) -> Path:
    """The run's families, comparisons and an R script that refits them (repro.statistics.export)."""
    evaluation = experiment.settings.evaluation
    post_hoc = PostHoc(evaluation.constant_comparison, families=[])
    scores, choices = read_scores(experiment), _choices(experiment)
    for name, spec in experiment.datasets.items():
        dataset_cells(scores, spec, choices[name], methods=experiment.settings.saliency.methods,
                      form=evaluation.randomization_cells, post_hoc=post_hoc)
    return export_for_r(post_hoc.families, evaluation.constant_comparison, directory)


def stage_sanity(experiment: Experiment, datasets: dict[str, Dataset], plans: dict[str, MapPlan], executor=None, *,
                 progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The sanity checks of evaluation.sanity (none: None): per-image scores (results/sanity_scores.csv,
    repro.evaluation.sanity_run) and their cells with bootstrap stability (repro.statistics.sanity)."""
    settings = experiment.settings
    if settings.evaluation.sanity is None:
        return None
    # The units of model calls run where the maps run: in this process for an in-process run (two
    # worker processes would each hold TensorFlow and the models: 6.5 GB at the demo's peak, against
    # about half in one process with the run's threads), on the workers of a cluster.
    units = InProcess() if executor is None or isinstance(executor, InProcess) else executor
    scores = run_sanity_scores(experiment.datasets, datasets, plans, context=map_context(experiment),
                               roles=experiment.roles, evaluation=settings.evaluation, run_units=units.map,
                               progress=progress)
    WORKER.release("maps")
    write_text(experiment.layout.result("sanity_scores.csv"), scores.to_csv(index=False))
    cells = run_sanity_cells(scores, experiment.datasets, _choices(experiment), methods=settings.saliency.methods,
                             evaluation=settings.evaluation)
    return scores, cells


def stage_sanity_report(experiment: Experiment, scores: pd.DataFrame, cells: pd.DataFrame,
                        main_cells: pd.DataFrame) -> str:
    """The sanity checks' tables (results/table_sanity.md, sanity_cells.csv) and figures
    (figure_sanity_<check>.png|pdf); returns report.md's section."""
    out = experiment.layout.results_dir
    write_sanity_tables(cells, out, datasets=experiment.datasets)
    sanity_figures(scores, cells, out, datasets=experiment.datasets, methods=experiment.settings.saliency.methods,
                   choices=_choices(experiment))
    return sanity_section(cells, main_cells, datasets=experiment.datasets)


def stage_tables(experiment: Experiment, cells: pd.DataFrame, tables=(2, 3, 4)) -> list[Path]:
    paths = []
    for table in tables:
        paths += write_table(cells, table, experiment.layout.results_dir, datasets=experiment.datasets,
                             replicates=experiment.roles.replicates)
    return paths


def stage_figures(experiment: Experiment, scores: pd.DataFrame, cells: pd.DataFrame, datasets: dict[str, Dataset],
                  plans: dict[str, MapPlan] | None = None, figures=(2, 3, 4)) -> list[Path]:
    if plans is None:
        plans = {name: plan_maps(experiment, dataset) for name, dataset in datasets.items()}
    examples = {name: examples_for(experiment, scores, dataset, plans[name]) for name, dataset in datasets.items()}
    paths = []
    for number in figures:
        figure = FIGURES[number](scores, cells, examples, datasets=experiment.datasets,
                                 choices=_choices(experiment, datasets),
                                 methods=experiment.settings.saliency.methods,
                                 form=experiment.settings.evaluation.randomization_cells)
        paths += save_figure(figure, experiment.layout.results_dir, f"figure{number}")
    return paths


def stage_report(experiment: Experiment, scores: pd.DataFrame, cells: pd.DataFrame, datasets: dict[str, Dataset],
                 plans: dict[str, MapPlan], grade: dict | None, *, sanity_cells: pd.DataFrame | None = None,
                 progress: bool = False) -> Path:
    """results/report/: the run's HTML report, every page but provenance.html (written once the
    provenance record is), with sanity.html when `sanity_cells` (the sanity stage's) are given;
    returns its index.html."""
    models = experiment.layout.result("models.json")
    return write_html_report(experiment, cells=cells, scores=scores, datasets=datasets, plans=plans,
                             choices=_choices(experiment, datasets), grade=grade,
                             models=read_json_object(models) if models.is_file() else {}, sanity=sanity_cells,
                             progress=progress)


def stage_provenance_page(experiment: Experiment, provenance: dict, compare=()) -> Path:
    """The report's provenance.html, with the comparisons recorded in the publish folder for these
    very results and those with the run directories (or published folders) in `compare`."""
    comparisons = comparisons_of(provenance, [experiment.publish_dir])
    comparisons += [{"source": str(other), **compare_runs(experiment.layout.root, Path(other))} for other in compare]
    return write_provenance_page(experiment.layout.report_dir, provenance, comparisons)


def rewrite_report(experiment: Experiment, *, compare=(), progress: bool = True) -> Path:
    """`repro report`: the HTML report again, from the run's results (checked: made with these
    settings) and maps. report.md and the other results stay as the run wrote them: provenance.json
    holds their digests, and the report's folder is not among them."""
    with RunLock(experiment.layout.lock_file):     # not while a run replaces the same folder
        cells, scores = read_cells(experiment), read_scores(experiment)
        sanity_cells = read_sanity_cells(experiment) if experiment.settings.evaluation.sanity is not None else None
        report = read_report(experiment)
        datasets = prepare_data(experiment, progress=False)
        plans = {name: plan_maps(experiment, dataset) for name, dataset in datasets.items()}
        index = stage_report(experiment, scores, cells, datasets, plans, report.grade, sanity_cells=sanity_cells,
                             progress=progress)
        stage_provenance_page(experiment, report.provenance, compare)
    return index


def stage_grade(experiment: Experiment, cells: pd.DataFrame, sanity_cells: pd.DataFrame | None = None) -> dict | None:
    """The fidelity grade, for the paper's own experiments (Kaggle data or the phantoms); with the
    sanity checks' cells, their papers' published directions as rows beyond the paper's."""
    if experiment.settings.data.source == "folder" or not set(experiment.datasets) <= {"siim", "rsna"}:
        return None
    beyond = None if sanity_cells is None else published_directions(sanity_cells, datasets=experiment.datasets)
    return write_grade(cells, experiment.layout.results_dir,
                       randomization_form=experiment.settings.evaluation.randomization_cells, beyond=beyond)


# --- the whole run --------------------------------------------------------------------------------

def run_all(experiment: Experiment, *, progress: bool = True, cluster: str | None = None) -> RunReport:
    """Every stage, in order, under the run directory's lock; each reuses what an earlier run finished."""
    cluster = cluster if cluster is not None else experiment.settings.runtime.cluster
    layout = experiment.layout
    with RunLock(layout.lock_file):
        clock = StageClock(on_stage_end=_stage_done if progress else None)
        try:
            return _run_stages(experiment, clock, cluster, progress)
        finally:
            clock.stop()


def _stage_done(name: str, stage: dict) -> None:
    """The line after each stage: its own wall time and peak memory (all processes)."""
    print(f"[{name}] done in {stage['seconds']:.0f} s, peak memory {stage['peak_memory_gb']:.1f} GB", flush=True)


def _run_stages(experiment: Experiment, clock: StageClock, cluster: str | None, progress: bool) -> RunReport:
    layout = experiment.layout

    def say(name: str) -> None:
        if progress:
            print(f"[{name}]", flush=True)

    write_json(layout.settings_file, resolved_config(experiment))
    with clock.stage("data"):
        say(f"data: experiment {experiment.name}, run directory {layout.root}")
        stage_reuse(experiment, progress=progress)
        stage_data(experiment, progress=progress)
    with executor_for(cluster, progress=progress, workers=experiment.settings.runtime.threads or 1) as executor:
        with clock.stage("train"):
            say(f"train ({executor.description})")
            give_back_memory()   # the training processes read the cached data sets themselves
            models = model_summary(stage_train(experiment, executor, progress=progress))
            write_json(layout.result("models.json"), models)
        with clock.stage("maps"):
            say("maps")
            datasets = prepare_data(experiment, progress=False)   # from the cache: half a second
            plans = stage_maps(experiment, datasets, executor, progress=progress)
        WORKER.release("maps")   # the driver's models and graphs are not needed past this point
        with clock.stage("scores"):
            say("scores")
            scores = stage_scores(experiment, datasets, plans, executor)
        with clock.stage("statistics"):
            say("statistics and verdict stability")
            cells = stage_statistics(experiment, scores, executor, progress=progress)
        sanity = None
        if experiment.settings.evaluation.sanity is not None:
            with clock.stage("sanity"):
                say("sanity checks adopted after the paper")
                sanity = stage_sanity(experiment, datasets, plans, executor, progress=progress)
    with clock.stage("report"):
        say("tables, figures, grade, HTML report")
        stage_tables(experiment, cells)
        stage_figures(experiment, scores, cells, datasets, plans)
        grade = stage_grade(experiment, cells, sanity[1] if sanity is not None else None)
        report = RunReport(experiment, cells, grade, check_controls(cells), models=models)
        markdown = report_markdown(report)
        if sanity is not None:
            markdown += "\n" + stage_sanity_report(experiment, *sanity, cells)
        write_text(layout.result("report.md"), markdown)
        stage_report(experiment, scores, cells, datasets, plans, grade,
                     sanity_cells=sanity[1] if sanity is not None else None, progress=progress)
    report.provenance = provenance_record(experiment, clock, cluster=cluster, repository=REPOSITORY)
    write_json(layout.provenance_file, report.provenance)
    stage_provenance_page(experiment, report.provenance)
    publish(experiment)
    return report


def notebook_experiment() -> Experiment:
    """The run a walk-through notebook reads: $REPRO_EXPERIMENT (and $REPRO_RUN_DIR) when set,
    else the demo run when it has results, else the smoke run, made now if it has none (minutes,
    saying so first and showing each stage as it goes)."""
    if os.environ.get("REPRO_EXPERIMENT"):
        return load_experiment(os.environ["REPRO_EXPERIMENT"], run_dir=os.environ.get("REPRO_RUN_DIR"))
    demo = load_experiment("demo")
    if demo.layout.result("cells.csv").is_file():
        return demo
    smoke = load_experiment("smoke")
    if not smoke.layout.result("cells.csv").is_file():
        print(f"No finished run to read: running the smoke experiment into {smoke.layout.root} now (about "
              "4 minutes on two cores; the demo's results are read instead once `make demo` has run).", flush=True)
        run_all(smoke, progress=True)
    return smoke
