"""Where a training process's memory goes: the BatchNorm recalibration pass, eager vs compiled,
and the training steps themselves, for InceptionV3 and DenseNet121.

Each measurement runs in a fresh process (a process's peak resident memory only grows): the model
at --size px is built from a fixed seed, then one of
  eager      the recalibration pass as Keras runs it eagerly, `model(x, training=True)`, --batches
             batches of --rows rows (the naive path: Keras holds every layer's output until the
             call returns)
  compiled   the same pass through repro.models.batchnorm (a tf.function, which frees each
             output once it is used)
  fit        --steps training steps of batch --batch (Keras fit, the kit's loss)
and reports the process's peak resident memory (ru_maxrss) after building and after the work.
The eager and compiled passes must leave the same moving statistics to the last bit (checked:
their digests are compared). The demo's per-stage peaks, all processes of a run together, are in
its provenance.json.

    python benchmarks/bench_memory.py --out runs/bench/bench_memory.json
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from benchmarks.fresh import in_fresh_process  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402  (no TensorFlow: the workers start it in their own processes)
ARCHITECTURES = ("inception_v3", "densenet121")
KINDS = ("eager", "compiled", "fit")


def worker(arch: str, kind: str, size: int, rows: int, batches: int, batch: int, steps: int) -> dict:
    import resource
    sys.path.insert(0, str(REPOSITORY))
    from repro.runtime import configure
    configure(deterministic=True, threads=2)
    import keras
    import numpy as np

    from repro.models import batchnorm
    from repro.models.classifiers import build_classifier, classifier_loss
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # noqa: E731  (kB on Linux)
    x = np.random.default_rng(0).uniform(0, 255, (max(rows * batches, batch * steps), size, size, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    model = build_classifier(arch, size)
    built = peak()
    if kind == "fit":
        model.compile(keras.optimizers.Adam(1e-3), classifier_loss())
        y = np.eye(2, dtype="float32")[np.arange(len(x)) % 2]
        model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0)
    else:
        if kind == "eager":
            batchnorm.training_forward = lambda m: lambda b: m(b, training=True)
        batchnorm.recalibrate_batchnorm(model, x, batches=batches, batch_size=rows)
    digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in model.get_weights())).hexdigest()
    return {"built_gb": round(built, 3), "peak_gb": round(peak(), 3), "digest": digest}


def run_in_fresh_process(args, arch: str, kind: str) -> dict:
    return in_fresh_process("bench_memory", "worker", arch, kind, args.size, args.rows, args.batches,
                            args.batch, args.steps)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rows", type=int, default=64, help="rows per recalibration batch (the demo: 64)")
    parser.add_argument("--batches", type=int, default=2, help="recalibration batches (the demo: 2)")
    parser.add_argument("--batch", type=int, default=32, help="training batch (the demo: 32)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = {"settings": vars(args), "runs": {}}
    for arch in ARCHITECTURES:
        runs = {kind: run_in_fresh_process(args, arch, kind) for kind in KINDS}
        runs["same_statistics"] = runs["eager"]["digest"] == runs["compiled"]["digest"]
        result["runs"][arch] = runs
    return show_and_save(result, report(result), args.out)


def report(result: dict) -> str:
    s = result["settings"]
    lines = [f"{s['size']} px; recalibration {s['batches']} x {s['rows']} rows; {s['steps']} training steps "
             f"of batch {s['batch']}; peak resident memory of a fresh process, GB", "",
             "| model | built | recalibration, eager | recalibration, compiled | same statistics | training steps |",
             "|---|---|---|---|---|---|"]
    for arch, r in result["runs"].items():
        lines.append(f"| {arch} | {r['fit']['built_gb']:.2f} | {r['eager']['peak_gb']:.2f} | "
                     f"{r['compiled']['peak_gb']:.2f} | {'yes' if r['same_statistics'] else 'NO'} | "
                     f"{r['fit']['peak_gb']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
