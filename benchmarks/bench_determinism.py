"""What TensorFlow's op determinism costs and buys, and what a second thread buys, on this machine.

Four configurations, each run twice, each time in a fresh process (threads and op determinism are
process-wide and fixed once TensorFlow starts): without op determinism (two threads, two kernels
side by side); op determinism with two threads but kernels side by side (the kit before
2026-12-03); the kit's deterministic runtime with two threads (repro.runtime.configure: one kernel
at a time); and with one thread. In each: InceptionV3 at --size px from a fixed seed, --steps Adam
training steps of batch --batch (timed after the first step, which traces the step: its time is
reported too), GRAD and SG maps of --images images (timed after a warm-up call), and --repeats
identical calls of one compiled training-mode gradient (the same weights, the same batch), whose
distinct results are counted: a deterministic runtime gives one. Reported: seconds per training
step and per map, the time ratios, the distinct gradients, and whether the two processes of a
configuration gave the same weights and maps to the last bit. Two single-threaded worker processes
make maps at twice the one-thread rate; one two-threaded process at the two-thread rate: the last
line compares them.

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


def worker(deterministic: bool, threads: int, side_by_side: bool, size: int, steps: int, batch: int, images: int,
           repeats: int) -> dict:
    sys.path.insert(0, str(REPOSITORY))
    from repro.runtime import configure, import_tensorflow
    configure(deterministic=deterministic, threads=threads)
    if side_by_side:   # the threads as configure set them before 2026-12-03: kernels side by side
        import_tensorflow().config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    import numpy as np

    from repro.models.classifiers import build_classifier, classifier_loss
    from repro.models.training import own_initializer_seeds
    from repro.saliency import saliency_maps
    keras.utils.set_random_seed(0)
    with own_initializer_seeds(0):
        model = build_classifier("inception_v3", size)
    model.compile(keras.optimizers.Adam(1e-3), classifier_loss())
    model.optimizer.build(model.trainable_variables)   # as Task.build: the first step is traced once
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(batch) % 2]
    gradients = _gradient_function(model, classifier_loss())
    distinct = {_digest(gradients(x, y)) for _ in range(repeats)}
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
            "distinct_gradients": len(distinct), "digest": digest.hexdigest()}


def _gradient_function(model, loss):
    import tensorflow as tf

    @tf.function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        return tape.gradient(value, model.trainable_variables)
    return gradients


def _digest(arrays) -> str:
    return hashlib.sha256(b"".join(a.numpy().tobytes() for a in arrays)).hexdigest()


# name: (op determinism, threads, kernels side by side)
CONFIGURATIONS = {"default, 2 threads": (False, 2, True),
                  "op determinism, 2 threads, kernels side by side": (True, 2, True),
                  "deterministic, 2 threads (the kit)": (True, 2, False),
                  "deterministic, 1 thread": (True, 1, False)}


def run_in_fresh_process(args, deterministic: bool, threads: int, side_by_side: bool) -> dict:
    return in_fresh_process("bench_determinism", "worker", deterministic, threads, side_by_side, args.size,
                            args.steps, args.batch, args.images, args.repeats)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20, help="identical gradient calls per process")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = {"settings": vars(args), "runs": {}, "configurations": {}}
    for name, (deterministic, threads, side_by_side) in CONFIGURATIONS.items():
        first, second = (run_in_fresh_process(args, deterministic, threads, side_by_side) for _ in range(2))
        result["runs"][name] = [first, second]
        result["configurations"][name] = {
            "seconds_first_step": min(first["seconds_first_step"], second["seconds_first_step"]),
            "seconds_per_step": min(first["seconds_per_step"], second["seconds_per_step"]),
            "seconds_per_map": {m: min(first["seconds_per_map"][m], second["seconds_per_map"][m])
                                for m in first["seconds_per_map"]},
            "distinct_gradients": [first["distinct_gradients"], second["distinct_gradients"]],
            "repeats_bitwise": first["digest"] == second["digest"]}
    c = result["configurations"]
    on, off, one = c["deterministic, 2 threads (the kit)"], c["default, 2 threads"], c["deterministic, 1 thread"]
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
             f"(traced); maps of {s['images']} images, batch 8 (the faster of two fresh processes per configuration); "
             f"distinct results of {s['repeats']} identical gradient calls, in each process", "",
             "| configuration | s first step (trace) | s / training step | s / GRAD map | s / SG map (8 samples) "
             "| distinct gradients | two runs bitwise equal |", "|---|---|---|---|---|---|---|"]
    for name, r in result["configurations"].items():
        lines.append(f"| {name} | {r['seconds_first_step']:.1f} | {r['seconds_per_step']:.3f} | "
                     f"{r['seconds_per_map']['GRAD']:.4f} | {r['seconds_per_map']['SG']:.4f} | "
                     f"{', '.join(map(str, r['distinct_gradients']))} | {'yes' if r['repeats_bitwise'] else 'no'} |")
    lines += ["", "deterministic runtime (the kit), time on / off (2 threads): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["determinism_cost"].items()),
              "second thread, time 1 thread / 2 threads (deterministic): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["second_thread_speedup"].items())
              + " (two single-threaded workers: 2.00 for maps)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
