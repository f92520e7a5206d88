"""The oversight desk as a specification: who is called, when, and what an answer is."""

from __future__ import annotations

import orjson
import pytest

from vitalstream.alerts import Alert
from vitalstream.oversight import OversightConfig, OversightConfigError, OversightDesk, Refused
from vitalstream.oversight.desk import attention_order

pytestmark = pytest.mark.oversight

CHAIN = {"*": {"steps": [{"role": "bedside_nurse"},
                         {"role": "charge_nurse", "after_s": {"high": 60, "medium": 300, "low": 900}},
                         {"role": "rapid_response", "after_s": {"high": 120, "medium": 600}}],
               "answer_within_s": {"high": 600, "medium": 1200, "low": 3600}}}
NURSE = {"user_id": "u-ann", "role": "bedside_nurse", "name": "Ann"}
CHARGE = {"user_id": "u-cat", "role": "charge_nurse", "name": "Cat"}
DOCTOR = {"user_id": "u-doc", "role": "physician", "name": "Dr Lee"}
ADMIN = {"user_id": "u-adm", "role": "admin", "name": "Admin"}
T0 = 1_773_569_700_000
S = 1000


def desk(**chains: object) -> OversightDesk:
    return OversightDesk(OversightConfig.from_mapping(chains or CHAIN))


def raised(priority: str = "high", alert_id: str = "al-1", status: str = "raised",
           replaces: str | None = None, ward: str = "4B") -> Alert:
    return Alert(alert_id, "p1", ward, "12", "clinical", priority, status,
                 "Bed 12, Ward 4B: NEWS2 8 (high).", T0, {}, replaces=replaces)


def acked(alert_id: str = "al-1", priority: str = "high") -> Alert:
    return Alert(alert_id, "p1", "4B", "12", "clinical", priority, "acknowledged", "ack", T0,
                 {"ack": {"by": "Ann"}})


def statuses(events: list[Alert]) -> list[tuple[str, str]]:
    return [(e.status, e.payload["oversight"]["holder"]) for e in events]


def test_unacknowledged_high_alert_goes_to_charge_nurse_then_rapid_response_at_configured_times() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    assert d.due(T0 + 59 * S) == [], "the bedside nurse has a full minute"
    assert statuses(d.due(T0 + 60 * S)) == [("called", "charge_nurse")]
    assert d.due(T0 + 60 * S) == [], "one call per step"
    assert statuses(d.due(T0 + 180 * S)) == [("called", "rapid_response")]
    assert d.due(T0 + 3600 * S) == [], "nobody after the last step"
    history = d.patients["p1"].alerts["al-1"].history
    assert [(h["event"], h.get("role"), h.get("reason")) for h in history] == [
        ("raised", "bedside_nurse", None), ("called", "charge_nurse", "no_acknowledgement"),
        ("called", "rapid_response", "no_acknowledgement")]
    counts, _ = d.drain()
    assert counts[("escalation", "4B", "charge_nurse", "no_acknowledgement")] == 1


def test_low_alert_never_calls_rapid_response_when_the_chain_has_no_time_for_it() -> None:
    d = desk()
    d.on_alerts([raised("low")], T0)
    assert statuses(d.due(T0 + 900 * S)) == [("called", "charge_nurse")]
    assert d.due(T0 + 100_000 * S) == []


def test_each_escalation_event_has_its_own_event_id() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    first, second = d.due(T0 + 60 * S) + d.due(T0 + 180 * S)
    assert first.event_id != second.event_id and first.alert_id == second.alert_id


def test_acknowledged_alert_unanswered_past_its_time_is_escalated() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    d.on_alerts([acked()], T0 + 30 * S, actor=NURSE)
    assert d.due(T0 + 120 * S) == [], "acknowledged: no call for want of acknowledgement"
    events = d.due(T0 + 630 * S)
    assert statuses(events) == [("called", "charge_nurse")]
    assert events[0].payload["oversight"]["history"][-1]["reason"] == "unanswered"
    _, timings = d.drain()
    assert timings == [("ack", "4B", "high", 30.0)]


def test_charge_nurse_answers_physician_informed_and_the_timers_stop() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    d.due(T0 + 60 * S)
    d.on_alerts([acked()], T0 + 70 * S, actor=CHARGE)
    [event] = d.control("p1", {"type": "answer", "alert_id": "al-1", "reason": "physician_informed",
                               "at_ms": T0 + 80 * S}, CHARGE, T0 + 80 * S)
    assert event.status == "answered"
    answer = event.payload["oversight"]["answer"]
    assert (answer["reason"], answer["acted"], answer["user_id"]) == ("physician_informed", True, "u-cat")
    assert d.due(T0 + 100_000 * S) == []
    assert "p1" not in d.next_ms
    counts, timings = d.drain()
    assert counts[("answer", "4B", "high", "physician_informed")] == 1
    assert ("answer", "4B", "high", 80.0) in timings


@pytest.mark.parametrize(("record", "actor", "reason"), [
    ({"type": "answer", "alert_id": "al-1", "reason": "because"}, NURSE, "unknown_reason"),
    ({"type": "answer", "alert_id": "al-1", "reason": "other"}, NURSE, "other_needs_text"),
    ({"type": "answer", "alert_id": "al-1", "reason": "physician_informed"}, ADMIN, "role"),
    ({"type": "answer", "alert_id": "al-1", "reason": "physician_informed"}, None, "no_actor"),
    ({"type": "answer", "alert_id": "al-9", "reason": "physician_informed"}, NURSE, "not_open"),
    ({"type": "answer", "alert_id": "al-1", "reason": "physician_informed", "at_ms": T0 - 3600 * S},
     NURSE, "stale_or_future"),
    ({"type": "snooze", "alert_id": "al-1", "duration_s": 3600, "reason": "wash"}, NURSE, "snooze_too_long"),
    ({"type": "snooze", "alert_id": "al-1", "duration_s": 60}, NURSE, "snooze_needs_reason"),
    ({"type": "goal", "goal": "comfort_care", "reason": "family"}, NURSE, "role"),
    ({"type": "goal", "goal": "everything", "reason": "x"}, DOCTOR, "unknown_goal"),
    ({"type": "launch"}, NURSE, "unknown_type"),
])
def test_bad_control_is_refused_with_its_reason_and_changes_nothing(record: dict, actor: dict | None,
                                                                     reason: str) -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    d.on_alerts([acked()], T0, actor=NURSE)
    before = orjson.dumps(d.export("p1"))
    with pytest.raises(Refused, match=reason):
        d.control("p1", {"at_ms": T0 + S, **record}, actor, T0 + S)
    assert orjson.dumps(d.export("p1")) == before
    assert d.drain()[0][("refused", reason)] == 1


def test_answer_before_acknowledgement_and_a_second_answer_are_refused() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    answer = {"type": "answer", "alert_id": "al-1", "reason": "expected_or_known", "at_ms": T0}
    with pytest.raises(Refused, match="not_acknowledged"):
        d.control("p1", answer, NURSE, T0)
    d.on_alerts([acked()], T0, actor=NURSE)
    d.control("p1", answer, NURSE, T0)
    with pytest.raises(Refused, match="already_answered"):
        d.control("p1", answer, NURSE, T0)


def test_snooze_holds_escalation_and_ends_by_itself() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    [snoozed] = d.control("p1", {"type": "snooze", "alert_id": "al-1", "duration_s": 300,
                                 "reason": "patient in the shower", "at_ms": T0}, NURSE, T0)
    assert snoozed.status == "snoozed" and snoozed.payload["oversight"]["waiting"] == "snooze"
    assert d.due(T0 + 299 * S) == [], "no call while snoozed"
    [ended] = d.due(T0 + 300 * S)
    assert ended.status == "snooze_ended"
    assert d.due(T0 + 359 * S) == [], "the wait starts again when the snooze ends"
    assert statuses(d.due(T0 + 360 * S)) == [("called", "charge_nurse")]


def test_declined_alert_goes_to_the_next_responder_at_once() -> None:
    d = desk()
    d.on_alerts([raised("medium")], T0)
    [called] = d.control("p1", {"type": "disposition", "alert_id": "al-1", "disposition": "declined",
                                "at_ms": T0}, NURSE, T0)
    assert statuses([called]) == [("called", "charge_nurse")]
    assert called.payload["oversight"]["history"][-1]["reason"] == "declined"


def test_seen_is_recorded_without_an_event() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    assert d.control("p1", {"type": "disposition", "alert_id": "al-1", "disposition": "seen",
                            "at_ms": T0}, NURSE, T0) == []
    assert d.patients["p1"].alerts["al-1"].history[-1]["event"] == "seen"


def test_do_not_escalate_goal_stops_before_rapid_response_and_expires_for_review() -> None:
    d = desk()
    [goal] = d.control("p1", {"type": "goal", "goal": "do_not_escalate", "duration_s": 3600,
                              "reason": "agreed with family", "at_ms": T0}, DOCTOR, T0)
    assert (goal.kind, goal.status) == ("care_goal", "goal_set")
    d.on_alerts([raised()], T0)
    assert statuses(d.due(T0 + 60 * S)) == [("called", "charge_nurse")]
    assert d.due(T0 + 600 * S) == [], "do not escalate: the rapid-response team is not called"
    ended, called = d.due(T0 + 3600 * S)
    assert (ended.status, ended.payload["goal"]["ended"]) == ("goal_ended", "review_due")
    assert statuses([called]) == [("called", "rapid_response")], "the goal lapsed: escalation resumes"


def test_comfort_care_keeps_clinical_alerts_with_the_bedside_nurse_and_needs_no_answer() -> None:
    d = desk()
    d.control("p1", {"type": "goal", "goal": "comfort_care", "reason": "end of life care",
                     "at_ms": T0}, DOCTOR, T0)
    d.on_alerts([raised()], T0)
    assert d.due(T0 + 10_000 * S) == []
    d.on_alerts([acked()], T0 + S, actor=NURSE)
    assert d.patients["p1"].alerts["al-1"].waiting == "none"


def test_higher_priority_replacement_keeps_the_step_and_restarts_the_clock() -> None:
    d = desk()
    d.on_alerts([raised("medium")], T0)
    d.due(T0 + 300 * S)
    d.on_alerts([raised("high", "al-2", "escalated", replaces="al-1")], T0 + 400 * S)
    tracked = d.patients["p1"].alerts
    assert list(tracked) == ["al-2"] and tracked["al-2"].step == 1
    assert statuses(d.due(T0 + 520 * S)) == [("called", "rapid_response")]


def test_state_round_trips_so_a_restart_keeps_timers_snoozes_and_goals() -> None:
    d = desk()
    d.control("p1", {"type": "goal", "goal": "do_not_escalate", "reason": "r", "at_ms": T0}, DOCTOR, T0)
    d.on_alerts([raised()], T0)
    d.control("p1", {"type": "snooze", "alert_id": "al-1", "duration_s": 120, "reason": "procedure",
                     "at_ms": T0}, NURSE, T0)
    again = desk()
    again.restore(orjson.loads(orjson.dumps(d.export("p1"))))
    assert again.export("p1") == d.export("p1") and again.next_ms == d.next_ms
    assert [e.status for e in again.due(T0 + 120 * S)] == ["snooze_ended"]


def test_resolved_alert_is_forgotten() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    d.on_alerts([Alert("al-1", "p1", "4B", "12", "clinical", "high", "resolved", "", T0, {})], T0)
    assert "p1" not in d.patients and "p1" not in d.next_ms


def test_transfer_moves_open_alerts_and_discharge_closes_them() -> None:
    d = desk()
    d.on_alerts([raised()], T0)
    moved = d.transfer("p1", "5C", "3", T0 + S)
    assert [(e.status, e.ward) for e in moved] == [("transferred_out", "4B"), ("transferred", "5C")]
    assert moved[1].summary.startswith("Bed 3, Ward 5C:")
    [closed] = d.discharge("p1", T0 + 2 * S)
    assert (closed.status, closed.ward) == ("discharged", "5C")
    assert "p1" not in d.patients


def test_attention_order_puts_unacknowledged_high_first_then_unanswered() -> None:
    alerts = [
        {"priority": "high", "oversight": {"waiting": "none", "opened_ms": 1}},
        {"priority": "low", "oversight": {"waiting": "ack", "opened_ms": 1}},
        {"priority": "high", "oversight": {"waiting": "answer", "opened_ms": 1}},
        {"priority": "high", "oversight": {"waiting": "ack", "opened_ms": 5}},
        {"priority": "high", "oversight": {"waiting": "ack", "opened_ms": 2}},
    ]
    order = sorted(alerts, key=attention_order)
    assert [(a["priority"], a["oversight"]["waiting"], a["oversight"]["opened_ms"]) for a in order] == [
        ("high", "ack", 2), ("high", "ack", 5), ("low", "ack", 1), ("high", "answer", 1), ("high", "none", 1)]


@pytest.mark.parametrize(("document", "says"), [
    ({"4B": {"steps": [{"role": "bedside_nurse"}]}}, '"*" chain'),
    ({"*": {"steps": []}}, "at least one step"),
    ({"*": {"steps": [{"role": "bedside_nurse"}, {"role": "charge_nurse"}]}}, "after_s is needed"),
    ({"*": {"steps": [{"role": "bedside_nurse"}, {"role": "charge_nurse", "after_s": {"urgent": 5}}]}},
     "unknown priority"),
    ({"*": {"steps": [{"role": "bedside_nurse"}, {"role": "charge_nurse", "after_s": -5}]}}, "positive"),
])
def test_bad_chain_is_one_readable_line(document: dict, says: str) -> None:
    with pytest.raises(OversightConfigError, match=says) as error:
        OversightConfig.from_mapping(document)
    assert "\n" not in str(error.value)


def test_pcd04_export_carries_who_was_called_and_why() -> None:
    from vitalstream.delivery.export import alert_to_fhir_flag, alert_to_oru_r40

    d = desk()
    d.on_alerts([raised()], T0)
    [called] = d.due(T0 + 60 * S)
    message = alert_to_oru_r40(called.to_dict()).decode()
    obx = {line.split("|")[3].split("^")[0]: line.split("|")[5] for line in message.split("\r") if line.startswith("OBX")}
    assert obx["68481"] == "escalate", "PCD-04 event phase of a call to the next responder"
    assert (obx["ESCALATION_HOLDER"], obx["ESCALATION_STEP"], obx["ESCALATION_REASON"]) == (
        "charge_nurse", "1", "no_acknowledgement")
    flag = alert_to_fhir_flag(called.to_dict())
    assert {"url": "https://vitalstream.example.org/fhir/StructureDefinition/escalation-holder",
            "valueString": "charge_nurse"} in flag["extension"]
    [closed] = d.discharge("p1", T0 + 61 * S)
    assert alert_to_fhir_flag(closed.to_dict())["status"] == "inactive"


@pytest.mark.parametrize("command", ["worker", "station"])
def test_a_wrong_chain_stops_the_worker_and_station_with_one_line(command: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "VITALSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "VITALSTREAM_STATION_TOKENS": '{"a-long-enough-station-token": ["4B"]}',
           "VITALSTREAM_ESCALATION_CHAINS": '{"*": {"steps": [{"role": "bedside_nurse"}, {"role": "porter", "after_s": 5}]}}'}
    done = subprocess.run([sys.executable, "-m", "vitalstream", command], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown role 'porter'" in done.stderr


def test_discharge_ends_the_patients_goals_and_says_why() -> None:
    d = desk()
    d.control("p1", {"type": "goal", "goal": "comfort_care", "reason": "family wishes", "ward": "4B",
                     "bed": "12", "at_ms": T0}, DOCTOR, T0)
    d.on_alerts([raised()], T0)
    closed, ended = d.discharge("p1", T0 + S)
    assert (closed.status, ended.status, ended.bed) == ("discharged", "goal_ended", "12")
    assert "patient discharged" in ended.summary
