"""Ingest: raw gateway bytes -> canonical samples, or a dead letter with its reason.

`parse_raw` is pure (the receive time is an argument) and never raises. Every message ends
in exactly one place: ``IngestResult.rejection`` is None and the samples (possibly none,
e.g. only technical events) go on, or it is set and the original bytes go to the
dead-letter topic. Formats: HL7 v2 ORU^R01 (IHE PCD-01, `hl7v2`), FHIR R4 Observation or
Bundle (`fhir`), canonical JSON (here). Code tables: `codes`; units and plausibility:
`normalise`; the rules and reason codes: docs/ingest.md.

>>> result = parse_raw(b'{"patient_id": "p1", "parameter": "spo2", "value": 97, '
...                    b'"device_time_ms": 1773569700000}', received_ms=1773569700050)
>>> (result.rejection, result.samples[0].value, result.samples[0].ingest_time_ms)
(None, 97.0, 1773569700050)
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from vitalstream.ingest.result import (
    REASON_CODES,
    TECHNICAL_KINDS,
    IngestResult,
    Rejection,
    technical_event,
)
from vitalstream.samples import (
    CANONICAL_UNITS,
    MAX_TIME_MS,
    NUMERIC_PARAMETERS,
    SampleError,
    sample_from_dict,
)

__all__ = [
    "FORMATS", "MAX_MESSAGE_BYTES", "REASON_CODES", "TECHNICAL_KINDS", "IngestResult", "Rejection",
    "dead_letter", "detect_format", "json_rows", "parse_json", "parse_raw", "technical_event",
]

MAX_MESSAGE_BYTES = 1_048_576
FORMATS: tuple[str, ...] = ("hl7", "fhir", "json")


def detect_format(raw: bytes) -> str:
    """Sniff the gateway format: HL7 v2 (MSH or MLLP start block), FHIR JSON, or canonical JSON."""
    head = raw.lstrip()[:64]
    if head.startswith(b"\x0b") or head.startswith(b"MSH"):
        return "hl7"
    if b'"resourceType"' in raw[:4096]:
        return "fhir"
    return "json"


def parse_json(raw: bytes, received_ms: int) -> IngestResult:
    """Canonical JSON: one sample object, a list of them, or {"samples": [...]}."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return IngestResult(rejection=Rejection("not_json", str(exc)))
    records = document.get("samples") if isinstance(document, dict) and "samples" in document else document
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not records:
        return IngestResult(rejection=Rejection("invalid_sample", "expected a sample object or a non-empty list"))
    samples = []
    for index, record in enumerate(records):
        try:
            sample = sample_from_dict(record, ingest_time_ms=received_ms)
        except SampleError as exc:
            # One bad record rejects the whole message: a gateway batch is one unit, and
            # half-applied batches would make the dead letter misleading to replay.
            return IngestResult(rejection=Rejection("invalid_sample", f"record {index}: {exc}"))
        samples.append(sample)
    return IngestResult(samples=samples)


_NUMERIC_UNITS = {name: CANONICAL_UNITS[name] for name in NUMERIC_PARAMETERS}
_EXACT_FLOAT = 2**53  # integers beyond this are left to the full path (float() rounds them)


def json_rows(raw: bytes, received_ms: int) -> list[tuple[Any, ...]] | None:
    """The fast path of the commonest message: canonical JSON whose records are all plain
    numeric samples with string fields. Returns their rows (``sample_row`` order), or None
    for anything else, which ``parse_raw`` then handles (and explains, if it is wrong).
    For a message it accepts it gives exactly what ``parse_raw`` gives (tested on both)."""
    if len(raw) > MAX_MESSAGE_BYTES or raw[:1] not in (b"{", b"[") or b'"resourceType"' in raw[:4096]:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(document) is dict:
        records = document["samples"] if "samples" in document else [document]
    else:
        records = document
    if type(records) is not list or not records:
        return None
    ingest_ms = received_ms if 0 <= received_ms < MAX_TIME_MS else 0
    rows = []
    units = _NUMERIC_UNITS
    for record in records:
        if type(record) is not dict:
            return None
        get = record.get
        parameter = get("parameter")
        unit = units.get(parameter) if type(parameter) is str else None
        value, time_ms, patient_id = get("value"), get("device_time_ms"), get("patient_id")
        ward, bed, source, code = get("ward", ""), get("bed", ""), get("source", ""), get("source_code", "")
        given_unit, artefact = get("unit", ""), get("artefact", False)
        kind = type(value)
        if (unit is None or type(time_ms) is not int or not 0 <= time_ms < MAX_TIME_MS
                or type(patient_id) is not str or not patient_id
                or type(ward) is not str or type(bed) is not str or type(source) is not str
                or type(code) is not str or type(artefact) is not bool
                or type(given_unit) is not str or (given_unit and given_unit != unit)):
            return None
        if kind is float:
            if value - value != 0.0:  # NaN or infinite
                return None
        elif kind is int and -_EXACT_FLOAT < value < _EXACT_FLOAT:
            value = float(value)
        else:
            return None
        rows.append((patient_id, ward, bed, parameter, value, unit, time_ms, source, ingest_ms, code, artefact))
    return rows


def parse_raw(raw: bytes, received_ms: int, fmt: str | None = None) -> IngestResult:
    """Parse one raw message of any supported format (sniffed when ``fmt`` is None)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return IngestResult(rejection=Rejection("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}"))
    if not isinstance(raw, bytes | bytearray | memoryview):
        return IngestResult(rejection=Rejection("not_bytes", f"got {type(raw).__name__}"))
    raw = bytes(raw)
    fmt = fmt or detect_format(raw)
    try:
        if fmt == "json":
            result = parse_json(raw, received_ms)
        elif fmt == "hl7":
            from vitalstream.ingest.hl7v2 import parse_hl7

            result = parse_hl7(raw, received_ms)
        elif fmt == "fhir":
            from vitalstream.ingest.fhir import parse_fhir

            result = parse_fhir(raw, received_ms)
        else:
            result = IngestResult(rejection=Rejection(
                "unsupported_format", f"format {fmt!r} is not one of {', '.join(FORMATS)}"))
    except Exception as exc:  # the contract: nothing raises, a surprise is a dead letter
        result = IngestResult(rejection=Rejection("internal_error", f"{type(exc).__name__}: {exc}"))
    result.format = fmt if fmt in FORMATS else "unknown"
    return result


# Base64 grows bytes by a third: past this many original bytes a dead letter would not fit
# the broker's default 1 MB record limit, and could never be published.
DEAD_LETTER_ORIGINAL_MAX = 512 * 1024


def dead_letter(raw: bytes, rejection: Rejection, fmt: str, source: str, received_ms: int) -> bytes:
    """The dead-letter record: reason, detail, where it came from and the original bytes.

    An original larger than ``DEAD_LETTER_ORIGINAL_MAX`` (only ``too_large`` messages) is
    cut to that many bytes, with its full length and sha256; the whole message stays on
    the raw topic at ``source`` (topic/partition@offset) for as long as that topic keeps it.
    """
    record = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "format": fmt,
        "source": source,
        "received_ms": received_ms,
        "original_b64": base64.b64encode(raw[:DEAD_LETTER_ORIGINAL_MAX]).decode("ascii"),
    }
    if len(raw) > DEAD_LETTER_ORIGINAL_MAX:
        record.update(original_truncated=True, original_bytes=len(raw),
                      original_sha256=hashlib.sha256(raw).hexdigest())
    return orjson.dumps(record)
