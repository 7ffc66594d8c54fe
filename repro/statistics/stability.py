"""How firm each verdict is: the verdicts of Tables 2-4 recomputed on resampled images and on
the other trained replicates.

- Bootstrap over test images (a cluster bootstrap: an image is the unit that is resampled, with all
  of its scores, as recommended for random-intercept models: Davison & Hinkley 1997, Bootstrap
  Methods and their Application, section 3.8; Field & Welsh 2007, "Bootstrapping clustered data",
  JRSS B 69(3); Ren et al. 2010, "Nonparametric bootstrapping for hierarchical data", J Appl Stat
  37(9)). Each resample draws, for every test, as many images as the test scored, with replacement
  from that test's images; a drawn image's scores keep their pairing across methods (an image drawn
  twice enters the mixed model as two images). The whole verdict procedure (mixed model, Tukey
  contrasts, direction) reruns on the resample. bootstrap_agreement is the share of resamples
  whose verdict equals the run's; its Monte Carlo standard error is sqrt(a (1 - a) / B).
- Over replicates (where the run has several trained InceptionV3s): the same verdict computed with
  each replicate in the role of replicate 1 (utility; randomization with that replicate alone;
  its repeatability pair; its pairing with the other architecture). replicate_agreement is the
  share of replicates that give the run's verdict.
A verdict is fragile when it flips in more than `fragile_above` of the bootstrap resamples or of
the replicates. Cost: one rerun of the verdict procedure per resample (about a dozen mixed-model
fits per data set: 0.01-0.02 s each on a laptop core where every image is scored in every group,
about 0.05 s where dropped maps leave groups of unequal n, whose P values are estimated only until
their side of alpha is clear); resamples are independent and run in parallel on a cluster.
"""
from __future__ import annotations

import zlib
from dataclasses import replace
from itertools import combinations
from typing import Callable

import numpy as np
import pandas as pd

from repro.protocol import DatasetSpec, pair_label
from repro.statistics.cells import ModelChoice, PostHoc, result_cells, verdict_cells

KEY = ["table", "dataset", "method", "column"]
STABILITY_COLUMNS = ["bootstrap_agreement", "bootstrap_resamples", "replicate_agreement", "replicates", "fragile"]


def resample_images(scores: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A cluster bootstrap resample of one data set's scores: per test, its images drawn with
    replacement; copies of an image become distinct images ("<id>#<k>")."""
    parts = []
    for test, rows in scores.groupby("test", sort=False):
        images = rows["image"].unique()
        drawn = rng.choice(images, size=len(images), replace=True)
        by_image = dict(tuple(rows.groupby("image", sort=False)))
        parts += [by_image[image].assign(image=f"{image}#{k}") for k, image in enumerate(drawn)]
    return pd.concat(parts, ignore_index=True)


def bootstrap_verdicts(scores: pd.DataFrame, dataset: DatasetSpec, choice: ModelChoice, *, methods,
                       form: str, seeds: list[int], constant_rule: str = "studentized_range") -> list[pd.Series]:
    """The verdict of every cell on each resample drawn from `seeds` (one resample per seed)."""
    results = []
    for seed in seeds:
        resample = resample_images(scores, np.random.default_rng(seed))
        cells = verdict_cells(result_cells(resample, dataset, choice, methods=methods, form=form,
                                           post_hoc=PostHoc(constant_rule, verdicts_only=True)))
        results.append(cells.set_index(KEY)["verdict"])
    return results


def replicate_choices(main: ModelChoice) -> list[ModelChoice]:
    """One choice per replicate: that replicate in the role of replicate 1 (the paper's choice is
    the first)."""
    replicates = main.replicates
    if len(replicates) < 2:
        return []
    other = main.reproducibility.split("~")[1] if main.reproducibility else None
    pairs = list(combinations(replicates, 2))
    choices = []
    for k, replicate in enumerate(replicates):
        repeat = pairs[k % len(pairs)] if main.repeatability else None
        choices.append(replace(main, utility=replicate, replicates=(replicate,),
                               repeatability=pair_label(*repeat) if repeat else None,
                               reproducibility=pair_label(replicate, other) if other else None))
    return choices


def verdict_stability(scores: pd.DataFrame, cells: pd.DataFrame, dataset: DatasetSpec, main: ModelChoice, *,
                      methods, form: str, resamples: int, seed: int, fragile_above: float,
                      constant_rule: str = "studentized_range", run_in_parallel: Callable | None = None) -> pd.DataFrame:
    """One row per verdict cell of `cells` (the run's): agreement over resamples and replicates.

    run_in_parallel(function, list_of_argument_tuples, progress=bar name) -> list of results (an
    executor's `map`); default: in turn, quietly."""
    mine = scores[(scores["dataset"] == dataset.name) & ~scores["group"].isin(("EDGE", "ORACLE"))]
    verdicts = verdict_cells(cells[cells["dataset"] == dataset.name]).set_index(KEY)["verdict"]
    verdicts = verdicts[verdicts.index.get_level_values("method").isin(list(methods)
                                                                        + [dataset.high_baseline])]
    run = run_in_parallel or (lambda function, jobs, progress=None: [function(*job) for job in jobs])
    seeds = [int(s) for s in np.random.SeedSequence([seed, _crc(dataset.name)]).generate_state(resamples)]
    batches = [seeds[i:i + 10] for i in range(0, len(seeds), 10)]
    jobs = [(mine, dataset, main, tuple(methods), form, batch, constant_rule) for batch in batches]
    boot = [v for part in run(_bootstrap_batch, jobs, progress=f"stability {dataset.name}") for v in part]
    variants = [verdict_cells(result_cells(mine, dataset, choice, methods=methods, form=form,
                                           post_hoc=PostHoc(constant_rule, verdicts_only=True))).set_index(KEY)["verdict"]
                for choice in replicate_choices(main)]
    rows = []
    for key, verdict in verdicts.items():
        boot_same = [b.get(key) == verdict for b in boot if key in b.index]
        rep_same = [v.get(key) == verdict for v in variants if key in v.index]
        boot_agree = float(np.mean(boot_same)) if boot_same else np.nan
        rep_agree = float(np.mean(rep_same)) if rep_same else np.nan
        fragile = any(np.isfinite(a) and 1 - a > fragile_above for a in (boot_agree, rep_agree))
        rows.append([*key, boot_agree, len(boot_same), rep_agree, len(rep_same), fragile])
    return pd.DataFrame(rows, columns=KEY + STABILITY_COLUMNS)


def _bootstrap_batch(scores, dataset, choice, methods, form, seeds, constant_rule):
    return bootstrap_verdicts(scores, dataset, choice, methods=methods, form=form, seeds=seeds,
                              constant_rule=constant_rule)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())
