"""Training speed and memory by batch size: why the demo trains DenseNet121 at batch 24.

Each (architecture, batch) runs in a fresh process (a process's peak resident memory only grows):
the classifier at --size px is built from a fixed seed and compiled with the kit's loss; one step
traces the training step (timed apart), then --epochs passes over --images random images give the
steady time per image; the peak is the process's ru_maxrss.

    python benchmarks/bench_train_batch.py --out runs/bench/bench_train_batch.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from benchmarks.fresh import in_fresh_process  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402  (no TensorFlow here: the workers start it)


def worker(arch: str, batch: int, size: int, images: int, epochs: int) -> dict:
    import resource
    import time
    sys.path.insert(0, str(REPOSITORY))
    from repro.runtime import configure
    configure(deterministic=True, threads=2)
    import keras
    import numpy as np

    from repro.models.classifiers import build_classifier, classifier_loss
    images -= images % batch     # whole batches only: a last, smaller one would trace again
    x = np.random.default_rng(0).uniform(0, 255, (images, size, size, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[np.arange(images) % 2]
    keras.utils.set_random_seed(0)
    model = build_classifier(arch, size)
    model.compile(keras.optimizers.Adam(1e-3), classifier_loss())
    started = time.perf_counter()
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    traced = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    per_image = (time.perf_counter() - started) / (epochs * images)
    return {"trace_s": round(traced, 1), "ms_per_image": round(per_image * 1000, 1),
            "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="densenet121,inception_v3")
    parser.add_argument("--batches", default="16,24,32")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=144, help="images per timed epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    runs = [{"arch": arch, "batch": int(batch),
             **in_fresh_process("bench_train_batch", "worker", arch, int(batch), args.size, args.images, args.epochs)}
            for arch in args.archs.split(",") for batch in args.batches.split(",")]
    result = {"settings": vars(args), "runs": runs}
    return show_and_save(result, report(result), args.out)


def report(result: dict) -> str:
    lines = [f"{result['settings']['size']} px, Keras fit, 2 threads, a fresh process each", "",
             "| model | batch | traced step, s | ms per image | peak GB |", "|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['batch']} | {r['trace_s']:.0f} | {r['ms_per_image']:.0f} | {r['peak_gb']:.2f} |"
              for r in result["runs"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
