"""What the governance tests share: a small ward on the real broker, signing keys, and
clients to send and read records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from vitalstream.kafka import consumer, producer
from vitalstream.settings import Settings
from vitalstream.signing import Keyring, generate_keys, keys_json

KEYS = generate_keys()
KEYS_JSON = keys_json(KEYS)
KEYRING = Keyring.from_json(KEYS_JSON)
ADMIN = {"user_id": "u-admin-1", "role": "admin", "name": "Ada Admin"}
NURSE = {"user_id": "u-nurse-7", "role": "bedside_nurse", "name": "Nina Nurse"}


def worker_env(**extra: str) -> dict[str, str]:
    return {"VITALSTREAM_SIGNING_KEYS": KEYS_JSON, "VITALSTREAM_SIGNING_KEY_ID": "worker-1", **extra}


def vitals_message(patient_id: str, ward: str, bed: str, t_ms: int, **values: object) -> bytes:
    return orjson.dumps([
        {"patient_id": patient_id, "ward": ward, "bed": bed, "parameter": name, "value": value,
         "device_time_ms": t_ms, "source": "monitor-" + bed}
        for name, value in values.items()
    ])


def deteriorating(patient_id: str, ward: str, bed: str, end_ms: int, minutes: int = 60) -> list[bytes]:
    """One report a minute: RR 16 -> 28, SpO2 97 -> 90, HR 80 -> 125 (NEWS2 0 -> high)."""
    out = []
    for minute in range(minutes):
        t_ms = end_ms - (minutes - 1 - minute) * 60_000
        frac = minute / (minutes - 1)
        out.append(vitals_message(patient_id, ward, bed, t_ms, heart_rate=80 + 45 * frac,
                                  resp_rate=16 + 12 * frac, spo2=97 - 7 * frac,
                                  systolic_bp=120 - 20 * frac, temperature=37.0 + 1.6 * frac,
                                  consciousness="A", on_oxygen=False))
    return out


def stable(patient_id: str, ward: str, bed: str, end_ms: int, minutes: int = 60) -> list[bytes]:
    return [vitals_message(patient_id, ward, bed, end_ms - (minutes - 1 - m) * 60_000, heart_rate=72,
                           resp_rate=15, spo2=98, systolic_bp=124, temperature=36.8,
                           consciousness="A", on_oxygen=False) for m in range(minutes)]


async def send(settings: Settings, topic: str, items: list[tuple[bytes | None, bytes]],
               signer: Keyring | None = None) -> None:
    out = producer(settings)
    await out.start()
    try:
        for key, value in items:
            headers = signer.sign(topic, key, value) if signer is not None else None
            await out.send(topic, value, key=key, headers=headers)
        await out.flush()
    finally:
        await out.stop()


async def collect(settings: Settings, topic: str, until: Callable[[list[Any]], bool],
                  timeout_s: float) -> list[Any]:
    received: list[Any] = []
    source = consumer(settings, topic)
    await source.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(received):
            for records in (await source.getmany(timeout_ms=300)).values():
                received.extend(records)
    finally:
        await source.stop()
    return received


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def metric(worker: Any, name: str) -> float:
    """A worker's metric, or -1 while it is too busy to answer (its first batch compiles)."""
    try:
        return worker.metric(name)
    except OSError:
        return -1.0
