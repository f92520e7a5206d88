"""Units and plausibility: a declared value becomes a canonical value, an artefact, or an error.

``PLAUSIBILITY`` is the one table of physiologically possible ranges; every way in (the
JSON fast path and full parser, HL7 v2, FHIR, the replay readers, both front doors) calls
`check_plausible` on the canonical value, so the same reading is accepted or refused the
same way whatever format carried it.

Normalisation goes by the declared unit and never by the size of the number: 98.6 declared
as Cel is not quietly read as °F, it is out of the possible range and rejected, so the
gateway's mapping error shows in the dead-letter topic instead of in a patient's chart.

>>> to_canonical("temperature", 98.6, "[degF]")
37.0
>>> to_canonical("systolic_bp", 16.0, "kPa")
120.01
>>> to_canonical("spo2", 0.97, "1")
97.0
>>> plausibility("heart_rate", 300.0)
'artefact'
>>> check_plausible("resp_rate", -3.0)
Traceback (most recent call last):
...
vitalstream.ingest.normalise.ObservationError: implausible_value: resp_rate -3 is outside the possible range 0-150
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from vitalstream.ingest.codes import ucum_for_mdc_unit

MMHG_PER_KPA = 7.500617


class ObservationError(ValueError):
    """One observation cannot become a sample. ``reason`` is a dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _same(value: float) -> float:
    return value


def _fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


# Declared unit (case-folded) -> conversion to the canonical unit, per parameter. UCUM
# codes first; then the few unambiguous spellings gateways use. A bare "C" or "F" is not
# here on purpose: in UCUM "C" is the coulomb, and a guess is what this module refuses.
_PER_MINUTE = {"/min": _same, "1/min": _same, "{beats}/min": _same, "{beat}/min": _same,
               "bpm": _same, "beats/min": _same}
_BREATHS_PER_MINUTE = {"/min": _same, "1/min": _same, "{breaths}/min": _same,
                       "{breath}/min": _same, "{resp}/min": _same, "breaths/min": _same,
                       "brpm": _same}
_PRESSURE = {"mm[hg]": _same, "mmhg": _same,
             "kpa": lambda kpa: kpa * MMHG_PER_KPA,
             "hpa": lambda hpa: hpa * MMHG_PER_KPA / 10.0}
UNIT_CONVERSIONS: dict[str, dict[str, Callable[[float], float]]] = {
    "heart_rate": _PER_MINUTE,
    "resp_rate": _BREATHS_PER_MINUTE,
    # "1" is UCUM's unity: a fraction 0-1 declared as such.
    "spo2": {"%": _same, "1": lambda fraction: fraction * 100.0},
    "systolic_bp": _PRESSURE,
    "diastolic_bp": _PRESSURE,
    "temperature": {"cel": _same, "°c": _same, "degc": _same,
                    "[degf]": _fahrenheit_to_celsius, "°f": _fahrenheit_to_celsius,
                    "degf": _fahrenheit_to_celsius,
                    "k": lambda kelvin: kelvin - 273.15},
}
_IDENTITY_UNITS = {"/min", "1/min", "{beats}/min", "{beat}/min", "bpm", "beats/min",
                   "{breaths}/min", "{breath}/min", "{resp}/min", "breaths/min", "brpm",
                   "%", "mm[hg]", "mmhg", "cel", "°c", "degc"}


def to_canonical(parameter: str, value: float, unit: str) -> float:
    """``value`` in the declared ``unit`` (UCUM, or an MDC dimension code or reference id)
    as the canonical unit of ``parameter``. Raises ObservationError (missing_unit, bad_unit,
    bad_value)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ObservationError("bad_value", f"{parameter} value {value!r} is not a number")
    if not math.isfinite(value):
        raise ObservationError("implausible_value", f"{parameter} {value!r} is not a finite number")
    return unit_conversion(parameter, unit)(value)


def unit_conversion(parameter: str, unit: str) -> Callable[[float], float]:
    """The function that takes a value of ``parameter`` declared in ``unit`` to its
    canonical unit (the ingest fast paths look it up once per unit, `to_canonical` calls
    it). Raises ObservationError (missing_unit, bad_unit).

    >>> unit_conversion("temperature", "[degF]")(98.6)
    37.0
    """
    declared = unit.strip()
    if not declared:
        raise ObservationError("missing_unit", f"{parameter} has no unit; units are never guessed")
    ucum = ucum_for_mdc_unit(declared) or declared
    conversions = UNIT_CONVERSIONS.get(parameter)
    if conversions is None:
        raise ObservationError("bad_unit", f"{parameter} has no numeric unit")
    convert = conversions.get(ucum.casefold())
    if convert is None:
        raise ObservationError("bad_unit", f"{parameter} in {declared!r} is not a known unit for it")
    if ucum.casefold() in _IDENTITY_UNITS:
        return float

    def converted(value: float) -> float:
        # Rounded to 0.01 so that a converted 98.6 °F is 37.0 and not 36.99999999999999:
        # floating noise must not move a value across a NEWS2 band edge.
        return round(float(convert(float(value))), 2)

    return converted


class Range(NamedTuple):
    """Values outside ``possible`` cannot be a measurement of a living patient (a unit or
    mapping error, a corrupt message): rejected. Values inside ``possible`` but outside
    ``plausible`` are kept, flagged as artefact, for the monitor to discount."""

    possible_low: float
    possible_high: float
    plausible_low: float
    plausible_high: float


# Canonical units. Possible bounds are wider than any recorded survival (body temperature
# 13.7-46.5 °C; SpO2 cannot exceed 100 %); plausible bounds are what a bedside monitor on a
# general or acute ward reports without a probe or motion problem.
PLAUSIBILITY: dict[str, Range] = {
    "heart_rate": Range(0.0, 350.0, 25.0, 250.0),
    "resp_rate": Range(0.0, 150.0, 3.0, 70.0),
    "spo2": Range(0.0, 100.0, 50.0, 100.0),
    "systolic_bp": Range(0.0, 350.0, 50.0, 280.0),
    "diastolic_bp": Range(0.0, 250.0, 15.0, 180.0),
    "temperature": Range(10.0, 47.0, 30.0, 43.0),
}


def plausibility(parameter: str, value: float) -> str:
    """'ok', 'artefact' or 'impossible' for a canonical-unit value of ``parameter``
    (non-finite values are impossible)."""
    bounds = PLAUSIBILITY.get(parameter)
    if bounds is None:
        return "ok"
    if not bounds.possible_low <= value <= bounds.possible_high:  # False for NaN too
        return "impossible"
    if not bounds.plausible_low <= value <= bounds.plausible_high:
        return "artefact"
    return "ok"


def check_plausible(parameter: str, value: float, declared: str = "") -> bool:
    """The artefact flag of a canonical-unit value of ``parameter``; raises ObservationError
    (implausible_value, naming the parameter and the value) when it cannot be a measurement.
    ``declared`` is what the message said, when a unit conversion came first."""
    verdict = plausibility(parameter, value)
    if verdict == "impossible":
        bounds = PLAUSIBILITY[parameter]
        said = f" (declared {declared})" if declared else ""
        raise ObservationError(
            "implausible_value",
            f"{parameter} {value:g}{said} is outside the possible range "
            f"{bounds.possible_low:g}-{bounds.possible_high:g}")
    return verdict == "artefact"


def canonical_value(parameter: str, value: float, unit: str) -> tuple[float, bool]:
    """Convert and check one value: (canonical value, artefact flag). Raises ObservationError
    (missing_unit, bad_unit, bad_value, implausible_value)."""
    canonical = to_canonical(parameter, value, unit)
    return canonical, check_plausible(parameter, canonical, f"{value:g} {unit.strip()}")
