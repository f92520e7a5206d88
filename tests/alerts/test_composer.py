"""The composer: exact, short, deterministic summaries whose every number is in the payload."""

from __future__ import annotations

import re
from typing import Any

import orjson
from alerts_synthetic import MIN_MS, T0_MS, Patient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalstream.alerts import AlertPolicy, compose_summary
from vitalstream.features.names import feature_names

TIME = re.compile(r"\b\d{1,2}:\d{2}\b")
# A number not glued to a word (NEWS2, SpO2, 4B are names) and not cut at a decimal point.
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w|\.\d)")
UNITS = {"RR": "/min", "HR": "/min", "SpO2": " %", "SBP": " mmHg", "Temp": " °C"}


def numbers_in(text: str) -> set[str]:
    times = set(TIME.findall(text))
    return times | {str(float(n)) for n in NUMBER.findall(TIME.sub(" ", text))}


def payload_numbers(node: Any) -> set[str]:
    """Every number of a payload, as a number or inside a string (a shown value, a time)."""
    if isinstance(node, dict):
        # Features are hundreds of numbers: a summary number must be in the named fields.
        return set().union(*(payload_numbers(v) for k, v in node.items() if k != "features"))
    if isinstance(node, list | tuple):
        return set().union(set(), *(payload_numbers(v) for v in node))
    if isinstance(node, bool) or node is None:
        return set()
    if isinstance(node, int | float):
        return {str(float(node))}
    return numbers_in(str(node))


def test_summary_reads_like_a_nurse_handover() -> None:
    # NEWS2 from 1 (HR 95) to 8: RR 26 (3) + SpO2 91 (3) + HR 118 (2), with trends and risk.
    patient = Patient()
    policy = AlertPolicy()
    state = policy.new_state()
    policy.assess(state, patient.at(0, heart_rate=95.0))
    features = {name: 0.0 for name in feature_names()}
    # readings cover the windows, so a change over them may be stated
    features.update({name: 1.0 for name in features if "_coverage_" in name})
    features.update({"resp_rate_slope_per_h_2h": 4.1, "spo2_change_30m": -5.2})
    alerts = []
    for minute in range(120, 125):
        alerts += policy.assess(state, patient.at(
            minute, resp_rate=26.0, spo2=91.0, heart_rate=118.0, risk=0.42, features=features,
            factors=[("RR trend", 0.2), ("SpO2 fall", 0.1), ("HR level", 0.05)]))
    assert [a.summary for a in alerts] == [
        "Bed 12, Ward 4B: NEWS2 8 (high), up from 1 at 10:15. RR 26/min, up 8 in 2 h. "
        "SpO2 91 % on air, down 5 in 30 min. HR 118/min. Risk 0.42; main factors: RR trend, "
        "SpO2 fall. Last data 12:15."]  # 2 h after the last reading: a spot check, raised at once
    payload = alerts[0].payload
    assert payload["news2"]["components"]["resp_rate"] == 3
    assert payload["observations"]["spo2"]["ms"] == T0_MS + 120 * MIN_MS
    assert payload["trends"]["resp_rate"]["feature"] == "resp_rate_slope_per_h_2h"
    assert payload["risk"]["model_version"] == "test-model-1"
    assert payload["thresholds"]["news2_high"] == 7


def test_old_readings_and_partial_scores_say_so() -> None:
    # Temperature charted 3 h ago scores 1; SBP has gone stale and is left out of the score.
    patient = Patient()
    policy = AlertPolicy()
    state = policy.new_state()
    policy.assess(state, patient.at(0, measured=("systolic_bp", "temperature", "heart_rate"),
                                    temperature=38.6))
    alerts = []
    for minute in range(180, 190):
        alerts += policy.assess(state, patient.at(minute, stale=("systolic_bp",),
                                                  resp_rate=22.0, spo2=93.0))
    summary = alerts[0].summary
    assert "NEWS2 5 (medium, partial)" in summary
    assert "Partial score: no SBP since 10:15." in summary
    assert "Temp 38.6 °C at 10:15" in summary
    assert alerts[0].payload["stale"] == [
        {"parameter": "systolic_bp", "last_ms": T0_MS, "last": "10:15"}]


def test_long_names_are_cut_to_300_characters_keeping_header_and_last_data() -> None:
    patient = Patient(ward="Ward of the North Wing " * 3, bed="Side room B" * 2)
    policy = AlertPolicy()
    state = policy.new_state()
    features = {"resp_rate_slope_per_h_2h": 5.0, "spo2_change_1h": -4.0, "heart_rate_change_2h": 30.0,
                "temperature_slope_per_h_2h": 0.6, "systolic_bp_change_2h": -40.0}
    alerts = []
    for minute in range(0, 10):
        alerts += policy.assess(state, patient.at(
            minute, resp_rate=30.0, spo2=88.0, heart_rate=140.0, systolic_bp=85.0,
            temperature=39.5, consciousness="V", on_oxygen=True, risk=0.9, features=features,
            factors=[("respiratory rate trend over 2 h", 0.3), ("systolic pressure fall", 0.2)]))
    summary = alerts[0].summary
    assert len(summary) <= 300
    assert summary.startswith("Bed Side room BSide room B, Ward Ward of the North Wing")
    assert summary.endswith("Last data 10:16.")
    assert "RR 30/min" in summary  # a parameter scoring 3 outlives the trends


readings = st.fixed_dictionaries({}, optional={
    "resp_rate": st.floats(4, 45), "spo2": st.floats(70, 100), "heart_rate": st.floats(30, 180),
    "systolic_bp": st.floats(60, 240), "temperature": st.floats(33.5, 41.5),
    "consciousness": st.sampled_from("ACVPU"), "on_oxygen": st.booleans(),
})
step = st.fixed_dictionaries({
    "gap_min": st.floats(0.2, 40),
    "values": readings,
    "risk": st.none() | st.floats(0, 1),
    "stale": st.lists(st.sampled_from(["systolic_bp", "temperature", "spo2"]), max_size=2, unique=True),
    "ack": st.booleans(),
    "trend": st.floats(-30, 30),
    "check_stale_min": st.none() | st.floats(0, 60),
})
place = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -", min_size=0, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=5, max_size=40), ward=place, bed=place,
       scale=st.sampled_from([1, 2]))
def test_every_number_in_every_summary_is_in_the_payload(steps: list[dict[str, Any]], ward: str,
                                                         bed: str, scale: int) -> None:
    patient = Patient(ward=ward, bed=bed)
    policy = AlertPolicy()
    state = policy.new_state()
    alerts = []
    minute = 0.0
    for s in steps:
        minute += s["gap_min"]
        features = {"resp_rate_slope_per_h_2h": s["trend"] / 2, "spo2_change_1h": -s["trend"] / 3,
                    "heart_rate_change_30m": s["trend"], "temperature_slope_per_h_2h": s["trend"] / 20}
        alerts += policy.assess(state, patient.at(
            minute, risk=s["risk"], stale=tuple(s["stale"]), features=features, spo2_scale=scale,
            factors=[("RR trend 2 h", 0.3), ("SpO2 fall", 0.1)], **s["values"]))
        if s["ack"] and state.open_alerts():
            target = state.open_alerts()[-1]
            alerts += policy.acknowledge(state, target.alert_id, "rn-42", T0_MS + int(minute * MIN_MS))
        if s["check_stale_min"] is not None:
            alerts += policy.check_stale(state, T0_MS + int((minute + s["check_stale_min"]) * MIN_MS))
    for alert in alerts:
        assert 0 < len(alert.summary) <= 300
        assert compose_summary(alert.payload) == alert.summary  # deterministic, payload only
        missing = numbers_in(alert.summary) - payload_numbers(alert.payload)
        assert not missing, (alert.summary, missing)
        for label, unit in UNITS.items():
            for match in re.finditer(rf"\b{label} (\d+(?:\.\d+)?)", alert.summary):
                assert alert.summary[match.end():].startswith(unit), alert.summary
        orjson.dumps(alert.to_dict())  # JSON-able as published


def test_number_extraction_sees_decimals_times_and_not_names() -> None:
    # The check above is only as good as its tokeniser.
    assert numbers_in("NEWS2 8 (high) at 08:10. SpO2 91 %. Risk 0.42. Bed 4B.") == {
        "08:10", "8.0", "91.0", "0.42"}


def test_trend_is_not_stretched_over_a_window_the_readings_do_not_cover() -> None:
    # 30 minutes of readings climbing 16 -> 22: a least-squares slope of 12/h over the 2 h
    # window would claim "up 24 in 2 h". A summary may state only what was measured.
    from vitalstream.alerts.policy import find_trends

    features = {"resp_rate_slope_per_h_2h": 12.2, "resp_rate_change_2h": 6.1,
                "resp_rate_coverage_2h": 0.26, "resp_rate_slope_per_h_30m": 12.2,
                "resp_rate_change_30m": 6.1, "resp_rate_coverage_30m": 1.0}
    trend = find_trends(features, {"resp_rate": 3})["resp_rate"]
    assert trend["window_shown"] == "30 min"
    assert trend["change_shown"] == "6"
