"""Fan-out from the ward store to station connections, and the bytes each transport sends.

The hub applies each Kafka message to the store once and hands the resulting event to the
subscribers of that ward only: a subscriber is registered under its own wards, so another
ward's event never reaches its queue. Each subscriber keeps its own cursor (the Kafka
position of the last event it was given), which becomes the event id it sends.

A connection that cannot keep up (its queue full) is closed rather than allowed to hold
memory without bound; the browser reconnects with its last event id and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import orjson

from vitalstream.delivery import metrics
from vitalstream.delivery.config import Station
from vitalstream.delivery.store import (
    ALERTS,
    BED_STATES,
    Cursor,
    Event,
    Position,
    WardStore,
    decode_cursor,
    encode_cursor,
)

QUEUE_LIMIT = 10_000


class Subscriber:
    """One open connection of a station, following some of its wards."""

    def __init__(self, station: Station, wards: frozenset[str], transport: str) -> None:
        self.station = station
        self.wards = wards
        self.transport = transport
        self.cursor: Cursor = {}
        self.queue: asyncio.Queue[tuple[Event, float] | None] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def deliver(self, event: Event, kafka_time_s: float) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((event, kafka_time_s))
        except asyncio.QueueFull:
            self.overflowed = True
            metrics.SLOW_CLOSED.inc()
            while not self.queue.empty():  # drop the backlog: the station resumes from its cursor
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    def deliver_end(self) -> None:
        """Ask the connection to close (the service stops); it resumes elsewhere."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def advance(self, event: Event) -> str:
        """Move the cursor past ``event``; the new cursor is the event's id for this connection."""
        self.cursor[event.position.key] = event.position.offset
        return encode_cursor(self.cursor)


def sse_frame(event_id: str, body: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\ndata: " + body + b"\n\n"


def ws_frame(event_id: str, body: bytes) -> str:
    # The body is a JSON object: splice the id in as its first member instead of re-encoding.
    return '{"id":"' + event_id + '",' + body[1:].decode()


class StationHub:
    """The store plus who listens to which ward.

        hub = StationHub()
        hub.apply("a", partition, offset, value, kafka_time_s)  # from the consumer
        subscriber, first = hub.subscribe(station, wards, last_event_id, "sse")
    """

    def __init__(self, store: WardStore | None = None) -> None:
        self.store = store or WardStore()
        self.listeners: dict[str, set[Subscriber]] = {}

    def apply(self, topic: str, partition: int, offset: int, value: bytes | None,
              kafka_time_s: float) -> Event | None:
        """One Kafka message of the alerts (``a``) or bed-state (``s``) topic."""
        kind = "alert" if topic == ALERTS else "bed"
        try:
            record = orjson.loads(value or b"")
            if not isinstance(record, dict):
                raise TypeError("not an object")
        except (orjson.JSONDecodeError, TypeError):
            metrics.EVENTS.labels(kind, "malformed").inc()
            return None
        position = Position(topic, partition, offset)
        if topic == ALERTS:
            event = self.store.apply_alert(record, position)
        elif topic == BED_STATES:
            event = self.store.apply_bed_state(record, position)
        else:
            raise ValueError(f"unknown topic tag {topic!r}")
        metrics.EVENTS.labels(kind, "applied" if event else "unchanged").inc()
        if event is not None:
            for subscriber in self.listeners.get(event.ward, ()):
                subscriber.deliver(event, kafka_time_s)
        return event

    def subscribe(self, station: Station, wards: Iterable[str], last_event_id: str | None,
                  transport: str) -> tuple[Subscriber, list[tuple[str, bytes]]]:
        """Register a connection and return what it must send first, as (id, body) pairs:
        the events after ``last_event_id`` when they can all be given, else a snapshot of
        the wards. Registration and the first messages are one step of the event loop,
        so no event falls between them."""
        allowed = frozenset(wards) & station.wards
        subscriber = Subscriber(station, allowed, transport)
        first: list[tuple[str, bytes]] = []
        cursor = decode_cursor(last_event_id) if last_event_id else None
        missed = self.store.since(allowed, cursor) if cursor is not None else None
        if missed is None:
            subscriber.cursor = self.store.cursor(allowed)
            snapshot: dict[str, Any] = self.store.snapshot(allowed)
            snapshot["station"] = station.name
            first.append((encode_cursor(subscriber.cursor), orjson.dumps(snapshot)))
        else:
            subscriber.cursor = dict(cursor or {})
            first.extend((subscriber.advance(event), event.body) for event in missed)
        for ward in allowed:
            self.listeners.setdefault(ward, set()).add(subscriber)
        metrics.CONNECTIONS.labels(transport).inc()
        return subscriber, first

    def unsubscribe(self, subscriber: Subscriber) -> None:
        for ward in subscriber.wards:
            listeners = self.listeners.get(ward)
            if listeners is not None:
                listeners.discard(subscriber)
        metrics.CONNECTIONS.labels(subscriber.transport).dec()

    def connections(self) -> int:
        return len({id(s) for listeners in self.listeners.values() for s in listeners})


def observe_fanout(kafka_time_s: float) -> None:
    if kafka_time_s > 0:
        metrics.FANOUT_LATENCY.observe(max(0.0, time.time() - kafka_time_s))
