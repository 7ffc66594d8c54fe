"""The paper's statistics, as R computes them: lme4's mixed model and multcomp's post hoc contrasts.

The authors fitted `lmer(score ~ group + (1 | image))` (lme4, REML) and read Tukey-adjusted P values
from multcomp (`glht(fit, mcp(group = "Tukey"))`, single-step). This module computes the same numbers:

- The fit. With one random intercept the REML criterion depends on one number, theta = image sd /
  residual sd; lme4 profiles out everything else and minimizes the profiled deviance over theta >= 0
  (Bates et al. 2015, "Fitting Linear Mixed-Effects Models Using lme4", J Stat Softw 67(1), eq. 41-42).
  That criterion is written out below (`reml_deviance`) and minimized over a grid of theta, refined by
  Brent's method, and compared with the boundary theta = 0: no starting point can stop it on a spurious
  boundary (statsmodels' MixedLM did: its first L-BFGS step lands on theta = 0, where its likelihood is
  +inf, and it reports convergence there). The fixed effects and their covariance are then lme4's:
  beta = (X'V^-1 X)^-1 X'V^-1 y and vcov = sigma^2 (X'V^-1 X)^-1, V = I + theta^2 Z Z'. A fit whose
  optimum is theta < 1e-4 is "singular" (lme4's isSingular tolerance) and is the least-squares fit.
- The post hoc step. multcomp fits lmer models with df = 0, i.e. z statistics, and its single-step
  adjusted P value of a contrast is P(max_k |Z_k| >= |z|) over the family's joint normal Z. For all
  pairwise contrasts of a fit whose group means have exchangeable covariance (every image scored
  in every group) this is the studentized range at infinite df, computed exactly. Otherwise (groups
  of unequal n after degenerate maps are dropped, or a family that is not all pairs) the probability
  is a multivariate normal integral that multcomp estimates with mvtnorm's randomized quasi-Monte
  Carlo (absolute error 1e-3 by default); here it is estimated by quasi-Monte Carlo over the group
  means with a fixed scrambled Sobol sequence (deterministic), for pairwise families with the exact
  studentized range of exchangeable means as a control variate: within 4e-4 of R's answers at
  mvtnorm's error 1e-4 for pairwise families and within 1e-3 for the others (tests/test_stats_r.py).

No Python library runs multcomp's post hoc step on a mixed model, and statsmodels' optimizer is the
bug above: hence this module. tests/r/ checks it against R itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import ndtri
from scipy.stats import norm, qmc, studentized_range

from repro.protocol import FAIL, NOT_MEASURED, PASS, UNCERTAIN

# How a group is compared with a constant (the paper's SSIM 0.5): see `constant_contrasts` below.
CONSTANT_RULES = ("studentized_range", "single_step", "constant_group")
SINGULAR_THETA = 1e-4             # lme4::isSingular's default tolerance on theta
MIXED, SINGULAR, NO_REPEATS = "mixed", "singular", "least squares (no image scored twice)"
EXACT = "no residual variance"   # every score is its group's mean: differences are known exactly
QMC_POINTS = 2 ** 18
QMC_BATCH = 2 ** 14
QMC_SEED = 20210604


@dataclass(frozen=True)
class Contrast:
    """One post hoc comparison: `group` minus `reference` (another group, or a constant)."""
    group: str
    reference: str | float
    estimate: float     # difference of the fitted group means
    std_error: float
    z: float
    p_value: float      # adjusted over the comparison's family, two-sided
    verdict: str        # pass / did not pass / uncertain, in the direction the test defines
    n: int = 0          # finite scores in the compared group(s)
    fit: str = ""       # the model fitted: MIXED, SINGULAR, NO_REPEATS or EXACT (below)
    icc: float = np.nan  # the fit's image intra-class correlation, image variance / total


@dataclass(frozen=True)
class MixedFit:
    """lmer(score ~ 0 + group + (1 | image), REML = TRUE), as lme4 reports it."""
    groups: tuple[str, ...]
    means: np.ndarray        # the fixed effects: each group's fitted mean
    covariance: np.ndarray   # vcov(fit): sigma^2 (X'V^-1 X)^-1
    theta: float             # image sd / residual sd (lme4's getME(fit, "theta"))
    residual_variance: float  # sigma(fit)^2
    outcome: str             # MIXED, SINGULAR, NO_REPEATS or EXACT
    images: int
    n: int

    @property
    def image_variance(self) -> float:
        return self.theta ** 2 * self.residual_variance

    @property
    def icc(self) -> float:
        total = self.image_variance + self.residual_variance
        return self.image_variance / total if total > 0 else np.nan


# --- the fit ------------------------------------------------------------------------------------

class _Design:
    """score ~ 0 + group + (1 | image) as per-image sums: everything the REML criterion needs, so
    that each evaluation costs O(scores + images x groups^2)."""

    def __init__(self, data: pd.DataFrame, groups: list[str]):
        self.group = pd.Categorical(data["group"], categories=groups).codes
        self.image, images = pd.factorize(data["image"], sort=True)
        self.y = data["score"].to_numpy(float)
        self.k, self.n, self.images = len(groups), len(self.y), len(images)
        self.counts = np.zeros((len(images), self.k))            # C: scores of each image in each group
        np.add.at(self.counts, (self.image, self.group), 1.0)
        self.group_sums = np.bincount(self.group, weights=self.y, minlength=self.k)          # X'y
        self.image_totals = np.bincount(self.image, weights=self.y, minlength=len(images))
        self.per_image = self.counts.sum(axis=1)                 # n_i
        self.yy = float(self.y @ self.y)

    def gls(self, theta: float):
        """At theta: the fixed effects, X'V^-1 X, the penalized residual sum of squares r^2 =
        (y - X beta)' V^-1 (y - X beta), log det V and log det X'V^-1 X. V_i^-1 = I - w_i 11' with
        w_i = t^2 / (1 + n_i t^2); r^2 is summed from non-negative parts (within-image squares, and
        each image's mean residual shrunk by 1 + n_i t^2) so that a near-exact fit does not cancel
        to a negative number."""
        t2 = theta * theta
        w = t2 / (1.0 + self.per_image * t2)
        xvx = np.diag(self.counts.sum(axis=0)) - (self.counts * w[:, None]).T @ self.counts
        xvy = self.group_sums - self.counts.T @ (w * self.image_totals)
        cholesky = np.linalg.cholesky(xvx)
        beta = np.linalg.solve(xvx, xvy)
        residual = self.y - beta[self.group]
        image_mean = np.bincount(self.image, weights=residual, minlength=self.images) / self.per_image
        within = float(((residual - image_mean[self.image]) ** 2).sum())
        r2 = within + float((self.per_image * image_mean ** 2 / (1.0 + self.per_image * t2)).sum())
        logdet_v = float(np.log1p(self.per_image * t2).sum())
        return beta, xvx, r2, logdet_v, 2.0 * float(np.log(np.diag(cholesky)).sum())

    def reml_deviance(self, theta: float) -> float:
        """lme4's profiled REML deviance (Bates et al. 2015, eq. 42): log|V| + log|X'V^-1X|
        + (n - p)(1 + log(2 pi r^2 / (n - p)))."""
        _, _, r2, logdet_v, logdet_x = self.gls(theta)
        dof = self.n - self.k
        if r2 <= 0.0:
            return -np.inf
        return logdet_v + logdet_x + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))


def fit_mixed_model(scores: pd.DataFrame) -> MixedFit:
    """score ~ 0 + group + (1 | image) by REML, as lme4 fits it (module docstring).

    `scores`: columns image, group, score, every score finite. Groups are sorted by name."""
    groups = sorted(scores["group"].unique())
    design = _Design(scores, groups)
    if design.n <= design.k:
        raise ValueError(f"scores: {design.n} scores for {design.k} groups leave no residual degrees of freedom")
    if design.per_image.max() < 2:
        # every image scored once: the image effect cannot be told from the residual (lme4 refuses)
        theta, outcome = 0.0, NO_REPEATS
    elif design.gls(0.0)[2] <= 1e-24 * design.yy:
        theta, outcome = 0.0, EXACT        # lme4 stops here (its vcov is not positive definite)
    else:
        theta = _reml_theta(design)
        outcome = MIXED if theta >= SINGULAR_THETA else SINGULAR
        theta = theta if outcome == MIXED else 0.0
    beta, xvx, r2, _, _ = design.gls(theta)
    sigma2 = r2 / (design.n - design.k)
    return MixedFit(tuple(groups), beta, sigma2 * np.linalg.inv(xvx), theta, sigma2, outcome,
                    design.images, design.n)


def _reml_theta(design: _Design) -> float:
    """The theta >= 0 that minimizes the REML deviance: the best of a log-spaced grid and the
    boundary, refined by bounded Brent between the best grid point's neighbours."""
    grid = np.concatenate([[0.0], np.logspace(-5, 4, 91)])
    deviances = np.array([design.reml_deviance(t) for t in grid])
    best = int(np.argmin(deviances))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    refined = minimize_scalar(design.reml_deviance, bounds=(low, high), method="bounded",
                              options={"xatol": 1e-10 * max(high, 1e-8), "maxiter": 500})
    return float(refined.x) if refined.fun <= deviances[best] else float(grid[best])


# --- the post hoc step --------------------------------------------------------------------------

def single_step_p_values(z, contrasts: np.ndarray, covariance: np.ndarray, *, points: int = QMC_POINTS,
                         seed: int = QMC_SEED, settle_at: float | None = None) -> np.ndarray:
    """multcomp's single-step adjusted P values: for each |z_j|, P(max_k |Z_k| >= |z_j|) where
    Z = K m / se and m ~ N(0, covariance) (the group means under the null), K = `contrasts`.

    One contrast: the two-sided normal P. All pairwise contrasts with exchangeable means: the
    studentized range, exactly. Otherwise quasi-Monte Carlo over m (scrambled Sobol, fixed seed: the
    same bits every run); for all pairwise contrasts with the studentized range of the nearest
    exchangeable means as a control variate (the same draws under both laws), which leaves mostly
    the imbalance's own share of the error. With `settle_at` (a significance level: only the
    verdict is wanted, as in the bootstrap resamples) the draws stop once every P is four of its
    standard errors away from that level."""
    z = np.abs(np.asarray(z, float))
    contrasts = np.atleast_2d(np.asarray(contrasts, float))
    contrast_cov = contrasts @ covariance @ contrasts.T
    if len(z) == 0:
        return np.zeros(0)
    if contrasts.shape[0] == 1:
        return np.array([tukey_p_value(value, 2) for value in z])
    groups = contrasts.shape[1]
    pairwise = _is_all_pairs(contrasts)
    if pairwise and _exchangeable(contrasts, contrast_cov):
        return np.array([tukey_p_value(value, groups) for value in z])
    se = np.sqrt(np.diag(contrast_cov))
    if not (se > 0).all():   # an exact fit (no residual variance): each difference is known exactly
        return np.where(np.isinf(z), 0.0, 1.0)
    root = _symmetric_root(covariance, centred=pairwise)
    exact = np.array([tukey_p_value(value, groups) for value in z]) if pairwise else np.zeros(len(z))
    exceed, exceed_exchangeable, differ, drawn = np.zeros(len(z)), np.zeros(len(z)), np.zeros(len(z)), 0
    sobol = qmc.Sobol(d=groups, scramble=True, seed=seed)
    while drawn < points:
        normal = ndtri(np.clip(sobol.random(QMC_BATCH), 1e-16, 1 - 1e-16))
        hits = np.abs(normal @ root @ contrasts.T / se).max(axis=1)[:, None] >= z[None, :]
        exceed += hits.sum(axis=0)
        if pairwise:   # the same draws as independent unit means: their largest |difference| / sqrt 2
            hits_exchangeable = np.abs(normal @ contrasts.T).max(axis=1)[:, None] / np.sqrt(2.0) >= z[None, :]
            exceed_exchangeable += hits_exchangeable.sum(axis=0)
            differ += (hits != hits_exchangeable).sum(axis=0)
        drawn += QMC_BATCH
        estimate = exact + (exceed - exceed_exchangeable) / drawn
        # a draw contributes a difference of indicators (pairwise) or one indicator: E[d^2] bounds its variance
        variance_bound = differ / drawn if pairwise else estimate * (1.0 - estimate)
        if settle_at is not None and _settled(estimate, variance_bound, drawn, settle_at):
            break
    return np.clip(estimate, 0.0, 1.0)


def _settled(estimate: np.ndarray, variance_bound: np.ndarray, drawn: int, level: float) -> bool:
    """Every estimate four Monte Carlo standard errors away from `level` (from a bound on the
    variance of one draw's contribution; quasi-Monte Carlo does better than that)."""
    standard_error = np.sqrt(variance_bound / drawn)
    return bool((np.abs(estimate - level) > 4.0 * standard_error + 1.0 / drawn).all())


def _symmetric_root(covariance: np.ndarray, *, centred: bool) -> np.ndarray:
    """S with S S' = covariance (of the centred means when `centred`: differences see nothing else),
    symmetric, so that draws under nearly exchangeable means stay close to the exchangeable draws."""
    if centred:
        centre = np.eye(len(covariance)) - 1.0 / len(covariance)
        covariance = centre @ covariance @ centre
    values, vectors = np.linalg.eigh(covariance)
    return vectors @ np.diag(np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _is_all_pairs(contrasts: np.ndarray) -> bool:
    k = contrasts.shape[1]
    one_pair_each = all(sorted(row[row != 0]) == [-1.0, 1.0] for row in contrasts)
    return one_pair_each and contrasts.shape[0] == k * (k - 1) // 2


def _exchangeable(contrasts: np.ndarray, contrast_cov: np.ndarray) -> bool:
    """Pairwise differences distributed as those of independent equal-variance means."""
    unit = contrasts @ contrasts.T
    scale = np.trace(contrast_cov) / np.trace(unit)
    return bool(np.allclose(contrast_cov, scale * unit, rtol=0.0, atol=1e-9 * scale))


def tukey_p_value(z: float, n_groups: int) -> float:
    """P(max pairwise |Z| >= |z|) among n_groups exchangeable means: the studentized range at df = inf."""
    if n_groups < 2:
        raise ValueError(f"tukey_p_value: need at least 2 groups, got {n_groups}")
    if not np.isfinite(z):
        return 0.0
    if n_groups == 2:
        return float(2.0 * norm.sf(abs(z)))
    return float(min(1.0, studentized_range.sf(abs(z) * np.sqrt(2.0), n_groups, np.inf)))


def pairwise_matrix(groups: tuple[str, ...]) -> np.ndarray:
    """multcomp's Tukey contrasts: one row per pair of groups (b - a for a listed before b)."""
    pairs = list(combinations(range(len(groups)), 2))
    matrix = np.zeros((len(pairs), len(groups)))
    for row, (a, b) in enumerate(pairs):
        matrix[row, b], matrix[row, a] = 1.0, -1.0
    return matrix


# --- what the tests call --------------------------------------------------------------------------

def mixed_model_contrasts(scores: pd.DataFrame, pairs: list[tuple[str, str | float]], *,
                          higher_is_pass: bool = True, alpha: float = 0.05,
                          constant_rule: str = "studentized_range", verdicts_only: bool = False) -> list[Contrast]:
    """Fit score ~ group + (1 | image) and test each (group, reference) pair of `pairs`.

    `scores` is long: columns image, group, score. NaN rows (degenerate maps) are dropped, so
    groups may have unequal n: the model is fitted to what remains (count the drops before).
    A pair of groups is one of multcomp's Tukey contrasts: its P value is adjusted over every
    pairwise comparison among the groups present in `scores` (single-step). A numeric reference is
    a constant (the paper's SSIM 0.5), compared by `constant_rule`:
    - "studentized_range": the group's fitted mean minus the constant, as z, adjusted as one more
      pairwise comparison among the k fitted groups (R: ptukey(|z| sqrt 2, k, Inf));
    - "single_step": multcomp's single-step over the family of every group of `pairs` compared with
      the constant (glht(fit, linfct = K, rhs = c));
    - "constant_group": the constant entered as a group of its own, the constant for every image,
      and compared as one more Tukey pair (what entering LOW as a row of data would do in R).
    A pair whose group has fewer than two finite scores (all its maps degenerate, say) is not
    measured: its contrast has a NaN P value and the verdict "not measured".
    A significant difference in the favourable direction is a pass (higher, or lower when
    higher_is_pass=False, as in the randomization test); a significant one the other way did not
    pass; no significant difference is uncertain. `verdicts_only` (the bootstrap resamples) lets an
    estimated P value stop being refined once it is clearly on one side of alpha.
    """
    if constant_rule not in CONSTANT_RULES:
        raise ValueError(f"constant_rule must be one of {CONSTANT_RULES}, got {constant_rule!r}")
    counts = _validated(scores)["group"].value_counts()
    data = fitted_rows(scores)
    measurable = set(data["group"])

    def n_of(group, reference):
        return int(counts.get(group, 0) + (counts.get(reference, 0) if isinstance(reference, str) else 0))

    def measured(pair):
        return all(not isinstance(name, str) or name in measurable for name in pair)

    wanted = [pair for pair in pairs if measured(pair)]
    found = {}
    if wanted:
        if data["image"].nunique() < 2:
            raise ValueError("scores: need at least 2 images for a mixed model")
        found = _family_contrasts(data, wanted, constant_rule, settle_at=alpha if verdicts_only else None)
    results = []
    for group, reference in pairs:
        if (group, reference) not in found:
            results.append(Contrast(group, reference, np.nan, np.nan, np.nan, np.nan, NOT_MEASURED,
                                    n_of(group, reference)))
            continue
        estimate, std_error, z, p_value, fit = found[(group, reference)]
        results.append(Contrast(group, reference, estimate, std_error, z, p_value,
                                verdict(estimate, p_value, higher_is_pass=higher_is_pass, alpha=alpha),
                                n_of(group, reference), fit.outcome, fit.icc))
    return results


def _family_contrasts(data: pd.DataFrame, pairs, constant_rule: str, settle_at: float | None) -> dict:
    """(group, reference) -> (estimate, se, z, adjusted P, fit) for every wanted pair."""
    constants = sorted({ref for _, ref in pairs if not isinstance(ref, str)})
    if constant_rule == "constant_group" and constants:
        data = pd.concat([data] + [_constant_group(data, c) for c in constants], ignore_index=True)
        pairs = [(g, _constant_name(r) if not isinstance(r, str) else r) for g, r in pairs]
    fit = fit_mixed_model(data)
    index = {g: i for i, g in enumerate(fit.groups)}

    def row(group, reference):
        weights = np.zeros(len(fit.groups))
        weights[index[group]] = 1.0
        if isinstance(reference, str):
            weights[index[reference]] -= 1.0
        return weights

    def z_of(weights, offset=0.0):
        estimate = float(weights @ fit.means) - offset
        std_error = float(np.sqrt(max(weights @ fit.covariance @ weights, 0.0)))
        z = estimate / std_error if std_error > 0 else (0.0 if estimate == 0 else np.inf * np.sign(estimate))
        return estimate, std_error, float(z)

    found = {}
    tukey = pairwise_matrix(fit.groups)
    by_pair = [p for p in pairs if isinstance(p[1], str)]
    if by_pair:
        stats = [z_of(row(*pair)) for pair in by_pair]
        p_values = single_step_p_values([s[2] for s in stats], tukey, fit.covariance, settle_at=settle_at)
        # The family (all pairs of the fitted groups) fixes the joint law; the wanted pairs are read off it.
        found.update({pair: (*s, p, fit) for pair, s, p in zip(by_pair, stats, p_values)})
    by_constant = [p for p in pairs if not isinstance(p[1], str)]
    if by_constant:
        stats = [z_of(row(group, None), float(constant)) for group, constant in by_constant]
        if constant_rule == "single_step":
            family = np.array([row(group, None) for group in dict.fromkeys(g for g, _ in by_constant)])
            p_values = single_step_p_values([s[2] for s in stats], family, fit.covariance, settle_at=settle_at)
        else:
            p_values = [tukey_p_value(s[2], max(2, len(fit.groups))) for s in stats]
        found.update({pair: (*s, p, fit) for pair, s, p in zip(by_constant, stats, p_values)})
    if constant_rule == "constant_group":
        found = {(g, _constant_value(r)): v for (g, r), v in found.items()}
    return found


def _constant_name(value: float) -> str:
    return f"constant {value:g}"


def _constant_value(name):
    return float(name.removeprefix("constant ")) if isinstance(name, str) and name.startswith("constant ") else name


def _constant_group(data: pd.DataFrame, value: float) -> pd.DataFrame:
    images = data["image"].drop_duplicates()
    return pd.DataFrame({"image": images.to_numpy(), "group": _constant_name(value), "score": float(value)})


def fitted_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows `mixed_model_contrasts` fits: finite scores of the groups with at least two."""
    data = _validated(scores)
    counts = data["group"].value_counts()
    return data[data["group"].isin(counts.index[counts >= 2])]


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


def _validated(scores: pd.DataFrame) -> pd.DataFrame:
    missing = {"image", "group", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores: missing column(s) {sorted(missing)}; expected image, group, score")
    data = scores.loc[np.isfinite(scores["score"].astype(float)), ["image", "group", "score"]].copy()
    data["score"] = data["score"].astype(float)
    data["group"] = data["group"].astype(str)
    data["image"] = data["image"].astype(str)
    return data
