"""Ingest: raw gateway bytes -> canonical samples, or a dead letter with its reason.

`parse_raw` is pure (the receive time is an argument) and never raises. Every message ends
in exactly one place: ``IngestResult.rejection`` is None and the samples (possibly none,
e.g. only technical events) go on, or it is set and the original bytes go to the
dead-letter topic. Formats: HL7 v2 ORU^R01 (IHE PCD-01, `hl7v2`), FHIR R4 Observation or
Bundle (`fhir`), canonical JSON (here). Code tables: `codes`; units and plausibility:
`normalise`; the rules and reason codes: docs/ingest.md.

Whatever the format, `vet` then applies the checks every sample shares: a value inside the
possible range of its parameter (`normalise.PLAUSIBILITY`, else ``implausible_value``) and a
device time not ahead of the receive time by more than ``max_ahead_ms`` (``future_time``).

>>> result = parse_raw(b'{"patient_id": "p1", "parameter": "spo2", "value": 97, '
...                    b'"device_time_ms": 1773569700000}', received_ms=1773569700050)
>>> (result.rejection, result.samples[0].value, result.samples[0].ingest_time_ms)
(None, 97.0, 1773569700050)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

import msgspec
import orjson

from vitalstream.ingest.normalise import PLAUSIBILITY, ObservationError, check_plausible
from vitalstream.ingest.result import (
    REASON_CODES,
    TECHNICAL_KINDS,
    IngestResult,
    Rejection,
    technical_event,
)
from vitalstream.ingest.times import MAX_AHEAD_MS, check_not_ahead
from vitalstream.samples import (
    CANONICAL_UNITS,
    MAX_TIME_MS,
    NUMERIC_PARAMETERS,
    SampleError,
    sample_from_dict,
)

__all__ = [
    "FORMATS", "MAX_AHEAD_MS", "MAX_MESSAGE_BYTES", "REASON_CODES", "TECHNICAL_KINDS", "IngestResult", "Rejection",
    "dead_letter", "detect_format", "fast_rows", "json_rows", "parse_json", "parse_raw", "technical_event", "vet",
]

MAX_MESSAGE_BYTES = 1_048_576
FORMATS: tuple[str, ...] = ("hl7", "fhir", "json")


def detect_format(raw: bytes) -> str:
    """Sniff the gateway format: HL7 v2 (MSH or MLLP start block), FHIR JSON, or canonical JSON."""
    head = raw.lstrip()[:64]
    if head.startswith(b"\x0b") or head[:3] in (b"MSH", b"FHS", b"BHS"):
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


# Parameter -> (canonical unit, possible low, high, plausible low, high): one lookup a record.
_NUMERIC = {name: (CANONICAL_UNITS[name], *PLAUSIBILITY[name]) for name in NUMERIC_PARAMETERS}
_EXACT_FLOAT = 2**53  # integers beyond this are left to the full path (float() rounds them)


class _Reading(msgspec.Struct):
    """A canonical JSON sample as the fast path takes it: msgspec checks the JSON types
    while it decodes (no coercion: a string where a number belongs fails)."""

    patient_id: str
    parameter: str
    value: int | float
    device_time_ms: int
    ward: str = ""
    bed: str = ""
    source: str = ""
    source_code: str = ""
    unit: str = ""
    artefact: bool = False


class _Batch(msgspec.Struct):
    samples: list[_Reading]


_DECODE_ONE = msgspec.json.Decoder(_Reading).decode
_DECODE_LIST = msgspec.json.Decoder(list[_Reading]).decode
_DECODE_BATCH = msgspec.json.Decoder(_Batch).decode


def json_rows(raw: bytes, received_ms: int, max_ahead_ms: int = MAX_AHEAD_MS) -> list[tuple[Any, ...]] | None:
    """The fast path of the commonest message: canonical JSON whose records are all plain
    numeric samples with string fields. Returns their rows (``sample_row`` order), or None
    for anything else, which ``parse_raw`` then handles (and explains, if it is wrong).
    For a message it accepts it gives exactly what ``parse_raw`` gives (tested on both).
    msgspec decodes straight into typed records: a third of the time of decoding to
    dicts and checking each field in Python."""
    start = raw[:1]
    if len(raw) > MAX_MESSAGE_BYTES or start not in (b"{", b"[") or b'"resourceType"' in raw[:4096]:
        return None
    try:
        if start == b"[":
            records = _DECODE_LIST(raw)
        elif b'"samples"' in raw:  # a gateway's {"samples": [...]} (or a field's text: then the full path)
            records = _DECODE_BATCH(raw).samples
        else:
            records = [_DECODE_ONE(raw)]
    # (ValidationError is a DecodeError; invalid UTF-8 in a string is a UnicodeDecodeError;
    # nesting deep inside an unknown field recurses): the full path explains each of them.
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if not records:
        return None
    ingest_ms = received_ms if 0 <= received_ms < MAX_TIME_MS else 0
    # The same checks as `vet`, inline: anything they refuse goes to the full path, which says why.
    latest_ms = min(received_ms + max_ahead_ms, MAX_TIME_MS - 1) if received_ms > 0 else MAX_TIME_MS - 1
    rows = []
    numeric = _NUMERIC
    for record in records:
        parameter, value, time_ms, given_unit = record.parameter, record.value, record.device_time_ms, record.unit
        limits = numeric.get(parameter)
        if limits is None or not 0 <= time_ms <= latest_ms or not record.patient_id:
            return None
        unit, possible_low, possible_high, plausible_low, plausible_high = limits
        if given_unit and given_unit != unit:
            return None
        if type(value) is int:
            if not -_EXACT_FLOAT < value < _EXACT_FLOAT:
                return None
            value = float(value)
        if not possible_low <= value <= possible_high:  # (NaN too)
            return None
        artefact = record.artefact or not plausible_low <= value <= plausible_high
        # The row layout of vitalstream.samples (SAMPLE_FIELDS), written out: a call per
        # reading would cost more than the rest of this loop; a test holds it to sample_row.
        rows.append((record.patient_id, record.ward, record.bed, parameter, value, unit, time_ms,
                     record.source, ingest_ms, record.source_code, artefact))
    return rows


def vet(result: IngestResult, received_ms: int, max_ahead_ms: int = MAX_AHEAD_MS) -> IngestResult:
    """The checks every format shares, applied after its parser: each numeric value inside
    its possible range (a value outside its plausible range is flagged as artefact), and no
    sample or technical event stamped more than ``max_ahead_ms`` after ``received_ms``.
    One failing reading rejects the whole message, as the parsers do."""
    if result.rejection is not None:
        return result
    try:
        for index, sample in enumerate(result.samples):
            if sample.parameter in PLAUSIBILITY:
                if check_plausible(sample.parameter, sample.value) and not sample.artefact:  # type: ignore[arg-type]
                    result.samples[index] = dataclasses.replace(sample, artefact=True)
            check_not_ahead(sample.device_time_ms, received_ms, max_ahead_ms)
        for event in result.technical:
            check_not_ahead(int(event.get("device_time_ms") or 0), received_ms, max_ahead_ms)
    except ObservationError as exc:
        return IngestResult(rejection=Rejection(exc.reason, exc.detail), format=result.format,
                            ignored=result.ignored)
    return result


_BLANK_BYTES = b" \t\r\n\x0b\x1c\x00"
_BLANK_START = frozenset(_BLANK_BYTES + b"\xef")  # whitespace, MLLP framing, a UTF-8 BOM


def _has_content(raw: bytes) -> bool:
    return bool(raw.strip(_BLANK_BYTES).removeprefix(b"\xef\xbb\xbf").strip(_BLANK_BYTES))


def parse_raw(raw: bytes, received_ms: int, fmt: str | None = None,
              max_ahead_ms: int = MAX_AHEAD_MS) -> IngestResult:
    """Parse one raw message of any supported format (sniffed when ``fmt`` is None), then
    `vet` it. ``received_ms`` is the wall-clock receive time (0: unknown, no future check)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return IngestResult(rejection=Rejection("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}"))
    if not isinstance(raw, bytes | bytearray | memoryview):
        return IngestResult(rejection=Rejection("not_bytes", f"got {type(raw).__name__}"))
    raw = bytes(raw)
    if not raw or (raw[0] in _BLANK_START and not _has_content(raw)):
        # An empty frame, body or file is nothing received, not a message with nothing in it.
        result = IngestResult(rejection=Rejection("empty_message", f"nothing received ({len(raw)} bytes, "
                                                  "no content)"))
        result.format = fmt if fmt in FORMATS else "unknown"
        return result
    if raw[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark (.NET, Windows) is no content
        raw = raw[3:]
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
        result = vet(result, received_ms, max_ahead_ms)
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


def fast_rows(raw: bytes, received_ms: int, fmt: str | None = None,
              max_ahead_ms: int = MAX_AHEAD_MS) -> tuple[str, list[tuple[Any, ...]]] | None:
    """The fast path of the common messages of each format: (format, rows in ``sample_row``
    order), exactly what ``parse_raw`` gives for them, or None for any message it does not
    take (then ``parse_raw`` reads it, or refuses it with its reason). JSON: `json_rows`;
    HL7 v2: `hl7v2.hl7_rows` (PCD-01 numeric OBX rows); FHIR: `fhir.fhir_rows` (a Bundle or
    an Observation of vital signs). ``fmt`` is the door's format header, None when unknown."""
    start = raw[:3]
    try:
        if start == b"MSH":
            if fmt is None or fmt == "hl7":
                from vitalstream.ingest.hl7v2 import hl7_rows

                rows = hl7_rows(raw, received_ms, max_ahead_ms)
                return ("hl7", rows) if rows is not None else None
            return None
        if fmt == "fhir" or (fmt is None and start[:1] == b"{" and b'"resourceType"' in raw[:4096]):
            from vitalstream.ingest.fhir import fhir_rows

            rows = fhir_rows(raw, received_ms, max_ahead_ms)
            return ("fhir", rows) if rows is not None else None
        if fmt is None or fmt == "json":
            rows = json_rows(raw, received_ms, max_ahead_ms)
            return ("json", rows) if rows is not None else None
    except Exception:  # a surprise is the full parser's to explain (internal_error, with its detail)
        return None
    return None
