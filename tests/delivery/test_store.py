"""The ward store: what a station sees on connect, and exact resume after a reconnect."""

from __future__ import annotations

import pytest
from ward_feed import deteriorating

from vitalstream.delivery.store import (
    ALERTS,
    BED_STATES,
    Position,
    WardStore,
    decode_cursor,
    encode_cursor,
)


def fill(store: WardStore, alerts: list[dict], states: list[dict], partition: int = 0) -> list:
    """Apply messages as the consumer would: bed states interleaved with alerts, each topic
    with its own increasing offsets. Returns the events the store emitted."""
    events = []
    offsets = {ALERTS: 0, BED_STATES: 0}
    for index, state in enumerate(states):
        events.append(store.apply_bed_state(state, Position(BED_STATES, partition, offsets[BED_STATES])))
        offsets[BED_STATES] += 1
        if index < len(alerts):
            events.append(store.apply_alert(alerts[index], Position(ALERTS, partition, offsets[ALERTS])))
            offsets[ALERTS] += 1
    return [e for e in events if e is not None]


def test_escalation_replaces_the_medium_alert_so_one_worry_shows_once() -> None:
    alerts, states = deteriorating("p-det", "4B", "12")
    assert [a["status"] for a in alerts] == ["raised", "escalated"]
    store = WardStore()
    fill(store, alerts, states)
    shown = store.snapshot({"4B"})["wards"]["4B"]
    assert [a["alert_id"] for a in shown["alerts"]] == [alerts[1]["alert_id"]]
    assert shown["alerts"][0]["priority"] == "high"
    assert [b["bed"] for b in shown["beds"]] == ["12"]
    assert shown["beds"][0]["news2"]["total"] == states[-1]["news2"]["total"]


def test_acknowledged_alert_stays_open_and_resolved_alert_leaves() -> None:
    alerts, states = deteriorating("p-det", "4B", "12", ack_by="nurse-7")
    store = WardStore()
    fill(store, alerts, states)
    open_alert = store.snapshot({"4B"})["wards"]["4B"]["alerts"][0]
    assert open_alert["status"] == "acknowledged", "an acknowledged alert is still the patient's worry"
    assert open_alert["raised_summary"] == alerts[-2]["summary"], "the reasons stay visible after the ack"
    resolved = {**open_alert, "status": "resolved", "event_id": f"{open_alert['alert_id']}/resolved"}
    assert store.apply_alert(resolved, Position(ALERTS, 0, 99)) is not None
    assert store.snapshot({"4B"})["wards"]["4B"]["alerts"] == []


def test_redelivered_alert_changes_nothing() -> None:
    alerts, _ = deteriorating("p-det", "4B", "12")
    store = WardStore()
    assert store.apply_alert(alerts[0], Position(ALERTS, 0, 0)) is not None
    # A restarted worker publishes the same event again, at a later offset.
    assert store.apply_alert(alerts[0], Position(ALERTS, 0, 7)) is None
    assert len(store.wards["4B"].log) == 1


def test_older_bed_state_of_same_patient_is_ignored_but_new_patient_takes_the_bed() -> None:
    _, states = deteriorating("p-det", "4B", "12")
    store = WardStore()
    assert store.apply_bed_state(states[-1], Position(BED_STATES, 0, 0)) is not None
    assert store.apply_bed_state(states[0], Position(BED_STATES, 0, 1)) is None
    admitted = {**states[0], "patient_id": "p-new"}
    assert store.apply_bed_state(admitted, Position(BED_STATES, 0, 2)) is not None
    assert store.snapshot({"4B"})["wards"]["4B"]["beds"][0]["patient_id"] == "p-new"


def test_a_ward_never_sees_another_wards_alerts_or_beds() -> None:
    store = WardStore()
    fill(store, *deteriorating("p-4b", "4B", "12"), partition=0)
    fill(store, *deteriorating("p-4c", "4C", "3"), partition=0)  # same partitions as 4B
    text = repr(store.snapshot({"4B"}))
    assert "p-4b" in text and "p-4c" not in text
    missed = store.since({"4B"}, {})
    assert missed and all(b"p-4c" not in e.body for e in missed)
    assert store.open_alert({"4B"}, store.snapshot({"4C"})["wards"]["4C"]["alerts"][0]["alert_id"]) is None


def test_resume_from_any_cursor_gives_exactly_the_missed_events() -> None:
    store = WardStore()
    events = fill(store, *deteriorating("p-4b", "4B", "12"), partition=1)
    fill(store, *deteriorating("p-4c", "4C", "3"), partition=1)
    ward_events = [e for e in events if e.ward == "4B"]
    for seen in range(len(ward_events) + 1):
        cursor: dict = {}
        for event in ward_events[:seen]:
            cursor[event.position.key] = event.position.offset
        resumed = store.since({"4B"}, decode_cursor(encode_cursor(cursor)))
        assert [e.seq for e in resumed] == [e.seq for e in ward_events[seen:]], f"after {seen} events"


def test_cursor_older_than_the_log_or_from_elsewhere_asks_for_a_snapshot() -> None:
    store = WardStore(log_per_ward=5)
    events = fill(store, *deteriorating("p-4b", "4B", "12"))
    assert len(events) > 5
    assert store.since({"4B"}, {}) is None, "events were dropped: a snapshot is needed"
    latest = store.cursor({"4B"})
    assert store.since({"4B"}, latest) == []
    future = {key: offset + 1000 for key, offset in latest.items()}
    assert store.since({"4B"}, future) is None, "a cursor from another broker must not skip events"


@pytest.mark.parametrize("text", ["a1", "x1.2", "a1.2-", "a1.2;s1.3", "a-1.2", "a1.2-a1.3",
                                  "-".join(f"a{p}.1" for p in range(1000))])
def test_malformed_cursor_is_refused(text: str) -> None:
    assert decode_cursor(text) is None
