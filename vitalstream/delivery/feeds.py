"""Fan-out from the ward store to station connections, and the bytes each transport sends.

The hub applies each Kafka message to the store once and hands the resulting event to the
subscribers of that ward only: a subscriber is registered under its own wards, so another
ward's event never reaches its queue.

Each event is framed once per (wards followed, transport), not once per connection: the
event id is the cursor of the wards a connection follows (the Kafka position of the last
message applied for each (topic, partition) those wards use), which is the same for every
connection of those wards at the moment the event is handed out, so the SSE or WebSocket
frame, id included, is one ``bytes`` object shared by all of them. With 500 wall screens
on one ward an alert is encoded once and put on 500 queues; the fan-out never awaits a
connection (``put_nowait`` only), and each connection's writer sends what is waiting on its
queue in one write.

A connection that cannot keep up is dropped rather than allowed to hold memory without
bound or to slow the others: its queue (``Backlog``) holds at most ``QUEUE_LIMIT`` events and
``QUEUE_BYTES`` of frames. When it overflows, the backlog is let go at once (one C-level
clear, not an await or a loop over the entries in the fan-out), the connection is told with a
last message where its socket still takes one (WebSocket close 4408, SSE ``event: overflow``),
and a connection whose writer is stuck on a client that never reads is aborted after
``OVERFLOW_GRACE_S``. The client reconnects with its last event id and resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
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

QUEUE_LIMIT = 2_000
QUEUE_BYTES = 8 << 20
OVERFLOW_GRACE_S = 2.0

# What a connection's queue holds: (event id, the transport's frame, Kafka time of the
# event in seconds); the frame is shared by every connection of the same wards and transport.
Delivery = tuple[str, bytes, float]

# An SSE comment that keeps proxies from closing an idle stream (see ``StationHub.keep_alive``).
KEEP_ALIVE: Delivery = ("", b": keep-alive\n\n", 0.0)


def sse_frame(event_id: str, body: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\ndata: " + body + b"\n\n"


def ws_frame(event_id: str, body: bytes) -> bytes:
    """The text of a WebSocket message (UTF-8). The body is a JSON object: the id is
    spliced in as its first member instead of re-encoding it."""
    return b'{"id":"' + event_id.encode() + b'",' + body[1:]


FRAMERS: dict[str, Callable[[str, bytes], bytes]] = {"sse": sse_frame, "ws": ws_frame}


class Backlog:
    """A connection's queue of deliveries, bounded by count and by frame bytes: the subset
    of ``asyncio.Queue`` the writers use, with a clear that costs no loop in Python."""

    __slots__ = ("_items", "_waiter", "limit", "max_bytes", "bytes")

    def __init__(self, limit: int = QUEUE_LIMIT, max_bytes: int = QUEUE_BYTES) -> None:
        self._items: deque[Delivery | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Delivery | None) -> None:
        if item is not None:
            if len(self._items) >= self.limit or self.bytes + len(item[1]) > self.max_bytes:
                raise asyncio.QueueFull
            self.bytes += len(item[1])
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Delivery | None:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if item is not None:
            self.bytes -= len(item[1])
        return item

    async def get(self) -> Delivery | None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


class Subscriber:
    """One open connection of a station, following some of its wards. ``on_overflow`` (set
    by the connection's handler) is called once when it falls too far behind."""

    __slots__ = ("station", "wards", "transport", "key", "cursor", "queue", "overflowed", "last_s",
                 "on_overflow")

    def __init__(self, station: Station, wards: frozenset[str], transport: str) -> None:
        if transport not in FRAMERS:
            raise ValueError(f"unknown transport {transport!r}")
        self.station = station
        self.wards = wards
        self.transport = transport
        self.key = (wards, transport)  # connections with the same key share frames
        self.cursor: Cursor = {}  # only for the first messages (the events missed)
        self.queue = Backlog()
        self.overflowed = False
        self.last_s = time.monotonic()  # when something was last put on the queue
        self.on_overflow: Callable[[], None] | None = None

    def deliver(self, delivery: Delivery, now_s: float) -> None:
        if self.overflowed:
            return
        self.last_s = now_s
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.overflowed = True
            metrics.SLOW_CLOSED.inc()
            self.queue.clear()  # the station resumes from its last event id
            self.queue.put_nowait(None)
            if self.on_overflow is not None:
                self.on_overflow()

    def deliver_end(self) -> None:
        """Ask the connection to close (the service stops); it resumes elsewhere."""
        self.queue.put_nowait(None)

    def advance(self, event: Event) -> str:
        """Move the cursor past ``event`` (the first messages of a resumed connection); the
        new cursor is the event's id for this connection."""
        self.cursor[event.position.key] = event.position.offset
        return encode_cursor(self.cursor)


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
            self._fan_out(event, kafka_time_s)
        return event

    def _fan_out(self, event: Event, kafka_time_s: float) -> None:
        listeners = self.listeners.get(event.ward)
        if not listeners:
            return
        now_s = time.monotonic()
        shared: dict[tuple[frozenset[str], str], Delivery] = {}
        ids: dict[frozenset[str], str] = {}
        for subscriber in listeners:
            delivery = shared.get(subscriber.key)
            if delivery is None:
                # Every connection of these wards has been given every event up to now
                # (registration and its first messages are one step of the event loop),
                # so the wards' cursor is its id for this event.
                event_id = ids.get(subscriber.wards)
                if event_id is None:
                    event_id = ids[subscriber.wards] = encode_cursor(self.store.cursor(subscriber.wards))
                frame = FRAMERS[subscriber.transport](event_id, event.body)
                delivery = shared[subscriber.key] = (event_id, frame, kafka_time_s)
            subscriber.deliver(delivery, now_s)

    def keep_alive(self, subscribers: Iterable[Subscriber], idle_s: float) -> int:
        """Put an SSE keep-alive on the queue of each SSE connection given nothing for
        ``idle_s``; how many. (One timer for all connections, not one per connection and
        event: the writers just wait on their queues.)"""
        now_s = time.monotonic()
        sent = 0
        for subscriber in subscribers:
            if (subscriber.transport == "sse" and now_s - subscriber.last_s >= idle_s
                    and subscriber.queue.empty()):
                subscriber.deliver(KEEP_ALIVE, now_s)
                sent += 1
        return sent

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
