"""Vitals-only NEWS2 on hourly challenge rows: carried forward within a stay, never across."""

from __future__ import annotations

import numpy as np

from vitalstream.training.baseline import carry_forward, vitals_news2
from vitalstream.training.physionet import KEPT_COLUMNS, Cohort


def cohort_of(stays: list[list[dict[str, float]]]) -> Cohort:
    rows, lengths = [], []
    for stay in stays:
        lengths.append(len(stay))
        for row in stay:
            full = dict.fromkeys(KEPT_COLUMNS, np.nan) | row
            rows.append([full[c] for c in KEPT_COLUMNS])
    return Cohort([f"p{i}" for i in range(len(stays))],
                  np.concatenate([[0], np.cumsum(lengths)]), np.array(rows, dtype=float))


def test_last_value_carries_forward_within_a_stay_but_not_into_the_next():
    values = np.array([np.nan, 5.0, np.nan, np.nan, np.nan, 7.0])
    offsets = np.array([0, 3, 6])
    assert np.array_equal(carry_forward(values, offsets),
                          [np.nan, 5.0, 5.0, np.nan, np.nan, 7.0], equal_nan=True)


def test_a_tachycardic_tachypnoeic_febrile_hypoxic_row_scores_as_the_chart_does():
    # HR 131 -> 3, RR 25 -> 3, SpO2 91 -> 3, SBP 90 -> 3, temperature 39.1 -> 2.
    cohort = cohort_of([[{"HR": 131, "Resp": 25, "O2Sat": 91, "SBP": 90, "Temp": 39.1}]])
    assert vitals_news2(cohort).tolist() == [14.0]


def test_a_temperature_charted_hours_ago_still_scores_and_missing_vitals_score_nothing():
    cohort = cohort_of([[{"Temp": 38.5}, {"HR": 95}, {}], [{"HR": 60}]])
    # Hour 0: temperature 1; hour 1: temperature 1 + HR 1; hour 2 carries both; the
    # second stay does not inherit the first stay's fever.
    assert vitals_news2(cohort).tolist() == [1.0, 2.0, 2.0, 0.0]
