"""Feature names: the columns of every feature row, in order.

>>> feature_names((300,))[:4]
['heart_rate_last', 'heart_rate_age_s', 'heart_rate_count_5m', 'heart_rate_coverage_5m']
>>> len(feature_names())
234
"""

from __future__ import annotations

from collections.abc import Sequence

from vitalstream.samples import NUMERIC_PARAMETERS

# 5 min, 30 min, 2 h, 6 h of device time.
DEFAULT_WINDOWS_S: tuple[int, ...] = (300, 1800, 7200, 21600)

# Per parameter, independent of the window.
PARAMETER_FEATURES: tuple[str, ...] = ("last", "age_s")
# Per parameter and window, in this order (the kernel writes them in the same order).
WINDOW_FEATURES: tuple[str, ...] = (
    "count", "coverage", "mean", "std", "min", "max", "slope_per_h", "change", "artefacts",
)
# NEWS2 inputs the engine sees; each gets a ``<name>_fresh`` flag.
NEWS2_NUMERIC_INPUTS: tuple[str, ...] = (
    "resp_rate", "spo2", "systolic_bp", "heart_rate", "temperature",
)


def window_label(window_s: float) -> str:
    """``300 -> '5m'``, ``7200 -> '2h'``, ``90 -> '90s'``: the suffix of window features."""
    seconds = int(window_s)
    if seconds != window_s or seconds <= 0:
        raise ValueError(f"window must be a positive whole number of seconds, got {window_s!r}")
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def feature_names(windows_s: Sequence[float] = DEFAULT_WINDOWS_S) -> list[str]:
    """The stable, ordered names of a feature row for these windows."""
    labels = [window_label(w) for w in windows_s]
    if len(set(labels)) != len(labels):
        raise ValueError(f"windows must be distinct, got {tuple(windows_s)}")
    names: list[str] = []
    for parameter in NUMERIC_PARAMETERS:
        names.extend(f"{parameter}_{feature}" for feature in PARAMETER_FEATURES)
        for label in labels:
            names.extend(f"{parameter}_{feature}_{label}" for feature in WINDOW_FEATURES)
    names.append("shock_index")
    names.extend(f"{parameter}_fresh" for parameter in NEWS2_NUMERIC_INPUTS)
    return names
