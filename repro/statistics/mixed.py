"""The paper's statistics: a linear mixed-effects model with Tukey-adjusted post hoc contrasts.

The authors used R (lme4 + lmerTest, multcomp's Tukey contrasts): score ~ method + (1 | image),
two-sided, alpha 0.05. Here statsmodels' MixedLM fits the same model. No Python library runs
multcomp's post hoc step on a mixed model, so it is written out: each pairwise contrast's estimate
and standard error come from the fixed effects and their covariance, and the p value is adjusted
for all pairwise comparisons among the k groups with the studentized range distribution at
infinite degrees of freedom (Tukey's HSD on asymptotically normal z statistics, which is what
multcomp computes for lme4 fits). With unequal n (degenerate maps dropped) each contrast's standard
error comes from the fit's own covariance, as multcomp's does: the Tukey-Kramer form.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy.stats import studentized_range

from repro.protocol import FAIL, NOT_MEASURED, PASS, UNCERTAIN

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Contrast:
    """One post hoc comparison: `group` minus `reference` (another group, or a constant)."""
    group: str
    reference: str | float
    estimate: float     # difference of the fitted group means
    std_error: float
    z: float
    p_value: float      # Tukey-adjusted, two-sided
    verdict: str        # pass / did not pass / uncertain, in the direction the test defines
    n: int = 0          # finite scores in the compared group(s)


def mixed_model_contrasts(scores: pd.DataFrame, pairs: list[tuple[str, str | float]], *,
                          higher_is_pass: bool = True, alpha: float = 0.05) -> list[Contrast]:
    """Fit score ~ group + (1 | image) and test each (group, reference) pair of `pairs`.

    `scores` is long: columns image, group, score. NaN rows (degenerate maps) are dropped, so
    groups may have unequal n: the model is fitted to what remains (count the drops before).
    A numeric reference is a constant baseline (the paper's SSIM 0.5): the group's fitted mean is
    tested against it. (Entering the constant as a group of identical scores, as one might in R,
    makes the model degenerate: that group has no residual variance.)
    The Tukey family is every pairwise comparison among the groups present in `scores`. A pair
    whose group has fewer than two finite scores (all its maps degenerate, say) is not measured:
    its contrast has a NaN P value and the verdict "not measured".
    A significant difference in the favourable direction is a pass (higher, or lower when
    higher_is_pass=False, as in the randomization test); a significant one the other way
    did not pass; no significant difference is uncertain.
    """
    data = _validated(scores)
    counts = data["group"].value_counts()
    measurable = {g for g, n in counts.items() if n >= 2}

    def measured(pair):
        return all(not isinstance(name, str) or name in measurable for name in pair)

    fitted = sorted({name for pair in pairs if measured(pair) for name in pair if isinstance(name, str)})
    results = []
    if fitted:
        data = data[data["group"].isin(measurable)]
        groups = sorted(data["group"].unique())
        if data["image"].nunique() < 2:
            raise ValueError("scores: need at least 2 images for a mixed model")
        estimates, covariance = _group_means(data, groups)
        index = {g: i for i, g in enumerate(groups)}
    for group, reference in pairs:
        n = int(counts.get(group, 0) + (counts.get(reference, 0) if isinstance(reference, str) else 0))
        if not measured((group, reference)):
            results.append(Contrast(group, reference, np.nan, np.nan, np.nan, np.nan, NOT_MEASURED, n))
            continue
        weights = np.zeros(len(groups))
        weights[index[group]] = 1.0
        offset = 0.0
        if isinstance(reference, str):
            weights[index[reference]] = -1.0
        else:
            offset = float(reference)
        estimate = float(weights @ estimates) - offset
        std_error = float(np.sqrt(max(weights @ covariance @ weights, 0.0)))
        z = estimate / std_error if std_error > 0 else (0.0 if estimate == 0 else np.inf * np.sign(estimate))
        p_value = tukey_p_value(z, max(2, len(groups)))
        results.append(Contrast(group, reference, estimate, std_error, float(z), p_value,
                                verdict(estimate, p_value, higher_is_pass=higher_is_pass, alpha=alpha), n))
    return results


def tukey_p_value(z: float, n_groups: int) -> float:
    """P(max pairwise |Z| >= |z|) among n_groups means: the studentized range at df = infinity."""
    if n_groups < 2:
        raise ValueError(f"tukey_p_value: need at least 2 groups, got {n_groups}")
    if not np.isfinite(z):
        return 0.0
    return float(min(1.0, studentized_range.sf(abs(z) * np.sqrt(2.0), n_groups, np.inf)))


def verdict(estimate: float, p_value: float, *, higher_is_pass: bool = True, alpha: float = 0.05) -> str:
    if not p_value < alpha:
        return UNCERTAIN
    return PASS if (estimate > 0) == higher_is_pass else FAIL


def format_p(p_value: float) -> str:
    """As the paper prints P values: "<.001", ".02", ".23"."""
    if not np.isfinite(p_value):
        return "NA"
    if p_value < 0.001:
        return "<.001"
    text = f"{p_value:.3f}" if p_value < 0.01 else f"{p_value:.2f}"
    return text.lstrip("0") if p_value < 1 else "1.00"


def _group_means(data: pd.DataFrame, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Fitted mean of every group and their covariance, from score ~ 0 + group + (1 | image).

    When the images share no variance the fit sits on the boundary (lme4 reports a "singular
    fit" with a zero image variance). There statsmodels' MixedLM can return wrong fixed effects
    and standard errors (seen: group means off by 0.3 and standard errors of 1e6 with lbfgs), or
    fail to invert its Hessian. The boundary fit's fixed effects are the ordinary least-squares
    ones, so OLS is used whenever the fit did not converge or the image variance is ~0.
    """
    names = [f"C(group)[{g}]" for g in groups]
    formula = "score ~ 0 + C(group)"
    with warnings.catch_warnings():
        # Boundary fits and zero-variance groups warn; they are detected and handled below.
        warnings.simplefilter("ignore")
        try:
            fit = smf.mixedlm(formula, data, groups=data["image"]).fit(reml=True, method=["lbfgs"])
            covariance = fit.cov_params().loc[names, names].to_numpy()
            on_boundary = float(fit.cov_re.iloc[0, 0]) <= 1e-6 * float(fit.scale)
            if not fit.converged or on_boundary or not np.isfinite(covariance).all():
                raise np.linalg.LinAlgError("boundary or failed fit")
        except (np.linalg.LinAlgError, ValueError):
            log.info("mixed model on the boundary (no between-image variance): using OLS")
            fit = smf.ols(formula, data).fit()
            covariance = fit.cov_params().loc[names, names].to_numpy()
    return fit.params[names].to_numpy(), covariance


def _validated(scores: pd.DataFrame) -> pd.DataFrame:
    missing = {"image", "group", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores: missing column(s) {sorted(missing)}; expected image, group, score")
    data = scores.loc[np.isfinite(scores["score"].astype(float)), ["image", "group", "score"]].copy()
    data["score"] = data["score"].astype(float)
    data["group"] = data["group"].astype(str)
    return data
