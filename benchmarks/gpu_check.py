"""One-shot GPU check: do the compiled, batched saliency paths run on a GPU, agree with the CPU, and
keep up with the raw gradient limit there? Writes gpu_check.json and gpu_check.md to --out.

On a machine with a GPU (under 8 minutes with the defaults):
  1. the devices TensorFlow sees;
  2. that the compiled gradient functions run on the GPU (the output tensor's device);
  3. maps of every method at --size px with the paper's parameters on --images images, on the GPU
     and on the CPU, and their largest absolute difference per method;
  4. per method, our maps/s on the GPU against the raw batched-gradient limit (a plain tf.function
     of the same model, --batch-size rows per call) divided by the gradients one map needs;
  5. `repro all --experiment smoke` end to end on the GPU (a fresh run directory), timed.
Without a GPU it says so and exits 0 after the CPU part (3 on the CPU only), so that the test suite
can run it in a CI-sized form:

    python benchmarks/gpu_check.py --out runs/gpu-check                    # on the GPU machine
    python benchmarks/gpu_check.py --size 80 --images 1 --quick --no-smoke --out /tmp/g   # CI-sized
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from repro.runtime import import_tensorflow  # noqa: E402

tf = import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.reference import raw_input_gradients  # noqa: E402
from repro.models.classifiers import build_classifier  # noqa: E402
from repro.protocol import PAPER_METHODS  # noqa: E402
from repro.saliency import saliency_maps  # noqa: E402
from repro.saliency.engine import engine_for  # noqa: E402
from saliency.core.base import INPUT_OUTPUT_GRADIENTS  # noqa: E402
from repro.saliency.params import load_preset  # noqa: E402

QUICK = {"SG": {"nsamples": 2}, "SIG": {"nsamples": 2, "x_steps": 2}, "IG": {"x_steps": 2}, "XRAI": {"x_steps": 2}}
GRADIENTS_PER_MAP = {"GRAD": lambda p: 1, "GBP": lambda p: 1, "GCAM": lambda p: 1, "GGCAM": lambda p: 2,
                     "SG": lambda p: p["nsamples"], "IG": lambda p: p["x_steps"],
                     "SIG": lambda p: p["nsamples"] * p["x_steps"], "XRAI": lambda p: 2 * p["x_steps"]}


def main(argv=None) -> dict:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpus = tf.config.list_physical_devices("GPU")
    result = {"tensorflow": tf.__version__, "devices": [d.name for d in tf.config.list_physical_devices()],
              "gpu": bool(gpus), "settings": vars(args)}
    keras.utils.set_random_seed(0)
    model = build_classifier("inception_v3", args.size)
    images = np.random.default_rng(0).uniform(0, 255, (args.images, args.size, args.size, 3)).astype(np.float32)
    params = {m: {**load_preset("paper")[m], **(QUICK.get(m, {}) if args.quick else {})} for m in PAPER_METHODS}
    with tf.device("/CPU:0"):
        cpu = {m: timed_maps(model, images, m, params[m], args.batch_size) for m in PAPER_METHODS}
    result["cpu_seconds_per_map"] = {m: round(seconds / len(images), 3) for m, (_, seconds) in cpu.items()}
    if gpus:
        result.update(gpu_part(model, images, params, cpu, args))
    else:
        result["note"] = "no GPU visible to TensorFlow: only the CPU part ran"
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="rows per model call on the GPU")
    parser.add_argument("--quick", action="store_true", help="2 samples / steps instead of the paper's")
    parser.add_argument("--no-smoke", action="store_true", help="skip the end-to-end smoke run")
    parser.add_argument("--out", default="runs/gpu-check")
    return parser.parse_args(argv)


def timed_maps(model, images, method, params, batch_size):
    started = time.perf_counter()
    maps = saliency_maps(model, images, method, batch_size=batch_size, **params)
    return maps, time.perf_counter() - started


def gpu_part(model, images, params, cpu, args) -> dict:
    engine = engine_for(model)
    with tf.device("/GPU:0"):
        engine(images[:1], np.array([1], np.int32))            # traces the compiled gradient function
        compiled = engine._functions[frozenset({INPUT_OUTPUT_GRADIENTS})]
        gradients = compiled(tf.constant(images[:1]), tf.constant([1], tf.int32))[INPUT_OUTPUT_GRADIENTS]
    gpu = {}
    with tf.device("/GPU:0"):
        for method in PAPER_METHODS:
            saliency_maps(model, images[:1], method, batch_size=args.batch_size, **params[method])   # trace first
            gpu[method] = timed_maps(model, images, method, params[method], args.batch_size)
        limit = gradient_limit(model, images, args.batch_size)
    rows = {}
    for method in PAPER_METHODS:
        ours_rate = len(images) / gpu[method][1]
        limit_rate = limit / GRADIENTS_PER_MAP[method](params[method])
        diff = np.nanmax(np.abs(gpu[method][0] - cpu[method][0])) if np.isfinite(gpu[method][0]).any() else 0.0
        rows[method] = {"gpu_maps_per_s": round(ours_rate, 2), "limit_maps_per_s": round(limit_rate, 2),
                        "ours_over_limit": round(ours_rate / limit_rate, 2), "max_abs_diff_vs_cpu": float(diff),
                        "speedup_vs_cpu": round(cpu[method][1] / gpu[method][1], 1)}
    result = {"gradient_device": gradients.device, "gradients_ran": bool(np.isfinite(gradients.numpy()).all()),
              "raw_gradients_per_s": round(limit, 1), "methods": rows}
    if not args.no_smoke:
        result["smoke"] = smoke_run()
    return result


def gradient_limit(model, images, batch_size, seconds=5.0) -> float:
    """Input gradients per second of a plain batched tf.function: the hardware limit."""
    rows = np.resize(images, (batch_size, *images.shape[1:])).astype(np.float32)
    step = raw_input_gradients(model)
    step(rows).numpy()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(rows).numpy()
        done += batch_size
    return done / (time.perf_counter() - started)


def smoke_run() -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "repro", "all", "--experiment", "smoke", "--run-dir", run_dir],
                              capture_output=True, text=True, cwd=REPOSITORY, env={**os.environ})
        return {"exit_code": done.returncode, "seconds": round(time.perf_counter() - started, 1),
                "tail": done.stdout[-1500:] + done.stderr[-500:]}


def markdown(result: dict) -> str:
    lines = ["# GPU check", "", f"- TensorFlow {result['tensorflow']}; devices: {', '.join(result['devices'])}"]
    if not result["gpu"]:
        lines += [f"- {result['note']}", "", "CPU seconds per map: " +
                  ", ".join(f"{m} {s}" for m, s in result["cpu_seconds_per_map"].items())]
        return "\n".join(lines) + "\n"
    lines += [f"- compiled gradients ran on: {result['gradient_device']} (finite: {result['gradients_ran']})",
              f"- raw batched input gradients: {result['raw_gradients_per_s']} per second", "",
              "| method | GPU maps/s | limit maps/s | ours/limit | max abs diff vs CPU | speed-up vs CPU |",
              "|---|---|---|---|---|---|"]
    for method, row in result["methods"].items():
        lines.append(f"| {method} | {row['gpu_maps_per_s']} | {row['limit_maps_per_s']} | {row['ours_over_limit']} | "
                     f"{row['max_abs_diff_vs_cpu']:.2e} | {row['speedup_vs_cpu']} |")
    if "smoke" in result:
        lines += ["", f"- `repro all --experiment smoke` on the GPU: exit {result['smoke']['exit_code']}, "
                      f"{result['smoke']['seconds']} s"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
