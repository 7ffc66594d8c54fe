"""The sanity checks through the pipeline (issue 29, phase 2): per-image scores from maps with known
answers, their cells and verdicts through the mixed model, the faithfulness unit of work on a model
whose probability is known, the report's tables and section, the schema and the reuse of a run."""
import numpy as np
import pandas as pd
import pytest

from repro.evaluation.sanity import CONSTANT, NOISE, faithfulness_scores, sanity_scores, smprt_scores
from repro.evaluation.scoring import TruthFor
from repro.evaluation.selection import ImageSelection
from repro.experiments import ExperimentError, load_experiment, results_settings
from repro.metrics import auprc
from repro.protocol import (AVERAGE_PRECISION, BOTTOM_UP, DELETION, EMPRT, FAIL, KAGGLE_DATASETS, LOCALIZATION,
                            NOT_MEASURED, NULL_MAPS, PASS, RANDOM_LOGIT, ROAD, SANITY_TESTS, SMPRT)
from repro.sanity import ROAD_FRACTIONS, deletion_curve
from repro.statistics.cells import ModelChoice, PostHoc
from repro.statistics.sanity import sanity_cells

SIZE, N = 16, 8
SIIM = KAGGLE_DATASETS["siim"]


def planted():
    """N images whose finding is a square at a different place in each. GOOD's map is the mask in
    the trained model and seeded noise in the fully randomized one (a map that follows the weights);
    BAD's is a fixed ramp in both states (a map that ignores the weights)."""
    ids = tuple(f"img{i}" for i in range(N))
    masks, noise = {}, {}
    rng = np.random.default_rng(0)
    for k, image_id in enumerate(ids):
        mask = np.zeros((SIZE, SIZE), bool)
        mask[k:k + 5, 2 * (k % 4):2 * (k % 4) + 5] = True
        masks[image_id] = mask
        noise[image_id] = rng.random((SIZE, SIZE)).astype(np.float32)
    ramp = np.linspace(0, 1, SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)

    def maps(model, state, method, image_ids):
        if method == "GOOD":
            return np.stack([masks[i].astype(np.float32) if state == "original" else noise[i] for i in image_ids])
        if method == "BAD":
            return np.stack([ramp for _ in image_ids])
        if method == "LOCALIZER":
            return np.stack([masks[i].astype(np.float32) for i in image_ids])
        raise KeyError(method)

    truth = TruthFor(masks=masks, images={i: ramp for i in ids}, evidence=None,
                     average_mask=np.mean([masks[i] for i in ids], axis=0))
    return ids, ImageSelection(ids, ids, ids[:2]), truth, maps


def experiment_settings(tests):
    return load_experiment("smoke", overrides=[f"evaluation.sanity.tests=[{', '.join(tests)}]",
                                               "evaluation.controls=false"])


@pytest.fixture(scope="module")
def scored():
    ids, selection, truth, maps = planted()
    experiment = experiment_settings([EMPRT, BOTTOM_UP, NULL_MAPS, LOCALIZATION, AVERAGE_PRECISION])
    roles = experiment.roles
    states = {r: ("original", "logits", "mixed1") for r in roles.replicates}
    scores = sanity_scores(SIIM, selection, truth, maps, roles=roles, states=states, localizers=("unet_r1",),
                           methods=["GOOD", "BAD"], evaluation=experiment.settings.evaluation, shape=(SIZE, SIZE))
    choice = ModelChoice(utility=roles.replicates[0], replicates=roles.replicates, repeatability=None,
                         reproducibility=None, localizer="unet_r1", localizer_pair=None)
    return ids, truth, scores, choice, sanity_cells(scores, SIIM, choice, methods=["GOOD", "BAD"], controls=(NOISE,))


def values(scores, test, metric, group, **where):
    rows = scores[(scores.test == test) & (scores.metric == metric) & (scores.group == group)]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows["score"].to_numpy()


def cell(cells, test, method, column):
    row = cells[(cells.test == test) & (cells.method == method) & (cells.column == column)]
    assert len(row) == 1, (test, method, column)
    return row.iloc[0]


def test_emprt_scores_a_map_that_ignores_the_weights_zero_and_one_that_follows_them_above(scored):
    _, _, scores, _, cells = scored
    assert np.all(values(scores, EMPRT, "emprt", "BAD") == 0.0)           # the same map in both states
    assert np.all(values(scores, EMPRT, "emprt", "GOOD") > 1.0)           # two levels -> noise: entropy rises
    assert np.all(np.abs(values(scores, EMPRT, "emprt", NOISE)) < 0.05)   # noise -> noise
    assert cell(cells, EMPRT, "GOOD", "P_Zero").verdict == PASS
    assert cell(cells, EMPRT, "BAD", "P_Zero").verdict != PASS
    assert cell(cells, EMPRT, NOISE, "P_Zero").verdict != PASS


def test_bottom_up_passes_a_map_that_follows_the_weights_and_no_null_map(scored):
    """GOOD's map turns to noise in every randomized state, so at the first bottom-up state too; BAD's
    ramp and EDGE-like maps stay (SSIM 1); the per-state noise map is no less alike than two images'."""
    ids, _, scores, _, cells = scored
    first = scores[(scores.test == BOTTOM_UP) & (scores.metric == "ssim") & (scores.state != "baseline")]
    assert set(first.state) == {"up_to_mixed1"} and set(first.image) == set(ids)      # the sample
    curve = scores[(scores.test == BOTTOM_UP) & (scores.metric == "ssim_curve")]
    assert list(dict.fromkeys(curve.state)) == ["up_to_mixed1", "up_to_logits"]      # bottom-up order
    assert set(curve.image) == set(ids[:2])                                          # the curve images
    assert np.all(values(scores, BOTTOM_UP, "ssim", "BAD", state="up_to_mixed1") == 1.0)
    assert np.all(values(scores, BOTTOM_UP, "ssim_curve", "BAD") == 1.0)
    assert cell(cells, BOTTOM_UP, "GOOD", "P_BottomUp").verdict == PASS
    assert cell(cells, BOTTOM_UP, "BAD", "P_BottomUp").verdict != PASS      # the same ramp for every image
    assert cell(cells, BOTTOM_UP, NOISE, "P_BottomUp").verdict != PASS
    baseline = values(scores, BOTTOM_UP, "ssim", "GOOD", state="baseline")
    assert cell(cells, BOTTOM_UP, "GOOD", "RandBaseline")["mean"] == pytest.approx(np.nanmean(baseline), abs=1e-4)


def test_smprt_scores_known_answers():
    """Denoised maps given: GOOD's randomized map is noise against its mask (passes, below the
    random-pair baseline of the masks), BAD's is its trained map (SSIM 1: does not pass)."""
    ids, _, truth, maps = planted()
    evaluation = experiment_settings([SMPRT]).settings.evaluation
    frames = [smprt_scores("siim", group, "m", "mixed1", ids, maps("m", "original", group, ids),
                           maps("m", "mixed1", group, ids), evaluation=evaluation) for group in ("GOOD", "BAD")]
    scores = pd.concat(frames, ignore_index=True)
    assert set(scores.test) == {SMPRT} and set(scores.state) == {"mixed1", "baseline"}
    assert np.all(values(scores, SMPRT, "ssim", "BAD", state="mixed1") == 1.0)
    choice = ModelChoice(utility="m", replicates=("m",), repeatability=None, reproducibility=None, localizer=None,
                         localizer_pair=None)
    cells = sanity_cells(scores, SIIM, choice, methods=["GOOD", "BAD"])
    assert cell(cells, SMPRT, "GOOD", "P_Randomization").verdict == PASS
    assert cell(cells, SMPRT, "BAD", "P_Randomization").verdict != PASS
    assert cell(cells, SMPRT, "BAD", "FullyRandomized")["mean"] == 1.0
    with pytest.raises(ValueError, match="3 ids, 3 trained and 2 randomized"):
        smprt_scores("siim", "GOOD", "m", "mixed1", ids[:3], maps("m", "original", "GOOD", ids[:3]),
                     maps("m", "mixed1", "GOOD", ids[:2]), evaluation=evaluation)


def test_null_maps_fail_the_randomization_test(scored):
    _, _, scores, _, cells = scored
    fully = scores[(scores.test == NULL_MAPS) & (scores.state != "baseline")]
    assert np.allclose(fully.loc[fully.group == CONSTANT, "score"], 1.0)       # SSIM of a constant with itself
    assert np.allclose(values(scores, NULL_MAPS, "ssim", CONSTANT, state="baseline"), 1.0)
    noise = fully.loc[fully.group == NOISE, "score"]
    assert 0.0 < noise.mean() < 0.06        # the similarity "falls" (Binder et al.'s reading: a pass) ...
    assert cell(cells, NULL_MAPS, CONSTANT, "P_Randomization").verdict != PASS
    assert cell(cells, NULL_MAPS, NOISE, "P_Randomization").verdict != PASS   # ... but not below its baseline
    assert cell(cells, NULL_MAPS, NOISE, "FullyRandomized")["mean"] == pytest.approx(noise.mean(), abs=1e-4)


def test_localization_of_a_map_equal_to_the_mask(scored):
    ids, truth, scores, _, cells = scored
    assert np.all(values(scores, LOCALIZATION, "iou_otsu", "GOOD") == 1.0)
    assert np.all(values(scores, LOCALIZATION, "hit", "GOOD") == 1.0)
    assert np.all(values(scores, AVERAGE_PRECISION, "ap", "GOOD") == 1.0)
    average = values(scores, AVERAGE_PRECISION, "ap", "AVG")
    assert average == pytest.approx([auprc(truth.masks[i], truth.average_mask, method="average_precision") for i in ids])
    assert cell(cells, LOCALIZATION, "GOOD", "IoU")["mean"] == 1.0
    assert cell(cells, LOCALIZATION, "GOOD", "P_IoU_AVG").verdict == PASS
    assert cell(cells, LOCALIZATION, "GOOD", "P_Hit_AVG").verdict == PASS
    # the localizer's map is the mask too: no difference from it
    assert cell(cells, LOCALIZATION, "GOOD", "P_IoU_High").verdict not in (PASS, FAIL)
    # the ramp's maximum is the last pixel, outside every mask: no hit
    assert np.all(values(scores, LOCALIZATION, "hit", "BAD") == 0.0)
    assert cell(cells, LOCALIZATION, "BAD", "P_Hit_High").verdict == FAIL


def test_cells_resampled_keep_their_verdicts_when_they_are_clear(scored):
    from repro.statistics.sanity import sanity_stability
    _, _, scores, choice, cells = scored
    firm = sanity_stability(scores, cells, SIIM, choice, methods=["GOOD", "BAD"], controls=(NOISE,), resamples=5,
                            seed=0, fragile_above=0.1)
    row = firm[(firm.test == EMPRT) & (firm.method == "GOOD")].iloc[0]
    assert row.bootstrap_agreement == 1.0 and row.bootstrap_resamples == 5 and not row.fragile


def region_logits(region):
    """Logits (0, logit(p)) with p the mean of the image's first channel over `region`: the softmax
    probability of class 1 is that mean, clipped to [1e-6, 1 - 1e-6]."""
    def logits(batch):
        p = np.clip(batch[:, region[0], region[1], 0].reshape(len(batch), -1).mean(axis=1), 1e-6, 1 - 1e-6)
        return np.stack([np.zeros(len(batch)), np.log(p / (1 - p))], axis=1)
    return logits


def test_deletion_of_the_model_s_own_region_by_hand():
    """4 x 4 ones, the model the mean of a 2 x 2 region: the map equal to the region deletes it in the
    first of 4 steps (curve 1, 0, 0, 0, 0: AUC 0.125); the reversed map last (AUC 0.875)."""
    sanity = experiment_settings([DELETION]).settings.evaluation.sanity.model_copy(update={"deletion_steps": 4})
    region = (slice(0, 2), slice(0, 2))
    image = np.ones((4, 4, 3), np.float32)
    smap = np.zeros((4, 4), np.float32)
    smap[region] = 1.0
    frame = faithfulness_scores("siim", DELETION, "G", "m", ["a", "b"], np.stack([image, image]),
                                np.stack([smap, 1 - smap]), region_logits(region), sanity)
    deletion = frame[frame.metric == "deletion_auc"].score.to_numpy()
    assert deletion == pytest.approx([0.125, 0.875], abs=1e-5)
    # the same as the curve itself with the class's probability
    direct = deletion_curve(image, smap, lambda b: np.clip(b[:, :2, :2, 0].reshape(len(b), -1).mean(axis=1),
                                                           1e-6, 1 - 1e-6), 4).auc
    assert deletion[0] == pytest.approx(direct, abs=1e-9)
    assert set(frame.metric) == {"deletion_auc", "insertion_auc"} and set(frame.image) == {"a", "b"}


def test_road_gap_of_a_bright_square_and_its_own_map():
    """A bright square (10% of the pixels) on black, the model its mean brightness: MoRF removes it at
    the first fraction (imputed from black: about 0), LeRF keeps it to the last (1): the gap is about 1,
    and the reversed map's about -1."""
    sanity = experiment_settings([ROAD]).settings.evaluation.sanity
    image = np.zeros((10, 10, 3), np.float32)
    region = (slice(2, 4), slice(2, 7))
    image[region] = 255.0
    smap = (image[..., 0] > 0).astype(np.float32)

    def logits(batch):
        p = np.clip(batch[:, region[0], region[1], 0].reshape(len(batch), -1).mean(axis=1) / 255.0, 1e-6, 1 - 1e-6)
        return np.stack([np.zeros(len(batch)), np.log(p / (1 - p))], axis=1)

    frame = faithfulness_scores("siim", ROAD, "G", "m", ["a", "b"], np.stack([image, image]),
                                np.stack([smap, 1 - smap]), logits, sanity)
    gap = frame[frame.metric == "road_gap"].score.to_numpy()
    assert gap[0] > 0.95 and gap[1] < -0.95
    assert len(ROAD_FRACTIONS) == 9


def test_faithfulness_of_a_nan_map_is_nan_without_model_calls():
    sanity = experiment_settings([DELETION]).settings.evaluation.sanity
    calls = []

    def logits(batch):
        calls.append(len(batch))
        return np.zeros((len(batch), 2))

    frame = faithfulness_scores("siim", DELETION, "G", "m", ["a"], np.ones((1, 8, 8, 3), np.float32),
                                np.full((1, 8, 8), np.nan, np.float32), logits, sanity)
    assert frame.score.isna().all() and calls == [1]     # the predicted class only


def test_schema_sanity_off_in_the_paper_and_the_demo_on_in_extended():
    for name in ("paper", "demo", "smoke", "rehearsal"):
        assert load_experiment(name).settings.evaluation.sanity is None
    extended = load_experiment("extended")
    assert set(extended.settings.evaluation.sanity.tests) == set(SANITY_TESTS)
    demo = load_experiment("demo")
    # the same models: every setting the models are made from is the demo's
    for key in ("data", "models", "train", "saliency"):
        assert getattr(extended.settings, key) == getattr(demo.settings, key)
    # results of runs made before the checks existed keep their fingerprint
    dump = demo.settings.model_dump(mode="json")
    del dump["evaluation"]["sanity"]
    assert results_settings(dump) == results_settings(demo.settings.model_dump(mode="json"))
    with pytest.raises(ExperimentError, match="evaluation.sanity.tests"):
        load_experiment("smoke", overrides=["evaluation.sanity.tests=[emprt, mprt]"])
    with pytest.raises(ExperimentError, match="twice"):
        load_experiment("smoke", overrides=["evaluation.sanity.tests=[emprt, emprt]"])


def test_reuse_links_what_is_absent_and_skips_partial_training(tmp_path, capsys):
    from repro.pipeline import stage_reuse
    source = tmp_path / "source"
    for relative in ("models/siim/a.keras", "models/siim/a.partial/epoch.keras", "maps/siim/m/original/GRAD/x.npz",
                     "data/siim/train-rle.csv", "results/table2.csv", "models/siim/b.json"):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text(relative)
    run = tmp_path / "run"
    (run / "models/siim").mkdir(parents=True)
    (run / "models/siim/b.json").write_text("mine")
    experiment = load_experiment("smoke", run_dir=run, overrides=[f"runtime.reuse_from={source}"])
    assert stage_reuse(experiment, progress=False) == 3
    assert (run / "models/siim/a.keras").stat().st_ino == (source / "models/siim/a.keras").stat().st_ino
    assert (run / "models/siim/b.json").read_text() == "mine"          # never replaced
    assert not (run / "models/siim/a.partial").exists() and not (run / "results").exists()
    assert (run / "maps/siim/m/original/GRAD/x.npz").is_file() and (run / "data/siim/train-rle.csv").is_file()
    missing = load_experiment("smoke", run_dir=run, overrides=[f"runtime.reuse_from={tmp_path / 'nowhere'}"])
    assert stage_reuse(missing) == 0 and "does not exist" in capsys.readouterr().out


def test_report_counts_the_verdicts_average_precision_moves(scored):
    from repro.report.sanity import ap_moves, render_sanity_table, sanity_section
    _, _, _, _, cells = scored
    main = pd.DataFrame([[3, "siim", "GOOD", "P_AVG", FAIL], [3, "siim", "GOOD", "P_High", NOT_MEASURED],
                         [3, "siim", "BAD", "P_AVG", cell(cells, AVERAGE_PRECISION, "BAD", "P_AP_AVG").verdict]],
                        columns=["table", "dataset", "method", "column", "verdict"])
    moved, compared, which = ap_moves(cells, main)
    assert (moved, compared) == (1, 2) and which == [f"siim GOOD P_AVG: {FAIL} -> {PASS}"]
    section = sanity_section(cells, main, datasets=KAGGLE_DATASETS)
    assert "moves 1 of 2" in section and "every null map failed" in section
    table = render_sanity_table(cells, LOCALIZATION, KAGGLE_DATASETS)
    assert table.iloc[0, 0] == SIIM.title and "GOOD" in set(table.iloc[:, 0])


def test_cells_are_deterministic(scored):
    _, _, scores, choice, cells = scored
    again = sanity_cells(scores, SIIM, choice, methods=["GOOD", "BAD"], controls=(NOISE,), post_hoc=PostHoc())
    pd.testing.assert_frame_equal(cells, again)


def test_the_sanity_stage_on_the_smoke_run_resumes_its_model_calls(smoke_run, tmp_path, monkeypatch):
    """Every check through the stage on the smoke run's models and maps: scores for both data sets,
    a unit file per (test, group) of model calls, read back instead of computed on a second run
    (the computation is replaced by one that fails) with the same scores; tables, figures, section."""
    from repro import pipeline
    from repro.data.prepare import prepare_data
    from repro.execution import InProcess
    from tests.helpers import copy_run
    run = copy_run(smoke_run, tmp_path / "run", parts=("data", "cache", "models", "maps"))
    tests = list(SANITY_TESTS)
    experiment = load_experiment("smoke", run_dir=run, overrides=[
        f"evaluation.sanity.tests=[{', '.join(tests)}]", "evaluation.sanity.deletion_steps=4",
        "saliency.methods=[GRAD, GCAM]",   # two methods (one of them the class map) keep the test short
        "evaluation.sanity.faithfulness_images=3", "evaluation.sanity.smprt_images=3",
        "evaluation.sanity.smprt_samples=3", "evaluation.stability.resamples=3"])
    datasets = prepare_data(experiment, progress=False)
    # the maps stage makes only what the checks add: the validation maps that tune the threshold and
    # the bottom-up states (the first on the sample, the others on the curve images)
    plans = pipeline.stage_maps(experiment, datasets, InProcess(), progress=False)
    tuning = [t for t in plans["siim"].tasks if set(t.image_ids) <= set(plans["siim"].tuning)]
    assert tuning and {t.model for t in tuning} == {experiment.roles.replicates[0], "unet_r1"}
    bottom_up = {(t.model, t.state): set(t.image_ids) for t in plans["siim"].tasks if t.state.startswith("up_to_")}
    selection = plans["siim"].selection
    for replicate in experiment.roles.replicates:
        assert bottom_up[(replicate, "up_to_mixed1")] == set(selection.sample)
        assert bottom_up[(replicate, "up_to_logits")] == set(selection.curve)
    scores, cells = pipeline.stage_sanity(experiment, datasets, plans, progress=False)
    assert {"iou_tuned", "tuned_threshold"} <= set(scores.metric)
    assert {(d, t) for d, t in zip(scores.dataset, scores.test)} == {(d, t) for d in datasets for t in tests}
    units = sorted(p.name for p in (run / "sanity" / "siim").iterdir())
    assert "deletion-GRAD.json" in units and "road-NOISE.json" in units and "road-EDGE.json" in units
    assert "random_logit-GRAD.json" in units and "smprt-GCAM.json" in units
    denoised = scores[(scores.test == SMPRT) & (scores.dataset == "siim")]
    assert set(denoised.image) == set(plans["siim"].selection.sample[:3]) and set(denoised.group) == {"GRAD", "GCAM"}
    assert denoised[denoised.group == "GRAD"].score.notna().all()
    assert set(cells.loc[cells.test == BOTTOM_UP, "column"]) == {"RandBaseline", "LowestRandomized", "P_BottomUp"}
    other = scores[(scores.test == RANDOM_LOGIT) & (scores.state == "other_class")]
    assert set(other.group) >= {"GRAD", "EDGE"} and (other.loc[other.group == "EDGE", "score"] == 1.0).all()
    faithful = scores[scores.test.isin([DELETION, ROAD]) & (scores.group == "GRAD")]
    assert faithful.score.notna().all() and set(faithful.image) == set(plans["siim"].selection.sample[:3]) | set(
        plans["rsna"].selection.sample[:3])
    assert (cells[(cells.test == NULL_MAPS) & cells.column.eq("P_Randomization")].verdict != PASS).all()
    # the random-logit baseline is Table 3's random-pair baseline of replicate 1, value for value
    paper = pd.read_csv(smoke_run.results / "scores.csv", dtype={"image": str})
    replicate = experiment.roles.replicates[0]
    paper = paper[(paper.test == "randomization") & (paper.state == "baseline") & (paper.model == replicate)]
    mine = scores[(scores.test == RANDOM_LOGIT) & (scores.state == "baseline")]
    joined = paper.merge(mine, on=["dataset", "group", "image"], suffixes=("_paper", "_sanity"))
    assert len(joined) == len(mine) > 0
    assert np.allclose(joined.score_paper, joined.score_sanity, equal_nan=True, rtol=0, atol=0)

    def refuse(*args, **kwargs):
        raise AssertionError("a unit of model calls was computed again")

    monkeypatch.setattr("repro.evaluation.sanity_run.faithfulness_scores", refuse)
    monkeypatch.setattr("repro.evaluation.sanity_run.random_logit_scores", refuse)
    monkeypatch.setattr("repro.evaluation.sanity_run.smprt_scores", refuse)
    # the scores again, as the stage computes them (the cells from the same scores are the same:
    # test_cells_are_deterministic); every unit read back
    from repro.evaluation.sanity_run import run_sanity_scores
    again = run_sanity_scores(experiment.datasets, datasets, plans, context=pipeline.map_context(experiment),
                              roles=experiment.roles, evaluation=experiment.settings.evaluation,
                              run_units=InProcess().map, progress=False)
    pd.testing.assert_frame_equal(scores, again)
    main = pd.DataFrame(columns=["table", "dataset", "method", "column", "verdict"])
    section = pipeline.stage_sanity_report(experiment, scores, cells, main)
    assert section.startswith("## Sanity checks adopted after the paper")
    results = experiment.layout.results_dir
    for name in ("table_sanity.md", "sanity_cells.csv", "figure_sanity_emprt.png", "figure_sanity_road.pdf",
                 "figure_sanity_bottom_up.png", "figure_sanity_smprt.png"):
        assert (results / name).is_file(), name


def test_the_other_class_is_the_other_of_two_and_a_seeded_other_of_more():
    from repro.evaluation.sanity import other_classes, random_logit_scores
    assert other_classes(np.array([[2.0, 1.0], [0.0, 3.0]]), ["a", "b"], seed=0).tolist() == [1, 0]
    logits = np.tile([0.0, 5.0, 1.0], (200, 1))              # class 1 predicted everywhere
    keys = [f"img{i}" for i in range(200)]
    drawn = other_classes(logits, keys, seed=3)
    assert set(drawn) == {0, 2}                               # never the predicted class, both others drawn
    assert drawn.tolist() == other_classes(logits, keys, seed=3).tolist()
    assert drawn[5] == other_classes(logits[5:6], keys[5:6], seed=3)[0]   # by key, not by position
    with pytest.raises(ValueError, match="classes >= 2"):
        other_classes(np.zeros((3, 1)), ["a", "b", "c"], seed=0)
    rng = np.random.default_rng(0)
    smap = rng.random((2, 16, 16)).astype(np.float32)
    frame = random_logit_scores("siim", "GRAD", "m", ["a", "b"], smap, np.stack([smap[0], smap[0]]), data_range=2.0)
    assert frame.score.iloc[0] == 1.0 and frame.score.iloc[1] < 0.2
    assert set(frame.state) == {"other_class"} and set(frame.test) == {RANDOM_LOGIT}


def test_random_logit_cells_a_map_blind_to_the_class_does_not_pass():
    """GOOD's other-class map is noise (nothing like its mask map), BAD's the same ramp as for the
    predicted class: GOOD passes (below its random-pair baseline), BAD does not (SSIM 1)."""
    from repro.evaluation.sanity import random_logit_scores
    ids, selection, truth, maps = planted()
    experiment = experiment_settings([RANDOM_LOGIT])
    roles = experiment.roles
    states = {r: ("original", "mixed1") for r in roles.replicates}
    scores = sanity_scores(SIIM, selection, truth, maps, roles=roles, states=states, localizers=(),
                           methods=["GOOD", "BAD"], evaluation=experiment.settings.evaluation, shape=(SIZE, SIZE))
    assert set(scores.state) == {"baseline"}          # the methods' other-class maps are units of work
    replicate = roles.replicates[0]
    for group, other_state in (("GOOD", "mixed1"), ("BAD", "original")):
        scores = pd.concat([scores, random_logit_scores(SIIM.name, group, replicate, ids, maps(replicate, "original", group, ids),
                                                        maps(replicate, other_state, group, ids), data_range=2.0)])
    choice = ModelChoice(utility=replicate, replicates=roles.replicates, repeatability=None, reproducibility=None,
                         localizer=None, localizer_pair=None)
    cells = sanity_cells(scores, SIIM, choice, methods=["GOOD", "BAD"])
    assert cell(cells, RANDOM_LOGIT, "GOOD", "P_Logit").verdict == PASS
    assert cell(cells, RANDOM_LOGIT, "BAD", "P_Logit").verdict != PASS
    assert cell(cells, RANDOM_LOGIT, "BAD", "OtherClass")["mean"] == 1.0


def test_the_threshold_tuned_on_validation_maps_is_applied_to_the_test_images():
    """Validation: the first four images, tests: the other four. GOOD's maps are the masks: every
    threshold gives IoU 1, so the first (0.2) is tuned and the test IoU is 1. A map at 1 inside the
    mask and 0.45 outside (one pixel at 0, so that the min-max keeps 0.45) is cut right only from 0.5:
    planted as BAD on validation and test alike."""
    from repro.sanity import CHEXLOCALIZE_THRESHOLDS
    ids, _, truth, maps = planted()
    validation, test = ImageSelection(ids[:4], ids[:4], ()), ImageSelection(ids[4:], ids[4:], ())

    def planted_maps(model, state, method, image_ids):
        if method == "BAD":
            stack = np.stack([np.where(truth.masks[i], 1.0, 0.45).astype(np.float32) for i in image_ids])
            stack[:, -1, -1] = 0.0      # outside every planted mask
            return stack
        return maps(model, state, method, image_ids)

    experiment = experiment_settings([LOCALIZATION])
    roles = experiment.roles
    scores = sanity_scores(SIIM, test, truth, planted_maps, roles=roles, states={}, localizers=("unet_r1",),
                           methods=["GOOD", "BAD"], evaluation=experiment.settings.evaluation, shape=(SIZE, SIZE),
                           tuning=(validation, truth))
    assert np.all(values(scores, LOCALIZATION, "tuned_threshold", "GOOD") == CHEXLOCALIZE_THRESHOLDS[0])
    assert np.all(values(scores, LOCALIZATION, "iou_tuned", "GOOD") == 1.0)
    assert np.all(values(scores, LOCALIZATION, "tuned_threshold", "BAD") == pytest.approx(0.5))
    assert np.all(values(scores, LOCALIZATION, "iou_tuned", "BAD") == 1.0)
    assert set(scores.loc[scores.metric == "iou_tuned", "image"]) == set(ids[4:])
    choice = ModelChoice(utility=roles.replicates[0], replicates=roles.replicates, repeatability=None,
                         reproducibility=None, localizer="unet_r1", localizer_pair=None)
    cells = sanity_cells(scores, SIIM, choice, methods=["GOOD", "BAD"])
    assert cell(cells, LOCALIZATION, "BAD", "Threshold")["mean"] == pytest.approx(0.5)
    assert cell(cells, LOCALIZATION, "GOOD", "P_IoUTuned_AVG").verdict == PASS
    # without validation maps no tuned IoU is scored, and no cell claims one
    plain = sanity_scores(SIIM, test, truth, planted_maps, roles=roles, states={}, localizers=("unet_r1",),
                          methods=["GOOD"], evaluation=experiment.settings.evaluation, shape=(SIZE, SIZE))
    assert "iou_tuned" not in set(plain.metric)
    assert "IoUTuned" not in set(sanity_cells(plain, SIIM, choice, methods=["GOOD"]).column)


def test_published_directions_agree_disagree_or_are_not_measured():
    from repro.report.sanity import published_directions
    rows = [[LOCALIZATION, "siim", "GCAM", "IoU", 0.30], [LOCALIZATION, "siim", "IG", "IoU", 0.20],
            [LOCALIZATION, "rsna", "GCAM", "IoU", 0.10], [LOCALIZATION, "rsna", "IG", "IoU", 0.20],
            [RANDOM_LOGIT, "siim", "GBP", "OtherClass", 0.99], [RANDOM_LOGIT, "rsna", "GBP", "OtherClass", 0.30]]
    cells = pd.DataFrame(rows, columns=["test", "dataset", "method", "column", "mean"]).assign(verdict="", p="")
    verdicts = pd.DataFrame([[RANDOM_LOGIT, "siim", "GBP", "P_Logit", np.nan, FAIL, "<.001"],
                             [RANDOM_LOGIT, "rsna", "GBP", "P_Logit", np.nan, PASS, "<.001"]],
                            columns=["test", "dataset", "method", "column", "mean", "verdict", "p"])
    found = published_directions(pd.concat([cells, verdicts]), datasets=KAGGLE_DATASETS)
    outcome = {(r.finding.split()[0], r.dataset): r.outcome for r in found.itertuples()}
    assert outcome == {("Grad-CAM", "siim"): "agree", ("Grad-CAM", "rsna"): "disagree",
                       ("the", "siim"): "agree", ("the", "rsna"): "disagree"}
    alone = published_directions(cells[cells.method == "GCAM"], datasets=KAGGLE_DATASETS)
    assert set(alone.outcome) == {NOT_MEASURED}
