"""Vitals-only NEWS2 on the same hourly rows the model scores: the bar to beat.

Each row is scored from the latest value of each vital charted at or before that hour in
the same stay (carried forward, never backward). Consciousness and supplemental oxygen
are not in the challenge files, so they score 0 (alert, on air): this is the NEWS2 a
monitor can compute from its own vitals, a lower bound of the full chart. SpO2 is scored
on scale 1. Scores come from `vitalstream.scoring.news2`, the same functions the monitor
uses, applied once per distinct value.

>>> import numpy as np
>>> from vitalstream.training.physionet import KEPT_COLUMNS, Cohort
>>> row = dict.fromkeys(KEPT_COLUMNS, np.nan) | {"HR": 118, "Resp": 26, "O2Sat": 91,
...                                            "SBP": 118, "Temp": 38.4}
>>> cohort = Cohort(["p1"], np.array([0, 1]), np.array([[row[c] for c in KEPT_COLUMNS]]))
>>> vitals_news2(cohort).tolist()     # RR 3, SpO2 3, HR 2, temperature 1
[9.0]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vitalstream.scoring.news2 import (
    score_heart_rate,
    score_resp_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)
from vitalstream.training.physionet import Cohort

SCORED: tuple[tuple[str, Callable[[float], int]], ...] = (
    ("Resp", score_resp_rate),
    ("O2Sat", score_spo2),
    ("SBP", score_systolic_bp),
    ("HR", score_heart_rate),
    ("Temp", score_temperature),
)


def carry_forward(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Last observation carried forward within each stay (rows between offsets); NaN before
    a stay's first observation."""
    n = len(values)
    rows = np.arange(n)
    last_seen = np.maximum.accumulate(np.where(np.isnan(values), -1, rows))
    stay_start = np.repeat(offsets[:-1], np.diff(offsets))
    out = np.full(n, np.nan)
    known = last_seen >= stay_start
    out[known] = values[last_seen[known]]
    return out


def score_values(values: np.ndarray, score: Callable[[float], int]) -> np.ndarray:
    """A NEWS2 parameter score for every value; 0 where the value is missing."""
    out = np.zeros(len(values))
    present = ~np.isnan(values)
    distinct, inverse = np.unique(values[present], return_inverse=True)
    out[present] = np.array([score(float(v)) for v in distinct], dtype=float)[inverse]
    return out


def vitals_news2(cohort: Cohort) -> np.ndarray:
    """Vitals-only NEWS2 (0-17 here) for every row of the cohort."""
    total = np.zeros(len(cohort.values))
    for column, score in SCORED:
        total += score_values(carry_forward(cohort.column(column), cohort.offsets), score)
    return total


def on_oxygen(cohort: Cohort) -> np.ndarray:
    """Per row: the last FiO2 charted so far in the stay was above 0.21 (room air), read
    as supplemental oxygen. Only the NEWS2 baseline reads it; it is never a model input."""
    fio2 = carry_forward(cohort.column("FiO2"), cohort.offsets)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(fio2, nan=0.0) > 0.21


def vitals_news2_oxygen(cohort: Cohort) -> np.ndarray:
    """`vitals_news2` plus NEWS2's 2 points for supplemental oxygen where `on_oxygen`."""
    return vitals_news2(cohort) + 2.0 * on_oxygen(cohort)
