"""Scaling the maps stage out on Dask, and what the paper-scale run would take.

Part 1, measured here: the maps stage of a small experiment (phantoms, one trained InceptionV3, the
paper's eight methods with reduced sampling) in-process, on `local:1` and on `local:2`, each from an
empty map store; and the per-task scheduling overhead on `local:2` from Dask's task stream: the idle
gap between one task's end and the next task's start on the same worker, as a fraction of the mean
task time (target: under 2% at the default chunk size).

Part 2, projected: the paper's protocol (both data sets at 320 px, three InceptionV3 replicates x 12
states, DenseNet121, the localizers, every positive test image for utility, the 100-image sample,
the `paper` preset), per stage on 1, 4 and 8 GPUs. Task counts come from the kit's own planner rules.
Measured here, on radiographs rather than noise (Felzenszwalb cuts uniform noise into thousands of
segments, chest radiographs into a few hundred): XRAI's segmentation and region ranking on the chest
CR of pydicom's test data and on release-format phantoms, each read and resized as the data stage
does, the ranking against stock PAIR on the same attribution (maps equal). The GPU's map and
training rates come from gpu_check.py's JSON when it exists (--gpu-check), else from this CPU's
measured gradient and training costs divided by an assumed --gpu-speedup (said in the output). The
data stage comes from bench_data.py's JSON (--data). Predicted hours per stage name the one that
stops scaling.

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
                        help="without a gpu_check.json: assumed GPU / this-CPU throughput ratio at 320 px")
    parser.add_argument("--gpu-check", default="runs/gpu-check/gpu_check.json",
                        help="gpu_check.py's JSON: the GPU's measured maps/s and training images/s, when it exists")
    parser.add_argument("--data", default="runs/bench/bench_data.json", help="bench_data.py's JSON, when it exists")
    parser.add_argument("--phantoms", type=int, default=4, help="release-format phantoms beside RG1 for XRAI's costs")
    parser.add_argument("--skip-measure", action="store_true", help="only the projection (its costs are measured)")
    parser.add_argument("--costs-from", help="an earlier bench_scale JSON whose measured costs the projection reuses")
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
            from repro.evaluation.maps import compute_in_process
            from repro.worker import WORKER
            compute_in_process(context, tasks, progress=False)
            WORKER.release("maps")
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
# One training task per (data set, architecture): the replicates of an architecture train one after
# another in one task (repro.pipeline.train_jobs). The localizers are costed as InceptionV3 per image.
TRAINING_TASKS = {"siim": {"inception_v3": 3, "densenet121": 1, "unet": 2},
                  "rsna": {"inception_v3": 3, "densenet121": 1, "retinanet": 2}}
DEMO = {"siim": {"utility": 54, "sample": 40, "curves": 2}, "rsna": {"utility": 40, "sample": 40, "curves": 2}}
DEMO_DRIVER_SECONDS = 51.2 + 96.0    # the published demo's scores and statistics stages (figures/provenance.json)


def image_states(utility: int, sample: int, curves: int, states: int) -> dict[str, int]:
    """(model, state) x image pairs of one data set (repro.evaluation.plan.needed_maps), per architecture."""
    return {"inception_v3": 3 * utility                  # each replicate's trained maps
                            + utility + 2 * sample       # fully randomized: replicate 1 on every image, 2 and 3 on the sample
                            + 3 * (states - 2) * curves,  # the intermediate states
            "densenet121": utility}


def project(args) -> dict:
    previous = read_json(args.costs_from)
    return projection(previous["projection"]["measured_here"] if previous else measure_costs(args), args)


def projection(measured: dict, args) -> dict:
    """The paper-scale run per stage on 1, 4 and 8 GPUs, from the costs measured here (measure_costs)."""
    gpu = read_json(args.gpu_check)
    data = read_json(args.data)
    params = load_preset("paper")
    gradients = {"GRAD": 1, "GBP": 1, "GCAM": 1, "GGCAM": 2, "SG": params["SG"]["nsamples"],
                 "IG": params["IG"]["x_steps"], "SIG": params["SIG"]["nsamples"] * params["SIG"]["x_steps"],
                 "XRAI": 2 * params["XRAI"]["x_steps"]}
    if gpu and gpu.get("gpu"):
        source = f"measured on {gpu.get('device', 'a GPU')} by gpu_check.py"
        map_seconds = {arch: {m: 1.0 / row["gpu_maps_per_s"] for m, row in gpu["architectures"][arch]["methods"].items()}
                       for arch in ("inception_v3", "densenet121")}
        train_seconds = {arch: 1.0 / gpu["architectures"][arch]["training_images_per_s"]
                         for arch in ("inception_v3", "densenet121")}
    else:
        source = f"this CPU's measured cost / an assumed GPU speed-up of {args.gpu_speedup:g}x (no gpu_check.json)"
        map_seconds = {arch: {m: g * measured["gradient_seconds"][arch] / args.gpu_speedup for m, g in gradients.items()}
                       for arch in ("inception_v3", "densenet121")}
        train_seconds = {arch: measured["training_seconds_per_image"][arch] / args.gpu_speedup
                         for arch in ("inception_v3", "densenet121")}
    train_seconds.update({"unet": train_seconds["inception_v3"], "retinanet": train_seconds["inception_v3"]})
    segmentation, ranking = measured["xrai"]["segmentation_seconds"], measured["xrai"]["ranking_seconds"]
    counts, gpu_seconds, cpu_seconds, training_tasks, paper_maps, demo_maps = {}, 0.0, 0.0, [], 0, 0
    states = len(INCEPTION_STATES)
    for dataset, images in PAPER.items():
        per_arch = image_states(images["utility"], images["sample"], images["sample"], states)
        demo = DEMO[dataset]
        demo_maps += sum(image_states(demo["utility"], demo["sample"], demo["curves"], states).values()) * len(PAPER_METHODS)
        maps = sum(per_arch.values()) * len(PAPER_METHODS)
        paper_maps += maps
        counts[dataset] = {"image_states": per_arch, "maps": maps,
                           "map_tasks": sum(int(np.ceil(n / args.chunk_size)) for n in per_arch.values()) * len(PAPER_METHODS),
                           "segmentation_tasks": int(np.ceil(images["utility"] / args.chunk_size)),
                           "training_tasks": len(TRAINING_TASKS[dataset])}
        gpu_seconds += sum(n * sum(map_seconds[arch].values()) for arch, n in per_arch.items())
        cpu_seconds += sum(per_arch.values()) * ranking + images["utility"] * segmentation
        training_tasks += [models * EPOCHS * PAPER_TRAIN[dataset] * train_seconds[arch]
                           for arch, models in TRAINING_TASKS[dataset].items()]
    data_seconds = None
    if data:
        data_seconds = 60 * sum(row["minutes_8_processes"] for row in data["paper"].values())
    driver = DEMO_DRIVER_SECONDS * paper_maps / demo_maps
    predictions = {}
    for gpus in (1, 4, 8):
        # training: whole tasks only, so it cannot go below its longest task
        training = max(sum(training_tasks) / gpus, max(training_tasks))
        stages = {"data (8 decoding processes)": data_seconds or 0.0, "training": training,
                  "maps (GPU)": gpu_seconds / gpus, "maps (CPU: XRAI segmentation, ranking)": cpu_seconds / gpus,
                  "scores, statistics, reports (driver)": driver}
        predictions[gpus] = {"hours": round(sum(stages.values()) / 3600, 2),
                             "critical_path": max(stages, key=stages.get),
                             "stages_hours": {k: round(v / 3600, 2) for k, v in stages.items()}}
    return {"measured_here": measured, "gpu_costs": source, "gradients_per_map": gradients,
            "tasks": sum(c["map_tasks"] for c in counts.values()), "counts": counts, "maps": paper_maps,
            "data_stage": data["paper"] if data else "not measured (run benchmarks/bench_data.py)",
            "predictions": predictions,
            "assumptions": {"gpu_speedup": None if gpu and gpu.get("gpu") else args.gpu_speedup, "epochs": EPOCHS,
                            "driver": f"the demo's scores and statistics ({DEMO_DRIVER_SECONDS:.0f} s) x "
                                      f"{paper_maps / demo_maps:.0f} (paper maps / demo maps)",
                            "note": "the localizers cost as InceptionV3 per training image; XRAI's CPU work runs "
                                    "on one core per GPU worker; the data stage on 8 processes of the driver"}}


def read_json(path) -> dict | None:
    import json
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else None


def measure_costs(args) -> dict:
    """On this machine at 320 px: one input gradient and one training image of InceptionV3 and
    DenseNet121 (batch 8; random weights cost as trained ones); XRAI's segmentation and region
    ranking on radiographs, decoded and resized as the data stage does: the chest CR of pydicom's
    test data (pydicom-data's RG1_UNCR) and --phantoms release-format phantoms. Each ranking runs
    on a real attribution (gradient x input of the InceptionV3), by ours and by stock PAIR on the
    same attribution and segments; the maps must be equal. Times are this process's CPU seconds:
    TensorFlow runs one thread here (configure above) and the rest is single-threaded numpy, so they
    are the work itself, which other jobs on a shared machine disturb far less than wall time."""
    import keras
    from saliency.core.xrai import XRAI, XRAIParameters, _get_segments_felzenszwalb

    from repro.models.classifiers import build_classifier, classifier_loss
    from repro.saliency.xrai import rank_regions
    x = (radiographs(args.phantoms) * 255.0)[..., None].repeat(3, axis=-1).astype(np.float32)
    batch = np.resize(x, (8, *x.shape[1:]))
    gradient_seconds, training_seconds, attributions = {}, {}, None
    for arch in ("inception_v3", "densenet121"):
        keras.utils.set_random_seed(0)
        model = build_classifier(arch, 320)
        step = raw_input_gradients(model)
        step(batch).numpy()
        started = time.process_time()
        for _ in range(3):
            step(batch).numpy()
        gradient_seconds[arch] = round((time.process_time() - started) / 24, 4)
        if attributions is None:
            attributions = np.concatenate([step(x[i:i + 8]).numpy() for i in range(0, len(x), 8)]) * x
        model.compile(keras.optimizers.Adam(1e-4), classifier_loss())
        labels = np.eye(2, dtype=np.float32)[np.arange(8) % 2]
        model.train_on_batch(batch, labels)
        started = time.process_time()
        for _ in range(2):
            model.train_on_batch(batch, labels)
        training_seconds[arch] = round((time.process_time() - started) / 16, 4)
        del model, step
    rows = []
    for image, attribution in zip(x, attributions):
        started = time.process_time()
        segments = _get_segments_felzenszwalb(image)
        segmented = time.process_time() - started
        started = time.process_time()
        ours = rank_regions(attribution.max(axis=-1), segments)
        ranked = time.process_time() - started
        started = time.process_time()
        stock = XRAI().GetMask(image, None, base_attribution=attribution, segments=segments,
                               extra_parameters=XRAIParameters(algorithm="full"))
        ranked_stock = time.process_time() - started
        if not np.array_equal(ours, stock):
            raise SystemExit("rank_regions and PAIR's XRAI gave different maps")
        rows.append({"segments": len(segments), "segmentation": segmented, "ranking": ranked, "ranking_pair": ranked_stock})
    median = {key: float(np.median([r[key] for r in rows])) for key in rows[0]}
    return {"gradient_seconds": gradient_seconds, "training_seconds_per_image": training_seconds,
            "xrai": {"images": len(rows), "segments_median": int(median["segments"]),
                     "segments_range": [min(r["segments"] for r in rows), max(r["segments"] for r in rows)],
                     "segmentation_seconds": round(median["segmentation"], 3),
                     "ranking_seconds": round(median["ranking"], 3), "ranking_pair_seconds": round(median["ranking_pair"], 3),
                     "ranking_speedup_over_pair": round(median["ranking_pair"] / median["ranking"], 1),
                     "maps_equal_to_pair": True}}


def radiographs(phantoms: int) -> np.ndarray:
    """(n, 320, 320) in [0, 1]: RG1 (a PA chest CR, 1955x1841, MONOCHROME1) and release-format
    phantoms, read and resized by the data stage's own functions."""
    from pydicom.data import get_testdata_file

    from repro.data.dataset import resize_image
    from repro.data.dicom import read_dicom
    from repro.data.phantoms import PhantomConfig, make_phantoms
    chest = get_testdata_file("RG1_UNCR.dcm")
    if chest is None:
        raise SystemExit("pydicom's chest CR (RG1_UNCR.dcm) is not installed: pip install pydicom-data")
    paths = [Path(chest)]
    work = Path(tempfile.mkdtemp(prefix="bench-scale-radiographs-"))
    if phantoms:
        roots = make_phantoms(work, phantoms, 0, config=PhantomConfig(size=1024, format="release"), progress=False)
        paths += sorted((roots["siim"] / "dicom-images-train").rglob("*.dcm"))
    images = np.stack([resize_image(read_dicom(path), 320) for path in paths])
    shutil.rmtree(work, ignore_errors=True)
    return images


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
    here, xrai = p["measured_here"], p["measured_here"]["xrai"]
    lines += [f"Projection of the paper-scale run ({p['maps']} maps in {p['tasks']} map tasks). Measured here at "
              f"320 px: one input gradient {here['gradient_seconds']} s, one training image "
              f"{here['training_seconds_per_image']} s; XRAI on {xrai['images']} radiographs ({xrai['segments_median']} "
              f"segments, {xrai['segments_range'][0]}-{xrai['segments_range'][1]}): segmentation "
              f"{xrai['segmentation_seconds']} s per image, ranking {xrai['ranking_seconds']} s per map (stock PAIR "
              f"{xrai['ranking_pair_seconds']} s, {xrai['ranking_speedup_over_pair']}x, maps equal). GPU costs: "
              f"{p['gpu_costs']}.", "",
              "| GPUs | hours | " + " | ".join(next(iter(p["predictions"].values()))["stages_hours"]) + " | critical path |",
              "|---|---|" + "---|" * len(next(iter(p["predictions"].values()))["stages_hours"]) + "---|"]
    for gpus, row in p["predictions"].items():
        lines.append(f"| {gpus} | {row['hours']} | " + " | ".join(str(v) for v in row["stages_hours"].values())
                     + f" | {row['critical_path']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
