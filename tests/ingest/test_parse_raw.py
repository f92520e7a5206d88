"""The contract the worker relies on: sniffing, never raising, dead letters that replay."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson

from vitalstream.ingest import MAX_MESSAGE_BYTES, dead_letter, detect_format, parse_raw

DATA = Path(__file__).parent / "data"
RECEIVED_MS = 1_773_570_000_000


def test_format_is_sniffed_from_the_bytes():
    assert detect_format((DATA / "pcd01_monitor.hl7").read_bytes()) == "hl7"
    assert detect_format((DATA / "fhir_transaction_bp_panel.json").read_bytes()) == "fhir"
    assert detect_format(b'{"patient_id": "p1"}') == "json"
    assert parse_raw((DATA / "pcd01_monitor.hl7").read_bytes(), RECEIVED_MS).format == "hl7"


def test_canonical_json_batch_is_read():
    batch = orjson.dumps({"samples": [
        {"patient_id": "p1", "parameter": "consciousness", "value": "v", "device_time_ms": 1},
        {"patient_id": "p1", "parameter": "resp_rate", "value": 26, "device_time_ms": 2}]})
    result = parse_raw(batch, RECEIVED_MS)
    # New confusion (V on ACVPU) is carried as its letter.
    assert [s.value for s in result.samples] == ["V", 26.0]
    assert {s.ingest_time_ms for s in result.samples} == {RECEIVED_MS}


def test_oversized_message_is_rejected_before_parsing():
    result = parse_raw(b"MSH" + b"x" * MAX_MESSAGE_BYTES, RECEIVED_MS)
    assert result.rejection.reason == "too_large"


def test_unknown_format_and_non_bytes_are_rejections_not_exceptions():
    assert parse_raw(b"{}", RECEIVED_MS, "xml").rejection.reason == "unsupported_format"
    assert parse_raw("MSH|text", RECEIVED_MS).rejection.reason == "not_bytes"  # type: ignore[arg-type]


def test_dead_letter_keeps_the_original_bytes_and_reason():
    raw = b"MSH|^~\\&|GW|||20260315||ADT^A01|1|P|2.6\r\xff\xfe"
    result = parse_raw(raw, RECEIVED_MS)
    record = orjson.loads(dead_letter(raw, result.rejection, result.format, "vitals.raw/0@7", RECEIVED_MS))
    assert base64.b64decode(record["original_b64"]) == raw
    assert (record["reason"], record["format"], record["source"]) == ("unsupported_message", "hl7", "vitals.raw/0@7")
