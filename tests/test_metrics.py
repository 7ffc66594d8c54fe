import numpy as np
import pytest
from skimage.metrics import structural_similarity
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from repro.metrics import auprc, is_constant, roc_auc, ssim


def test_perfect_map_scores_one():
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    assert auprc(mask, mask.astype(float)) == pytest.approx(1.0)
    assert auprc(mask, mask.astype(float), method="average_precision") == pytest.approx(1.0)
    assert roc_auc(mask, mask.astype(float)) == pytest.approx(1.0)
    assert roc_auc(mask, 1.0 - mask) == pytest.approx(0.0)


def test_hand_computed_case():
    # Four pixels, scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg).
    mask = np.array([[1, 0], [1, 0]], bool)
    smap = np.array([[0.9, 0.8], [0.7, 0.1]])
    # PR points (recall, precision): (0, 1), (.5, 1), (.5, .5), (1, 2/3), (1, .5)
    # trapezoid over recall: 0 -> .5 at precision 1, then .5 -> 1 from .5 to 2/3 = 0.5 + 0.5 * (1/2 + 2/3) / 2
    assert auprc(mask, smap) == pytest.approx(0.5 + 0.25 * (0.5 + 2 / 3))
    assert auprc(mask, smap, method="average_precision") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert roc_auc(mask, smap) == pytest.approx(0.75)


def test_matches_sklearn_on_random_maps():
    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = rng.random((20, 20)) < 0.1
        smap = rng.random((20, 20)) + mask * 0.3
        precision, recall, _ = precision_recall_curve(mask.ravel(), smap.ravel())
        assert auprc(mask, smap) == pytest.approx(auc(recall, precision))
        assert auprc(mask, smap, method="average_precision") == pytest.approx(
            average_precision_score(mask.ravel(), smap.ravel()))
        assert roc_auc(mask, smap) == pytest.approx(roc_auc_score(mask.ravel(), smap.ravel()))


def test_degenerate_inputs_documented():
    mask = np.zeros((10, 10), bool)
    mask[:2] = True  # 20% of pixels
    constant = np.zeros((10, 10))
    assert is_constant(constant) and not is_constant(mask.astype(float))
    assert auprc(mask, constant) == pytest.approx((1 + 0.2) / 2)   # the trapezoid's optimism
    assert auprc(mask, constant, method="average_precision") == pytest.approx(0.2)
    assert roc_auc(mask, constant) == pytest.approx(0.5)
    empty = np.zeros((10, 10), bool)
    assert np.isnan(auprc(empty, constant)) and np.isnan(roc_auc(empty, np.random.rand(10, 10)))


def test_ssim_matches_skimage_and_defaults():
    rng = np.random.default_rng(2)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=2.0))
    assert ssim(a, b, data_range=1.0) == pytest.approx(structural_similarity(a, b, data_range=1.0))
    assert ssim(a, b, data_range=1.0) < ssim(a, b)  # a wider range inflates SSIM of unrelated maps
    assert np.isfinite(ssim(np.zeros((32, 32)), np.zeros((32, 32))))


@pytest.mark.parametrize("call, message", [
    (lambda: auprc(np.zeros((4, 4)), np.zeros((5, 5))), "same shape"),
    (lambda: auprc(np.zeros((4, 4)), np.full((4, 4), np.inf)), "infinite"),
    (lambda: auprc(np.full((4, 4), 2), np.zeros((4, 4))), "boolean or 0/1"),
    (lambda: auprc(np.zeros((4, 4)), np.zeros((4, 4)), method="ap"), "method must be"),
    (lambda: ssim(np.zeros((4, 4)), np.zeros((4, 4))), "at least 7x7"),
    (lambda: ssim(np.zeros((8, 8)), np.zeros((8, 9))), "same shape"),
])
def test_bad_input_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_ssim_pairs_equal_skimage_to_the_last_bit():
    from repro.metrics import SsimStats, ssim_of, ssim_pairs
    rng = np.random.default_rng(2)
    a, b = rng.random((6, 24, 30)), rng.random((6, 24, 30))
    b[1] = a[1]
    reference = [structural_similarity(x, y, data_range=2.0) for x, y in zip(a, b)]
    np.testing.assert_array_equal(ssim_pairs(a, b), reference)
    assert ssim_pairs(a, b)[1] == 1.0
    stats = SsimStats(a)
    assert ssim_of(stats, 0, stats, 3, data_range=2.0) == structural_similarity(a[0], a[3], data_range=2.0)
    eight = (a * 255).round().astype(np.uint8), (b * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(ssim_pairs(*eight, data_range=255),
                                  [structural_similarity(x, y) for x, y in zip(*eight)])


def test_a_degenerate_map_scores_nan():
    from repro.metrics import ssim_pairs
    mask = np.zeros((16, 16), bool)
    mask[2:5, 2:5] = True
    nan_map = np.full((16, 16), np.nan)
    assert np.isnan(auprc(mask, nan_map)) and np.isnan(roc_auc(mask, nan_map)) and np.isnan(ssim(nan_map, nan_map))
    pair = ssim_pairs(np.stack([nan_map, mask * 1.0]), np.stack([mask * 1.0, mask * 1.0]))
    assert np.isnan(pair[0]) and pair[1] == 1.0
    with pytest.raises(ValueError, match="infinite"):
        auprc(mask, np.full((16, 16), np.inf))
