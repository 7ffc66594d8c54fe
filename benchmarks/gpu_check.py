"""One prepared GPU check, under 8 minutes of device time, writing one JSON (gpu_check.json, with a
gpu_check.md beside it) that benchmarks/bench_scale.py's projection reads:

  1. the devices TensorFlow sees, and the device the compiled gradients ran on;
  2. for InceptionV3 and DenseNet121 at --size px (320: the paper's), each of the paper's eight
     methods with the paper preset: our maps/s against the raw batched-gradient limit (a plain
     tf.function of the same model, --batch-size rows per call) divided by the gradients a map needs;
  3. training images/s of each (Keras train_on_batch, --batch-size 16: the paper experiment's);
  4. bitwise repeatability on the GPU: the same maps computed twice, and two training steps from the
     same weights twice, with TensorFlow's defaults and with op determinism (the kit's
     runtime.deterministic);
  5. the effect of TF32 (on by default on Ampere and later) on the maps: the largest difference
     against TF32 off, relative to the map's range;
  6. the raw gradient throughput per batch size, and the best one.
Each part stops early when --budget seconds are spent (the JSON says what ran).

    python benchmarks/gpu_check.py --out runs/gpu-check                # on the GPU machine
    python benchmarks/gpu_check.py --quick --out /tmp/g                # on a CPU: tiny, every part
--quick runs every part at 75 px on one image with two samples per method, batch sizes 1 and 2,
training batches of 2 and half-second rate windows (no budget),
on whatever device there is (the test suite runs it on the CPU); without a GPU the JSON says
"gpu": false, and the projection ignores it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from repro.runtime import import_tensorflow  # noqa: E402

tf = import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.reference import raw_input_gradients  # noqa: E402
from repro.models.classifiers import build_classifier, classifier_loss  # noqa: E402
from repro.protocol import PAPER_METHODS  # noqa: E402
from repro.saliency import saliency_maps  # noqa: E402
from repro.saliency.params import load_preset  # noqa: E402

ARCHITECTURES = ("inception_v3", "densenet121")
QUICK = {"SG": {"nsamples": 2}, "SIG": {"nsamples": 2, "x_steps": 2}, "IG": {"x_steps": 2}, "XRAI": {"x_steps": 2}}
GRADIENTS_PER_MAP = {"GRAD": lambda p: 1, "GBP": lambda p: 1, "GCAM": lambda p: 1, "GGCAM": lambda p: 2,
                     "SG": lambda p: p["nsamples"], "IG": lambda p: p["x_steps"],
                     "SIG": lambda p: p["nsamples"] * p["x_steps"], "XRAI": lambda p: 2 * p["x_steps"]}


def main(argv=None) -> dict:
    args = parse(argv)
    if args.quick:
        args.size, args.images, args.batch_sizes, args.budget = 75, 1, [1, 2], 1e9
        args.train_batch_size, args.rate_seconds = 2, 0.5   # the test suite's form: every part runs, briefly
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpus = tf.config.list_physical_devices("GPU")
    device = "/GPU:0" if gpus else "/CPU:0"
    result = {"tensorflow": tf.__version__, "devices": [d.name for d in tf.config.list_physical_devices()],
              "gpu": bool(gpus), "device": _device_name(gpus), "settings": vars(args), "architectures": {}}
    if not gpus:
        result["note"] = "no GPU visible to TensorFlow: every part ran on the CPU (not a GPU measurement)"
    images = _images(args.size, args.images)
    params = {m: {**load_preset("paper")[m], **(QUICK.get(m, {}) if args.quick else {})} for m in PAPER_METHODS}

    def spent() -> bool:
        return time.perf_counter() - started > args.budget

    with tf.device(device):
        for arch in ARCHITECTURES:
            if spent():
                break
            keras.utils.set_random_seed(0)
            model = build_classifier(arch, args.size)
            result["architectures"][arch] = throughput(model, images, params, args, spent)
        if not spent():
            result["repeatable"] = repeatability(images, params, args)
        if not spent():
            result["tf32"] = tf32_effect(images, params, args)
        if not spent():
            result["batch_sizes"] = batch_sizes(images, args)
            result["best_batch_size"] = max(result["batch_sizes"], key=result["batch_sizes"].get)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["complete"] = all(key in result for key in ("repeatable", "tf32", "batch_sizes"))
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per model call for the maps and the limit")
    parser.add_argument("--train-batch-size", type=int, default=16, help="the paper experiment's")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--rate-seconds", type=float, default=3.0,
                        help="how long the raw gradient rate is measured (each batch size: two thirds of it)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which the remaining parts are skipped")
    parser.add_argument("--quick", action="store_true", help="every part, tiny (75 px, one image, 2 samples)")
    parser.add_argument("--out", default="runs/gpu-check")
    return parser.parse_args(argv)


def _device_name(gpus) -> str:
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{details.get('device_name', 'GPU')} x{len(gpus)}"


def _images(size: int, n: int) -> np.ndarray:
    """Radiograph-like inputs: release-format phantoms read and resized as the data stage does."""
    import tempfile

    from repro.data.dataset import resize_image
    from repro.data.dicom import read_dicom
    from repro.data.phantoms import PhantomConfig, make_phantoms
    with tempfile.TemporaryDirectory() as work:
        roots = make_phantoms(work, n, 0, datasets=("siim",), progress=False,
                              config=PhantomConfig(size=max(256, size), format="release"))
        paths = sorted((roots["siim"] / "dicom-images-train").rglob("*.dcm"))
        pixels = np.stack([resize_image(read_dicom(p), size) for p in paths])
    return (pixels * 255.0)[..., None].repeat(3, axis=-1).astype(np.float32)


def timed(function):
    function()                                  # traces and warms up
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def throughput(model, images, params, args, spent) -> dict:
    """Maps/s per method against the limit, the raw gradients/s and the training images/s."""
    limit = gradient_limit(model, images, args.batch_size, seconds=args.rate_seconds)
    methods = {}
    for method in PAPER_METHODS:
        if spent():
            break
        _, seconds = timed(lambda: saliency_maps(model, images, method, batch_size=args.batch_size, **params[method]))
        ours = len(images) / seconds
        bound = limit / GRADIENTS_PER_MAP[method](params[method])
        methods[method] = {"gpu_maps_per_s": round(ours, 3), "limit_maps_per_s": round(bound, 3),
                           "ours_over_limit": round(ours / bound, 2)}
    model.compile(keras.optimizers.Adam(7e-5), classifier_loss())
    x = np.resize(images, (args.train_batch_size, *images.shape[1:]))
    y = np.eye(2, dtype=np.float32)[np.arange(len(x)) % 2]
    _, seconds = timed(lambda: [model.train_on_batch(x, y) for _ in range(3)])
    with tf.GradientTape() as tape:
        gradient_device = tape.gradient(tf.reduce_sum(model(tf.constant(images[:1]))), model.trainable_variables[0]).device
    return {"raw_gradients_per_s": round(limit, 1), "methods": methods,
            "training_images_per_s": round(3 * len(x) / seconds, 1), "gradient_device": gradient_device}


def gradient_limit(model, images, batch_size, seconds=3.0) -> float:
    """Input gradients per second of a plain batched tf.function: the hardware limit."""
    rows = tf.constant(np.resize(images, (batch_size, *images.shape[1:])))
    step = raw_input_gradients(model)
    step(rows).numpy()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(rows).numpy()
        done += batch_size
    return done / (time.perf_counter() - started)


def repeatability(images, params, args) -> dict:
    """The same maps twice, and two training steps from the same weights twice: bitwise equal?"""
    found = {}
    for label, deterministic in (("defaults", False), ("op_determinism", True)):
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(0)
        model = build_classifier("inception_v3", args.size)
        start = model.get_weights()
        maps = {m: [saliency_maps(model, images, m, batch_size=args.batch_size, **params[m]) for _ in range(2)]
                for m in ("GRAD", "SG", "IG", "GCAM")}
        model.compile(keras.optimizers.Adam(7e-5), classifier_loss())
        x = np.resize(images, (args.train_batch_size, *images.shape[1:]))
        y = np.eye(2, dtype=np.float32)[np.arange(len(x)) % 2]
        trained = []
        for _ in range(2):
            model.set_weights(start)
            for variable in model.optimizer.variables:
                variable.assign(tf.zeros_like(variable))
            for _ in range(2):
                model.train_on_batch(x, y)
            trained.append(model.get_weights())
        found[label] = {"maps": {m: bool(np.array_equal(a, b, equal_nan=True)) for m, (a, b) in maps.items()},
                        "training": all(np.array_equal(a, b) for a, b in zip(*trained))}
    return found


def tf32_effect(images, params, args) -> dict:
    """Maps with TF32 (TensorFlow's default on Ampere and later GPUs) against TF32 off."""
    keras.utils.set_random_seed(0)
    model = build_classifier("inception_v3", args.size)
    maps = {}
    for enabled in (True, False):
        tf.config.experimental.enable_tensor_float_32_execution(enabled)
        maps[enabled] = {m: saliency_maps(model, images, m, batch_size=args.batch_size, **params[m])
                         for m in ("GRAD", "IG", "GCAM", "XRAI")}
    tf.config.experimental.enable_tensor_float_32_execution(True)
    effect = {}
    for method in maps[True]:
        on, off = maps[True][method], maps[False][method]
        span = float(np.nanmax(off) - np.nanmin(off)) or 1.0
        largest = float(np.nanmax(np.abs(on - off))) / span if np.isfinite(on).any() else None   # None: constant maps
        effect[method] = {"max_abs_diff_over_range": largest,
                          "identical": bool(np.array_equal(on, off, equal_nan=True))}
    return effect


def batch_sizes(images, args) -> dict[int, float]:
    """Raw input gradients per second of InceptionV3 at each batch size."""
    keras.utils.set_random_seed(0)
    model = build_classifier("inception_v3", args.size)
    rates = {}
    for size in args.batch_sizes:
        try:
            rates[size] = round(gradient_limit(model, images, size, seconds=args.rate_seconds * 2 / 3), 1)
        except tf.errors.ResourceExhaustedError:
            break
    return rates


def markdown(result: dict) -> str:
    lines = ["# GPU check", "", f"- TensorFlow {result['tensorflow']}; devices: {', '.join(result['devices'])}; "
             f"{result['device']}; {result.get('seconds', 0)} s" + ("" if result.get("complete", True) else
                                                                     " (stopped at the budget: parts missing)")]
    if not result["gpu"]:
        lines.append(f"- {result['note']}")
    for arch, row in result["architectures"].items():
        lines += ["", f"## {arch}: raw gradients {row['raw_gradients_per_s']}/s (on {row['gradient_device']}), "
                      f"training {row['training_images_per_s']} images/s", "",
                  "| method | maps/s | limit maps/s | ours/limit |", "|---|---|---|---|"]
        lines += [f"| {m} | {r['gpu_maps_per_s']} | {r['limit_maps_per_s']} | {r['ours_over_limit']} |"
                  for m, r in row["methods"].items()]
    if "repeatable" in result:
        lines += ["", "Bitwise repeatable (maps per method; two training steps):"]
        lines += [f"- {label}: maps {r['maps']}, training {r['training']}" for label, r in result["repeatable"].items()]
    if "tf32" in result:
        lines += ["", "TF32 on vs off, largest difference / map range: " +
                  ", ".join(f"{m} {r['max_abs_diff_over_range']:.2e}" if r["max_abs_diff_over_range"] is not None
                            else f"{m} (constant maps)" for m, r in result["tf32"].items())]
    if "batch_sizes" in result:
        lines += ["", "Raw InceptionV3 gradients/s per batch size: " +
                  ", ".join(f"{b}: {r}" for b, r in result["batch_sizes"].items()) +
                  f"; best {result['best_batch_size']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
