"""Weighted ranking and calibration figures, and bootstrap intervals by patient.

Every figure here takes row weights, so a bootstrap by patient is a draw of stay weights
(how many times each stay is drawn, multinomial) spread to the stays' rows: the rows are
sorted once and each resample costs a few ``bincount`` calls, not a new sort.

- AUROC with strata: only pairs of one positive and one negative row in the same stratum
  are compared (ties count a half). With every row in one stratum it is the ordinary
  AUROC; with the hour of stay as the stratum it is the *same-hour* AUROC, which time
  since admission cannot raise, because within one hour of stay every row has the same
  time.
- Calibration slope and intercept: logistic regression of the label on logit(risk)
  (slope; 1 is ideal) and, with the slope held at 1, the intercept (calibration in the
  large; 0 is ideal, negative means the risk is too high).

>>> scores = np.array([0.1, 0.4, 0.35, 0.8]); labels = np.array([0, 0, 1, 1])
>>> round(auroc(scores, labels), 3)
0.75
>>> round(auroc(scores, labels, strata=np.array([0, 1, 0, 1])), 3)  # pairs (0.1, 0.35), (0.4, 0.8)
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 200
INTERVAL = (2.5, 97.5)  # percentiles of the bootstrap: a 95 % interval


class RankedRows:
    """Scores, labels and strata sorted once, for weighted AUROCs of many resamples."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray, strata: np.ndarray | None = None):
        scores = np.asarray(scores, dtype=float)
        labels = np.asarray(labels, dtype=float)
        strata = np.zeros(len(scores), dtype=np.int64) if strata is None else \
            np.unique(np.asarray(strata), return_inverse=True)[1].astype(np.int64)
        order = np.lexsort((scores, strata))
        s, k = scores[order], strata[order]
        new_group = np.ones(len(s), dtype=bool)
        new_group[1:] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
        self.order = order
        self.group = np.cumsum(new_group) - 1  # tie group of each sorted row
        self.n_groups = int(self.group[-1] + 1) if len(s) else 0
        self.group_stratum = k[new_group]
        self.n_strata = int(k.max() + 1) if len(k) else 0
        self.labels = labels[order]

    def auroc(self, weights: np.ndarray | None = None) -> float | None:
        """Weighted AUROC over within-stratum pairs; None without a comparable pair."""
        w = np.ones(len(self.labels)) if weights is None else np.asarray(weights, float)[self.order]
        pos = np.bincount(self.group, w * self.labels, self.n_groups)
        neg = np.bincount(self.group, w * (1.0 - self.labels), self.n_groups)
        cum_neg = np.cumsum(neg)
        stratum_neg = np.bincount(self.group_stratum, neg, self.n_strata)
        stratum_pos = np.bincount(self.group_stratum, pos, self.n_strata)
        before = np.concatenate([[0.0], np.cumsum(stratum_neg)[:-1]])  # negatives of earlier strata
        below = cum_neg - neg - before[self.group_stratum]
        pairs = float(np.sum(stratum_pos * stratum_neg))
        if pairs <= 0:
            return None
        return float(np.sum(pos * (below + 0.5 * neg)) / pairs)


def auroc(scores: np.ndarray, labels: np.ndarray, strata: np.ndarray | None = None,
          weights: np.ndarray | None = None) -> float | None:
    return RankedRows(scores, labels, strata).auroc(weights)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def logistic_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                 offset: np.ndarray | None = None, slope: bool = True,
                 iterations: int = 50) -> tuple[float, float]:
    """(slope, intercept) of a weighted logistic regression of ``y`` on ``x`` by Newton's
    method; with ``slope=False`` only the intercept is fitted (the slope stays 1, ``x`` is
    an offset). Used for calibration figures and for Platt recalibration."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    off = np.zeros(len(x)) if offset is None else np.asarray(offset, dtype=float)
    a, b = 1.0, 0.0
    design = np.column_stack([x, np.ones(len(x))]) if slope else np.ones((len(x), 1))
    for _ in range(iterations):
        eta = off + (a * x + b if slope else x + b)
        p = 1.0 / (1.0 + np.exp(-np.clip(eta, -30.0, 30.0)))
        gradient = design.T @ (w * (y - p))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(design.shape[1])
        step = np.linalg.solve(hessian, gradient)
        if slope:
            a, b = a + step[0], b + step[1]
        else:
            b = b + step[0]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a), float(b)


def calibration_line(labels: np.ndarray, risk: np.ndarray,
                     weights: np.ndarray | None = None) -> dict[str, float | None]:
    """Calibration slope, intercept (slope fixed at 1) and observed/expected ratio."""
    labels = np.asarray(labels, dtype=float)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
    if not len(labels) or labels.min() == labels.max():
        return {"slope": None, "intercept": None, "observed_over_expected": None}
    z = _logit(risk)
    slope, _ = logistic_fit(z, labels, w)
    _, intercept = logistic_fit(z, labels, w, slope=False)
    expected = float(np.sum(w * np.asarray(risk, float)))
    return {"slope": slope, "intercept": intercept,
            "observed_over_expected": float(np.sum(w * labels)) / expected if expected else None}


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float | None:
    keep = weights > 0
    if not keep.any():
        return None
    order = np.argsort(values[keep], kind="stable")
    v, w = values[keep][order], weights[keep][order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, 0.5 * cum[-1])])


def stay_weights(n_stays: int, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 20190) -> np.ndarray:
    """(resamples, n_stays) counts: how often each stay is drawn in each bootstrap sample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_stays, np.full(n_stays, 1.0 / n_stays), size=resamples).astype(float) \
        if n_stays else np.zeros((resamples, 0))


def interval(statistic: Callable[[np.ndarray], float | None], draws: np.ndarray) -> list[float] | None:
    """Percentile interval of ``statistic(stay_weights)`` over the bootstrap draws."""
    values = [statistic(w) for w in draws]
    values = [v for v in values if v is not None and np.isfinite(v)]
    if len(values) < 0.8 * len(draws):
        return None
    return [float(np.percentile(values, INTERVAL[0])), float(np.percentile(values, INTERVAL[1]))]


def with_interval(statistic: Callable[[np.ndarray], float | None], n_stays: int,
                  draws: np.ndarray) -> dict[str, float | list[float] | None]:
    """``{"value": statistic on all stays once, "ci": bootstrap interval}``."""
    return {"value": statistic(np.ones(n_stays)), "ci": interval(statistic, draws)}


def row_weights(stay_weight: np.ndarray, stay_of_row: np.ndarray) -> np.ndarray:
    return stay_weight[stay_of_row]


def band_strata(hours: np.ndarray, bands: Sequence[tuple[str, float, float]]) -> dict[str, np.ndarray]:
    """Rows of each band of hours (lo <= hour < hi)."""
    return {name: (hours >= lo) & (hours < hi) for name, lo, hi in bands}
