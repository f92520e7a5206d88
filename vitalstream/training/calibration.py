"""Local recalibration: the model's Platt numbers refitted on a new site's own stays.

The trees (the ranking) travel; the level of risk does not (case mix, sepsis rate and
charting move it: the challenge's unseen hospital saw risks about 30 % too high). A new
site runs the model in silent mode (risk computed and stored, no alerts) for its first
weeks, labels those stays the same way, then refits two numbers, slope ``a`` and
intercept ``b`` of risk = 1 / (1 + exp(-(a * margin + b))) on the trees' log-odds, by
logistic regression on those stays. The ranking, the explanations' order and the
same-hour AUROC are unchanged; the operating points are then chosen again on the same
stays (`local_operating_points`: the site's alert budget, the utility-optimal threshold,
NEWS2's burden there) and checked on later weeks before the model raises anything.
Procedure: docs in the model card and docs/risk-model.md, command
``vitalstream evaluate --psv-dir SITE_WEEKS --out out/site --recalibrate-out models/site.skops
[--alert-budget 0.25]``.
"""

from __future__ import annotations

import numpy as np

from vitalstream.scoring.model import RiskModel
from vitalstream.training.metrics import logistic_fit
from vitalstream.training.physionet import Cohort


def local_platt(model: RiskModel, X: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the site's labels on the trees' log-odds of its input rows."""
    labels = np.asarray(labels, dtype=float)
    if len(np.unique(labels)) < 2:
        raise ValueError("recalibration needs stays with and without the outcome")
    return logistic_fit(model.margin(X), labels)


def local_operating_points(model: RiskModel, platt: tuple[float, float], X: np.ndarray,
                           cohort: Cohort, alert_budget: float) -> dict[str, float]:
    """The operating points chosen again on a site's own stays with its new calibration:
    the utility-optimal threshold, the threshold of ``alert_budget`` new alerts per
    patient-day, and the thresholds at NEWS2's (with oxygen points, >= 5 and >= 7) burden
    on the same stays. ``X``: the model's input rows of ``cohort``'s rows."""
    from vitalstream.training.baseline import vitals_news2_oxygen
    from vitalstream.training.evaluation import NEWS2_TRIGGERS
    from vitalstream.training.fit import (
        choose_threshold,
        new_alerts_per_patient_day,
        threshold_for_burden,
    )

    a, b = platt
    risk = 1.0 / (1.0 + np.exp(-(a * model.margin(X) + b)))
    offsets = cohort.offsets
    points = {"utility_optimal": choose_threshold(risk, cohort.column("SepsisLabel"), offsets)[0],
              f"budget_{alert_budget}_alerts_per_patient_day":
                  threshold_for_burden(risk, offsets, alert_budget)}
    news2 = vitals_news2_oxygen(cohort)
    for trigger in NEWS2_TRIGGERS:
        burden = new_alerts_per_patient_day(news2 >= trigger, offsets)
        points[f"news2_{trigger}_burden"] = threshold_for_burden(risk, offsets, burden)
    return points
