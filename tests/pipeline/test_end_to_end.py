"""The whole slice on the real broker: gateway JSON -> vitals.raw -> worker -> alerts."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import orjson
import pytest
from testkit import actor, send_all, send_signed

from vitalstream.broker import EmbeddedBroker
from vitalstream.kafka import consumer, ensure_topics, producer
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = pytest.mark.broker


def vitals_message(patient_id: str, ward: str, bed: str, t_ms: int, **values: object) -> bytes:
    return orjson.dumps([
        {"patient_id": patient_id, "ward": ward, "bed": bed, "parameter": name, "value": value,
         "device_time_ms": t_ms, "source": "monitor-" + bed}
        for name, value in values.items()
    ])


def ward_messages(end_ms: int) -> list[bytes]:
    """60 minutes, one gateway message a minute per patient. The deteriorating patient's
    RR climbs 16 -> 28, SpO2 falls 97 -> 90 and HR rises 80 -> 125 (NEWS2 0 -> high);
    the stable patient stays at textbook normal values (NEWS2 0)."""
    messages = []
    for minute in range(60):
        t_ms = end_ms - (59 - minute) * 60_000
        frac = minute / 59
        messages.append(vitals_message("p-stable", "4B", "11", t_ms, heart_rate=72, resp_rate=15,
                                       spo2=98, systolic_bp=124, temperature=36.8,
                                       consciousness="A", on_oxygen=False))
        messages.append(vitals_message("p-det", "4B", "12", t_ms, heart_rate=80 + 45 * frac,
                                       resp_rate=16 + 12 * frac, spo2=97 - 7 * frac,
                                       systolic_bp=120 - 20 * frac, temperature=37.0 + 1.6 * frac,
                                       consciousness="A", on_oxygen=False))
    return messages


async def send_to(settings: Settings, topic: str, value: bytes) -> None:
    out = producer(settings)
    await out.start()
    try:
        await out.send_and_wait(topic, value)
    finally:
        await out.stop()


async def collect(settings: Settings, topic: str, until, timeout_s: float) -> list:
    received = []
    source = consumer(settings, topic)
    await source.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(received):
            batch = await source.getmany(timeout_ms=500)
            for records in batch.values():
                received.extend(records)
    finally:
        await source.stop()
    return received


def test_deteriorating_patient_alerts_on_ward_topic_and_stable_patient_does_not(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    with WorkerProcess(broker.bootstrap, log_path=tmp_path / "worker.log") as worker:
        end_ms = int(time.time() * 1000)
        asyncio.run(send_all(settings, ward_messages(end_ms) + [b'{"patient_id": "p-x", trunc']))
        records = asyncio.run(collect(
            settings, settings.topic_alerts,
            lambda got: any(orjson.loads(r.value)["priority"] == "high" for r in got), 60))
        # The stable patient's samples are in the same batches: once the high alert is out,
        # everything sent before it has been scored too.
        alerts = [orjson.loads(r.value) for r in records]
        assert {r.key for r in records} == {b"4B"}, "alerts are keyed by ward"
        assert alerts, "the deteriorating patient raised no alert"
        assert {a["patient_id"] for a in alerts} == {"p-det"}
        first = alerts[0]
        assert "Bed 12" in first["summary"] and "NEWS2" in first["summary"]
        assert first["priority"] in ("medium", "high", "low")
        assert len({a["alert_id"] for a in alerts if a["status"] == "raised"}) <= 2, \
            "the same condition must not alert again at every sample"
        # A nurse acknowledges: the ack goes through alerts.ack to the patient's monitor and
        # comes back on the ward's alert stream with who acknowledged it.
        latest = alerts[-1]
        ack = {"patient_id": latest["patient_id"], "alert_id": latest["alert_id"], "ward": "4B",
               "actor": actor(name="nurse-7"), "actor_wards": ["4B"], "at_ms": int(time.time() * 1000)}
        asyncio.run(send_signed(settings, settings.topic_acks, b"4B", orjson.dumps(ack)))
        acked = asyncio.run(collect(
            settings, settings.topic_alerts,
            lambda got: any(orjson.loads(r.value)["status"] == "acknowledged" for r in got), 30))
        confirmation = [orjson.loads(r.value) for r in acked if orjson.loads(r.value)["status"] == "acknowledged"]
        assert confirmation and confirmation[0]["alert_id"] == latest["alert_id"]
        assert "nurse-7" in orjson.dumps(confirmation[0]).decode()
        dead = asyncio.run(collect(settings, settings.topic_deadletter, lambda got: len(got) >= 1, 20))
        assert len(dead) == 1
        letter = orjson.loads(dead[0].value)
        assert letter["reason"] == "not_json"
        assert base64.b64decode(letter["original_b64"]) == b'{"patient_id": "p-x", trunc'
        messages_in = worker.metric("vitalstream_messages_in_total")
        assert messages_in == 121
        assert worker.metric("vitalstream_messages_accepted_total") == 120
        assert worker.metric("vitalstream_messages_deadlettered_total") == 1
        assert worker.metric("vitalstream_alert_latency_seconds_count") >= 1
        metrics_text = worker.scrape()
        assert "p-det" not in metrics_text and "p-stable" not in metrics_text
