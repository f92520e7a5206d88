"""Technical alerts (no data, sensor off, artefact runs) kept apart from clinical ones."""

from __future__ import annotations

from alerts_synthetic import MIN_MS, T0_MS, Patient

from vitalstream.alerts import AlertPolicy


def event(kind: str, minute: float, parameter: str = "spo2") -> dict:
    return {"kind": kind, "patient_id": "p1", "ward": "4B", "bed": "12", "parameter": parameter,
            "device_time_ms": T0_MS + int(minute * MIN_MS), "source": "oxi-7", "detail": ""}


def stream(policy: AlertPolicy, state, patient: Patient) -> None:
    """A bedside monitor reporting every minute up to 10:15, the last report."""
    for minute in range(-3, 1):
        policy.assess(state, patient.at(minute))


def test_a_silent_bedside_monitor_is_one_technical_alert_after_5_min(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    stream(policy, state, patient)
    assert policy.check_stale(state, T0_MS + 5 * MIN_MS) == []  # exactly 5 min: not yet
    alerts = policy.check_stale(state, T0_MS + 6 * MIN_MS)
    assert [(a.kind, a.status, a.priority) for a in alerts] == [("technical", "raised", "low")]
    assert alerts[0].payload["parameters"] == ["heart_rate", "resp_rate", "spo2"]
    assert alerts[0].summary == ("Bed 12, Ward 4B: technical, no HR, RR, SpO2 data since 10:15 "
                                 "(6 min). Last NEWS2 0 at 10:15 is not current.")
    assert policy.check_stale(state, T0_MS + 9 * MIN_MS) == []  # no repeat
    resolved = policy.assess(state, patient.at(10))
    assert [(a.status, a.alert_id) for a in resolved] == [("resolved", alerts[0].alert_id)]


def test_wearable_patients_get_a_longer_stale_timeout(patient: Patient) -> None:
    # A patch reports every few minutes: 15 min of silence before a no-data alert.
    policy = AlertPolicy()
    state = policy.new_state()
    policy.configure(state, {"actor": {"user_id": "u-1", "role": "physician", "name": "Dr One"}, "set_at_ms": T0_MS,
                             "device_type": "wearable"})
    stream(policy, state, patient)
    assert policy.check_stale(state, T0_MS + 10 * MIN_MS) == []
    assert len(policy.check_stale(state, T0_MS + 16 * MIN_MS)) == 1


def test_no_data_while_a_medium_alert_is_open_is_medium(patient: Patient) -> None:
    # The score behind an open alert can no longer be followed: more than a nuisance.
    policy = AlertPolicy()
    state = policy.new_state()
    for minute in range(0, 10):
        policy.assess(state, patient.at(minute, resp_rate=22.0, spo2=93.0, heart_rate=95.0))
    alerts = policy.check_stale(state, T0_MS + 20 * MIN_MS)
    assert [(a.kind, a.priority) for a in alerts] == [("technical", "medium")]
    assert state.clinical is not None and state.clinical.status == "raised"


def test_spot_checks_never_raise_no_data(patient: Patient) -> None:
    # A full set of observations every 4 h: the gap between rounds is not a device gone quiet.
    policy = AlertPolicy()
    state = policy.new_state()
    for minute in (0, 240, 480):
        policy.assess(state, patient.at(minute, measured=tuple(patient.values)))
    assert policy.check_stale(state, T0_MS + 700 * MIN_MS) == []


def test_sensor_off_alerts_at_once_and_resolves_on_the_next_reading(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    policy.assess(state, patient.at(0))
    off = policy.technical(state, event("sensor_off", 1))
    assert [(a.kind, a.status) for a in off] == [("technical", "raised")]
    assert off[0].summary.startswith("Bed 12, Ward 4B: technical, SpO2 sensor off at 10:16 (source oxi-7).")
    assert policy.technical(state, event("sensor_off", 1.5)) == []  # same condition: no repeat
    assert policy.assess(state, patient.at(1.2, measured=("heart_rate",))) == []  # SpO2 not back
    back = policy.assess(state, patient.at(3))
    assert [(a.status, a.alert_id) for a in back] == [("resolved", off[0].alert_id)]
    assert state.clinical is None  # nothing clinical came of it


def test_artefact_run_alerts_after_three_in_five_minutes(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    policy.assess(state, patient.at(0))
    # Two artefacts 10 min apart are noise; three within 5 min are a run.
    assert policy.technical(state, event("artefact", 1)) == []
    assert policy.technical(state, event("artefact", 11)) == []
    assert policy.technical(state, event("artefact", 12)) == []
    run = policy.technical(state, event("artefact", 13))
    assert [(a.kind, a.payload["count"]) for a in run] == [("technical", 3)]
    assert "3 SpO2 artefact readings 10:26-10:28" in run[0].summary


def test_acknowledged_technical_alert_comes_back_when_the_ack_expires(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    stream(policy, state, patient)
    raised = policy.check_stale(state, T0_MS + 6 * MIN_MS)[0]
    ack = policy.acknowledge(state, raised.alert_id, "rn-5", T0_MS + 7 * MIN_MS)
    assert [a.status for a in ack] == ["acknowledged"]
    assert policy.check_stale(state, T0_MS + 60 * MIN_MS) == []  # low: silent for 4 h
    again = policy.check_stale(state, T0_MS + (7 + 240) * MIN_MS)
    assert [(a.status, a.replaces) for a in again] == [("reraised", raised.alert_id)]
    assert "still no HR, RR, SpO2 data since 10:15" in again[0].summary


def test_readings_without_value_alert_only_as_a_run(patient: Patient) -> None:
    # One empty OBX is noise; three in 5 min mean the device cannot measure.
    policy = AlertPolicy()
    state = policy.new_state()
    stream(policy, state, patient)
    assert policy.technical(state, event("no_value", 1, "resp_rate")) == []
    assert policy.technical(state, event("no_value", 2, "resp_rate")) == []
    run = policy.technical(state, event("no_value", 3, "resp_rate"))
    assert [a.kind for a in run] == ["technical"]
    assert "3 RR readings without a value 10:16-10:18" in run[0].summary
    # A good RR reading after the run ends it.
    assert [a.status for a in policy.assess(state, patient.at(4))] == ["resolved"]
