"""Which test images each test scores.

- utility: every positive test image (the paper reports 246 SIIM-ACR and 601 RSNA positives in
  its test sets), or the first N in test-list order when an experiment caps it;
- randomization, repeatability, reproducibility: "a randomly chosen sample of 100 images from the
  respective test sets" (the authors' README). Their create_maps scripts drew it as
  `random.seed(1)`, the indices of the positive test images in test-list order, `random.shuffle`,
  the first 100 kept (create_maps_rsna.py lines 31 and 250-261); `sample_from` reproduces that
  draw with Python's own generator, so on the same test list it picks the same images;
- the intermediate cascade states (only Figure 3's curves need them): that sample, or its first N
  images when an experiment caps them to save time.
Images are kept in test-list order everywhere (the order the authors' maps were stored in).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from repro.data.dataset import Dataset
from repro.experiments import Evaluation

MIN_IMAGES = 3


@dataclass(frozen=True)
class ImageSelection:
    utility: tuple[str, ...]
    sample: tuple[str, ...]
    curve: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """Every image some test scores, without repeats, utility images first."""
        return tuple(dict.fromkeys(self.utility + self.sample))

    def frame(self, dataset: str) -> pd.DataFrame:
        """The image ids each test used (results/images.csv)."""
        rows = [(dataset, test, image) for test, ids in (
            ("utility", self.utility), ("randomization", self.sample), ("repeatability", self.sample),
            ("reproducibility", self.sample), ("cascade_curves", self.curve)) for image in ids]
        return pd.DataFrame(rows, columns=["dataset", "test", "image"])


def sample_from(candidates: list, size: int, seed: int) -> list:
    """The authors' draw: random.seed(seed); random.shuffle(indices); the first `size` kept,
    returned in their original order."""
    indices = list(range(len(candidates)))
    random.Random(seed).shuffle(indices)
    return [candidates[i] for i in sorted(indices[:size])]


def select_images(dataset: Dataset, evaluation: Evaluation) -> ImageSelection:
    test = dataset.split_list("test")
    positives = [str(dataset.ids[i]) for i in test if dataset.labels[i] == 1]
    if len(positives) < MIN_IMAGES:
        raise ValueError(f"{dataset.name}: only {len(positives)} positive test images; the tests need "
                         f"at least {MIN_IMAGES}: give the test split more images with data.split (fractions, "
                         "e.g. {test_fraction: 0.3, val_fraction: 0.1}, or a split CSV) or a 'split' column in "
                         "the labels CSV of a folder data set")
    utility = positives if evaluation.utility_images == "all" else positives[:evaluation.utility_images]
    sample = sample_from(positives, evaluation.ssim_images, evaluation.sample_seed)
    curve = sample if evaluation.curve_images == "all" else sample[:evaluation.curve_images]
    return ImageSelection(tuple(utility), tuple(sample), tuple(curve))


def validation_positives(dataset: Dataset) -> tuple[str, ...]:
    """The positive validation images in list order: where cheXlocalize's threshold is tuned (the
    sanity check `localization`; never an image of the tests)."""
    return tuple(str(dataset.ids[i]) for i in dataset.split_list("val") if dataset.labels[i] == 1)


def indices_of(dataset: Dataset, image_ids) -> np.ndarray:
    """Row indices of `image_ids` in the data set, in the order given."""
    position = {image_id: i for i, image_id in enumerate(dataset.ids)}
    return np.array([position[i] for i in image_ids], dtype=int)
