"""Fan-out without a broker: the hub hands each event to the connections of its ward only,
and a reconnect with the last event id resumes exactly after it."""

from __future__ import annotations

import orjson
from ward_feed import deteriorating

from vitalstream.delivery.config import Station
from vitalstream.delivery.feeds import KEEP_ALIVE, QUEUE_LIMIT, StationHub, sse_frame, ws_frame
from vitalstream.delivery.store import ALERTS, BED_STATES

WARD_4B = Station("4B desk", frozenset({"4B"}))
WARD_4C = Station("4C desk", frozenset({"4C"}))


def publish(hub: StationHub, alerts: list[dict], states: list[dict], offsets: dict) -> None:
    for state in states:
        hub.apply(BED_STATES, 0, offsets.setdefault(BED_STATES, 0), orjson.dumps(state), 0.0)
        offsets[BED_STATES] += 1
    for alert in alerts:
        hub.apply(ALERTS, 0, offsets.setdefault(ALERTS, 0), orjson.dumps(alert), 0.0)
        offsets[ALERTS] += 1


def drain(subscriber) -> list:
    out = []
    while not subscriber.queue.empty():
        out.append(subscriber.queue.get_nowait())
    return out


async def test_connection_gets_only_its_wards_events() -> None:
    hub = StationHub()
    desk_4b, first = hub.subscribe(WARD_4B, WARD_4B.wards, None, "sse")
    desk_4c, _ = hub.subscribe(WARD_4C, WARD_4C.wards, None, "sse")
    assert orjson.loads(first[0][1])["type"] == "snapshot"
    offsets: dict = {}
    publish(hub, *deteriorating("p-4b", "4B", "12"), offsets)
    publish(hub, *deteriorating("p-4c", "4C", "3"), offsets)
    got_4b = [frame for _, frame, _ in drain(desk_4b)]
    got_4c = [frame for _, frame, _ in drain(desk_4c)]
    assert got_4b and got_4c
    assert all(b"p-4c" not in body and b'"ward":"4C"' not in body for body in got_4b)
    assert all(b"p-4b" not in body for body in got_4c)


async def test_station_cannot_subscribe_to_a_ward_it_was_not_given() -> None:
    hub = StationHub()
    subscriber, first = hub.subscribe(WARD_4B, {"4B", "4C"}, None, "ws")
    assert subscriber.wards == frozenset({"4B"})
    assert set(orjson.loads(first[0][1])["wards"]) == {"4B"}


async def test_reconnect_with_last_event_id_resumes_without_loss_or_duplicates() -> None:
    hub = StationHub()
    alerts, states = deteriorating("p-4b", "4B", "12")
    offsets: dict = {}
    board, _ = hub.subscribe(WARD_4B, WARD_4B.wards, None, "sse")
    publish(hub, alerts[:1], states[:30], offsets)
    seen = [event_id for event_id, _, _ in drain(board)]
    hub.unsubscribe(board)  # the wall screen's network drops ...
    publish(hub, alerts[1:], states[30:], offsets)  # ... while the patient gets worse
    again, missed = hub.subscribe(WARD_4B, WARD_4B.wards, seen[-1], "sse")
    bodies = [orjson.loads(body) for _, body in missed]
    assert [b["type"] for b in bodies[-1:]] == ["alert"] and bodies[-1]["alert"]["status"] == "escalated"
    assert len(bodies) == len(alerts[1:]) + len(states[30:])
    assert all(b["type"] != "snapshot" for b in bodies)
    assert missed[-1][0] == encode_ids(hub)


def encode_ids(hub: StationHub) -> str:
    from vitalstream.delivery.store import encode_cursor

    return encode_cursor(hub.store.cursor({"4B"}))


async def test_slow_connection_is_ended_not_allowed_to_grow_without_bound() -> None:
    hub = StationHub()
    board, _ = hub.subscribe(WARD_4B, WARD_4B.wards, None, "sse")
    alert = deteriorating("p-4b", "4B", "12")[0][0]
    for offset in range(QUEUE_LIMIT + 5):
        hub.apply(ALERTS, 0, offset, orjson.dumps({**alert, "event_id": f"e{offset}"}), 0.0)
    assert board.overflowed and board.queue.qsize() == 1 and board.queue.get_nowait() is None


def test_transport_frames_carry_the_cursor_as_event_id() -> None:
    body = orjson.dumps({"type": "alert", "ward": "4B"})
    assert sse_frame("a0.5", body) == b'id: a0.5\ndata: {"type":"alert","ward":"4B"}\n\n'
    assert orjson.loads(ws_frame("a0.5", body)) == {"id": "a0.5", "type": "alert", "ward": "4B"}
    assert ws_frame("a0.5", body).decode() == '{"id":"a0.5","type":"alert","ward":"4B"}'


async def test_one_frame_per_event_shared_by_every_connection_of_the_ward() -> None:
    hub = StationHub()
    screens = [hub.subscribe(WARD_4B, WARD_4B.wards, None, "sse")[0] for _ in range(50)]
    sockets = [hub.subscribe(WARD_4B, WARD_4B.wards, None, "ws")[0] for _ in range(3)]
    publish(hub, *deteriorating("p-4b", "4B", "12"), {})
    sse = [drain(s) for s in screens]
    ws = [drain(s) for s in sockets]
    assert len({len(got) for got in sse + ws}) == 1 and sse[0]
    for k, (event_id, frame, _) in enumerate(sse[0]):
        assert all(got[k][1] is frame for got in sse)  # the same bytes object, encoded once
        assert all(got[k][1] is ws[0][k][1] for got in ws)
        assert frame.startswith(b"id: " + event_id.encode() + b"\ndata: {")
        assert orjson.loads(ws[0][k][1])["id"] == event_id
    # The event id is the ward's cursor at the event: resuming from it gives exactly what follows.
    assert sse[0][-1][0] == encode_ids(hub)
    middle = len(sse[0]) // 2
    _, rest = hub.subscribe(WARD_4B, WARD_4B.wards, sse[0][middle][0], "sse")
    assert [body for _, body in rest] == [f[f.index(b"data: ") + 6:-2] for _, f, _ in sse[0][middle + 1:]]


async def test_station_of_two_wards_gets_ids_covering_both() -> None:
    both = Station("Charge nurse", frozenset({"4B", "4C"}))
    hub = StationHub()
    charge, _ = hub.subscribe(both, both.wards, None, "sse")
    desk_4b, _ = hub.subscribe(WARD_4B, WARD_4B.wards, None, "sse")
    offsets: dict = {}
    publish(hub, *deteriorating("p-4b", "4B", "12"), offsets)
    publish(hub, *deteriorating("p-4c", "4C", "3"), offsets)
    got = drain(charge)
    assert len(got) > len(drain(desk_4b)) > 0
    again, missed = hub.subscribe(both, both.wards, got[len(got) // 2][0], "sse")
    assert [body for _, body in missed] == [f[f.index(b"data: ") + 6:-2] for _, f, _ in got[len(got) // 2 + 1:]]


async def test_keep_alive_only_to_idle_sse_connections() -> None:
    hub = StationHub()
    board, _ = hub.subscribe(WARD_4B, WARD_4B.wards, None, "sse")
    socket, _ = hub.subscribe(WARD_4B, WARD_4B.wards, None, "ws")
    assert hub.keep_alive([board, socket], idle_s=60.0) == 0
    assert hub.keep_alive([board, socket], idle_s=0.0) == 1
    assert drain(board) == [KEEP_ALIVE] and drain(socket) == []


async def test_a_connection_over_its_byte_budget_is_dropped_and_told_once() -> None:
    from vitalstream.delivery.feeds import QUEUE_BYTES

    hub = StationHub()
    board, _ = hub.subscribe(WARD_4B, WARD_4B.wards, None, "ws")
    calls = []
    board.on_overflow = lambda: calls.append(1)
    alert = deteriorating("p-4b", "4B", "12")[0][0]
    big = {**alert, "padding": "x" * (QUEUE_BYTES // 100)}
    for offset in range(150):
        hub.apply(ALERTS, 0, offset, orjson.dumps({**big, "event_id": f"e{offset}"}), 0.0)
    assert board.overflowed and calls == [1], "told once, however many events follow"
    assert board.queue.qsize() == 1 and board.queue.bytes == 0 and board.queue.get_nowait() is None
