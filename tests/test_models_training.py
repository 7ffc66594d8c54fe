"""Training: train_model on hand-made data, reuse tied to settings and data, resume, damaged files,
determinism."""
import json
import logging
from pathlib import Path

import keras
import numpy as np
import psutil
import pytest

from repro.data.dataset import Dataset
from repro.experiments import Classifier, ModelSpec, RetinaNet, TrainSettings, UNet
from repro.layout import RunLayout
from repro.models import records, training
from repro.models.tasks import SegmentationTask
from repro.worker import WORKER

SIZE = 80
UNET = ModelSpec("unet_r1", "unet", seed=1, settings=UNet(replicates={"unet_r1": 1}, depth=2, width=4))
INCEPTION = ModelSpec("inception_r1", "inception_v3", seed=1, settings=Classifier(replicates={"inception_r1": 1}))
RETINANET = ModelSpec("retinanet_r1", "retinanet", seed=1, settings=RetinaNet(
    replicates={"retinanet_r1": 1}, levels=[3, 4], head_convs=0, max_detections=5, score_threshold=0.05,
    backbone={"input_conv_filters": [64], "input_conv_kernel_sizes": [3], "stackwise_num_filters": [64, 64, 64],
              "stackwise_num_blocks": [1, 1, 1], "stackwise_num_strides": [1, 2, 2], "block_type": "basic_block"}))
TINY = TrainSettings(epochs=1, batch_size=8, learning_rate=1e-3, patience=3, bn_momentum=0.9,
                     augment={"flip": True, "shift": 0.05}, recalibration={"batches": 1, "batch_size": 8}, eager=True)


def planted_dataset(name: str, seed: int, fingerprint: str = "data-1") -> Dataset:
    """24 noisy images; the positives carry a bright square, which is also their mask."""
    rng = np.random.default_rng(seed)
    n = 24
    labels = np.array([0, 1] * (n // 2), dtype=np.int8)
    images = rng.integers(0, 120, (n, SIZE, SIZE)).astype(np.uint16) * 257
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(5, SIZE - 25, size=2)
        masks[i, y:y + 16, x:x + 16] = True
    images[masks] = 230 * 257
    splits = np.array(["train"] * 16 + ["val"] * 4 + ["test"] * 4)
    return Dataset(name=name, size=SIZE, ids=np.array([f"{name}{i}" for i in range(n)]), labels=labels,
                   splits=splits, images=images, masks=masks, fingerprint=fingerprint)


def train(layout, spec, settings=TINY, dataset=None):
    dataset = dataset or planted_dataset("siim" if spec.arch != "retinanet" else "rsna", 0)
    return training.train_model(training.make_task(spec, settings, dataset), dataset, layout, spec.name,
                                progress=False)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only: the peak cannot be reset")
def test_a_record_s_peak_memory_starts_afresh_with_its_model():
    big = np.ones(500_000_000 // 8)   # this process's peak, 0.5 GB above what it holds after
    del big
    before = training._peak_memory_gb()
    training._reset_peak_memory()
    assert training._peak_memory_gb() < before - 0.4


def no_fit(monkeypatch):
    def fit(*args, **kwargs):
        raise AssertionError("a finished model was trained again")
    monkeypatch.setattr(keras.Model, "fit", fit)


def test_each_kind_trains_saves_and_is_reused(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path)
    records = {spec.name: train(layout, spec) for spec in (INCEPTION, UNET, RETINANET)}
    for spec in (INCEPTION, UNET, RETINANET):
        dataset = "rsna" if spec.arch == "retinanet" else "siim"
        record = records[spec.name]
        assert json.loads(layout.model_record(dataset, spec.name).read_text()) == record
        assert record["epochs"] == 1 and record["seconds"] > 0 and len(record["fingerprint"]) == 64
        assert 0.05 < record["peak_memory_gb"] < psutil.virtual_memory().total / 1e9
        assert set(record["test"]) == ({"auc"} if spec.arch == "inception_v3" else {"dice", "pixel_ap", "image_auc"})
        assert not layout.training_dir(dataset, spec.name).exists()
    model = training.load_trained_model(layout, "siim", INCEPTION)
    assert model.get_layer("logits") and getattr(model, "optimizer", None) is None   # saved without it
    no_fit(monkeypatch)
    assert train(layout, INCEPTION) == records["inception_r1"]


@pytest.mark.parametrize("edit", ["epochs", "learning rate", "seed", "data"])
def test_an_edited_experiment_never_reuses_a_stale_model(tmp_path, edit, caplog):
    layout = RunLayout(tmp_path)
    first = train(layout, UNET)
    settings, spec, dataset = TINY, UNET, None
    if edit == "epochs":
        settings = TINY.model_copy(update={"epochs": 2})
    elif edit == "learning rate":
        settings = TINY.model_copy(update={"learning_rate": 5e-4})
    elif edit == "seed":
        spec = ModelSpec("unet_r1", "unet", seed=9, settings=UNET.settings)
    else:   # the phantoms were rebuilt: another data fingerprint
        dataset = planted_dataset("siim", 0, fingerprint="data-2")
    wanted = records.model_fingerprint(spec, settings, dataset or planted_dataset("siim", 0))
    caplog.clear()
    with caplog.at_level(logging.WARNING):    # a stage that only reads models says why, and nothing about training
        assert records.unusable_model(layout, "siim", "unet_r1", wanted) == (
            "the experiment's settings or data changed since it was trained")
    assert [r.message for r in caplog.records if r.name.startswith("repro")] == []
    with caplog.at_level(logging.WARNING):
        second = train(layout, spec, settings, dataset)
    assert "changed since it was trained: training it again" in caplog.text
    assert second["fingerprint"] != first["fingerprint"]


@pytest.mark.parametrize("damage", ["truncated model", "overwritten model", "truncated weights", "unreadable record",
                                    "null record", "record without its keys"])
def test_a_damaged_model_file_is_rebuilt(tmp_path, damage, caplog, monkeypatch):
    layout = RunLayout(tmp_path)
    first = train(layout, UNET)
    path = layout.model_file("siim", "unet_r1")
    if damage == "truncated model":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "overwritten model":
        path.write_bytes(b"not a model")
    elif damage == "truncated weights":
        weights = layout.model_weights("siim", "unet_r1")
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "unreadable record":
        layout.model_record("siim", "unet_r1").write_text("{ half")
    elif damage == "null record":
        layout.model_record("siim", "unet_r1").write_text("null")
    else:
        layout.model_record("siim", "unet_r1").write_text(json.dumps({"fingerprint": first["fingerprint"]}))
    with caplog.at_level(logging.WARNING):
        again = train(layout, UNET)
    assert "training it again" in caplog.text and str(layout.root) in caplog.text
    assert again["fingerprint"] == first["fingerprint"]
    assert training.load_trained_model(layout, "siim", UNET).output_shape == (None, SIZE, SIZE, 1)


def test_reading_a_damaged_model_names_the_file(tmp_path):
    layout = RunLayout(tmp_path)
    train(layout, UNET)
    model = training.load_trained_model(layout, "siim", UNET)
    weights = training.load_trained_weights(layout, "siim", UNET)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    layout.model_file("siim", "unet_r1").write_bytes(b"\x00" * 50)
    with pytest.raises(ValueError, match=r"unet_r1.keras: cannot be read as a Keras model"):
        training.load_trained_model(layout, "siim", UNET)
    layout.model_weights("siim", "unet_r1").write_bytes(b"\x00" * 50)
    with pytest.raises(ValueError, match=r"unet_r1.weights.npz: cannot be read as trained weights"):
        training.load_trained_weights(layout, "siim", UNET)


def killed_during_training(layout, settings, monkeypatch, *, evaluation: int = 2) -> None:
    """Train until the second validation (epoch two), or the given evaluation, raises
    KeyboardInterrupt, as a kill would."""
    evaluate, calls = SegmentationTask.evaluate, []

    def dies(self, model, dataset, split):
        calls.append(split)
        if len(calls) == evaluation:
            raise KeyboardInterrupt
        return evaluate(self, model, dataset, split)
    monkeypatch.setattr(SegmentationTask, "evaluate", dies)
    with pytest.raises(KeyboardInterrupt):
        train(layout, UNET, settings)
    monkeypatch.setattr(SegmentationTask, "evaluate", evaluate)


def test_a_killed_run_resumes_after_its_last_epoch(tmp_path, monkeypatch):
    layout, settings = RunLayout(tmp_path), TINY.model_copy(update={"epochs": 3, "eager": False})
    killed_during_training(layout, settings, monkeypatch)
    work = layout.training_dir("siim", "unet_r1")
    assert json.loads((work / "state.json").read_text())["epoch"] == 1
    assert not layout.model_file("siim", "unet_r1").exists()

    fit, starts = keras.Model.fit, []

    def spy(self, *args, **kwargs):
        starts.append(kwargs["initial_epoch"])
        return fit(self, *args, **kwargs)
    monkeypatch.setattr(keras.Model, "fit", spy)
    record = train(layout, UNET, settings)
    assert starts == [1, 2]     # one fit per epoch, starting after the last epoch the killed run finished
    assert [r["epoch"] for r in record["history"]] == [1, 2, 3] and record["epochs"] == 3
    assert not work.exists() and not list(work.parent.glob(".*"))    # no temporary files left


def test_a_broken_checkpoint_starts_over_instead_of_sticking(tmp_path, monkeypatch, caplog):
    layout, settings = RunLayout(tmp_path), TINY.model_copy(update={"epochs": 2, "eager": False})
    killed_during_training(layout, settings, monkeypatch)
    work = layout.training_dir("siim", "unet_r1")
    state = json.loads((work / "state.json").read_text())
    (work / state["last"]).write_bytes(b"broken")
    with caplog.at_level(logging.WARNING):
        record = train(layout, UNET, settings)
    assert "cannot be read" in caplog.text and "training starts over" in caplog.text
    assert [r["epoch"] for r in record["history"]] == [1, 2]


def test_a_broken_best_checkpoint_starts_over_instead_of_failing_every_rerun(tmp_path, monkeypatch, caplog):
    layout, settings = RunLayout(tmp_path), TINY.model_copy(update={"epochs": 2, "eager": False})
    killed_during_training(layout, settings, monkeypatch)
    work = layout.training_dir("siim", "unet_r1")
    best = work / json.loads((work / "state.json").read_text())["best"]
    best.write_bytes(best.read_bytes()[:2000])       # truncated; the last checkpoint is whole
    with caplog.at_level(logging.WARNING):
        record = train(layout, UNET, settings)
    assert f"the checkpoint {best} cannot be read" in caplog.text and "training starts over" in caplog.text
    assert [r["epoch"] for r in record["history"]] == [1, 2] and not work.exists()


@pytest.mark.parametrize("state", ["null", "epoch text", "checkpoint outside"])
def test_a_damaged_training_state_is_discarded_with_a_notice(tmp_path, monkeypatch, caplog, state):
    layout, settings = RunLayout(tmp_path), TINY.model_copy(update={"epochs": 2, "eager": False})
    killed_during_training(layout, settings, monkeypatch)
    path = layout.training_dir("siim", "unet_r1") / "state.json"
    written = json.loads(path.read_text())
    if state == "epoch text":
        path.write_text(json.dumps({**written, "epoch": "1"}))
    elif state == "checkpoint outside":
        path.write_text(json.dumps({**written, "last": "../unet_r1.partial/" + written["last"]}))
    else:
        path.write_text(state)
    with caplog.at_level(logging.WARNING):
        record = train(layout, UNET, settings)
    assert f"discarding the interrupted training in {path.parent}: its state is damaged" in caplog.text
    assert [r["epoch"] for r in record["history"]] == [1, 2]


@pytest.mark.parametrize("epoch, best_epoch, best_score, stop", [
    (3, 3, 0.9, False),     # improving
    (6, 3, 0.9, True),      # patience (3) used up
    (10, 9, 0.9, True),     # out of epochs
    (4, 4, 1.0, True),      # perfect: no later epoch could replace it
    (1, 1, float("nan"), False),
])
def test_when_training_stops(epoch, best_epoch, best_score, stop):
    task = SegmentationTask(UNET, TINY.model_copy(update={"epochs": 10}), planted_dataset("siim", 0))
    state = {"epoch": epoch, "best_epoch": best_epoch, "best_score": best_score}
    assert training._should_stop(task, state) is stop


def test_replicates_trained_one_after_another_equal_replicates_trained_alone(tmp_path, monkeypatch):
    """A process that trains r1 then r2 reuses r1's compiled model (its training step traced once,
    its compiled kernels kept: tf.random.set_seed would clear them); r2 comes out bit for bit as
    when it is trained first, in a clean session."""
    from dataclasses import replace

    from tensorflow.python.eager import context
    settings = TINY.model_copy(update={"epochs": 2, "eager": False})
    second = replace(UNET, name="unet_r2", seed=2)
    together = RunLayout(tmp_path / "together")
    train(together, UNET, settings)
    compiled = WORKER.training.model
    cleared = []
    clear_caches = context.pywrap_tfe.TFE_ContextClearCaches
    monkeypatch.setattr(context.pywrap_tfe, "TFE_ContextClearCaches",
                        lambda handle: (cleared.append(handle), clear_caches(handle)))
    train(together, second, settings)
    monkeypatch.undo()
    assert WORKER.training.model is compiled and not cleared      # reused, not built again, kernels kept
    WORKER.release("training")
    alone = RunLayout(tmp_path / "alone")
    train(alone, second, settings)
    a = training.load_trained_weights(together, "siim", second)
    b = training.load_trained_weights(alone, "siim", second)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    first = training.load_trained_weights(together, "siim", UNET)
    assert not all(np.array_equal(x, y) for x, y in zip(a, first))


def test_a_model_built_for_training_has_its_optimizer_s_variables_before_its_first_step():
    """Made while the first step is traced, they would make TensorFlow trace that step twice."""
    model = training.make_task(UNET, TINY, planted_dataset("siim", 0)).build()
    assert model.optimizer.built
    assert len(model.optimizer.variables) == 1 + 2 * len(model.trainable_variables) + 1   # Adam: step, m, v, lr


def test_a_model_below_the_restart_bar_is_trained_again_from_new_seeds_and_resumes_so(tmp_path, monkeypatch):
    """No U-Net reaches pixel AP 1 here, so every attempt is given up until the attempts run out; a
    run killed in the second attempt resumes with the second seed and ends with the same bits, which
    are those of the last seed trained without the rule."""
    from dataclasses import replace

    from repro.experiments import Restart
    settings = TINY.model_copy(update={"restart": Restart(below=1.0, attempts=2)})
    seeds = [training.restart_seed(1, attempt) for attempt in range(3)]
    assert seeds[0] == 1 and len(set(seeds)) == 3
    whole = RunLayout(tmp_path / "whole")
    record = train(whole, UNET, settings)
    assert record["seed"] == seeds[2] and [r["seed"] for r in record["restarts"]] == seeds[:2]
    assert all(r["val"]["pixel_ap"] < 1.0 for r in record["restarts"])

    killed = RunLayout(tmp_path / "killed")
    # per attempt of one epoch: val after the epoch, then val and test; the 4th is in the second attempt
    killed_during_training(killed, settings, monkeypatch, evaluation=4)
    state = json.loads((killed.training_dir("siim", "unet_r1") / "state.json").read_text())
    assert state["attempt"] == 1 and [r["seed"] for r in state["previous"]] == [1]
    resumed = train(killed, UNET, settings)
    assert resumed["restarts"] == record["restarts"] and resumed["test"] == record["test"]

    last_seed = RunLayout(tmp_path / "last_seed")
    train(last_seed, replace(UNET, seed=seeds[2]))
    weights = [training.load_trained_weights(layout, "siim", UNET) for layout in (whole, killed)]
    weights.append(training.load_trained_weights(last_seed, "siim", replace(UNET, seed=seeds[2])))
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(*weights))


@pytest.mark.parametrize("below, attempt, score, wanted", [
    (None, 0, 0.5, False),     # no rule
    (0.75, 0, 0.5, True),
    (0.75, 0, 0.8, False),
    (0.75, 0, None, True),     # undefined (one class in validation): not a learned model either
    (0.75, 2, 0.5, False),     # attempts used up
])
def test_when_a_model_is_trained_again(below, attempt, score, wanted):
    from repro.experiments import Restart
    settings = TINY.model_copy(update={"restart": Restart(below=below, attempts=2)})
    task = SegmentationTask(UNET, settings, planted_dataset("siim", 0))
    assert training._restart_wanted(task, {"attempt": attempt}, {"val": {"pixel_ap": score}}) is wanted


def test_keras_writes_one_plain_line_per_epoch_into_a_log(capsys):
    """Off a terminal (a log file, a pipe) Keras' live bar would write carriage returns and colour
    codes: training asks it for one line per epoch instead."""
    keras_verbosity = training.keras_verbosity
    assert keras_verbosity(False) == 0
    keras.utils.set_random_seed(0)   # op determinism is on in the tests
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((8, 2), np.float32)
    model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=keras_verbosity(True))
    printed = capsys.readouterr().out
    assert "\r" not in printed and "\x1b" not in printed
    assert len([line for line in printed.splitlines() if "loss" in line]) == 2
