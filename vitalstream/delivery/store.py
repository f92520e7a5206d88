"""What a nursing station needs to see, per ward: open alerts, each bed's latest state,
and a short log of recent events for reconnecting stations. Pure: no Kafka, no asyncio.

Every event keeps its Kafka position. Alerts and bed states are keyed by ward, so all of a
ward's messages of one topic are in one partition, in order; a station's *cursor* is the
last offset it has seen of each (topic, partition) its wards use. A station that
reconnects with its cursor gets exactly the events after it: nothing lost, nothing twice.
The cursor is built from Kafka positions, so it stays valid when the service restarts and
rebuilds its state from the topics.

    store = WardStore()
    event = store.apply_alert(alert_dict, Position("a", 0, 17))
    store.snapshot({"4B"})          # open alerts and beds of ward 4B
    store.since({"4B"}, cursor)     # events after a cursor, or None: send a snapshot
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

import orjson

from vitalstream.oversight.desk import GOAL_STATUSES, attention_order
from vitalstream.oversight.desk import OPEN_STATUSES as OVERSIGHT_OPEN

ALERTS = "a"
BED_STATES = "s"
OPEN_STATUSES = frozenset({"raised", "escalated", "reraised", "acknowledged"}) | OVERSIGHT_OPEN

_CURSOR_PART = re.compile(r"([as])(\d{1,6})\.(\d{1,19})")


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a message was in Kafka: topic tag (``a`` alerts, ``s`` bed states), partition, offset."""

    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)


Cursor = dict[tuple[str, int], int]


def encode_cursor(cursor: Cursor) -> str:
    """``a1.145-s3.88``: short, URL- and header-safe, stable order.

    >>> encode_cursor({("s", 3): 88, ("a", 1): 145})
    'a1.145-s3.88'
    """
    return "-".join(f"{topic}{partition}.{offset}" for (topic, partition), offset in sorted(cursor.items()))


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor of ``encode_cursor``; None for anything else (then the station gets a
    fresh snapshot rather than a guess).

    >>> decode_cursor("a1.145-s3.88")
    {('a', 1): 145, ('s', 3): 88}
    >>> decode_cursor("a1.x") is None
    True
    """
    if text is None or len(text) > 4096:
        return None
    if text == "":
        return {}
    cursor: Cursor = {}
    for part in text.split("-"):
        match = _CURSOR_PART.fullmatch(part)
        key = (match[1], int(match[2])) if match else None
        if key is None or key in cursor:
            return None
        cursor[key] = int(match[3])  # type: ignore[index]
    return cursor


@dataclasses.dataclass(slots=True)
class Event:
    """One update for the stations of a ward; ``body`` is its JSON, encoded once for all."""

    seq: int
    ward: str
    position: Position
    body: bytes


@dataclasses.dataclass(slots=True)
class WardState:
    alerts: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    beds: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    log: deque[Event] = dataclasses.field(default_factory=deque)
    positions: Cursor = dataclasses.field(default_factory=dict)
    evicted: Cursor = dataclasses.field(default_factory=dict)
    seen: OrderedDict[str, None] = dataclasses.field(default_factory=OrderedDict)
    goals: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # goal id -> goal event


def alert_order(alert: dict[str, Any]) -> tuple[int, int, int]:
    """Attention first: waiting for an acknowledgement, then for an answer, then the rest
    (snoozed last); within each, highest priority, then the oldest."""
    return attention_order(alert)


def _merge_oversight(previous: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """An oversight event (called, answered, snoozed...) on an alert the board shows: the
    alert keeps its clinical text and payload, and gains who holds it and what was done."""
    return {**previous, "status": event.get("status"), "event_id": event.get("event_id"),
            "oversight": (event.get("payload") or {}).get("oversight"),
            "oversight_summary": event.get("summary"),
            "raised_summary": previous.get("raised_summary") or previous.get("summary")}


def _bed_order(bed: str) -> tuple[int, int, str]:
    return (0, int(bed), "") if bed.isdigit() else (1, 0, bed)


class WardStore:
    """Open alerts, bed states and a bounded event log per ward.

    ``log_per_ward`` bounds memory: a station away for longer than that many of its
    ward's events gets a snapshot instead of the missed events (it still loses nothing
    that matters: the snapshot holds every open alert and every bed). ``seen_per_ward``
    bounds the redelivery filter (event ids already applied).
    """

    def __init__(self, log_per_ward: int = 5000, seen_per_ward: int = 20000) -> None:
        self.wards: dict[str, WardState] = {}
        self.log_per_ward = log_per_ward
        self.seen_per_ward = seen_per_ward
        self.positions: Cursor = {}
        self._seq = 0

    def _ward(self, ward: str) -> WardState:
        state = self.wards.get(ward)
        if state is None:
            state = self.wards[ward] = WardState()
        return state

    def _advance(self, state: WardState, position: Position) -> None:
        key = position.key
        state.positions[key] = max(position.offset, state.positions.get(key, -1))
        self.positions[key] = max(position.offset, self.positions.get(key, -1))

    def _record(self, state: WardState, ward: str, position: Position, body: dict[str, Any]) -> Event:
        self._seq += 1
        event = Event(self._seq, ward, position, orjson.dumps(body))
        state.log.append(event)
        if len(state.log) > self.log_per_ward:
            dropped = state.log.popleft()
            state.evicted[dropped.position.key] = dropped.position.offset
        return event

    def apply_alert(self, alert: dict[str, Any], position: Position) -> Event | None:
        """Apply one message of the alerts topic; None when it changes nothing a station
        shows (a redelivered event id, or a message without a ward)."""
        ward = str(alert.get("ward") or "")
        if not ward:
            return None
        state = self._ward(ward)
        self._advance(state, position)
        event_id = str(alert.get("event_id") or f"{alert.get('alert_id')}/{alert.get('status')}")
        if event_id in state.seen:
            return None
        state.seen[event_id] = None
        if len(state.seen) > self.seen_per_ward:
            state.seen.popitem(last=False)
        alert_id = str(alert.get("alert_id"))
        if alert.get("kind") == "care_goal":
            if alert.get("status") == "goal_set":
                state.goals[alert_id] = alert
            elif alert.get("status") in GOAL_STATUSES:
                state.goals.pop(alert_id, None)
            return self._record(state, ward, position, {"type": "goal", "ward": ward, "goal": alert})
        replaced = alert.get("replaces")
        if replaced:
            state.alerts.pop(str(replaced), None)
        if alert.get("status") in OPEN_STATUSES:
            previous = state.alerts.get(alert_id)
            if alert.get("status") in OVERSIGHT_OPEN and previous is not None:
                alert = _merge_oversight(previous, alert)
            elif alert.get("status") in OVERSIGHT_OPEN and alert.get("status") != "transferred":
                return None  # about an alert this ward does not show (closed, or moved away)
            elif alert.get("status") in OVERSIGHT_OPEN:
                alert = {**alert, "oversight": (alert.get("payload") or {}).get("oversight")}
            elif previous is not None and alert.get("status") == "acknowledged":
                # The acknowledgement's own text says who and until when; the nurse still
                # needs the reasons it was raised for.
                alert = {**alert, "raised_summary": previous.get("raised_summary") or previous.get("summary")}
            if "oversight" not in alert and (alert.get("payload") or {}).get("oversight"):
                alert = {**alert, "oversight": alert["payload"]["oversight"]}
            state.alerts[alert_id] = alert
        else:
            state.alerts.pop(alert_id, None)
        return self._record(state, ward, position, {"type": "alert", "ward": ward, "alert": alert})

    def apply_bed_state(self, bed_state: dict[str, Any], position: Position) -> Event | None:
        """Apply one message of the bed-state topic; None for an older state of the same
        patient (a redelivery) or a message without a ward and bed."""
        ward, bed = str(bed_state.get("ward") or ""), str(bed_state.get("bed") or "")
        if not ward or not bed:
            return None
        state = self._ward(ward)
        self._advance(state, position)
        current = state.beds.get(bed)
        if bed_state.get("vacated"):  # the census moved or discharged the patient
            if current is None or current.get("patient_id") != bed_state.get("patient_id"):
                return None
            del state.beds[bed]
            return self._record(state, ward, position, {"type": "bed_vacated", "ward": ward, "bed": bed})
        if (current is not None and current.get("patient_id") == bed_state.get("patient_id")
                and int(current.get("time_ms", 0)) > int(bed_state.get("time_ms", 0))):
            return None
        state.beds[bed] = bed_state
        return self._record(state, ward, position, {"type": "bed", "ward": ward, "state": bed_state})

    def open_alert(self, wards: Iterable[str], alert_id: str) -> dict[str, Any] | None:
        """The open alert with this id on one of ``wards``; None for any other ward's."""
        for ward in wards:
            state = self.wards.get(ward)
            if state is not None and alert_id in state.alerts:
                return state.alerts[alert_id]
        return None

    def locate(self, wards: Iterable[str], patient_id: str) -> tuple[str, str] | None:
        """(ward, bed) of a patient shown on one of ``wards`` (a bed state or an open alert)."""
        for ward in sorted(wards):
            state = self.wards.get(ward)
            if state is None:
                continue
            for bed, bed_state in state.beds.items():
                if bed_state.get("patient_id") == patient_id:
                    return ward, bed
            for alert in state.alerts.values():
                if alert.get("patient_id") == patient_id:
                    return ward, str(alert.get("bed") or "")
        return None

    def cursor(self, wards: Iterable[str]) -> Cursor:
        cursor: Cursor = {}
        for ward in wards:
            state = self.wards.get(ward)
            if state is not None:
                for key, offset in state.positions.items():
                    cursor[key] = max(offset, cursor.get(key, -1))
        return cursor

    def snapshot(self, wards: Iterable[str]) -> dict[str, Any]:
        """Everything a station of ``wards`` shows, as one message."""
        out: dict[str, Any] = {}
        for ward in sorted(wards):
            state = self.wards.get(ward) or WardState()
            out[ward] = {
                "alerts": sorted(state.alerts.values(), key=alert_order),
                "beds": [state.beds[bed] for bed in sorted(state.beds, key=_bed_order)],
                "goals": sorted(state.goals.values(), key=lambda g: _bed_order(str(g.get("bed", "")))),
            }
        return {"type": "snapshot", "wards": out}

    def since(self, wards: Iterable[str], cursor: Cursor) -> list[Event] | None:
        """The events of ``wards`` after ``cursor`` in order, or None when they cannot all
        be given (older than the log keeps, or a cursor from another broker or topic
        layout): the station must then start again from a snapshot."""
        for key, offset in cursor.items():
            if offset > self.positions.get(key, -1):
                return None
        events: list[Event] = []
        for ward in wards:
            state = self.wards.get(ward)
            if state is None:
                continue
            for key, offset in state.evicted.items():
                if cursor.get(key, -1) < offset:
                    return None
            events.extend(e for e in state.log if e.position.offset > cursor.get(e.position.key, -1))
        events.sort(key=lambda e: e.seq)
        return events
