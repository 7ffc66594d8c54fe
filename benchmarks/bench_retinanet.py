"""The RSNA-like RetinaNet against the AVG mask: what each suspect of issue 31 does to utility.

Trains the demo's RetinaNet replicates (or reuses them: models are kept under the run directory,
by fingerprint) with `--set` overrides, then scores each on the run's utility images as the run
does (the authors' trapezoidal AUPRC of its per-pixel map) beside AVG on the same images, with the
paired difference and a cluster bootstrap of the images (docs/stability.md): in how many
resamples it stays above AVG, and significantly so (paired t, P < .05). `--map-variants` scores
other ways of turning the detections into a map (score threshold, detection cap, the sum of the
boxes' confidences). The suspects the experiment schema does not reach are options:
`--keras-hub-biases` keeps keras-hub 0.32's head initialization (the prior on the box head),
`--anchor-size`, `--smooth-l1-beta`. docs/training-from-scratch.md has the measurements.

    python benchmarks/bench_retinanet.py --run-dir runs/bench-retinanet --set train.retinanet.batch_size=8
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from repro.runtime import configure  # noqa: E402

RESAMPLES = 1000


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True, help="where the data and the models are kept")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--models", default="retinanet_r1,retinanet_r2")
    parser.add_argument("--keras-hub-biases", action="store_true", help="keras-hub 0.32's head biases (before the fix)")
    parser.add_argument("--anchor-size", type=float, help="anchor size in strides (keras-hub: 4)")
    parser.add_argument("--smooth-l1-beta", type=float, help="Detectron's smooth L1 box loss instead of keras-hub's Huber")
    parser.add_argument("--map-variants", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    configure(deterministic=True, threads=2)
    import numpy as np

    from repro.data.prepare import prepare_data
    from repro.evaluation.scores import average_mask, utility
    from repro.experiments import load_experiment
    from repro.models import retinanet
    from repro.models.training import load_trained_model, make_task, train_model
    variant = _patch(args)
    root = Path(args.run_dir)
    dataset = prepare_data(load_experiment("demo", run_dir=root), progress=False)["rsna"]
    # Each variant's models in a folder of its own (a patched build has the kit's fingerprint), the data shared.
    (root / variant).mkdir(exist_ok=True)
    for part in ("data", "cache"):
        if not (root / variant / part).exists():
            (root / variant / part).symlink_to((root / part).resolve())
    experiment = load_experiment("demo", run_dir=root / variant, overrides=args.set)
    test = dataset.indices("test", positive=True)
    masks = dataset.masks[test]
    avg = average_mask(dataset.masks[np.concatenate([dataset.indices("train"), dataset.indices("val")])])
    avg_scores = utility(masks, np.repeat(avg[None], len(test), axis=0))["auprc"]
    rows = []
    for name in args.models.split(","):
        spec = experiment.models[name]
        started = time.process_time()
        record = train_model(make_task(spec, experiment.train_settings(spec.arch), dataset), dataset,
                             experiment.layout, name, progress=False)
        model = load_trained_model(experiment.layout, "rsna", spec)
        found = retinanet.detect(model, dataset.model_inputs(test))
        row = {"model": name, "variant": variant, "set": args.set, "epochs": record["epochs"],
               "best_epoch": record["best_epoch"], "cpu_seconds": round(record["cpu_seconds"], 1),
               "this_call_cpu_seconds": round(time.process_time() - started, 1),
               "test_pixel_ap": round(record["test"]["pixel_ap"], 3), "avg": round(float(avg_scores.mean()), 3),
               **_against_avg(utility(masks, _maps(found))["auprc"], avg_scores)}
        if args.map_variants:
            row["map_variants"] = {label: round(float(utility(masks, _maps(_kept(found, threshold, cap), combine))
                                                      ["auprc"].mean()), 3)
                                   for label, threshold, cap, combine in _VARIANTS}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        from repro.io import write_json
        write_json(args.out, rows)
    return rows


# (label, score threshold, detection cap, how overlapping boxes combine); the kit: 0.05, its cap, max.
_VARIANTS = [("threshold 0.2", 0.2, None, "max"), ("threshold 0.5", 0.5, None, "max"),
             ("1 detection", 0.05, 1, "max"), ("3 detections", 0.05, 3, "max"),
             ("sum of confidences", 0.05, None, "sum")]


def _against_avg(scores, avg_scores) -> dict:
    """Utility beside AVG's on the same images, and how the difference survives a cluster bootstrap."""
    import numpy as np
    from scipy import stats
    difference = scores - avg_scores
    rng = np.random.default_rng(0)
    resamples = [difference[rng.integers(0, len(difference), len(difference))] for _ in range(RESAMPLES)]
    return {"utility": round(float(scores.mean()), 3), "utility_sd": round(float(scores.std(ddof=1)), 3),
            "difference": round(float(difference.mean()), 3), "images_above_avg": int((difference > 0).sum()),
            "images": len(difference), "paired_t_p": float(stats.ttest_1samp(difference, 0).pvalue),
            "bootstrap_above": float(np.mean([r.mean() > 0 for r in resamples])),
            "bootstrap_significantly_above": float(np.mean(
                [r.mean() > 0 and stats.ttest_1samp(r, 0).pvalue < 0.05 for r in resamples]))}


def _kept(found, threshold, cap):
    """The detections above `threshold`, the `cap` most confident of each image (None: all kept)."""
    kept = []
    for boxes, scores in found:
        order = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if scores[i] > threshold][:cap]
        kept.append((boxes[order], scores[order]))
    return kept


def _maps(found, combine: str = "max"):
    import numpy as np
    from repro.models.retinanet import detections_to_score_map
    size = 128
    if combine == "max":
        return np.stack([detections_to_score_map(boxes, scores, size) for boxes, scores in found])
    return np.stack([sum((detections_to_score_map(box[None], score[None], size) for box, score in zip(boxes, scores)),
                         np.zeros((size, size), np.float32)) for boxes, scores in found])


def _patch(args) -> str:
    """Apply the suspects the schema does not reach; the name of the variant (its models' folder)."""
    import keras
    from repro.models import retinanet, tasks
    parts = []
    if args.keras_hub_biases:
        retinanet._initialize_head_biases = lambda detector: None
        parts.append("keras-hub-biases")
    if args.anchor_size is not None:   # the detector's default generator, another size (saved in its config)
        from keras_hub.src.models.retinanet import retinanet_object_detector as detector
        generator = detector.AnchorGenerator
        detector.AnchorGenerator = lambda *a, **k: generator(*a, **{**k, "anchor_size": args.anchor_size})
        parts.append(f"anchor-size-{args.anchor_size:g}")
    if args.smooth_l1_beta is not None:
        beta = args.smooth_l1_beta   # smooth L1 with beta = Huber(delta=beta) / beta
        tasks.DetectionTask._loss = lambda self: {"box_loss": keras.losses.Huber(delta=beta, reduction="sum"),
                                                  "loss_weights": {"bbox_regression": 1 / beta, "cls_logits": 1.0}}
        parts.append(f"smooth-l1-{beta:g}")
    return "-".join(parts) or "kit"


if __name__ == "__main__":
    main()
