"""The experiment registry: YAML files in experiments/ (configs are data, not code).

An experiment names its data source, input size and split (`data`), the models trained on each data
set (`models`) and how they are trained (`train`); later stages add their own sections.
`load_experiment("demo")` reads experiments/demo.yaml; a path to a YAML file works too, for users'
own experiments.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"

_DATA_KEYS = {"source", "datasets", "input_size", "split", "drop_not_normal", "phantoms",
              "siim_root", "rsna_root"}
_PHANTOM_KEYS = {"n", "seed", "size", "conspicuity", "siim_prevalence", "rsna_prevalence",
                 "rsna_not_normal_fraction", "confounder_rate", "confounder_negative_rate"}

# models: architecture -> its settings and `replicates` (model name -> seed). Missing settings take
# these defaults; an architecture that is absent is not trained.
_ARCHITECTURES = {
    "inception_v3": {"weights": None},
    "densenet121": {"weights": None},
    "unet": {"depth": 4, "width": 32},
    "retinanet": {"backbone": "resnet_50_imagenet", "levels": [3, 7], "head_convs": 4,
                  "score_threshold": 0.05, "max_detections": 20},
}
# train: these keys at the top level apply to every architecture; a mapping under an architecture's
# name overrides them for that architecture.
_TRAIN_DEFAULTS = {"bn_momentum": None, "augment": {"flip": False, "shift": 0.0},
                   "recalibration": {"batches": 4, "batch_size": 64}, "eager": False}
_TRAIN_REQUIRED = ("epochs", "batch_size", "learning_rate", "patience")
_TRAIN_KEYS = set(_TRAIN_DEFAULTS) | set(_TRAIN_REQUIRED)
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class ExperimentError(ValueError):
    """An experiment file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    config: dict
    run_dir: Path

    @property
    def data(self) -> dict:
        return self.config["data"]

    def dataset_root(self, dataset: str) -> Path:
        """Where the Kaggle layout of `dataset` lies (the run's own copy for the phantoms)."""
        if self.data["source"] == "phantoms":
            return self.run_dir / "data" / dataset
        return Path(self.data[f"{dataset}_root"]).expanduser()

    @property
    def cache_dir(self) -> Path:
        return self.run_dir / "cache"

    @property
    def models(self) -> dict[str, dict]:
        """Model name -> {"arch", "seed", and the architecture's settings}, in file order."""
        specs = {}
        for arch, settings in self.config.get("models", {}).items():
            shared = {k: v for k, v in settings.items() if k != "replicates"}
            for name, seed in settings["replicates"].items():
                specs[name] = {"arch": arch, "seed": seed, **shared}
        return specs

    def train_settings(self, arch: str) -> dict:
        """The `train` settings for one architecture: the shared keys, then its own overrides."""
        return _train_settings(self.config["train"], arch)


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def load_experiment(name_or_path: str | Path, *, run_dir: str | Path | None = None) -> Experiment:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ExperimentError(f"unknown experiment {str(name_or_path)!r}; "
                                  f"known: {', '.join(list_experiments())} (or give a path to a YAML file)")
    if not path.is_file():
        raise ExperimentError(f"experiment file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise ExperimentError(f"{path}: expected a mapping at the top level")
    _validate(config, path)
    name = config.get("name", path.stem)
    run_dir = Path(run_dir or config.get("run_dir", f"runs/{name}"))
    return Experiment(name=name, path=path, config=config, run_dir=run_dir)


def _validate(config: dict, path: Path) -> None:
    data = config.get("data")
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: missing 'data' section")
    unknown = set(data) - _DATA_KEYS
    if unknown:
        raise ExperimentError(f"{path}: unknown key(s) in 'data': {sorted(unknown)}; "
                              f"expected some of {sorted(_DATA_KEYS)}")
    source = data.get("source")
    if source not in ("phantoms", "kaggle"):
        raise ExperimentError(f"{path}: data.source must be 'phantoms' or 'kaggle', got {source!r}")
    datasets = data.setdefault("datasets", ["siim", "rsna"])
    if not datasets or set(datasets) - {"siim", "rsna"}:
        raise ExperimentError(f"{path}: data.datasets must list siim and/or rsna, got {datasets!r}")
    size = data.get("input_size")
    if not isinstance(size, int) or size < 75:
        raise ExperimentError(f"{path}: data.input_size must be an integer >= 75 "
                              f"(InceptionV3's smallest input), got {size!r}")
    data.setdefault("split", "paper")
    data.setdefault("drop_not_normal", True)
    if source == "phantoms":
        phantoms = data.get("phantoms")
        if not isinstance(phantoms, dict) or "n" not in phantoms:
            raise ExperimentError(f"{path}: data.phantoms must be a mapping with at least 'n'")
        unknown = set(phantoms) - _PHANTOM_KEYS
        if unknown:
            raise ExperimentError(f"{path}: unknown key(s) in 'data.phantoms': {sorted(unknown)}; "
                                  f"expected some of {sorted(_PHANTOM_KEYS)}")
    else:
        for dataset in datasets:
            if not data.get(f"{dataset}_root"):
                raise ExperimentError(f"{path}: data.{dataset}_root is required when data.source is 'kaggle'")
    if "models" in config or "train" in config:
        _validate_models(config.get("models"), path)
        _validate_train(config.get("train"), config["models"], path)


def _validate_models(models, path: Path) -> None:
    if not isinstance(models, dict) or not models:
        raise ExperimentError(f"{path}: 'models' must map architectures ({', '.join(_ARCHITECTURES)}) "
                              "to their settings")
    names = set()
    for arch, settings in models.items():
        where = f"{path}: models.{arch}"
        if arch not in _ARCHITECTURES:
            raise ExperimentError(f"{where}: unknown architecture; expected one of {', '.join(_ARCHITECTURES)}")
        if not isinstance(settings, dict):
            raise ExperimentError(f"{where}: expected a mapping")
        unknown = set(settings) - set(_ARCHITECTURES[arch]) - {"replicates"}
        if unknown:
            raise ExperimentError(f"{where}: unknown key(s) {sorted(unknown)}; "
                                  f"expected replicates and some of {sorted(_ARCHITECTURES[arch])}")
        replicates = settings.get("replicates")
        if not isinstance(replicates, dict) or not replicates:
            raise ExperimentError(f"{where}.replicates must map model names to seeds")
        for name, seed in replicates.items():
            if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or name in names:
                raise ExperimentError(f"{where}.replicates: model name {name!r} must be unique and "
                                      "made of letters, digits, _ and -")
            if not _is_int(seed, 0):
                raise ExperimentError(f"{where}.replicates.{name}: the seed must be an integer >= 0")
            names.add(name)
        for key, default in _ARCHITECTURES[arch].items():
            settings.setdefault(key, default)
        _check_architecture(arch, settings, where)


def _check_architecture(arch: str, settings: dict, where: str) -> None:
    if arch in ("inception_v3", "densenet121"):
        weights = settings["weights"]
        if weights is not None and not isinstance(weights, str):
            raise ExperimentError(f"{where}.weights must be null (random init), 'imagenet' or a file path")
    elif arch == "unet":
        for key in ("depth", "width"):
            if not _is_int(settings[key], 1):
                raise ExperimentError(f"{where}.{key} must be a positive integer, got {settings[key]!r}")
    else:
        backbone, levels = settings["backbone"], settings["levels"]
        if not isinstance(backbone, (str, dict)):
            raise ExperimentError(f"{where}.backbone must be a keras_hub ResNet preset name or a "
                                  "mapping of keras_hub.models.ResNetBackbone arguments")
        if (not isinstance(levels, list) or len(levels) != 2 or not all(_is_int(v, 2) for v in levels)
                or levels[0] > levels[1]):
            raise ExperimentError(f"{where}.levels must be [min, max] feature-pyramid levels, got {levels!r}")
        if not _is_int(settings["head_convs"], 0) or not _is_int(settings["max_detections"], 1):
            raise ExperimentError(f"{where}: head_convs must be an integer >= 0 and max_detections >= 1")
        if not _is_number(settings["score_threshold"], 0.0, 1.0):
            raise ExperimentError(f"{where}.score_threshold must be in [0, 1]")


def _validate_train(train, models: dict, path: Path) -> None:
    if not isinstance(train, dict):
        raise ExperimentError(f"{path}: a 'train' section is required with 'models' "
                              f"(keys {sorted(_TRAIN_KEYS)}, plus per-architecture overrides)")
    for key, value in train.items():
        if key in _ARCHITECTURES:
            if not isinstance(value, dict) or set(value) - _TRAIN_KEYS:
                raise ExperimentError(f"{path}: train.{key} must be a mapping of some of {sorted(_TRAIN_KEYS)}")
        elif key not in _TRAIN_KEYS:
            raise ExperimentError(f"{path}: unknown key train.{key}; expected some of {sorted(_TRAIN_KEYS)} "
                                  f"or an architecture name")
    for key, default in _TRAIN_DEFAULTS.items():
        train.setdefault(key, default)
    for arch in models:
        _check_train(_train_settings(train, arch), f"{path}: train (for {arch})")


def _train_settings(train: dict, arch: str) -> dict:
    return {**{k: v for k, v in train.items() if k in _TRAIN_KEYS}, **train.get(arch, {})}


def _check_train(settings: dict, where: str) -> None:
    missing = [key for key in _TRAIN_REQUIRED if key not in settings]
    if missing:
        raise ExperimentError(f"{where}: missing {missing}")
    for key, low in (("epochs", 1), ("batch_size", 1), ("patience", 1)):
        if not _is_int(settings[key], low):
            raise ExperimentError(f"{where}: {key} must be an integer >= {low}, got {settings[key]!r}")
    if not _is_number(settings["learning_rate"], 0.0, 1.0) or settings["learning_rate"] == 0:
        raise ExperimentError(f"{where}: learning_rate must be in (0, 1], got {settings['learning_rate']!r}")
    momentum = settings["bn_momentum"]
    if momentum is not None and not _is_number(momentum, 0.0, 1.0):
        raise ExperimentError(f"{where}: bn_momentum must be null (keep the architecture's) or in [0, 1]")
    augment, recalibration = settings["augment"], settings["recalibration"]
    if (not isinstance(augment, dict) or set(augment) != {"flip", "shift"}
            or not isinstance(augment["flip"], bool) or not _is_number(augment["shift"], 0.0, 0.25)):
        raise ExperimentError(f"{where}: augment must be {{flip: true/false, shift: fraction of the "
                              f"image in [0, 0.25]}}, got {augment!r}")
    if (not isinstance(recalibration, dict) or set(recalibration) != {"batches", "batch_size"}
            or not all(_is_int(v, 1) for v in recalibration.values())):
        raise ExperimentError(f"{where}: recalibration must be {{batches: n, batch_size: n}}, "
                              f"got {recalibration!r}")
    if not isinstance(settings["eager"], bool):
        raise ExperimentError(f"{where}: eager must be true or false")


def _is_int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
