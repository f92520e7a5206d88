"""Gateway messages from samples: canonical JSON, a FHIR R4 Bundle, or HL7 v2 ORU^R01
(IHE PCD-01). Each function returns ONE message, as a gateway would send it.

Codes come from `vitalstream.ingest.codes`, the table the parsers read, so what is written
here is read back as the same samples. FHIR and HL7 carry what their code tables have a
code for: the six numeric vital signs, and in FHIR also the oxygen status (a component of
the SpO2 Observation). Samples a format cannot carry are left out; `encodable` says which.

>>> from vitalstream.samples import Sample
>>> s = Sample("p1", "4B", "12", "heart_rate", 88.0, "/min", 1773569700000, "mon-4B-12", 0)
>>> b"MDC_ECG_HEART_RATE" in to_hl7_pcd01([s])
True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from vitalstream.ingest.codes import (
    LOINC_INHALED_O2_FLOW,
    LOINC_SYSTEM,
    MDC_SYSTEM,
    OBSERVATION_CATEGORY_SYSTEM,
    PREFERRED_LOINC,
    PREFERRED_MDC,
    PREFERRED_MDC_UNIT,
    PREFERRED_UCUM,
    UCUM_SYSTEM,
)
from vitalstream.samples import Sample

FORMATS: tuple[str, ...] = ("json", "fhir", "hl7")
# Supplemental oxygen is written as an inhaled flow: 0 L/min on air, 2 L/min on oxygen.
OXYGEN_FLOW_L_MIN = 2.0


def encodable(parameter: str, fmt: str) -> bool:
    """Whether ``fmt`` can carry ``parameter`` (on_oxygen in FHIR only beside an SpO2)."""
    if fmt == "json":
        return True
    if fmt == "fhir":
        return parameter in PREFERRED_LOINC or parameter == "on_oxygen"
    if fmt == "hl7":
        return parameter in PREFERRED_MDC
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def to_json(samples: Sequence[Sample]) -> bytes:
    """Canonical JSON: ``{"samples": [...]}`` (what `vitalstream.ingest.parse_json` reads)."""
    return orjson.dumps({"samples": [_json_record(s) for s in samples]})


def _json_record(sample: Sample) -> dict[str, Any]:
    record = sample.to_dict()
    del record["ingest_time_ms"]  # set by ingest on receipt, not by the device
    return record


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fhir_id(text: str) -> str:
    """FHIR ids are [A-Za-z0-9-.]{1,64}."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)[:64] or "x"


def to_fhir_bundle(samples: Sequence[Sample]) -> bytes:
    """A FHIR R4 collection Bundle: Patient, Encounter with ward and bed Locations, Device,
    and one vital-signs Observation per sample (on_oxygen rides on the SpO2 Observation as
    an inhaled-oxygen-flow component; without an SpO2 in the same list it is left out)."""
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(resource: dict[str, Any]) -> str:
        key = f"{resource['resourceType']}/{resource['id']}"
        if key not in seen:
            seen.add(key)
            entries.append({"fullUrl": key, "resource": resource})
        return key

    oxygen = {(s.patient_id, s.device_time_ms, s.source): bool(s.value)
              for s in samples if s.parameter == "on_oxygen"}
    observations = []
    for number, sample in enumerate(samples):
        if sample.parameter not in PREFERRED_LOINC:
            continue
        patient = add({"resourceType": "Patient", "id": _fhir_id(sample.patient_id),
                       "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": sample.patient_id}]})
        ward_ref = add({"resourceType": "Location", "id": _fhir_id(f"ward-{sample.ward}"), "name": sample.ward,
                        "physicalType": {"coding": [{"code": "wa"}]}})
        bed_ref = add({"resourceType": "Location", "id": _fhir_id(f"bed-{sample.ward}-{sample.bed}"),
                       "name": sample.bed, "physicalType": {"coding": [{"code": "bd"}]},
                       "partOf": {"reference": ward_ref}})
        encounter = add({"resourceType": "Encounter", "id": _fhir_id(f"enc-{sample.patient_id}"),
                         "status": "in-progress", "subject": {"reference": patient},
                         "location": [{"location": {"reference": bed_ref}}]})
        device = add({"resourceType": "Device", "id": _fhir_id(f"dev-{sample.source}"),
                      "identifier": [{"value": sample.source}]})
        loinc, mdc = PREFERRED_LOINC[sample.parameter], PREFERRED_MDC[sample.parameter]
        observation: dict[str, Any] = {
            "resourceType": "Observation", "id": f"obs-{number}", "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC_SYSTEM, "code": loinc.code, "display": loinc.display},
                                {"system": MDC_SYSTEM, "code": mdc.code, "display": mdc.name}]},
            "subject": {"reference": patient}, "encounter": {"reference": encounter},
            "device": {"reference": device}, "effectiveDateTime": _iso(sample.device_time_ms),
            "valueQuantity": {"value": sample.value, "unit": PREFERRED_UCUM[sample.parameter],
                              "system": UCUM_SYSTEM, "code": PREFERRED_UCUM[sample.parameter]},
        }
        key = (sample.patient_id, sample.device_time_ms, sample.source)
        if sample.parameter == "spo2" and key in oxygen:
            observation["component"] = [{
                "code": {"coding": [{"system": LOINC_SYSTEM, "code": LOINC_INHALED_O2_FLOW}]},
                "valueQuantity": {"value": OXYGEN_FLOW_L_MIN if oxygen[key] else 0.0, "unit": "L/min",
                                  "system": UCUM_SYSTEM, "code": "L/min"}}]
        observations.append({"fullUrl": f"Observation/obs-{number}", "resource": observation})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries + observations}
    return orjson.dumps(bundle)


def _hl7_time(ms: int) -> str:
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.strftime("%Y%m%d%H%M%S") + f".{ms % 1000:03d}+0000"


def _hl7_text(text: str) -> str:
    """Escape the HL7 delimiters in free text (|^~\\&)."""
    escapes = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "~": "\\R\\", "&": "\\T\\"}
    return "".join(escapes.get(c, c) for c in text)


def _hl7_number(value: float) -> str:
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return text or "0"


def to_hl7_pcd01(samples: Sequence[Sample], control_id: str = "1") -> bytes:
    """An ORU^R01 (HL7 v2.6, IHE PCD-01) for the samples of ONE patient: MSH, PID (PID-3),
    PV1 (PV1-3 ward^^bed), OBR (OBR-7 time of the first sample), one OBX per sample with
    the MDC code, value, MDC unit, OBX-8 'questionable' for flagged artefacts, OBX-14 time
    and OBX-18 device id. Segments end with a carriage return, no MLLP frame."""
    carried = [s for s in samples if s.parameter in PREFERRED_MDC]
    if not carried:
        raise ValueError("no sample with an MDC code to send (HL7 carries the six numeric vitals)")
    first = carried[0]
    if any(s.patient_id != first.patient_id for s in carried):
        raise ValueError("one PCD-01 message carries one patient's samples")
    sender = _hl7_text(first.source)
    segments = [
        f"MSH|^~\\&|{sender}|VITALSTREAM-SIM|||{_hl7_time(first.device_time_ms)}||ORU^R01^ORU_R01|"
        f"{_hl7_text(control_id)}|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        f"PID|||{_hl7_text(first.patient_id)}^^^VITALSTREAM^MR",
        f"PV1||I|{_hl7_text(first.ward)}^^{_hl7_text(first.bed)}",
        f"OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{_hl7_time(first.device_time_ms)}",
    ]
    for number, sample in enumerate(carried, start=1):
        term = PREFERRED_MDC[sample.parameter]
        unit_code, unit_name = PREFERRED_MDC_UNIT[sample.parameter]
        status = "questionable" if sample.artefact else ""
        segments.append(
            f"OBX|{number}|NM|{term.code}^{term.name}^MDC|1.1.1.{number}|{_hl7_number(float(sample.value))}|"
            f"{unit_code}^{unit_name}^MDC||{status}|||R|||{_hl7_time(sample.device_time_ms)}||||"
            f"{_hl7_text(sample.source)}")
    return ("\r".join(segments) + "\r").encode("utf-8")


def to_message(samples: Sequence[Sample], fmt: str, control_id: str = "1") -> bytes:
    """One gateway message in ``fmt`` (json, fhir or hl7)."""
    if fmt == "json":
        return to_json(samples)
    if fmt == "fhir":
        return to_fhir_bundle(samples)
    if fmt == "hl7":
        return to_hl7_pcd01(samples, control_id)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
