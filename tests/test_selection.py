"""Which images each test scores: all positives for utility, the authors' seeded sample of 100."""
import random

import numpy as np

from repro.data.dataset import Dataset
from repro.evaluation.selection import sample_from, select_images
from repro.experiments import Evaluation


def authors_sample(labels_in_test_order, size=100, seed=1):
    """create_maps_rsna.py lines 31 and 250-261, verbatim in spirit: random.seed(1); the indices of
    the positives; random.shuffle; the first `size` flagged."""
    random.seed(seed)
    indices = [i for i in range(len(labels_in_test_order)) if labels_in_test_order[i] == 1]
    random.shuffle(indices)
    mask = np.zeros(len(labels_in_test_order))
    for i in range(min(size, len(indices))):
        mask[indices[i]] = 1
    return mask


def test_sample_is_the_authors_draw():
    labels = np.random.default_rng(0).integers(0, 2, 400)
    positions = [i for i, label in enumerate(labels) if label == 1]
    chosen = sample_from(positions, 100, 1)
    np.testing.assert_array_equal(np.flatnonzero(authors_sample(labels)), chosen)
    assert chosen == sorted(chosen)       # kept in test-list order


def toy_dataset(n=30):
    labels = np.array([1, 0, 1] * (n // 3), dtype=np.int8)
    splits = np.array(["test"] * n)
    return Dataset(name="siim", size=16, ids=np.array([f"i{k}" for k in range(n)]), labels=labels, splits=splits,
                   images=np.zeros((n, 16, 16), np.uint16), masks=np.zeros((n, 16, 16), bool),
                   split_rank=np.arange(n)[::-1].astype(np.int32))


def test_selection_caps_and_orders():
    dataset = toy_dataset()
    order = list(dataset.split_list("test"))
    positives = [f"i{k}" for k in order if dataset.labels[k] == 1]
    everything = select_images(dataset, Evaluation())
    assert list(everything.utility) == positives                   # all positives, in test-list order
    assert list(everything.sample) == positives                    # fewer than 100: all of them
    capped = select_images(dataset, Evaluation(utility_images=5, ssim_images=8, curve_images=3))
    assert list(capped.utility) == positives[:5]
    assert len(capped.sample) == 8 and set(capped.sample) <= set(positives)
    assert capped.curve == capped.sample[:3]
    frame = capped.frame("siim")
    assert set(frame.test) == {"utility", "randomization", "repeatability", "reproducibility", "cascade_curves"}
