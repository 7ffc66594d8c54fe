"""The kit's statistics against R itself (lme4 + lmerTest + multcomp), on the seeded score tables of
tests/r/ (tests/r/make_fixtures.py): R's answers are committed (tests/r/fixtures/r_results.csv, made by
repro/statistics/refit.R), so this suite needs no R; `test_r_live` reruns the script where R and the
three packages are installed.

Tolerances. Estimates and standard errors are deterministic on both sides: they agree to 1e-6.
A P value of all pairwise contrasts with every image in every group is the studentized range on
both sides (R's committed value is mvtnorm's estimate at absolute error 1e-4): agreement to 2e-4.
Otherwise both sides estimate a multivariate normal integral (R: GenzBretz at 1e-4; the kit: quasi-
Monte Carlo with 2^18 points): agreement to 4e-4 for pairwise families (the kit's control variate)
and 1e-3 for the others (multcomp's own default error), and the same verdict at alpha 0.05 for every
contrast whose P values are not both within 1e-3 of 0.05.
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro.statistics.mixed import (EXACT, MIXED, SINGULAR, fit_mixed_model, mixed_model_contrasts,
                                    single_step_p_values)

FIXTURES = Path(__file__).parent / "r" / "fixtures"
REFIT = Path(__file__).parents[1] / "repro" / "statistics" / "refit.R"
ALPHA = 0.05


def _reference(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def kit_results(directory: Path = FIXTURES) -> pd.DataFrame:
    scores = pd.read_csv(directory / "scores.csv", dtype={"image": str, "group": str, "family": str})
    wanted = pd.read_csv(directory / "contrasts.csv", dtype=str)
    rows = []
    for family, mine in wanted.groupby("family", sort=False):
        data = scores[scores["family"] == family]
        pairs = [(g, _reference(r)) for g, r in zip(mine["group"], mine["reference"])]
        found = mixed_model_contrasts(data, pairs, constant_rule=mine["constant_rule"].iloc[0])
        fit = fit_mixed_model(data[["image", "group", "score"]])
        rows += [(family, c.group, str(r), c.estimate, c.std_error, c.z, c.p_value, c.fit, fit.theta,
                  np.sqrt(fit.residual_variance)) for c, (_, r) in zip(found, pairs)]
    return pd.DataFrame(rows, columns=["family", "group", "reference", "estimate", "std_error", "z", "p_value",
                                       "fit", "theta", "sigma"])


@pytest.fixture(scope="module")
def both():
    r = pd.read_csv(FIXTURES / "r_results.csv", dtype={"family": str, "group": str, "reference": str})
    kit = kit_results()
    assert len(kit) == len(r) == 240
    return kit.merge(r, on=["family", "group", "reference"], suffixes=("_kit", "_r"), validate="one_to_one")


def test_estimates_and_standard_errors_are_lme4s(both):
    for column in ("estimate", "std_error", "z"):
        assert np.allclose(both[f"{column}_kit"], both[f"{column}_r"], rtol=1e-5, atol=1e-6), column


def test_the_fit_is_lme4s(both):
    # (kit_results reports the fit without the constant group that constant_group families add)
    fits = both[both["constant_rule"] != "constant_group"].drop_duplicates("family")
    # theta at lme4's optimum; where R's optimizer stops a hair inside the boundary both are singular
    assert np.allclose(fits["theta_kit"], fits["theta_r"], atol=2e-4, rtol=1e-3)
    assert np.allclose(fits["sigma_kit"], fits["sigma_r"], rtol=1e-5)
    assert ((fits["fit"] == SINGULAR) == fits["singular"]).all()
    assert set(fits["fit"]) == {MIXED, SINGULAR}   # the fixtures hold both kinds


def test_p_values_and_verdicts_are_multcomps(both):
    exact = both["family"].str.contains("equal n|randomization|singular")
    pairwise = both["reference"].map(lambda r: not r.replace(".", "").isdigit()) \
        | (both["constant_rule"] == "studentized_range")
    difference = (both["p_value_kit"] - both["p_value_r"]).abs()
    assert difference[exact].max() < 2e-4
    assert difference[pairwise].max() < 4e-4
    assert difference.max() < 1e-3
    clear = ((both["p_value_kit"] - ALPHA).abs() > 1e-3) | ((both["p_value_r"] - ALPHA).abs() > 1e-3)
    assert ((both["p_value_kit"] < ALPHA) == (both["p_value_r"] < ALPHA))[clear].all()


def test_no_fit_is_called_singular_where_lme4_finds_image_variance(both):
    """The round-2 bug: statsmodels' L-BFGS stopped at zero image variance on tables with an ICC
    under 0.5 and the kit fell back to least squares. Every such table is a mixed fit now."""
    mixed = both[~both["singular"]].drop_duplicates("family")
    assert (mixed["fit"] == MIXED).all() and (mixed["theta_kit"] > 0.25).all()


def test_single_step_is_the_studentized_range_for_exchangeable_means():
    groups = 6
    covariance = 0.01 * np.eye(groups) + 0.004
    pairs = [(a, b) for a in range(groups) for b in range(a + 1, groups)]
    contrasts = np.zeros((len(pairs), groups))
    for row, (a, b) in enumerate(pairs):
        contrasts[row, b], contrasts[row, a] = 1, -1
    exact = single_step_p_values([1.5, 2.5, 3.2], contrasts, covariance)
    # the same family with the exchangeable structure broken by 1e-6: the quasi-Monte Carlo path
    nudged = covariance.copy()
    nudged[0, 0] += 1e-6
    estimated = single_step_p_values([1.5, 2.5, 3.2], contrasts, nudged)
    assert np.allclose(exact, estimated, atol=1e-3)
    assert not np.array_equal(exact, estimated)


def need_r():
    """Skip unless Rscript with lme4, lmerTest and multcomp is installed (.ci/run installs them
    from Debian's packages where it can)."""
    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed (Debian: r-base-core r-cran-lme4 r-cran-lmertest r-cran-multcomp); "
                    "the committed R results are checked instead")
    packages = subprocess.run(["Rscript", "-e", "library(lme4); library(lmerTest); library(multcomp)"],
                              capture_output=True, text=True)
    if packages.returncode != 0:
        pytest.skip("R lacks lme4, lmerTest or multcomp: " + packages.stderr.strip().splitlines()[-1])


def run_refit(directory: Path) -> pd.DataFrame:
    done = subprocess.run(["Rscript", str(directory / "refit.R") if (directory / "refit.R").is_file() else str(REFIT),
                           str(directory)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return pd.read_csv(directory / "r_results.csv", dtype={"family": str, "group": str, "reference": str})


# A quick subset for the live rerun (R takes about a minute per ten-group Tukey family at mvtnorm's
# error 1e-4): the randomization test's two groups, a control's three, and nine-group families with
# unequal n under the two constant rules that multcomp computes.
LIVE_FAMILIES = ("randomization, 3 replicates vs baseline", "a control's family of three",
                 "similarity dropped, single_step", "similarity dropped, constant_group")


@pytest.mark.live_r
def test_r_live(tmp_path):
    """refit.R, run now, gives the committed answers (and so the kit's) to within R's own error."""
    need_r()
    for name in ("scores.csv", "contrasts.csv"):
        table = pd.read_csv(FIXTURES / name, dtype=str)
        table[table["family"].isin(LIVE_FAMILIES)].to_csv(tmp_path / name, index=False)
    now = run_refit(tmp_path)
    committed = pd.read_csv(FIXTURES / "r_results.csv", dtype={"family": str, "group": str, "reference": str})
    both = now.merge(committed, on=["family", "group", "reference"], validate="one_to_one")
    assert len(both) == len(now) > 0
    assert np.allclose(both["estimate_x"], both["estimate_y"], atol=1e-7)
    assert np.allclose(both["p_value_x"], both["p_value_y"], atol=5e-4)


@pytest.mark.live_r
def test_export_refits_in_r_to_the_kits_p_values(smoke_run, tmp_path, capsys):
    """`repro statistics --export-r` writes every fitted family; R refits them to the kit's P values."""
    from repro.cli import main
    from repro.statistics.mixed import format_p
    code = main(["statistics", "--experiment", "smoke", "--run-dir", str(smoke_run.run_dir),
                 "--export-r", str(tmp_path)])
    assert code == 0 and "refit.R" in capsys.readouterr().out
    contrasts = pd.read_csv(tmp_path / "contrasts.csv", dtype={"reference": str})
    cells = smoke_run.cells
    measured = cells[cells["column"].str.startswith("P_") & cells["p"].ne("") & cells["p"].ne("NA")]
    assert len(contrasts) == len(measured) > 0
    assert sorted(contrasts["p_value"].map(format_p)) == sorted(measured["p"])
    need_r()
    r = run_refit(tmp_path)
    # lme4 cannot fit a family whose scores leave no residual variance (the smoke run's EDGE, whose
    # maps ignore the model, against localizers that agree exactly): the kit names those fits
    refused = r["p_value"].isna()
    assert (refused == (contrasts["fit"] == EXACT)).all()
    fitted = r[~refused]
    assert len(fitted) > 0
    assert np.allclose(fitted["estimate"], contrasts["estimate"][~refused], rtol=1e-5, atol=1e-7)
    assert np.allclose(fitted["p_value"], contrasts["p_value"][~refused], atol=1e-3)
