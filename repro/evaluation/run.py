"""The four trustworthiness tests on an experiment's trained models, as one long score table.

For each data set, on its positive test images (the paper computed maps for those):
1. utility: maps of InceptionV3 replicate 1 against the masks (boxes for RSNA), beside the AVG
   mask and the U-Net / RetinaNet maps; also the fully randomized model's maps;
2. cascading randomization: SSIM of each of the 11 randomized states' maps to the original map,
   and the random-pair baseline over the trained model's maps;
3. repeatability: SSIM of replicate 1's and replicate 2's maps (high baseline: the two U-Nets /
   RetinaNets);
4. reproducibility: SSIM of replicate 1's and DenseNet121's maps (same high baseline).
The EDGE and ORACLE controls (scores.py) go through the same tests. Maps live in a MapStore under
the run directory, so a killed run continues where it stopped; scores are recomputed from maps.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from repro.data.dataset import Dataset
from repro.evaluation.scores import (FULLY_RANDOMIZED, HIGH_BASELINE, Degenerate, average_mask, edge_control, oracle_control, paired_ssim,
                                     random_pair_baseline, utility)
from repro.experiments import Experiment
from repro.models import STATES, cascade_states, load_trained_model, score_maps
from repro.saliency import METHODS, resolve_params
from repro.saliency.store import MapStore, compute_missing

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["dataset", "test", "metric", "group", "state", "image", "score"]
DEFAULTS = {"max_images": 50, "pairs_per_image": 50, "ssim_data_range": 2.0, "auprc": "trapezoid",
            "cascade_seed": 0, "replicate_1": "inception_r1", "replicate_2": "inception_r2",
            "other_architecture": "densenet",
            "localizers": {"siim": ["unet_r1", "unet_r2"], "rsna": ["retinanet_r1", "retinanet_r2"]}}


def evaluation_settings(experiment: Experiment) -> dict:
    """The experiment's `evaluation` section over the defaults (unknown keys are errors)."""
    given = experiment.config.get("evaluation") or {}
    _check_keys(given, DEFAULTS, "evaluation", experiment)
    return {**DEFAULTS, **given}


def saliency_settings(experiment: Experiment) -> dict:
    """The experiment's `saliency` section: a preset, the methods, per-method overrides, the seed;
    `params` holds every method's resolved parameters."""
    defaults = {"preset": "paper", "methods": list(METHODS), "overrides": {}, "seed": 0, "batch_size": None}
    given = experiment.config.get("saliency") or {}
    _check_keys(given, defaults, "saliency", experiment)
    settings = {**defaults, **given}
    unknown = sorted(set(settings["methods"]) - set(METHODS)) + sorted(set(settings["overrides"]) - set(METHODS))
    if unknown:
        raise ValueError(f"{experiment.path}: saliency: unknown method(s) {unknown}; expected some of {', '.join(METHODS)}")
    settings["params"] = {m: resolve_params(m, settings["preset"], **settings["overrides"].get(m, {}))
                          for m in settings["methods"]}
    return settings


def _check_keys(given: dict, allowed: dict, section: str, experiment: Experiment) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{experiment.path}: unknown key(s) in '{section}': {unknown}; "
                         f"expected some of {sorted(allowed)}")


def test_images(experiment: Experiment, dataset: Dataset) -> np.ndarray:
    """Indices of the images the tests use: the first max_images positive test images."""
    test = dataset.indices("test", positive=True)[: evaluation_settings(experiment)["max_images"]]
    if len(test) < 3:
        raise ValueError(f"{dataset.name}: only {len(test)} positive test images; the tests need at least 3")
    return test


def compute_maps(experiment: Experiment, dataset: Dataset, *, methods=None, states=None,
                 progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Saliency maps of the test images for every (model, state) the tests need, from the store
    (computing the missing ones). Keys "<model>.<state>"; methods / states restrict the work."""
    settings, saliency = evaluation_settings(experiment), saliency_settings(experiment)
    methods = list(methods or saliency["methods"])
    states = list(states or STATES)
    unknown = sorted(set(states) - set(STATES))
    if unknown:
        raise ValueError(f"unknown state(s) {unknown}; expected some of {', '.join(STATES)}")
    test = test_images(experiment, dataset)
    images, ids = dataset.model_inputs(test), list(dataset.ids[test])
    store = MapStore(experiment.run_dir / "maps" / dataset.name)

    def maps_of(model, key: str) -> dict[str, np.ndarray]:
        for method in methods:
            compute_missing(store, model, key, method, images, ids, saliency["params"][method],
                            progress=progress, seed=saliency["seed"], batch_size=saliency["batch_size"])
        return {method: np.stack([store.get(key, method, i) for i in ids]) for method in methods}

    name_1 = settings["replicate_1"]
    maps = {}
    for state, model in cascade_states(load_trained_model(experiment, dataset.name, name_1),
                                       seed=settings["cascade_seed"]):
        if state in states:
            maps[f"{name_1}.{state}"] = maps_of(model, f"{name_1}.{state}")
    if "original" in states:
        for name in (settings["replicate_2"], settings["other_architecture"]):
            maps[f"{name}.original"] = maps_of(load_trained_model(experiment, dataset.name, name), f"{name}.original")
    return maps


def evaluate_dataset(experiment: Experiment, dataset: Dataset, *, progress: bool = True
                     ) -> tuple[pd.DataFrame, Degenerate]:
    """Every per-image score of the four tests for one data set."""
    settings, saliency = evaluation_settings(experiment), saliency_settings(experiment)
    test = test_images(experiment, dataset)
    images, ids, masks = dataset.model_inputs(test), list(dataset.ids[test]), dataset.masks[test]
    degenerate = Degenerate(empty_masks=int((~masks.reshape(len(masks), -1).any(axis=1)).sum()))
    maps = compute_maps(experiment, dataset, progress=progress)
    name_1 = settings["replicate_1"]
    cascade = {state: maps[f"{name_1}.{state}"] for state in STATES}
    original = cascade["original"]
    replicate_2 = maps[f"{settings['replicate_2']}.original"]
    other_maps = maps[f"{settings['other_architecture']}.original"]

    controls = {"EDGE": edge_control(dataset.images[test])}
    if dataset.evidence is not None:
        controls["ORACLE"] = oracle_control(dataset.evidence[test])
    for state_maps in (*cascade.values(), replicate_2, other_maps):
        state_maps.update(controls)   # the controls ignore the model: the same maps in every state
    for method in saliency["methods"]:
        degenerate.count_constant(method, original[method])
        degenerate.count_constant(f"{method} (fully randomized)", cascade[FULLY_RANDOMIZED][method])

    localizer_maps = [_localizer_maps(experiment, dataset.name, name, images)
                      for name in settings["localizers"][dataset.name]]
    avg = average_mask(dataset.masks[np.concatenate([dataset.indices("train"), dataset.indices("val")])])

    rows = _Rows(dataset.name, ids)
    high = HIGH_BASELINE[dataset.name]
    rows.utility(high, "trained", utility(localizer_maps[0], masks, auprc_method=settings["auprc"]))
    rows.utility("AVG", "trained", utility(np.repeat(avg[None], len(ids), axis=0), masks,
                                           auprc_method=settings["auprc"]))
    data_range = settings["ssim_data_range"]
    for method, trained in original.items():
        rows.utility(method, "trained", utility(trained, masks, auprc_method=settings["auprc"]))
        rows.utility(method, "randomized", utility(cascade[FULLY_RANDOMIZED][method], masks,
                                                   auprc_method=settings["auprc"]))
        for state in STATES[1:]:
            values = paired_ssim(cascade[state][method], trained, data_range=data_range)
            degenerate.count_nan(method, values)
            rows.add("randomization", "ssim", method, state, values)
        rows.add("randomization", "ssim", method, "baseline",
                 random_pair_baseline(trained, pairs_per_image=settings["pairs_per_image"],
                                      seed=settings["cascade_seed"], data_range=data_range))
        rows.add("repeatability", "ssim", method, "trained",
                 paired_ssim(trained, replicate_2[method], data_range=data_range))
        rows.add("reproducibility", "ssim", method, "trained",
                 paired_ssim(trained, other_maps[method], data_range=data_range))
    localizer_ssim = paired_ssim(localizer_maps[0], localizer_maps[1], data_range=data_range)
    for test_name in ("repeatability", "reproducibility"):
        rows.add(test_name, "ssim", high, "trained", localizer_ssim)
    return rows.frame(), degenerate


def _localizer_maps(experiment: Experiment, dataset: str, name: str, images: np.ndarray) -> np.ndarray:
    """Per-pixel maps of a U-Net (its probabilities) or a RetinaNet (best covering box score)."""
    model = load_trained_model(experiment, dataset, name)
    if dataset == "rsna":
        return score_maps(model, images)
    return model.predict(images, batch_size=16, verbose=0)[..., 0].astype(np.float32)


class _Rows:
    """Collects long-format score rows for one data set."""

    def __init__(self, dataset: str, ids: list[str]):
        self.dataset, self.ids, self.rows = dataset, ids, []

    def add(self, test: str, metric: str, group: str, state: str, values: np.ndarray) -> None:
        self.rows += [(self.dataset, test, metric, group, state, i, float(v)) for i, v in zip(self.ids, values)]

    def utility(self, group: str, state: str, scores: dict[str, np.ndarray]) -> None:
        for metric, values in scores.items():
            self.add("utility", metric, group, state, values)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=SCORE_COLUMNS)
