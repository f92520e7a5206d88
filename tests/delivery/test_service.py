"""The station service on the real broker: alerts and bed states written to their topics
reach only the stations of their ward, over SSE and WebSocket; a reconnect resumes exactly;
acknowledgements reach alerts.ack; the export publishes FHIR Flags and ORU^R40."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import hl7
import orjson
import pytest
from testkit import browser, keyring, make_users, sign_in
from ward_feed import deteriorating

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import consumer, ensure_topics, producer
from vitalstream.settings import Settings

pytestmark = pytest.mark.broker

TOKEN_4B = "token-for-ward-4B-wall-screen"
TOKEN_4C = "token-for-ward-4C-wall-screen"
TOKEN_BOTH = "token-for-the-charge-nurse-4B-4C"
T0_MS = int(time.time() * 1000) - 3_600_000


@pytest.fixture(scope="module")
def station(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationProcess]:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    log = tmp_path_factory.mktemp("station") / "station.log"
    tokens = {TOKEN_4B: {"station": "4B desk", "wards": ["4B"]}, TOKEN_4C: ["4C"],
              TOKEN_BOTH: {"station": "Charge nurse", "wards": ["4B", "4C"]}}
    users = log.parent / "users.json"
    make_users(users, ("anna", "Anna Smith", "bedside_nurse", ["4B"]),
               ("ben", "Ben Okafor", "charge_nurse", ["4B"]), ("carla", "Carla Diaz", "bedside_nurse", ["4C"]))
    with StationProcess(module_broker.bootstrap, tokens, log_path=log, export=True, users_file=users) as running:
        yield running
    assert TOKEN_4B not in log.read_text(errors="replace"), "tokens must never be logged"


async def publish(bootstrap: str, alerts: list[dict], states: list[dict]) -> None:
    settings = Settings(kafka_bootstrap=bootstrap)
    out = producer(settings, linger_ms=1)
    worker = keyring("worker")  # as the worker signs them
    await out.start()
    try:
        for topic, records in ((settings.topic_bed_state, states), (settings.topic_alerts, alerts)):
            for record in records:
                key, value = record["ward"].encode(), orjson.dumps(record)
                await out.send(topic, key=key, value=value, headers=worker.sign(topic, key, value))
        await out.flush()
    finally:
        await out.stop()


async def read_events(response: aiohttp.ClientResponse, until, timeout_s: float = 10.0) -> list[tuple[str, dict]]:
    """(id, message) pairs from an SSE response until ``until(messages)`` or the timeout."""
    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until([m for _, m in got]):
        try:
            frame = await asyncio.wait_for(response.content.readuntil(b"\n\n"), deadline - time.monotonic())
        except TimeoutError:
            break
        fields = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n")
                      if ": " in line and not line.startswith(":"))
        if "data" in fields:
            got.append((fields.get("id", ""), orjson.loads(fields["data"])))
    return got


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_ward_feed_shows_own_ward_only_and_resumes_exactly(station: StationProcess,
                                                                  module_broker: EmbeddedBroker) -> None:
    alerts_4b, states_4b = deteriorating("p-4b", "4B", "12", t0_ms=T0_MS)
    alerts_4c, states_4c = deteriorating("p-4c", "4C", "3", t0_ms=T0_MS)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{station.url}/api/stream", headers=auth(TOKEN_4B)) as desk_4b, \
                client.get(f"{station.url}/api/stream", headers=auth(TOKEN_4C)) as desk_4c:
            assert desk_4b.status == 200 and desk_4b.headers["Content-Type"] == "text/event-stream"
            await publish(module_broker.bootstrap, alerts_4b[:1] + alerts_4c, states_4b[:6] + states_4c)
            seen_4b = await read_events(desk_4b, lambda m: [x["type"] for x in m].count("alert") == 1
                                        and [x["type"] for x in m].count("bed") == 6)
            seen_4c = await read_events(desk_4c, lambda m: sum(x["type"] == "alert" for x in m) >= len(alerts_4c))
            raw_4b = orjson.dumps([m for _, m in seen_4b])
            assert seen_4b[0][1]["type"] == "snapshot" and seen_4b[0][1]["station"] == "4B desk"
            assert b"p-4b" in raw_4b and b"p-4c" not in raw_4b and b'"4C"' not in raw_4b
            assert b"p-4c" in orjson.dumps([m for _, m in seen_4c]) and b"p-4b" not in orjson.dumps(seen_4c)
            last_id = seen_4b[-1][0]
        # Disconnected while the patient deteriorates further: the escalation must not be lost.
        await publish(module_broker.bootstrap, alerts_4b[1:], states_4b[6:])
        await asyncio.sleep(0.5)
        async with client.get(f"{station.url}/api/stream",
                              headers={**auth(TOKEN_4B), "Last-Event-ID": last_id}) as again:
            # Read on past the last missed event: a duplicate would show up too.
            resumed = await read_events(again, lambda m: False, timeout_s=2.0)
        kinds = [m["type"] for _, m in resumed]
        assert "snapshot" not in kinds, "a resumable reconnect gets the missed events, not a snapshot"
        assert kinds.count("alert") == len(alerts_4b) - 1
        assert kinds.count("bed") == len(states_4b) - 6
        async with client.get(f"{station.url}/api/state", headers=auth(TOKEN_4B)) as state:
            snapshot = await state.json()
        assert [a["status"] for a in snapshot["wards"]["4B"]["alerts"]] == ["escalated"]


async def test_charge_nurse_sees_both_wards_and_asking_for_another_ward_is_forbidden(station: StationProcess) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{station.url}/api/state", headers=auth(TOKEN_BOTH)) as both:
            assert set((await both.json())["wards"]) == {"4B", "4C"}
        async with client.get(f"{station.url}/api/stream?ward=4B", headers=auth(TOKEN_4C)) as refused:
            assert refused.status == 403
        async with client.get(f"{station.url}/api/stream", headers=auth("not-a-token-of-any-station")) as nobody:
            assert nobody.status == 401
        async with client.get(f"{station.url}/api/stream") as anonymous:
            assert anonymous.status == 401


async def collect_acks(settings: Settings, count: int, timeout_s: float = 10.0) -> list[dict]:
    source = consumer(settings, settings.topic_acks)
    await source.start()
    got: list[dict] = []
    station_keys = keyring()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(got) < count:
            for records in (await source.getmany(timeout_ms=300)).values():
                for r in records:  # every acknowledgement is signed with the station's key
                    assert station_keys.verify(r.topic, r.key, r.value, r.headers, {"station"}) == "station"
                    got.append(orjson.loads(r.value))
    finally:
        await source.stop()
    return got


async def test_acknowledgement_by_a_signed_in_nurse_over_http_and_websocket_reaches_alerts_ack(
        station: StationProcess, module_broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    async with aiohttp.ClientSession() as board:
        async with board.get(f"{station.url}/api/state", headers=auth(TOKEN_4B)) as state:
            alert = (await state.json())["wards"]["4B"]["alerts"][0]
        async with board.post(f"{station.url}/api/ack", headers=auth(TOKEN_4B),
                              json={"alert_id": alert["alert_id"]}) as wall_board:
            assert wall_board.status == 403, "a wall-board token sees and never acknowledges"
    async with browser() as carla:
        assert await sign_in(carla, station.url, "carla") == 303
        async with carla.post(f"{station.url}/api/ack", json={"alert_id": alert["alert_id"]}) as other_ward:
            assert other_ward.status == 404, "a 4C nurse must not acknowledge a 4B alert"
    async with browser() as anna:
        assert await sign_in(anna, station.url, "anna") == 303
        async with anna.get(f"{station.url}/api/me") as me:
            assert (await me.json())["user"]["name"] == "Anna Smith"
        async with anna.post(f"{station.url}/api/ack", data=orjson.dumps({"alert_id": alert["alert_id"]})) as not_json:
            assert not_json.status == 415, "a form post (possible cross-site) is refused"
        async with anna.post(f"{station.url}/api/ack",
                             json={"alert_id": alert["alert_id"], "by": "Dr. House (ICU desk)"}) as accepted:
            assert accepted.status == 202, "a typed name is ignored: the actor is the signed-in user"
    async with browser() as ben:
        assert await sign_in(ben, station.url, "ben") == 303
        async with ben.ws_connect(f"{station.url}/api/ws") as ws:
            first = await ws.receive_json(timeout=5)
            assert first["type"] == "snapshot" and first["id"]
            await ws.send_json({"type": "ack", "alert_id": alert["alert_id"], "by": "someone else"})
            reply = await ws.receive_json(timeout=5)
            assert reply["type"] == "ack_sent"
            await ws.send_json({"type": "ack", "alert_id": "al-of-another-ward"})
            assert (await ws.receive_json(timeout=5))["type"] == "ack_refused"
    acks = await collect_acks(settings, 2)
    assert [(a["patient_id"], a["alert_id"]) for a in acks] == [("p-4b", alert["alert_id"])] * 2
    assert [a["by"] for a in acks] == ["Anna Smith", "Ben Okafor"]
    assert [(a["actor"]["role"], a["actor"]["name"]) for a in acks] == [
        ("bedside_nurse", "Anna Smith"), ("charge_nurse", "Ben Okafor")]
    assert all(a["actor"]["user_id"].startswith("u-") for a in acks)


async def test_websocket_with_a_wrong_token_is_closed_without_data(station: StationProcess) -> None:
    async with aiohttp.ClientSession() as client, client.ws_connect(f"{station.url}/api/ws") as ws:
        await ws.send_json({"type": "auth", "token": "not-a-token-of-any-station"})
        error = await ws.receive_json(timeout=5)
        closed = await ws.receive(timeout=5)
    assert error["type"] == "error" and closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4401


async def test_export_publishes_flags_and_oru_r40_for_each_alert(station: StationProcess,
                                                                 module_broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    source = consumer(settings, "alerts.fhir", "alerts.hl7")
    await source.start()
    got: dict[str, list] = {"alerts.fhir": [], "alerts.hl7": []}
    try:
        deadline = time.monotonic() + 30  # the export's consumer group joins first
        while time.monotonic() < deadline and min(len(v) for v in got.values()) < 4:
            for tp, records in (await source.getmany(timeout_ms=500)).items():
                got[tp.topic].extend(records)
    finally:
        await source.stop()
    flags = [orjson.loads(r.value) for r in got["alerts.fhir"]]
    assert {f["subject"]["identifier"]["value"] for f in flags} == {"p-4b", "p-4c"}
    assert all(f["resourceType"] == "Flag" for f in flags)
    for record in got["alerts.hl7"]:
        message = hl7.parse(record.value.decode())
        assert str(message.segment("MSH")[9]) == "ORU^R40^ORU_R40"
        assert record.key.decode() == str(message.segment("PV1")[3][0][0])


def test_metrics_carry_no_patient_or_token(station: StationProcess) -> None:
    text = station.scrape()
    assert "vitalstream_station_connections" in text
    assert station.metric("vitalstream_station_auth_failures_total") >= 2
    for secret in ("p-4b", "p-4c", TOKEN_4B, TOKEN_4C):
        assert secret not in text


def test_cli_without_stations_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "VITALSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "vitalstream", "station"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "no stations configured" in done.stderr
    done = subprocess.run([sys.executable, "-m", "vitalstream", "station", "--tokens-file",
                           str(tmp_path / "absent.json")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such tokens file" in done.stderr


async def test_every_connection_of_a_ward_gets_the_same_frames_and_ids_resume_exactly(
        station: StationProcess, module_broker: EmbeddedBroker) -> None:
    alerts, states = deteriorating("p-4b-fanout", "4B", "14", t0_ms=T0_MS)
    wanted = lambda m: sum(x["type"] in ("alert", "bed") for x in m) >= 5  # noqa: E731
    async with aiohttp.ClientSession() as client:
        screens = [await client.get(f"{station.url}/api/stream", headers=auth(TOKEN_4B)) for _ in range(3)]
        try:
            async with client.ws_connect(f"{station.url}/api/ws", headers=auth(TOKEN_4B)) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
                await publish(module_broker.bootstrap, alerts[:1], states[:4])
                seen = [[e for e in await read_events(s, wanted) if e[1]["type"] != "snapshot"] for s in screens]
                over_ws = [await ws.receive_json(timeout=5) for _ in range(5)]
        finally:
            for screen in screens:
                screen.close()
    assert len(seen[0]) == 5 and seen[0] == seen[1] == seen[2]
    assert [m.pop("id") for m in over_ws] == [i for i, _ in seen[0]]
    assert over_ws == [m for _, m in seen[0]]
    # A WebSocket reconnecting with the id of the second event gets exactly the three after it.
    async with aiohttp.ClientSession() as client, \
            client.ws_connect(f"{station.url}/api/ws?last_event_id={seen[0][1][0]}", headers=auth(TOKEN_4B)) as ws:
        resumed = []
        with contextlib.suppress(TimeoutError):
            while True:
                resumed.append(await ws.receive_json(timeout=1.5))
    assert [(m.pop("id"), m) for m in resumed] == seen[0][2:]
