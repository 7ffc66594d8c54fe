"""The four tests on one data set's stored maps, as one long table of per-image scores.

Columns (SCORE_COLUMNS): dataset, test, metric, group, model, state, image, score.
- utility (metrics auprc and roc_auc, on the utility images): every method's maps of every
  classifier that has them (state "trained"; replicate 1's fully randomized model too, state
  "randomized"), the AVG mask (model "AVG") and the first localization network;
- randomization (ssim, on the sample; intermediate states on the curve images): for every cascade
  replicate, each state's map against the same replicate's trained map, and the random-pair
  baseline (state "baseline") from its trained maps;
- repeatability / reproducibility (ssim, on the sample): every pair of replicates, and every
  replicate with the other architecture (model "a~b"); the paper's pair is the first of each,
  the others feed the stability analysis; the two localization networks' SSIM (high baseline);
- the EDGE and ORACLE controls go through the same tests with the same maps in every state.
Maps come from `maps(model, state, method, image_ids)`; nothing here trains or computes maps.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from repro.data.dataset import Dataset
from repro.evaluation.plan import LOCALIZER, MapPlan
from repro.evaluation.scores import (as_uint8, average_mask, edge_control, is_all_nan, oracle_control, paired_ssim,
                                     random_pair_baseline, utility)
from repro.evaluation.selection import ImageSelection, indices_of
from repro.experiments import Evaluation, Roles
from repro.metrics import SsimStats
from repro.saliency.store import MapStore
from repro.protocol import (AVG, ORIGINAL, RANDOMIZATION, REPEATABILITY, REPRODUCIBILITY, UTILITY,
                            DatasetSpec, pair_label)

SCORE_COLUMNS = ["dataset", "test", "metric", "group", "model", "state", "image", "score"]
MapSource = Callable[[str, str, str, tuple], np.ndarray]


@dataclass
class Degenerate:
    """What the tests could not score: degenerate maps (all NaN) and empty masks, counted."""
    empty_masks: int = 0
    maps: dict[str, dict[str, int]] = field(default_factory=dict)     # method -> "model/state" -> count

    def count(self, method: str, model: str, state: str, maps: np.ndarray) -> None:
        found = int(is_all_nan(maps).sum())
        if found:   # the same maps are met by several tests: keep the largest count
            counts = self.maps.setdefault(method, {})
            counts[f"{model}/{state}"] = max(found, counts.get(f"{model}/{state}", 0))


@dataclass(frozen=True)
class TruthFor:
    """The non-map inputs of one data set's tests, for the selected images (dict by image id)."""
    masks: dict[str, np.ndarray]
    images: dict[str, np.ndarray]            # grey, for the EDGE control
    evidence: dict[str, np.ndarray] | None   # the phantoms' true evidence, for ORACLE
    average_mask: np.ndarray


def score_one_dataset(spec: DatasetSpec, dataset: Dataset, plan: MapPlan, maps_dir: Path, roles: Roles,
                      methods: tuple[str, ...], evaluation: Evaluation) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One data set's scores from the maps stored in `maps_dir`, its selected images and what could
    not be scored (arguments by position: a job of an executor's `map`, in any process)."""
    store = MapStore(maps_dir)

    def maps(model, state, method, ids):
        return store.stack(model, state, method, ids, plan.fingerprint(model, state, method), shape=plan.shape)

    frame, counts = score_dataset(spec, plan.selection, truth_for(dataset, plan.selection), maps, roles=roles,
                                  states=plan.states, localizers=plan.localizers, methods=methods,
                                  evaluation=evaluation)
    dropped = frame[frame["score"].isna()].groupby(["test", "metric", "group", "model", "state"]).size()
    degenerate = {"empty_masks": counts.empty_masks, "degenerate_maps": counts.maps,
                  "dropped_scores": {" / ".join(k): int(v) for k, v in dropped.items()}}
    return frame, plan.selection.frame(dataset.name), degenerate


def truth_for(dataset: Dataset, selection: ImageSelection) -> TruthFor:
    """The selected images' masks, grey images and evidence, and the average mask of the training
    and validation images (the AVG baseline)."""
    rows = indices_of(dataset, selection.all)
    ids = list(selection.all)
    fit = np.concatenate([dataset.indices("train"), dataset.indices("val")])
    return TruthFor(masks=dict(zip(ids, dataset.masks[rows])), images=dict(zip(ids, dataset.pixels(rows))),
                    evidence=None if dataset.evidence is None else dict(zip(ids, dataset.evidence[rows])),
                    average_mask=average_mask(dataset.masks[fit]))


def score_dataset(dataset: DatasetSpec, selection: ImageSelection, truth: TruthFor, maps: MapSource, *,
                  roles: Roles, states: dict[str, tuple[str, ...]], localizers: tuple[str, ...],
                  methods, evaluation: Evaluation) -> tuple[pd.DataFrame, Degenerate]:
    rows = _Rows(dataset.name)
    degenerate = Degenerate(empty_masks=sum(not truth.masks[i].any() for i in selection.utility))
    controls = control_maps(selection, truth) if evaluation.controls else {}
    classifiers = list(dict.fromkeys([*roles.replicates, *(m for pair in (roles.repeatability, roles.reproducibility)
                                                           for m in (pair or ()))]))

    def method_maps(model, state, method, ids):
        if method in controls:
            return controls[method](ids)
        stack = maps(model, state, method, ids)
        degenerate.count(method, model, state, stack)
        return stack

    groups = [*methods, *controls]
    _utility_scores(rows, selection, truth, method_maps, classifiers, roles, states, localizers, groups,
                    dataset, evaluation)
    _randomization_scores(rows, selection, method_maps, roles, states, groups, evaluation)
    _similarity_scores(rows, selection, method_maps, roles, localizers, groups, dataset, maps, evaluation)
    return rows.frame(), degenerate


def _utility_scores(rows, selection, truth, method_maps, classifiers, roles, states, localizers, groups,
                    dataset, evaluation):
    ids = selection.utility
    masks = np.stack([truth.masks[i] for i in ids])

    def add(group, model, state, smaps):
        for metric, values in utility(masks, smaps, auprc_method=evaluation.auprc).items():
            rows.add(UTILITY, metric, group, model, state, ids, values)

    add(AVG, AVG, "trained", np.repeat(truth.average_mask[None], len(ids), axis=0))
    if localizers:
        add(dataset.high_baseline, localizers[0], "trained", method_maps(localizers[0], ORIGINAL, LOCALIZER, ids))
    replicate_1 = roles.replicates[0]
    for model in classifiers:
        for group in groups:
            add(group, model, "trained", method_maps(model, ORIGINAL, group, ids))
    for group in groups:
        add(group, replicate_1, "randomized", method_maps(replicate_1, states[replicate_1][-1], group, ids))


def _randomization_scores(rows, selection, method_maps, roles, states, groups, evaluation):
    data_range = evaluation.ssim_data_range
    for replicate in roles.replicates:
        replicate_states = states[replicate]
        for group in groups:
            trained = method_maps(replicate, ORIGINAL, group, selection.sample)
            trained_stats = SsimStats(trained)
            seed = [evaluation.pair_seed, zlib.crc32(f"{replicate}/{group}".encode())]
            rows.add(RANDOMIZATION, "ssim", group, replicate, "baseline", selection.sample,
                     random_pair_baseline(trained_stats, pairs_per_image=evaluation.pairs_per_image, seed=seed,
                                          data_range=data_range))
            curve = SsimStats(trained[[selection.sample.index(i) for i in selection.curve]])
            for state in replicate_states[1:]:
                fully = state == replicate_states[-1]
                ids, reference = (selection.sample, trained_stats) if fully else (selection.curve, curve)
                rows.add(RANDOMIZATION, "ssim", group, replicate, state, ids,
                         paired_ssim(method_maps(replicate, state, group, ids), reference, data_range=data_range))


def _similarity_scores(rows, selection, method_maps, roles, localizers, groups, dataset, maps, evaluation):
    ids, data_range = selection.sample, evaluation.ssim_data_range
    pairs = {REPEATABILITY: _pairs(roles.repeatability, combinations(roles.replicates, 2)),
             REPRODUCIBILITY: _pairs(roles.reproducibility,
                                     [(r, roles.reproducibility[1]) for r in roles.replicates]
                                     if roles.reproducibility else [])}
    for test, test_pairs in pairs.items():
        for a, b in test_pairs:
            for group in groups:
                rows.add(test, "ssim", group, pair_label(a, b), "trained", ids,
                         paired_ssim(method_maps(a, ORIGINAL, group, ids), method_maps(b, ORIGINAL, group, ids),
                                     data_range=data_range))
    if len(localizers) >= 2:
        first, second = (maps(name, ORIGINAL, LOCALIZER, ids) for name in localizers[:2])
        if dataset.localizer == "unet" and evaluation.unet_ssim == "uint8":
            first, second, data_range = as_uint8(first), as_uint8(second), 255.0
        values = paired_ssim(first, second, data_range=data_range)
        for test in (REPEATABILITY, REPRODUCIBILITY):
            rows.add(test, "ssim", dataset.high_baseline, pair_label(*localizers[:2]), "trained", ids, values)


def _pairs(main, others) -> list[tuple[str, str]]:
    """The paper's pair first, then the other pairs (for the stability analysis)."""
    if main is None:
        return []
    return list(dict.fromkeys([tuple(main), *map(tuple, others)]))


def control_maps(selection: ImageSelection, truth: TruthFor) -> dict[str, Callable]:
    """EDGE and ORACLE: maps that ignore the model, the same in every model and state."""
    edge = dict(zip(selection.all, edge_control(np.stack([truth.images[i] for i in selection.all]))))
    controls = {"EDGE": lambda ids: np.stack([edge[i] for i in ids])}
    if truth.evidence is not None:
        oracle = dict(zip(selection.all, oracle_control(np.stack([truth.evidence[i] for i in selection.all]))))
        controls["ORACLE"] = lambda ids: np.stack([oracle[i] for i in ids])
    return controls


class _Rows:
    """Collects long-format score rows for one data set."""

    def __init__(self, dataset: str):
        self.dataset, self.rows = dataset, []

    def add(self, test, metric, group, model, state, ids, values) -> None:
        self.rows += [(self.dataset, test, metric, group, model, state, i, float(v)) for i, v in zip(ids, values)]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=SCORE_COLUMNS)
