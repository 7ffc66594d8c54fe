"""Training one model resumably, tied to what it was trained from: `train_model`.

For each data set and model, under the run's models/<dataset>/ (repro.layout.RunLayout):
  <model>.keras      the trained model (best validation epoch, BatchNorm statistics recalibrated)
  <model>.weights.npz  its weights alone, in get_weights() order (fast to read into a model held)
  <model>.json       its record: metrics, loss curve, epochs, seconds, peak memory, settings,
                     versions, the model's fingerprint and the SHA-256 of both files; written last,
                     atomically, so it marks a finished model
  <model>.partial/   while training: state.json plus the last and the best epoch checkpoints
                     (.weights.h5: weights and optimizer state). A killed run resumes after the
                     last completed epoch.

A finished model is reused only when its fingerprint (the architecture's settings, the training
settings, the seed, the input size and the data set's own fingerprint) equals the one asked for
and its file still matches its checksum: an edited experiment or rebuilt data trains it again,
and a damaged file (truncated, overwritten) is rebuilt, each with a one-line notice. A checkpoint
that cannot be read is discarded the same way, and training starts over.

One epoch = a Keras fit pass over the training split, freshly shuffled and augmented (flips, small
shifts); then the BatchNorm statistics are recalibrated on unaugmented training images and the model
is scored on the validation split. The best epoch by the task's monitor is kept; training stops after
`patience` epochs without improvement (from scratch at lr 1e-3 the curve has transient dips), or
once the monitor reaches its maximum, 1.

Determinism: Keras' global seed is set to the model's seed before it is built, the initializers'
own seeds come from a generator of ours (own_initializer_seeds), and shuffling and augmentation
draw from numpy generators seeded by (seed, epoch), so a run and a resumed run see the same
batches, in any process. With op determinism on (runtime.deterministic, repro.runtime) two runs on the same
machine give the same weights to the last bit.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import random
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repro.runtime import import_tensorflow

import_tensorflow()   # quietly: TensorFlow's start-up lines (absl, oneDNN, cudart, cuInit) kept off stderr

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from repro.data.dataset import Dataset  # noqa: E402
from repro.experiments import ModelSpec, TrainSettings  # noqa: E402
from repro.io import read_json_object, sha256_file, write_json, write_npz  # noqa: E402
from repro.layout import RunLayout  # noqa: E402
from repro.models.augment import augment  # noqa: E402
from repro.models.batchnorm import recalibrate_batchnorm  # noqa: E402
from repro.models.files import load_file_model  # noqa: E402
from repro.models.records import finished_record, model_fingerprint, notice  # noqa: E402
from repro.models.tasks import TASKS, Task  # noqa: E402
from repro.runtime import give_back_memory  # noqa: E402
from repro.worker import WORKER  # noqa: E402

log = logging.getLogger(__name__)

def load_trained_model(layout: RunLayout, dataset: str, spec: ModelSpec, *, size: int | None = None) -> keras.Model:
    """A finished model of the run, for inference (not compiled); a user's model from its file
    (at `size` pixels when its input size is free)."""
    if spec.file is not None:
        return load_file_model(spec, size)
    path = layout.model_file(dataset, spec.name)
    if not layout.model_record(dataset, spec.name).is_file():
        raise FileNotFoundError(f"{path}: not trained yet (run: repro train)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:   # Keras raises many kinds for a truncated or foreign file
        raise ValueError(f"{path}: cannot be read as a Keras model ({' '.join(str(err).split())[:160]}); "
                         "run `repro train` again to rebuild it") from None


def load_trained_weights(layout: RunLayout, dataset: str, spec: ModelSpec) -> list[np.ndarray]:
    """A finished model's weights, in get_weights() order (for a model of the same architecture)."""
    path = layout.model_weights(dataset, spec.name)
    try:
        with np.load(path, allow_pickle=False) as stored:
            return [stored[f"w{i}"] for i in range(len(stored.files))]
    except Exception as err:   # numpy and zipfile raise many kinds for a damaged file
        raise ValueError(f"{path}: cannot be read as trained weights ({' '.join(str(err).split())[:160]}); "
                         "run `repro train` again to rebuild it") from None


def train_model(task: Task, dataset: Dataset, layout: RunLayout, name: str, *, progress: bool = True) -> dict:
    """Train one model (resuming a killed run, reusing a finished one) and return its record. A
    model left below `train.restart.below` is trained again from a new seed (restart_seed), at most
    `train.restart.attempts` times; the record lists the attempts given up."""
    wanted = model_fingerprint(task.spec, task.settings, dataset)
    record = finished_record(layout, dataset.name, name, wanted)
    if record is not None:
        return record
    final, record_path = layout.model_file(dataset.name, name), layout.model_record(dataset.name, name)
    record_path.unlink(missing_ok=True)
    work = layout.training_dir(dataset.name, name)
    label = f"{dataset.name}/{name}"
    state = _read_state(work, wanted, label)
    _reset_peak_memory()
    while True:
        attempt = _with_seed(task, restart_seed(task.spec.seed, state["attempt"]), dataset)
        metrics, finished = _train_attempt(attempt, dataset, work, state, name, progress)
        if not _restart_wanted(task, state, metrics):
            break
        notice(f"{label}: best validation {task.monitor} {_format(metrics['val'][task.monitor])} after "
                f"{metrics['epochs']} epochs from seed {attempt.spec.seed}, below {task.settings.restart.below}: "
                f"training it again from a new seed")
        state = _next_attempt(work, state, metrics)
    _save(finished.save, final)
    weights = layout.model_weights(dataset.name, name)
    write_npz(weights, compressed=False, **{f"w{i}": w for i, w in enumerate(finished.get_weights())})
    metrics.update(fingerprint=wanted, sha256=sha256_file(final), weights_sha256=sha256_file(weights),
                   peak_memory_gb=_peak_memory_gb())
    write_json(record_path, metrics)
    shutil.rmtree(work)
    _say(progress, f"[train] {label} done after {metrics['epochs']} epochs (best {metrics['best_epoch']}): "
                   f"val {task.monitor} {_format(metrics['val'][task.monitor])}, test {task.monitor} "
                   f"{_format(metrics['test'][task.monitor])}, {metrics['seconds']:.0f} s, "
                   f"peak {metrics['peak_memory_gb']:.2f} GB")
    return metrics


def restart_seed(seed: int, attempt: int) -> int:
    """The seed of a model's attempt: its own first, then seeds drawn from (seed, attempt), which no
    small seed of another replicate can equal by accident."""
    return seed if attempt == 0 else int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def _with_seed(task: Task, seed: int, dataset: Dataset) -> Task:
    return task if seed == task.spec.seed else make_task(dataclasses.replace(task.spec, seed=seed), task.settings, dataset)


def _train_attempt(task: Task, dataset: Dataset, work: Path, state: dict, name: str,
                   progress: bool) -> tuple[dict, keras.Model]:
    """Train from `state` (a fresh one, or the epochs a killed run finished) and score the best
    epoch: the record's metrics, and the uncompiled model holding the best weights."""
    label = f"{dataset.name}/{name}"
    model, finished = _models_for(task)
    # The best checkpoint is read back too (the last one's weights are loaded after it): a damaged
    # one starts the training over now, not after its remaining epochs.
    if state["epoch"] and not all(_resume(model, work / state[key], label) for key in ("best", "last")):
        _restart_attempt(work, state)
        model, finished = _models_for(task)   # a checkpoint read halfway left some of its weights
    _say(progress, f"[train] {label}: {task.spec.arch}, {len(dataset.indices('train'))} training images, "
                   + (f"resuming after epoch {state['epoch']}" if state["epoch"] else "from the start")
                   + (f", attempt {state['attempt'] + 1} (seed {task.spec.seed})" if state["attempt"] else ""))
    epoch_end = _EpochEnd(task, dataset, state, work)
    while not _should_stop(task, state):
        # One `fit` per epoch on that epoch's arrays (the traced step is kept): a tf.data pipeline fed
        # by a Python generator would leave this process paging memory in on every step, about twice
        # as slow (benchmarks/RESULTS.md); `_EpochEnd` ends each call after its epoch.
        batches = tf.data.Dataset.from_tensor_slices(_epoch_arrays(task, dataset, state["epoch"]))
        model.fit(batches.batch(task.settings.batch_size).prefetch(1), initial_epoch=state["epoch"],
                  epochs=task.settings.epochs, callbacks=[epoch_end], verbose=keras_verbosity(progress),
                  shuffle=False)  # the batches come shuffled; Keras ignores (and warns about) shuffle here
    metrics = _finish(task, model, dataset, state, work, name)
    finished.set_weights(model.get_weights())
    return metrics, finished


def keras_verbosity(progress: bool) -> int:
    """Keras' `verbose` for fit: its live progress bar on a terminal; one plain line per epoch
    when the output goes to a file or a pipe (the bar's carriage returns and colour codes would
    fill a log); nothing without progress."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _restart_wanted(task: Task, state: dict, metrics: dict) -> bool:
    rule, score = task.settings.restart, metrics["val"][task.monitor]   # None: undefined (one class)
    return rule.below is not None and state["attempt"] < rule.attempts and not (score is not None and score >= rule.below)


def _next_attempt(work: Path, state: dict, metrics: dict) -> dict:
    """A fresh state for the next seed, carrying the attempts given up (written at once, so that a
    killed run resumes with the right seed)."""
    given_up = {key: metrics[key] for key in ("seed", "epochs", "best_epoch", "val")}
    _empty(work)
    state = _fresh_state(state["fingerprint"], attempt=state["attempt"] + 1, previous=[*state["previous"], given_up],
                         spent={key: metrics[key] for key in ("seconds", "cpu_seconds")})
    write_json(work / "state.json", _json_safe(state))
    return state


def _restart_attempt(work: Path, state: dict) -> None:
    """The same attempt from its first epoch (its checkpoint was damaged), in place."""
    kept = {key: state[key] for key in ("fingerprint", "attempt", "previous", "spent")}
    _empty(work)
    state.clear()
    state.update(_fresh_state(**kept))


def make_task(spec: ModelSpec, settings: TrainSettings, dataset: Dataset) -> Task:
    return TASKS[spec.arch](spec, settings, dataset)


class _EpochEnd(keras.callbacks.Callback):
    """After each epoch: recalibrate, validate, checkpoint (state file last), and end the `fit` call
    (each call trains one epoch)."""

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
        self.model.stop_training = True


def _should_stop(task: Task, state: dict) -> bool:
    """Out of epochs or patience, or at a perfect score: every monitor is at most 1, and only a
    strictly better epoch replaces the best, so no later epoch could change the saved model."""
    return (state["epoch"] >= task.settings.epochs
            or state["epoch"] - state["best_epoch"] >= task.settings.patience
            or state["best_score"] >= 1.0)


def _improves(score: float, best: float) -> bool:
    """Higher is better; an undefined score (NaN) never improves, anything beats an undefined best."""
    return not np.isnan(score) and (np.isnan(best) or score > best)


def _finish(task: Task, model: keras.Model, dataset: Dataset, state: dict, work: Path, name: str) -> dict:
    """Load the best epoch (saved right after its recalibration) and score it on val and test."""
    started = _clocks()
    _load_checkpoint(model, work / state["best"])
    val, test = task.evaluate(model, dataset, "val"), task.evaluate(model, dataset, "test")
    spent = {key: state["spent"][key] + sum(record[key] for record in state["history"]) + value
             for key, value in _elapsed(started).items()}   # all attempts
    return _json_safe({
        "dataset": dataset.name, "model": name, "arch": task.spec.arch, "monitor": task.monitor,
        "val": val, "test": test, "best_epoch": state["best_epoch"], "epochs": state["epoch"],
        "stopped_early": state["epoch"] < task.settings.epochs, "seed": task.spec.seed,
        "restarts": state["previous"], **spent,
        "history": state["history"],
        "settings": {"model": {"arch": task.spec.arch, "seed": task.spec.seed, **task.spec.settings_json},
                     "train": task.settings.model_dump(mode="json"), "input_size": dataset.size,
                     "images": {split: len(dataset.indices(split)) for split in ("train", "val", "test")}},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "keras_hub": keras_hub.__version__, "python": sys.version.split()[0]},
    })


def _epoch_arrays(task: Task, dataset: Dataset, epoch: int):
    """Epoch `epoch`'s training split, shuffled and augmented afresh, the same for a given seed: its
    order and augmentation come from a generator seeded by (seed, epoch), drawn batch by batch."""
    train, batch_size = dataset.indices("train"), task.settings.batch_size
    rng = np.random.default_rng([task.spec.seed, epoch])
    order = rng.permutation(train)
    images, targets = [], []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch_images, batch_masks = augment(dataset.model_inputs(rows), dataset.masks[rows], rng,
                                            flip=task.settings.augment.flip, shift=task.settings.augment.shift)
        images.append(batch_images)
        targets.append(task.targets(dataset.labels[rows], batch_masks))
    return np.concatenate(images), keras.tree.map_structure(lambda *parts: np.concatenate(parts), *targets)


def _recalibrate(task: Task, model: keras.Model, dataset: Dataset, epoch: int) -> None:
    """BatchNorm statistics from unaugmented training images, a fresh sample each epoch."""
    settings = task.settings.recalibration
    if not settings.batches:
        return
    rng = np.random.default_rng([task.spec.seed, epoch, 1])
    rows = rng.permutation(dataset.indices("train"))[:settings.batches * settings.batch_size]
    recalibrate_batchnorm(model, task.network_inputs(model, dataset.model_inputs(rows)),
                          batches=settings.batches, batch_size=settings.batch_size)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _elapsed(started: tuple[float, float]) -> dict[str, float]:
    """Wall-clock and CPU seconds (all threads) since `started`: on a shared machine the wall clock
    also counts the other jobs, the CPU seconds only this one's work."""
    now = _clocks()
    return {"seconds": now[0] - started[0], "cpu_seconds": now[1] - started[1]}


def _reset_peak_memory() -> None:
    """Start this process's peak resident memory afresh (Linux: /proc/self/clear_refs), so that a
    record's peak is its own model's, not an earlier one's in the same process."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_gb() -> float:
    """This process's peak resident memory since _reset_peak_memory (elsewhere than Linux: since it
    started). In the record, not in models.json: it varies from run to run."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / 1e9, 2)
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux, bytes on macOS
    return round(peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9, 2)


def _read_state(work: Path, wanted: str, label: str) -> dict:
    """The state a killed run left (completed epochs, checkpoints, history), or a fresh one.

    A state made for other settings, or one that is damaged, is discarded (said once)."""
    path = work / "state.json"
    if path.is_file():
        try:
            state = _checked_state(read_json_object(path), work)
            if state["fingerprint"] == wanted:
                return state
            reason = "it was made with other settings or data"
        except ValueError as err:
            reason = f"its state is damaged ({' '.join(str(err).split())})"
        notice(f"{label}: discarding the interrupted training in {work}: {reason}")
    _empty(work)   # killed before its first epoch finished, stale, or damaged
    return _fresh_state(wanted)


# What state.json holds, and the types each field must have (_fresh_state and _EpochEnd write it).
_STATE_TYPES = {"epoch": int, "last": (str, type(None)), "best": (str, type(None)), "best_epoch": int,
                "best_score": (int, float, type(None)), "history": list, "fingerprint": str, "attempt": int,
                "previous": list, "spent": dict}


def _checked_state(state: dict, work: Path) -> dict:
    """A state read back from `work`, its fields of the types written and its checkpoints present
    (file names inside `work`); ValueError saying what is wrong otherwise."""
    for key, kind in _STATE_TYPES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{key} is {state.get(key)!r}")
    times = [state["spent"], *state["history"]]   # each with its seconds and CPU seconds
    if not all(isinstance(t, dict) and all(isinstance(t.get(k), (int, float)) for k in ("seconds", "cpu_seconds"))
               for t in times) or len(state["history"]) != state["epoch"]:
        raise ValueError(f"its history of {state['epoch']} epochs is not one timed entry per epoch")
    for key in ("last", "best"):
        name = state[key]
        if (name is None) != (state["epoch"] == 0):
            raise ValueError(f"{key} is {name!r} after {state['epoch']} epochs")
        if name is not None and (Path(name).name != name or not (work / name).is_file()):
            raise ValueError(f"its {key} checkpoint {name!r} is not in {work}")
    if state["best_score"] is None:
        state["best_score"] = float("nan")
    return state


def _empty(work: Path) -> None:
    """The training folder, emptied of any earlier checkpoints."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)


def _fresh_state(fingerprint: str, *, attempt: int = 0, previous: list | None = None, spent: dict | None = None) -> dict:
    """Nothing trained yet (of this attempt: `previous` are the attempts given up, `spent` their time)."""
    return {"epoch": 0, "last": None, "best": None, "best_epoch": 0, "best_score": float("nan"), "history": [],
            "fingerprint": fingerprint, "attempt": attempt, "previous": previous or [],
            "spent": spent or {"seconds": 0.0, "cpu_seconds": 0.0}}


def _resume(model: keras.Model, checkpoint: Path, label: str) -> bool:
    """Load a checkpoint's weights and optimizer state; False (said once) when it is damaged."""
    try:
        _load_checkpoint(model, checkpoint)
        return True
    except Exception as err:   # h5py / Keras raise many kinds for a truncated file
        notice(f"{label}: the checkpoint {checkpoint} cannot be read ({' '.join(str(err).split())[:100]}): "
                "training starts over")
        return False


@contextlib.contextmanager
def own_initializer_seeds(seed: int):
    """Keras gives every initializer built without a seed one drawn from Python's global `random`
    (keras.src.random.seed_generator.make_default_seed), which every thread of the process shares.
    A Dask worker's event loop draws from it too, so the same seed built other weights there (and
    other weights on every run). Inside the block those draws come from a generator of our own."""
    from keras.src.random import seed_generator
    shared = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


@dataclass
class HeldModels:
    """The models of the last architecture this process trained (see _models_for), held in
    repro.worker.WORKER.training until the next architecture or an explicit release."""
    key: tuple
    model: keras.Model      # compiled: the one trained
    finished: keras.Model   # uncompiled: what is saved

    def release(self) -> None:
        """Called by WORKER.release("training") (the maps stage wants the memory): a clean Keras session."""
        keras.backend.clear_session()


def _models_for(task: Task) -> tuple[keras.Model, keras.Model]:
    """The compiled model to train, initialised from the task's seed, and an uncompiled one of the
    same architecture to save the result in (a .keras file of the compiled model would also hold
    Adam's state, twice the weights, which only resuming needs).

    Replicates of one architecture and settings trained one after another in a process share one
    compiled model: its training step is traced once (about 40 s for InceptionV3 on a laptop) and
    each replicate gets its own initial weights (from a model built under its seed) and a new
    optimizer state; the numbers are those of a model built afresh. Anything else starts a clean
    Keras session."""
    key = (task.spec.arch, json.dumps(task.spec.settings_json, sort_keys=True), task.size,
           task.settings.model_dump_json())
    if WORKER.training is not None and WORKER.training.key == key:
        held = WORKER.training
        _seed_all_but_tensorflow(task.spec.seed)
        with own_initializer_seeds(task.spec.seed):
            initial = task.model()
        held.model.set_weights(initial.get_weights())
        _reset_optimizer(held.model, task)
        del initial
        give_back_memory()
        return held.model, held.finished
    WORKER.training = None          # the last architecture's models go before this one's are built
    keras.backend.clear_session()   # Keras' global state grows with every model built
    keras.utils.set_random_seed(task.spec.seed)
    with own_initializer_seeds(task.spec.seed):
        model = task.build()
        finished = task.model()      # its initial weights are overwritten before it is saved
    WORKER.training = HeldModels(key, model, finished)
    return model, finished


def _seed_all_but_tensorflow(seed: int) -> None:
    """keras.utils.set_random_seed without its tf.random.set_seed, which clears the kernels of every
    compiled function in the process (rebuilding InceptionV3's training step, recalibration and
    prediction then costs about 15 s of the next epoch). The functions traced already draw nothing
    from TensorFlow's global seed, and a model is built from Keras' seeds, so a held model's next
    replicate is the same to the last bit (tests/test_models_training.py)."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def _reset_optimizer(model: keras.Model, task: Task) -> None:
    """The optimizer's state (step count, moments) as a new optimizer's, in place, so that the traced
    training step stays valid."""
    fresh = task.optimizer()
    fresh.build(model.trainable_variables)
    state: dict = {}
    fresh.save_own_variables(state)
    model.optimizer.load_own_variables(state)


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
    model.load_weights(path)


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
