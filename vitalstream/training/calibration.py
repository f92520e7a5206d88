"""Local recalibration: the model's Platt numbers refitted on a new site's own stays.

The trees (the ranking) travel; the level of risk does not (case mix, sepsis rate and
charting move it: the challenge's unseen hospital saw risks about 30 % too high). A new
site runs the model in silent mode (risk computed and stored, no alerts) for its first
weeks, labels those stays the same way, then refits two numbers, slope ``a`` and
intercept ``b`` of risk = 1 / (1 + exp(-(a * margin + b))) on the trees' log-odds, by
logistic regression on those stays. The ranking, the explanations' order and the
same-hour AUROC are unchanged; the thresholds are then chosen again on the same stays
(`vitalstream.training.fit.threshold_for_burden`) and checked on later weeks before the
model raises anything. Procedure: docs in the model card, command
``vitalstream evaluate --psv-dir SITE_WEEKS --recalibrate-out models/site.skops``.
"""

from __future__ import annotations

import numpy as np

from vitalstream.scoring.model import RiskModel
from vitalstream.training.metrics import logistic_fit


def local_platt(model: RiskModel, X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the site's labels on the trees' log-odds of its input rows."""
    labels = np.asarray(labels, dtype=float)
    if len(np.unique(labels)) < 2:
        raise ValueError("recalibration needs stays with and without the outcome")
    return logistic_fit(model.margin(X), labels)
