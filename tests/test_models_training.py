"""Training: experiment profiles, train_experiment on hand-made data, reuse, resume, determinism."""
import json

import keras
import numpy as np
import pytest
import yaml

from repro.data.dataset import Dataset
from repro.experiments import ExperimentError, list_experiments, load_experiment
from repro.models import training
from repro.models.tasks import SegmentationTask

SIZE = 80
TINY_MODELS = {
    "inception_v3": {"replicates": {"inception_r1": 1}, "weights": None},
    "unet": {"replicates": {"unet_r1": 1, "unet_r2": 2}, "depth": 2, "width": 4},
    "retinanet": {"replicates": {"retinanet_r1": 1}, "levels": [3, 4], "head_convs": 0, "max_detections": 5,
                  "backbone": {"input_conv_filters": [64], "input_conv_kernel_sizes": [3],
                               "stackwise_num_filters": [64, 64, 64], "stackwise_num_blocks": [1, 1, 1],
                               "stackwise_num_strides": [1, 2, 2], "block_type": "basic_block"}},
}
TINY_TRAIN = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "patience": 3, "bn_momentum": 0.9,
              "augment": {"flip": True, "shift": 0.05}, "recalibration": {"batches": 1, "batch_size": 8},
              "eager": True}


def planted_dataset(name: str, seed: int) -> Dataset:
    """24 noisy images; the positives carry a bright square, which is also their mask."""
    rng = np.random.default_rng(seed)
    n = 24
    labels = np.array([0, 1] * (n // 2), dtype=np.int8)
    images = rng.integers(0, 120, (n, SIZE, SIZE), dtype=np.uint8)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(5, SIZE - 25, size=2)
        masks[i, y:y + 16, x:x + 16] = True
    images[masks] = 230
    splits = np.array(["train"] * 16 + ["val"] * 4 + ["test"] * 4)
    return Dataset(name=name, size=SIZE, ids=np.array([f"{name}{i}" for i in range(n)]), labels=labels,
                   splits=splits, images=images, masks=masks)


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """A tiny experiment whose prepare_data returns the planted data sets (no phantoms, no DICOM)."""
    def write(models=TINY_MODELS, train=TINY_TRAIN):
        config = {"name": "tiny", "data": {"source": "phantoms", "phantoms": {"n": 24}, "input_size": SIZE},
                  "models": models, "train": train}
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(config))
        return load_experiment(path, run_dir=tmp_path / "run")
    datasets = {"siim": planted_dataset("siim", 0), "rsna": planted_dataset("rsna", 1)}
    monkeypatch.setattr(training, "prepare_data", lambda experiment, progress=True: datasets)
    return write


def test_profiles_load_with_models_and_train():
    assert {"smoke", "demo", "paper"} <= set(list_experiments())
    for name in ("smoke", "demo", "paper"):
        experiment = load_experiment(name)
        models = experiment.models
        assert {"inception_r1", "inception_r2", "densenet", "unet_r1", "unet_r2", "retinanet_r1",
                "retinanet_r2"} == set(models)
        assert models["inception_r1"]["seed"] != models["inception_r2"]["seed"]
        assert experiment.train_settings("unet")["patience"] >= 3
    assert load_experiment("paper").models["densenet"]["weights"] == "imagenet"
    assert load_experiment("paper").train_settings("inception_v3")["learning_rate"] == 7e-5
    assert load_experiment("demo").data["input_size"] >= 128
    smoke = load_experiment("smoke")
    assert smoke.train_settings("densenet121")["epochs"] == 1 and smoke.train_settings("unet")["eager"]


@pytest.mark.parametrize("change, message", [
    ({"models": {"resnet": {"replicates": {"a": 1}}}}, "unknown architecture"),
    ({"models": {"unet": {"replicates": {"a": -1}}}}, "seed must be an integer"),
    ({"models": {"unet": {"replicates": {"a b": 1}}}}, "model name"),
    ({"models": {"unet": {"replicates": {"a": 1}, "depht": 3}}}, "unknown key"),
    ({"train": None}, "'train' section is required"),
    ({"train": {**TINY_TRAIN, "epochs": 0}}, "epochs must be an integer >= 1"),
    ({"train": {**TINY_TRAIN, "augment": {"flip": True}}}, "augment must be"),
    ({"train": {**TINY_TRAIN, "unet": {"lr": 1}}}, "train.unet must be a mapping"),
])
def test_bad_model_sections_are_named(tmp_path, change, message):
    config = {"data": {"source": "phantoms", "phantoms": {"n": 4}, "input_size": 80},
              "models": {"unet": {"replicates": {"a": 1}}}, "train": TINY_TRAIN, **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ExperimentError, match=message):
        load_experiment(path)


def test_train_experiment_trains_saves_and_reuses(experiment, monkeypatch):
    exp = experiment()
    results = training.train_experiment(exp, progress=False)
    assert set(results) == {"siim/inception_r1", "siim/unet_r1", "siim/unet_r2",
                            "rsna/inception_r1", "rsna/retinanet_r1"}
    for key, metrics in results.items():
        dataset, name = key.split("/")
        path = training.model_path(exp, dataset, name)
        assert path.is_file() and json.loads(path.with_suffix(".json").read_text()) == metrics
        assert metrics["epochs"] == 1 and len(metrics["history"]) == 1 and metrics["seconds"] > 0
        assert set(metrics["test"]) == ({"auc"} if name.startswith("inception") else
                                        {"dice", "pixel_ap", "image_auc"})
        assert not path.with_name(f"{name}.partial").exists()
    assert sorted(p.name for p in training.model_path(exp, "siim", "x").parent.iterdir()) == [
        "inception_r1.json", "inception_r1.keras", "unet_r1.json", "unet_r1.keras", "unet_r2.json", "unet_r2.keras"]
    model = training.load_trained_model(exp, "siim", "inception_r1")
    assert model.get_layer("logits") and getattr(model, "optimizer", None) is None   # saved without it

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished model was trained again")
    monkeypatch.setattr(keras.Model, "fit", no_fit)
    assert training.train_experiment(exp, progress=False) == results
    with pytest.raises(ValueError, match="unknown model 'nonesuch'"):
        training.train_experiment(exp, only="nonesuch", progress=False)


def test_a_killed_run_resumes_after_its_last_epoch(experiment, monkeypatch):
    exp = experiment(models={"unet": TINY_MODELS["unet"]}, train={**TINY_TRAIN, "epochs": 3, "eager": False})
    evaluate, calls = SegmentationTask.evaluate, []

    def dies_in_epoch_two(self, model, dataset, split):
        calls.append(split)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(self, model, dataset, split)
    monkeypatch.setattr(SegmentationTask, "evaluate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        training.train_experiment(exp, only="unet_r1", progress=False)
    work = training.model_path(exp, "siim", "unet_r1").with_suffix(".partial")
    assert json.loads((work / "state.json").read_text())["epoch"] == 1
    assert not training.model_path(exp, "siim", "unet_r1").exists()

    monkeypatch.setattr(SegmentationTask, "evaluate", evaluate)
    fit, starts = keras.Model.fit, []

    def spy(self, *args, **kwargs):
        starts.append(kwargs["initial_epoch"])
        return fit(self, *args, **kwargs)
    monkeypatch.setattr(keras.Model, "fit", spy)
    metrics = training.train_experiment(exp, only="unet_r1", progress=False)["siim/unet_r1"]
    assert starts == [1]
    assert [record["epoch"] for record in metrics["history"]] == [1, 2, 3] and metrics["epochs"] == 3
    assert not work.exists() and not list(work.parent.glob(".*"))    # no temporary files left


def test_training_is_repeatable_given_the_seed(experiment):
    exp = experiment(models={"unet": {**TINY_MODELS["unet"], "replicates": {"unet_r1": 1}}},
                     train={**TINY_TRAIN, "epochs": 2, "eager": False})
    first = training.train_experiment(exp, progress=False)["siim/unet_r1"]
    weights = training.load_trained_model(exp, "siim", "unet_r1").get_weights()
    for path in training.model_path(exp, "siim", "unet_r1").parent.iterdir():
        path.unlink()
    second = training.train_experiment(exp, progress=False)["siim/unet_r1"]
    again = training.load_trained_model(exp, "siim", "unet_r1").get_weights()
    assert [r["loss"] for r in first["history"]] == pytest.approx([r["loss"] for r in second["history"]], rel=1e-4)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(weights, again))


@pytest.mark.parametrize("epoch, best_epoch, best_score, stop", [
    (3, 3, 0.9, False),     # improving
    (6, 3, 0.9, True),      # patience (3) used up
    (10, 9, 0.9, True),     # out of epochs
    (4, 4, 1.0, True),      # perfect: no later epoch could replace it
    (1, 1, float("nan"), False),
])
def test_when_training_stops(epoch, best_epoch, best_score, stop):
    task = SegmentationTask({}, {"epochs": 10, "patience": 3}, planted_dataset("siim", 0))
    state = {"epoch": epoch, "best_epoch": best_epoch, "best_score": best_score}
    assert training._should_stop(task, state) is stop
