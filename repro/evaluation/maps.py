"""Computing the planned maps: one chunk at a time, in this process or in any worker process.

`MapContext` is everything a process needs besides the run directory's files (picklable: a Dask
worker receives it once per task and keeps what it loads). `compute_chunk` reads the chunk's
images from the data cache, puts the model in the task's state (repro.models.resident) and writes
each map to the store. A chunk whose maps are all present and valid is skipped, so any process
can resume any other's work; a chunk with some maps missing is computed whole again (the same
rows share the same model calls, so the maps it rewrites come out bit for bit as before).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tqdm.auto import tqdm

from repro.data.prepare import DataSource
from repro.evaluation.plan import INPUT_RANGE, LOCALIZER, MapTask
from repro.evaluation.selection import indices_of
from repro.experiments import Cascade, ModelSpec, Runtime, Saliency
from repro.layout import RunLayout
from repro.protocol import ORIGINAL
from repro.runtime import configure
from repro.saliency.segments import SegmentCache
from repro.saliency.store import MapStore
from repro.worker import WORKER


@dataclass(frozen=True)
class MapContext:
    layout: RunLayout
    data: dict[str, DataSource]
    models: dict[str, ModelSpec]
    saliency: Saliency
    params: dict[str, dict]       # each method's resolved parameters
    cascade: Cascade
    runtime: Runtime


@dataclass
class Resident:
    """What one process keeps between chunks of one run: data sets, models, segment caches
    (held in repro.worker.WORKER.maps; WORKER.release("maps") lets go of them)."""
    run: int                   # which run directory and models they are for
    models: object             # repro.models.resident.ResidentModels
    datasets: dict = field(default_factory=dict)
    segments: dict = field(default_factory=dict)


def store_of(layout: RunLayout, dataset: str) -> MapStore:
    return MapStore(layout.maps_dir(dataset))


def is_done(context: MapContext, task: MapTask) -> bool:
    store = store_of(context.layout, task.dataset)
    return not store.missing(task.model, task.state, task.method, task.image_ids, task.fingerprint, shape=task.shape)


def compute_chunk(context: MapContext, task: MapTask) -> int:
    """Compute and store the task's maps unless they are all there; return how many were written."""
    if is_done(context, task):
        return 0
    resident = _resident(context)   # first: it starts TensorFlow quietly, with the run's threads
    from repro.models.localizers import localizer_maps
    from repro.saliency import saliency_maps
    dataset = _dataset(context, resident, task.dataset)
    images = dataset.model_inputs(indices_of(dataset, task.image_ids))
    model = resident.models.in_state(task.dataset, task.model, task.state)
    if task.method == LOCALIZER:
        maps = localizer_maps(model, images, context.models[task.model].arch)
    else:
        maps = saliency_maps(model, images, task.method, seed=task.seed, input_range=INPUT_RANGE,
                             batch_size=context.saliency.batch_size, backend=context.saliency.backend,
                             segment_cache=_segments(context, resident, task.dataset),
                             **context.params[task.method])
    store = store_of(context.layout, task.dataset)
    for image_id, smap in zip(task.image_ids, maps):
        store.write(task.model, task.state, task.method, image_id, smap, task.fingerprint)
    return len(task.image_ids)


def model_and_inputs(context: MapContext, dataset_name: str, model_name: str, image_ids, state: str = ORIGINAL):
    """For a unit of model calls beside the maps (the sanity checks): the model `model_name` of the
    data set in `state` (trained by default) as this process holds it (repro.models.resident: use it
    before asking for another), the images' model inputs, and the data set's XRAI segment cache."""
    from repro.runtime import import_tensorflow
    import_tensorflow()     # quietly, before repro.models.resident imports Keras in a fresh process
    resident = _resident(context)
    dataset = _dataset(context, resident, dataset_name)
    images = dataset.model_inputs(indices_of(dataset, image_ids))
    return resident.models.in_state(dataset_name, model_name, state), images, _segments(context, resident, dataset_name)


def segment_chunk(context: MapContext, dataset_name: str, image_ids: tuple[str, ...]) -> int:
    """XRAI's segments of some images, into the run's segment cache (numpy work on one core: no
    model, no TensorFlow, so that any process can do it beside the ones that compute maps)."""
    dataset = context.data[dataset_name].load(progress=False)
    cache = SegmentCache(context.layout.segments_dir(dataset_name))
    for image in dataset.model_inputs(indices_of(dataset, image_ids)):
        cache.get(image)
    return len(image_ids)


def xrai_images(tasks: list[MapTask]) -> dict[str, list[str]]:
    """Per data set, the images that XRAI maps are planned for, each once, in plan order (every
    model and state of an image shares its segments)."""
    images: dict[str, dict[str, None]] = {}
    for task in tasks:
        if task.method == "XRAI":
            images.setdefault(task.dataset, {}).update(dict.fromkeys(task.image_ids))
    return {name: list(ids) for name, ids in images.items()}


def compute_in_process(context: MapContext, tasks: list[MapTask], *, progress: bool = True) -> int:
    """Every task in this process, in plan order; returns the number of maps written."""
    todo = [task for task in tasks if not is_done(context, task)]
    total = sum(len(task.image_ids) for task in tasks)
    done = total - sum(len(task.image_ids) for task in todo)
    written = 0
    with tqdm(total=total, initial=done, desc="maps", unit="map", disable=not progress) as bar:
        for task in todo:
            bar.set_postfix_str(f"{task.dataset} {task.model} {task.state} {task.method}", refresh=False)
            written += compute_chunk(context, task)
            bar.update(len(task.image_ids))
    return written


def _resident(context: MapContext) -> Resident:
    """This process's resident state for the run (one run at a time per process)."""
    from repro.models.resident import ResidentModels
    run = hash((str(context.layout.root), tuple(sorted(context.models))))
    if WORKER.maps is None or WORKER.maps.run != run:
        configure(deterministic=context.runtime.deterministic, threads=context.runtime.threads)
        WORKER.release("maps")   # free the previous run's models before loading this one's
        WORKER.maps = Resident(run, ResidentModels(
            context.layout, context.models, context.cascade, {name: d.size for name, d in context.data.items()}))
    return WORKER.maps


def _dataset(context: MapContext, resident: Resident, name: str):
    if name not in resident.datasets:
        resident.datasets[name] = context.data[name].load(progress=False)
    return resident.datasets[name]


def _segments(context: MapContext, resident: Resident, name: str):
    if name not in resident.segments:
        resident.segments[name] = SegmentCache(context.layout.segments_dir(name))
    return resident.segments[name]

