"""The stages of `repro all`, each reusing what an earlier (possibly killed) run finished.

data (phantoms made if needed, arrays cached) -> train (finished models kept, stale ones retrained)
-> maps (stored one by one, checked on read) -> scores -> statistics (cells, verdict stability)
-> tables, figures, grade -> provenance, publish. Scores and everything after them are recomputed
from the stored maps every time (cheap, and identical for identical maps), except the statistics,
reused while their scores and settings are unchanged (minutes of resampling). Each stage takes the
experiment's typed settings and the run layout; none reads the experiment file itself.
Stages that need TensorFlow import it inside the function, so that light commands start fast.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repro.data.dataset import Dataset
from repro.data.prepare import data_sources, prepare_data
from repro.evaluation.plan import LOCALIZER, MapTask, map_tasks, needed_maps
from repro.evaluation.scoring import SCORE_COLUMNS, TruthFor, score_dataset
from repro.evaluation.selection import ImageSelection, indices_of, select_images
from repro.execution import InProcess, executor_for
from repro.experiments import (REPOSITORY, Experiment, resolved_config, resolved_parameters, results_fingerprint_of,
                               results_settings, settings_changes)
from repro.io import (RunLock, atomic_folder, fingerprint, read_json_object, sha256_file, write_bytes, write_json,
                      write_text)
from repro.protocol import CONTROLS, INCEPTION_STATES, ORIGINAL, SANITY_TESTS
from repro.provenance import StageClock, provenance_record
from repro.report.summary import RunReport, check_controls, report_markdown
from repro.runtime import give_back_memory
from repro.statistics.cells import ModelChoice, PostHoc, pair_label, result_cells
from repro.statistics.stability import verdict_stability
from repro.versions import CODE_VERSIONS

log = logging.getLogger(__name__)

@dataclass
class MapPlan:
    """One data set's image selection and the maps the tests need, with their fingerprints."""
    selection: ImageSelection
    tasks: list[MapTask]
    states: dict[str, tuple[str, ...]]
    localizers: tuple[str, ...]
    shape: tuple[int, int]      # every map's: the model input's
    tuning: tuple[str, ...] = ()   # validation images whose maps tune cheXlocalize's threshold (sanity checks)

    def fingerprint(self, model: str, state: str, method: str) -> str:
        for task in self.tasks:
            if task.key == (model, state, method):
                return task.fingerprint
        raise KeyError(f"no maps planned for {model} / {state} / {method}")


# --- stages ---------------------------------------------------------------------------------------

def stage_data(experiment: Experiment, *, progress: bool = True) -> dict[str, Dataset]:
    """The data checked (repro.data.check: one error naming every problem, before any work), then
    the data sets at model resolution, a summary of each and a preview grid."""
    from repro.data.check import check_data
    from repro.data.preview import preview_grid
    from repro.data.summary import format_summary, summarize
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
    """(data set, models of one architecture) for every model the kit trains, in file order: the
    units of training work (a process trains the replicates of a group one after another)."""
    models = experiment.models
    if only is not None and only not in models:
        raise ValueError(f"unknown model {only!r}; experiment {experiment.name} has {', '.join(models)}")
    groups: dict[tuple[str, str], list[str]] = {}
    for dataset, spec in experiment.datasets.items():
        for name, model in models.items():
            if model.file is None and model.applies_to(spec) and (only is None or name == only):
                groups.setdefault((dataset, model.arch), []).append(name)
    return [(dataset, tuple(names)) for (dataset, _), names in groups.items()]


def train_context(experiment: Experiment):
    from repro.models.records import TrainContext
    archs = {spec.arch for spec in experiment.models.values() if spec.file is None}
    runtime = experiment.settings.runtime
    weights_dir = None if runtime.weights_dir is None else str(experiment.resolve(runtime.weights_dir))
    return TrainContext(experiment.layout, data_sources(experiment), experiment.models,
                        {arch: experiment.train_settings(arch) for arch in archs},
                        runtime.deterministic, runtime.threads, runtime.training.isolated,
                        tuple(runtime.training.process_per_dataset), weights_dir)


def check_model_files(experiment: Experiment) -> list[dict]:
    """Load each of the user's model files once before any work: a wrong input size, an output
    that is not (N, classes), or probabilities without a softmax / sigmoid to trace back to their
    logits is an error naming the file, not a failure hours into the maps. Each model is scored on
    every data set's validation and test images: its records for models.json, as the kit's own
    trained models have (a classifier near chance is then named in the report)."""
    specs = [spec for spec in experiment.models.values() if spec.file is not None]
    if not specs:
        return []
    from repro.models.files import file_model_scores, load_file_model   # TensorFlow: only when there are files
    datasets = prepare_data(experiment, progress=False)   # from the cache
    records = []
    for spec in specs:
        model = load_file_model(spec, experiment.settings.data.input_size)
        for name, dataset in datasets.items():
            records.append({"dataset": name, "model": spec.name, "arch": spec.arch, "monitor": "auc",
                            **file_model_scores(model, dataset), "epochs": None, "best_epoch": None, "seed": None,
                            "restarts": []})
    return records


# What runtime.reuse_from links of another run directory: the phantoms (their files' times are part of
# the data's fingerprint, so phantoms made again would make every model stale), the decoded arrays,
# the trained models and the maps (repro.layout).
REUSED_FOLDERS = ("data", "cache", "models", "maps")


def link_reused_run(experiment: Experiment, *, progress: bool = True) -> int:
    """runtime.reuse_from: hard links (copies across file systems) to the data, trained models and
    maps of another run directory, for every file this run does not have. Nothing is trusted for
    being there: a model or map is used only where its fingerprint is the one this run wants (as
    this run's own files are checked), else trained or computed again. The kit replaces every file
    it writes (io.atomic_path), so a linked file is never written through. Returns the files linked."""
    import os
    source = experiment.settings.runtime.reuse_from
    if source is None:
        return 0
    root = experiment.resolve(source)
    if root.resolve() == experiment.layout.root.resolve():
        return 0
    if not root.is_dir():
        if progress:
            print(f"reuse_from: {root} does not exist; this run makes its own data, models and maps", flush=True)
        return 0
    linked = 0
    for folder in REUSED_FOLDERS:
        theirs, mine = root / folder, experiment.layout.root / folder
        for path in sorted(theirs.rglob("*")) if theirs.is_dir() else []:
            relative = path.relative_to(theirs)
            if not path.is_file() or path.is_symlink() or any(part.endswith(".partial") or part.startswith(".")
                                                              for part in relative.parts):
                continue
            target = mine / relative
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:     # another file system: a copy, written whole (its new time makes the data new)
                write_bytes(target, path.read_bytes())
            linked += 1
    if progress:
        print(f"reuse_from: {linked} files of data, models and maps linked from {root}", flush=True)
    return linked


def stage_train(experiment: Experiment, executor, *, only: str | None = None, progress: bool = True) -> list[dict]:
    """Train the kit's models (finished ones are kept); the records of those and of the user's
    model files."""
    from repro.models.weights import missing
    absent = missing(experiment)     # a weights folder without the weights: say so before any training
    if absent:
        raise FileNotFoundError("; ".join(absent))
    files = check_model_files(experiment)
    jobs = train_jobs(experiment, only=only)
    if not jobs:
        return files
    return executor.train(train_context(experiment), jobs, progress=progress) + files


def model_summary(records: list[dict]) -> dict:
    """Each trained model's validation and test scores (results/models.json; no times, so that a
    rerun writes the same bytes)."""
    keep = ("arch", "monitor", "val", "test", "epochs", "best_epoch", "seed", "restarts")
    return {f"{r['dataset']}/{r['model']}": {k: r[k] for k in keep} for r in records}


def plan_maps(experiment: Experiment, dataset: Dataset, *, methods=None, states=None) -> MapPlan:
    """What the tests need of one data set: selection, chunks of maps, fingerprints."""
    from repro.models.records import model_fingerprint, unusable_model
    roles, models = experiment.roles, experiment.models
    if not roles.replicates:
        raise ValueError(f"{experiment.path}: no classifier to explain: the experiment needs models")
    selection = select_images(dataset, experiment.settings.evaluation)
    localizers = experiment.localizers(dataset.name)
    involved = {*roles.replicates, *localizers, *(m for p in (roles.repeatability, roles.reproducibility)
                                                  for m in (p or ()))}
    fingerprints, cascade_states = {}, {}
    for name in involved:
        spec = models[name]
        if spec.file is not None:
            fingerprints[name] = model_fingerprint(spec, None, dataset)
        else:
            wanted = model_fingerprint(spec, experiment.train_settings(spec.arch), dataset)
            unusable = unusable_model(experiment.layout, dataset.name, name, wanted)
            if unusable is not None:
                raise FileNotFoundError(f"{dataset.name}/{name} cannot be used: {unusable} "
                                        f"(run: {experiment.command('train')})")
            fingerprints[name] = wanted
    cascade = experiment.settings.evaluation.cascade
    for name in roles.replicates:
        spec = models[name]
        if spec.arch == "inception_v3":
            cascade_states[name] = INCEPTION_STATES
        else:   # a model of another architecture: its states follow its layers (TensorFlow loaded here)
            from repro.models.cascade import states_of
            from repro.models.training import load_trained_model
            cascade_states[name] = states_of(load_trained_model(experiment.layout, dataset.name, spec, size=dataset.size),
                                             groups=cascade.groups)
    needed = needed_maps(selection, roles, cascade_states, localizers)
    saliency = experiment.settings.saliency
    params = resolved_parameters(saliency)
    shape = (dataset.size, dataset.size)
    tasks = map_tasks(dataset.name, needed, localizers, fingerprints, params, saliency, cascade, shape=shape)
    tuning = _tuning_images(experiment, dataset)
    if tuning:   # chunks of their own after the tests' chunks, which stay as they are
        tuned_models = (roles.replicates[0], *localizers[:1])
        tasks += map_tasks(dataset.name, {(model, ORIGINAL): tuning for model in tuned_models}, localizers,
                           fingerprints, params, saliency, cascade, shape=shape)
    if methods is not None:
        tasks = [t for t in tasks if t.method in methods or t.method == LOCALIZER]
    if states is not None:
        known = list(dict.fromkeys(state for model_states in cascade_states.values() for state in model_states))
        unknown = [state for state in states if state not in known]
        if unknown:
            raise ValueError(f"states: unknown {unknown}; the models of {dataset.name} have the states {', '.join(known)}")
        tasks = [t for t in tasks if t.state in states]
    return MapPlan(selection, tasks, cascade_states, localizers, shape, tuning)


def _tuning_images(experiment: Experiment, dataset: Dataset) -> tuple[str, ...]:
    """The validation positives whose maps (replicate 1's and the first localizer's) tune
    cheXlocalize's threshold, when the sanity check `localization` is on; else none."""
    from repro.evaluation.selection import validation_positives
    from repro.protocol import LOCALIZATION
    sanity = experiment.settings.evaluation.sanity
    if sanity is None or LOCALIZATION not in sanity.tests:
        return ()
    return validation_positives(dataset)


def map_context(experiment: Experiment):
    from repro.evaluation.maps import MapContext
    settings = experiment.settings
    return MapContext(experiment.layout, data_sources(experiment), experiment.models, settings.saliency,
                      resolved_parameters(settings.saliency), settings.evaluation.cascade, settings.runtime)


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
    layout = experiment.layout
    jobs = [(experiment, name, dataset, plans[name]) for name, dataset in datasets.items()]
    scored = (executor or InProcess()).map(score_one_dataset, jobs)
    scores = pd.concat([frame for frame, _, _ in scored], ignore_index=True)[SCORE_COLUMNS]
    write_text(layout.result("scores.csv"), scores.to_csv(index=False))
    write_text(layout.result("images.csv"), pd.concat([images for _, images, _ in scored]).to_csv(index=False))
    write_json(layout.result("degenerate.json"), {name: counts for (_, name, _, _), (_, _, counts) in zip(jobs, scored)})
    return scores


def score_one_dataset(experiment: Experiment, name: str, dataset: Dataset, plan: MapPlan
                      ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One data set's scores, its selected images and what could not be scored."""
    from repro.saliency.store import MapStore
    store = MapStore(experiment.layout.maps_dir(name))

    def maps(model, state, method, ids):
        return store.stack(model, state, method, ids, plan.fingerprint(model, state, method), shape=plan.shape)

    frame, counts = score_dataset(experiment.datasets[name], plan.selection, _truth(dataset, plan.selection),
                                  maps, roles=experiment.roles, states=plan.states,
                                  localizers=plan.localizers, methods=experiment.settings.saliency.methods,
                                  evaluation=experiment.settings.evaluation)
    dropped = frame[frame["score"].isna()].groupby(["test", "metric", "group", "model", "state"]).size()
    degenerate = {"empty_masks": counts.empty_masks, "degenerate_maps": counts.maps,
                  "dropped_scores": {" / ".join(k): int(v) for k, v in dropped.items()}}
    return frame, plan.selection.frame(name), degenerate


def _truth(dataset: Dataset, selection: ImageSelection) -> TruthFor:
    from repro.evaluation.scores import average_mask
    rows = indices_of(dataset, selection.all)
    ids = list(selection.all)
    fit = np.concatenate([dataset.indices("train"), dataset.indices("val")])
    return TruthFor(masks=dict(zip(ids, dataset.masks[rows])), images=dict(zip(ids, dataset.pixels(rows))),
                    evidence=None if dataset.evidence is None else dict(zip(ids, dataset.evidence[rows])),
                    average_mask=average_mask(dataset.masks[fit]))


def main_choice(experiment: Experiment, dataset: str) -> ModelChoice:
    """The paper's choice of models for the cells."""
    roles, localizers = experiment.roles, experiment.localizers(dataset)
    return ModelChoice(
        utility=roles.replicates[0], replicates=roles.replicates,
        repeatability=pair_label(*roles.repeatability) if roles.repeatability else None,
        reproducibility=pair_label(*roles.reproducibility) if roles.reproducibility else None,
        localizer=localizers[0] if localizers else None,
        localizer_pair=pair_label(*localizers[:2]) if len(localizers) >= 2 else None)


def stage_statistics(experiment: Experiment, scores: pd.DataFrame, executor=None, *,
                     progress: bool = True) -> pd.DataFrame:
    """Every cell of Tables 2-4 with its verdict's stability: results/cells.csv. Reused when the
    scores, the settings and the statistics code are those that made it (results/statistics.json),
    since the stability resampling takes minutes and gives the same bits again."""
    layout = experiment.layout
    made_from, cells_path = statistics_fingerprint(experiment, scores), layout.result("cells.csv")
    if cells_path.is_file() and _statistics_made_from(layout) == (made_from, sha256_file(cells_path)):
        if progress:
            print("statistics: the scores and settings are unchanged, cells.csv reused", flush=True)
        return _read_cells_file(cells_path)
    settings = experiment.settings
    methods, form = settings.saliency.methods, settings.evaluation.randomization_cells
    stability, rule = settings.evaluation.stability, settings.evaluation.constant_comparison
    frames = []
    for name, spec in experiment.datasets.items():
        mine, cells = dataset_cells(experiment, scores, name, PostHoc(rule))
        choice = main_choice(experiment, name)
        if stability.resamples or len(choice.replicates) > 1:
            firmness = verdict_stability(mine, cells, spec, choice, methods=methods, form=form,
                                         resamples=stability.resamples, seed=stability.seed,
                                         fragile_above=stability.fragile_above, constant_rule=rule,
                                         run_in_parallel=(executor or InProcess()).map)
            cells = cells.merge(firmness, on=["table", "dataset", "method", "column"], how="left")
        frames.append(cells)
    cells = pd.concat(frames, ignore_index=True)
    if "fragile" not in cells:
        cells["fragile"] = False
    cells["fragile"] = cells["fragile"].astype("boolean").fillna(False).astype(bool)
    write_text(cells_path, cells.to_csv(index=False))
    write_json(layout.result("statistics.json"), {"made_from": made_from, "cells_sha256": sha256_file(cells_path)})
    return cells


def statistics_fingerprint(experiment: Experiment, scores: pd.DataFrame) -> str:
    """What the cells are made from: the scores (their values, not their file), the results'
    settings and code versions, and the statistics modules' own source (an edit to them that
    forgets to bump STATISTICS_VERSION still computes the cells again)."""
    from repro.statistics import cells, mixed, stability
    values = pd.util.hash_pandas_object(scores.reset_index(drop=True), index=False).to_numpy()
    source = b"".join(Path(module.__file__).read_bytes() for module in (mixed, cells, stability))
    return fingerprint({"scores": hashlib.sha256(values.tobytes()).hexdigest(),
                        "settings": experiment.results_fingerprint, "code": hashlib.sha256(source).hexdigest()})


def _statistics_made_from(layout) -> tuple[str, str] | None:
    try:
        record = read_json_object(layout.result("statistics.json"))
    except ValueError:      # absent or damaged: computed again
        return None
    return record.get("made_from"), record.get("cells_sha256")


def dataset_cells(experiment: Experiment, scores: pd.DataFrame, name: str, post_hoc: PostHoc
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One data set's scores and its cells of Tables 2-4 (no stability), with the paper's models."""
    settings = experiment.settings
    mine = scores[scores["dataset"] == name]
    controls = tuple(c for c in CONTROLS if c in set(mine["group"]))
    return mine, result_cells(mine, experiment.datasets[name], main_choice(experiment, name),
                              methods=settings.saliency.methods, controls=controls,
                              form=settings.evaluation.randomization_cells, post_hoc=post_hoc)


def export_statistics(experiment: Experiment, directory: Path) -> Path:
    """The run's families, comparisons and an R script that refits them (repro.statistics.export)."""
    from repro.statistics.export import export_for_r
    rule = experiment.settings.evaluation.constant_comparison
    post_hoc = PostHoc(rule, families=[])
    scores = read_scores(experiment)
    for name in experiment.datasets:
        dataset_cells(experiment, scores, name, post_hoc)
    return export_for_r(post_hoc.families, rule, directory)


def stage_sanity(experiment: Experiment, datasets: dict[str, Dataset], plans: dict[str, MapPlan], executor=None, *,
                 progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The sanity checks of evaluation.sanity (none: None): per-image scores (results/sanity_scores.csv)
    and their cells with bootstrap stability (results/sanity_cells.csv). Checks on stored maps are
    scored here (the validation maps of `localization` are the maps stage's); the model calls of the
    random-logit and faithfulness checks are units of work (one method or group of one test on one
    data set), each stored in the run's sanity/ folder with what it was made from, so that a killed
    run resumes and a cluster runs them side by side."""
    from repro.evaluation.sanity import sanity_scores
    from repro.statistics.sanity import sanity_cells, sanity_stability
    evaluation = experiment.settings.evaluation
    if evaluation.sanity is None:
        return None
    from repro.saliency.store import MapStore
    frames = []
    for name, dataset in datasets.items():
        plan = plans[name]
        store = MapStore(experiment.layout.maps_dir(name))

        def maps(model, state, method, ids, plan=plan, store=store):
            return store.stack(model, state, method, ids, plan.fingerprint(model, state, method), shape=plan.shape)

        tuning = None
        if plan.tuning:
            tuning_selection = ImageSelection(plan.tuning, plan.tuning, ())
            tuning = (tuning_selection, _truth(dataset, tuning_selection))
        frames.append(sanity_scores(experiment.datasets[name], plan.selection, _truth(dataset, plan.selection), maps,
                                    roles=experiment.roles, states=plan.states, localizers=plan.localizers,
                                    methods=experiment.settings.saliency.methods, evaluation=evaluation,
                                    shape=plan.shape, tuning=tuning))
    # The units of model calls run where the maps run: in this process for an in-process run (two
    # worker processes would each hold TensorFlow and the models: 6.5 GB at the demo's peak, against
    # about half in one process with the run's threads), on the workers of a cluster.
    units = InProcess() if executor is None or isinstance(executor, InProcess) else executor
    frames += _random_logit(experiment, plans, units, progress=progress)
    frames += _faithfulness(experiment, datasets, plans, units, progress=progress)
    from repro.evaluation.maps import forget_resident
    forget_resident()
    scores = pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]
    write_text(experiment.layout.result("sanity_scores.csv"), scores.to_csv(index=False))
    stability, rule = evaluation.stability, evaluation.constant_comparison
    cells = []
    for name, spec in experiment.datasets.items():
        mine = scores[scores["dataset"] == name]
        controls = tuple(g for g in (*CONTROLS, "NOISE") if g in set(mine["group"]))
        choice = main_choice(experiment, name)
        found = sanity_cells(mine, spec, choice, methods=experiment.settings.saliency.methods, controls=controls,
                             post_hoc=PostHoc(rule))
        if stability.resamples:
            firmness = sanity_stability(mine, found, spec, choice, methods=experiment.settings.saliency.methods,
                                        controls=controls, resamples=stability.resamples, seed=stability.seed,
                                        fragile_above=stability.fragile_above, constant_rule=rule)
            found = found.merge(firmness, on=["test", "dataset", "method", "column"], how="left")
        cells.append(found)
    cells = pd.concat(cells, ignore_index=True)
    if "fragile" not in cells:
        cells["fragile"] = False
    cells["fragile"] = cells["fragile"].astype("boolean").fillna(False).astype(bool)
    return scores, cells


def _faithfulness(experiment: Experiment, datasets: dict[str, Dataset], plans: dict[str, MapPlan], executor, *,
                  progress: bool) -> list[pd.DataFrame]:
    """The deletion / insertion and ROAD scores of replicate 1's trained maps: a job per (data set,
    test, group), reused from the run's sanity/ folder when made from the same maps and settings."""
    from repro.evaluation.sanity import FAITHFULNESS_TESTS, NOISE, faithfulness_images, null_maps
    from repro.evaluation.scoring import control_maps
    sanity = experiment.settings.evaluation.sanity
    tests = [test for test in FAITHFULNESS_TESTS if test in sanity.tests]
    if not tests:
        return []
    from repro.saliency.store import MapStore
    from repro.versions import MAPS_VERSION
    jobs, methods = [], experiment.settings.saliency.methods
    for name, dataset in datasets.items():
        plan, replicate = plans[name], experiment.roles.replicates[0]
        ids = faithfulness_images(plan.selection, sanity)
        store = MapStore(experiment.layout.maps_dir(name))
        truth = _truth(dataset, plan.selection)
        controls = control_maps(plan.selection, truth) if experiment.settings.evaluation.controls else {}
        model_key = plan.fingerprint(replicate, ORIGINAL, methods[0])   # covers the model's own fingerprint
        for group in [*methods, *controls, NOISE]:
            if group in methods:
                smaps = store.stack(replicate, ORIGINAL, group, ids, plan.fingerprint(replicate, ORIGINAL, group),
                                    shape=plan.shape)
            elif group in controls:
                smaps = controls[group](ids)
            else:
                smaps = null_maps(sanity.seed, plan.shape)[group](replicate, ORIGINAL, ids)
            for test in tests:
                made_from = fingerprint({"test": test, "group": group, "ids": list(ids), "model": model_key,
                                         "maps": hashlib.sha256(np.ascontiguousarray(smaps).tobytes()).hexdigest(),
                                         "steps": sanity.deletion_steps, "seed": sanity.seed, "version": MAPS_VERSION})
                jobs.append((map_context(experiment), sanity, name, test, group, replicate, ids, smaps, made_from,
                             str(experiment.layout.sanity_dir(name) / f"{test}-{group}.json")))
    return executor.map(faithfulness_job, jobs, progress="faithfulness" if progress else None)


def _random_logit(experiment: Experiment, plans: dict[str, MapPlan], executor, *, progress: bool
                  ) -> list[pd.DataFrame]:
    """The random-logit test's maps of the other class and their SSIM with the stored maps of the
    predicted class: replicate 1's trained model on the SSIM sample, a job per (data set, method),
    reused from the run's sanity/ folder when made from the same maps and settings."""
    from repro.evaluation.plan import noise_seed
    from repro.evaluation.sanity import OTHER_CLASS
    from repro.protocol import RANDOM_LOGIT
    from repro.saliency.store import MapStore
    from repro.versions import MAPS_VERSION
    settings = experiment.settings
    if RANDOM_LOGIT not in settings.evaluation.sanity.tests:
        return []
    jobs, saliency = [], settings.saliency
    params = resolved_parameters(saliency)
    for name, plan in plans.items():
        replicate, ids = experiment.roles.replicates[0], plan.selection.sample
        store = MapStore(experiment.layout.maps_dir(name))
        seed = noise_seed(saliency.seed, saliency.noise, replicate, OTHER_CLASS)
        for method in saliency.methods:
            key = plan.fingerprint(replicate, ORIGINAL, method)
            predicted = store.stack(replicate, ORIGINAL, method, ids, key, shape=plan.shape)
            made_from = fingerprint({"test": RANDOM_LOGIT, "maps": key, "ids": list(ids), "seed": seed,
                                     "params": params[method], "sanity_seed": settings.evaluation.sanity.seed,
                                     "data_range": settings.evaluation.ssim_data_range, "version": MAPS_VERSION})
            jobs.append((map_context(experiment), name, method, replicate, ids, predicted, seed,
                         settings.evaluation.sanity.seed, settings.evaluation.ssim_data_range, made_from,
                         str(experiment.layout.sanity_dir(name) / f"{RANDOM_LOGIT}-{method}.json")))
    return executor.map(random_logit_job, jobs, progress="random logit" if progress else None)


def random_logit_job(context, dataset_name: str, method: str, model_name: str, ids, predicted_maps, seed: int,
                     class_seed: int, data_range: float, made_from: str, path: str) -> pd.DataFrame:
    """One method's other-class maps (repro.saliency, as the maps stage makes them but for the
    class each image is not predicted as) and their SSIM with the predicted-class maps; read from
    `path` when it holds them for `made_from`, else computed and written there."""
    stored = _stored_unit(path, made_from)
    if stored is not None:
        return stored
    from repro.evaluation.maps import model_and_inputs
    from repro.evaluation.plan import INPUT_RANGE
    from repro.evaluation.sanity import other_classes, random_logit_scores
    from repro.saliency import saliency_maps
    model, images, segments = model_and_inputs(context, dataset_name, model_name, ids)
    others = other_classes(np.asarray(model(images, training=False)), [f"{dataset_name}/{i}" for i in ids],
                           seed=class_seed)
    other_maps = np.empty(predicted_maps.shape, np.float32)
    for target in np.unique(others):     # one call per class explained
        rows = np.flatnonzero(others == target)
        other_maps[rows] = saliency_maps(model, images[rows], method, target=int(target), seed=seed,
                                         input_range=INPUT_RANGE, batch_size=context.saliency.batch_size,
                                         backend=context.saliency.backend,
                                         segment_cache=segments,
                                         **context.params[method])
    frame = random_logit_scores(dataset_name, method, model_name, ids, predicted_maps, other_maps,
                                data_range=data_range)
    write_json(Path(path), {"made_from": made_from, "rows": frame.to_numpy().tolist()})
    return frame


def _stored_unit(path: str, made_from: str) -> pd.DataFrame | None:
    """A unit's stored score rows when `path` holds them for `made_from`; None otherwise."""
    try:
        stored = read_json_object(Path(path))
    except ValueError:      # absent or damaged: computed again
        return None
    if stored.get("made_from") != made_from:
        return None
    return pd.DataFrame(stored["rows"], columns=SCORE_COLUMNS)


def faithfulness_job(context, sanity, dataset_name: str, test: str, group: str, model_name: str, ids, smaps, made_from: str,
                     path: str) -> pd.DataFrame:
    """One group's faithfulness scores, read from `path` when it holds them for `made_from`, else
    computed with the model's trained weights (repro.models.resident) and written there."""
    from repro.evaluation.maps import model_and_inputs
    from repro.evaluation.sanity import faithfulness_scores
    stored = _stored_unit(path, made_from)
    if stored is not None:
        return stored
    model, images, _ = model_and_inputs(context, dataset_name, model_name, ids)

    def logits(batch):
        return np.asarray(model(batch, training=False))

    frame = faithfulness_scores(dataset_name, test, group, model_name, ids, images, smaps, logits,
                                sanity, batch_size=context.saliency.batch_size or 16)
    write_json(Path(path), {"made_from": made_from, "rows": frame.to_numpy().tolist()})
    return frame


def stage_sanity_report(experiment: Experiment, scores: pd.DataFrame, cells: pd.DataFrame,
                        main_cells: pd.DataFrame) -> str:
    """The sanity checks' tables (results/table_sanity.md, sanity_cells.csv) and figures
    (figure_sanity_<check>.png|pdf); returns report.md's section."""
    from repro.report.sanity import sanity_figures, sanity_section, write_sanity_tables
    out = experiment.layout.results_dir
    write_sanity_tables(cells, out, datasets=experiment.datasets)
    sanity_figures(scores, cells, out, datasets=experiment.datasets, methods=experiment.settings.saliency.methods,
                   choices={name: main_choice(experiment, name) for name in experiment.datasets})
    return sanity_section(cells, main_cells, datasets=experiment.datasets)


def stage_tables(experiment: Experiment, cells: pd.DataFrame, tables=(2, 3, 4)) -> list[Path]:
    from repro.report.tables import write_table
    paths = []
    for table in tables:
        paths += write_table(cells, table, experiment.layout.results_dir, datasets=experiment.datasets,
                             replicates=experiment.roles.replicates)
    return paths


def stage_figures(experiment: Experiment, scores: pd.DataFrame, cells: pd.DataFrame, datasets: dict[str, Dataset],
                  plans: dict[str, MapPlan] | None = None, figures=(2, 3, 4)) -> list[Path]:
    from repro.report.examples import examples_for
    from repro.report.figures import FIGURES, save_figure
    if plans is None:
        plans = {name: plan_maps(experiment, dataset) for name, dataset in datasets.items()}
    examples = {name: examples_for(experiment, scores, dataset, plans[name]) for name, dataset in datasets.items()}
    paths = []
    for number in figures:
        figure = FIGURES[number](scores, cells, examples, datasets=experiment.datasets,
                                 choices={name: main_choice(experiment, name) for name in datasets},
                                 methods=experiment.settings.saliency.methods,
                                 form=experiment.settings.evaluation.randomization_cells)
        paths += save_figure(figure, experiment.layout.results_dir, f"figure{number}")
    return paths


def stage_report(experiment: Experiment, scores: pd.DataFrame, cells: pd.DataFrame, datasets: dict[str, Dataset],
                 plans: dict[str, MapPlan], grade: dict | None, *, progress: bool = False) -> Path:
    """results/report/: the run's HTML report, every page but provenance.html (written once the
    provenance record is); returns its index.html."""
    from repro.report.html import write_html_report
    models = experiment.layout.result("models.json")
    return write_html_report(experiment, cells=cells, scores=scores, datasets=datasets, plans=plans,
                             choices={name: main_choice(experiment, name) for name in datasets}, grade=grade,
                             models=read_json_object(models) if models.is_file() else {}, progress=progress)


def stage_provenance_page(experiment: Experiment, provenance: dict, compare=()) -> Path:
    """The report's provenance.html, with the comparisons recorded in the publish folder for these
    very results and those with the run directories (or published folders) in `compare`."""
    from repro.report.compare import compare as compare_runs
    from repro.report.html import comparisons_of, write_provenance_page
    comparisons = comparisons_of(provenance, [experiment.publish_dir])
    comparisons += [{"source": str(other), **compare_runs(experiment.layout.root, Path(other))} for other in compare]
    return write_provenance_page(experiment.layout.report_dir, provenance, comparisons)


def rewrite_report(experiment: Experiment, *, compare=(), progress: bool = True) -> Path:
    """`repro report`: the HTML report again, from the run's results (checked: made with these
    settings) and maps. report.md and the other results stay as the run wrote them: provenance.json
    holds their digests, and the report's folder is not among them."""
    with RunLock(experiment.layout.lock_file):     # not while a run replaces the same folder
        cells, scores = read_cells(experiment), read_scores(experiment)
        report = read_report(experiment)
        datasets = prepare_data(experiment, progress=False)
        plans = {name: plan_maps(experiment, dataset) for name, dataset in datasets.items()}
        index = stage_report(experiment, scores, cells, datasets, plans, report.grade, progress=progress)
        stage_provenance_page(experiment, report.provenance, compare)
    return index


def stage_grade(experiment: Experiment, cells: pd.DataFrame) -> dict | None:
    """The fidelity grade, for the paper's own experiments (Kaggle data or the phantoms)."""
    from repro.report.grade import write_grade
    if experiment.settings.data.source == "folder" or not set(experiment.datasets) <= {"siim", "rsna"}:
        return None
    return write_grade(cells, experiment.layout.results_dir,
                       randomization_form=experiment.settings.evaluation.randomization_cells)


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
        link_reused_run(experiment, progress=progress)
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
        from repro.evaluation.maps import forget_resident
        forget_resident()   # the driver's models and graphs are not needed past this point
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
        grade = stage_grade(experiment, cells)
        report = RunReport(experiment, cells, grade, check_controls(cells), models=models)
        markdown = report_markdown(report)
        if sanity is not None:
            markdown += "\n" + stage_sanity_report(experiment, *sanity, cells)
        write_text(layout.result("report.md"), markdown)
        stage_report(experiment, scores, cells, datasets, plans, grade, progress=progress)
    report.provenance = provenance_record(experiment, clock, cluster=cluster, repository=REPOSITORY)
    write_json(layout.provenance_file, report.provenance)
    stage_provenance_page(experiment, report.provenance)
    publish(experiment)
    return report


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
    if report.is_dir():   # the HTML report, replacing the published one whole
        with atomic_folder(target / report.name) as folder:
            shutil.copytree(report, folder, dirs_exist_ok=True)
        copied.append(target / report.name / "index.html")
    if experiment.publish_readme is not None:
        from repro.report.readme import update_readme
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
    return _read_cells_file(current_result(experiment, "cells.csv", "tables"))


def _read_cells_file(path: Path) -> pd.DataFrame:
    cells = pd.read_csv(path, dtype={"p": str, "verdict": str, "form": str, "comparison": str, "fit": str},
                        keep_default_na=False, na_values={c: [""] for c in ("mean", "sd", "bootstrap_agreement",
                                                                           "replicate_agreement", "icc")})
    cells["fragile"] = cells["fragile"].astype(str) == "True"
    return cells


def read_report(experiment: Experiment) -> RunReport:
    """The report of the last finished run, from its files."""
    cells = read_cells(experiment)   # checked: made with these settings
    grade_path = experiment.layout.result("grade.json")
    grade = read_json_object(grade_path) if grade_path.is_file() else None
    models_path = experiment.layout.result("models.json")
    models = read_json_object(models_path) if models_path.is_file() else {}
    return RunReport(experiment, cells, grade, check_controls(cells), read_json_object(experiment.layout.provenance_file),
                     models)


def notebook_experiment() -> Experiment:
    """The run a walk-through notebook reads: $REPRO_EXPERIMENT (and $REPRO_RUN_DIR) when set,
    else the demo run when it has results, else the smoke run, made now if it has none (minutes,
    saying so first and showing each stage as it goes)."""
    import os

    from repro.experiments import load_experiment
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
