"""The experiment schema: validated whole at load, errors naming the key path, defaults in one
place, --set overrides, paths kept inside the project, `repro config`."""
import re
import subprocess
import sys

import pytest
import yaml

from repro.experiments import ExperimentError, list_experiments, load_experiment, resolved_config
from repro.protocol import INCEPTION_STATES, PAPER_METHODS

TRAIN = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "patience": 3}
RESNET = {"input_conv_filters": [64], "input_conv_kernel_sizes": [3], "stackwise_num_filters": [64, 64],
          "stackwise_num_blocks": [1, 1], "stackwise_num_strides": [1, 2], "block_type": "basic_block"}


def write(tmp_path, **sections):
    config = {"data": {"source": "phantoms", "phantoms": {"n": 24}, "input_size": 80},
              "models": {"inception_v3": {"replicates": {"a": 1, "b": 2}}}, "train": TRAIN, **sections}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_kits_experiments_load():
    assert {"smoke", "demo", "paper"} <= set(list_experiments())
    for name, replicates in (("smoke", 2), ("demo", 3), ("paper", 3)):
        experiment = load_experiment(name)
        assert len(experiment.roles.replicates) == replicates
        assert experiment.roles.repeatability == ("inception_r1", "inception_r2")
        assert experiment.roles.reproducibility == ("inception_r1", "densenet")
    paper = load_experiment("paper")
    assert paper.settings.evaluation.utility_images == "all" and paper.settings.evaluation.ssim_images == 100
    assert paper.train_settings("inception_v3").learning_rate == 7e-5
    assert paper.train_settings("unet").learning_rate == 3e-4          # a per-architecture override


@pytest.mark.parametrize("sections, message", [
    ({"evalution": {}}, r"unknown key evalution; did you mean evaluation\?"),
    ({"evaluation": {"pairs_per_imag": 3}}, r"unknown key evaluation.pairs_per_imag; did you mean evaluation.pairs_per_image"),
    ({"evaluation": {"utility_images": "four"}}, r"evaluation.utility_images"),
    ({"evaluation": {"ssim_images": 2}}, r"evaluation.ssim_images: input should be greater than or equal to 3"),
    ({"saliency": {"methods": "GRAD"}}, r"saliency.methods: input should be a valid list"),
    ({"saliency": {"methods": ["GRAD", "LIME"]}}, r"saliency.methods\[1\]"),
    ({"saliency": {"overrides": {"SG": {"nsamples": 0}}}}, r"saliency.overrides.SG: .*nsamples must be a positive integer"),
    ({"saliency": {"overrides": {"SG": {"samples": 3}}}}, r"saliency.overrides.SG: SG has no parameter \['samples'\]"),
    ({"train": {**TRAIN, "epochs": 0}}, r"train.epochs: input should be greater than or equal to 1"),
    ({"train": {**TRAIN, "epochs": True}}, r"train.epochs: input should be a valid integer"),
    ({"train": {**TRAIN, "unet": {"lr": 1}}}, r"unknown key train.unet.lr"),
    ({"models": {"resnet": {"replicates": {"a": 1}}}}, r"unknown key models.resnet"),
    ({"models": {"unet": {"replicates": {"a b": 1}}}}, r"model name 'a b'"),
    ({"evaluation": {"repeatability": ["a", "zzz"]}}, r"evaluation.repeatability: unknown model 'zzz'"),
    ({"runtime": {"threads": 0}}, r"runtime.threads"),
    ({"runtime": {"training": {"process_per_dataset": ["densenet"]}}},
     r"runtime.training.process_per_dataset: \['densenet'\] not among the architectures this experiment trains"),
    ({"publish_dir": "../../elsewhere"}, r"publish_dir '../../elsewhere' is outside the project folder"),
    ({"name": "../up"}, r"name: string should match pattern"),
    ({"data": {"source": "phantoms", "phantoms": {"n": 24}, "input_size": 64}},
     r"data.input_size 64: inception_v3 accepts inputs of 75 px and up"),
    ({"publish_readme": "README.md"}, r"publish_readme needs a publish_dir"),
    ({"models": {"inception_v3": {"replicates": {"a": 1}}, "retinanet": {"replicates": {"r": 1}, "backbone": {
        **RESNET, "stackwise_num_filters": [32, 64]}}}}, r"stackwise_num_filters must start with 64"),
    ({"models": {"inception_v3": {"replicates": {"a": 1}}, "retinanet": {"replicates": {"r": 1}, "backbone": {
        **RESNET, "input_conv_filters": [32]}}}}, r"input_conv_filters must end with 64 .* got \[32\]"),
])
def test_bad_settings_fail_at_load_naming_the_key(tmp_path, sections, message):
    with pytest.raises(ExperimentError, match=message) as error:
        load_experiment(write(tmp_path, **sections))
    assert str(error.value).startswith(str(tmp_path / "mine.yaml")) and "\n" not in str(error.value)


def test_every_default_is_filled_in(tmp_path):
    experiment = load_experiment(write(tmp_path))
    settings = experiment.settings
    assert settings.saliency.methods == list(PAPER_METHODS) and settings.saliency.preset == "paper"
    assert settings.evaluation.ssim_images == 100 and settings.evaluation.sample_seed == 1
    assert settings.evaluation.randomization_cells == "replicates" and settings.evaluation.unet_ssim == "uint8"
    assert experiment.layout.root == tmp_path / "runs" / "mine"
    assert experiment.roles.reproducibility is None            # no second architecture: not measured


def test_overrides_are_validated_by_the_same_schema(tmp_path):
    path = write(tmp_path)
    experiment = load_experiment(path, overrides=["evaluation.utility_images=5", "saliency.methods=[GRAD, IG]"])
    assert experiment.settings.evaluation.utility_images == 5 and experiment.settings.saliency.methods == ["GRAD", "IG"]
    with pytest.raises(ExperimentError, match="evaluation.utility_images"):
        load_experiment(path, overrides=["evaluation.utility_images=many"])
    with pytest.raises(ExperimentError, match="expected KEY.PATH=VALUE"):
        load_experiment(path, overrides=["evaluation.utility_images"])


def test_resolved_config_shows_what_will_run():
    resolved = resolved_config(load_experiment("paper"))["resolved"]
    assert resolved["roles"]["replicates"] == ["inception_r1", "inception_r2", "inception_r3"]
    assert resolved["saliency_parameters"]["GCAM"]["resize"] == "legacy"
    assert resolved["saliency_parameters"]["IG"]["x_steps"] == 25
    assert "random.seed(1)" in resolved["images"]["randomization_repeatability_reproducibility"]
    assert resolved["images"]["utility"] == "all positive test images"
    assert resolved["cascade_states"] == list(INCEPTION_STATES)


def test_repro_config_command_and_check_without_tensorflow():
    """`repro config` prints YAML and `--check` one line saying what it checked; neither imports
    TensorFlow. (The paper's data roots: tests/test_data_check.py.)"""
    code = ("import sys; from repro.cli import main; rc = main(['config', '--experiment', 'smoke', '--check']); "
            "assert 'tensorflow' not in sys.modules, 'imported tensorflow'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("smoke: the settings are valid (schema, models and their roles, saliency parameters); "
                             "data: phantoms, written by the run itself\n")
    result = subprocess.run([sys.executable, "-m", "repro", "config", "--experiment", "paper"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and yaml.safe_load(result.stdout)["evaluation"]["ssim_images"] == 100


def alias_bomb(flow: bool = False) -> str:
    """A 'billion laughs' YAML: nine levels of anchors, each alias repeated nine times (9^9 values)."""
    levels = [("a", ", ".join(["x"] * 9))]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append((name, ", ".join([f"*{previous}"] * 9)))
    if flow:
        return "[" + ", ".join(f"&{name} [{items}]" for name, items in levels) + "]"
    return "".join(f"{name}: &{name} [{items}]\n" for name, items in levels)


def load_with_a_memory_limit(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a process held to 2 GB, so that a regression fails instead of taking the machine."""
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
    return subprocess.run([sys.executable, "-c", limit + code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("where", ["file", "--set"])
def test_an_alias_bomb_is_refused_before_validation(tmp_path, where):
    path = write(tmp_path)
    overrides = []
    if where == "file":
        path.write_text(path.read_text() + alias_bomb())
    else:
        overrides = [f"description={alias_bomb(flow=True)}"]
    done = load_with_a_memory_limit(
        f"from repro.experiments import ExperimentError, load_experiment\ntry:\n"
        f"    load_experiment({str(path)!r}, overrides={overrides!r})\nexcept ExperimentError as err:\n    print(err)")
    assert done.returncode == 0, done.stderr[-2000:]
    message = done.stdout.strip()
    assert message.startswith(f"{path}: its aliases (*name) expand ") and "\n" not in message
    assert re.search(r"bytes to 4\d\d,\d{3},\d{3} values, more than the [\d,]+ an experiment of that size may hold; "
                     r"refused before validation$", message), message


@pytest.mark.parametrize("text, message", [
    ("a: &x [1, *x]\n", "an alias refers to a block that holds it"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to be an experiment"),
])
def test_yaml_without_end_is_one_error(tmp_path, text, message):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=f"^{re.escape(str(path))}: {message}"):
        load_experiment(path)


def test_aliases_in_proportion_are_welcome(tmp_path):
    path = write(tmp_path)
    shared = "train:\n  inception_v3: &own {epochs: 2, patience: 2}\n  densenet121: *own\n  unet: *own\n"
    path.write_text(path.read_text().replace("train:\n", shared))
    experiment = load_experiment(path)
    assert experiment.train_settings("unet").epochs == experiment.train_settings("densenet121").patience == 2


def test_the_results_fingerprint_follows_only_what_results_are_made_from(tmp_path):
    path = write(tmp_path)
    base = load_experiment(path).results_fingerprint
    for override in ("runtime.threads=2", "runtime.cluster=local:2", "description=another", "publish_dir=out",
                     "run_dir=elsewhere"):
        experiment = load_experiment(path, overrides=[override])
        assert experiment.results_fingerprint == base, override
    for override in ("train.epochs=2", "evaluation.ssim_images=20", "saliency.seed=3", "data.input_size=96"):
        assert load_experiment(path, overrides=[override]).results_fingerprint != base, override


def test_settings_changes_name_each_key_path():
    from repro.experiments import settings_changes
    before = {"train": {"epochs": 1, "augment": {"flip": True}}, "saliency": {"methods": ["GRAD", "IG"]}}
    now = {"train": {"epochs": 7, "augment": {"flip": True}}, "saliency": {"methods": ["GRAD"]}, "extra": None}
    assert settings_changes(before, now) == ['saliency.methods: ["GRAD", "IG"] then, ["GRAD"] now',
                                             "train.epochs: 1 then, 7 now"]
