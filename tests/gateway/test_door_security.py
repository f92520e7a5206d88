"""Issue 23 items 1, 5 and 6 at the front doors, through real sockets to the real broker:
tokens, allow-list, TLS and mutual TLS, timeouts, connection caps, impossible values and
device times far ahead, and logs without patient identifiers at any level."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client import REGISTRY
from testkit import require_executable

from simulators.formats import to_fhir_bundle, to_hl7_pcd01
from vitalstream.broker import EmbeddedBroker
from vitalstream.gateway.fhir_http import FhirServer, fhir_app
from vitalstream.gateway.mllp import MllpServer
from vitalstream.gateway.publish import RawPublisher
from vitalstream.gateway.security import (
    DoorConfigError,
    DoorSecurity,
    digest,
    parse_networks,
    pin_library_logs,
)
from vitalstream.ingest.hl7v2 import MLLP_END, MLLP_START
from vitalstream.kafka import consumer, ensure_topics
from vitalstream.samples import CANONICAL_UNITS, Sample
from vitalstream.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.broker]

TOKEN = "a3f1c9e07b2d4c58a1e6f0b9d3c7e2a4"  # made for this test, like `openssl rand -hex 16`
SECRET_ID = "PAT-SECRET-4711"  # a patient identifier that must never reach a log
FHIR_JSON = {"Content-Type": "application/fhir+json"}
YEAR_MS = 365 * 86_400_000


def reading(parameter: str = "heart_rate", value: float = 80.0, ahead_ms: int = -60_000) -> list[Sample]:
    return [Sample(SECRET_ID, "4B", "7", parameter, value, CANONICAL_UNITS[parameter],
                   int(time.time() * 1000) + ahead_ms, "mon-7", 0)]


def frame(message: bytes) -> bytes:
    return MLLP_START + message + MLLP_END


def refused(door: str, reason: str) -> float:
    return REGISTRY.get_sample_value("vitalstream_gateway_connections_refused_total",
                                     {"door": door, "reason": reason}) or 0.0


@pytest.fixture(scope="module")
def settings(module_broker: EmbeddedBroker) -> Settings:
    configured = Settings(kafka_bootstrap=module_broker.bootstrap, topic_partitions=1)
    asyncio.run(ensure_topics(configured))
    return configured


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[RawPublisher]:
    async with RawPublisher(settings) as started:
        yield started


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at every level, for the identifier check, as the door configures
    its loggers (`vitalstream gateway` pins aiokafka, which logs record keys at DEBUG, to INFO)."""
    caplog.set_level(logging.DEBUG)
    names = ("aiohttp", "aiohttp.server", "aiohttp.access", "aiohttp.web", "asyncio",
             "vitalstream", "vitalstream.gateway.http", "aiokafka")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names[:-1]:
        logging.getLogger(name).setLevel(logging.DEBUG)
    pin_library_logs()
    yield caplog
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def assert_no_identifier(caplog: pytest.LogCaptureFixture) -> None:
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    text += caplog.text
    assert SECRET_ID not in text, f"a patient identifier in the logs: {text[:500]}"


async def mllp_exchange(port: int, data: bytes, context: ssl.SSLContext | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(MLLP_END), 20)
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(65_536), within_s) == b""
    except (ConnectionError, ssl.SSLError):
        return True


# -- who may send ----------------------------------------------------------------------
async def test_fhir_door_answers_401_without_a_configured_bearer_token(publisher, records) -> None:
    security = DoorSecurity(token_digests=(digest(TOKEN),))
    server = await FhirServer(fhir_app(publisher, security=security), "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    body = to_fhir_bundle(reading())
    try:
        async with aiohttp.ClientSession() as http:
            answers = []
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                            {"Authorization": f"Bearer {TOKEN}"}):
                async with http.post(f"{base}/fhir", data=body, headers={**FHIR_JSON, **headers}) as response:
                    answers.append((response.status, response.headers.get("WWW-Authenticate"),
                                    await response.json(content_type=None)))
            async with http.get(f"{base}/health") as response:
                health = response.status
    finally:
        await server.close()
    for status, challenge, outcome in answers[:3]:
        assert status == 401 and challenge and challenge.startswith("Bearer")
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "unauthorized"
    assert answers[3][0] == 200
    assert health == 200  # probes need no token: /health carries no patient data
    assert_no_identifier(records)


async def test_mllp_door_closes_a_source_outside_its_allow_list(publisher) -> None:
    message = frame(to_hl7_pcd01(reading()))
    outside = await MllpServer(publisher, port=0, security=DoorSecurity(allow=parse_networks("10.99.0.0/16"))).start()
    inside = await MllpServer(publisher, port=0, security=DoorSecurity(allow=parse_networks("10.99.0.0/16, 127.0.0.0/8"))).start()
    before = refused("mllp", "not_allowed")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outside.port)
        writer.write(message)
        assert await closed_by_server(reader, 5), "a source outside the allow-list was served"
        writer.close()
        ack = await mllp_exchange(inside.port, message)
    finally:
        await outside.close()
        await inside.close()
    assert refused("mllp", "not_allowed") == before + 1
    assert b"MSA|AA|" in ack


# -- TLS --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    openssl = require_executable("openssl")
    directory = tmp_path_factory.mktemp("pki")
    files = {name: directory / name for name in ("ca.pem", "ca.key", "server.pem", "server.key",
                                                 "client.pem", "client.key")}
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")
    commands = [[openssl, "req", "-x509", *new_key, "-keyout", files["ca.key"], "-out", files["ca.pem"],
                 "-days", "1", "-subj", "/CN=vitalstream test CA"]]
    for who, ext in (("server", ["-extfile", extensions]), ("client", [])):
        request = directory / f"{who}.csr"
        commands += [[openssl, "req", *new_key, "-keyout", files[f"{who}.key"], "-out", request,
                      "-subj", f"/CN={'127.0.0.1' if who == 'server' else 'gateway-4B'}"],
                     [openssl, "x509", "-req", "-in", request, "-CA", files["ca.pem"], "-CAkey", files["ca.key"],
                      "-CAcreateserial", "-out", files[f"{who}.pem"], "-days", "1", *ext]]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return files


def door_settings(pki: dict[str, Path], mutual: bool) -> Settings:
    return Settings(gateway_tls_certfile=str(pki["server.pem"]), gateway_tls_keyfile=str(pki["server.key"]),
                    gateway_tls_client_cafile=str(pki["ca.pem"]) if mutual else "")


def client_context(pki: dict[str, Path], with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    if with_certificate:
        context.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
    return context


async def test_mllp_over_tls_and_mutual_tls(publisher, pki, records) -> None:
    message = frame(to_hl7_pcd01(reading()))
    tls = await MllpServer(publisher, port=0, security=DoorSecurity.from_settings(door_settings(pki, False))).start()
    mutual = await MllpServer(publisher, port=0, security=DoorSecurity.from_settings(door_settings(pki, True))).start()
    try:
        ack = await mllp_exchange(tls.port, message, client_context(pki, False))
        # Plain TCP to a TLS door: no ACK, the connection ends.
        reader, writer = await asyncio.open_connection("127.0.0.1", tls.port)
        writer.write(message)
        assert await closed_by_server(reader, 10)
        writer.close()
        # Mutual TLS: without a client certificate the handshake (or the first read) fails.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await mllp_exchange(mutual.port, message, client_context(pki, False))
        mutual_ack = await mllp_exchange(mutual.port, message, client_context(pki, True))
    finally:
        await tls.close()
        await mutual.close()
    assert b"MSA|AA|" in ack and b"MSA|AA|" in mutual_ack
    assert_no_identifier(records)


async def test_fhir_door_over_mutual_tls(publisher, pki) -> None:
    security = DoorSecurity.from_settings(door_settings(pki, True))
    server = await FhirServer(fhir_app(publisher, security=security), "127.0.0.1", 0).start()
    url = f"https://127.0.0.1:{server.port}/fhir"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=to_fhir_bundle(reading()), headers=FHIR_JSON,
                                 ssl=client_context(pki, True)) as response:
                status = response.status
            with pytest.raises(aiohttp.ClientError):
                async with http.post(url, data=b"{}", headers=FHIR_JSON, ssl=client_context(pki, False)):
                    pass
    finally:
        await server.close()
    assert status == 200
    # A door with a client CA tells its senders apart: it may bind a public interface.
    security.check_binding("fhir", "0.0.0.0")


# -- what may be sent -------------------------------------------------------------------
@pytest.mark.parametrize("parameter, value, ahead_ms, reason", [
    ("heart_rate", -50.0, -60_000, "implausible_value"),
    ("resp_rate", -3.0, -60_000, "implausible_value"),
    ("spo2", -10.0, -60_000, "implausible_value"),
    ("systolic_bp", -100.0, -60_000, "implausible_value"),
    ("temperature", -40.0, -60_000, "implausible_value"),
    ("heart_rate", 1e300, -60_000, "implausible_value"),
    ("heart_rate", 80.0, 3_600_000, "future_time"),
    ("heart_rate", 80.0, 5 * YEAR_MS, "future_time"),
])
async def test_doors_refuse_impossible_values_and_times_ahead_with_the_reason(
        publisher, parameter, value, ahead_ms, reason) -> None:
    samples = reading(parameter, value, ahead_ms)
    fhir = await FhirServer(fhir_app(publisher), "127.0.0.1", 0).start()
    mllp = await MllpServer(publisher, port=0).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{fhir.port}/fhir", data=to_fhir_bundle(samples),
                                 headers=FHIR_JSON) as response:
                status, outcome = response.status, await response.json(content_type=None)
        ack = (await mllp_exchange(mllp.port, frame(to_hl7_pcd01(samples)))).decode()
    finally:
        await fhir.close()
        await mllp.close()
    assert status == 422 and outcome["issue"][0]["details"]["coding"][0]["code"] == reason
    assert "MSA|AE|" in ack and reason in ack
    err = next(segment for segment in ack.split("\r") if segment.startswith("ERR"))
    assert reason in err


# -- how long and how many --------------------------------------------------------------
async def test_a_fhir_post_that_stops_sending_gets_408(publisher, records) -> None:
    security = DoorSecurity(request_timeout_s=1.0)
    server = await FhirServer(fhir_app(publisher, security=security), "127.0.0.1", 0).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = to_fhir_bundle(reading())
        writer.write(b"POST /fhir HTTP/1.1\r\nHost: door\r\nContent-Type: application/fhir+json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body) // 2:x}\r\n".encode()
                     + body[:len(body) // 2] + b"\r\n")  # and never the last chunk
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(65_536), 10)
        waited_s = time.monotonic() - started
        writer.close()
    finally:
        await server.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert orjson.loads(payload)["issue"][0]["details"]["coding"][0]["code"] == "timeout"
    assert waited_s < 9
    assert_no_identifier(records)


async def test_idle_mllp_sessions_are_closed_and_an_unfinished_frame_is_kept(publisher, settings) -> None:
    server = await MllpServer(publisher, port=0, security=DoorSecurity(idle_timeout_s=1.0)).start()
    unfinished = MLLP_START + to_hl7_pcd01(reading())[:80]
    try:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        half_reader, half_writer = await asyncio.open_connection("127.0.0.1", server.port)
        half_writer.write(unfinished)
        await half_writer.drain()
        assert await closed_by_server(idle_reader, 5), "an idle MLLP session was kept open"
        assert await closed_by_server(half_reader, 5), "a frame that never ends kept its session open"
        idle_writer.close()
        half_writer.close()
    finally:
        await server.close()
    letters = await read_all(settings, settings.topic_deadletter)
    kept = [orjson.loads(r.value) for r in letters]
    assert any(base64.b64decode(k["original_b64"]) == unfinished[1:] or
               base64.b64decode(k["original_b64"]) == unfinished for k in kept), "the unfinished frame was lost"


async def test_slowloris_headers_are_cut_off_and_connections_capped(publisher, records) -> None:
    security = DoorSecurity(idle_timeout_s=1.0, max_connections=2)
    fhir = await FhirServer(fhir_app(publisher, security=security), "127.0.0.1", 0).start()
    mllp = await MllpServer(publisher, port=0, security=security).start()
    before = refused("mllp", "too_many_connections")
    try:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", fhir.port)
        slow_writer.write(b"POST /fhir HTTP/1.1\r\nHost: door\r\n")  # and the rest never
        held = [await asyncio.open_connection("127.0.0.1", fhir.port)]
        third_reader, third_writer = await asyncio.open_connection("127.0.0.1", fhir.port)
        over_cap = await asyncio.wait_for(third_reader.read(65_536), 5)
        assert await closed_by_server(slow_reader, 5), "headers sent slowly kept the connection open"
        open_mllp = [await asyncio.open_connection("127.0.0.1", mllp.port) for _ in range(2)]
        await asyncio.sleep(0.2)
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", mllp.port)
        assert await closed_by_server(extra_reader, 5), "an MLLP connection over the cap was served"
        for _, writer in [*held, *open_mllp, (third_reader, third_writer), (slow_reader, slow_writer),
                          (extra_reader, extra_writer)]:
            writer.close()
    finally:
        await fhir.close()
        await mllp.close()
    assert over_cap.startswith(b"HTTP/1.1 503")
    assert refused("mllp", "too_many_connections") == before + 1


async def test_malformed_http_logs_no_identifier_at_any_level(publisher, records) -> None:
    server = await FhirServer(fhir_app(publisher), "127.0.0.1", 0).start()
    hl7 = to_hl7_pcd01(reading())
    try:
        for garbage in (hl7 + b"\r\n\r\n",  # HL7 sent to the HTTP port
                        b"POST /fhir HTTP/1.1\r\nHost: d\r\nX-Bad " + SECRET_ID.encode() + b"\r\n\r\n",
                        b"POST /fhir?patient=" + SECRET_ID.encode() + b" HTTP/9.9\r\n\r\n",
                        b"POST /fhir HTTP/1.1\r\nHost: d\r\nContent-Length: x" + SECRET_ID.encode() + b"\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(garbage)
            await writer.drain()
            await asyncio.wait_for(reader.read(65_536), 10)
            writer.close()
        async with aiohttp.ClientSession() as http:  # a well-formed but rejected one too
            async with http.post(f"http://127.0.0.1:{server.port}/fhir", headers=FHIR_JSON,
                                 data=to_fhir_bundle(reading("heart_rate", -50.0))) as response:
                assert response.status == 422
    finally:
        await server.close()
    assert records.records, "nothing was logged at all: the check would prove nothing"
    assert_no_identifier(records)


async def read_all(settings: Settings, topic: str) -> list:
    reader = consumer(settings, topic)
    await reader.start()
    records: list = []
    try:
        quiet = 0
        while quiet < 3:
            batch = await reader.getmany(timeout_ms=500)
            quiet = 0 if batch else quiet + 1
            for part in batch.values():
                records.extend(part)
    finally:
        await reader.stop()
    return records


# -- binding ----------------------------------------------------------------------------
def test_an_open_door_refuses_a_public_interface_unless_told() -> None:
    for door in ("fhir", "mllp"):
        DoorSecurity().check_binding(door, "127.0.0.1")
        DoorSecurity(allow_unauthenticated=True).check_binding(door, "0.0.0.0")
        with pytest.raises(DoorConfigError, match="ALLOW_UNAUTHENTICATED"):
            DoorSecurity().check_binding(door, "0.0.0.0")
    DoorSecurity(token_digests=(digest(TOKEN),)).check_binding("fhir", "0.0.0.0")
    DoorSecurity(allow=parse_networks("10.0.0.0/8")).check_binding("mllp", "0.0.0.0")
    with pytest.raises(DoorConfigError):  # an allow-list is no authentication for HTTP
        DoorSecurity(allow=parse_networks("10.0.0.0/8")).check_binding("fhir", "0.0.0.0")
    with pytest.raises(DoorConfigError, match="32 characters"):
        DoorSecurity.from_settings(Settings(gateway_tokens="short"))


def test_the_command_says_why_in_one_line_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "vitalstream", "gateway", "fhir", "--host", "0.0.0.0",
                           "--bootstrap", "127.0.0.1:9"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "ALLOW_UNAUTHENTICATED" in done.stderr
