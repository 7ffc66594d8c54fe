"""Verdict stability: the cluster bootstrap's resamples, agreement on planted effects, replicates."""
import numpy as np
import pandas as pd

from repro.protocol import KAGGLE_DATASETS
from repro.statistics.cells import result_cells
from repro.statistics.stability import replicate_choices, resample_images, verdict_stability
from tests.helpers import main_choice, synthetic_scores

SIIM = KAGGLE_DATASETS["siim"]
METHODS = ("GRAD", "XRAI")


def test_a_resample_draws_whole_images_with_replacement():
    scores = synthetic_scores(methods=METHODS, n_images=10)
    resample = resample_images(scores, np.random.default_rng(0))
    for test, rows in scores.groupby("test"):
        drawn = resample[resample.test == test]
        assert drawn["image"].nunique() == rows["image"].nunique()          # as many images as the test had
        assert len(drawn) == len(rows)                                      # each with all of its rows
        originals = drawn["image"].str.split("#").str[0]
        assert originals.nunique() < rows["image"].nunique()                # some drawn twice, some not at all
        one = drawn[drawn.image == drawn.image.iloc[0]]
        source = rows[rows.image == one.image.iloc[0].split("#")[0]]
        np.testing.assert_array_equal(np.sort(one.score.values), np.sort(source.score.values))


def test_strong_planted_effects_are_firm_and_a_null_one_is_fragile():
    scores = synthetic_scores(methods=METHODS, n_images=20)
    # GRAD's reproducibility sits right on the 0.5 line: its verdict against 0.5 must wobble.
    reprod = (scores.test == "reproducibility") & (scores.group == "GRAD")
    scores.loc[reprod, "score"] = 0.5 + np.random.default_rng(3).normal(0, 0.05, reprod.sum())
    cells = result_cells(scores, SIIM, main_choice(), methods=METHODS)
    firmness = verdict_stability(scores, cells, SIIM, main_choice(), methods=METHODS, form="replicates",
                                 resamples=20, seed=0, fragile_above=0.1).set_index(["table", "method", "column"])
    assert firmness.loc[(3, "XRAI", "P_AVG"), "bootstrap_agreement"] == 1.0
    assert not firmness.loc[(3, "XRAI", "P_AVG"), "fragile"]
    assert firmness.loc[(3, "XRAI", "P_AVG"), "replicate_agreement"] == 1.0
    assert firmness.loc[(4, "GRAD", "P_Reprod_Low"), "fragile"]
    assert (firmness["bootstrap_resamples"] == 20).all()


def test_the_same_seed_gives_the_same_stability():
    scores = synthetic_scores(methods=METHODS, n_images=8)
    cells = result_cells(scores, SIIM, main_choice(), methods=METHODS)
    run = [verdict_stability(scores, cells, SIIM, main_choice(), methods=METHODS, form="replicates", resamples=5,
                             seed=1, fragile_above=0.1) for _ in range(2)]
    pd.testing.assert_frame_equal(*run)


def test_each_replicate_takes_the_first_role_once():
    choices = replicate_choices(main_choice())
    assert [c.utility for c in choices] == ["r1", "r2", "r3"]
    assert [c.replicates for c in choices] == [("r1",), ("r2",), ("r3",)]
    assert [c.repeatability for c in choices] == ["r1~r2", "r1~r3", "r2~r3"]
    assert [c.reproducibility for c in choices] == ["r1~densenet", "r2~densenet", "r3~densenet"]
