"""An experiment's data sets: the first stage of `repro all`.

`data_sources(experiment)` says how to load each data set (picklable, so a worker process can load
it from the cache); `prepare_data` makes the phantoms when the experiment uses them, then loads
every data set at the experiment's input size through the cache.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from repro.data.dataset import Dataset, load_dataset
from repro.data.folder import load_folder_dataset
from repro.data.phantoms import PhantomConfig, make_phantoms
from repro.experiments import Experiment, SplitFractions
from repro.io import read_json_object, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """How to load one data set of an experiment."""
    name: str
    root: Path
    size: int
    cache_dir: Path
    split: str | Path | SplitFractions     # "paper", a split CSV, or fractions
    drop_not_normal: bool
    folder: object = None                  # FolderData for a user's folder data set

    def load(self, *, progress: bool = True) -> Dataset:
        if self.folder is not None:
            return load_folder_dataset(self.name, self.root, self.size, self.folder, cache_dir=self.cache_dir,
                                       split=self.split, progress=progress)
        return load_dataset(self.name, self.root, self.size, cache_dir=self.cache_dir, split=self.split,
                            drop_not_normal=self.drop_not_normal, progress=progress)


def data_sources(experiment: Experiment) -> dict[str, DataSource]:
    data = experiment.settings.data
    split = data.split
    if isinstance(split, str) and split != "paper":
        split = experiment.resolve(split)
    return {name: DataSource(name, experiment.dataset_root(name), data.input_size, experiment.layout.cache_dir,
                             split, data.drop_not_normal,
                             data.folder[name] if data.source == "folder" else None)
            for name in experiment.datasets}


def ensure_phantoms(experiment: Experiment, *, progress: bool = True) -> None:
    """Write the experiment's phantom data sets unless the same ones are already there.

    The generator writes each layout's CSVs last, so a layout with its CSVs and a matching
    settings file is complete; anything else is generated again (deterministically).
    """
    settings = experiment.settings.data.phantoms.model_dump()
    n, seed = settings.pop("n"), settings.pop("seed")
    layout = experiment.layout
    wanted = {"n": n, "seed": seed, **settings}
    stamp = layout.phantom_stamp
    complete = _stamp(stamp) == wanted and all(
        all((layout.phantom_root(name) / f).is_file() for f in spec.label_files)
        for name, spec in experiment.datasets.items())
    if complete:
        log.info("phantoms already in %s", stamp.parent)
        return
    stamp.unlink(missing_ok=True)
    make_phantoms(stamp.parent, n, seed, datasets=tuple(experiment.datasets),
                  config=PhantomConfig(**settings), progress=progress)
    write_json(stamp, wanted)


def _stamp(path: Path) -> dict | None:
    """The settings the phantoms on disk were made with (None: absent or damaged, so made again)."""
    try:
        return read_json_object(path)
    except ValueError:
        return None


def prepare_data(experiment: Experiment, *, progress: bool = True) -> dict[str, Dataset]:
    """Every data set of the experiment at its input size (phantoms made first if needed)."""
    if experiment.settings.data.source == "phantoms":
        ensure_phantoms(experiment, progress=progress)
    return {name: source.load(progress=progress) for name, source in data_sources(experiment).items()}
