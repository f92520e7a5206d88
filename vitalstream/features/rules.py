"""Artefact rules and freshness limits of the feature engine (documented in docs/features.md).

The rules are data, not code: the kernels read them as arrays, so a ward can tighten a
range without touching compiled code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from vitalstream.samples import NUMERIC_PARAMETERS

# Values outside these closed ranges are not physiology (probe off, lead off, typing
# errors): kept out of the statistics and counted. Resp rate 0 stays in: it is apnoea.
PHYSIOLOGIC_RANGES: dict[str, tuple[float, float]] = {
    "heart_rate": (20.0, 300.0),
    "resp_rate": (0.0, 80.0),
    "spo2": (50.0, 100.0),  # oximeters are not calibrated below ~50 %
    "systolic_bp": (40.0, 300.0),
    "diastolic_bp": (15.0, 200.0),
    "temperature": (25.0, 45.0),
}

# How long a value still counts as current. Continuously monitored parameters go stale
# after 30 min; those a ward charts at 4-hourly rounds after 4.5 h (as the monitor does).
FRESH_S: dict[str, float] = {
    "heart_rate": 1800.0,
    "resp_rate": 1800.0,
    "spo2": 1800.0,
    "systolic_bp": 16200.0,
    "diastolic_bp": 1800.0,
    "temperature": 16200.0,
}


@dataclasses.dataclass(frozen=True)
class ArtefactRules:
    """Which samples are artefacts, and how long a value stays fresh.

    A flat line is a run of exactly equal, in-order values of a parameter with natural
    beat-to-beat variability, lasting ``flat_line_s`` and ``flat_line_min_samples``; the
    samples of the run from that point on are artefacts (a frozen monitor output).
    An SpO2 dropout is an SpO2 sample at least ``spo2_dropout_min_drop_pct`` below the
    last accepted SpO2 that fell faster than ``spo2_dropout_max_fall_pct_per_s``: blood
    does not desaturate that fast, a slipping probe does.
    """

    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(
        default_factory=lambda: dict(PHYSIOLOGIC_RANGES))
    fresh_s: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(FRESH_S))
    flat_line_parameters: tuple[str, ...] = ("heart_rate", "resp_rate")
    flat_line_s: float = 120.0
    flat_line_min_samples: int = 30
    spo2_dropout_min_drop_pct: float = 10.0
    spo2_dropout_max_fall_pct_per_s: float = 2.0

    def limits(self) -> np.ndarray:
        """Per parameter row: low, high, flat-line rule on, fresh_s, dropout rule on."""
        table = np.zeros((len(NUMERIC_PARAMETERS), 5), dtype=np.float64)
        for k, name in enumerate(NUMERIC_PARAMETERS):
            low, high = self.ranges[name]
            table[k] = (low, high, float(name in self.flat_line_parameters),
                        self.fresh_s[name], float(name == "spo2"))
        return table
