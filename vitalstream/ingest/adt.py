"""Census: who is in which bed, from HL7 v2 ADT and FHIR ``Encounter``. Pure.

Each message becomes one census record for the ``census`` topic, keyed by patient::

    {"event": "admit" | "transfer" | "discharge" | "update", "patient_id", "ward", "bed",
     "at_ms", "source": "hl7" | "fhir", "message_id"}

HL7 v2: ADT^A01 (admit) -> admit, A02 (transfer) -> transfer, A03 (discharge) ->
discharge, A08 (update patient information) -> update. PID-3 is the patient (type MR when
several), PV1-3 the new point of care (ward ^ room ^ bed, as for PCD-01), EVN-2 or MSH-7
the time. FHIR R4 ``Encounter``: ``status`` in-progress/arrived -> admit (or transfer when
the worker already has the patient elsewhere: the worker decides), finished/cancelled ->
discharge; the ward and bed from ``location[].location.display`` or ``identifier.value``
("4B/12", or the ward and bed as two locations of physicalType ``wa`` and ``bd``).

A bed that the hospital's bed list (``VITALSTREAM_CENSUS_BEDS``) does not know is refused
(``unknown_bed``): a mistyped bed must not put a patient's alerts on another ward.

>>> msg = ("MSH|^~\\\\&|ADT|HOSP|VS|HOSP|20260315101500||ADT^A02^ADT_A02|m1|P|2.6\\r"
...        "EVN|A02|20260315101500\\rPID|||MRN123^^^HOSP^MR||Doe^Jane\\rPV1||I|5C^^3")
>>> record = parse_adt(msg.encode(), 0, KnownBeds.parse('{"5C": "1-24"}'))
>>> (record["event"], record["patient_id"], record["ward"], record["bed"])
('transfer', 'MRN123', '5C', '3')
>>> parse_adt(msg.replace("5C^^3", "5C^^31").encode(), 0, KnownBeds.parse('{"5C": "1-24"}'))
Traceback (most recent call last):
...
vitalstream.ingest.adt.CensusError: unknown_bed: Ward 5C has no bed 31
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson

from vitalstream.ingest.hl7v2 import Delimiters, Segment, decode_hl7

EVENTS = {"A01": "admit", "A02": "transfer", "A03": "discharge", "A08": "update"}
CENSUS_EVENTS = frozenset(EVENTS.values())
# HL7 table 0357 code for ERR-3, by census refusal reason.
ERROR_CODES = {"unknown_bed": "103", "missing_patient": "101", "missing_location": "101",
               "unsupported_event": "200", "malformed_adt": "102"}


class CensusError(ValueError):
    """``reason: detail``; ``reason`` is one of ERROR_CODES."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True)
class KnownBeds:
    """The beds of each ward (``{"4B": "1-24", "ICU": ["1", "2", "A"]}``); none: any bed."""

    wards: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> KnownBeds:
        if not text.strip():
            return cls()
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"VITALSTREAM_CENSUS_BEDS is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise ValueError("VITALSTREAM_CENSUS_BEDS must be a JSON object {ward: beds}")
        wards: dict[str, frozenset[str]] = {}
        for ward, beds in document.items():
            if isinstance(beds, str) and "-" in beds and all(p.strip().isdigit() for p in beds.split("-", 1)):
                low, high = (int(p) for p in beds.split("-", 1))
                wards[str(ward)] = frozenset(str(n) for n in range(low, high + 1))
            elif isinstance(beds, list) and all(isinstance(b, str | int) for b in beds):
                wards[str(ward)] = frozenset(str(b) for b in beds)
            else:
                raise ValueError(f"VITALSTREAM_CENSUS_BEDS ward {ward!r}: beds as \"1-24\" or a list")
        return cls(wards)

    def check(self, ward: str, bed: str) -> None:
        if not self.wards:
            return
        if ward not in self.wards:
            raise CensusError("unknown_bed", f"no ward {ward}")
        if bed not in self.wards[ward]:
            raise CensusError("unknown_bed", f"Ward {ward} has no bed {bed}")


def is_adt(raw: bytes) -> bool:
    """Whether an HL7 message is an ADT (MSH-9.1), to route it to the census."""
    head = raw[:512].lstrip(b"\x0b \r\n")
    if not head.startswith(b"MSH") or len(head) < 8:
        return False
    fields = head.split(b"\r", 1)[0].split(head[3:4])
    return len(fields) > 8 and fields[8].split(head[4:5] or b"^")[0] == b"ADT"


def _hl7_ms(text: str, default: int) -> int:
    digits = text[:14]
    if len(digits) < 12 or not digits.isdigit():
        return default
    digits = digits.ljust(14, "0")
    moment = dt.datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def parse_adt(raw: bytes, received_ms: int, beds: KnownBeds) -> dict[str, Any]:
    """One HL7 ADT message -> its census record; ``CensusError`` with the reason."""
    text = decode_hl7(raw)
    lines = text.split("\r")
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise CensusError("malformed_adt", "no MSH segment")
    try:
        delimiters = Delimiters(lines[0])
    except ValueError as exc:
        raise CensusError("malformed_adt", str(exc)) from None
    segments: dict[str, Segment] = {}
    for line in lines:
        segment = Segment(line, delimiters)
        segments.setdefault(segment.kind, segment)
    msh = segments["MSH"]
    trigger = msh.get(9, 1, 2) or (segments["EVN"].get(1) if "EVN" in segments else "")
    event = EVENTS.get(trigger)
    if event is None:
        raise CensusError("unsupported_event", f"ADT^{trigger} (census takes A01, A02, A03, A08)")
    pid = segments.get("PID")
    patient_id = ""
    if pid is not None:
        for repeat in range(1, pid.repeats(3) + 1):
            identifier = pid.get(3, repeat, 1)
            if identifier and pid.get(3, repeat, 5).upper() == "MR":
                patient_id = identifier
                break
            patient_id = patient_id or identifier
    if not patient_id:
        raise CensusError("missing_patient", "PID-3 is empty")
    pv1 = segments.get("PV1")
    ward, room, bed = (pv1.get(3, 1, i) for i in (1, 2, 3)) if pv1 is not None else ("", "", "")
    bed = f"{room}-{bed}" if room and bed else bed or room
    if event != "discharge":
        if not ward or not bed:
            raise CensusError("missing_location", "PV1-3 needs the ward and the bed")
        beds.check(ward, bed)
    evn = segments.get("EVN")
    at_ms = _hl7_ms(evn.get(2) if evn is not None else "", _hl7_ms(msh.get(7), received_ms))
    return {"event": event, "patient_id": patient_id, "ward": ward, "bed": bed, "at_ms": at_ms,
            "source": "hl7", "message_id": msh.get(10)}


def _fhir_location(encounter: Mapping[str, Any]) -> tuple[str, str]:
    ward = bed = ""
    for entry in encounter.get("location") or ():
        if not isinstance(entry, Mapping) or entry.get("status") == "completed":
            continue
        location = entry.get("location") or {}
        label = str(location.get("display") or (location.get("identifier") or {}).get("value") or "")
        kind = ""
        for coding in (entry.get("physicalType") or {}).get("coding") or ():
            kind = str(coding.get("code") or "")
        if kind == "wa":
            ward = label
        elif kind == "bd":
            bed = label
        elif "/" in label:
            ward, bed = (part.strip() for part in label.split("/", 1))
    return ward, bed


def parse_encounter(encounter: Any, received_ms: int, beds: KnownBeds) -> dict[str, Any]:
    """One FHIR R4 Encounter -> its census record; ``CensusError`` with the reason."""
    if not isinstance(encounter, Mapping) or encounter.get("resourceType") != "Encounter":
        raise CensusError("malformed_adt", "not an Encounter")
    status = encounter.get("status")
    if status in ("in-progress", "arrived"):
        event = "admit"
    elif status in ("finished", "cancelled"):
        event = "discharge"
    else:
        raise CensusError("unsupported_event", f"Encounter status {status!r}")
    subject = encounter.get("subject") or {}
    patient_id = str((subject.get("identifier") or {}).get("value") or "")
    if not patient_id and str(subject.get("reference", "")).startswith("Patient/"):
        patient_id = str(subject["reference"]).split("/", 1)[1]
    if not patient_id:
        raise CensusError("missing_patient", "Encounter.subject has no identifier")
    ward, bed = _fhir_location(encounter)
    if event == "admit":
        if not ward or not bed:
            raise CensusError("missing_location", "Encounter.location needs the ward and the bed")
        beds.check(ward, bed)
    return {"event": event, "patient_id": patient_id, "ward": ward, "bed": bed, "at_ms": received_ms,
            "source": "fhir", "message_id": str(encounter.get("id") or "")}
