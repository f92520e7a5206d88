"""The PhysioNet/CinC 2019 challenge's normalised utility score, as the challenge defines it.

Per stay, every hour's binary prediction earns a utility: for a septic stay (t_sepsis =
first SepsisLabel hour + 6, i.e. the clinical onset) a positive prediction earns up to
+1 from 12 h before onset, rising linearly to +1 at 6 h before and falling to 0 at 3 h
after; a missed hour in the last 6 h before onset onward costs down to -2 at +3 h; a
positive prediction on a stay that never becomes septic costs -0.05 an hour; hours
later than onset + 3 h count nothing. The cohort's total is normalised so that
predicting nothing scores 0 and the best possible predictions score 1.

>>> labels = np.array([0, 0, 0, 1, 1])      # first label hour 3, so onset is hour 9
>>> round(stay_utility(labels, labels), 4)   # hour 3 is 6 h before onset (+1), hour 4 is 5 h (+8/9)
1.8889
>>> stay_utility(np.zeros(4), np.ones(4))       # four false-alarm hours
-0.2
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DT_EARLY = -12  # hours relative to onset: earliest hour a positive prediction earns anything
DT_OPTIMAL = -6  # the best hour to predict; also the label's lead before onset
DT_LATE = 3  # after this hour nothing counts
MAX_U_TP = 1.0
MIN_U_FN = -2.0
U_FP = -0.05
U_TN = 0.0


def row_terms(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each hour's utility if predicted positive and if predicted negative."""
    labels = np.asarray(labels)
    hours = np.arange(len(labels), dtype=float)
    if not np.any(labels):
        return np.full(len(labels), U_FP), np.full(len(labels), U_TN)
    t_sepsis = float(np.argmax(labels) - DT_OPTIMAL)
    m_1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY)
    b_1 = -m_1 * DT_EARLY
    m_2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL)
    b_2 = -m_2 * DT_LATE
    m_3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL)
    b_3 = -m_3 * DT_OPTIMAL
    rel = hours - t_sepsis
    early = rel <= DT_OPTIMAL
    counted = rel <= DT_LATE
    tp = np.where(early, np.maximum(m_1 * rel + b_1, U_FP), m_2 * rel + b_2)
    fn = np.where(early, 0.0, m_3 * rel + b_3)
    return np.where(counted, tp, 0.0), np.where(counted, fn, 0.0)


def stay_utility(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The challenge's ``compute_prediction_utility`` for one stay (hourly rows)."""
    labels = np.asarray(labels)
    predicted = np.asarray(predictions).astype(bool)
    if len(labels) != len(predicted):
        raise ValueError("labels and predictions must have the same number of hours")
    tp, fn = row_terms(labels)
    return float(np.sum(np.where(predicted, tp, fn)))


def best_predictions(labels: np.ndarray) -> np.ndarray:
    """The challenge's reference best predictions: positive from 12 h before onset to 3 h after."""
    labels = np.asarray(labels)
    best = np.zeros(len(labels))
    if np.any(labels):
        t_sepsis = int(np.argmax(labels)) - DT_OPTIMAL
        best[max(0, t_sepsis + DT_EARLY): min(t_sepsis + DT_LATE + 1, len(labels))] = 1
    return best


def normalised_utility(
    labels_by_stay: Sequence[np.ndarray], predictions_by_stay: Sequence[np.ndarray]
) -> float:
    """(observed - no alarms) / (best - no alarms), summed over stays, as the challenge scores."""
    observed = best = inaction = 0.0
    for labels, predictions in zip(labels_by_stay, predictions_by_stay, strict=True):
        observed += stay_utility(labels, predictions)
        best += stay_utility(labels, best_predictions(labels))
        inaction += stay_utility(labels, np.zeros(len(labels)))
    if best == inaction:  # no septic stay: the challenge's ratio is undefined
        return float("nan")
    return (observed - inaction) / (best - inaction)



class RowUtilities:
    """Each row's utility if alerted and if not, computed once for a cohort, so the
    normalised utility of many candidate alert vectors (choosing a threshold) costs one
    vectorised sum each, not a loop over stays: `normalised_utility`'s figure (tested)
    up to the order of summation."""

    def __init__(self, labels: np.ndarray, offsets: np.ndarray) -> None:
        labels = np.asarray(labels)
        self.if_alerted = np.zeros(len(labels))
        self.if_silent = np.zeros(len(labels))
        best = 0.0
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            self.if_alerted[a:b], self.if_silent[a:b] = row_terms(labels[a:b])
            best += stay_utility(labels[a:b], best_predictions(labels[a:b]))
        self.inaction = float(self.if_silent.sum())
        self.best = best

    def normalised(self, alerts: np.ndarray) -> float:
        if self.best == self.inaction:
            return float("nan")
        observed = float(np.where(np.asarray(alerts, dtype=bool), self.if_alerted,
                                  self.if_silent).sum())
        return (observed - self.inaction) / (self.best - self.inaction)
