"""The canonical sample: one measurement of one parameter of one patient.

Every gateway format (JSON, HL7 v2, FHIR R4) is turned into these records by
`vitalstream.ingest`; everything downstream of the ``vitals`` topic reads only these.

>>> s = Sample(patient_id="p1", ward="4B", bed="12", parameter="heart_rate",
...            value=88.0, unit="/min", device_time_ms=1773569700000,
...            source="dev-1", ingest_time_ms=1773569700050)
>>> decode_sample(encode_sample(s)) == s
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

# Canonical parameters with their canonical unit. The index of each parameter in
# PARAMETERS is its column in every numeric array (features, training tables).
PARAMETERS: tuple[str, ...] = (
    "heart_rate",
    "resp_rate",
    "spo2",
    "systolic_bp",
    "diastolic_bp",
    "temperature",
    "consciousness",
    "on_oxygen",
    "spo2_scale",
)
CANONICAL_UNITS: dict[str, str] = {
    "heart_rate": "/min",
    "resp_rate": "/min",
    "spo2": "%",
    "systolic_bp": "mmHg",
    "diastolic_bp": "mmHg",
    "temperature": "Cel",
    "consciousness": "ACVPU",
    "on_oxygen": "bool",
    "spo2_scale": "scale",
}
PARAM_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAMETERS)}

# The parameters that are continuous numbers (the feature engine's inputs).
NUMERIC_PARAMETERS: tuple[str, ...] = PARAMETERS[:6]

# ACVPU is carried as a letter; the numeric code keeps arrays numeric (0 = alert).
ACVPU: tuple[str, ...] = ("A", "C", "V", "P", "U")


# Device times are epoch milliseconds from 1970 up to the year 10000 (exclusive): what a
# datetime can print and an int64 can carry.
MAX_TIME_MS = 253_402_300_800_000


class SampleError(ValueError):
    """A record that cannot be a canonical sample; the message is the reason."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One measurement. ``value`` is a float for numeric parameters, the ACVPU letter
    for ``consciousness``, a bool for ``on_oxygen`` and 1 or 2 for ``spo2_scale``.
    Times are UTC milliseconds since the epoch."""

    patient_id: str
    ward: str
    bed: str
    parameter: str
    value: float | str | bool
    unit: str
    device_time_ms: int
    source: str
    ingest_time_ms: int
    source_code: str = ""
    artefact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalise_value(parameter: str, value: Any) -> float | str | bool:
    """The canonical Python type of a value of ``parameter``; raises SampleError."""
    if parameter == "consciousness":
        if isinstance(value, str) and value.strip().upper() in ACVPU:
            return value.strip().upper()
        raise SampleError(f"consciousness must be one of A, C, V, P, U, got {value!r}")
    if parameter == "on_oxygen":
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise SampleError(f"on_oxygen must be true or false, got {value!r}")
    if parameter == "spo2_scale":
        if value in (1, 2) and not isinstance(value, bool):
            return int(value)
        raise SampleError(f"spo2_scale must be 1 or 2, got {value!r}")
    if parameter not in PARAM_INDEX:
        raise SampleError(f"unknown parameter {parameter!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SampleError(f"{parameter} must be a number, got {type(value).__name__}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise SampleError(f"{parameter} must be a finite number, got {value!r}")
    return number


def sample_from_dict(record: Mapping[str, Any], ingest_time_ms: int | None = None) -> Sample:
    """Validate a decoded JSON object as a canonical sample; raises SampleError.
    ``ingest_time_ms``, when given, is the receipt time (else the record's own, if valid)."""
    if not isinstance(record, Mapping):
        raise SampleError(f"sample must be a JSON object, got {type(record).__name__}")
    missing = [k for k in ("patient_id", "parameter", "value", "device_time_ms") if k not in record]
    if missing:
        raise SampleError(f"missing field(s): {', '.join(missing)}")
    parameter = record["parameter"]
    if not isinstance(parameter, str) or parameter not in PARAM_INDEX:
        raise SampleError(f"unknown parameter {parameter!r}")
    device_time_ms = record["device_time_ms"]
    if isinstance(device_time_ms, bool) or not isinstance(device_time_ms, int | float):
        raise SampleError("device_time_ms must be a number of milliseconds")
    if not 0 <= device_time_ms < MAX_TIME_MS:
        raise SampleError("device_time_ms must be between 1970 and the year 9999")
    texts = {}
    for key in ("patient_id", "ward", "bed", "source", "unit", "source_code"):
        text = record.get(key, "")
        if not isinstance(text, str | int) or isinstance(text, bool):
            raise SampleError(f"{key} must be a string")
        texts[key] = str(text)
    if not texts["patient_id"]:
        raise SampleError("patient_id is empty")
    unit = texts["unit"] or CANONICAL_UNITS[parameter]
    if unit != CANONICAL_UNITS[parameter]:
        raise SampleError(
            f"{parameter} in {unit!r}: canonical JSON must use {CANONICAL_UNITS[parameter]!r}"
        )
    ingest = record.get("ingest_time_ms", 0) if ingest_time_ms is None else ingest_time_ms
    if not isinstance(ingest, int | float) or isinstance(ingest, bool) or not 0 <= ingest < MAX_TIME_MS:
        ingest = 0
    return Sample(
        patient_id=texts["patient_id"],
        ward=texts["ward"],
        bed=texts["bed"],
        parameter=parameter,
        value=normalise_value(parameter, record["value"]),
        unit=unit,
        device_time_ms=int(device_time_ms),
        source=texts["source"],
        ingest_time_ms=int(ingest),
        source_code=texts["source_code"],
        artefact=bool(record.get("artefact", False)),
    )


# The internal `vitals` topic carries samples as rows: the fields of Sample in declaration
# order, already validated at the edge, so the monitor takes them without validating
# again. This is the one home of the layout: every module reads a row's fields through the
# indices below (or unpacks a whole row in this order, as the monitor's hot loop does).
SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Sample))
ROW_WIDTH = len(SAMPLE_FIELDS)
(R_PATIENT, R_WARD, R_BED, R_PARAMETER, R_VALUE, R_UNIT, R_TIME, R_SOURCE, R_INGEST, R_SOURCE_CODE,
 R_ARTEFACT) = range(ROW_WIDTH)
assert SAMPLE_FIELDS[R_TIME] == "device_time_ms" and SAMPLE_FIELDS[R_ARTEFACT] == "artefact"


def sample_row(sample: Sample) -> tuple[Any, ...]:
    """The row of a sample (``SAMPLE_FIELDS`` order)."""
    return (sample.patient_id, sample.ward, sample.bed, sample.parameter, sample.value,
            sample.unit, sample.device_time_ms, sample.source, sample.ingest_time_ms,
            sample.source_code, sample.artefact)


def row_in_bed(row: Any, ward: str, bed: str) -> list[Any]:
    """The same reading placed in another ward and bed (the census's, when a gateway's
    label lags a transfer)."""
    return [*row[:R_WARD], ward, bed, *row[R_BED + 1:]]


def sample_from_row(row: list[Any]) -> Sample:
    if len(row) != len(SAMPLE_FIELDS):
        raise SampleError(f"a sample row has {len(SAMPLE_FIELDS)} fields, got {len(row)}")
    return Sample(*row)


def encode_sample(sample: Sample) -> bytes:
    return orjson.dumps(dataclasses.asdict(sample))


def decode_sample(raw: bytes) -> Sample:
    return sample_from_dict(orjson.loads(raw))
