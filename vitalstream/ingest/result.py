"""What parsing one raw message gives: samples and technical events, or a rejection."""

from __future__ import annotations

import dataclasses
from typing import Any

from vitalstream.samples import Sample

# Technical event kinds. ``sensor_off``: the device said the probe, sensor or lead is off
# (or the value cannot be obtained); ``no_value``: a mapped observation arrived without a
# value and without such a marker.
TECHNICAL_KINDS: tuple[str, ...] = ("sensor_off", "no_value")

# Every dead-letter reason code ingest gives (docs/ingest.md explains each). internal_error
# is the safety net for a parser bug: the fuzz tests require that it never happens.
REASON_CODES: frozenset[str] = frozenset({
    "too_large", "not_bytes", "unsupported_format", "internal_error", "empty_message",
    "not_json", "invalid_sample",
    "not_hl7", "malformed_hl7", "unsupported_message",
    "invalid_fhir", "unsupported_resource", "unknown_modifier",
    "missing_patient", "bad_timestamp", "bad_value", "missing_unit", "bad_unit",
    "implausible_value", "future_time", "no_observations",
})


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was dead-lettered. ``reason`` is a stable machine-readable code."""

    reason: str
    detail: str


@dataclasses.dataclass(slots=True)
class IngestResult:
    """``ignored`` counts observations skipped on purpose (unknown codes, panels without a
    value, entered-in-error or test data); they never make a message a dead letter alone."""

    samples: list[Sample] = dataclasses.field(default_factory=list)
    technical: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rejection: Rejection | None = None
    format: str = "json"
    ignored: int = 0

    @property
    def patient_id(self) -> str:
        """The first patient this message is about ('' when none): a partition key."""
        if self.samples:
            return self.samples[0].patient_id
        if self.technical:
            return str(self.technical[0].get("patient_id", ""))
        return ""


def technical_event(kind: str, patient_id: str, ward: str, bed: str, parameter: str,
                    device_time_ms: int, source: str, detail: str) -> dict[str, Any]:
    """A technical event in the shape the monitor reads."""
    return {"kind": kind, "patient_id": patient_id, "ward": ward, "bed": bed,
            "parameter": parameter, "device_time_ms": device_time_ms, "source": source,
            "detail": detail}
