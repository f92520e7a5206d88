"""Every figure the model card and `vitalstream evaluate` report, from hourly scores.

Definitions (the card repeats them):
- hour-level AUROC / AUPRC: each row's score against that row's SepsisLabel.
- normalised utility: the 2019 challenge's score (`vitalstream.training.utility`).
- sensitivity (stay level): septic stays with at least one alert hour no later than
  clinical onset (first SepsisLabel hour + 6 h), over septic stays.
- hour sensitivity / specificity / PPV: row-level at the operating point.
- alerts per patient-day: new alerts (an hour at or above the threshold whose previous
  hour in the stay was below it, or the stay's first hour) per 24 rows; alert hours per
  patient-day counts every hour at or above it.
- lead time: first SepsisLabel hour minus the first alert hour, for septic stays alerted
  no later than onset; positive = hours before the label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from vitalstream.training.physionet import COL, Cohort
from vitalstream.training.utility import DT_OPTIMAL, normalised_utility

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("age 18-44", 0.0, 45.0),
    ("age 45-64", 45.0, 65.0),
    ("age 65-79", 65.0, 80.0),
    ("age 80+", 80.0, 200.0),
)
NEWS2_TRIGGERS: tuple[int, ...] = (5, 7)  # RCP: medium (urgent response) and high


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return np.split(values, offsets[1:-1])


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """AUROC and AUPRC; None when only one class is present."""
    if len(np.unique(labels)) < 2:
        return {"auroc": None, "auprc": None}
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "auprc": float(average_precision_score(labels, scores)),
    }


def alert_metrics(cohort: Cohort, alerts: np.ndarray) -> dict[str, Any]:
    """Operating-point figures for binary hourly alerts (see the module docstring)."""
    labels = cohort.column("SepsisLabel").astype(bool)
    alerts = np.asarray(alerts, dtype=bool)
    offsets = cohort.offsets
    stay_start = np.zeros(len(alerts), dtype=bool)
    stay_start[offsets[:-1][np.diff(offsets) > 0]] = True
    previous = np.concatenate([[False], alerts[:-1]])
    new_alerts = alerts & (stay_start | ~previous)
    patient_days = len(alerts) / 24.0
    detected = 0
    septic = 0
    leads: list[float] = []
    for stay_labels, stay_alerts in zip(
        _split(labels, offsets), _split(alerts, offsets), strict=True
    ):
        if not stay_labels.any():
            continue
        septic += 1
        first_label = int(np.argmax(stay_labels))
        onset = first_label - DT_OPTIMAL
        hits = np.flatnonzero(stay_alerts[: onset + 1])
        if len(hits):
            detected += 1
            leads.append(float(first_label - hits[0]))
    tp = int(np.sum(alerts & labels))
    positives = int(np.sum(labels))
    negatives = len(labels) - positives
    return {
        "sensitivity": detected / septic if septic else None,
        "hour_sensitivity": tp / positives if positives else None,
        "hour_specificity": float(np.sum(~alerts & ~labels) / negatives) if negatives else None,
        "hour_ppv": tp / int(alerts.sum()) if alerts.any() else None,
        "alerts_per_patient_day": float(new_alerts.sum() / patient_days) if patient_days else None,
        "alert_hours_per_patient_day": float(alerts.sum() / patient_days) if patient_days else None,
        "median_lead_time_h": float(np.median(leads)) if leads else None,
        "lead_time_iqr_h": [float(np.percentile(leads, 25)), float(np.percentile(leads, 75))]
        if leads else None,
        "utility": normalised_utility(
            _split(labels.astype(int), offsets), _split(alerts.astype(int), offsets)
        ),
    }


def score_figures(cohort: Cohort, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    labels = cohort.column("SepsisLabel")
    figures: dict[str, Any] = {"threshold": threshold}
    figures.update(ranking_metrics(labels, scores))
    figures.update(alert_metrics(cohort, scores >= threshold))
    return figures


def subgroups(cohort: Cohort) -> dict[str, np.ndarray]:
    """Stay numbers of each reported subgroup (age bands at the first row, sex)."""
    first_rows = cohort.values[cohort.offsets[:-1][np.diff(cohort.offsets) > 0]]
    nonempty = np.flatnonzero(np.diff(cohort.offsets) > 0)
    age = first_rows[:, COL["Age"]]
    sex = first_rows[:, COL["Gender"]]
    groups = {name: nonempty[(age >= lo) & (age < hi)] for name, lo, hi in AGE_BANDS}
    groups["female"] = nonempty[sex == 0]
    groups["male"] = nonempty[sex == 1]
    return groups


def evaluate_scores(
    cohort: Cohort, risk: np.ndarray, threshold: float, news2_scores: np.ndarray
) -> dict[str, Any]:
    """The model's and vitals-only NEWS2's figures on the same rows, overall and by subgroup."""
    labels = cohort.column("SepsisLabel")
    if np.isnan(labels).any():
        raise ValueError("evaluation needs SepsisLabel on every row")
    septic_stays = sum(1 for s in _split(labels, cohort.offsets) if s.any())
    result: dict[str, Any] = {
        "stays": cohort.n_stays,
        "rows": int(len(labels)),
        "septic_stays": septic_stays,
        "positive_row_fraction": float(labels.mean()) if len(labels) else None,
        "patient_days": len(labels) / 24.0,
        "model": score_figures(cohort, risk, threshold),
        "news2": {
            **ranking_metrics(labels, news2_scores),
            "triggers": {
                f">={t}": alert_metrics(cohort, news2_scores >= t) for t in NEWS2_TRIGGERS
            },
        },
        "calibration": calibration(labels, risk),
    }
    model_auroc = result["model"]["auroc"]
    news2_auroc = result["news2"]["auroc"]
    result["auroc_gain_over_news2"] = (
        model_auroc - news2_auroc if model_auroc is not None and news2_auroc is not None else None
    )
    by_group: dict[str, Any] = {}
    for name, stays in subgroups(cohort).items():
        part = cohort.subset(stays)
        rows = np.concatenate(
            [np.arange(cohort.offsets[i], cohort.offsets[i + 1]) for i in stays]
        ) if len(stays) else np.zeros(0, dtype=np.int64)
        by_group[name] = {
            "stays": int(len(stays)),
            "septic_stays": sum(1 for s in _split(part.column("SepsisLabel"), part.offsets)
                                if s.any()),
            "model": score_figures(part, risk[rows], threshold) if len(stays) else None,
            "news2": ranking_metrics(part.column("SepsisLabel"), news2_scores[rows]),
        }
    result["subgroups"] = by_group
    return result


def calibration(labels: np.ndarray, risk: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Brier score and observed vs predicted rate in bins of equal count (for the plot)."""
    if not len(labels):
        return {"brier": None, "bins": []}
    order = np.argsort(risk, kind="stable")
    out = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            out.append({
                "mean_predicted": float(risk[chunk].mean()),
                "observed": float(labels[chunk].mean()),
                "rows": int(len(chunk)),
            })
    return {"brier": float(brier_score_loss(labels, risk)), "bins": out}
