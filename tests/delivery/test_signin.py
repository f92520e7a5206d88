"""Signing in to the station as a named user (issue 23 item 7, issue 18 item 1), on the real
broker and the real `vitalstream station`: failures are throttled per user and per address,
sessions expire and end when the user is disabled, cross-site posts are refused, a wall
board's token sees but cannot act, a garbage WebSocket hello gets a clean close, and
settings changes are bounded and need a physician to loosen."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from testkit import PASSWORD, browser, keyring, make_users, sign_in
from ward_feed import deteriorating

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import consumer, ensure_topics, producer
from vitalstream.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.broker]

TOKEN = "wall-board-token-for-4B-signin"
IDLE_S = 3.0


@pytest.fixture(scope="module")
def station(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationProcess]:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    tmp = tmp_path_factory.mktemp("signin")
    make_users(tmp / "users.json", ("anna", "Anna Smith", "bedside_nurse", ["4B"]),
               ("dora", "Dr Dora Ahmed", "physician", ["4B"]), ("eve", "Eve Long", "bedside_nurse", ["4B"]),
               ("fay", "Fay Idle", "charge_nurse", ["4B"]), ("gil", "Gil Gone", "bedside_nurse", ["4B"]))
    env = {"VITALSTREAM_STATION_SIGNIN_LIMIT": "3", "VITALSTREAM_STATION_SIGNIN_ADDRESS_LIMIT": "8",
           "VITALSTREAM_STATION_SIGNIN_WINDOW_S": "60", "VITALSTREAM_STATION_IDLE_MINUTES": str(IDLE_S / 60)}
    asyncio.run(publish_alert(settings))
    with StationProcess(module_broker.bootstrap, {TOKEN: ["4B"]}, env=env, users_file=tmp / "users.json",
                        log_path=tmp / "station.log") as running:
        running.users_path = tmp / "users.json"
        yield running
    log = (tmp / "station.log").read_text(errors="replace")
    assert PASSWORD not in log and TOKEN not in log


async def publish_alert(settings: Settings) -> None:
    alerts, states = deteriorating("p-4b", "4B", "12", t0_ms=int(time.time() * 1000) - 3_600_000)
    worker = keyring("worker")
    out = producer(settings)
    await out.start()
    try:
        for topic, record in [(settings.topic_bed_state, s) for s in states] + [(settings.topic_alerts, alerts[0])]:
            key, value = b"4B", orjson.dumps(record)
            await out.send_and_wait(topic, value, key=key, headers=worker.sign(topic, key, value))
    finally:
        await out.stop()


async def first_alert(client: aiohttp.ClientSession, url: str) -> dict:
    async with client.get(f"{url}/api/state", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        return (await response.json())["wards"]["4B"]["alerts"][0]


async def test_failed_sign_ins_are_throttled_per_user_with_retry_after(station: StationProcess) -> None:
    async with browser() as client:
        statuses = [await sign_in(client, station.url, "eve", "not the password at all") for _ in range(3)]
        assert statuses == [303, 303, 303]  # back to the sign-in page, marked failed
        async with client.post(f"{station.url}/session", data={"username": "eve", "password": PASSWORD},
                               headers={"Origin": station.url}, allow_redirects=False) as throttled:
            assert throttled.status == 429, "even the right password waits once the limit is reached"
            assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        async with client.get(f"{station.url}/api/me") as me:
            assert me.status == 401
        # Another user from the same address is not locked out by eve's failures (3 < 8).
        assert await sign_in(client, station.url, "anna") == 303
        async with client.get(f"{station.url}/api/me") as me:
            assert (await me.json())["user"]["name"] == "Anna Smith"
    assert station.metric("vitalstream_station_signins_total") >= 5


async def test_a_session_ends_after_its_idle_time_and_at_sign_out(station: StationProcess) -> None:
    async with browser() as client:
        assert await sign_in(client, station.url, "fay") == 303
        cookie = next(c for c in client.cookie_jar if c.key == "vitalstream_station")
        assert len(cookie.value) >= 40 and "fay" not in cookie.value, "the cookie is a random session id"
        async with client.get(f"{station.url}/api/me") as me:
            assert me.status == 200
        await asyncio.sleep(IDLE_S + 1.0)
        async with client.get(f"{station.url}/api/me") as me:
            assert me.status == 401, "the session outlived its idle timeout"
        assert await sign_in(client, station.url, "fay") == 303
        stolen = next(c for c in client.cookie_jar if c.key == "vitalstream_station").value
        async with client.post(f"{station.url}/session/end", headers={"Origin": station.url},
                               allow_redirects=False) as out:
            assert out.status == 303
    async with aiohttp.ClientSession(headers={"Cookie": f"vitalstream_station={stolen}"}) as replay, \
            replay.get(f"{station.url}/api/me") as me:
        assert me.status == 401, "a signed-out session id must not work again"


async def test_disabling_a_user_ends_their_session(station: StationProcess) -> None:
    async with browser() as client:
        assert await sign_in(client, station.url, "gil") == 303
        done = subprocess.run([sys.executable, "-m", "vitalstream", "users", "disable", "gil",
                               "--file", str(station.users_path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 10
        status = 200
        while time.monotonic() < deadline and status == 200:
            await asyncio.sleep(0.5)
            async with client.get(f"{station.url}/api/me") as me:
                status = me.status
        assert status == 401
        assert await sign_in(client, station.url, "gil") == 303
        async with client.get(f"{station.url}/api/me") as me:
            assert me.status == 401, "a disabled user cannot sign in again"


async def test_a_cross_site_sign_in_post_is_refused(station: StationProcess) -> None:
    async with browser() as client:
        for header in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page"}):
            async with client.post(f"{station.url}/session", data={"username": "anna", "password": PASSWORD},
                                   headers=header, allow_redirects=False) as forged:
                assert forged.status == 403
        assert not [c for c in client.cookie_jar if c.key == "vitalstream_station"]
        assert await sign_in(client, station.url, "anna") == 303
        alert = await first_alert(client, station.url)
        async with client.post(f"{station.url}/api/ack", json={"alert_id": alert["alert_id"]},
                               headers={"Origin": "https://evil.example"}) as forged:
            assert forged.status == 403


async def test_the_station_token_sees_the_ward_but_cannot_acknowledge(station: StationProcess) -> None:
    settings = Settings(kafka_bootstrap=station.bootstrap)
    async with browser() as client:
        alert = await first_alert(client, station.url)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with client.get(f"{station.url}/api/me", headers=auth) as me:
            rights = await me.json()
        assert rights["user"] is None and rights["can_acknowledge"] is False
        async with client.post(f"{station.url}/api/ack", headers=auth, json={"alert_id": alert["alert_id"]}) as ack:
            assert ack.status == 403 and "sign in as yourself" in (await ack.json())["error"]
        # A board session from the token (the wall screen's sign-in) cannot either.
        async with client.post(f"{station.url}/session", data={"token": TOKEN}, headers={"Origin": station.url},
                               allow_redirects=False) as board:
            assert board.status == 303
        async with client.post(f"{station.url}/api/ack", json={"alert_id": alert["alert_id"]}) as ack:
            assert ack.status == 403
        async with client.ws_connect(f"{station.url}/api/ws") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
            await ws.send_json({"type": "ack", "alert_id": alert["alert_id"]})
            reply = await ws.receive_json(timeout=5)
            assert reply["type"] == "ack_refused"
    source = consumer(settings, settings.topic_acks)
    await source.start()
    try:
        records = [r for rs in (await source.getmany(timeout_ms=1500)).values() for r in rs]
    finally:
        await source.stop()
    assert records == [], "no acknowledgement may leave the station for a token"


@pytest.mark.parametrize("hello", [
    '{"type": "auth", "token": "x", "wards": 5}',
    '{"type": "auth", "token": "x", "wards": [["4B"]]}',
    '{"type": "auth", "token": "x", "last_event_id": 7}',
    '{"type": "auth", "token": 12}',
    '[1, 2, 3]',
    'not json at all',
    '{"type": "auth", "token": "x", "wards": {"4B": 1}}',
])
async def test_a_malformed_websocket_hello_gets_a_clear_close(station: StationProcess, hello: str) -> None:
    async with browser() as client, client.ws_connect(f"{station.url}/api/ws") as ws:
        await ws.send_str(hello)
        error = await ws.receive_json(timeout=5)
        closed = await ws.receive(timeout=5)
    assert error["type"] == "error" and error["error"]
    assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4400 and closed.extra
    async with browser() as client, client.get(f"{station.url}/health") as health:
        assert health.status == 200


async def test_settings_are_bounded_and_only_a_physician_may_loosen(station: StationProcess) -> None:
    settings = Settings(kafka_bootstrap=station.bootstrap)

    async def change(user: str, record: dict) -> tuple[int, dict]:
        async with browser() as client:
            assert await sign_in(client, station.url, user) == 303
            async with client.post(f"{station.url}/api/settings",
                                   json={"patient_id": "p-4b", "record": record}) as response:
                return response.status, await response.json()

    status, body = await change("anna", {"news2_high": 9, "reason": "baseline"})
    assert status == 403 and "physician" in body["error"]
    status, body = await change("dora", {"news2_medium": 19, "news2_high": 20})
    assert status == 400 and "from 3 to 7" in body["error"]
    status, body = await change("dora", {"accepted_ranges": {"spo2": [0, 350]}})
    assert status == 400 and "80-100" in body["error"]
    assert (await change("anna", {"news2_medium": 4, "news2_high": 6}))[0] == 202, "a nurse may tighten"
    assert (await change("dora", {"news2_high": 8, "reason": "known baseline"}))[0] == 202
    source = consumer(settings, settings.topic_patient_settings)
    await source.start()
    try:
        records = [r for rs in (await source.getmany(timeout_ms=2000)).values() for r in rs]
    finally:
        await source.stop()
    sent = [orjson.loads(r.value) for r in records]
    assert [(s["record"]["actor"]["name"], s["ward"]) for s in sent] == [("Anna Smith", "4B"), ("Dr Dora Ahmed", "4B")]
    assert all(keyring().verify(r.topic, r.key, r.value, r.headers, {"station"}) for r in records)


def test_the_station_and_the_worker_refuse_to_start_without_signing_keys(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "VITALSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           "VITALSTREAM_STATION_TOKENS": orjson.dumps({TOKEN: ["4B"]}).decode()}
    for command in ("station", "worker", "subscribe --ward 4B"):
        done = subprocess.run([sys.executable, "-m", "vitalstream", *command.split()], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (command, done.stderr)
        assert "no signing keys" in done.stderr


@pytest.mark.parametrize("proxies, signed_in", [("127.0.0.1", True), ("10.9.8.7", False)])
async def test_single_sign_on_header_is_trusted_only_from_the_configured_proxy(
        station: StationProcess, tmp_path: Path, proxies: str, signed_in: bool) -> None:
    env = {"VITALSTREAM_STATION_SSO_HEADER": "X-Remote-User", "VITALSTREAM_STATION_SSO_PROXIES": proxies}
    with StationProcess(station.bootstrap, {TOKEN: ["4B"]}, env=env, users_file=station.users_path,
                        log_path=tmp_path / "sso.log") as sso:
        async with aiohttp.ClientSession(headers={"X-Remote-User": "dora"}) as client:
            async with client.get(f"{sso.url}/api/me") as me:
                if signed_in:
                    assert me.status == 200 and (await me.json())["user"]["role"] == "physician"
                else:
                    assert me.status == 401, "the header from an untrusted address must be ignored"
            async with client.get(f"{sso.url}/api/me", headers={"X-Remote-User": "nobody-of-this-ward"}) as me:
                assert me.status == 401
