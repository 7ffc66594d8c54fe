"""An experiment's data sets: the phantoms made if the experiment uses them, then every data set
loaded at the experiment's input size through the cache (the first stage of `repro all`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from repro.data import rsna
from repro.data.dataset import Dataset, load_dataset
from repro.data.phantoms import PhantomConfig, make_phantoms
from repro.experiments import Experiment
from repro.io import write_json

log = logging.getLogger(__name__)


def ensure_phantoms(experiment: Experiment, *, progress: bool = True) -> None:
    """Write the experiment's phantom data sets unless the same ones are already there.

    The generator writes each layout's CSVs last, so a layout with its CSVs and a matching
    settings file is complete; anything else is generated again (deterministically).
    """
    settings = dict(experiment.data["phantoms"])
    n, seed = settings.pop("n"), settings.pop("seed", 0)
    data_dir = experiment.run_dir / "data"
    stamp = data_dir / "phantoms.json"
    wanted = {"n": n, "seed": seed, **settings}
    complete = stamp.is_file() and json.loads(stamp.read_text()) == wanted and all(
        _layout_complete(experiment.dataset_root(d), d) for d in experiment.data["datasets"])
    if complete:
        log.info("phantoms already in %s", data_dir)
        return
    make_phantoms(data_dir, n, seed, datasets=tuple(experiment.data["datasets"]),
                  config=PhantomConfig(**settings), progress=progress)
    write_json(stamp, wanted)


def prepare_data(experiment: Experiment, *, progress: bool = True) -> dict[str, Dataset]:
    """Every data set of the experiment at its input size (phantoms made first if needed)."""
    if experiment.data["source"] == "phantoms":
        ensure_phantoms(experiment, progress=progress)
    split = experiment.data["split"]
    return {name: load_dataset(name, experiment.dataset_root(name), experiment.data["input_size"],
                               cache_dir=experiment.cache_dir,
                               split_csv=None if split == "paper" else Path(split).expanduser(),
                               drop_not_normal=experiment.data["drop_not_normal"], progress=progress)
            for name in experiment.data["datasets"]}


def _layout_complete(root: Path, dataset: str) -> bool:
    needed = ["train-rle.csv"] if dataset == "siim" else [rsna.LABELS_CSV, rsna.CLASS_CSV]
    return all((root / name).is_file() for name in needed)
