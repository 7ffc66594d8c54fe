"""The experiment registry: YAML files in experiments/ (configs are data, not code).

An experiment names its data source, input size and split, and (added by later stages) its models,
training and saliency settings. `load_experiment("demo")` reads experiments/demo.yaml; a path to a
YAML file works too, for users' own experiments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"

_DATA_KEYS = {"source", "datasets", "input_size", "split", "drop_not_normal", "phantoms",
              "siim_root", "rsna_root"}
_PHANTOM_KEYS = {"n", "seed", "size", "conspicuity", "siim_prevalence", "rsna_prevalence",
                 "rsna_not_normal_fraction", "confounder_rate", "confounder_negative_rate"}


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
