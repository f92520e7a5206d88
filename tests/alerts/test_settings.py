"""Per-patient settings set by a clinician, audited, and what they change."""

from __future__ import annotations

import pytest
from alerts_synthetic import T0_MS, Patient

from vitalstream.alerts import AlertPolicy, PatientSettings, SettingsError, apply_settings
from vitalstream.alerts.settings import MAX_ACCEPTED_RANGES, loosens


def physician(name: str, role: str = "physician") -> dict[str, str]:
    return {"user_id": f"u-{name}", "role": role, "name": name}


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
    policy.configure(state, {"patient_id": "p1", "actor": physician("dr-ahmed"), "set_at_ms": T0_MS,
                             "reason": "COPD, hypercapnic", "spo2_scale": 2})
    assert alerts_over(policy, state, patient, range(0, 30), spo2=88.0) == []
    assert state.audit[-1] == {"action": "settings", "by": "dr-ahmed", "actor": physician("dr-ahmed"),
                               "at_ms": T0_MS,
                               "reason": "COPD, hypercapnic", "changes": {"spo2_scale": 2},
                               "outcome": "applied"}


def test_scale_2_alert_prints_the_scale(patient: Patient) -> None:
    # Scale 2 on oxygen: SpO2 97 % scores 3 (over-oxygenation risk) plus 2 for oxygen.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"actor": physician("dr-ahmed"), "set_at_ms": T0_MS, "spo2_scale": 2})
    alerts = alerts_over(policy, state, patient, range(0, 10), spo2=97.0, on_oxygen=True)
    assert "SpO2 97 % (scale 2) on O2" in alerts[0].summary
    assert alerts[0].payload["news2"]["spo2_scale"] == 2
    assert alerts[0].payload["settings"]["set_by"] == "dr-ahmed"


def test_accepted_baseline_range_stops_the_single_parameter_alert(patient: Patient) -> None:
    # Known fast AF at 132/min: HR scores 3 but the clinician accepted up to 135.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"actor": physician("dr-lee"), "set_at_ms": T0_MS,
                             "accepted_ranges": {"heart_rate": [40, 135]}})
    assert alerts_over(policy, state, patient, range(0, 30), heart_rate=132.0) == []
    # Outside the accepted range the rule applies again.
    assert [a.priority for a in alerts_over(policy, state, patient, range(30, 40), heart_rate=150.0)] == ["low"]


def test_raised_news2_threshold_for_a_known_baseline(patient: Patient) -> None:
    # NEWS2 5 is this patient's usual: medium from 6, and the alert still prints the real score.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"actor": physician("dr-lee"), "set_at_ms": T0_MS, "news2_medium": 6, "news2_high": 8})
    assert alerts_over(policy, state, patient, range(0, 30), resp_rate=22.0, spo2=93.0, heart_rate=95.0) == []
    alerts = alerts_over(policy, state, patient, range(30, 40), resp_rate=22.0, spo2=93.0, heart_rate=115.0)
    assert [(a.priority, a.payload["news2"]["total"]) for a in alerts] == [("medium", 6)]
    assert alerts[0].payload["thresholds"]["news2_medium"] == 6


@pytest.mark.parametrize("record, reason", [
    ({"set_at_ms": 1, "spo2_scale": 2}, "actor"),
    ({"actor": physician("dr"), "spo2_scale": 2}, "set_at_ms"),
    ({"actor": physician("dr"), "set_at_ms": 1, "spo2_scale": 3}, "spo2_scale must be 1 or 2"),
    ({"actor": physician("dr"), "set_at_ms": 1, "news2_medium": 7, "news2_high": 6}, "must be below news2_high"),
    ({"actor": physician("dr"), "set_at_ms": 1, "accepted_ranges": {"heart_rate": [130, 40]}}, "low must be below"),
    ({"actor": physician("dr"), "set_at_ms": 1, "accepted_ranges": {"pulse": [40, 130]}}, "unknown numeric"),
    ({"actor": physician("dr"), "set_at_ms": 1, "device_type": "phone"}, "device_type"),
    ({"actor": physician("dr"), "set_at_ms": 1}, "nothing to change"),
])
def test_invalid_settings_are_refused_with_the_reason_and_audited(record: dict, reason: str) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    with pytest.raises(SettingsError, match=reason):
        policy.configure(state, record)
    assert state.settings == PatientSettings()
    assert state.audit[-1]["outcome"].startswith("rejected")


def test_null_returns_a_setting_to_the_ward_default() -> None:
    set_ = apply_settings(PatientSettings(), {"actor": physician("a"), "set_at_ms": 1, "spo2_scale": 2,
                                              "accepted_ranges": {"heart_rate": [40, 135]}})
    reset = apply_settings(set_, {"actor": physician("b"), "set_at_ms": 2, "spo2_scale": None,
                                  "accepted_ranges": {"heart_rate": None}})
    assert (reset.spo2_scale, reset.accepted_ranges, reset.set_by) == (None, {}, "b")
    assert PatientSettings.from_dict(set_.to_dict()) == set_


@pytest.mark.security
@pytest.mark.parametrize("change, reason", [
    # The forged record of issue 23: NEWS2 19/20 would never alert.
    ({"news2_medium": 19, "news2_high": 20}, "news2_medium must be a whole NEWS2 total from 3 to 7"),
    ({"news2_high": 10}, "news2_high must be a whole NEWS2 total from 5 to 9"),
    ({"news2_medium": 2}, "from 3 to 7"),
    ({"news2_medium": 7, "news2_high": 7}, "must be below news2_high"),
    # SpO2 accepted 0-350 % would silence every SpO2 alert.
    ({"accepted_ranges": {"spo2": [0, 350]}}, "spo2 must lie within 80-100"),
    ({"accepted_ranges": {"heart_rate": [20, 150]}}, "heart_rate must lie within 30-150"),
    ({"accepted_ranges": {"temperature": [float("-inf"), 38]}}, "temperature must lie within"),
])
def test_settings_outside_clinical_bounds_are_refused(change: dict, reason: str) -> None:
    with pytest.raises(SettingsError, match=reason):
        apply_settings(PatientSettings(), {"actor": physician("dr"), "set_at_ms": 1, **change})


@pytest.mark.security
def test_accepted_range_maxima_lie_within_what_a_monitor_measures_plausibly() -> None:
    from vitalstream.ingest.normalise import PLAUSIBILITY

    for parameter, (low, high) in MAX_ACCEPTED_RANGES.items():
        plausible = PLAUSIBILITY[parameter]
        assert plausible.plausible_low <= low < high <= plausible.plausible_high, parameter


@pytest.mark.security
@pytest.mark.parametrize("change", [
    {"news2_medium": 6}, {"news2_high": 8}, {"spo2_scale": 2},
    {"accepted_ranges": {"heart_rate": [40, 135]}}, {"device_type": "wearable"},
])
def test_a_nurse_cannot_loosen_alerting_and_a_physician_can(change: dict) -> None:
    for role in ("bedside_nurse", "charge_nurse", "rapid_response"):
        with pytest.raises(SettingsError, match="needs the physician role"):
            apply_settings(PatientSettings(), {"actor": physician("n", role), "set_at_ms": 1, **change})
    assert apply_settings(PatientSettings(), {"actor": physician("dr"), "set_at_ms": 1, **change}).set_by == "dr"


@pytest.mark.security
def test_a_nurse_may_tighten_or_return_to_the_default_and_an_admin_may_do_neither() -> None:
    nurse = physician("anna", "bedside_nurse")
    tighter = apply_settings(PatientSettings(), {"actor": nurse, "set_at_ms": 1, "news2_medium": 4,
                                                 "news2_high": 6})
    assert (tighter.news2_medium, tighter.news2_high, tighter.set_by_actor) == (4, 6, nurse)
    assert loosens({"news2_medium": None, "accepted_ranges": {"spo2": None}, "spo2_scale": 1}) == []
    with pytest.raises(SettingsError, match="may not change"):
        apply_settings(PatientSettings(), {"actor": physician("it", "admin"), "set_at_ms": 1, "news2_high": 6})


def test_settings_saved_before_actors_are_still_read() -> None:
    # A changelog row written by an older worker: a typed name, no actor.
    old = {"spo2_scale": 2, "news2_medium": None, "news2_high": None, "accepted_ranges": {},
           "device_type": "bedside", "set_by": "dr-ahmed", "set_at_ms": 5, "reason": ""}
    restored = PatientSettings.from_dict(old)
    assert (restored.spo2_scale, restored.set_by, restored.set_by_actor) == (2, "dr-ahmed", None)
