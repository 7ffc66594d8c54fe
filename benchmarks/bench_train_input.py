"""How the training batches reach Keras `fit`: why the kit feeds each epoch as arrays.

Three ways of training the same InceptionV3 on the same batches, each in a fresh process (what a
Python-generator pipeline does to a process outlasts the pipeline):
  generator       tf.data.Dataset.from_generator over the epoch's batches, one `fit` for all epochs
                  (the kit's path until 2026-12-02)
  epoch_arrays    the epoch's batches made in numpy first, then one `fit` per epoch on
                  tf.data.Dataset.from_tensor_slices of them (the kit's path now, repro.models.training)
  train_on_batch  one `train_on_batch` call per batch: no input pipeline at all, the limit
Per timed step: wall and system-CPU seconds and minor page faults (memory the kernel hands the
process afresh); the process's peak resident memory.

    python benchmarks/bench_train_input.py --out runs/bench/bench_train_input.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from benchmarks.fresh import in_fresh_process  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402  (no TensorFlow here: the workers start it)

MODES = ("generator", "epoch_arrays", "train_on_batch")


def worker(mode: str, arch: str, batch: int, size: int, images: int, epochs: int) -> dict:
    import os
    import resource
    import time
    sys.path.insert(0, str(REPOSITORY))
    from repro.runtime import configure
    configure(deterministic=True, threads=2)
    import keras
    import numpy as np
    import tensorflow as tf

    from repro.models.classifiers import build_classifier, classifier_loss
    images -= images % batch
    x = np.random.default_rng(0).uniform(0, 255, (images, size, size, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[np.arange(images) % 2]
    keras.utils.set_random_seed(0)
    model = build_classifier(arch, size)
    model.compile(keras.optimizers.Adam(1e-3), classifier_loss())

    def batches():
        for start in range(0, images, batch):
            yield x[start:start + batch], y[start:start + batch]

    def train(epoch_count: int) -> None:
        if mode == "generator":
            signature = (tf.TensorSpec((None, size, size, 3), tf.float32), tf.TensorSpec((None, 2), tf.float32))
            data = (tf.data.Dataset.from_generator(batches, output_signature=signature)
                    .apply(tf.data.experimental.assert_cardinality(images // batch)).prefetch(1))
            model.fit(data, epochs=epoch_count, verbose=0)
        elif mode == "epoch_arrays":
            for _ in range(epoch_count):
                model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(1), verbose=0)
        else:
            for _ in range(epoch_count):
                for images_batch, targets in batches():
                    model.train_on_batch(images_batch, targets)

    train(1)   # traces the training step
    steps = epochs * (images // batch)
    before, faults, started = os.times(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    train(epochs)
    seconds, after = time.perf_counter() - started, os.times()
    return {"s_per_step": round(seconds / steps, 2),
            "system_s_per_step": round((after.system - before.system) / steps, 2),
            "page_faults_per_step": round((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps),
            "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--arch", default="inception_v3")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=320, help="images per timed epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (expected some of {', '.join(MODES)})")
    runs = [{"mode": mode, **in_fresh_process("bench_train_input", "worker", mode, args.arch, args.batch, args.size,
                                              args.images, args.epochs)} for mode in modes]
    result = {"settings": vars(args), "runs": runs}
    return show_and_save(result, report(result), args.out)


def report(result: dict) -> str:
    settings = result["settings"]
    lines = [f"{settings['arch']}, batch {settings['batch']}, {settings['size']} px, 2 threads, a fresh process each", "",
             "| input | s per step | system s per step | page faults per step | peak GB |", "|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['s_per_step']:.2f} | {r['system_s_per_step']:.2f} | {r['page_faults_per_step']} | "
              f"{r['peak_gb']:.2f} |" for r in result["runs"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
