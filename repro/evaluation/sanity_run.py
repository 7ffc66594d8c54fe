"""A run's sanity-check scores (evaluation.sanity; the checks: repro.evaluation.sanity).

The checks on stored maps are scored per data set here (the validation maps that tune
cheXlocalize's threshold and the bottom-up states' maps are the maps stage's). The model calls of
the sMPRT, random-logit and faithfulness checks are units of work, one (data set, test, method or
group) each, stored in the run's sanity/ folder with what they were made from, so that a killed
run resumes and a cluster runs them side by side. Everything is handed in: the run's MapContext
(layout, models, saliency settings and parameters), the roles and the evaluation settings, never
the Experiment.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from repro.data.dataset import Dataset
from repro.evaluation.maps import MapContext, model_and_inputs, store_of
from repro.evaluation.plan import INPUT_RANGE, MapPlan, noise_seed
from repro.evaluation.sanity import (FAITHFULNESS_TESTS, NOISE, OTHER_CLASS, faithfulness_scores, first_of_sample,
                                     null_maps, other_classes, random_logit_scores, sanity_scores, smprt_scores)
from repro.evaluation.scoring import SCORE_COLUMNS, TruthFor, control_maps, truth_for
from repro.evaluation.selection import ImageSelection
from repro.experiments import Evaluation, Roles, SanityChecks
from repro.io import fingerprint, read_json_object, write_json
from repro.protocol import ORIGINAL, RANDOM_LOGIT, SMPRT, DatasetSpec
from repro.sanity import noisy_average
from repro.versions import MAPS_VERSION, SANITY_VERSION

RunUnits = Callable[..., list]    # an executor's map(function, jobs, progress=...)


def run_sanity_scores(specs: dict[str, DatasetSpec], datasets: dict[str, Dataset], plans: dict[str, MapPlan], *,
                      context: MapContext, roles: Roles, evaluation: Evaluation, run_units: RunUnits,
                      progress: bool = True) -> pd.DataFrame:
    """Every data set's sanity-check scores per image (SCORE_COLUMNS): the checks on stored maps,
    then the units of model calls through `run_units`."""
    frames = []
    truths = {name: truth_for(dataset, plans[name].selection) for name, dataset in datasets.items()}
    for name, dataset in datasets.items():
        plan = plans[name]
        tuning = None
        if plan.tuning:
            tuning_selection = ImageSelection(plan.tuning, plan.tuning, ())
            tuning = (tuning_selection, truth_for(dataset, tuning_selection))
        frames.append(sanity_scores(specs[name], plan.selection, truths[name],
                                    _map_source(context, name, plan), roles=roles, states=plan.states,
                                    localizers=plan.localizers, methods=context.saliency.methods,
                                    evaluation=evaluation, shape=plan.shape, tuning=tuning))
    frames += _smprt(plans, context, roles, evaluation, run_units, progress=progress)
    frames += _random_logit(plans, context, roles, evaluation, run_units, progress=progress)
    frames += _faithfulness(truths, plans, context, roles, evaluation, run_units, progress=progress)
    return pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]


def _map_source(context: MapContext, dataset_name: str, plan: MapPlan):
    """`maps(model, state, method, ids)`: the stored maps of the plan, checked by fingerprint."""
    store = store_of(context.layout, dataset_name)

    def maps(model, state, method, ids):
        return store.stack(model, state, method, ids, plan.fingerprint(model, state, method), shape=plan.shape)

    return maps


def _faithfulness(truths: dict[str, TruthFor], plans: dict[str, MapPlan], context: MapContext, roles: Roles,
                  evaluation: Evaluation, run_units: RunUnits, *, progress: bool) -> list[pd.DataFrame]:
    """The deletion / insertion and ROAD scores of replicate 1's trained maps: a unit per (data set,
    test, group), reused from the run's sanity/ folder when made from the same maps and settings.
    truths: each data set's truth of its selection (the EDGE / ORACLE controls are made from it)."""
    sanity = evaluation.sanity
    tests = [test for test in FAITHFULNESS_TESTS if test in sanity.tests]
    if not tests:
        return []
    jobs, methods, replicate = [], context.saliency.methods, roles.replicates[0]
    for name, truth in truths.items():
        plan = plans[name]
        ids = first_of_sample(plan.selection, sanity.faithfulness_images)
        maps = _map_source(context, name, plan)
        controls = control_maps(plan.selection, truth) if evaluation.controls else {}
        model_key = plan.fingerprint(replicate, ORIGINAL, methods[0])   # covers the model's own fingerprint
        for group in [*methods, *controls, NOISE]:
            if group in methods:
                smaps = maps(replicate, ORIGINAL, group, ids)
            elif group in controls:
                smaps = controls[group](ids)
            else:
                smaps = null_maps(sanity.seed, plan.shape)[group](replicate, ORIGINAL, ids)
            for test in tests:
                made_from = fingerprint({"test": test, "group": group, "ids": list(ids), "model": model_key,
                                         "maps": hashlib.sha256(np.ascontiguousarray(smaps).tobytes()).hexdigest(),
                                         "steps": sanity.deletion_steps, "seed": sanity.seed,
                                         "version": [MAPS_VERSION, SANITY_VERSION]})
                jobs.append((context, sanity, name, test, group, replicate, ids, smaps, made_from,
                             str(context.layout.sanity_dir(name) / f"{test}-{group}.json")))
    return run_units(faithfulness_unit, jobs, progress="faithfulness" if progress else None)


def _random_logit(plans: dict[str, MapPlan], context: MapContext, roles: Roles, evaluation: Evaluation,
                  run_units: RunUnits, *, progress: bool) -> list[pd.DataFrame]:
    """The random-logit test's maps of the other class and their SSIM with the stored maps of the
    predicted class: replicate 1's trained model on the SSIM sample, a unit per (data set, method),
    reused from the run's sanity/ folder when made from the same maps and settings."""
    if RANDOM_LOGIT not in evaluation.sanity.tests:
        return []
    jobs, saliency, replicate = [], context.saliency, roles.replicates[0]
    for name, plan in plans.items():
        ids = plan.selection.sample
        maps = _map_source(context, name, plan)
        seed = noise_seed(saliency.seed, saliency.noise, replicate, OTHER_CLASS)
        for method in saliency.methods:
            key = plan.fingerprint(replicate, ORIGINAL, method)
            made_from = fingerprint({"test": RANDOM_LOGIT, "maps": key, "ids": list(ids), "seed": seed,
                                     "params": context.params[method], "sanity_seed": evaluation.sanity.seed,
                                     "data_range": evaluation.ssim_data_range,
                                     "version": [MAPS_VERSION, SANITY_VERSION]})
            jobs.append((context, name, method, replicate, ids, maps(replicate, ORIGINAL, method, ids), seed,
                         evaluation.sanity.seed, evaluation.ssim_data_range, made_from,
                         str(context.layout.sanity_dir(name) / f"{RANDOM_LOGIT}-{method}.json")))
    return run_units(random_logit_unit, jobs, progress="random logit" if progress else None)


def _smprt(plans: dict[str, MapPlan], context: MapContext, roles: Roles, evaluation: Evaluation,
           run_units: RunUnits, *, progress: bool) -> list[pd.DataFrame]:
    """sMPRT: replicate 1's maps of the trained and the fully randomized model, each averaged over
    noisy copies of the image, on the first `smprt_images` of the SSIM sample; a unit per (data set,
    method), reused from the run's sanity/ folder when made from the same models and settings."""
    sanity = evaluation.sanity
    if SMPRT not in sanity.tests:
        return []
    jobs, replicate = [], roles.replicates[0]
    for name, plan in plans.items():
        ids, fully = first_of_sample(plan.selection, sanity.smprt_images), plan.states[replicate][-1]
        for method in context.saliency.methods:
            made_from = fingerprint({"test": SMPRT, "trained": plan.fingerprint(replicate, ORIGINAL, method),
                                     "randomized": plan.fingerprint(replicate, fully, method), "ids": list(ids),
                                     "samples": sanity.smprt_samples, "noise": sanity.smprt_noise, "seed": sanity.seed,
                                     "pairs": [evaluation.pairs_per_image, evaluation.pair_seed],
                                     "data_range": evaluation.ssim_data_range,
                                     "version": [MAPS_VERSION, SANITY_VERSION]})
            jobs.append((context, sanity, evaluation, name, method, replicate, fully, ids, made_from,
                         str(context.layout.sanity_dir(name) / f"{SMPRT}-{method}.json")))
    return run_units(smprt_unit, jobs, progress="sMPRT" if progress else None)


def smprt_unit(context: MapContext, sanity: SanityChecks, evaluation: Evaluation, dataset_name: str, method: str,
               model_name: str, fully: str, ids, made_from: str, path: str) -> pd.DataFrame:
    """One method's sMPRT scores, read from `path` when it holds them for `made_from`, else computed
    and written there: in each state (trained, fully randomized), each image's raw attributions
    averaged over `smprt_samples` noisy copies of it (repro.sanity.noisy_average: the last copy the
    image itself), for the class that state's model predicts for the image, then post-processed as
    every map is (Quantus normalises after the mean)."""
    stored = _stored_unit(path, made_from)
    if stored is not None:
        return stored
    from repro.saliency import postprocess, saliency_maps     # TensorFlow: only where a unit is computed
    from repro.saliency.segments import SegmentCache
    saliency, denoised = context.saliency, {}
    for state in (ORIGINAL, fully):
        model, images, _ = model_and_inputs(context, dataset_name, model_name, ids, state=state)
        targets = np.argmax(np.asarray(model(images, training=False)), axis=1)
        seed = noise_seed(saliency.seed, saliency.noise, model_name, f"{SMPRT}/{state}")

        def explain(copies, i, model=model, targets=targets, seed=seed):
            # A noisy copy has segments of its own: an in-memory cache per call keeps none of them.
            return saliency_maps(model, copies, method, target=int(targets[i]), seed=seed, raw=True,
                                 input_range=INPUT_RANGE, batch_size=saliency.batch_size, backend=saliency.backend,
                                 segment_cache=SegmentCache(), **context.params[method])

        keys = [f"{dataset_name}/{model_name}/{state}/{i}" for i in ids]
        means = noisy_average(explain, images, seed=sanity.seed, keys=keys, samples=sanity.smprt_samples,
                              noise=sanity.smprt_noise, batch_size=saliency.batch_size or 16)
        denoised[state] = postprocess(means, method)
    frame = smprt_scores(dataset_name, method, model_name, fully, ids, denoised[ORIGINAL], denoised[fully],
                         evaluation=evaluation)
    write_json(Path(path), {"made_from": made_from, "rows": frame.to_numpy().tolist()})
    return frame


def random_logit_unit(context: MapContext, dataset_name: str, method: str, model_name: str, ids, predicted_maps,
                      seed: int, class_seed: int, data_range: float, made_from: str, path: str) -> pd.DataFrame:
    """One method's other-class maps (repro.saliency, as the maps stage makes them but for the
    class each image is not predicted as) and their SSIM with the predicted-class maps; read from
    `path` when it holds them for `made_from`, else computed and written there."""
    stored = _stored_unit(path, made_from)
    if stored is not None:
        return stored
    from repro.saliency import saliency_maps     # TensorFlow: only where a unit is computed
    model, images, segments = model_and_inputs(context, dataset_name, model_name, ids)
    others = other_classes(np.asarray(model(images, training=False)), [f"{dataset_name}/{i}" for i in ids],
                           seed=class_seed)
    other_maps = np.empty(predicted_maps.shape, np.float32)
    for target in np.unique(others):     # one call per class explained
        rows = np.flatnonzero(others == target)
        other_maps[rows] = saliency_maps(model, images[rows], method, target=int(target), seed=seed,
                                         input_range=INPUT_RANGE, batch_size=context.saliency.batch_size,
                                         backend=context.saliency.backend, segment_cache=segments,
                                         **context.params[method])
    frame = random_logit_scores(dataset_name, method, model_name, ids, predicted_maps, other_maps,
                                data_range=data_range)
    write_json(Path(path), {"made_from": made_from, "rows": frame.to_numpy().tolist()})
    return frame


def faithfulness_unit(context: MapContext, sanity: SanityChecks, dataset_name: str, test: str, group: str,
                      model_name: str, ids, smaps, made_from: str, path: str) -> pd.DataFrame:
    """One group's faithfulness scores, read from `path` when it holds them for `made_from`, else
    computed with the model's trained weights (repro.models.resident) and written there."""
    stored = _stored_unit(path, made_from)
    if stored is not None:
        return stored
    model, images, _ = model_and_inputs(context, dataset_name, model_name, ids)

    def logits(batch):
        return np.asarray(model(batch, training=False))

    frame = faithfulness_scores(dataset_name, test, group, model_name, ids, images, smaps, logits,
                                sanity, batch_size=context.saliency.batch_size or 16)
    write_json(Path(path), {"made_from": made_from, "rows": frame.to_numpy().tolist()})
    return frame


def _stored_unit(path: str, made_from: str) -> pd.DataFrame | None:
    """A unit's stored score rows when `path` holds them for `made_from`; None otherwise."""
    try:
        stored = read_json_object(Path(path))
    except ValueError:      # absent or damaged: computed again
        return None
    if stored.get("made_from") != made_from:
        return None
    return pd.DataFrame(stored["rows"], columns=SCORE_COLUMNS)
