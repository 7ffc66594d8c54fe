import numpy as np
import pytest

from repro.evaluation.scores import (Degenerate, average_mask, edge_control, oracle_control, paired_ssim,
                                     random_pair_baseline, utility)
from repro.metrics import ssim


def blob_maps(n=6, size=24, seed=0):
    rng = np.random.default_rng(seed)
    maps = rng.random((n, size, size)) * 0.2
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        r, c = rng.integers(2, size - 8, 2)
        masks[i, r:r + 6, c:c + 6] = True
    return maps, masks


def test_utility_of_oracle_is_perfect_and_of_noise_is_low():
    noise, masks = blob_maps()
    perfect = utility(oracle_control(masks), masks)
    assert np.allclose(perfect["auprc"], 1.0) and np.allclose(perfect["roc_auc"], 1.0)
    random = utility(noise, masks)
    assert random["auprc"].mean() < 0.3 and 0.2 < random["roc_auc"].mean() < 0.8


def test_average_mask_is_the_pixel_mean():
    _, masks = blob_maps()
    np.testing.assert_allclose(average_mask(masks), masks.mean(axis=0))


def test_paired_ssim_known_answers():
    maps, _ = blob_maps()
    assert np.allclose(paired_ssim(maps, maps), 1.0)
    shifted = np.roll(maps, 1, axis=0)
    np.testing.assert_allclose(paired_ssim(maps, shifted), [ssim(a, b) for a, b in zip(maps, shifted)])


def test_random_pair_baseline_excludes_self_and_is_deterministic():
    maps, _ = blob_maps(n=5)
    maps[0] = 0.0  # identical to nothing else
    baseline = random_pair_baseline(maps, pairs_per_image=50, seed=1)
    assert np.all(baseline < 1.0)  # a self-pair would give SSIM 1
    np.testing.assert_array_equal(baseline, random_pair_baseline(maps, pairs_per_image=50, seed=1))
    # Two maps: each one's only partner is the other.
    two = maps[:2]
    np.testing.assert_allclose(random_pair_baseline(two, pairs_per_image=3), ssim(two[0], two[1]))


def test_edge_control_ignores_everything_but_the_image():
    images = np.zeros((2, 16, 16), np.float32)
    images[:, :, 8:] = 200.0
    edges = edge_control(images)
    assert edges.max() == 1.0 and edges[:, :, :6].max() == 0.0 and edges[:, :, 7:9].min() > 0.5
    assert not edge_control(np.zeros((1, 16, 16))).any()  # a flat image: zeros, no NaN


def test_degenerate_counts():
    counts = Degenerate()
    counts.count_constant("GCAM", np.stack([np.zeros((8, 8)), np.eye(8)]))
    counts.count_nan("XRAI", np.array([0.1, np.nan]))
    assert counts.constant_maps == {"GCAM": 1} and counts.nan_ssim == {"XRAI": 1}


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected a stack"):
        utility(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="differ in shape"):
        paired_ssim(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)))


def test_fully_randomized_is_the_last_cascade_state():
    from repro.evaluation.scores import FULLY_RANDOMIZED
    from repro.models.cascade import STATES
    assert FULLY_RANDOMIZED == STATES[-1]
