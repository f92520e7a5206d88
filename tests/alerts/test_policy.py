"""The alert policy against synthetic patients: persistence, no repeats, escalation,
acknowledgement, hysteresis, identity and the state's round trip."""

from __future__ import annotations

import orjson
import pytest
from alerts_synthetic import MIN_MS, T0_MS, Patient

from vitalstream.alerts import AlertPolicy, PatientAlertState, PolicyConfig

# NEWS2 5: RR 22 (2) + SpO2 93 (2) + HR 95 (1): medium, urgent response.
MEDIUM = {"resp_rate": 22.0, "spo2": 93.0, "heart_rate": 95.0}
# NEWS2 7: RR 26 (3) + SpO2 93 (2) + HR 115 (2): high, emergency response.
HIGH = {"resp_rate": 26.0, "spo2": 93.0, "heart_rate": 115.0}
# NEWS2 9: RR 26 (3) + SpO2 91 (3) + HR 135 (3).
HIGHER = {"resp_rate": 26.0, "spo2": 91.0, "heart_rate": 135.0}
# NEWS2 3: RR 21 (2) + HR 95 (1), no parameter scoring 3: clear of every alert rule.
RECOVERED = {"resp_rate": 21.0, "spo2": 97.0, "heart_rate": 95.0}
# NEWS2 4: RR 22 (2) + HR 115 (2): below medium but not clear (hysteresis).
BORDERLINE = {"resp_rate": 22.0, "spo2": 97.0, "heart_rate": 115.0}


def run(policy: AlertPolicy, state: PatientAlertState, patient: Patient,
        minutes: range | list[float], **values: object) -> list:
    alerts = []
    for minute in minutes:
        alerts.extend(policy.assess(state, patient.at(minute, **values)))
    return alerts


def test_one_odd_spo2_reading_does_not_alert(patient: Patient) -> None:
    # SpO2 85 on one report (a probe moved), normal on the next: no alert, counted suppressed.
    policy = AlertPolicy()
    state = policy.new_state()
    alerts = run(policy, state, patient, range(0, 5))
    alerts += policy.assess(state, patient.at(5, spo2=85.0))
    alerts += policy.assess(state, patient.at(5.5, measured=("heart_rate",)))
    alerts += run(policy, state, patient, range(6, 30), spo2=97.0)
    assert alerts == []
    assert policy.drain_events()[("suppressed", "clinical", "low")] == 1


def test_clearly_deteriorating_patient_alerts_within_two_minutes(patient: Patient) -> None:
    # NEWS2 7 on every one-minute report: high alert once re-measured past the 60 s delay.
    policy = AlertPolicy()
    state = policy.new_state()
    run(policy, state, patient, range(0, 10))
    alerts = run(policy, state, patient, range(10, 20), **HIGH)
    assert [(a.status, a.priority) for a in alerts] == [("raised", "high")]
    assert alerts[0].device_time_ms - (T0_MS + 10 * MIN_MS) <= 2 * MIN_MS


def test_persistence_delay_is_per_priority(patient: Patient) -> None:
    # A single parameter scoring 3 (low) waits 300 s; medium waits 120 s.
    policy = AlertPolicy()
    state = policy.new_state()
    low = run(policy, state, patient, range(0, 10), resp_rate=26.0)
    assert [(a.priority, a.device_time_ms - T0_MS) for a in low] == [("low", 5 * MIN_MS)]
    other = Patient("p2")
    state2 = policy.new_state()
    medium = run(policy, state2, other, range(0, 10), **MEDIUM)
    assert [(a.priority, a.device_time_ms - T0_MS) for a in medium] == [("medium", 2 * MIN_MS)]


def test_same_condition_alerts_once_however_many_samples(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    alerts = run(policy, state, patient, range(0, 240), **MEDIUM)
    assert [a.status for a in alerts] == ["raised"]


def test_flapping_score_alerts_once_where_naive_rule_alerts_every_time(patient: Patient) -> None:
    # NEWS2 alternating 4 and 5 every 10 min for 8 h: naive NEWS2>=5 alerts 24 times.
    policy = AlertPolicy()
    state = policy.new_state()
    alerts, naive, previous = [], 0, 0
    for minute in range(0, 480):
        values = MEDIUM if (minute // 10) % 2 else BORDERLINE
        assessment = patient.at(minute, **values)
        naive += assessment.news2.total >= 5 and previous < 5
        previous = assessment.news2.total
        alerts += policy.assess(state, assessment)
    assert naive == 24
    assert [a.status for a in alerts] == ["raised"]


def test_escalation_is_a_new_alert_that_replaces_the_old(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)
    escalated = run(policy, state, patient, range(10, 20), **HIGH)
    assert [a.status for a in escalated] == ["escalated"]
    assert escalated[0].priority == "high"
    assert escalated[0].alert_id != raised[0].alert_id
    assert escalated[0].replaces == raised[0].alert_id
    assert escalated[0].payload["replaces_reason"] == "escalation"


def test_acknowledged_alert_is_silent_while_the_patient_is_no_worse(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    ack = policy.acknowledge(state, raised.alert_id, "nurse-17", T0_MS + 10 * MIN_MS)
    assert [(a.alert_id, a.status) for a in ack] == [(raised.alert_id, "acknowledged")]
    assert ack[0].payload["ack"]["by"] == "nurse-17"
    assert "nurse-17" in ack[0].summary
    # 50 min of the same condition, dipping and returning: silence (medium ack lasts 60 min).
    quiet = []
    for minute in range(10, 60):
        quiet += policy.assess(state, patient.at(minute, **(BORDERLINE if minute % 7 == 0 else MEDIUM)))
    assert quiet == []
    assert state.audit[-1]["by"] == "nurse-17"
    assert state.audit[-1]["at_ms"] == T0_MS + 10 * MIN_MS


def test_worse_while_acknowledged_alerts_again(patient: Patient) -> None:
    # NEWS2 5 acknowledged, then 7: higher priority, a new alert replacing the acknowledged one.
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    policy.acknowledge(state, raised.alert_id, "nurse-17", T0_MS + 10 * MIN_MS)
    worse = run(policy, state, patient, range(10, 20), **HIGH)
    assert [(a.status, a.priority, a.replaces) for a in worse] == [("escalated", "high", raised.alert_id)]


def test_two_points_worse_at_the_same_priority_alerts_while_acknowledged(patient: Patient) -> None:
    # High alert acknowledged at NEWS2 7, then NEWS2 9: same priority, but worse by 2 points.
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **HIGH)[0]
    policy.acknowledge(state, raised.alert_id, "nurse-3", T0_MS + 10 * MIN_MS)
    worse = run(policy, state, patient, range(10, 20), **HIGHER)
    assert [(a.status, a.priority) for a in worse] == [("escalated", "high")]
    assert worse[0].payload["replaces_reason"] == "worse"


def test_unacknowledged_alert_does_not_repeat_for_points_within_its_priority(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    alerts = run(policy, state, patient, range(0, 10), **HIGH)
    alerts += run(policy, state, patient, range(10, 30), **HIGHER)
    assert [a.status for a in alerts] == ["raised"]


def test_expired_acknowledgement_realerts_if_the_condition_holds(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    policy.acknowledge(state, raised.alert_id, "nurse-17", T0_MS + 10 * MIN_MS)
    later = run(policy, state, patient, range(10, 80), **MEDIUM)
    assert [(a.status, a.device_time_ms) for a in later] == [("reraised", T0_MS + 70 * MIN_MS)]
    assert later[0].replaces == raised.alert_id
    assert later[0].payload["ack"]["by"] == "nurse-17"


def test_hysteresis_resolves_only_after_30_min_clear(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    # NEWS2 4 for an hour: below the alert threshold but not clear: still open.
    assert run(policy, state, patient, range(10, 70), **BORDERLINE) == []
    # NEWS2 3 for 29 min, one NEWS2 4, then 3 again: the clear clock restarts.
    assert run(policy, state, patient, range(70, 99), **RECOVERED) == []
    assert policy.assess(state, patient.at(99, **BORDERLINE)) == []
    resolved = run(policy, state, patient, range(100, 140), **RECOVERED)
    assert [(a.status, a.alert_id, a.device_time_ms) for a in resolved] == [
        ("resolved", raised.alert_id, T0_MS + 130 * MIN_MS)]
    assert state.clinical is None


def test_a_new_episode_after_resolution_is_a_new_alert(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    first = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    run(policy, state, patient, range(10, 50), **RECOVERED)
    second = run(policy, state, patient, range(50, 60), **MEDIUM)
    assert [a.status for a in second] == ["raised"]
    assert second[0].alert_id != first.alert_id
    assert second[0].replaces is None


def test_risk_above_threshold_raises_with_normal_news2(patient: Patient) -> None:
    policy = AlertPolicy(PolicyConfig(risk_thresholds={"medium": 0.5}))
    state = policy.new_state()
    alerts = []
    for minute in range(0, 10):
        alerts += policy.assess(state, patient.at(minute, risk=0.62,
                                                   factors=[("RR trend", 0.2)]))
    assert [(a.status, a.priority) for a in alerts] == [("raised", "medium")]
    assert alerts[0].payload["reasons"] == [
        {"rule": "risk", "priority": "medium", "risk": 0.62, "threshold": 0.5}]
    assert "Risk 0.62" in alerts[0].summary


def test_same_samples_give_the_same_alert_ids(patient: Patient) -> None:
    # Redelivery or a restarted worker re-processing the same data: same ids, same events.
    def replay() -> list[tuple[str, str]]:
        policy = AlertPolicy()
        state = policy.new_state()
        source = Patient()
        alerts = run(policy, state, source, range(0, 10), **MEDIUM)
        alerts += run(policy, state, source, range(10, 20), **HIGH)
        return [(a.alert_id, a.to_dict()["event_id"]) for a in alerts]

    assert replay() == replay()
    assert len({alert_id for alert_id, _ in replay()}) == 2


def test_state_survives_a_restart_mid_episode(patient: Patient) -> None:
    # The state goes through JSON (the changelog table) after every assessment.
    uninterrupted, restarted = AlertPolicy(), AlertPolicy()
    state_a = uninterrupted.new_state()
    state_b = restarted.new_state()
    other = Patient()
    out_a, out_b = [], []
    plan = [MEDIUM] * 10 + [HIGH] * 10 + [RECOVERED] * 40
    for minute, values in enumerate(plan):
        out_a += uninterrupted.assess(state_a, patient.at(minute, **values))
        state_b = PatientAlertState.from_dict(orjson.loads(orjson.dumps(state_b.to_dict())))
        out_b += restarted.assess(state_b, other.at(minute, **values))
        if minute == 25:
            ack_id = state_a.clinical.alert_id
            out_a += uninterrupted.acknowledge(state_a, ack_id, "n1", T0_MS + minute * MIN_MS)
            out_b += restarted.acknowledge(state_b, ack_id, "n1", T0_MS + minute * MIN_MS)
    assert [a.to_dict() for a in out_a] == [a.to_dict() for a in out_b]
    assert [a.status for a in out_a] == ["raised", "escalated", "acknowledged", "resolved"]


def test_acknowledging_an_unknown_or_replaced_alert_is_audited_and_changes_nothing(
        patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    run(policy, state, patient, range(10, 20), **HIGH)
    assert policy.acknowledge(state, raised.alert_id, "nurse-17", T0_MS + 20 * MIN_MS) == []
    assert state.clinical.status == "escalated"
    assert state.audit[-1]["outcome"].startswith("not open")


def test_redelivered_acknowledgement_publishes_nothing_new(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    raised = run(policy, state, patient, range(0, 10), **MEDIUM)[0]
    at_ms = T0_MS + 10 * MIN_MS
    assert len(policy.acknowledge(state, raised.alert_id, "nurse-17", at_ms)) == 1
    assert policy.acknowledge(state, raised.alert_id, "nurse-17", at_ms) == []


def test_events_count_raised_escalated_acknowledged_resolved_by_priority(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    run(policy, state, patient, range(0, 10), **MEDIUM)
    run(policy, state, patient, range(10, 20), **HIGH)
    policy.acknowledge(state, state.clinical.alert_id, "n1", T0_MS + 20 * MIN_MS)
    run(policy, state, patient, range(20, 60), **RECOVERED)
    events = policy.drain_events()
    assert events[("raised", "clinical", "medium")] == 1
    assert events[("escalated", "clinical", "high")] == 1
    assert events[("acknowledged", "clinical", "high")] == 1
    assert events[("resolved", "clinical", "high")] == 1
    assert policy.drain_events() == {}


def test_state_stays_small_over_two_days(patient: Patient) -> None:
    # Stored per patient in a changelog table: bounded whatever happens.
    policy = AlertPolicy()
    state = policy.new_state()
    plans = [MEDIUM, HIGH, RECOVERED, BORDERLINE, HIGHER]
    for minute in range(0, 2 * 24 * 60, 2):
        values = plans[(minute // 37) % len(plans)]
        policy.assess(state, patient.at(minute, risk=(minute % 100) / 100, **values))
        if minute % 90 == 0 and state.clinical is not None:
            policy.acknowledge(state, state.clinical.alert_id, "n1", T0_MS + minute * MIN_MS)
        if minute % 300 == 0:
            policy.check_stale(state, T0_MS + (minute + 20) * MIN_MS)
    assert len(orjson.dumps(state.to_dict())) < 8000


@pytest.mark.parametrize("minute", [0, 30])
def test_alert_message_is_json_with_the_contract_fields(patient: Patient, minute: int) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    alert = run(policy, state, patient, range(minute, minute + 10), **HIGH)[0]
    message = orjson.loads(orjson.dumps(alert.to_dict()))
    assert {"alert_id", "patient_id", "ward", "bed", "kind", "priority", "status", "summary",
            "device_time_ms", "payload", "replaces", "event_id"} <= set(message)
    assert message["kind"] == "clinical" and message["ward"] == "4B" and message["bed"] == "12"


def test_spot_check_round_raises_at_once_device_reading_waits() -> None:
    # A nurse's 4-hourly round scoring NEWS2 5 is a deliberate measurement: no persistence
    # delay. The same values arriving from a monitor every minute wait 120 s and a re-reading.
    policy = AlertPolicy()
    rounds, monitored = Patient("p-round"), Patient("p-monitor")
    state_r, state_m = policy.new_state(), policy.new_state()
    policy.assess(state_r, rounds.at(0, measured=tuple(rounds.values)))
    raised = policy.assess(state_r, rounds.at(240, measured=tuple(rounds.values), **MEDIUM))
    assert [(a.status, a.device_time_ms) for a in raised] == [("raised", T0_MS + 240 * MIN_MS)]
    run(policy, state_m, monitored, range(0, 240))
    assert policy.assess(state_m, monitored.at(240, **MEDIUM)) == []
    later = run(policy, state_m, monitored, range(241, 250), **MEDIUM)
    assert [(a.status, a.device_time_ms) for a in later] == [("raised", T0_MS + 242 * MIN_MS)]


def test_risk_alone_raises_nothing_unless_thresholds_are_configured(patient: Patient) -> None:
    policy = AlertPolicy()
    state = policy.new_state()
    assert run(policy, state, patient, range(0, 30), risk=0.97) == []
