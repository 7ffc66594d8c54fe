"""The units of training work, in any process, without TensorFlow until a model trains.

`TrainContext` is everything a process needs to train an experiment's models (picklable, for
worker processes); `train_group` is one unit of training work (a Dask task), `train_groups` several
in one process (the in-process executor). TensorFlow is imported where the models train
(repro.models.training), so that the driver of a cluster run, or of isolated trainings, holds none
of its memory.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from repro.data.prepare import DataSource
from repro.experiments import ModelSpec, TrainSettings
from repro.layout import RunLayout
from repro.protocol import DatasetSpec
from repro.models.weights import use_weights_dir
from repro.runtime import configure


@dataclass(frozen=True)
class TrainContext:
    """What any process needs to train an experiment's models (picklable, for worker processes)."""
    layout: RunLayout
    data: dict[str, DataSource]          # by data set name
    models: dict[str, ModelSpec]         # by model name
    settings: dict[str, TrainSettings]   # by architecture
    deterministic: bool
    threads: int | None
    isolated: bool = False   # training in fresh processes (runtime.training.isolated)
    process_per_dataset: tuple[str, ...] = ()   # architectures with one such process per data set
    weights_dir: str | None = None   # pretrained weights read from here (runtime.weights_dir, resolved)


def training_jobs(models: dict[str, ModelSpec], datasets: dict[str, DatasetSpec], *, only: str | None = None,
                  source: str = "the experiment") -> list[tuple[str, tuple[str, ...]]]:
    """(data set, models of one architecture) for every model the kit trains, in file order: the
    units of training work (a process trains the replicates of a group one after another).
    `source` names the experiment in the error for an unknown `only`."""
    if only is not None and only not in models:
        raise ValueError(f"unknown model {only!r}; {source} has {', '.join(models)}")
    groups: dict[tuple[str, str], list[str]] = {}
    for dataset, spec in datasets.items():
        for name, model in models.items():
            if model.file is None and model.applies_to(spec) and (only is None or name == only):
                groups.setdefault((dataset, model.arch), []).append(name)
    return [(dataset, tuple(names)) for (dataset, _), names in groups.items()]


def train_group(context: TrainContext, dataset: str, names: tuple[str, ...], *, progress: bool = False) -> list[dict]:
    """Train (or reuse) some models of one data set, in order, and return their records: one unit
    of training work, in any process (a Dask task)."""
    return train_groups(context, [(dataset, names)], progress=progress)


def train_groups(context: TrainContext, jobs: list[tuple[str, tuple[str, ...]]], *,
                 progress: bool = False) -> list[dict]:
    """Train (or reuse) the models of several (data set, models) jobs, in order, in one process:
    models of one architecture trained one after another share its traced training step
    (repro.models.training), across data sets too, when their input size and settings agree.
    TensorFlow is imported where the models train, not where the job is made; with
    `context.isolated` that is a fresh process (spawned, so it starts clean) that exits
    afterwards, giving its memory back."""
    jobs = [(dataset, tuple(names)) for dataset, names in jobs]
    if context.isolated:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_train_here, context, jobs, progress).result()
    return _train_here(context, jobs, progress)


def _train_here(context: TrainContext, jobs: list[tuple[str, tuple[str, ...]]], progress: bool) -> list[dict]:
    configure(deterministic=context.deterministic, threads=context.threads)
    use_weights_dir(context.weights_dir)
    from repro.models.training import make_task, train_model   # TensorFlow: only where models train
    records = []
    for dataset, names in jobs:
        data = context.data[dataset].load(progress=False)   # one data set held at a time
        records += [train_model(make_task(context.models[name], context.settings[context.models[name].arch], data),
                                data, context.layout, name, progress=progress) for name in names]
    return records