"""Statistics for human evaluation, on plain data (no Django): means with confidence intervals,
agreement between evaluators, Bradley–Terry strengths, position bias.

Libraries do the well-known parts: `krippendorff` (alpha), scikit-learn (Cohen's kappa), statsmodels
(Fleiss' kappa), scipy (t quantiles, the binomial test, the Bradley–Terry optimisation).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

Z95 = 1.959963984540054


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def mean_ci(
    values: list[float], *, confidence: float = 0.95, bounds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Mean with a Student-t confidence interval (None where fewer than two values), clipped to the
    scale's `bounds` where given (a 1–5 mean cannot lie above 5)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "ci_low": None, "ci_high": None}
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if n < 2:
        return {"n": n, "mean": mean, "ci_low": None, "ci_high": None}
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * array.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"n": n, "mean": mean, "ci_low": low, "ci_high": high}


def krippendorff_alpha(units: list[dict[Any, float]], *, level: str = "ordinal") -> float | None:
    """Alpha over units (items), each {evaluator: value}. None when no unit has two values or every
    value is the same (alpha is undefined then)."""
    import krippendorff

    raters = sorted({r for unit in units for r in unit}, key=str)
    if len(raters) < 2 or not any(len(unit) >= 2 for unit in units):
        return None
    data = np.full((len(raters), len(units)), np.nan)
    for j, unit in enumerate(units):
        for r, value in unit.items():
            data[raters.index(r), j] = value
    values = data[~np.isnan(data)]
    if len(set(values.tolist())) < 2:
        return None
    return _finite(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two evaluators' labels on the same items (None when undefined)."""
    from sklearn.metrics import cohen_kappa_score

    if len(first) < 2 or len(set(first) | set(second)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(cohen_kappa_score(first, second))


def fleiss_kappa(units: list[list[str]], categories: list[str]) -> float | None:
    """Fleiss' kappa over items rated by the same number (≥2) of evaluators each."""
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    raters = Counter(len(u) for u in units).most_common(1)[0][0]
    table = np.array([[u.count(c) for c in categories] for u in units if len(u) == raters])
    if len(table) < 2 or np.count_nonzero(table.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(_fleiss(table, method="fleiss"))


def pairwise_agreement(units: list[dict[Any, str]], categories: list[str]) -> dict[str, Any]:
    """Per item {evaluator: choice} → Cohen's kappa per pair of evaluators (and their mean), Fleiss'
    kappa, and the raw share of agreeing pairs."""
    raters = sorted({r for unit in units for r in unit}, key=str)
    pairs = []
    for a, b in itertools.combinations(raters, 2):
        shared = [u for u in units if a in u and b in u]
        kappa = cohen_kappa([u[a] for u in shared], [u[b] for u in shared]) if shared else None
        pairs.append({"evaluators": [str(a), str(b)], "items": len(shared), "kappa": kappa})
    kappas = [p["kappa"] for p in pairs if p["kappa"] is not None]
    agreeing = total = 0
    for unit in units:
        for x, y in itertools.combinations(list(unit.values()), 2):
            total += 1
            agreeing += x == y
    return {
        "cohen_kappa_pairs": pairs,
        "cohen_kappa_mean": float(np.mean(kappas)) if kappas else None,
        "fleiss_kappa": fleiss_kappa([list(u.values()) for u in units], categories),
        "percent_agreement": agreeing / total if total else None,
    }


def bradley_terry(
    n_models: int, comparisons: list[tuple[int, int, float]], *, ridge: float = 1e-6
) -> dict[str, Any]:
    """Bradley–Terry strengths θ (sum to zero; P(i beats j) = σ(θi − θj)) by maximum likelihood, with
    Wald 95% intervals from the observed information.

    comparisons: (i, j, s) with s the score of i against j: 1 win, 0.5 tie, 0 loss. A tiny ridge keeps
    θ finite when one model wins every comparison (its interval is then very wide)."""
    if n_models < 2:
        raise ValueError("bradley_terry: needs at least two models")
    if not comparisons:
        return {"scores": [0.0] * n_models, "ci_low": [None] * n_models, "ci_high": [None] * n_models}
    i = np.array([c[0] for c in comparisons])
    j = np.array([c[1] for c in comparisons])
    s = np.array([c[2] for c in comparisons], dtype=float)

    def full(free: np.ndarray) -> np.ndarray:
        return np.append(free, -free.sum())

    def nll(free: np.ndarray) -> float:
        theta = full(free)
        d = theta[i] - theta[j]
        return float(np.sum(np.logaddexp(0, -d) * s + np.logaddexp(0, d) * (1 - s)) + ridge * theta @ theta)

    fit = optimize.minimize(nll, np.zeros(n_models - 1), method="BFGS", options={"gtol": 1e-10})
    theta = full(fit.x)
    p = 1 / (1 + np.exp(-(theta[i] - theta[j])))
    info = np.zeros((n_models, n_models))
    for a, b, w in zip(i, j, p * (1 - p), strict=True):
        info[a, a] += w
        info[b, b] += w
        info[a, b] -= w
        info[b, a] -= w
    # The information matrix is singular along θ + c; its pseudo-inverse is the covariance of the
    # sum-to-zero solution.
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0, None))
    return {
        "scores": theta.tolist(),
        "ci_low": (theta - Z95 * se).tolist(),
        "ci_high": (theta + Z95 * se).tolist(),
    }


def position_bias(choices: list[str]) -> dict[str, Any]:
    """How often the left output (A) wins among decided pairwise choices, with a two-sided binomial
    test against 50 %."""
    left, right, ties = choices.count("a"), choices.count("b"), choices.count("tie")
    decided = left + right
    result: dict[str, Any] = {"left_wins": left, "right_wins": right, "ties": ties}
    result["left_win_rate"] = left / decided if decided else None
    result["p_value"] = float(sps.binomtest(left, decided, 0.5).pvalue) if decided else None
    result["biased"] = bool(result["p_value"] is not None and result["p_value"] < 0.05)
    return result


# --- what an agreement number means ----------------------------------------------------------------

ALPHA_CONVENTION = (
    "Krippendorff (2004, Content Analysis, §11.4): α ≥ 0.800 reliable; 0.667 ≤ α < 0.800 only tentative "
    "conclusions; α < 0.667 low (do not rely on the ratings); α < 0 the evaluators disagree "
    "systematically, worse than chance; α = 1 perfect agreement."
)
KAPPA_CONVENTION = (
    "Landis & Koch (1977): κ < 0 poor (worse than chance); 0–0.20 slight; 0.21–0.40 fair; "
    "0.41–0.60 moderate; 0.61–0.80 substantial; 0.81–1 almost perfect."
)
NOT_ENOUGH = "not enough ratings"


def interpret_alpha(alpha: float | None) -> dict[str, str]:
    """Krippendorff's α in words, on his conventional thresholds (ALPHA_CONVENTION); `level` is
    good / tentative / low / bad / none (for the page's colour)."""
    if alpha is None:
        return {"label": NOT_ENOUGH, "level": "none"}
    if alpha < 0:
        return {"label": "worse than chance (systematic disagreement)", "level": "bad"}
    if alpha < 0.667:
        return {"label": "low: do not rely on these ratings", "level": "low"}
    if alpha < 0.8:
        return {"label": "tentative: acceptable for tentative conclusions only", "level": "tentative"}
    return {"label": "reliable", "level": "good"}


def interpret_kappa(kappa: float | None) -> dict[str, str]:
    """Cohen's or Fleiss' κ in words, on Landis & Koch's scale (KAPPA_CONVENTION)."""
    if kappa is None:
        return {"label": NOT_ENOUGH, "level": "none"}
    if kappa < 0:
        return {"label": "poor: worse than chance", "level": "bad"}
    for upper, label, level in ((0.2, "slight", "low"), (0.4, "fair", "low"), (0.6, "moderate", "tentative"),
                                (0.8, "substantial", "good")):  # fmt: skip
        if kappa <= upper:
            return {"label": label, "level": level}
    return {"label": "almost perfect", "level": "good"}


def agreement_basis(units: list[dict[Any, Any]]) -> dict[str, int]:
    """What an agreement number rests on: the items that two or more evaluators rated, and how many
    evaluators rated those."""
    shared = [unit for unit in units if len(unit) >= 2]
    return {"items": len(shared), "raters": len({r for unit in shared for r in unit})}
