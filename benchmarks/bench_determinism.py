"""What TensorFlow's op determinism costs and buys, and what a second thread buys, on this machine.

Three configurations: op determinism off and on with two TensorFlow threads, and on with one.
Each runs twice, each time in a fresh process (op determinism and threads are process-wide and
fixed once TensorFlow starts): InceptionV3 at --size px from a fixed seed, --steps Adam training
steps of batch --batch (timed after the first step, which traces the step: its time is reported
too), then GRAD and SG maps of --images images (timed after a warm-up call). Reported: seconds
per training step and per map, the time ratios, and whether the two runs of a configuration gave
the same weights and maps to the last bit. Two single-threaded worker processes make maps at twice
the one-thread rate; one two-threaded process at the two-thread rate: the last line compares them.

    python benchmarks/bench_determinism.py --out runs/bench/bench_determinism.json
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from benchmarks.fresh import in_fresh_process  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402  (no TensorFlow: the workers start it in their own processes)


def worker(deterministic: bool, threads: int, size: int, steps: int, batch: int, images: int) -> dict:
    sys.path.insert(0, str(REPOSITORY))
    from repro.runtime import configure
    configure(deterministic=deterministic, threads=threads)
    import keras
    import numpy as np

    from repro.models.classifiers import build_classifier, classifier_loss
    from repro.models.training import own_initializer_seeds
    from repro.saliency import saliency_maps
    keras.utils.set_random_seed(0)
    with own_initializer_seeds(0):
        model = build_classifier("inception_v3", size)
    model.compile(keras.optimizers.Adam(1e-3), classifier_loss())
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(batch) % 2]
    started = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    step = (time.perf_counter() - started) / steps
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights()))
    per_map = {}
    for method, params in (("GRAD", {}), ("SG", {"nsamples": 8})):
        saliency_maps(model, x[:1], method, batch_size=8, **params)
        started = time.perf_counter()
        maps = saliency_maps(model, x[:images], method, batch_size=8, **params)
        per_map[method] = (time.perf_counter() - started) / images
        digest.update(maps.tobytes())
    return {"seconds_first_step": first, "seconds_per_step": step, "seconds_per_map": per_map,
            "digest": digest.hexdigest()}


CONFIGURATIONS = {"default, 2 threads": (False, 2), "deterministic, 2 threads": (True, 2),
                  "deterministic, 1 thread": (True, 1)}


def run_in_fresh_process(args, deterministic: bool, threads: int) -> dict:
    return in_fresh_process("bench_determinism", "worker", deterministic, threads, args.size, args.steps,
                            args.batch, args.images)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = {"settings": vars(args), "runs": {}, "configurations": {}}
    for name, (deterministic, threads) in CONFIGURATIONS.items():
        first, second = (run_in_fresh_process(args, deterministic, threads) for _ in range(2))
        result["runs"][name] = [first, second]
        result["configurations"][name] = {
            "seconds_first_step": min(first["seconds_first_step"], second["seconds_first_step"]),
            "seconds_per_step": min(first["seconds_per_step"], second["seconds_per_step"]),
            "seconds_per_map": {m: min(first["seconds_per_map"][m], second["seconds_per_map"][m])
                                for m in first["seconds_per_map"]},
            "repeats_bitwise": first["digest"] == second["digest"]}
    c = result["configurations"]
    on, off, one = c["deterministic, 2 threads"], c["default, 2 threads"], c["deterministic, 1 thread"]
    result["determinism_cost"] = {"training step": round(on["seconds_per_step"] / off["seconds_per_step"], 3),
                                  **{f"{m} map": round(on["seconds_per_map"][m] / off["seconds_per_map"][m], 3)
                                     for m in on["seconds_per_map"]}}
    result["second_thread_speedup"] = {
        "training step": round(one["seconds_per_step"] / on["seconds_per_step"], 2),
        **{f"{m} map": round(one["seconds_per_map"][m] / on["seconds_per_map"][m], 2) for m in on["seconds_per_map"]}}
    return show_and_save(result, report(result), args.out)


def report(result: dict) -> str:
    s = result["settings"]
    lines = [f"InceptionV3 at {s['size']} px; {s['steps']} training steps of batch {s['batch']} after the first "
             f"(traced); maps of {s['images']} images, batch 8 (the faster of two fresh processes per configuration)", "",
             "| configuration | s first step (trace) | s / training step | s / GRAD map | s / SG map (8 samples) "
             "| two runs bitwise equal |", "|---|---|---|---|---|---|"]
    for name, r in result["configurations"].items():
        lines.append(f"| {name} | {r['seconds_first_step']:.1f} | {r['seconds_per_step']:.3f} | "
                     f"{r['seconds_per_map']['GRAD']:.4f} | {r['seconds_per_map']['SG']:.4f} | "
                     f"{'yes' if r['repeats_bitwise'] else 'no'} |")
    lines += ["", "op determinism, time on / off (2 threads): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["determinism_cost"].items()),
              "second thread, time 1 thread / 2 threads (deterministic): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["second_thread_speedup"].items())
              + " (two single-threaded workers: 2.00 for maps)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
