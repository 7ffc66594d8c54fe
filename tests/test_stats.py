import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from repro.protocol import FAIL, NOT_MEASURED, PASS, UNCERTAIN
from repro.statistics.mixed import format_p, mixed_model_contrasts, tukey_p_value


def planted_scores(effects: dict[str, float], n_images=60, seed=0, noise=0.05, image_sd=0.1):
    rng = np.random.default_rng(seed)
    image_effect = rng.normal(0, image_sd, n_images)
    rows = []
    for group, effect in effects.items():
        for image in range(n_images):
            rows.append((f"img{image}", group, 0.5 + effect + image_effect[image] + rng.normal(0, noise)))
    return pd.DataFrame(rows, columns=["image", "group", "score"])


def test_planted_effects_detected_and_null_uncertain():
    scores = planted_scores({"baseline": 0.0, "better": 0.1, "same": 0.0, "worse": -0.1})
    results = {c.group: c for c in mixed_model_contrasts(
        scores, [("better", "baseline"), ("same", "baseline"), ("worse", "baseline")])}
    assert results["better"].verdict == PASS and results["better"].p_value < 0.001
    assert results["worse"].verdict == FAIL and results["worse"].p_value < 0.001
    assert results["same"].verdict == UNCERTAIN and results["same"].p_value > 0.05


def test_lower_is_pass_direction():
    scores = planted_scores({"baseline": 0.0, "randomized": -0.1})
    (contrast,) = mixed_model_contrasts(scores, [("randomized", "baseline")], higher_is_pass=False)
    assert contrast.verdict == PASS


def test_balanced_estimates_equal_mean_differences():
    scores = planted_scores({"a": 0.0, "b": 0.03, "c": -0.02}, seed=3)
    means = scores.groupby("group")["score"].mean()
    contrasts = mixed_model_contrasts(scores, [("b", "a"), ("c", "a"), ("b", "c")])
    for c in contrasts:
        assert c.estimate == pytest.approx(means[c.group] - means[c.reference], abs=1e-6)
    # Balanced with a random image intercept: se of a difference = sqrt(2 * residual var / n).
    wide = scores.pivot(index="image", columns="group", values="score")
    residual = wide.sub(wide.mean(axis=1), axis=0).sub(wide.mean(axis=0) - wide.values.mean(), axis=1)
    sigma2 = (residual.values ** 2).sum() / ((len(wide) - 1) * (wide.shape[1] - 1))
    assert contrasts[0].std_error == pytest.approx(np.sqrt(2 * sigma2 / len(wide)), rel=0.02)


def test_tukey_two_groups_is_the_plain_z_test():
    for z in (0.5, 1.96, 3.0):
        assert tukey_p_value(z, 2) == pytest.approx(2 * norm.sf(z), rel=1e-4)
    assert tukey_p_value(2.0, 10) > tukey_p_value(2.0, 3) > tukey_p_value(2.0, 2)


def test_constant_baseline_group():
    scores = planted_scores({"method": -0.2, "other": 0.2, "near": 0.0}, n_images=40)
    results = mixed_model_contrasts(scores, [("method", 0.5), ("other", 0.5), ("near", 0.5)])
    assert [c.verdict for c in results] == [FAIL, PASS, UNCERTAIN]
    means = scores.groupby("group")["score"].mean()
    assert results[0].estimate == pytest.approx(means["method"] - 0.5, abs=1e-6)


def test_nan_rows_dropped_and_a_group_without_scores_not_measured():
    scores = planted_scores({"a": 0.0, "b": 0.1})
    scores.loc[0, "score"] = np.nan
    (contrast,) = mixed_model_contrasts(scores, [("b", "a")])
    assert contrast.verdict == PASS and contrast.n == 2 * 60 - 1
    missing, kept = mixed_model_contrasts(scores, [("zzz", "a"), ("b", "a")])
    assert missing.verdict == NOT_MEASURED and np.isnan(missing.p_value) and kept.verdict == PASS


def test_unequal_n_uses_the_fit_of_what_remains():
    """Degenerate maps leave groups with different n: the contrast is the fitted difference."""
    scores = planted_scores({"a": 0.0, "b": 0.1}, n_images=40)
    scores = scores.drop(index=scores[(scores.group == "b")].index[:15])
    (contrast,) = mixed_model_contrasts(scores, [("b", "a")])
    assert contrast.verdict == PASS and contrast.n == 40 + 25
    assert contrast.estimate == pytest.approx(0.1, abs=0.03)


def test_format_p():
    assert [format_p(p) for p in (0.0004, 0.004, 0.02, 0.234, 1.0)] == ["<.001", ".004", ".02", ".23", "1.00"]


def test_boundary_fit_without_image_variance_gives_the_group_means():
    """Few images and no shared image variance: statsmodels' MixedLM lands on the boundary and
    can return wrong means with huge standard errors; the result must still be the OLS one."""
    rng = np.random.default_rng(5)
    rows = [(f"img{i}", g, centre + rng.normal(0, 0.03)) for g, centre in
            {"a": 0.05, "b": 0.25, "c": 0.6, "d": 0.77}.items() for i in range(3)]
    scores = pd.DataFrame(rows, columns=["image", "group", "score"])
    means = scores.groupby("group")["score"].mean()
    contrast, = mixed_model_contrasts(scores, [("a", 0.5)])
    assert contrast.estimate == pytest.approx(means["a"] - 0.5, abs=1e-9)
    assert 0 < contrast.std_error < 0.1 and contrast.verdict == FAIL
