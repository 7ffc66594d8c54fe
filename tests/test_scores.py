"""Per-image scores of the four tests on known answers, and degenerate maps dropped."""
import numpy as np
import pytest

from repro.evaluation.scores import (as_uint8, average_mask, edge_control, is_all_nan, oracle_control,
                                     paired_ssim, random_pair_baseline, utility)
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
    perfect = utility(masks, oracle_control(masks))
    assert np.allclose(perfect["auprc"], 1.0) and np.allclose(perfect["roc_auc"], 1.0)
    random = utility(masks, noise)
    assert random["auprc"].mean() < 0.3 and 0.2 < random["roc_auc"].mean() < 0.8


def test_degenerate_maps_score_nan_and_are_found():
    noise, masks = blob_maps()
    noise[2] = np.nan
    scores = utility(masks, noise)
    assert np.isnan(scores["auprc"][2]) and np.isfinite(np.delete(scores["auprc"], 2)).all()
    np.testing.assert_array_equal(is_all_nan(noise), [False, False, True, False, False, False])
    assert np.isnan(paired_ssim(noise, noise)[2])


def test_average_mask_is_the_pixel_mean_negatives_included():
    _, masks = blob_maps()
    masks[0] = False
    np.testing.assert_allclose(average_mask(masks), masks.mean(axis=0))


def test_paired_ssim_known_answers():
    maps, _ = blob_maps()
    assert np.allclose(paired_ssim(maps, maps), 1.0)
    shifted = np.roll(maps, 1, axis=0)
    np.testing.assert_allclose(paired_ssim(maps, shifted), [ssim(a, b) for a, b in zip(maps, shifted)])


def test_random_pair_baseline_excludes_self_is_seeded_and_skips_degenerate_partners():
    maps, _ = blob_maps(n=5)
    baseline = random_pair_baseline(maps, pairs_per_image=50, seed=1)
    assert np.all(baseline < 1.0)  # a self-pair would give SSIM 1
    np.testing.assert_array_equal(baseline, random_pair_baseline(maps, pairs_per_image=50, seed=1))
    two = maps[:2]   # each one's only partner is the other
    np.testing.assert_allclose(random_pair_baseline(two, pairs_per_image=3), ssim(two[0], two[1]))
    three = maps[:3].copy()
    three[2] = np.nan
    result = random_pair_baseline(three, pairs_per_image=40, seed=0)
    assert np.isnan(result[2])
    np.testing.assert_allclose(result[:2], ssim(three[0], three[1]))   # the NaN partner left out


def test_uint8_maps_take_skimages_uint8_range():
    from skimage.metrics import structural_similarity
    maps, _ = blob_maps()
    eight = as_uint8(maps)
    assert eight.dtype == np.uint8 and eight.max() <= 255
    np.testing.assert_allclose(paired_ssim(eight[:2], eight[1:3], data_range=255.0),
                               [structural_similarity(eight[0], eight[1]), structural_similarity(eight[1], eight[2])])


def test_edge_control_ignores_everything_but_the_image():
    images = np.zeros((2, 16, 16), np.float32)
    images[:, :, 8:] = 0.8
    edges = edge_control(images)
    assert edges.max() == 1.0 and edges[:, :, :6].max() == 0.0 and edges[:, :, 7:9].min() > 0.5
    assert not edge_control(np.zeros((1, 16, 16))).any()  # a flat image: zeros, no NaN


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected a stack"):
        utility(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="stacks differ"):
        paired_ssim(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)))
