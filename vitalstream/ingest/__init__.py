"""Ingest: raw gateway bytes -> canonical samples, or a dead letter with its reason.

`parse_raw` is pure (the receive time is an argument). Every message ends in exactly one
place: ``IngestResult.rejection`` is None and the samples (possibly none, e.g. only
technical events) go on, or it is set and the original bytes go to the dead-letter topic.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson

from vitalstream.samples import Sample, SampleError, sample_from_dict

MAX_MESSAGE_BYTES = 1_048_576


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was dead-lettered. ``reason`` is a stable machine-readable code."""

    reason: str
    detail: str


@dataclasses.dataclass(slots=True)
class IngestResult:
    samples: list[Sample] = dataclasses.field(default_factory=list)
    technical: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rejection: Rejection | None = None
    format: str = "json"


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
            sample = sample_from_dict(record)
        except SampleError as exc:
            # One bad record rejects the whole message: a gateway batch is one unit, and
            # half-applied batches would make the dead letter misleading to replay.
            return IngestResult(rejection=Rejection("invalid_sample", f"record {index}: {exc}"))
        samples.append(dataclasses.replace(sample, ingest_time_ms=received_ms))
    return IngestResult(samples=samples)


def parse_raw(raw: bytes, received_ms: int, fmt: str | None = None) -> IngestResult:
    """Parse one raw message of any supported format (sniffed when ``fmt`` is None)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return IngestResult(rejection=Rejection("too_large", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}"))
    fmt = fmt or detect_format(raw)
    if fmt == "json":
        return parse_json(raw, received_ms)
    result = IngestResult(rejection=Rejection("unsupported_format", f"format {fmt!r} is not supported"))
    result.format = fmt
    return result


def dead_letter(raw: bytes, rejection: Rejection, fmt: str, source: str, received_ms: int) -> bytes:
    """The dead-letter record: reason, detail, where it came from and the original bytes."""
    return orjson.dumps({
        "reason": rejection.reason,
        "detail": rejection.detail,
        "format": fmt,
        "source": source,
        "received_ms": received_ms,
        "original_b64": base64.b64encode(raw).decode("ascii"),
    })
