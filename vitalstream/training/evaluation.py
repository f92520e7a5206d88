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
- share of alerts in never-event stays: new alerts in stays that never become septic,
  over all new alerts.
- same-hour AUROC: only pairs of rows at the same hour of stay are compared
  (`vitalstream.training.metrics`); AUROC by band of ICU time: rows of that band only.
- intervals: 95 % bootstrap by patient (stays drawn with replacement, 200 draws; 50 for
  the calibration line).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from vitalstream.training.metrics import (
    BOOTSTRAP_RESAMPLES,
    RankedRows,
    calibration_line,
    interval,
    stay_weights,
    weighted_median,
    with_interval,
)
from vitalstream.training.physionet import COL, Cohort
from vitalstream.training.utility import (
    DT_OPTIMAL,
    best_predictions,
    normalised_utility,
    stay_utility,
)

ICU_TIME_BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-12 h", 0.0, 12.0),
    ("12-24 h", 12.0, 24.0),
    ("24-48 h", 24.0, 48.0),
    ("48-96 h", 48.0, 96.0),
    ("96 h+", 96.0, 1e9),
)

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


def per_stay_alerts(cohort: Cohort, alerts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-stay sums of binary hourly alerts, from which every operating-point figure (and
    its bootstrap) is a ratio of weighted sums."""
    labels = cohort.column("SepsisLabel").astype(bool)
    alerts = np.asarray(alerts, dtype=bool)
    offsets = cohort.offsets
    stay = cohort.stay_index()
    n = cohort.n_stays
    starts = np.zeros(len(alerts), dtype=bool)
    starts[offsets[:-1][np.diff(offsets) > 0]] = True
    previous = np.concatenate([[False], alerts[:-1]])
    new = alerts & (starts | ~previous)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(stay, values.astype(float), n)

    out = {"rows": np.diff(offsets).astype(float), "new_alerts": total(new),
           "alert_hours": total(alerts), "tp_hours": total(alerts & labels),
           "septic": np.zeros(n), "detected": np.zeros(n), "lead": np.full(n, np.nan),
           "u_observed": np.zeros(n), "u_best": np.zeros(n), "u_none": np.zeros(n)}
    for i, (stay_labels, stay_alerts) in enumerate(zip(_split(labels, offsets),
                                                       _split(alerts, offsets), strict=True)):
        as_int = stay_labels.astype(int)
        out["u_observed"][i] = stay_utility(as_int, stay_alerts)
        out["u_best"][i] = stay_utility(as_int, best_predictions(as_int))
        out["u_none"][i] = stay_utility(as_int, np.zeros(len(as_int)))
        if not stay_labels.any():
            continue
        out["septic"][i] = 1
        first_label = int(np.argmax(stay_labels))
        hits = np.flatnonzero(stay_alerts[: first_label - DT_OPTIMAL + 1])
        if len(hits):
            out["detected"][i] = 1
            out["lead"][i] = float(first_label - hits[0])
    return out


def alert_intervals(cohort: Cohort, alerts: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
    """Sensitivity, PPV, new alerts per patient-day, median lead time, share of alerts in
    never-event stays and utility, each with its bootstrap interval by patient."""
    t = per_stay_alerts(cohort, alerts)

    def ratio(num: str, den: str, num_mask: np.ndarray | None = None,
              scale: float = 1.0) -> Any:
        def statistic(w: np.ndarray) -> float | None:
            top = np.sum(w * t[num] * (1.0 if num_mask is None else num_mask))
            bottom = np.sum(w * t[den])
            return float(scale * top / bottom) if bottom > 0 else None
        return statistic

    never = 1.0 - t["septic"]
    detected = t["detected"] == 1

    def lead(w: np.ndarray) -> float | None:
        return weighted_median(t["lead"][detected], w[detected])

    def utility(w: np.ndarray) -> float | None:
        gap = np.sum(w * (t["u_best"] - t["u_none"]))
        return float(np.sum(w * (t["u_observed"] - t["u_none"])) / gap) if gap > 0 else None

    n = cohort.n_stays
    statistics = {
        "sensitivity": ratio("detected", "septic"),
        "hour_ppv": ratio("tp_hours", "alert_hours"),
        "alerts_per_patient_day": ratio("new_alerts", "rows", scale=24.0),
        "median_lead_time_h": lead,
        "share_of_alerts_in_never_event_stays": ratio("new_alerts", "new_alerts", never),
        "utility": utility,
    }
    return {name: with_interval(f, n, draws) for name, f in statistics.items()}


def ranking_intervals(cohort: Cohort, scores: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
    """AUROC overall, at the same hour of stay and within bands of ICU time, with intervals."""
    labels = cohort.column("SepsisLabel")
    hours = cohort.column("ICULOS") - 1.0
    stay = cohort.stay_index()
    n = cohort.n_stays

    def by_rows(ranked: RankedRows, mask: np.ndarray | None = None) -> Any:
        return lambda w: ranked.auroc(w[stay] if mask is None else w[stay][mask])

    out: dict[str, Any] = {
        "auroc": with_interval(by_rows(RankedRows(scores, labels)), n, draws),
        "same_hour_auroc": with_interval(by_rows(RankedRows(scores, labels, hours)), n, draws),
        "auroc_by_icu_time": {},
    }
    for name, lo, hi in ICU_TIME_BANDS:
        mask = (hours >= lo) & (hours < hi)
        ranked = RankedRows(scores[mask], labels[mask])
        out["auroc_by_icu_time"][name] = {"rows": int(mask.sum()),
                                          **with_interval(by_rows(ranked, mask), n, draws)}
    return out


def calibration_intervals(cohort: Cohort, risk: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
    labels = cohort.column("SepsisLabel")
    stay = cohort.stay_index()
    point = calibration_line(labels, risk)
    out: dict[str, Any] = {}
    for key in ("slope", "intercept", "observed_over_expected"):
        out[key] = {"value": point[key], "ci": interval(
            lambda w, key=key: calibration_line(labels, risk, w[stay])[key], draws[:50])}
    return out


def full_evaluation(cohort: Cohort, risk: np.ndarray, thresholds: dict[str, float],
                    news2: np.ndarray, news2_oxygen: np.ndarray,
                    draws: int = BOOTSTRAP_RESAMPLES, seed: int = 20190) -> dict[str, Any]:
    """`evaluate_scores` plus what the issue asks to be reported with intervals: ranking
    figures of the model and NEWS2 with and without oxygen points, the calibration line,
    and each operating point (the model's thresholds and NEWS2 >= 5 and >= 7)."""
    weights = stay_weights(cohort.n_stays, draws, seed)
    main = next(iter(thresholds.values()))
    result = evaluate_scores(cohort, risk, main, news2)
    result["news2_oxygen"] = ranking_metrics(cohort.column("SepsisLabel"), news2_oxygen)
    result["intervals"] = {
        "model": ranking_intervals(cohort, risk, weights),
        "news2": ranking_intervals(cohort, news2, weights),
        "news2_oxygen": ranking_intervals(cohort, news2_oxygen, weights),
        "calibration": calibration_intervals(cohort, risk, weights),
    }
    points: dict[str, Any] = {}
    for name, threshold in thresholds.items():
        points[f"model {name}"] = {"threshold": threshold,
                                   **alert_intervals(cohort, risk >= threshold, weights)}
    for trigger in NEWS2_TRIGGERS:
        points[f"NEWS2 >= {trigger}"] = {"threshold": trigger,
                                        **alert_intervals(cohort, news2 >= trigger, weights)}
        points[f"NEWS2 with oxygen >= {trigger}"] = {
            "threshold": trigger, **alert_intervals(cohort, news2_oxygen >= trigger, weights)}
    result["operating_points"] = points
    groups: dict[str, Any] = {}
    for name, stays in subgroups(cohort).items():
        part = cohort.subset(stays)
        rows = np.concatenate([np.arange(cohort.offsets[i], cohort.offsets[i + 1])
                               for i in stays]) if len(stays) else np.zeros(0, dtype=np.int64)
        w = stay_weights(len(stays), draws // 2, seed + 1)
        groups[name] = {
            "model": ranking_intervals(part, risk[rows], w),
            "news2": ranking_intervals(part, news2[rows], w),
        }
    result["subgroup_intervals"] = groups
    return result
