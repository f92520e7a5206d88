"""The front doors as third-party senders talk to them (issue 22), through real sockets and
the real broker: HL7 sent with python-hl7's MLLP client (`hl7.client.MLLPClient`), messages
built with hl7apy, FHIR with httpx; the answers are checked with hl7apy's strict v2.6
validation and fhir.resources' R4B OperationOutcome."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hl7.client import MLLPClient
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from vitalstream.gateway.fhir_http import fhir_app
from vitalstream.gateway.mllp import MllpServer, not_accepted_here
from vitalstream.gateway.publish import RawPublisher
from vitalstream.ingest.hl7v2 import hl7_ack
from vitalstream.kafka import consumer, ensure_topics
from vitalstream.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ingest"))
from senders import HR_MDC, SPO2_MDC, envelope, nm, oru_r01, transaction  # noqa: E402

pytestmark = pytest.mark.broker

NOW_MS = 1_773_570_000_000


def validated_ack(text: str) -> object:
    """An ACK as a receiver's HL7 library checks it: hl7apy, strict, v2.6 ACK structure."""
    message = parse_message(text.replace("\r\n", "\r").strip("\r"), validation_level=VALIDATION_LEVEL.STRICT)
    assert message.validate()
    return message


def fields(segment_line: str) -> list[str]:
    return segment_line.split("|")


async def read_topic(settings: Settings, topic: str, count: int) -> list:
    reader = consumer(settings, topic)
    await reader.start()
    records: list = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await reader.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await reader.stop()
    return records


def test_ack_to_text_that_is_not_hl7_names_a_trigger() -> None:
    ack = hl7_ack(b"hello, is this the lab?", "AE", "not_hl7: no MSH", NOW_MS, "100").decode()
    assert fields(ack.split("\r")[0])[8] == "ACK^R01^ACK", "MSG-2 is never empty"
    validated_ack(ack)


def test_not_accepted_here_is_one_rule_for_every_message_type() -> None:
    adt = oru_r01([HR_MDC]).replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01").encode()
    rejection, error = not_accepted_here(adt)
    assert rejection.reason == "unsupported_message" and error == "200"
    r30 = oru_r01([HR_MDC]).replace("ORU^R01^ORU_R01", "ORU^R30^ORU_R30").encode()
    assert not_accepted_here(r30)[1] == "201", "known message code, other trigger event"
    assert not_accepted_here(oru_r01([HR_MDC]).encode()) is None
    assert not_accepted_here(b"not hl7") is None, "the content check answers that (AE not_hl7)"


async def test_mllp_door_as_a_python_hl7_client_uses_it(broker):
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    await ensure_topics(settings)
    batch = "\r".join([
        envelope("FHS", fhs_3="GATEWAY", fhs_11="F-7"), envelope("BHS", bhs_3="GATEWAY", bhs_11="B-7"),
        oru_r01([HR_MDC], control_id="M-1"), oru_r01([SPO2_MDC], control_id="M-2"),
        oru_r01([nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "")], control_id="M-3"),
        envelope("BTS", bts_1="3"), envelope("FTS", fts_1="1")])
    adt = oru_r01([HR_MDC], control_id="ADT-1").replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01")
    too_hot = oru_r01([nm("150344^MDC_TEMP^MDC", "98.6", "268192^MDC_DIM_DEGC^MDC")], control_id="T-1")

    async with RawPublisher(settings) as publisher:
        server = await MllpServer(publisher, port=0).start()

        def send_all() -> list[str]:
            with MLLPClient("127.0.0.1", server.port) as client:
                answers = [client.send_message(batch), client.send_message(adt), client.send_message(too_hot),
                           client.send(b"\x0b\x1c\r"), client.send_message("hello, is this the lab?")]
            return [answer.decode() for answer in answers]

        try:
            batch_ack, adt_ack, hot_ack, empty_ack, text_ack = await asyncio.to_thread(send_all)
        finally:
            await server.close()

    # A batch is answered by a batch: one ACK per message, in order, naming the batch answered.
    lines = [line for line in batch_ack.strip("\x0b\x1c\r").split("\r") if line]
    assert [line[:3] for line in lines] == ["FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "MSH", "MSA", "ERR", "BTS", "FTS"]
    assert fields(lines[1])[11] == "B-7" and fields(lines[0])[11] == "F-7", "BHS-12 / FHS-12 reference"
    assert [fields(line)[1:3] for line in lines if line.startswith("MSA")] == [["AA", "M-1"], ["AA", "M-2"], ["AE", "M-3"]]
    assert fields(lines[-2])[1] == "3"
    for ack in ("\r".join(lines[2:4]), "\r".join(lines[4:6]), "\r".join(lines[6:9])):
        validated_ack(ack)

    adt_lines = adt_ack.strip("\x0b\x1c\r").split("\r")
    assert fields(adt_lines[1])[1:3] == ["AR", "ADT-1"] and fields(adt_lines[0])[8] == "ACK^A01^ACK"
    assert fields(adt_lines[2])[3].startswith("200^")
    validated_ack(adt_ack.strip("\x0b\x1c\r"))

    hot_lines = hot_ack.strip("\x0b\x1c\r").split("\r")
    assert fields(hot_lines[1])[1] == "AE" and "implausible_value" in hot_lines[1]
    assert fields(hot_lines[2])[3] == "102^Data type error^HL70357", "a data error, not 207 internal error"

    empty_lines = empty_ack.strip("\x0b\x1c\r").split("\r")
    assert fields(empty_lines[1])[1] == "AR" and "empty_message: nothing received" in empty_lines[1]
    validated_ack(empty_ack.strip("\x0b\x1c\r"))

    text_lines = text_ack.strip("\x0b\x1c\r").split("\r")
    assert fields(text_lines[0])[8] == "ACK^R01^ACK" and fields(text_lines[1])[1] == "AE"

    # Every batch message on vitals.raw on its own (the third, rejected, too: ingest
    # dead-letters it), then the implausible one, then the text; the ADT is only a dead letter.
    raw = [record.value for record in await read_topic(settings, settings.topic_raw, 5)]
    assert [b"M-1" in r for r in raw[:1]] == [True] and b"M-2" in raw[1] and b"M-3" in raw[2]
    assert all(not r.startswith((b"FHS", b"BHS")) for r in raw)
    assert not any(b"ADT^A01" in r for r in raw)
    dead = [orjson.loads(r.value) for r in await read_topic(settings, settings.topic_deadletter, 1)]
    assert dead[0]["reason"] == "unsupported_message" and b"ADT^A01" in base64.b64decode(dead[0]["original_b64"])


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_fhir_door_as_an_httpx_client_uses_it(broker):
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    await ensure_topics(settings)
    headers = {"Content-Type": "application/fhir+json"}
    with_bom = b"\xef\xbb\xbf" + transaction("Patient?identifier=urn:oid:1.2.3|MRN-55")
    modified = orjson.loads(transaction("Patient?identifier=MRN-55"))
    modified["entry"][1]["resource"]["modifierExtension"] = [{"url": "http://example.org/m", "valueBoolean": True}]
    async with RawPublisher(settings) as publisher:
        runner, base = await start(fhir_app(publisher))
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                get = await client.get("/fhir/Observation")
                delete = await client.delete("/fhir/Bundle")
                update = await client.put("/fhir/Observation/obs-1", content=b"{}", headers=headers)
                bom = await client.post("/fhir", content=with_bom, headers=headers)
                modifier = await client.post("/fhir", content=orjson.dumps(modified), headers=headers)
                empty = await client.post("/fhir/Observation", content=b"", headers=headers)
        finally:
            await runner.cleanup()

    for response in (get, delete, update):
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        assert response.headers["Content-Type"].startswith("application/fhir+json")
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].code == "not-supported"
    assert bom.status_code == 200 and bom.json()["type"] == "transaction-response", "the BOM is not content"
    assert len(bom.json()["entry"]) == 2
    assert modifier.status_code == 422
    issue = OperationOutcome.model_validate(modifier.json()).issue[0]
    assert issue.code == "extension" and issue.details.coding[0].code == "unknown_modifier"
    assert empty.status_code == 400
    assert OperationOutcome.model_validate(empty.json()).issue[0].details.coding[0].code == "empty_message"
