"""The demo's summary counts what each message on the alerts topic is, and says for each
bed the simulator made deteriorate whether and when it was alerted."""

from __future__ import annotations

from vitalstream.commands.demo import TimeOrder, summarise_alerts, summary_lines

H = 3_600_000


def alert(alert_id: str, status: str, patient: str, bed: str, t_h: float, kind: str = "clinical",
          priority: str = "medium") -> dict:
    return {"alert_id": alert_id, "event_id": f"{alert_id}/{status}", "status": status, "kind": kind,
            "priority": priority, "patient_id": patient, "ward": "4B", "bed": bed,
            "device_time_ms": int(t_h * H), "summary": f"Bed {bed}"}


EVENTS = [  # bed 3 deteriorates from 2 h (event at 8 h), bed 7 from 5 h (event at 9 h)
    {"patient_id": "p3", "ward": "4B", "bed": "3", "archetype": "sepsis", "onset_ms": 2 * H, "event_ms": 8 * H},
    {"patient_id": "p7", "ward": "4B", "bed": "7", "archetype": "opioid_resp_depression",
     "onset_ms": 5 * H, "event_ms": 9 * H},
]
ALERTS = [
    alert("a1", "raised", "p7", "7", 1.0, priority="low"),   # before bed 7's onset: a false alert
    alert("a1", "resolved", "p7", "7", 1.5, priority="low"),
    alert("a2", "raised", "p3", "3", 4.0),
    alert("a2", "raised", "p3", "3", 4.0),                     # redelivered: counted once
    alert("a3", "escalated", "p3", "3", 5.0, priority="high"),
    alert("a3", "acknowledged", "p3", "3", 5.1, priority="high"),
    alert("t1", "raised", "p9", "9", 3.0, kind="technical", priority="low"),
    alert("t1", "resolved", "p9", "9", 3.2, kind="technical", priority="low"),
    alert("a4", "raised", "p5", "5", 6.0, priority="low"),     # a stable patient
    alert("a5", "raised", "p22", "22", 6.5, priority="low"),   # another: listed after bed 5
]


def test_new_clinical_alerts_are_counted_apart_from_everything_else():
    summary = summarise_alerts(ALERTS, EVENTS)
    assert summary["messages"] == 10  # every message received, as the old "alerts: N" said
    assert summary["clinical_new"] == 4 and summary["clinical_new_by_priority"] == {"high": 0, "medium": 1, "low": 3}
    assert summary["clinical_escalated"] == 1 and summary["clinical_acknowledged"] == 1
    assert summary["clinical_resolved"] == 1
    assert summary["technical_new"] == 1 and summary["technical_resolved"] == 1


def test_each_deteriorating_bed_says_whether_it_was_alerted_after_its_onset():
    summary = summarise_alerts(ALERTS, EVENTS)
    beds = {bed["bed"]: bed for bed in summary["deteriorating_beds"]}
    assert beds["3"]["alerted_ms"] == 4 * H and beds["3"]["priority"] == "medium"
    # Bed 7's only alert came before its deterioration began: it was not alerted for it.
    assert beds["7"]["alerted_ms"] is None
    assert summary["deteriorating_alerted"] == 1
    assert summary["stable_alerted_beds"] == ["5", "22"]
    lines = summary_lines({**summary, "patients": 10, "hours": 12, "samples": 100, "feed_s": 1.0,
                           "send_to_alert_p50_ms": 1.0, "send_to_alert_p99_ms": 2.0,
                           "ingest_to_scored_p50_ms": 1.0, "ingest_to_scored_p99_ms": 2.0})
    text = "\n".join(lines)
    assert "deteriorating beds, alerted 1/2:" in text
    assert "Bed 3 (sepsis): onset 02:00, event 08:00; alerted 04:00 (medium), 4.0 h before the event" in text
    assert "Bed 7 (opioid resp depression): onset 05:00, event 09:00; NOT alerted" in text
    assert "clinical alerts: 4 new (high 0, medium 1, low 3), 1 escalated or raised again, 1 resolved" in text
    assert "stable patients with a clinical alert: 2 (beds 5, 22)" in text


def test_alert_lines_come_out_in_device_time_order():
    order = TimeOrder(speed=1200, hold_s=2.0)  # holds 40 simulated minutes
    for t_h in (1.0, 0.5, 2.0):  # partitions deliver a little out of order
        order.add(alert(f"a{t_h}", "raised", "p", "1", t_h))
    assert order.ready(feed_ms=1.0 * H) == []  # nothing is 40 min behind the feed yet
    assert [a["device_time_ms"] for a in order.ready(feed_ms=1.8 * H)] == [0.5 * H, 1.0 * H]
    order.add(alert("late", "raised", "p", "1", 1.5))
    # A worker 30 s behind (10 simulated hours at 1200x): nothing is printed yet...
    assert order.ready(feed_ms=9 * H, delay_s=30.0) == []
    # ...and at the end everything, sorted.
    assert [a["device_time_ms"] for a in order.ready(feed_ms=None)] == [1.5 * H, 2.0 * H]
