"""What TensorFlow's op determinism costs, and what it buys, on this machine.

Each configuration runs twice, each time in a fresh process (op determinism and threads are
process-wide and fixed once TensorFlow starts): InceptionV3 at --size px from a fixed seed,
--steps Adam training steps of batch --batch (timed after a warm-up step), then GRAD and SG maps
of --images images (timed after a warm-up call). Reported: seconds per training step and per map,
the deterministic / default time ratio, and whether the two runs of a configuration gave the same
weights and maps to the last bit.

    python benchmarks/bench_determinism.py --out runs/bench/bench_determinism.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


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
    model.train_on_batch(x, y)
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
    return {"seconds_per_step": step, "seconds_per_map": per_map, "digest": digest.hexdigest()}


def run_in_fresh_process(args, deterministic: bool) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(REPOSITORY / 'benchmarks')!r}); "
            f"from bench_determinism import worker; print('RESULT', json.dumps(worker({deterministic}, "
            f"{args.threads}, {args.size}, {args.steps}, {args.batch}, {args.images})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    runs = {mode: [run_in_fresh_process(args, mode == "deterministic") for _ in range(2)]
            for mode in ("default", "deterministic")}
    result = {"settings": vars(args), "runs": runs}
    for mode, (first, second) in runs.items():
        result[mode] = {"seconds_per_step": min(first["seconds_per_step"], second["seconds_per_step"]),
                        "seconds_per_map": {m: min(first["seconds_per_map"][m], second["seconds_per_map"][m])
                                            for m in first["seconds_per_map"]},
                        "repeats_bitwise": first["digest"] == second["digest"]}
    on, off = result["deterministic"], result["default"]
    result["cost"] = {"training_step": round(on["seconds_per_step"] / off["seconds_per_step"], 3),
                      **{f"{m} map": round(on["seconds_per_map"][m] / off["seconds_per_map"][m], 3)
                         for m in on["seconds_per_map"]}}
    print(report(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: dict) -> str:
    s = result["settings"]
    lines = [f"InceptionV3 at {s['size']} px, {s['threads']} threads; {s['steps']} training steps of batch {s['batch']}, "
             f"maps of {s['images']} images (the faster of two fresh processes per configuration)", "",
             "| configuration | s / training step | s / GRAD map | s / SG map (8 samples) | two runs bitwise equal |",
             "|---|---|---|---|---|"]
    for mode in ("default", "deterministic"):
        r = result[mode]
        lines.append(f"| {mode} | {r['seconds_per_step']:.3f} | {r['seconds_per_map']['GRAD']:.4f} | "
                     f"{r['seconds_per_map']['SG']:.4f} | {'yes' if r['repeats_bitwise'] else 'no'} |")
    cost = result["cost"]
    lines += ["", "deterministic / default time: " + ", ".join(f"{k} {v:.2f}" for k, v in cost.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
