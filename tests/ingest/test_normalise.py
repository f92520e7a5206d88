"""Units by declaration, plausibility ranges, and the code tables both sides share."""

from __future__ import annotations

import pytest

from vitalstream.ingest.codes import (
    PREFERRED_LOINC,
    PREFERRED_MDC,
    PREFERRED_MDC_UNIT,
    PREFERRED_UCUM,
    parameter_for_loinc,
    parameter_for_mdc,
    ucum_for_mdc_unit,
)
from vitalstream.ingest.normalise import (
    PLAUSIBILITY,
    ObservationError,
    canonical_value,
    to_canonical,
)


@pytest.mark.parametrize("parameter, value, unit, expected", [
    ("temperature", 98.6, "[degF]", 37.0),          # normal body temperature
    ("temperature", 104.0, "266560", 40.0),         # MDC_DIM_FAHR by code: high fever
    ("temperature", 310.15, "K", 37.0),
    ("systolic_bp", 12.0, "kPa", 90.01),             # 90 mmHg, NEWS2 systolic 3-point band
    ("systolic_bp", 120.0, "MDC_DIM_MMHG", 120.0),
    ("spo2", 0.91, "1", 91.0),                       # fraction declared as UCUM unity
    ("heart_rate", 130.0, "{beats}/min", 130.0),
])
def test_values_are_converted_by_their_declared_unit(parameter, value, unit, expected):
    assert to_canonical(parameter, value, unit) == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize("parameter, unit, reason", [
    ("temperature", "", "missing_unit"),
    ("temperature", "C", "bad_unit"),      # UCUM C is the coulomb: not guessed to be Celsius
    ("spo2", "262656", "bad_unit"),        # MDC_DIM_DIMLESS: percent or fraction is not declared
    ("heart_rate", "mm[Hg]", "bad_unit"),
])
def test_undeclared_or_foreign_units_are_errors(parameter, unit, reason):
    with pytest.raises(ObservationError) as caught:
        to_canonical(parameter, 37.0, unit)
    assert caught.value.reason == reason


@pytest.mark.parametrize("parameter", sorted(PLAUSIBILITY))
def test_plausibility_edges_decide_sample_artefact_or_rejection(parameter):
    bounds = PLAUSIBILITY[parameter]
    unit = PREFERRED_UCUM[parameter]
    assert canonical_value(parameter, bounds.plausible_low, unit) == (bounds.plausible_low, False)
    assert canonical_value(parameter, bounds.plausible_high, unit) == (bounds.plausible_high, False)
    assert canonical_value(parameter, bounds.possible_high, unit)[1] is (bounds.possible_high > bounds.plausible_high)
    with pytest.raises(ObservationError, match="implausible_value"):
        canonical_value(parameter, bounds.possible_high + 0.5, unit)


def test_spo2_above_100_percent_is_impossible():
    with pytest.raises(ObservationError):
        canonical_value("spo2", 101.0, "%")


def test_preferred_codes_map_back_to_their_parameter():
    # A simulator that writes the preferred codes must read back the same parameter.
    for parameter, term in PREFERRED_MDC.items():
        assert parameter_for_mdc(term.code) == parameter_for_mdc(term.name) == parameter
        assert to_canonical(parameter, 1.0, PREFERRED_MDC_UNIT[parameter][0]) == 1.0
        assert ucum_for_mdc_unit(PREFERRED_MDC_UNIT[parameter][1]) is not None
    for parameter, term in PREFERRED_LOINC.items():
        assert parameter_for_loinc(term.code) == parameter
        assert to_canonical(parameter, 1.0, PREFERRED_UCUM[parameter]) == 1.0
