"""Issue 23 item 4 on the real broker and the real `vitalstream station`: 200 WebSocket
clients that never read are dropped once they fall behind (their backlogs let go), the
station's memory stays bounded, and another station still sees a new alert promptly."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from testkit import keyring
from ward_feed import deteriorating

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.feeds import QUEUE_LIMIT
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import ensure_topics, producer
from vitalstream.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.broker, pytest.mark.timeout(180)]

TOKEN = "wall-board-token-for-slow-clients"
SLOW_CLIENTS = 200
BED_STATES = QUEUE_LIMIT + 1000  # more than a backlog holds


@pytest.fixture
def station(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[StationProcess]:
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=broker.bootstrap)))
    with StationProcess(broker.bootstrap, {TOKEN: ["4B"]}, log_path=tmp_path / "station.log") as running:
        yield running


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def never_reading_websocket(port: int) -> socket.socket:
    """A WebSocket client that upgrades and then reads nothing, with a small receive buffer."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(f"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    return client


async def publish(settings: Settings, topic: str, records: list[dict]) -> None:
    worker = keyring("worker")
    out = producer(settings, linger_ms=5)
    await out.start()
    try:
        for record in records:
            key, value = b"4B", orjson.dumps(record)
            await out.send(topic, value, key=key, headers=worker.sign(topic, key, value))
        await out.flush()
    finally:
        await out.stop()


def gauge(station: StationProcess, name: str, label: str = "") -> float:
    """Sum of a station metric's series; a long timeout, as the 2-core test machine may be
    busy with the flood (the alert's delay afterwards is what is asserted)."""
    with urllib.request.urlopen(f"{station.url}/metrics", timeout=60) as response:
        text = response.read().decode()
    rows = [r for r in text.splitlines() if r.startswith(name) and label in r]
    return sum(float(r.split()[-1]) for r in rows)


async def test_clients_that_never_read_are_dropped_and_the_others_see_a_new_alert_promptly(
        station: StationProcess, broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    assert station.process is not None
    sockets = [never_reading_websocket(station.port) for _ in range(SLOW_CLIENTS)]
    try:
        deadline = time.monotonic() + 20
        while gauge(station, "vitalstream_station_connections", 'transport="ws"') < SLOW_CLIENTS:
            assert time.monotonic() < deadline, "the slow clients did not all connect"
            await asyncio.sleep(0.2)
        before_mb = resident_mb(station.process.pid)
        seen: list[tuple[float, dict]] = []
        async with aiohttp.ClientSession() as client, client.get(
                f"{station.url}/api/stream", headers={"Authorization": f"Bearer {TOKEN}"}) as stream:

            async def read() -> None:
                while True:
                    frame = await stream.content.readuntil(b"\n\n")
                    for line in frame.split(b"\n"):
                        if line.startswith(b"data: "):
                            seen.append((time.monotonic(), orjson.loads(line[6:])))

            reader = asyncio.create_task(read())
            try:
                # About 4 KB a bed state (trends and values): 12 MB of frames for every client.
                now_ms = int(time.time() * 1000)
                states = [{"ward": "4B", "bed": str(i % 24 + 1), "patient_id": f"p-{i % 24}",
                           "time_ms": now_ms + i, "news2": {"total": 1}, "padding": "x" * 4000}
                          for i in range(BED_STATES)]
                await publish(settings, settings.topic_bed_state, states)
                deadline = time.monotonic() + 60
                while (gauge(station, "vitalstream_station_slow_closed_total") < SLOW_CLIENTS
                       or gauge(station, "vitalstream_station_connections", 'transport="ws"') > 0):
                    assert time.monotonic() < deadline, "slow clients were not dropped"
                    await asyncio.sleep(0.5)
                after_mb = resident_mb(station.process.pid)
                # The reading station got every bed state and is still connected.
                deadline = time.monotonic() + 20
                while sum(m["type"] == "bed" for _, m in seen) < BED_STATES:
                    assert time.monotonic() < deadline, "the reading station fell behind"
                    await asyncio.sleep(0.2)
                alert = deteriorating("p-new", "4B", "7", t0_ms=now_ms - 3_600_000)[0][0]
                published_s = time.monotonic()
                await publish(settings, settings.topic_alerts, [alert])
                deadline = time.monotonic() + 10
                while not any(m["type"] == "alert" for _, m in seen):
                    assert time.monotonic() < deadline, "the new alert never reached the reading station"
                    await asyncio.sleep(0.01)
                shown_s = next(t for t, m in seen if m["type"] == "alert")
            finally:
                reader.cancel()
    finally:
        for s in sockets:
            s.close()
    delay_s = shown_s - published_s
    print(f"slow clients: RSS {before_mb:.0f} -> {after_mb:.0f} MB; new alert seen after {delay_s * 1000:.0f} ms")
    assert delay_s < 1.0, f"a new alert took {delay_s:.2f} s to reach a station that reads"
    assert after_mb - before_mb < 250, f"the station grew {after_mb - before_mb:.0f} MB for clients that never read"
    assert gauge(station, "vitalstream_station_slow_closed_total") == SLOW_CLIENTS
