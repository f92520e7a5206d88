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


# The chart's bands, one table per parameter: the upper bounds of its printed bands (on
# the rounded value) and the score of each band, the last for values above every bound.
# ``score_*`` below and the monitor's compiled core (vitalstream.monitor_kernel) both read
# these tables: there is one NEWS2 chart in the code.
RESP_RATE_BANDS = ((8, 11, 20, 24), (3, 1, 0, 2, 3))
SPO2_SCALE1_BANDS = ((91, 93, 95), (3, 2, 1, 0))
SPO2_SCALE2_AIR_BANDS = ((83, 85, 87), (3, 2, 1, 0))
SPO2_SCALE2_OXYGEN_BANDS = ((83, 85, 87, 92, 94, 96), (3, 2, 1, 0, 1, 2, 3))
SYSTOLIC_BP_BANDS = ((90, 100, 110, 219), (3, 2, 1, 0, 3))
HEART_RATE_BANDS = ((40, 50, 90, 110, 130), (3, 1, 0, 1, 2, 3))
TEMPERATURE_TENTHS_BANDS = ((350, 360, 380, 390), (3, 1, 0, 1, 2))
OXYGEN_SCORE = 2  # supplemental oxygen
CONSCIOUSNESS_NOT_ALERT_SCORE = 3  # new confusion, voice, pain or unresponsive
HIGH_TOTAL, MEDIUM_TOTAL = 7, 5  # the bands' totals (band_for)


def _band_score(bands: tuple[tuple[int, ...], tuple[int, ...]], rounded: int) -> int:
    bounds, scores = bands
    for bound, score in zip(bounds, scores[:-1], strict=True):
        if rounded <= bound:
            return score
    return scores[-1]


def score_resp_rate(per_min: float) -> int:
    return _band_score(RESP_RATE_BANDS, chart_round(per_min))


def score_spo2(spo2_pct: float, scale: int = 1, on_oxygen: bool = False) -> int:
    sat = chart_round(spo2_pct)
    if scale == 2:
        return _band_score(SPO2_SCALE2_OXYGEN_BANDS if on_oxygen else SPO2_SCALE2_AIR_BANDS, sat)
    return _band_score(SPO2_SCALE1_BANDS, sat)


def score_oxygen(on_oxygen: bool) -> int:
    return OXYGEN_SCORE if on_oxygen else 0


def score_systolic_bp(mmhg: float) -> int:
    return _band_score(SYSTOLIC_BP_BANDS, chart_round(mmhg))


def score_heart_rate(per_min: float) -> int:
    return _band_score(HEART_RATE_BANDS, chart_round(per_min))


def score_consciousness(acvpu: str) -> int:
    return 0 if acvpu == "A" else CONSCIOUSNESS_NOT_ALERT_SCORE


def score_temperature(celsius: float) -> int:
    return _band_score(TEMPERATURE_TENTHS_BANDS, chart_round(celsius, 1))


def band_for(total: int, components: Mapping[str, int | None]) -> str:
    """The RCP clinical-response band of a NEWS2 result."""
    if total >= HIGH_TOTAL:
        return "high"
    if total >= MEDIUM_TOTAL:
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
