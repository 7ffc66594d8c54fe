"""Seeded score tables of the kit's shapes, for checking repro.statistics.mixed against R.

    python tests/r/make_fixtures.py            # writes tests/r/fixtures/{scores,contrasts}.csv
    Rscript repro/statistics/refit.R tests/r/fixtures   # R's answers: tests/r/fixtures/r_results.csv

Each family is score = group effect + image effect + noise, with the kit's group names and counts:
the eight methods with AVG and the localizer (utility), with the localizer and the constant 0.5
(repeatability / reproducibility, under each constant rule), the randomization test's two groups
(three replicates' scores per image against one baseline score), fourteen methods, a control's
family of three; equal n and unequal n after dropped maps; image intra-class correlations from 0.1
to 0.8; and a truly singular table (no image variance at all). tests/test_stats_r.py compares the
kit with r_results.csv; rerun both commands when a family is added.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures"
METHODS = ("GRAD", "SG", "IG", "SIG", "GCAM", "XRAI", "GBP", "GGCAM")
EXTRA = ("GIG", "BIG", "OCC", "GCAMPP", "SCAM", "LCAM")
# Method means around AVG's: some clearly apart, some within a standard error or two.
UTILITY_MEANS = {"GRAD": 0.30, "SG": 0.28, "IG": 0.31, "SIG": 0.27, "GCAM": 0.36, "XRAI": 0.40,
                 "GBP": 0.33, "GGCAM": 0.345, "AVG": 0.34, "U-Net": 0.42}
SIMILARITY_MEANS = {"GRAD": 0.22, "SG": 0.18, "IG": 0.23, "SIG": 0.24, "GCAM": 0.47, "XRAI": 0.51,
                    "GBP": 0.32, "GGCAM": 0.53, "U-Net": 0.56}


def table(means: dict, images: int, icc: float, *, seed: int, total_sd: float = 0.12,
          drop: dict | None = None, centred: bool = False) -> pd.DataFrame:
    """One score table: every image scored in every group, minus `drop` {group: how many}."""
    rng = np.random.default_rng(seed)
    image_sd, noise_sd = total_sd * np.sqrt(icc), total_sd * np.sqrt(1 - icc)
    noise = rng.normal(0, noise_sd, (images, len(means)))
    if centred:   # no image variance at all: every image's scores average to the same value
        noise -= noise.mean(axis=1, keepdims=True)
    offsets = rng.normal(0, image_sd, images)
    rows = [(f"img{i:03d}", group, mean + offsets[i] + noise[i, j])
            for j, (group, mean) in enumerate(means.items()) for i in range(images)]
    frame = pd.DataFrame(rows, columns=["image", "group", "score"])
    for group, count in (drop or {}).items():
        victims = rng.choice(frame.index[frame["group"] == group], size=count, replace=False)
        frame = frame.drop(index=victims)
    return frame


def randomization(images: int, icc: float, *, seed: int, drop: int = 0) -> pd.DataFrame:
    """Three replicates' fully randomized SSIMs per image against one baseline SSIM per image."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 0.05 * np.sqrt(icc), images)
    rows = [(f"img{i:03d}", "randomized", 0.30 + offsets[i] + rng.normal(0, 0.05 * np.sqrt(1 - icc)))
            for i in range(images) for _ in range(3)]
    rows += [(f"img{i:03d}", "baseline", 0.31 + offsets[i] + rng.normal(0, 0.05 * np.sqrt(1 - icc)))
             for i in range(images)]
    frame = pd.DataFrame(rows, columns=["image", "group", "score"])
    return frame.drop(index=rng.choice(images * 3, size=drop, replace=False)) if drop else frame


def utility_pairs(methods=METHODS, high="U-Net"):
    return [(m, r) for m in methods for r in ("AVG", high)]


def similarity_pairs(methods=METHODS):
    return [(m, r) for m in methods for r in ("U-Net", 0.5)]


def families() -> list[tuple[str, pd.DataFrame, list, str]]:
    similarity = table(SIMILARITY_MEANS, 100, 0.5, seed=8)
    similarity_dropped = table(SIMILARITY_MEANS, 90, 0.3, seed=11, drop={"GCAM": 12, "GGCAM": 12, "SIG": 3})
    many = {**{m: 0.30 + 0.01 * i for i, m in enumerate(METHODS + EXTRA)}, "AVG": 0.34, "U-Net": 0.42}
    return [
        ("utility, equal n, ICC 0.25", table(UTILITY_MEANS, 60, 0.25, seed=1), utility_pairs(), "studentized_range"),
        ("utility, equal n, ICC 0.8", table(UTILITY_MEANS, 100, 0.8, seed=2), utility_pairs(), "studentized_range"),
        ("utility, unequal n, ICC 0.4", table(UTILITY_MEANS, 80, 0.4, seed=3, drop={"GCAM": 10, "GGCAM": 6}),
         utility_pairs(), "studentized_range"),
        ("utility, half of XRAI dropped, ICC 0.3", table(UTILITY_MEANS, 40, 0.3, seed=4, drop={"XRAI": 20}),
         utility_pairs(), "studentized_range"),
        ("utility, equal n, ICC 0.4, 100 images", table(UTILITY_MEANS, 100, 0.4, seed=5), utility_pairs(),
         "studentized_range"),
        ("utility, two SG maps dropped, ICC 0.1", table(UTILITY_MEANS, 70, 0.1, seed=6, drop={"SG": 2}), utility_pairs(),
         "studentized_range"),
        ("utility, singular (no image variance)", table(UTILITY_MEANS, 50, 0.0, seed=7, centred=True),
         utility_pairs(), "studentized_range"),
        ("randomization, 3 replicates vs baseline", randomization(100, 0.5, seed=9, drop=7),
         [("randomized", "baseline")], "studentized_range"),
        ("randomization, low ICC", randomization(40, 0.15, seed=10), [("randomized", "baseline")],
         "studentized_range"),
        ("similarity, studentized_range", similarity, similarity_pairs(), "studentized_range"),
        ("similarity, single_step", similarity, similarity_pairs(), "single_step"),
        ("similarity, constant_group", similarity, similarity_pairs(), "constant_group"),
        ("similarity dropped, studentized_range", similarity_dropped, similarity_pairs(), "studentized_range"),
        ("similarity dropped, single_step", similarity_dropped, similarity_pairs(), "single_step"),
        ("similarity dropped, constant_group", similarity_dropped, similarity_pairs(), "constant_group"),
        ("fourteen methods, equal n", table(many, 40, 0.5, seed=12), utility_pairs(METHODS + EXTRA),
         "studentized_range"),
        ("a control's family of three", table({"EDGE": 0.30, "AVG": 0.34, "U-Net": 0.42}, 60, 0.45, seed=13),
         utility_pairs(("EDGE",)), "studentized_range"),
    ]


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    scores, contrasts = [], []
    for name, data, pairs, rule in families():
        scores.append(data.assign(family=name)[["family", "image", "group", "score"]])
        contrasts += [(name, group, str(reference), rule) for group, reference in pairs]
    pd.concat(scores).to_csv(FIXTURES / "scores.csv", index=False, float_format="%.17g")
    pd.DataFrame(contrasts, columns=["family", "group", "reference", "constant_rule"]).to_csv(
        FIXTURES / "contrasts.csv", index=False)
    print(f"wrote {FIXTURES}/scores.csv and contrasts.csv ({len(contrasts)} contrasts)")


if __name__ == "__main__":
    main()
