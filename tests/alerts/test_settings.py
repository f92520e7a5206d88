"""Per-patient settings set by a clinician, audited, and what they change."""

from __future__ import annotations

import pytest
from alerts_synthetic import T0_MS, Patient

from vitalstream.alerts import AlertPolicy, PatientSettings, SettingsError, apply_settings


def alerts_over(policy: AlertPolicy, state, patient: Patient, minutes: range, **values) -> list:
    out = []
    for minute in minutes:
        out += policy.assess(state, patient.at(minute, **values))
    return out


def test_spo2_scale_2_stops_alerts_for_a_hypercapnic_patient_at_target(patient: Patient) -> None:
    # SpO2 88 % on air: 3 points on scale 1 (a low alert); on scale 2 it is the target range.
    scale1 = AlertPolicy()
    state1 = scale1.new_state()
    assert [a.priority for a in alerts_over(scale1, state1, Patient(), range(0, 10), spo2=88.0)] == ["low"]

    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"patient_id": "p1", "set_by": "dr-ahmed", "set_at_ms": T0_MS,
                             "reason": "COPD, hypercapnic", "spo2_scale": 2})
    assert alerts_over(policy, state, patient, range(0, 30), spo2=88.0) == []
    assert state.audit[-1] == {"action": "settings", "by": "dr-ahmed", "at_ms": T0_MS,
                               "reason": "COPD, hypercapnic", "changes": {"spo2_scale": 2},
                               "outcome": "applied"}


def test_scale_2_alert_prints_the_scale(patient: Patient) -> None:
    # Scale 2 on oxygen: SpO2 97 % scores 3 (over-oxygenation risk) plus 2 for oxygen.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"set_by": "dr-ahmed", "set_at_ms": T0_MS, "spo2_scale": 2})
    alerts = alerts_over(policy, state, patient, range(0, 10), spo2=97.0, on_oxygen=True)
    assert "SpO2 97 % (scale 2) on O2" in alerts[0].summary
    assert alerts[0].payload["news2"]["spo2_scale"] == 2
    assert alerts[0].payload["settings"]["set_by"] == "dr-ahmed"


def test_accepted_baseline_range_stops_the_single_parameter_alert(patient: Patient) -> None:
    # Known fast AF at 132/min: HR scores 3 but the clinician accepted up to 135.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"set_by": "dr-lee", "set_at_ms": T0_MS,
                             "accepted_ranges": {"heart_rate": [40, 135]}})
    assert alerts_over(policy, state, patient, range(0, 30), heart_rate=132.0) == []
    # Outside the accepted range the rule applies again.
    assert [a.priority for a in alerts_over(policy, state, patient, range(30, 40), heart_rate=150.0)] == ["low"]


def test_raised_news2_threshold_for_a_known_baseline(patient: Patient) -> None:
    # NEWS2 5 is this patient's usual: medium from 6, and the alert still prints the real score.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"set_by": "dr-lee", "set_at_ms": T0_MS, "news2_medium": 6, "news2_high": 8})
    assert alerts_over(policy, state, patient, range(0, 30), resp_rate=22.0, spo2=93.0, heart_rate=95.0) == []
    alerts = alerts_over(policy, state, patient, range(30, 40), resp_rate=22.0, spo2=93.0, heart_rate=115.0)
    assert [(a.priority, a.payload["news2"]["total"]) for a in alerts] == [("medium", 6)]
    assert alerts[0].payload["thresholds"]["news2_medium"] == 6


@pytest.mark.parametrize("record, reason", [
    ({"set_at_ms": 1, "spo2_scale": 2}, "set_by"),
    ({"set_by": "dr", "spo2_scale": 2}, "set_at_ms"),
    ({"set_by": "dr", "set_at_ms": 1, "spo2_scale": 3}, "spo2_scale must be 1 or 2"),
    ({"set_by": "dr", "set_at_ms": 1, "news2_medium": 8}, "must be below news2_high"),
    ({"set_by": "dr", "set_at_ms": 1, "accepted_ranges": {"heart_rate": [130, 40]}}, "low must be below"),
    ({"set_by": "dr", "set_at_ms": 1, "accepted_ranges": {"pulse": [40, 130]}}, "unknown numeric"),
    ({"set_by": "dr", "set_at_ms": 1, "device_type": "phone"}, "device_type"),
    ({"set_by": "dr", "set_at_ms": 1}, "nothing to change"),
])
def test_invalid_settings_are_refused_with_the_reason_and_audited(record: dict, reason: str) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    with pytest.raises(SettingsError, match=reason):
        policy.configure(state, record)
    assert state.settings == PatientSettings()
    assert state.audit[-1]["outcome"].startswith("rejected")


def test_null_returns_a_setting_to_the_ward_default() -> None:
    set_ = apply_settings(PatientSettings(), {"set_by": "a", "set_at_ms": 1, "spo2_scale": 2,
                                              "accepted_ranges": {"heart_rate": [40, 135]}})
    reset = apply_settings(set_, {"set_by": "b", "set_at_ms": 2, "spo2_scale": None,
                                  "accepted_ranges": {"heart_rate": None}})
    assert (reset.spo2_scale, reset.accepted_ranges, reset.set_by) == (None, {}, "b")
    assert PatientSettings.from_dict(set_.to_dict()) == set_
