"""The example panels of Figures 2-4: one test image's maps, read from the run's map store.

The image is the one with the median utility (AUPRC, mean over the selected methods) among the
images every panel has maps of (the intermediate cascade states' images), so the panels show a
typical case, not the best one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from repro.protocol import ORIGINAL
from repro.report.figures import Example, Examples
from repro.saliency.store import MapStore


def examples_for(experiment, scores: pd.DataFrame, dataset, plan) -> Examples:
    methods = list(experiment.settings.saliency.methods)
    roles = experiment.roles
    r1 = roles.replicates[0]
    utility = scores[(scores.dataset == dataset.name) & (scores.test == "utility") & (scores.metric == "auprc")
                     & (scores.state == "trained") & (scores.model == r1) & scores.group.isin(methods)]
    candidates = [i for i in plan.selection.curve if i in set(plan.selection.utility)] or list(plan.selection.curve)
    means = utility[utility.image.isin(candidates)].groupby("image")["score"].mean().reindex(candidates)
    ranked = means.sort_values(kind="stable", na_position="last").index
    image_id = ranked[len(ranked.dropna()) // 2] if means.notna().any() else candidates[0]
    store = MapStore(experiment.layout.maps_dir(dataset.name))
    index = int(np.flatnonzero(dataset.ids == image_id)[0])
    image, mask = dataset.pixels([index])[0], dataset.masks[index]

    def row(model, state):
        return {m: store.read(model, state, m, image_id, plan.fingerprint(model, state, m), shape=plan.shape)
                for m in methods}

    mine = utility[utility.image == image_id].set_index("group")["score"]
    # Rows are labelled with the experiment's own model names.
    examples = Examples(
        utility=Example(image, mask, {r1: row(r1, ORIGINAL)}, {r1: {m: float(mine.get(m, np.nan)) for m in methods}}),
        cascade=Example(image, mask, {state: row(r1, state) for state in plan.states[r1]}))
    similarity = {r1: row(r1, ORIGINAL)}
    for pair in (roles.repeatability, roles.reproducibility):
        if pair and pair[1] not in similarity:
            similarity[pair[1]] = row(pair[1], ORIGINAL)
    examples.similarity = Example(image, mask, similarity)
    return examples
