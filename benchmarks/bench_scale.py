"""Scaling the maps stage out on Dask, and what the paper-scale run would take.

Part 1, measured here: the maps stage of a small experiment (phantoms, one trained InceptionV3, the
paper's eight methods with reduced sampling) in-process, on `local:1` and on `local:2`, each from an
empty map store; and the per-task scheduling overhead on `local:2` from Dask's task stream: the idle
gap between one task's end and the next task's start on the same worker, as a fraction of the mean
task time (target: under 2% at the default chunk size).

Part 2, projected: the paper's protocol (both data sets at 320 px, three InceptionV3 replicates x 12
states, DenseNet121, the localizers, every positive test image for utility, the 100-image sample,
the `paper` preset). Task counts come from the kit's own planner rules; per-map costs are the
gradients each method needs times the cost of one input gradient of InceptionV3 at 320 px measured
here, plus XRAI's CPU-only segmentation and ranking measured here; a GPU is assumed --gpu-speedup
times faster than this machine per gradient (an assumption: replace it with gpu_check.py's measured
rate). The predicted wall time on 1, 4, 8 and 16 GPUs names the stage that stops scaling.

    python benchmarks/bench_scale.py --out runs/bench/bench_scale.json
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from repro.runtime import configure  # noqa: E402

configure(deterministic=True, threads=1)

import numpy as np  # noqa: E402

from benchmarks.output import show_and_save  # noqa: E402
from benchmarks.reference import raw_input_gradients  # noqa: E402
from repro import pipeline  # noqa: E402
from repro.execution import InProcess  # noqa: E402
from repro.experiments import load_experiment  # noqa: E402
from repro.protocol import INCEPTION_STATES, PAPER_METHODS  # noqa: E402
from repro.saliency.params import load_preset  # noqa: E402

PAPER = {"siim": {"utility": 246, "sample": 100}, "rsna": {"utility": 601, "sample": 100}}
REDUCED = ["saliency.overrides={SG: {nsamples: 4}, IG: {x_steps: 4}, SIG: {x_steps: 2, nsamples: 2}, XRAI: {x_steps: 4}}"]


def main(argv=None) -> dict:
    args = parse(argv)
    result = {"settings": vars(args)}
    if not args.skip_measure:
        result["measured"] = measure_scaling(args)
    result["projection"] = project(args)
    return show_and_save(result, report(result), args.out)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="input size of the measured experiment")
    parser.add_argument("--images", type=int, default=16, help="positive test images in the measured experiment")
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--gpu-speedup", type=float, default=200.0,
                        help="assumed GPU / this-CPU throughput ratio for one input gradient at 320 px")
    parser.add_argument("--skip-measure", action="store_true", help="only the projection")
    parser.add_argument("--out")
    return parser.parse_args(argv)


# --- part 1 -----------------------------------------------------------------------------------------

def measure_scaling(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    overrides = [f"data.input_size={args.size}", "data.datasets=[siim]", "data.phantoms.n=160",
                 "models.densenet121=null", "models.unet=null", "models.retinanet=null",
                 "models.inception_v3.replicates={inception_r1: 1}", f"evaluation.utility_images={args.images}",
                 f"evaluation.ssim_images={args.images}", f"saliency.chunk_size={args.chunk_size}",
                 "saliency.batch_size=8", *REDUCED]
    experiment = load_experiment("smoke", run_dir=work, overrides=overrides)
    datasets = pipeline.stage_data(experiment, progress=False)
    pipeline.stage_train(experiment, InProcess(), progress=False)
    plans = {name: pipeline.plan_maps(experiment, d) for name, d in datasets.items()}
    tasks = [t for plan in plans.values() for t in plan.tasks]
    context = pipeline.map_context(experiment)
    timings = {}
    for label in ("in-process", "local:1", "local:2"):
        shutil.rmtree(experiment.layout.root / "maps", ignore_errors=True)
        started = time.perf_counter()
        if label == "in-process":
            from repro.evaluation.maps import compute_in_process, forget_resident
            compute_in_process(context, tasks, progress=False)
            forget_resident()
            stream = None
        else:
            from distributed import get_task_stream

            from repro.distributed import DaskExecutor
            with DaskExecutor(label, progress=False) as executor:
                # the scheduler records tasks only once the stream is asked for (dask/distributed#9253)
                with get_task_stream(client=executor.client) as recorded:
                    executor.maps(context, tasks, progress=False)
                stream = recorded.data if label == "local:2" else None
        timings[label] = round(time.perf_counter() - started, 1)
        if stream is not None:
            timings["overhead"] = scheduling_overhead(stream)
    shutil.rmtree(work, ignore_errors=True)
    maps = sum(len(t.image_ids) for t in tasks)
    return {"tasks": len(tasks), "maps": maps, "seconds": timings,
            "speedup_local2_over_in_process": round(timings["in-process"] / timings["local:2"], 2),
            "speedup_local2_over_local1": round(timings["local:1"] / timings["local:2"], 2)}


def scheduling_overhead(stream: list[dict]) -> dict:
    """Idle gaps between consecutive map tasks on each worker, against the tasks' compute time."""
    computes = sorted(((s["worker"], span["start"], span["stop"]) for s in stream if s["key"].startswith("maps-")
                       for span in s["startstops"] if span["action"] == "compute"))
    gaps, durations = [], []
    for (worker, start, stop), following in zip(computes, computes[1:]):
        durations.append(stop - start)
        if following[0] == worker:
            gaps.append(max(0.0, following[1] - stop))
    if not durations:
        raise SystemExit("the task stream recorded no map tasks: no overhead to measure")
    mean_task, mean_gap = float(np.mean(durations)), float(np.mean(gaps)) if gaps else 0.0
    return {"mean_task_seconds": round(mean_task, 3), "mean_gap_seconds": round(mean_gap, 4),
            "overhead_fraction": round(mean_gap / mean_task, 4)}


# --- part 2 -----------------------------------------------------------------------------------------

PAPER_TRAIN = {"siim": 8646, "rsna": 12039}
EPOCHS = 30                # the paper experiment's maximum (early stopping may end sooner)
MODELS_PER_DATASET = 6     # three InceptionV3, one DenseNet121, two localizers


def project(args) -> dict:
    gradient_seconds, train_seconds, xrai_cpu = measure_320()
    params = load_preset("paper")
    gradients = {"GRAD": 1, "GBP": 1, "GCAM": 1, "GGCAM": 2, "SG": params["SG"]["nsamples"],
                 "IG": params["IG"]["x_steps"], "SIG": params["SIG"]["nsamples"] * params["SIG"]["x_steps"],
                 "XRAI": 2 * params["XRAI"]["x_steps"]}
    seconds_per_image_state = sum(gradients.values()) * gradient_seconds / args.gpu_speedup
    counts, gpu_seconds, cpu_seconds, tasks, model_seconds = {}, 0.0, 0.0, 0, []
    states = len(INCEPTION_STATES)
    for dataset, images in PAPER.items():
        utility, sample = images["utility"], images["sample"]   # the sample is drawn from the utility images
        # repro.evaluation.plan.needed_maps: (model, state) -> images
        image_states = (3 * utility                  # each replicate's trained maps
                        + utility + 2 * sample       # fully randomized: replicate 1 on every image, 2 and 3 on the sample
                        + 3 * (states - 2) * sample  # the intermediate states
                        + utility)                   # DenseNet121
        counts[dataset] = {"image_states": image_states, "maps": image_states * len(PAPER_METHODS),
                           "map_tasks": int(np.ceil(image_states / args.chunk_size)) * len(PAPER_METHODS),
                           "segmentation_tasks": int(np.ceil(utility / args.chunk_size)),
                           "training_tasks": MODELS_PER_DATASET}
        tasks += counts[dataset]["map_tasks"]
        gpu_seconds += image_states * seconds_per_image_state
        cpu_seconds += image_states * xrai_cpu["ranking"] + utility * xrai_cpu["segmentation"]
        model_seconds += [EPOCHS * PAPER_TRAIN[dataset] * train_seconds / args.gpu_speedup] * MODELS_PER_DATASET
    predictions = {}
    for gpus in (1, 4, 8, 16):
        # training: whole models only (one task each), so it cannot go below the longest model
        training = max(sum(model_seconds) / gpus, max(model_seconds))
        stages = {"training": training, "maps (GPU)": gpu_seconds / gpus,
                  "maps (CPU: XRAI segmentation, ranking)": cpu_seconds / gpus, "driver (scores, statistics, reports)": 600.0}
        predictions[gpus] = {"hours": round(sum(stages.values()) / 3600, 2),
                             "critical_path": max(stages, key=stages.get),
                             "stages_hours": {k: round(v / 3600, 2) for k, v in stages.items()}}
    return {"gradient_seconds_at_320px_here": round(gradient_seconds, 4),
            "training_seconds_per_image_at_320px_here": round(train_seconds, 4),
            "xrai_cpu_seconds_per_image": xrai_cpu, "gradients_per_map": gradients, "tasks": tasks, "counts": counts,
            "predictions": predictions,
            "assumptions": {"gpu_speedup": args.gpu_speedup, "epochs": EPOCHS, "driver_seconds": 600,
                            "note": "every model costs as much as InceptionV3 per image; XRAI's CPU work runs on "
                                    "one CPU per GPU worker"}}


def measure_320() -> tuple[float, float, dict]:
    """One input gradient and one training image of InceptionV3 at 320 px (batch 8), and XRAI's CPU
    work per image, on this machine."""
    import keras
    from saliency.core.xrai import _get_segments_felzenszwalb

    from repro.models.classifiers import build_classifier
    from repro.saliency.xrai import rank_regions
    keras.utils.set_random_seed(0)
    model = build_classifier("inception_v3", 320)
    x = np.random.default_rng(0).uniform(0, 255, (8, 320, 320, 3)).astype(np.float32)
    step = raw_input_gradients(model)
    step(x).numpy()
    started = time.perf_counter()
    for _ in range(3):
        step(x).numpy()
    gradient = (time.perf_counter() - started) / 24
    from repro.models.classifiers import classifier_loss
    model.compile(keras.optimizers.Adam(1e-4), classifier_loss())
    labels = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    model.train_on_batch(x, labels)
    started = time.perf_counter()
    model.train_on_batch(x, labels)
    training = (time.perf_counter() - started) / 8
    started = time.perf_counter()
    segments = _get_segments_felzenszwalb(x[0])
    segmentation = time.perf_counter() - started
    attribution = np.random.default_rng(1).random(x[0].shape).astype(np.float32)
    started = time.perf_counter()
    rank_regions(attribution.max(axis=-1), segments)
    ranking = time.perf_counter() - started
    return gradient, training, {"segmentation": round(segmentation, 3), "ranking": round(ranking, 3)}


def report(result: dict) -> str:
    lines = ["# Scaling the maps stage (benchmarks/bench_scale.py)", ""]
    if "measured" in result:
        m = result["measured"]
        s = m["seconds"]
        lines += [f"Measured: {m['tasks']} map tasks, {m['maps']} maps. Wall seconds: in-process {s['in-process']}, "
                  f"local:1 {s['local:1']}, local:2 {s['local:2']} (local:2 / in-process speed-up "
                  f"{m['speedup_local2_over_in_process']}, over local:1 {m['speedup_local2_over_local1']}).",
                  f"Scheduling overhead on local:2: mean gap {s['overhead']['mean_gap_seconds']} s per task of "
                  f"{s['overhead']['mean_task_seconds']} s = {s['overhead']['overhead_fraction']:.2%} "
                  f"(target < 2%).", ""]
    p = result["projection"]
    lines += [f"Projection of the paper-scale run: {p['tasks']} map tasks; one 320 px gradient here "
              f"{p['gradient_seconds_at_320px_here']} s, assumed {p['assumptions']['gpu_speedup']}x faster on a GPU; "
              f"XRAI CPU work per image {p['xrai_cpu_seconds_per_image']}.", "",
              "| GPUs | predicted hours | critical path |", "|---|---|---|"]
    for gpus, row in p["predictions"].items():
        lines.append(f"| {gpus} | {row['hours']} | {row['critical_path']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
