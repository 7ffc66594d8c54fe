"""What selecting all fourteen methods adds to a finished run's maps stage (the demo by default).

The maps a run needs are counted from the kit's own planner with all fourteen methods selected
(per architecture and method). Each method's seconds per map are measured on the run's own trained
models, on a copy of its data, cache and models (nothing of the original run is touched): for every
(architecture, method), the first chunk of the trained model's maps is computed through the
pipeline's own `compute_chunk` (it traces the method's compiled calls), then the second chunk is
timed. Projected seconds = maps x seconds per map. The same projection for the paper's eight is
printed beside the maps stage the run measured (provenance.json), which says how far the
projection can be trusted: it leaves out re-randomizing the model for each cascade state and
the scheduling of chunks and the scores; XRAI's segments are timed apart, once per image, as the
run computes them.

    python benchmarks/all_methods_time.py --experiment demo --run-dir runs/demo \\
        --set saliency.overrides.GIG.x_steps=20 --out runs/bench/all_methods_time.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from repro.runtime import import_tensorflow  # noqa: E402

import_tensorflow()       # first, without TensorFlow's start-up chatter on a machine without a GPU
from repro import pipeline  # noqa: E402
from repro.evaluation.plan import LOCALIZER  # noqa: E402
from repro.experiments import load_experiment  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402
from repro.protocol import EXTRA_METHODS, METHODS, ORIGINAL, PAPER_METHODS  # noqa: E402

SEGMENTS = ("(any)", "XRAI segments")    # a row of its own: per image, not per map


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--run-dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="a setting changed for the extra methods (e.g. saliency.overrides.GIG.x_steps=20)")
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS),
                        help="time only these (default: all fourteen)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    run = load_experiment(args.experiment, run_dir=args.run_dir)
    record = run.layout.root / "provenance.json"     # absent while the run is unfinished
    provenance = json.loads(record.read_text()) if record.is_file() else {"stages": {"maps": {"seconds": None}},
                                                                          "wall_seconds": None}
    work = Path(tempfile.mkdtemp(prefix="all-methods-"))
    try:
        for part in ("data", "cache", "models"):
            shutil.copytree(run.layout.root / part, work / part)
        experiment = load_experiment(args.experiment, run_dir=work, overrides=[
            f"saliency.methods=[{', '.join(METHODS)}]", "publish_dir=null", "publish_readme=null", *args.set])
        datasets = pipeline.prepare_data(experiment, progress=False)
        tasks = [t for d in datasets.values() for t in pipeline.plan_maps(experiment, d).tasks
                 if t.method != LOCALIZER]
        arch = {name: spec.arch for name, spec in experiment.models.items()}
        maps = Counter()
        for task in tasks:
            maps[arch[task.model], task.method] += len(task.image_ids)
        # XRAI's segments: once per image, whatever the model or state (a CPU task of its own)
        maps[SEGMENTS] = len({(t.dataset, i) for t in tasks if t.method == "XRAI" for i in t.image_ids})
        seconds_per_map = measure(experiment, tasks, arch, args.methods)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [{"architecture": a, "method": m, "maps": n, "seconds_per_map": seconds_per_map[a, m],
             "projected_seconds": n * seconds_per_map[a, m]} for (a, m), n in sorted(maps.items())
            if (a, m) in seconds_per_map]
    total = lambda methods: sum(r["projected_seconds"] for r in rows  # noqa: E731
                                if r["method"] in methods or (r["method"] == SEGMENTS[1] and "XRAI" in methods))
    result = {"experiment": args.experiment, "overrides": args.set, "rows": rows,
              "projected_paper_eight_seconds": total(PAPER_METHODS),
              "measured_maps_stage_seconds": provenance["stages"]["maps"]["seconds"],
              "projected_extra_six_seconds": total(EXTRA_METHODS),
              "run_wall_seconds": provenance["wall_seconds"]}
    return show_and_save(result, report(result), args.out)


def measure(experiment, tasks, arch, methods) -> dict[tuple[str, str], float]:
    """Seconds per map of every (architecture, method): the second full chunk of the trained
    state of the first model of that architecture, timed after the first (the warm-up)."""
    from repro.evaluation.maps import compute_chunk, segment_chunk
    context = pipeline.map_context(experiment)
    first_model = {}
    for task in tasks:
        first_model.setdefault(arch[task.model], task.model)
    seconds = {}
    for architecture, model in first_model.items():
        for method in methods:
            chunks = [t for t in tasks if t.model == model and t.state == ORIGINAL and t.method == method
                      and len(t.image_ids) == experiment.settings.saliency.chunk_size][:2]
            if len(chunks) < 2:
                raise SystemExit(f"{model}: fewer than two full chunks of {method} maps to time")
            compute_chunk(context, chunks[0])
            if method == "XRAI" and SEGMENTS not in seconds:   # segments apart, as the run computes them
                started = time.perf_counter()
                segment_chunk(context, chunks[1].dataset, chunks[1].image_ids)
                seconds[SEGMENTS] = (time.perf_counter() - started) / len(chunks[1].image_ids)
            started = time.perf_counter()
            compute_chunk(context, chunks[1])
            seconds[architecture, method] = (time.perf_counter() - started) / len(chunks[1].image_ids)
            print(f"{architecture} {method}: {seconds[architecture, method]:.3f} s per map", flush=True)
    return seconds


def report(result: dict) -> str:
    lines = ["| architecture | method | maps | s per map | projected min |", "|---|---|---|---|---|"]
    lines += [f"| {r['architecture']} | {r['method']} | {r['maps']} | {r['seconds_per_map']:.3f} "
              f"| {r['projected_seconds'] / 60:.1f} |" for r in result["rows"]]
    minutes = lambda key: float("nan") if result[key] is None else result[key] / 60  # noqa: E731
    lines += ["", f"paper's eight: projected {minutes('projected_paper_eight_seconds'):.1f} min, "
              f"the run's maps stage measured {minutes('measured_maps_stage_seconds'):.1f} min",
              f"the six later methods: projected {minutes('projected_extra_six_seconds'):.1f} min more "
              f"(the run took {minutes('run_wall_seconds'):.1f} min)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
