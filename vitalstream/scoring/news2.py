"""NEWS2 (Royal College of Physicians, 2017), exactly as the chart prints it.

Rule for measured values that fall between the chart's printed integer bands
(RR 20.5, temperature 38.05): the value is first rounded, half away from zero, to the
resolution the chart is printed in (whole breaths, %, mmHg and beats; 0.1 degC), then
looked up. This is what a nurse charting the same reading does, and it makes every
real number score exactly one band: RR 20.4 -> 20 -> 0, RR 20.5 -> 21 -> 2,
temperature 38.04 -> 38.0 -> 0, 38.05 -> 38.1 -> 1.

A missing parameter scores nothing and makes the result ``partial``: a partial total
is a lower bound of the full score. SpO2 on scale 2 with oxygen status unknown is
scored as on air (the lower bound), and the result is partial.

>>> r = news2({"resp_rate": 26, "spo2": 91, "on_oxygen": False, "systolic_bp": 118,
...            "heart_rate": 118, "consciousness": "A", "temperature": 38.4})
>>> r.total, r.band, r.partial
(9, 'high', False)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

# Order of the chart; these keys are the canonical parameter names.
COMPONENTS: tuple[str, ...] = (
    "resp_rate",
    "spo2",
    "on_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "temperature",
)
BANDS: tuple[str, ...] = ("low", "low-medium", "medium", "high")


@dataclasses.dataclass(frozen=True, slots=True)
class News2:
    total: int
    components: dict[str, int | None]
    band: str
    partial: bool
    # A single parameter scored 3 (a "red score"), which some wards alert on by itself.
    red_score: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "components": dict(self.components),
            "band": self.band,
            "partial": self.partial,
        }


# Float products such as 38.05 * 10 = 380.49999999999994 sit a hair below the half they
# mean; a value within this margin of a half counts as the half.
_HALF_MARGIN = 1e-9


def chart_round(value: float, places: int = 0) -> int:
    """Round half away from zero to the chart's printed resolution, in units of
    10**-places (temperature 38.05 with places=1 gives 381, i.e. 38.1)."""
    scaled = abs(float(value)) * 10**places
    rounded = math.floor(scaled + 0.5 + _HALF_MARGIN)
    return -rounded if value < 0 else rounded


def score_resp_rate(per_min: float) -> int:
    rr = chart_round(per_min)
    if rr <= 8:
        return 3
    if rr <= 11:
        return 1
    if rr <= 20:
        return 0
    if rr <= 24:
        return 2
    return 3


def score_spo2(spo2_pct: float, scale: int = 1, on_oxygen: bool = False) -> int:
    sat = chart_round(spo2_pct)
    if scale == 2:
        if sat <= 83:
            return 3
        if sat <= 85:
            return 2
        if sat <= 87:
            return 1
        if sat <= 92 or not on_oxygen:
            return 0
        if sat <= 94:
            return 1
        if sat <= 96:
            return 2
        return 3
    if sat <= 91:
        return 3
    if sat <= 93:
        return 2
    if sat <= 95:
        return 1
    return 0


def score_oxygen(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def score_systolic_bp(mmhg: float) -> int:
    sbp = chart_round(mmhg)
    if sbp <= 90:
        return 3
    if sbp <= 100:
        return 2
    if sbp <= 110:
        return 1
    if sbp <= 219:
        return 0
    return 3


def score_heart_rate(per_min: float) -> int:
    hr = chart_round(per_min)
    if hr <= 40:
        return 3
    if hr <= 50:
        return 1
    if hr <= 90:
        return 0
    if hr <= 110:
        return 1
    if hr <= 130:
        return 2
    return 3


def score_consciousness(acvpu: str) -> int:
    return 0 if acvpu == "A" else 3


def score_temperature(celsius: float) -> int:
    tenths = chart_round(celsius, 1)
    if tenths <= 350:
        return 3
    if tenths <= 360:
        return 1
    if tenths <= 380:
        return 0
    if tenths <= 390:
        return 1
    return 2


def band_for(total: int, components: Mapping[str, int | None]) -> str:
    """The RCP clinical-response band of a NEWS2 result."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if any(score == 3 for score in components.values()):
        return "low-medium"
    return "low"


def news2(observations: Mapping[str, Any]) -> News2:
    """Score one observation set keyed by canonical parameter name.

    Absent keys (or None) are not measured. ``spo2_scale`` (1 or 2) defaults to 1.
    Values must already be canonical (see ``vitalstream.samples.normalise_value``).
    """
    scale = observations.get("spo2_scale") or 1
    on_oxygen = observations.get("on_oxygen")
    components: dict[str, int | None] = dict.fromkeys(COMPONENTS)
    if observations.get("resp_rate") is not None:
        components["resp_rate"] = score_resp_rate(observations["resp_rate"])
    if observations.get("spo2") is not None:
        components["spo2"] = score_spo2(observations["spo2"], int(scale), bool(on_oxygen))
    if on_oxygen is not None:
        components["on_oxygen"] = score_oxygen(bool(on_oxygen))
    if observations.get("systolic_bp") is not None:
        components["systolic_bp"] = score_systolic_bp(observations["systolic_bp"])
    if observations.get("heart_rate") is not None:
        components["heart_rate"] = score_heart_rate(observations["heart_rate"])
    if observations.get("consciousness") is not None:
        components["consciousness"] = score_consciousness(observations["consciousness"])
    if observations.get("temperature") is not None:
        components["temperature"] = score_temperature(observations["temperature"])
    total = sum(score for score in components.values() if score is not None)
    partial = any(score is None for score in components.values())
    return News2(total, components, band_for(total, components), partial,
                 any(score == 3 for score in components.values()))


# Scores of observation sets already seen. Monitors report heart rate, respiration rate,
# SpO2 and pressures in whole units and temperature in tenths, so a ward's assessments
# repeat a small set of inputs. Results are shared: treat ``components`` as read-only.
_CACHE: dict[tuple[Any, ...], News2] = {}
_CACHE_MAX = 50_000  # about 500 bytes an entry: at most 25 MB, then it starts afresh


def news2_cached(observations: Mapping[str, tuple[Any, int]], spo2_scale: int = 1,
                 key: tuple[Any, ...] | None = None) -> News2:
    """``news2`` of ``{parameter: (value, time_ms)}`` (the monitor's latest values), cached
    on the values and the SpO2 scale; the same result as ``news2`` of the values. ``key``,
    if the caller has it: the scale, then each component's value or None, chart order."""
    if key is None:
        key = (spo2_scale, *[observations[name][0] if name in observations else None for name in COMPONENTS])
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        values = {name: value for name, (value, _) in observations.items()}
        values["spo2_scale"] = spo2_scale
        found = _CACHE[key] = news2(values)
    return found
