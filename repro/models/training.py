"""Training every model of an experiment, resumably: `train_experiment` (the CLI's `repro train`).

For each data set and model, under <run_dir>/models/<dataset>/:
  <model>.keras      the trained model (best validation epoch, BatchNorm statistics recalibrated)
  <model>.json       its metrics, loss curve, epochs, seconds and settings; written last, atomically,
                     so it marks a finished model: the next run returns it without training again
  <model>.partial/   while training: state.json plus the last and the best epoch checkpoints
                     (.weights.h5: weights and optimizer state). A killed run resumes after the
                     last completed epoch.
Every file is written to a temporary name and renamed, so none is ever half-written.

One epoch = a Keras fit pass over the training split, freshly shuffled and augmented (flips, small
shifts); then the BatchNorm statistics are recalibrated on unaugmented training images and the model
is scored on the validation split. The best epoch by the task's monitor is kept; training stops after
`patience` epochs without improvement (from scratch at lr 1e-3 the curve has transient dips), or
once the monitor reaches its maximum, 1.

Determinism: Keras' global seed is set to the model's seed before it is built, and shuffling and
augmentation draw from numpy generators seeded by (seed, epoch), so a run and a resumed run see the
same batches. Two demo runs on CPU gave the same metrics to the last digit, but TensorFlow does not
promise it: multi-threaded kernels may sum in varying order (tf.config.experimental.
enable_op_determinism is not switched on: it is global and slows training), and GPU runs are not
bitwise repeatable.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from repro.data.dataset import Dataset
from repro.experiments import Experiment, ExperimentError
from repro.io import write_json
from repro.models.augment import augment
from repro.models.batchnorm import recalibrate_batchnorm
from repro.models.tasks import TASKS, Task
from repro.data.prepare import prepare_data


def train_experiment(experiment: Experiment, *, only: str | None = None, progress: bool = True
                     ) -> dict[str, dict]:
    """Train (or reuse) every model of the experiment on each data set it applies to.

    only: a model name from the experiment's `models` section, to train just that one.
    Returns {"<dataset>/<model>": metrics} (the contents of each metrics JSON).
    """
    specs = _selected_models(experiment, only)
    results = {}
    for dataset_name, dataset in prepare_data(experiment, progress=progress).items():
        for name, spec in specs.items():
            task_class = TASKS[spec["arch"]]
            if dataset_name in task_class.datasets:
                task = task_class(spec, experiment.train_settings(spec["arch"]), dataset)
                directory = experiment.run_dir / "models" / dataset_name
                results[f"{dataset_name}/{name}"] = train_model(task, dataset, directory, name, progress=progress)
    return results


def model_path(experiment: Experiment, dataset: str, name: str) -> Path:
    """Where the trained model `name` of `dataset` is saved (its metrics JSON lies beside it)."""
    return experiment.run_dir / "models" / dataset / f"{name}.keras"


def load_trained_model(experiment: Experiment, dataset: str, name: str) -> keras.Model:
    """A finished model of the experiment, for inference (not compiled)."""
    path = model_path(experiment, dataset, name)
    if not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"{path}: not trained yet (run: repro train --experiment {experiment.name})")
    return keras.models.load_model(path, compile=False)


def train_model(task: Task, dataset: Dataset, directory: Path, name: str, *, progress: bool = True) -> dict:
    """Train one model (resuming if a previous run was killed) and return its metrics."""
    final, metrics_path = directory / f"{name}.keras", directory / f"{name}.json"
    if metrics_path.is_file() and final.is_file():
        return json.loads(metrics_path.read_text())
    work = directory / f"{name}.partial"
    state = _read_state(work)
    keras.backend.clear_session()   # Keras' global state grows with every model built
    keras.utils.set_random_seed(task.spec["seed"])
    model = task.build()
    if state["epoch"]:
        _load_checkpoint(model, work / state["last"])
    label = f"{dataset.name}/{name}"
    _say(progress, f"[train] {label}: {task.spec['arch']}, {len(dataset.indices('train'))} training images, "
                   + (f"resuming after epoch {state['epoch']}" if state["epoch"] else "from the start"))
    if not _should_stop(task, state):
        model.fit(_training_batches(task, dataset, first_epoch=state["epoch"]), initial_epoch=state["epoch"],
                  epochs=task.settings["epochs"], callbacks=[_EpochEnd(task, dataset, state, work)],
                  shuffle=False, verbose=1 if progress else 0)   # the batches come shuffled
    metrics = _finish(task, model, dataset, state, work, name)
    _save(_without_optimizer(task, model).save, final)
    write_json(metrics_path, metrics)
    shutil.rmtree(work)
    _say(progress, f"[train] {label} done after {metrics['epochs']} epochs (best {metrics['best_epoch']}): "
                   f"val {task.monitor} {_format(metrics['val'][task.monitor])}, test {task.monitor} "
                   f"{_format(metrics['test'][task.monitor])}, {metrics['seconds']:.0f} s")
    return metrics


class _EpochEnd(keras.callbacks.Callback):
    """After each epoch: recalibrate, validate, checkpoint (state file last), stop when stale."""

    def __init__(self, task: Task, dataset: Dataset, state: dict, work: Path):
        super().__init__()
        self.task, self.dataset, self.state, self.work = task, dataset, state, work

    def on_epoch_begin(self, epoch, logs=None):
        self.started = _clocks()

    def on_epoch_end(self, epoch, logs=None):
        task, state, work = self.task, self.state, self.work
        _recalibrate(task, self.model, self.dataset, epoch)
        scores = task.evaluate(self.model, self.dataset, "val")
        logs.update({f"val_{key}": value for key, value in scores.items()})   # shown by the progress bar
        last = f"last-{epoch + 1:03d}.weights.h5"
        _save(self.model.save_weights, work / last)
        if state["best"] is None or _improves(scores[task.monitor], state["best_score"]):
            best = f"best-{epoch + 1:03d}.weights.h5"
            _save(functools.partial(shutil.copyfile, work / last), work / best)
            state.update(best=best, best_epoch=epoch + 1, best_score=scores[task.monitor])
        state["history"].append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
                                 **_elapsed(self.started)})
        state.update(epoch=epoch + 1, last=last)
        write_json(work / "state.json", _json_safe(state))
        for stale in set(os.listdir(work)) - {"state.json", state["last"], state["best"]}:
            (work / stale).unlink()
        self.model.stop_training = _should_stop(task, state)


def _should_stop(task: Task, state: dict) -> bool:
    """Out of epochs or patience, or at a perfect score: every monitor is at most 1, and only a
    strictly better epoch replaces the best, so no later epoch could change the saved model."""
    return (state["epoch"] >= task.settings["epochs"]
            or state["epoch"] - state["best_epoch"] >= task.settings["patience"]
            or state["best_score"] >= 1.0)


def _improves(score: float, best: float) -> bool:
    """Higher is better; an undefined score (NaN) never improves, anything beats an undefined best."""
    return not np.isnan(score) and (np.isnan(best) or score > best)


def _finish(task: Task, model: keras.Model, dataset: Dataset, state: dict, work: Path, name: str) -> dict:
    """Load the best epoch (saved right after its recalibration) and score it on val and test."""
    started = _clocks()
    _load_checkpoint(model, work / state["best"])
    val, test = task.evaluate(model, dataset, "val"), task.evaluate(model, dataset, "test")
    spent = {key: sum(record[key] for record in state["history"]) + value
             for key, value in _elapsed(started).items()}
    return _json_safe({
        "dataset": dataset.name, "model": name, "arch": task.spec["arch"], "monitor": task.monitor,
        "val": val, "test": test, "best_epoch": state["best_epoch"], "epochs": state["epoch"],
        "stopped_early": state["epoch"] < task.settings["epochs"], **spent,
        "history": state["history"],
        "settings": {"model": task.spec, "train": task.settings, "input_size": dataset.size,
                     "images": {split: len(dataset.indices(split)) for split in ("train", "val", "test")}},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "keras_hub": keras_hub.__version__, "python": sys.version.split()[0]},
    })


def _training_batches(task: Task, dataset: Dataset, *, first_epoch: int) -> tf.data.Dataset:
    """The training split, shuffled and augmented afresh every epoch, the same for a given seed.

    Keras iterates the dataset once per epoch and each iteration calls `batches` anew, which draws
    epoch k's order and augmentation from a generator seeded by (seed, k).
    """
    train, batch_size = dataset.indices("train"), task.settings["batch_size"]
    epochs = iter(range(first_epoch, task.settings["epochs"]))

    def batches():
        rng = np.random.default_rng([task.spec["seed"], next(epochs)])
        order = rng.permutation(train)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            images, masks = augment(dataset.model_inputs(rows), dataset.masks[rows], rng, **task.settings["augment"])
            yield images, task.targets(dataset.labels[rows], masks)

    signature = (tf.TensorSpec((None, dataset.size, dataset.size, 3), tf.float32), task.target_signature())
    steps = -(-len(train) // batch_size)
    return (tf.data.Dataset.from_generator(batches, output_signature=signature)
            .apply(tf.data.experimental.assert_cardinality(steps)).prefetch(1))


def _recalibrate(task: Task, model: keras.Model, dataset: Dataset, epoch: int) -> None:
    """BatchNorm statistics from unaugmented training images, a fresh sample each epoch."""
    settings = task.settings["recalibration"]
    rng = np.random.default_rng([task.spec["seed"], epoch, 1])
    rows = rng.permutation(dataset.indices("train"))[:settings["batches"] * settings["batch_size"]]
    recalibrate_batchnorm(model, task.network_inputs(model, dataset.model_inputs(rows)),
                          batches=settings["batches"], batch_size=settings["batch_size"])


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _elapsed(started: tuple[float, float]) -> dict[str, float]:
    """Wall-clock and CPU seconds (all threads) since `started`: on a shared machine the wall clock
    also counts the other jobs, the CPU seconds only this one's work."""
    now = _clocks()
    return {"seconds": now[0] - started[0], "cpu_seconds": now[1] - started[1]}


def _read_state(work: Path) -> dict:
    """The state a killed run left (completed epochs, checkpoints, history), or a fresh one."""
    path = work / "state.json"
    if path.is_file():
        state = json.loads(path.read_text())
        if state["best_score"] is None:
            state["best_score"] = float("nan")
        return state
    if work.exists():   # killed before its first epoch finished: nothing worth keeping
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return {"epoch": 0, "last": None, "best": None, "best_epoch": 0, "best_score": float("nan"), "history": []}


def _without_optimizer(task: Task, model: keras.Model) -> keras.Model:
    """An uncompiled copy: a .keras file holds the optimizer state of a compiled model (Adam: twice
    the weights), which only resuming needs, not the finished model."""
    copy = task.model()
    copy.set_weights(model.get_weights())
    return copy


def _save(save: Callable[[Path], None], path: Path) -> None:
    """Write through `save` (model.save, model.save_weights, a copy) to a temporary name beside `path`,
    then rename. The temporary name keeps the ending (.keras, .weights.h5): Keras picks the format by it."""
    tmp = path.with_name(f".{uuid.uuid4().hex}-{path.name}")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(model: keras.Model, path: Path) -> None:
    """Weights and optimizer state of a checkpoint into the freshly built model."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


def _selected_models(experiment: Experiment, only: str | None) -> dict[str, dict]:
    if "models" not in experiment.config:
        raise ExperimentError(f"{experiment.path}: no 'models' section: nothing to train")
    specs = experiment.models
    if only is None:
        return specs
    if only not in specs:
        raise ValueError(f"unknown model {only!r}; experiment {experiment.name} has {', '.join(specs)}")
    return {only: specs[only]}


def _json_safe(value):
    """NaN (an undefined AUC on a one-class split) as null: JSON has no NaN."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _format(value) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.3f}"


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)
