"""Everything R needs to refit a run's statistics: `repro statistics --export-r DIR`.

DIR gets scores.csv (each family's data: family, image, group, score), contrasts.csv (each
comparison with the kit's estimate, standard error, z, P value, verdict, fit and ICC) and refit.R,
which refits every family with lme4 + lmerTest + multcomp and prints how far R's P values are from
the kit's:

    Rscript DIR/refit.R DIR
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from repro.io import write_bytes, write_text

REFIT_SCRIPT = Path(__file__).with_name("refit.R")


def export_for_r(families: list, constant_rule: str, directory: str | Path) -> Path:
    """Write the families recorded by a PostHoc (name, scores, pairs, contrasts) for refit.R."""
    directory = Path(directory)
    if not families:
        raise ValueError("nothing to export: no comparison was fitted")
    scores, contrasts = [], []
    for name, data, pairs, found in families:
        scores.append(data.assign(family=name)[["family", "image", "group", "score"]])
        for (group, reference), contrast in zip(pairs, found):
            contrasts.append((name, group, str(reference), constant_rule, contrast.estimate, contrast.std_error,
                              contrast.z, contrast.p_value, contrast.verdict, contrast.fit, contrast.icc))
    columns = ["family", "group", "reference", "constant_rule", "estimate", "std_error", "z", "p_value",
               "verdict", "fit", "icc"]
    table = pd.DataFrame(contrasts, columns=columns)
    # R can refit only what the kit fitted: comparisons that were not measured stay out.
    table = table[table["p_value"].notna()]
    write_text(directory / "scores.csv", pd.concat(scores).to_csv(index=False, float_format="%.17g"))
    write_text(directory / "contrasts.csv", table.to_csv(index=False, float_format="%.17g"))
    write_bytes(directory / "refit.R", REFIT_SCRIPT.read_bytes())
    return directory
