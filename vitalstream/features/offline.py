"""Features over a recorded table of samples (training, replay): the live kernels, offline.

>>> import numpy as np
>>> rows = features_at(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64),
...                    np.array([0.0, 3600.0, 7200.0]), np.array([80.0, 90.0, 100.0]),
...                    np.zeros(2, dtype=np.int64), np.array([3600.0, 7200.0]))
>>> names = feature_names()
>>> float(rows[1, names.index("heart_rate_slope_per_h_6h")])  # +10 beats/min per hour
10.0
>>> float(rows[0, names.index("heart_rate_last")])  # causal: the 7200 s sample is unseen
90.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitalstream.features import kernels as K
from vitalstream.features.engine import (
    DEFAULT_BUCKETS_PER_WINDOW,
    DEFAULT_LATE_TOLERANCE_S,
    KernelConfig,
    PatientState,
)
from vitalstream.features.names import DEFAULT_WINDOWS_S, feature_names
from vitalstream.features.rules import ArtefactRules
from vitalstream.samples import NUMERIC_PARAMETERS

__all__ = ["features_at", "feature_names"]


def features_at(patient_idx: np.ndarray, params: np.ndarray, times_s: np.ndarray,
                values: np.ndarray, query_patient_idx: np.ndarray, query_times_s: np.ndarray,
                windows_s: Sequence[float] = DEFAULT_WINDOWS_S, *,
                buckets_per_window: int = DEFAULT_BUCKETS_PER_WINDOW,
                rules: ArtefactRules | None = None) -> np.ndarray:
    """Feature rows (n_queries, n_features) of each queried patient at each query time,
    from that patient's samples with time <= query time (causal).

    Samples are taken in time order (ties in the given order), so the result equals what
    `FeatureEngine.update` gives for the same samples arriving in time order. Artefacts
    are counted in the ``*_artefacts_*`` features; a parameter index outside 0..5 or a
    non-finite time raises ValueError.
    """
    patient_idx = np.asarray(patient_idx, dtype=np.int64)
    params = np.asarray(params, dtype=np.int64)
    times_s = np.asarray(times_s, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    query_patient_idx = np.asarray(query_patient_idx, dtype=np.int64)
    query_times_s = np.asarray(query_times_s, dtype=np.float64)
    if not (patient_idx.shape == params.shape == times_s.shape == values.shape):
        raise ValueError("patient_idx, params, times_s and values must have the same length")
    if query_patient_idx.shape != query_times_s.shape:
        raise ValueError("query_patient_idx and query_times_s must have the same length")
    # A table is checked before use: nothing in it may be dropped without a word.
    bad_params = int(((params < 0) | (params >= len(NUMERIC_PARAMETERS))).sum())
    if bad_params:
        raise ValueError(f"{bad_params} sample(s) with a parameter index outside 0..5")
    if not (np.isfinite(times_s).all() and np.isfinite(query_times_s).all()):
        raise ValueError("sample and query times must be finite seconds")
    config = KernelConfig.build(windows_s, buckets_per_window, rules,
                                DEFAULT_LATE_TOLERANCE_S)
    order = np.lexsort((times_s, patient_idx))  # stable: ties keep the given order
    q_order = np.lexsort((query_times_s, query_patient_idx))
    out = np.empty((query_times_s.shape[0], config.n_features), dtype=np.float64)
    state = PatientState(1, len(config.windows_s), config.buckets_per_window).arrays
    counters = np.zeros(K.N_COUNTERS, dtype=np.int64)
    K.features_at_sorted(
        state["buckets"], state["art"], state["pstate"], counters, config.cfg, config.limits,
        config.widths_s, config.fresh_idx,
        patient_idx[order], params[order], times_s[order], values[order],
        query_patient_idx[q_order], query_times_s[q_order], q_order, out,
    )
    return out
