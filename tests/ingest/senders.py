"""Messages as third-party senders build them: HL7 v2 with hl7apy's message tree, FHIR with
fhir.resources' R4B models (R4B's Observation, Patient, Device and Bundle are R4's for every
element used here; fhir.resources 8 has no R4 package) serialised by its own JSON writer.
hl7apy writes no batch envelope, so FHS/BHS/BTS/FTS are its segments with the encoding
characters written in, as senders do. Used by tests/ingest and tests/gateway."""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from hl7apy.core import Message, Segment

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
EUI64 = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"


def oru_r01(obx_rows: list[dict[str, str]], version: str = "2.6", control_id: str = "MSG-1",
            pid: dict[str, str] | None = None) -> str:
    """An ORU^R01 as hl7apy builds it: one patient, one OBR, the given OBX fields."""
    message = Message("ORU_R01", version=version)
    message.msh.msh_3 = "MONITOR^0012340000000001^EUI-64"
    message.msh.msh_7 = "20260315101500+0000"
    message.msh.msh_9 = "ORU^R01^ORU_R01" if version >= "2.5" else "ORU^R01"
    message.msh.msh_10 = control_id
    message.msh.msh_11 = "P"
    message.msh.msh_12 = version
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    segment = patient.add_segment("PID")
    for field, value in (pid or {"pid_3": "MRN-7^^^HOSP^MR"}).items():
        setattr(segment, field, value)
    patient.add_group("ORU_R01_VISIT").add_segment("PV1").pv1_3 = "4B^12^A"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.add_segment("OBR")
    obr.obr_4 = "182777000^monitoring of patient^SCT"
    obr.obr_7 = "20260315101500+0000"
    for number, row in enumerate(obx_rows, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
        obx.obx_1 = str(number)
        obx.obx_11 = "R"
        obx.obx_14 = "20260315101500+0000"
        for field, value in row.items():
            setattr(obx, field, value)
    return message.to_er7()


def nm(code: str, value: str, unit: str) -> dict[str, str]:
    return {"obx_2": "NM", "obx_3": code, "obx_5": value, "obx_6": unit}


def envelope(kind: str, **fields: str) -> str:
    segment = Segment(kind, version="2.6")
    for field, value in fields.items():
        setattr(segment, field, value)
    text = segment.to_er7()
    # hl7apy escapes xHS-1/xHS-2 as data; a sender writes the separator and the encoding characters.
    return text.replace(f"{kind}|||", f"{kind}|^~\\&|", 1) if kind in ("FHS", "BHS") else text


HR_MDC = nm("147842^MDC_ECG_HEART_RATE^MDC", "72", "264864^MDC_DIM_BEAT_PER_MIN^MDC")
SPO2_MDC = nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "262688^MDC_DIM_PERCENT^MDC")


def fhir_observation(code: dict, quantity: dict | None = None, **extra) -> bytes:
    document = {"resourceType": "Observation", "status": "final", "code": code,
                "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2026-03-15T10:15:00Z",
                **({"valueQuantity": quantity} if quantity else {}), **extra}
    return Observation.model_validate(document).model_dump_json().encode()


def loinc(code: str) -> dict:
    return {"coding": [{"system": LOINC, "code": code}]}


def component(code: str, value: float, unit: str) -> dict:
    return {"code": loinc(code), "valueQuantity": {"value": value, "system": UCUM, "code": unit, "unit": unit}}


def transaction(subject_reference: str) -> bytes:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5d3c1b8e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-55"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:oid:1.2.3|MRN-55"}},
        {"fullUrl": "urn:uuid:5d3c1b8e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "status": "final", "code": loinc("9279-1"),
                      "subject": {"reference": subject_reference}, "effectiveDateTime": "2026-03-15T10:15:00Z",
                      "valueQuantity": {"value": 23, "system": UCUM, "code": "/min"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    return Bundle.model_validate(bundle).model_dump_json().encode()
