"""The MLLP front door through a real TCP socket, publishing to the real broker."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from vitalstream.gateway.mllp import MllpServer
from vitalstream.gateway.publish import RawPublisher
from vitalstream.kafka import consumer, ensure_topics
from vitalstream.settings import Settings

pytestmark = pytest.mark.broker

PCD01 = (Path(__file__).parent.parent / "ingest" / "data" / "pcd01_monitor.hl7").read_bytes()
ADT = b"MSH|^~\\&|ADT|H|||20260315101500||ADT^A01|ADT-9|P|2.6\rPID|||MRN-1"
OUTCOMES = ("accepted", "rejected", "deadlettered", "refused")


def outcome_counts() -> dict[str, float]:
    counts = {"messages": REGISTRY.get_sample_value("vitalstream_gateway_messages_total", {"door": "mllp"}) or 0.0}
    for outcome in OUTCOMES:
        counts[outcome] = sum(
            sample.value for metric in REGISTRY.collect() if metric.name == "vitalstream_gateway_outcomes"
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["door"] == "mllp"
            and sample.labels["outcome"] == outcome)
    return counts


async def exchange(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes) -> list[str]:
    writer.write(data)
    await writer.drain()
    ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20)
    assert ack.startswith(b"\x0b")
    return ack[1:-2].decode().rstrip("\r").split("\r")


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


async def test_messages_are_acknowledged_published_or_dead_lettered(broker):
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    await ensure_topics(settings)
    before = outcome_counts()
    async with RawPublisher(settings) as publisher:
        server = await MllpServer(publisher, port=0).start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            good = await exchange(writer, reader, b"\x0b" + PCD01 + b"\x1c\r")
            wrong = await exchange(writer, reader, b"\x0b" + ADT + b"\x1c\r")
            # Line noise before a frame is dead-lettered; the frame after it still gets its AA.
            after_noise = await exchange(writer, reader, b"+++ATH0\r\n\x0b" + PCD01 + b"\x1c\r")
            writer.close()
        finally:
            await server.close()
    assert good[1].split("|")[:3] == ["MSA", "AA", "MSG20260315111502"]
    # A message type this door does not read is not accepted here: AR, not AE (the content
    # is not wrong), with ERR-3 200 unsupported message type; it goes to the dead letters.
    assert wrong[1].split("|")[:3] == ["MSA", "AR", "ADT-9"] and "unsupported_message" in wrong[1]
    assert wrong[2].startswith("ERR|||200^")
    assert wrong[0].split("|")[8] == "ACK^A01^ACK"
    assert after_noise[1].split("|")[1] == "AA"

    raw = await read_topic(settings, settings.topic_raw, 2)
    # The original bytes, in order, keyed by patient (ordering per patient downstream).
    assert [r.value for r in raw] == [PCD01, PCD01]
    assert raw[0].key == b"MRN-4711" and ("vitalstream-format", b"hl7") in raw[0].headers
    dead = [orjson.loads(r.value) for r in await read_topic(settings, settings.topic_deadletter, 2)]
    assert [d["reason"] for d in dead] == ["unsupported_message", "mllp_framing"]
    assert base64.b64decode(dead[0]["original_b64"]) == ADT
    assert base64.b64decode(dead[1]["original_b64"]) == b"+++ATH0\r\n"

    after = outcome_counts()
    delta = {key: after[key] - before[key] for key in after}
    # Nothing lost: messages in = accepted + rejected + dead-lettered + refused.
    assert delta == {"messages": 4, "accepted": 2, "rejected": 0, "deadlettered": 2, "refused": 0}


async def test_unreachable_broker_answers_ar_so_the_sender_keeps_the_message(broker):
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    await ensure_topics(settings)
    async with RawPublisher(settings) as publisher:
        server = await MllpServer(publisher, port=0, publish_timeout_s=1.5).start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            broker.pause()
            try:
                ack = await exchange(writer, reader, b"\x0b" + PCD01 + b"\x1c\r")
            finally:
                broker.resume()
            writer.close()
        finally:
            await server.close()
    assert ack[1].split("|")[1] == "AR" and "broker_unavailable" in ack[1]
