"""The windowed feature engine: one numba code path for live, replay and training.

``FeatureEngine`` keeps per-patient state and turns batches of samples into feature rows;
``features_at`` computes the same rows over a recorded table. Rules: docs/features.md.
"""

from __future__ import annotations

import numpy as np

from vitalstream.features.engine import FeatureEngine
from vitalstream.features.names import DEFAULT_WINDOWS_S, feature_names, window_label
from vitalstream.features.offline import features_at
from vitalstream.features.rules import ArtefactRules

__all__ = [
    "DEFAULT_WINDOWS_S",
    "ArtefactRules",
    "FeatureEngine",
    "feature_names",
    "features_at",
    "warm_up",
    "window_label",
]


def warm_up() -> float:
    """Compile (or load from the on-disk cache) every kernel; returns the seconds taken."""
    import time

    start = time.perf_counter()
    engine = FeatureEngine(initial_patients=1)
    slot = engine.slot_for("warm-up")
    one = np.ones(1)
    engine.update(np.array([slot]), np.array([0]), one, one * 80.0)
    engine.features_of(np.array([slot]))
    features_at(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), one, one * 80.0,
                np.zeros(1, dtype=np.int64), one)
    return time.perf_counter() - start
