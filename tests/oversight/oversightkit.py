"""Helpers of the oversight tests: a patient who raises a high alert at once, the actors,
and reading the alerts topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from testkit import keyring

from vitalstream.kafka import consumer, producer
from vitalstream.settings import Settings

NURSE_ANN = {"user_id": "u-ann", "role": "bedside_nurse", "name": "Ann Bell"}
NURSE_BEN = {"user_id": "u-ben", "role": "bedside_nurse", "name": "Ben Ode"}
CHARGE_CAT = {"user_id": "u-cat", "role": "charge_nurse", "name": "Cat Moss"}
DOCTOR_LEE = {"user_id": "u-lee", "role": "physician", "name": "Dr Lee"}
# Charge nurse after 3 s without acknowledgement (seconds, so the tests are short); the
# rapid-response team much later; an answer within 60 s.
SHORT_CHAIN = orjson.dumps({"*": {"steps": [
    {"role": "bedside_nurse"}, {"role": "charge_nurse", "after_s": 3},
    {"role": "rapid_response", "after_s": 120}], "answer_within_s": 60}}).decode()
ENV = {"VITALSTREAM_ESCALATION_CHAINS": SHORT_CHAIN, "VITALSTREAM_SNOOZE_MAX_S":
       '{"high": 4, "medium": 600, "low": 600}', "VITALSTREAM_OVERSIGHT_INTERVAL_S": "0.5"}


def deteriorated(patient_id: str, ward: str, bed: str, end_ms: int | None = None) -> list[bytes]:
    """Three observation rounds 11 min apart with NEWS2 11: spot checks, which raise a high
    alert at once (a nurse's own round is a deliberate measurement)."""
    end_ms = end_ms or int(time.time() * 1000)
    return [orjson.dumps([
        {"patient_id": patient_id, "ward": ward, "bed": bed, "parameter": name, "value": value,
         "device_time_ms": end_ms - k * 660_000, "source": "obs-round"}
        for name, value in (("resp_rate", 28), ("spo2", 90), ("systolic_bp", 95), ("heart_rate", 125),
                            ("temperature", 38.5), ("consciousness", "A"), ("on_oxygen", False))])
        for k in (2, 1, 0)]


def signer_of(settings: Settings, topic: str) -> str | None:
    """Who writes each topic in production: stations write acknowledgements and oversight
    records, the front doors the census; readings are not signed."""
    return {settings.topic_acks: "station", settings.topic_patient_settings: "station",
            settings.topic_oversight: "station", settings.topic_census: "gateway"}.get(topic)


async def publish(settings: Settings, topic: str, values: list[bytes], key: bytes | None = None,
                  service: str | None = "") -> None:
    """Send ``values`` to ``topic``, signed with the key of the service that writes it
    (``service`` names another; None sends them unsigned, as a forger would)."""
    signer = keyring(signer_of(settings, topic) if service == "" else service) if service is not None else None
    out = producer(settings)
    await out.start()
    try:
        for value in values:
            signed = signer is not None and signer.current is not None
            headers = signer.sign(topic, key, value) if signed else None
            await out.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await out.stop()


def send(settings: Settings, topic: str, *records: Any, key: bytes | None = None,
         service: str | None = "") -> None:
    asyncio.run(publish(settings, topic, [r if isinstance(r, bytes) else orjson.dumps(r) for r in records],
                        key, service))


def alerts_until(settings: Settings, until: Callable[[list[dict[str, Any]]], bool],
                 timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every message on the alerts topic from the beginning, until ``until`` holds."""
    async def read() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        source = consumer(settings, settings.topic_alerts)
        await source.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not until(got):
                for records in (await source.getmany(timeout_ms=300)).values():
                    got.extend(orjson.loads(r.value) for r in records)
        finally:
            await source.stop()
        return got
    return asyncio.run(read())


def of_status(alerts: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["status"] == status]
