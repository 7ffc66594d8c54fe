"""The sanity checks adopted after the paper, per image, in the score table's long format.

The same columns as the four tests' scores (repro.evaluation.scoring.SCORE_COLUMNS), in a table
of their own (results/sanity_scores.csv), so that the paper's tables are made from exactly what
they were made from before. Each check, its source and its verdict rule: docs/sanity-checks.md.

- emprt (metric emprt, on the SSIM sample): every cascade replicate's trained map against its fully
  randomized map (the stored maps; no model call), for the methods, the EDGE / ORACLE controls and
  the per-state noise map;
- smprt (metric ssim, on the first `smprt_images` of the sample, replicate 1): sMPRT, the paper's
  randomization test on maps averaged over noisy copies of each image (Hedström et al. 2024): the
  denoised fully randomized map against the denoised trained map, and the random-pair baseline of
  the denoised trained maps (state "baseline"); the maps are made by a unit of work per method
  (repro.evaluation.sanity_run) and scored by `smprt_scores`;
- bottom_up (metrics ssim and ssim_curve): every cascade replicate randomized from the bottom up
  (Binder et al. 2023; states "up_to_<group>"): ssim, the first bottom-up state (the lowest group
  randomized) against the trained map on the sample, with Table 3's random-pair baseline (state
  "baseline"); ssim_curve, every bottom-up state against the trained map on the curve images;
  for the methods, the EDGE / ORACLE controls and the per-state noise map;
- null_maps (metric ssim, on the sample): the constant and the per-state noise map (Binder et al.
  2023) through the paper's randomization test: the fully randomized state against the trained
  state (state = the cascade's last) and the random-pair baseline (state "baseline");
- localization (metrics iou_otsu, iou_tuned, tuned_threshold and hit, on the utility images):
  cheXlocalize's Otsu segmentation IoU, the IoU at the threshold tuned on the validation positives'
  maps (the same threshold on every test image of a group, which tuned_threshold records) and the
  pointing-game hit, of replicate 1's trained maps, AVG's map and the localization network's;
- average_precision (metric ap): the utility AUPRC again as scikit-learn's average precision;
- random_logit (metric ssim, on the SSIM sample, replicate 1): each method's map of the predicted
  class against its map of the other class (state "other_class"; maps made by `other_class_maps`,
  a unit of work per method), and the random-pair baseline of the trained maps (state "baseline",
  Table 3's); the EDGE / ORACLE controls have one map for both classes;
- deletion (metrics deletion_auc, insertion_auc) and road (road_gap, road_morf, road_lerf): model
  calls on replicate 1's trained maps of the first `faithfulness_images` of the sample, computed
  by `faithfulness_scores` one group at a time (a unit of work that a run resumes and a cluster runs).
Maps come from `maps(model, state, method, image_ids)` as in scoring.py; nothing here loads a model.
"""
from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
import pandas as pd
from scipy.special import softmax

from repro.evaluation.plan import LOCALIZER
from repro.evaluation.scores import random_pair_baseline
from repro.evaluation.scoring import SCORE_COLUMNS, MapSource, TruthFor, control_maps
from repro.evaluation.selection import ImageSelection
from repro.experiments import Evaluation, Roles, SanityChecks
from repro.metrics import SsimStats, auprc, ssim_pairs
from repro.protocol import (AVERAGE_PRECISION, AVG, BOTTOM_UP, DELETION, EMPRT, LOCALIZATION, NULL_CONTROLS, NULL_MAPS,
                            ORIGINAL, RANDOM_LOGIT, ROAD, SMPRT, DatasetSpec)
from repro.sanity import (ROAD_FRACTIONS, bottom_up_split, constant_map, deletion_curve, emprt, insertion_curve,
                          localization_iou, logit_similarity, noise_map, pointing_hit, road_curve, tune_threshold)

CONSTANT, NOISE = NULL_CONTROLS
FAITHFULNESS_TESTS = (DELETION, ROAD)
OTHER_CLASS = "other_class"     # the state of the random-logit maps: the trained model, the other class explained
FAITHFULNESS_METRICS = {DELETION: ("deletion_auc", "insertion_auc"), ROAD: ("road_gap", "road_morf", "road_lerf")}
Predict = Callable[[np.ndarray], np.ndarray]   # a batch of model-ready images -> (B, K) logits


def null_maps(seed: int, shape: tuple[int, int]) -> dict[str, Callable]:
    """The null maps of Binder et al. (2023) as map sources `(model, state, ids) -> stack`: the constant
    0.5, and uniform noise drawn anew per (image, model, state) (repro.sanity.noise_map)."""
    def constant(model, state, ids):
        return np.stack([constant_map(shape) for _ in ids])

    def noise(model, state, ids):
        return np.stack([noise_map(shape, seed=seed, key=f"{i}/{model}/{state}") for i in ids])

    return {CONSTANT: constant, NOISE: noise}


def sanity_scores(dataset: DatasetSpec, selection: ImageSelection, truth: TruthFor, maps: MapSource, *,
                  roles: Roles, states: dict[str, tuple[str, ...]], localizers: tuple[str, ...], methods,
                  evaluation: Evaluation, shape: tuple[int, int],
                  tuning: tuple[ImageSelection, TruthFor] | None = None) -> pd.DataFrame:
    """The per-image scores of the checks in evaluation.sanity.tests that need only stored maps.

    tuning: the validation images (as a selection: `all` is what is read) and their truth, whose
    maps tune cheXlocalize's threshold per group (localization's iou_tuned; none: not scored)."""
    sanity = evaluation.sanity
    rows: list[tuple] = []

    def add(test, metric, group, model, state, ids, values):
        rows.extend((dataset.name, test, metric, group, model, state, i, float(v)) for i, v in zip(ids, values))

    controls = control_maps(selection, truth) if evaluation.controls else {}
    nulls = null_maps(sanity.seed, shape)

    def group_maps(model, state, group, ids):
        if group in controls:
            return controls[group](ids)
        if group in nulls:
            return nulls[group](model, state, ids)
        return maps(model, state, group, ids)

    tests = set(sanity.tests)
    data_range = evaluation.ssim_data_range

    def trained_baseline(replicate, group, trained: SsimStats):   # Table 3's random-pair baseline
        seed = [evaluation.pair_seed, zlib.crc32(f"{replicate}/{group}".encode())]
        return random_pair_baseline(trained, pairs_per_image=evaluation.pairs_per_image, seed=seed,
                                    data_range=data_range)

    if EMPRT in tests:
        for replicate in roles.replicates:
            fully, ids = states[replicate][-1], selection.sample
            for group in [*methods, *controls, NOISE]:
                trained, randomized = group_maps(replicate, ORIGINAL, group, ids), group_maps(replicate, fully, group, ids)
                add(EMPRT, "emprt", group, replicate, fully, ids, [emprt(a, b) for a, b in zip(trained, randomized)])
    if BOTTOM_UP in tests:
        for replicate in roles.replicates:
            first, later = bottom_up_split(states[replicate])
            for group in [*methods, *controls, NOISE]:
                ids = selection.sample
                trained = SsimStats(group_maps(replicate, ORIGINAL, group, ids))
                add(BOTTOM_UP, "ssim", group, replicate, "baseline", ids, trained_baseline(replicate, group, trained))
                add(BOTTOM_UP, "ssim", group, replicate, first, ids,
                    ssim_pairs(group_maps(replicate, first, group, ids), trained, data_range=data_range))
                trained = SsimStats(group_maps(replicate, ORIGINAL, group, selection.curve))
                for state in (first, *later):
                    add(BOTTOM_UP, "ssim_curve", group, replicate, state, selection.curve,
                        ssim_pairs(group_maps(replicate, state, group, selection.curve), trained,
                                   data_range=data_range))
    if NULL_MAPS in tests:
        for replicate in roles.replicates:
            fully, ids = states[replicate][-1], selection.sample
            for group in nulls:
                trained = SsimStats(group_maps(replicate, ORIGINAL, group, ids))
                add(NULL_MAPS, "ssim", group, replicate, "baseline", ids, trained_baseline(replicate, group, trained))
                add(NULL_MAPS, "ssim", group, replicate, fully, ids,
                    ssim_pairs(group_maps(replicate, fully, group, ids), trained, data_range=data_range))
    if RANDOM_LOGIT in tests:   # the baseline here; the methods' other-class maps are units of work
        replicate_1, ids = roles.replicates[0], selection.sample
        for group in [*methods, *controls]:
            trained = group_maps(replicate_1, ORIGINAL, group, ids)
            add(RANDOM_LOGIT, "ssim", group, replicate_1, "baseline", ids,
                trained_baseline(replicate_1, group, SsimStats(trained)))
            if group in controls:   # one map whatever the class
                add(RANDOM_LOGIT, "ssim", group, replicate_1, OTHER_CLASS, ids,
                    [logit_similarity(m, m, data_range=data_range) for m in trained])
    if tests & {LOCALIZATION, AVERAGE_PRECISION}:
        ids = selection.utility
        masks = [truth.masks[i] for i in ids]
        scored = [(AVG, AVG, np.repeat(truth.average_mask[None], len(ids), axis=0))]
        if localizers:
            scored.append((dataset.high_baseline, localizers[0], maps(localizers[0], ORIGINAL, LOCALIZER, ids)))
        replicate_1 = roles.replicates[0]
        scored += [(group, replicate_1, group_maps(replicate_1, ORIGINAL, group, ids)) for group in [*methods, *controls]]
        tuned = _tuned_thresholds(tuning, maps, dataset, roles, localizers, methods, evaluation) \
            if tuning is not None and LOCALIZATION in tests else {}
        for group, model, stack in scored:
            if LOCALIZATION in tests:
                add(LOCALIZATION, "iou_otsu", group, model, "trained", ids,
                    [localization_iou(m, s) for m, s in zip(masks, stack)])
                if group in tuned:
                    threshold = tuned[group]
                    add(LOCALIZATION, "tuned_threshold", group, model, "trained", ids, [threshold] * len(ids))
                    add(LOCALIZATION, "iou_tuned", group, model, "trained", ids,
                        [np.nan if np.isnan(threshold) else localization_iou(m, s, threshold=threshold)
                         for m, s in zip(masks, stack)])
                add(LOCALIZATION, "hit", group, model, "trained", ids, [pointing_hit(m, s) for m, s in zip(masks, stack)])
            if AVERAGE_PRECISION in tests:
                add(AVERAGE_PRECISION, "ap", group, model, "trained", ids,
                    [auprc(m, s, method="average_precision") for m, s in zip(masks, stack)])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _tuned_thresholds(tuning, maps: MapSource, dataset: DatasetSpec, roles: Roles, localizers, methods,
                      evaluation: Evaluation) -> dict[str, float]:
    """Each group's threshold tuned on the validation positives (repro.sanity.tune_threshold:
    cheXlocalize's thresholds, the first with the highest mIoU; NaN when no map scores): replicate
    1's maps of the methods and controls, AVG's map, the first localization network's."""
    selection, truth = tuning
    ids = selection.all
    masks = [truth.masks[i] for i in ids]
    controls = control_maps(selection, truth) if evaluation.controls else {}
    stacks = {AVG: np.repeat(truth.average_mask[None], len(ids), axis=0)}
    if localizers:
        stacks[dataset.high_baseline] = maps(localizers[0], ORIGINAL, LOCALIZER, ids)
    for group in methods:
        stacks[group] = maps(roles.replicates[0], ORIGINAL, group, ids)
    for group, control in controls.items():
        stacks[group] = control(ids)
    return {group: tune_threshold(list(stack), masks).threshold for group, stack in stacks.items()}


def other_classes(logits: np.ndarray, keys, *, seed: int) -> np.ndarray:
    """The class whose map each image's predicted-class map is compared with: the other class of two
    (the kit's classifiers); with more classes, one of the others drawn per key from (seed, key)
    (Sixt et al.'s randomly chosen other logit)."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"other_classes: expected (images, classes >= 2) logits, got shape {logits.shape}")
    predicted = np.argmax(logits, axis=1)
    if logits.shape[1] == 2:
        return 1 - predicted
    others = []
    for key, k in zip(keys, predicted):
        draw = np.random.default_rng([seed, zlib.crc32(str(key).encode())]).integers(logits.shape[1] - 1)
        others.append(draw + (draw >= k))
    return np.array(others)


def random_logit_scores(dataset: str, group: str, model: str, ids, predicted_maps: np.ndarray,
                        other_maps: np.ndarray, *, data_range: float) -> pd.DataFrame:
    """SSIM (the kit's, `data_range`) between each image's map of the predicted class and its map
    of the other class (repro.sanity.logit_similarity), as score rows of state OTHER_CLASS."""
    values = [logit_similarity(a, b, data_range=data_range) for a, b in zip(predicted_maps, other_maps)]
    return pd.DataFrame([(dataset, RANDOM_LOGIT, "ssim", group, model, OTHER_CLASS, i, float(v))
                         for i, v in zip(ids, values)], columns=SCORE_COLUMNS)


def smprt_scores(dataset: str, group: str, model: str, state: str, ids, trained: np.ndarray,
                 randomized: np.ndarray, *, evaluation: Evaluation) -> pd.DataFrame:
    """sMPRT's score rows from the denoised maps of the trained model and of its state `state` (the
    fully randomized one): SSIM (the kit's, evaluation.ssim_data_range) of each image's pair, and the
    random-pair baseline of the denoised trained maps (state "baseline"), the paper's randomization
    rule on denoised maps (Hedström et al. 2024)."""
    if not len(ids) == len(trained) == len(randomized):
        raise ValueError(f"smprt_scores: {len(ids)} ids, {len(trained)} trained and {len(randomized)} randomized maps")
    data_range = evaluation.ssim_data_range
    stats = SsimStats(trained)
    seed = [evaluation.pair_seed, zlib.crc32(f"{model}/{group}/{SMPRT}".encode())]
    baseline = random_pair_baseline(stats, pairs_per_image=evaluation.pairs_per_image, seed=seed, data_range=data_range)
    values = {state: ssim_pairs(randomized, stats, data_range=data_range), "baseline": baseline}
    return pd.DataFrame([(dataset, SMPRT, "ssim", group, model, name, i, float(v))
                         for name, scores in values.items() for i, v in zip(ids, scores)], columns=SCORE_COLUMNS)


def first_of_sample(selection: ImageSelection, count) -> tuple[str, ...]:
    """The first `count` images of the SSIM sample ('all': every one): the images of the checks
    that need new model calls per image (faithfulness_images, smprt_images)."""
    return tuple(selection.sample if count == "all" else selection.sample[:count])


def faithfulness_scores(dataset: str, test: str, group: str, model: str, ids, images: np.ndarray,
                        smaps: np.ndarray, logits: Predict, sanity: SanityChecks, *, batch_size: int = 16
                        ) -> pd.DataFrame:
    """One group's deletion / insertion AUCs (test "deletion") or ROAD curves (test "road") on
    `images` (model-ready, in `ids` order) with their maps, for the model whose logits `logits` gives.

    The explained class is the one predicted for the unperturbed image, and the curves follow its
    softmax probability (RISE's and ROAD's reading). ROAD: the area under the LeRF curve minus the area
    under the MoRF curve over the fractions removed (a faithful map: MoRF falls first), both
    normalized by the fractions' span so that the gap is in probability units."""
    if test not in FAITHFULNESS_TESTS:
        raise ValueError(f"faithfulness_scores: test must be one of {FAITHFULNESS_TESTS}, got {test!r}")
    if not len(ids) == len(images) == len(smaps):
        raise ValueError(f"faithfulness_scores: {len(ids)} ids, {len(images)} images and {len(smaps)} maps")
    classes = np.argmax(_logits(logits, images), axis=1)
    rows = []
    for image_id, image, smap, target in zip(ids, images, smaps, classes):
        def predict(batch, target=target):
            return softmax(_logits(logits, batch), axis=1)[:, target]

        if test == DELETION:
            values = {"deletion_auc": deletion_curve(image, smap, predict, sanity.deletion_steps,
                                                     batch_size=batch_size).auc,
                      "insertion_auc": insertion_curve(image, smap, predict, sanity.deletion_steps,
                                                       batch_size=batch_size).auc}
        else:
            key = f"{dataset}/{model}/{group}/{image_id}"
            curves = {order: road_curve(image, smap, predict, ROAD_FRACTIONS, order=order, seed=sanity.seed,
                                        key=f"{key}/{order}", batch_size=batch_size)
                      for order in ("morf", "lerf")}
            span = ROAD_FRACTIONS[-1] - ROAD_FRACTIONS[0]
            morf, lerf = (curves[o].auc / span for o in ("morf", "lerf"))
            values = {"road_gap": lerf - morf, "road_morf": morf, "road_lerf": lerf}
        rows += [(dataset, test, metric, group, model, "trained", image_id, float(value))
                 for metric, value in values.items()]
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _logits(logits: Predict, batch: np.ndarray) -> np.ndarray:
    out = np.asarray(logits(np.asarray(batch, dtype=np.float32)), dtype=np.float64)
    if out.ndim != 2 or len(out) != len(batch):
        raise ValueError(f"faithfulness: the model must return (batch, classes) logits, got shape {out.shape}")
    return out

