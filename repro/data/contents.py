"""What a loaded data set holds: counts, prevalence, split sizes and mask areas."""
from __future__ import annotations

import numpy as np

from repro.data.dataset import Dataset
from repro.data.splits import SPLITS


def summarize(dataset: Dataset) -> dict:
    """Plain numbers (JSON-ready). Mask areas are fractions of the image, over positive images."""
    positives = dataset.labels == 1
    areas = dataset.masks[positives].reshape(int(positives.sum()), -1).mean(axis=1)
    per_split = {}
    for split in SPLITS:
        in_split = dataset.splits == split
        per_split[split] = {"images": int(in_split.sum()), "positive": int((in_split & positives).sum())}
    summary = {
        "dataset": dataset.name,
        "input_size": dataset.size,
        "images": len(dataset.ids),
        "positive": int(positives.sum()),
        "prevalence": float(positives.mean()),
        "splits": per_split,
        "mask_area": _describe(areas),
        "empty_masks_in_positives": int((areas == 0).sum()),
    }
    if dataset.confounder is not None:
        summary["confounder"] = {"positive": int((dataset.confounder & positives).sum()),
                                 "negative": int((dataset.confounder & ~positives).sum())}
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"{summary['dataset']}: {summary['images']} images at {summary['input_size']} px, "
             f"{summary['positive']} positive ({summary['prevalence']:.1%})"]
    for split, counts in summary["splits"].items():
        lines.append(f"  {split:<5} {counts['images']:>6} images  {counts['positive']:>6} positive")
    area = summary["mask_area"]
    if area["n"]:
        lines.append(f"  mask area (fraction of image, positives): mean {area['mean']:.4f}  "
                     f"median {area['median']:.4f}  min {area['min']:.4f}  max {area['max']:.4f}")
    if summary["empty_masks_in_positives"]:
        lines.append(f"  {summary['empty_masks_in_positives']} positive image(s) have an empty mask "
                     "at this size")
    if "confounder" in summary:
        c = summary["confounder"]
        lines.append(f"  confounder present: {c['positive']} positive, {c['negative']} negative images")
    return "\n".join(lines)


def _describe(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    return {"n": int(values.size), "mean": float(values.mean()), "median": float(np.median(values)),
            "min": float(values.min()), "max": float(values.max())}
