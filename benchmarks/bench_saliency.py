"""Saliency-map throughput: our batched engine vs stock PAIR usage vs the model's gradient limit.

One run, on keras.applications InceptionV3 (weights=None, include_top=False, Rescaling to [-1, 1]
in front, GlobalAveragePooling2D + Dense(2) logits, seed 0) at --size pixels, measures per method:
  ours   maps/s through repro.saliency.saliency_maps (batched; post-processing included)
  limit  the raw batched input-gradient throughput of the same model (a plain tf.function,
         --batch-size rows per call) divided by the gradients one map needs
  stock  maps/s through PAIR's classes as its examples use them: an eager GradientTape
         call_model_function, batch size 1, GetSmoothedMask's per-sample loop (GBP: tf-keras-vis's
         guided model, eager, one image per call); VisualizeImageGrayscale included; one pass
"ours" and "limit" are measured in --rounds rounds of two back-to-back windows computing the same
number of gradients (ours: enough runs over the images to last --seconds), in alternating order.
ours/limit is the median over rounds of each round's time ratio, so both sides of a ratio saw the
same load on a shared machine; the same ratio of process CPU times is reported beside it as a
cross-check that depends less on the load. Rates are medians over rounds.
XRAI's time is split into gradients, segmentation (saved by segment reuse) and the ranking (ours,
rank_regions, beside PAIR's own loop on the same segments: the same maps).
Sampling parameters are the paper preset reduced by --nsamples / --x-steps / --xrai-steps, so that
a run takes minutes on a laptop CPU; nothing here assumes a CPU (it runs unchanged on a GPU).

    python benchmarks/bench_saliency.py --size 128 --n 8 --out runs/bench/bench_saliency.json
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.runtime import import_tensorflow  # noqa: E402

tf = import_tensorflow()       # without TensorFlow's start-up chatter on a machine without a GPU
import keras  # noqa: E402
import numpy as np  # noqa: E402
import saliency.core as pair  # noqa: E402
from skimage.transform import resize  # noqa: E402
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus  # noqa: E402
from tf_keras_vis.layercam import Layercam  # noqa: E402
from tf_keras_vis.saliency import Saliency  # noqa: E402
from tf_keras_vis.scorecam import Scorecam  # noqa: E402
from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

from repro.saliency import METHODS, SegmentCache, load_preset, saliency_maps  # noqa: E402
from repro.saliency.engine import default_conv_layer  # noqa: E402
from repro.saliency.xrai import rank_regions  # noqa: E402
from benchmarks.output import show_and_save  # noqa: E402
from benchmarks.reference import raw_input_gradients, stock_call_model_function  # noqa: E402

TARGET_OF_LIMIT = 0.9            # ours >= 0.9 x limit for these methods
LIMITED = ("GRAD", "SG", "IG", "SIG", "GBP")
TARGET_SIG_SPEEDUP = 3.0         # ours >= 3 x stock for SIG


def main(argv=None) -> dict:
    args = _parse(argv)
    model = inception(args.size)
    images = smooth_images(args.n, args.size)
    params = bench_params(args)
    limit_step = gradient_step(model, images, args.batch_size)
    rows = {}
    for method in args.methods:
        print(f"{method} ...", flush=True)
        rows[method] = measure(method, model, images, params, limit_step, args)
    result = {"machine": machine(), "settings": vars(args), "params": params, "methods": rows}
    if "XRAI" in args.methods:
        result["xrai_breakdown"] = xrai_breakdown(model, images, params["XRAI"], args.batch_size)
    return show_and_save(result, report(result), args.out)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="input size in pixels (>= 75)")
    parser.add_argument("--n", type=int, default=8, help="images through our engine")
    parser.add_argument("--n-stock", type=int, default=1, help="images through stock PAIR")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per model call")
    parser.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    parser.add_argument("--nsamples", type=int, default=10, help="SG / SIG noise samples")
    parser.add_argument("--x-steps", type=int, default=10, help="IG / SIG steps")
    parser.add_argument("--xrai-steps", type=int, default=20, help="XRAI's IG steps")
    parser.add_argument("--occlusion-stride", type=int, default=8, help="OCC window stride (PAIR: 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="shortest measuring window")
    parser.add_argument("--rounds", type=int, default=2, help="paired windows of ours and limit")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; valid: {','.join(METHODS)}")
    return args


# The model, the images, the parameters -----------------------------------------------------------

def inception(size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = keras.applications.InceptionV3(weights=None, include_top=False, input_tensor=scaled)
    pooled = keras.layers.GlobalAveragePooling2D()(base.output)
    return keras.Model(inputs, keras.layers.Dense(2)(pooled))


def smooth_images(n: int, size: int) -> np.ndarray:
    """Grayscale blobs in [0, 255] copied into 3 channels (segmentation cost depends on content)."""
    coarse = np.random.default_rng(0).uniform(0, 255, (n, 8, 8))
    gray = np.stack([resize(c, (size, size), order=3) for c in coarse]).clip(0, 255)
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


def bench_params(args) -> dict:
    params = load_preset("paper")
    params["SG"]["nsamples"] = params["SIG"]["nsamples"] = args.nsamples
    params["IG"]["x_steps"] = params["SIG"]["x_steps"] = args.x_steps
    params["XRAI"]["x_steps"] = args.xrai_steps
    params["GIG"]["x_steps"] = params["BIG"]["x_steps"] = args.x_steps
    params["OCC"]["stride"] = args.occlusion_stride
    return params


def gradients_per_map(method: str, params: dict) -> int | None:
    """Input gradients per map (GCAM's backward pass stops at its layer: counted as one); None for
    the forward-pass methods (OCC: one forward pass per window; SCAM: one per channel kept)."""
    p = params[method]
    counts = {"SG": lambda: p["nsamples"], "IG": lambda: p["x_steps"],
              "SIG": lambda: p["nsamples"] * p["x_steps"],
              "XRAI": lambda: len(p["baselines"]) * p["x_steps"], "GGCAM": lambda: 2,
              "GIG": lambda: p["x_steps"], "BIG": lambda: p["x_steps"],
              "OCC": lambda: None, "SCAM": lambda: None}
    return counts.get(method, lambda: 1)()


def measure(method: str, model, images, params: dict, limit_step, args) -> dict:
    """One table row: ours and the limit in paired windows of equal gradient work; stock."""
    ours_step = ours_run(model, images, method, params, args.batch_size)
    per_map = gradients_per_map(method, params)
    if per_map is None:      # no gradient limit to compare with: ours and stock only
        ours = len(images) / _timed(ours_step)
        # Stock PAIR occlusion makes one eager model call per window position (12,996 per map at
        # 128 px and stride 1): not timed, RESULTS.md gives the arithmetic.
        stock = None if method == "OCC" else stock_throughput(model, images[:args.n_stock], method, params)
        return {"gradients_per_map": None, "ours": ours, "limit": None, "ours_over_limit": None,
                "ours_over_limit_cpu": None, "rounds": [], "stock": stock}
    runs = max(1, math.ceil(args.seconds / _timed(ours_step)))
    limit_steps = math.ceil(runs * len(images) * per_map / args.batch_size)
    windows = {"ours": (lambda: [ours_step() for _ in range(runs)], runs * len(images)),
               "limit": (lambda: [limit_step() for _ in range(limit_steps)],
                         limit_steps * args.batch_size / per_map)}
    rounds = []  # per round, per side: (maps per wall second, maps per CPU second)
    for i in range(args.rounds):
        order = ["ours", "limit"] if i % 2 == 0 else ["limit", "ours"]
        rounds.append({side: tuple(windows[side][1] / t for t in _wall_and_cpu(windows[side][0]))
                       for side in order})
    median = lambda values: statistics.median(list(values))  # noqa: E731
    return {"gradients_per_map": per_map,
            "ours": median(r["ours"][0] for r in rounds),
            "limit": median(r["limit"][0] for r in rounds),
            "stock": stock_throughput(model, images[:args.n_stock], method, params),
            "ours_over_limit": median(r["ours"][0] / r["limit"][0] for r in rounds),
            "ours_over_limit_cpu": median(r["ours"][1] / r["limit"][1] for r in rounds),
            "rounds": rounds}


# (c) the limit -----------------------------------------------------------------------------------

def gradient_step(model, images, batch_size: int):
    """A traced call computing input gradients of class 1's logit for `batch_size` rows."""
    gradients = raw_input_gradients(model)
    batch = np.resize(images, (batch_size, *images.shape[1:]))
    step = lambda: gradients(batch).numpy()  # noqa: E731
    step()  # trace
    return step


def _timed(function) -> float:
    return _wall_and_cpu(function)[0]


def _wall_and_cpu(function) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


# (a) ours ----------------------------------------------------------------------------------------

def ours_run(model, images, method: str, params: dict, batch_size: int):
    """A call making the maps of all images, warmed up (traced; XRAI's segments cached, as for
    every model state after the first: xrai_breakdown times both)."""
    def run(x):
        return saliency_maps(model, x, method, batch_size=batch_size, **params[method])

    run(images[:1])
    if method == "XRAI":
        run(images)
    return lambda: run(images)


def xrai_breakdown(model, images, params: dict, batch_size: int) -> dict:
    """Seconds per XRAI map: the whole call without and with segment reuse, and its parts
    timed on their own (IG from each baseline, segmentation, the ranking: ours and PAIR's)."""
    def whole(cache):
        return _timed(lambda: saliency_maps(model, images, "XRAI", batch_size=batch_size,
                                            segment_cache=cache, **params))

    def ig(baseline):
        return saliency_maps(model, images, "IG", batch_size=batch_size, raw=True,
                             x_steps=params["x_steps"], baseline=baseline)

    cache = SegmentCache()
    without_reuse, with_reuse = whole(cache), whole(cache)
    gradients = sum(_timed(lambda b=b: ig(b)) for b in params["baselines"])
    segmentation = _timed(lambda: [SegmentCache().get(x) for x in images])
    attributions = np.mean([ig(b) for b in params["baselines"]], axis=0)
    pair_ranking = _timed(lambda: [pair.XRAI().GetMask(x, None, base_attribution=a,
                                                       segments=cache.get(x))
                                   for x, a in zip(images, attributions)])
    ranking = _timed(lambda: [rank_regions(a.max(axis=-1), cache.get(x), area_threshold=params["area_threshold"])
                              for x, a in zip(images, attributions)])
    n = len(images)
    return {"without_segment_reuse": without_reuse / n, "with_segment_reuse": with_reuse / n,
            "gradients": gradients / n, "segmentation": segmentation / n, "ranking": ranking / n,
            "ranking_pair": pair_ranking / n}


# (b) stock PAIR ----------------------------------------------------------------------------------

def stock_throughput(model, images, method: str, params: dict) -> float:
    """Maps per second of PAIR's classes with an eager call_model_function, one row per call."""
    targets = np.argmax(model(images).numpy(), axis=1)
    make_map = _stock_methods(model, params)[method]
    make_map(images[0], int(targets[0]))  # warm-up
    return len(images) / _timed(lambda: [make_map(x, int(t)) for x, t in zip(images, targets)])


def _stock_methods(model, params: dict) -> dict:
    call = stock_call_model_function(model)

    conv_call = stock_call_model_function(model, default_conv_layer(model))
    guided = Saliency(model, model_modifier=GuidedBackpropagation())
    gray = pair.VisualizeImageGrayscale
    black = lambda x: np.zeros_like(x)  # noqa: E731  (black = 0 for [0, 255] inputs)
    sg, ig, sig, xrai = params["SG"], params["IG"], params["SIG"], params["XRAI"]
    smoothing = lambda p: dict(stdev_spread=p["stdev_spread"], nsamples=p["nsamples"],  # noqa: E731
                               magnitude=p["magnitude"])

    def gbp(x, t):
        return gray(guided(CategoricalScore([t]), x[None], gradient_modifier=None,
                           normalize_map=False, keepdims=True)[0])

    def gcam(x, t):
        return gray(pair.GradCam().GetMask(x, conv_call, {"target": t}))

    def tf_keras_vis(kind, **kwargs):    # the library's documented usage: its own clone of the model
        cam = kind(model)
        return lambda x, t: cam(CategoricalScore([t]), x[None], penultimate_layer=default_conv_layer(model),
                                seek_penultimate_conv_layer=False, **kwargs)[0]

    later = {
        "GIG": lambda x, t: gray(pair.GuidedIG().GetMask(x, call, {"target": t}, x_baseline=black(x),
                                                         x_steps=params["GIG"]["x_steps"])),
        "BIG": lambda x, t: gray(pair.BlurIG().GetMask(x, call, {"target": t}, steps=params["BIG"]["x_steps"])),
        "GCAMPP": tf_keras_vis(GradcamPlusPlus), "LCAM": tf_keras_vis(Layercam),
        "SCAM": tf_keras_vis(Scorecam, max_N=params["SCAM"]["max_n"]),
    }
    return {
        **later,
        "GRAD": lambda x, t: gray(pair.GradientSaliency().GetMask(x, call, {"target": t})),
        "SG": lambda x, t: gray(pair.GradientSaliency().GetSmoothedMask(
            x, call, {"target": t}, **smoothing(sg))),
        "IG": lambda x, t: gray(pair.IntegratedGradients().GetMask(
            x, call, {"target": t}, x_steps=ig["x_steps"], x_baseline=black(x), batch_size=1)),
        "SIG": lambda x, t: gray(pair.IntegratedGradients().GetSmoothedMask(
            x, call, {"target": t}, x_steps=sig["x_steps"], x_baseline=black(x), batch_size=1,
            **smoothing(sig))),
        "GCAM": gcam,
        "XRAI": lambda x, t: pair.XRAI().GetMask(
            x, call, {"target": t}, batch_size=1,
            extra_parameters=pair.XRAIParameters(steps=xrai["x_steps"])),
        "GBP": gbp,
        "GGCAM": lambda x, t: gbp(x, t) * gcam(x, t),
    }


# Report ------------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                 .splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus,
            "tensorflow": tf.__version__, "keras": keras.__version__}


def report(result: dict) -> str:
    m = result["machine"]
    lines = [f"{m['cpu']} ({m['cpu_count']} CPUs), GPUs: {m['gpus'] or 'none'}; "
             f"TF {m['tensorflow']}, Keras {m['keras']}", "",
             "| method | gradients/map | ours maps/s | limit maps/s | stock maps/s "
             "| ours/limit | (CPU time) | ours/stock | target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, r in result["methods"].items():
        if r["ours_over_limit"] is None:
            stock = "-" if r["stock"] is None else f"{r['stock']:.3f}"
            speedup = "-" if r["stock"] is None else f"{r['ours'] / r['stock']:.1f}"
            lines.append(f"| {method} | - | {r['ours']:.2f} | - | {stock} | - | - | {speedup} | - |")
            continue
        of_limit, speedup = r["ours_over_limit"], r["ours"] / r["stock"]
        lines.append(f"| {method} | {r['gradients_per_map']} | {r['ours']:.2f} | {r['limit']:.2f} "
                     f"| {r['stock']:.3f} | {of_limit:.2f} | {r['ours_over_limit_cpu']:.2f} "
                     f"| {speedup:.1f} | {_verdict(method, of_limit, speedup)} |")
    if "xrai_breakdown" in result:
        lines += ["", "XRAI seconds per map: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in result["xrai_breakdown"].items())]
    return "\n".join(lines)


def _verdict(method: str, of_limit: float, speedup: float) -> str:
    checks = []
    if method in LIMITED:
        checks.append(f"ours/limit >= {TARGET_OF_LIMIT}: {_met(of_limit >= TARGET_OF_LIMIT)}")
    if method == "SIG":
        checks.append(f"ours/stock >= {TARGET_SIG_SPEEDUP:.0f}: "
                      f"{_met(speedup >= TARGET_SIG_SPEEDUP)}")
    return "; ".join(checks) or "-"


def _met(passed: bool) -> str:
    return "met" if passed else "MISSED"


if __name__ == "__main__":
    main()
