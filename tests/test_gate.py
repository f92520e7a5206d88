"""The gate of control records (vitalstream/gate.py), without a broker: what enters from a
control topic, what the monitor takes from vitals, and when an acknowledgement applies."""

from __future__ import annotations

import types

import orjson
import pytest

from vitalstream import gate
from vitalstream.signing import Keyring

pytestmark = pytest.mark.security

RING = Keyring({"station-1": ("station", b"s" * 32), "worker-1": ("worker", b"w" * 32),
                "gateway-1": ("gateway", b"g" * 32)}, current="station-1")
NOW_MS = 1_773_569_700_000
NURSE = {"user_id": "u-anna", "role": "bedside_nurse", "name": "Anna Smith"}


def signed_by(kid: str, topic: str, key: bytes, value: bytes) -> list[tuple[str, bytes]]:
    return Keyring(RING._keys, current=kid).sign(topic, key, value)


def ack(**changes: object) -> bytes:
    record = {"patient_id": "p1", "alert_id": "a1", "at_ms": NOW_MS, "ward": "4B", "actor": NURSE,
              "actor_wards": ["4B"], **changes}
    return orjson.dumps(record)


def test_a_station_signed_acknowledgement_enters_with_its_actor_named() -> None:
    value = ack()
    patient_id, record = gate.check_entry(RING, "ack", "alerts.ack", b"4B", value,
                                          signed_by("station-1", "alerts.ack", b"4B", value))
    assert patient_id == "p1" and record["by"] == "Anna Smith" and record["actor"]["role"] == "bedside_nurse"


@pytest.mark.parametrize(("source", "value", "kid", "reason"), [
    ("ack", ack(), None, "unsigned"),
    ("ack", ack(), "worker-1", "wrong_service"),  # a worker key may not write acknowledgements
    ("census", orjson.dumps({"patient_id": "p1", "event": "admit", "ward": "4B", "bed": "1"}), "station-1",
     "wrong_service"),  # the census is the front doors' (gateway keys)
    ("ack", ack(actor_wards=["4C"]), "station-1", "ward"),  # the nurse is not granted the alert's ward
    ("ack", ack(actor={"user_id": "u-x", "role": "porter", "name": "X"}), "station-1", "actor"),
    ("ack", ack(at_ms="now"), "station-1", "malformed"),
    ("ack", ack(note="x" * gate.MAX_CONTROL_BYTES), "station-1", "malformed"),
    ("settings", orjson.dumps({"patient_id": "p1", "record": {"spo2_scale": 3, "actor": NURSE}}), "station-1",
     "out_of_bounds"),  # NEWS2 has SpO2 scales 1 and 2 only
])
def test_a_control_record_that_may_not_enter_is_refused_with_its_reason(
        source: str, value: bytes, kid: str | None, reason: str) -> None:
    topic = {"ack": "alerts.ack", "settings": "patients.settings", "census": "patients.census"}[source]
    headers = signed_by(kid, topic, b"4B", value) if kid else []
    with pytest.raises(gate.Refused) as refused:
        gate.check_entry(RING, source, topic, b"4B", value, headers)
    assert refused.value.reason == reason


def test_a_control_record_on_vitals_counts_only_with_a_workers_signature() -> None:
    value = orjson.dumps({"ack": {"patient_id": "p1"}})
    record = types.SimpleNamespace(topic="vitals", key=b"p1", value=value, headers=[])
    with pytest.raises(gate.Refused, match="unsigned"):  # written straight onto vitals
        gate.check_on_vitals(RING, record, orjson.loads(value))
    record.headers = signed_by("station-1", "vitals", b"p1", value)
    with pytest.raises(gate.Refused, match="wrong_service"):
        gate.check_on_vitals(RING, record, orjson.loads(value))
    record.headers = signed_by("worker-1", "vitals", b"p1", value)
    gate.check_on_vitals(RING, record, orjson.loads(value))
    samples = types.SimpleNamespace(topic="vitals", key=None, value=b'{"rows": []}', headers=[])
    gate.check_on_vitals(RING, samples, {"rows": []})  # readings are not signed


def test_an_acknowledgement_applies_only_on_its_ward_within_the_control_window() -> None:
    with pytest.raises(gate.Refused, match="ward"):
        gate.check_ward({"ward": "4B"}, "4C")
    gate.check_ward({"ward": "4B"}, "4B")
    gate.check_ward({"ward": "4B"}, "")  # a patient not placed on a ward yet
    assert gate.check_acknowledgement({"actor": NURSE, "at_ms": NOW_MS - 5_000}, NOW_MS, 60.0) == (
        NURSE, NOW_MS - 5_000)
    with pytest.raises(gate.Refused, match="ack_stale_or_future"):  # replayed an hour later
        gate.check_acknowledgement({"actor": NURSE, "at_ms": NOW_MS - 3_600_000}, NOW_MS, 60.0)
    with pytest.raises(gate.Refused, match="ack_role"):
        gate.check_acknowledgement({"actor": {**NURSE, "role": "porter"}, "at_ms": NOW_MS}, NOW_MS, 60.0)
    assert gate.check_acknowledgement({"by": "legacy", "at_ms": 0}, NOW_MS, 60.0) == (None, 0)
