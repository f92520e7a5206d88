"""NEWS2 against a table written from the RCP 2017 chart (../shared/DESIGN.md), not
against another implementation. Each row is a band edge of the chart."""

from __future__ import annotations

import io

import orjson
import pytest

from vitalstream.commands.score import score_stream
from vitalstream.scoring.news2 import (
    news2,
    score_consciousness,
    score_heart_rate,
    score_oxygen,
    score_resp_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)

# (value, expected score), every printed edge on both sides.
RESP_RATE = [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)]
SPO2_SCALE1 = [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (260, 3)]
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
         (130, 2), (131, 3), (200, 3)]
TEMPERATURE = [(33.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1),
               (39.0, 1), (39.1, 2), (41.0, 2)]


@pytest.mark.parametrize(("rr", "expected"), RESP_RATE)
def test_resp_rate_chart_edges(rr: float, expected: int) -> None:
    assert score_resp_rate(rr) == expected


@pytest.mark.parametrize(("spo2", "expected"), SPO2_SCALE1)
def test_spo2_scale1_chart_edges_oxygen_does_not_change_scale1(spo2: float, expected: int) -> None:
    assert score_spo2(spo2, scale=1, on_oxygen=False) == expected
    assert score_spo2(spo2, scale=1, on_oxygen=True) == expected


@pytest.mark.parametrize(("spo2", "on_oxygen", "expected"), [
    (83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1), (87, False, 1),
    (88, False, 0), (92, False, 0), (88, True, 0), (92, True, 0),
    # >= 93 on air scores 0: the hypercapnic target range is 88-92 and air cannot overshoot it
    (93, False, 0), (97, False, 0), (100, False, 0),
    # on oxygen, saturation above target scores: over-oxygenation risks CO2 retention
    (93, True, 1), (94, True, 1), (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3),
])
def test_spo2_scale2_hypercapnic_chart_edges(spo2: float, on_oxygen: bool, expected: int) -> None:
    assert score_spo2(spo2, scale=2, on_oxygen=on_oxygen) == expected


@pytest.mark.parametrize(("sbp", "expected"), SYSTOLIC)
def test_systolic_bp_chart_edges(sbp: float, expected: int) -> None:
    assert score_systolic_bp(sbp) == expected


@pytest.mark.parametrize(("hr", "expected"), PULSE)
def test_pulse_chart_edges(hr: float, expected: int) -> None:
    assert score_heart_rate(hr) == expected


@pytest.mark.parametrize(("temp", "expected"), TEMPERATURE)
def test_temperature_chart_edges(temp: float, expected: int) -> None:
    assert score_temperature(temp) == expected


def test_oxygen_scores_two_air_zero() -> None:
    assert score_oxygen(True) == 2
    assert score_oxygen(False) == 0


@pytest.mark.parametrize("acvpu", ["C", "V", "P", "U"])
def test_any_new_confusion_or_reduced_consciousness_scores_three(acvpu: str) -> None:
    assert score_consciousness(acvpu) == 3
    assert score_consciousness("A") == 0


@pytest.mark.parametrize(("scorer", "value", "expected"), [
    # Values between printed bands are rounded half away from zero to the chart's resolution.
    (score_resp_rate, 20.4, 0), (score_resp_rate, 20.5, 2), (score_resp_rate, 8.5, 1),
    (score_resp_rate, 11.49, 1), (score_resp_rate, 11.5, 0), (score_resp_rate, 24.5, 3),
    (score_spo2, 95.5, 0), (score_spo2, 95.49, 1), (score_spo2, 91.5, 2),
    (score_systolic_bp, 90.4, 3), (score_systolic_bp, 90.5, 2), (score_systolic_bp, 219.5, 3),
    (score_heart_rate, 90.5, 1), (score_heart_rate, 40.5, 1), (score_heart_rate, 130.4, 2),
    (score_temperature, 38.04, 0), (score_temperature, 38.05, 1), (score_temperature, 35.05, 1),
    (score_temperature, 35.04, 3), (score_temperature, 39.05, 2), (score_temperature, 36.05, 0),
])
def test_values_between_printed_bands_round_half_up_to_chart_resolution(scorer, value, expected) -> None:
    assert scorer(value) == expected


FULL_NORMAL = {"resp_rate": 16, "spo2": 98, "on_oxygen": False, "systolic_bp": 125,
               "heart_rate": 72, "consciousness": "A", "temperature": 36.8}


def test_healthy_adult_scores_zero_low_and_complete() -> None:
    result = news2(FULL_NORMAL)
    assert (result.total, result.band, result.partial) == (0, "low", False)
    assert set(result.components.values()) == {0}


@pytest.mark.parametrize(("changes", "total", "band"), [
    ({"resp_rate": 22}, 2, "low"),                                   # 1-4: low
    ({"resp_rate": 22, "heart_rate": 100, "temperature": 38.5}, 4, "low"),
    ({"consciousness": "V"}, 3, "low-medium"),                       # single parameter 3
    ({"spo2": 91}, 3, "low-medium"),
    ({"resp_rate": 22, "heart_rate": 115, "temperature": 38.5}, 5, "medium"),   # 5-6 medium
    ({"resp_rate": 22, "heart_rate": 115, "systolic_bp": 105, "temperature": 38.5}, 6, "medium"),
    ({"resp_rate": 25, "spo2": 93, "heart_rate": 115}, 7, "high"),   # >= 7 high
    ({"resp_rate": 26, "spo2": 91, "heart_rate": 118, "temperature": 38.4}, 9, "high"),
])
def test_band_follows_rcp_clinical_response_thresholds(changes: dict, total: int, band: str) -> None:
    result = news2({**FULL_NORMAL, **changes})
    assert (result.total, result.band) == (total, band)
    # A red score is a single parameter scoring 3, whatever the total.
    assert result.red_score == (3 in result.components.values())


def test_oxygen_adds_two_and_scale2_scores_saturation_above_target() -> None:
    result = news2({**FULL_NORMAL, "on_oxygen": True, "spo2": 97, "spo2_scale": 2})
    assert result.components["on_oxygen"] == 2
    assert result.components["spo2"] == 3
    assert result.total == 5 and result.band == "medium"


def test_missing_parameters_score_nothing_and_mark_partial() -> None:
    result = news2({"resp_rate": 26, "heart_rate": 72})
    assert result.partial is True
    assert result.total == 3
    assert result.components["temperature"] is None
    assert result.band == "low-medium"


def test_score_command_scores_every_valid_line_and_names_the_bad_one() -> None:
    lines = io.BytesIO(b'{"resp_rate": 26, "spo2": 91}\n{not json\n{"consciousness": "X"}\n\n{"heart_rate": 131}\n')
    out, err = io.BytesIO(), io.StringIO()
    status = score_stream(lines, out, err)
    results = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert status == 1
    assert [r["news2"]["total"] for r in results] == [6, 3]
    assert results[0]["news2"]["components"]["resp_rate"] == 3
    assert "line 2" in err.getvalue() and "line 3" in err.getvalue()
    assert "consciousness" in err.getvalue()
