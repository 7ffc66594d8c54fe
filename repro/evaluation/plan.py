"""Which maps the four tests need, as units of work, each tied to a fingerprint of its inputs.

For one data set and its ImageSelection:
- every InceptionV3 replicate (the cascade replicates): its trained model on the utility images and
  the sample, its fully randomized state on the sample (replicate 1 also on the utility images:
  the paper compares trained and randomized utility), the intermediate states on the curve images;
- the other models of the repeatability / reproducibility pairs: trained, on the utility images
  and the sample;
- the localization networks (method LOCALIZER): their per-pixel maps of the same images;
- with the sanity checks on, the maps some of them need (after all of the above, so that the
  tests' chunks stay as they are): the validation positives (cheXlocalize's tuned threshold) and
  the bottom-up randomization states.
A (model, state, method) is cut into chunks of `saliency.chunk_size` images in a fixed order, so
the rows that share a model call never depend on what an earlier, interrupted run had finished:
a resumed or distributed run computes the same bits as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from repro.data.dataset import Dataset
from repro.evaluation.selection import ImageSelection, select_images, validation_positives
from repro.experiments import Cascade, Evaluation, ModelSpec, Roles, Saliency, TrainSettings
from repro.io import fingerprint
from repro.layout import RunLayout
from repro.models.records import model_fingerprint, unusable_model
from repro.protocol import BOTTOM_UP, INCEPTION_STATES, LOCALIZATION, ORIGINAL
from repro.sanity import bottom_up_split
from repro.versions import MAPS_VERSION

LOCALIZER = "LOCALIZER"      # the method name of a localization network's own map
DEFAULT_TARGET = "predicted"
INPUT_RANGE = (0.0, 255.0)   # the kit's models take [0, 255] images and scale them inside


@dataclass(frozen=True)
class MapTask:
    """One unit of work: the maps of a chunk of images for one (model, state, method)."""
    dataset: str
    model: str
    state: str
    method: str
    image_ids: tuple[str, ...]
    fingerprint: str            # what every map of the task is made from (checked on read)
    seed: int                   # the SmoothGrad noise seed of this model and state
    shape: tuple[int, int]      # each map's: the model input's (checked on read)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.state, self.method)


def noise_seed(seed: int, noise: str, model: str, state: str) -> int:
    """The noise seed of one model state: per (seed, model, state) when independent (images add
    their own hash in repro.saliency), so that maps compared with each other never share noise;
    the experiment's seed itself when shared."""
    if noise == "shared":
        return seed
    digest = hashlib.sha256(f"{seed}/{model}/{state}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def map_fingerprint(*, model_fingerprint: str, state: str, method: str, params: dict | None, seed: int,
                    saliency: Saliency, cascade: Cascade) -> str:
    if method == LOCALIZER:
        return fingerprint({"model": model_fingerprint, "localizer": True, "version": MAPS_VERSION})
    return fingerprint({
        "model": model_fingerprint, "state": state, "method": method, "params": params, "seed": seed,
        "cascade": None if state == ORIGINAL else cascade.model_dump(mode="json"),
        "backend": saliency.backend, "batch_size": saliency.batch_size, "chunk_size": saliency.chunk_size,
        "target": DEFAULT_TARGET, "input_range": INPUT_RANGE, "version": MAPS_VERSION})


def needed_maps(selection: ImageSelection, roles: Roles, states: dict[str, tuple[str, ...]],
                localizers: tuple[str, ...]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(model, state) -> the images whose maps the tests use, in selection order.

    states: each cascade replicate's states, original first and fully randomized last."""
    order = selection.all
    wanted: dict[tuple[str, str], set[str]] = {}

    def add(model: str, state: str, ids) -> None:
        wanted.setdefault((model, state), set()).update(ids)

    for replicate in roles.replicates:
        replicate_states = states[replicate]
        add(replicate, ORIGINAL, selection.utility + selection.sample)
        add(replicate, replicate_states[-1], selection.sample)
        for state in replicate_states[1:-1]:
            add(replicate, state, selection.curve)
    add(roles.replicates[0], states[roles.replicates[0]][-1], selection.utility)
    for pair in (roles.repeatability, roles.reproducibility):
        for model in pair or ():
            add(model, ORIGINAL, selection.utility + selection.sample)
    for model in localizers:
        add(model, ORIGINAL, selection.utility + selection.sample)
    return {key: tuple(i for i in order if i in ids) for key, ids in wanted.items()}


def map_tasks(dataset: str, needed: dict[tuple[str, str], tuple[str, ...]], localizers: tuple[str, ...],
              model_fingerprints: dict[str, str], params: dict[str, dict], saliency: Saliency,
              cascade: Cascade, *, shape: tuple[int, int]) -> list[MapTask]:
    """The chunks of work, ordered so that a process switches model and state as rarely as it can."""
    tasks = []
    for (model, state), ids in needed.items():
        methods = [LOCALIZER] if model in localizers else list(saliency.methods)
        seed = noise_seed(saliency.seed, saliency.noise, model, state)
        for method in methods:
            key = map_fingerprint(model_fingerprint=model_fingerprints[model], state=state, method=method,
                                  params=params.get(method), seed=seed, saliency=saliency, cascade=cascade)
            for start in range(0, len(ids), saliency.chunk_size):
                tasks.append(MapTask(dataset, model, state, method, ids[start:start + saliency.chunk_size],
                                     key, seed, shape))
    return tasks


@dataclass
class MapPlan:
    """One data set's image selection and the maps the tests need, with their fingerprints."""
    selection: ImageSelection
    tasks: list[MapTask]
    states: dict[str, tuple[str, ...]]
    localizers: tuple[str, ...]
    shape: tuple[int, int]      # every map's: the model input's
    tuning: tuple[str, ...] = ()   # validation images whose maps tune cheXlocalize's threshold (sanity checks)

    def fingerprint(self, model: str, state: str, method: str) -> str:
        for task in self.tasks:
            if task.key == (model, state, method):
                return task.fingerprint
        raise KeyError(f"no maps planned for {model} / {state} / {method}")


def plan_maps(dataset: Dataset, *, layout: RunLayout, models: dict[str, ModelSpec], roles: Roles,
              localizers: tuple[str, ...], train: dict[str, TrainSettings], evaluation: Evaluation,
              saliency: Saliency, parameters: dict[str, dict], methods=None, states=None,
              source: str = "the experiment", retrain: str = "repro train") -> MapPlan:
    """What the tests need of one data set: selection, chunks of maps, fingerprints. `train`: the
    training settings by architecture (the models' fingerprints); `source` and `retrain` name the
    experiment file and the command that trains its models, in errors."""
    if not roles.replicates:
        raise ValueError(f"{source}: no classifier to explain: the experiment needs models")
    selection = select_images(dataset, evaluation)
    involved = {*roles.replicates, *localizers, *(m for p in (roles.repeatability, roles.reproducibility)
                                                  for m in (p or ()))}
    fingerprints, cascade_states = {}, {}
    for name in involved:
        spec = models[name]
        if spec.file is not None:
            fingerprints[name] = model_fingerprint(spec, None, dataset)
        else:
            wanted = model_fingerprint(spec, train[spec.arch], dataset)
            unusable = unusable_model(layout, dataset.name, name, wanted)
            if unusable is not None:
                raise FileNotFoundError(f"{dataset.name}/{name} cannot be used: {unusable} (run: {retrain})")
            fingerprints[name] = wanted
    cascade = evaluation.cascade
    for name in roles.replicates:
        spec = models[name]
        if spec.arch == "inception_v3":
            cascade_states[name] = INCEPTION_STATES
        else:   # a model of another architecture: its states follow its layers (TensorFlow loaded here)
            from repro.models.cascade import states_of
            from repro.models.training import load_trained_model
            cascade_states[name] = states_of(load_trained_model(layout, dataset.name, spec, size=dataset.size),
                                             groups=cascade.groups)
    needed = needed_maps(selection, roles, cascade_states, localizers)
    shape = (dataset.size, dataset.size)
    tasks = map_tasks(dataset.name, needed, localizers, fingerprints, parameters, saliency, cascade, shape=shape)
    tuning = tuning_images(dataset, evaluation)
    if tuning:   # chunks of their own after the tests' chunks, which stay as they are
        tuned_models = (roles.replicates[0], *localizers[:1])
        tasks += map_tasks(dataset.name, {(model, ORIGINAL): tuning for model in tuned_models}, localizers,
                           fingerprints, parameters, saliency, cascade, shape=shape)
    bottom_up = bottom_up_maps(selection, roles, cascade_states, evaluation)
    if bottom_up:   # the same: after every other chunk
        tasks += map_tasks(dataset.name, bottom_up, localizers, fingerprints, parameters, saliency, cascade,
                           shape=shape)
    if methods is not None:
        tasks = [t for t in tasks if t.method in methods or t.method == LOCALIZER]
    if states is not None:
        known = list(dict.fromkeys([*(state for model_states in cascade_states.values() for state in model_states),
                                    *(state for _, state in bottom_up)]))
        unknown = [state for state in states if state not in known]
        if unknown:
            raise ValueError(f"states: unknown {unknown}; the maps of {dataset.name} planned here have the states "
                             f"{', '.join(known)}")
        tasks = [t for t in tasks if t.state in states]
    return MapPlan(selection, tasks, cascade_states, localizers, shape, tuning)


def bottom_up_maps(selection: ImageSelection, roles: Roles, states: dict[str, tuple[str, ...]],
                   evaluation: Evaluation) -> dict[tuple[str, str], tuple[str, ...]]:
    """(model, state) -> images, for the sanity check `bottom_up` (else none): every cascade
    replicate's first bottom-up state (its lowest group randomized, where the check's verdict is
    taken) on the SSIM sample, and its later bottom-up states on the curve images (the curve)."""
    if evaluation.sanity is None or BOTTOM_UP not in evaluation.sanity.tests:
        return {}
    needed = {}
    for replicate in roles.replicates:
        first, later = bottom_up_split(states[replicate])
        needed[(replicate, first)] = selection.sample
        needed.update({(replicate, state): selection.curve for state in later})
    return needed


def tuning_images(dataset: Dataset, evaluation: Evaluation) -> tuple[str, ...]:
    """The validation positives whose maps (replicate 1's and the first localizer's) tune
    cheXlocalize's threshold, when the sanity check `localization` is on; else none."""
    if evaluation.sanity is None or LOCALIZATION not in evaluation.sanity.tests:
        return ()
    return validation_positives(dataset)
