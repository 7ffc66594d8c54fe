"""Your own models and data through the four tests: two small Keras classifiers saved by the test
(one outputs logits, the other softmax probabilities) graded on a folder data set end to end, and
the checks a user's files get at load."""
import contextlib
import io
import json
import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from repro.cli import main
from repro.data.phantoms import PhantomConfig, make_folder_layout
from repro.experiments import load_experiment
from repro.models.files import ModelFileError, load_file_model
from repro.report.summary import NEAR_CHANCE

SIZE = 64


def small_cnn(seed: int, *, probabilities: bool, channels: int = 1) -> keras.Model:
    """A user's classifier: grey 64x64 input scaled outside (preprocessing: unit), two classes."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((SIZE, SIZE, channels))
    for filters, name in ((8, "conv1"), (16, "conv2"), (16, "features")):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
        if name != "features":
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax" if probabilities else None, name="head")(x)
    return keras.Model(inputs, out)


def trained(model: keras.Model, root, *, probabilities: bool) -> keras.Model:
    """A few steps on the folder's images, so that the models predict something."""
    labels = pd.read_csv(root / "labels.csv")
    from PIL import Image
    x = np.stack([np.asarray(Image.open(root / "images" / name), np.float32)[..., None] / 255
                  for name in labels["image"]])
    y = np.eye(2, dtype=np.float32)[labels["label"].to_numpy()]
    loss = keras.losses.CategoricalCrossentropy(from_logits=not probabilities)
    model.compile(keras.optimizers.Adam(3e-3), loss)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A folder data set (phantoms with PNG masks) and two saved models of one architecture."""
    root = tmp_path_factory.mktemp("own")
    data = make_folder_layout(root / "chest", 60, 0, PhantomConfig(size=SIZE, siim_prevalence=0.5, conspicuity=2.0),
                              progress=False)
    for name, seed, probabilities in (("cnn_a", 1, False), ("cnn_b", 2, True)):
        trained(small_cnn(seed, probabilities=probabilities), data, probabilities=probabilities).save(
            root / f"{name}.keras")
    experiment = {
        "name": "mine", "description": "Two small CNNs of mine on a folder of phantoms.",
        "data": {"source": "folder", "datasets": ["chest"], "input_size": SIZE,
                 "split": {"test_fraction": 0.3, "val_fraction": 0.1, "seed": 1},
                 "folder": {"chest": {"root": "chest", "masks": "masks", "title": "My chest radiographs"}}},
        "models": {"files": {
            "cnn_a": {"file": "cnn_a.keras", "architecture": "smallcnn", "preprocessing": "unit", "output": "logits"},
            "cnn_b": {"file": "cnn_b.keras", "architecture": "smallcnn", "preprocessing": "unit",
                      "output": "probabilities"}}},
        "saliency": {"methods": ["GRAD", "SG", "GCAM", "LCAM", "OCC"],
                     "overrides": {"SG": {"nsamples": 2}, "OCC": {"size": 8, "stride": 4}}},
        "evaluation": {"ssim_images": 5, "pairs_per_image": 5, "cascade": {"groups": 3},
                       "stability": {"resamples": 5}},
        "runtime": {"deterministic": True, "threads": 1},
    }
    (root / "mine.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    return root


def test_two_user_models_are_graded_end_to_end_on_a_folder_data_set(own):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["all", "--experiment", str(own / "mine.yaml")]) == 0
    results = own / "runs" / "mine" / "results"
    cells = pd.read_csv(results / "cells.csv", dtype={"p": str, "verdict": str}, keep_default_na=False)
    assert set(cells.dataset) == {"chest"}
    assert set(cells.method) == {"AVG", "LOW", "GRAD", "SG", "GCAM", "LCAM", "OCC", "EDGE"}
    measured = cells[(cells.table == 3) & (cells.column == "P_AVG") & (cells.method == "GRAD")]
    assert measured.verdict.iloc[0] in ("pass", "did not pass", "uncertain")
    # One architecture: repeatability is measured (cnn_a vs cnn_b), reproducibility is not; no localizer.
    repeat = cells[(cells.column == "P_Repeat_Low") & (cells.method == "GRAD")].iloc[0]
    assert repeat.verdict != "not measured"
    assert set(cells.loc[cells.column == "P_Reprod_Low", "verdict"]) == {"not measured"}
    assert set(cells.loc[cells.column == "P_High", "verdict"]) == {"not measured"}
    # The randomization test on a model that is not InceptionV3: its layers in three groups, top down.
    scores = pd.read_csv(results / "scores.csv", dtype=str)
    assert set(scores.loc[scores.test == "randomization", "state"]) == {"baseline", "logits", "block1", "block2",
                                                                       "block3"}
    assert "My chest radiographs" in (results / "table3.md").read_text()
    report = (results / "report.md").read_text()
    assert "not measured (no reproducibility pair of models)" in report and "cnn_a vs cnn_b" in report
    for name in ("figure2.png", "figure3.png", "figure4.png", "table4.md"):
        assert (results / name).stat().st_size > 0
    assert not (results / "grade.json").exists()        # the grade is for the paper's experiments only
    assert "fidelity grade" not in printed.getvalue()
    # Each model's ROC AUC on the split, as for the kit's own classifiers; one near chance is named.
    models = json.loads((results / "models.json").read_text())
    assert sorted(models) == ["chest/cnn_a", "chest/cnn_b"]
    assert all(0.0 <= record["test"]["auc"] <= 1.0 and record["monitor"] == "auc" for record in models.values())
    weak = [name for name, record in models.items() if record["test"]["auc"] < NEAR_CHANCE]
    assert ("classifiers near chance" in report) == bool(weak)
    assert ("warning: classifiers near chance" in printed.getvalue()) == bool(weak)
    # Labels come from the experiment: no model, localizer or data set of the paper is named.
    html = (results / "report" / "index.html").read_text() + (results / "report" / "tables.html").read_text()
    for text in (html, (results / "table3.md").read_text(), (results / "table4.md").read_text()):
        assert not re.search(r"InceptionV3|DenseNet|U-Net|RetinaNet|SIIM|RSNA", text)
    assert "cnn_a vs cnn_b" in html and "My chest radiographs" in html
    assert (results / "report" / "images-chest.html").is_file()
    assert "*P values against a localization network: not measured" in (results / "table3.md").read_text()
    assert "controls (chest): EDGE fails the randomization test, as they must" in report   # no ORACLE here


def test_the_readme_s_own_model_experiment_selects_its_images_on_a_small_folder(tmp_path):
    """The README's YAML, as written, on a folder of 60 images (notebook 07's size): its split
    leaves the tests enough positive test images (the paper's 10% left two, and the run stopped)."""
    from repro.data.prepare import prepare_data
    from repro.evaluation.selection import select_images
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    text = re.search(r"```yaml\n(# my\.yaml.*?)```", readme, flags=re.S).group(1)
    (tmp_path / "my.yaml").write_text(text)
    make_folder_layout(tmp_path / "my-images", 60, 0, PhantomConfig(size=224, siim_prevalence=0.5), progress=False)
    experiment = load_experiment(tmp_path / "my.yaml")
    assert set(experiment.models) == {"mine_r1", "mine_r2", "other"}
    data = prepare_data(experiment, progress=False)["chest"]
    selection = select_images(data, experiment.settings.evaluation)
    assert len(selection.utility) >= 3


def test_too_few_positive_test_images_names_the_way_out(own, tmp_path):
    # Two test images (3% of 60): at most two positives.
    spec = load_experiment(own / "mine.yaml", overrides=["data.split={test_fraction: 0.03, val_fraction: 0.1}"])
    from repro.data.prepare import prepare_data
    from repro.evaluation.selection import select_images
    data = prepare_data(spec, progress=False)["chest"]
    with pytest.raises(ValueError, match=r"only \d positive test images.*data\.split.*'split' column"):
        select_images(data, spec.settings.evaluation)


def test_a_probability_output_is_traced_back_to_its_logits(own):
    spec = load_experiment(own / "mine.yaml").models["cnn_b"]
    wrapped = load_file_model(spec, SIZE)
    user = keras.models.load_model(own / "cnn_b.keras")
    x = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    logits = wrapped(x).numpy()
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), user(x[..., :1] / 255).numpy(), rtol=1e-4, atol=1e-6)
    assert wrapped.input_shape == (None, SIZE, SIZE, 3) and wrapped.output_shape == (None, 2)
    assert "features" in [layer.name for layer in wrapped.layers]     # flat: the user's layers by name


def test_bad_user_models_get_a_message_naming_the_file(own, tmp_path):
    spec = load_experiment(own / "mine.yaml").models["cnn_a"]
    from dataclasses import replace
    with pytest.raises(ModelFileError, match="takes 64x64 images but the experiment's input size is 80x80"):
        load_file_model(spec, 80)
    with pytest.raises(ModelFileError, match="model file not found"):
        load_file_model(replace(spec, file=tmp_path / "none.keras"), SIZE)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="broken.keras: cannot be read as a Keras model"):
        load_file_model(replace(spec, file=tmp_path / "broken.keras"), SIZE)
    small_cnn(3, probabilities=False).save(tmp_path / "logits.keras")
    with pytest.raises(ModelFileError, match="no softmax or sigmoid"):
        load_file_model(replace(spec, file=tmp_path / "logits.keras", output="probabilities"), SIZE)
