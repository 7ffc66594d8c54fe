"""A grid of images with their findings outlined, to check by eye that data and masks agree."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from repro.data.dataset import Dataset  # noqa: E402
from repro.io import atomic_path  # noqa: E402


def preview_grid(dataset: Dataset, out: str | Path, *, n: int = 16, seed: int = 0,
                 columns: int = 4) -> Path:
    """Save a PNG of `n` images (positives first, drawn at random by `seed`), masks outlined."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    positives = rng.permutation(dataset.indices(positive=True))
    negatives = rng.permutation(dataset.indices(positive=False))
    half = min(len(positives), (n + 1) // 2)
    chosen = np.concatenate([positives[:half], negatives, positives[half:]])[:n]
    rows = -(-len(chosen) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), chosen):
        axis.imshow(dataset.pixels([index])[0], cmap="gray", vmin=0, vmax=255)   # uint16 images: their grey levels
        if dataset.masks[index].any():
            axis.contour(dataset.masks[index], levels=[0.5], colors="yellow", linewidths=1.0)
        if dataset.evidence is not None and dataset.evidence[index].any():
            axis.contour(dataset.evidence[index], levels=[0.5], colors="red", linewidths=0.6)
        title = f"{'positive' if dataset.labels[index] else 'negative'} ({dataset.splits[index]})"
        axis.set_title(title, fontsize=8)
    legend = "yellow: mask" + (", red: true evidence" if dataset.evidence is not None else "")
    figure.suptitle(f"{dataset.name}: {len(chosen)} of {len(dataset.ids)} images; {legend}", fontsize=9)
    figure.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=110)
    plt.close(figure)
    return out
