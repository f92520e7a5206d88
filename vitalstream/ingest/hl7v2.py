"""HL7 v2 ORU^R01 as profiled by IHE PCD-01 -> canonical samples and technical events.

Segments are split with the message's own delimiters (MSH-1, MSH-2) and escape sequences
are resolved per leaf value. The ``hl7`` library does the same but costs 1.6 ms for a 10-OBX
report against 0.1 ms here (docs/ingest.md), and the worker parses every message. Segments
are walked in order, so a message with several PID/PV1/OBR groups gives each OBX the
patient, location and observation time of its own group.

Field use (PCD-01): PID-3 patient id (the MR identifier when several repeat), PV1-3 ward ^
room ^ bed, OBX-3 MDC code, OBX-5 value, OBX-6 unit (MDC or UCUM), OBX-8 measurement status,
OBX-11 result status, OBX-14 time (else OBR-7, else MSH-7), OBX-18 device id (EUI-64).
"""

from __future__ import annotations

import datetime as dt
import re

from vitalstream.ingest.codes import MDC_TECHNICAL_EVENTS, mdc_term
from vitalstream.ingest.normalise import ObservationError, canonical_value
from vitalstream.ingest.result import IngestResult, Rejection, technical_event
from vitalstream.ingest.times import hl7_time_ms
from vitalstream.samples import CANONICAL_UNITS, Sample

MLLP_START = b"\x0b"
MLLP_END = b"\x1c\r"

# HL7 NM: optional sign, digits, optional decimal point; no exponent, no "nan", no "1_0".
_HL7_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")

# Device sensor-off markers sent as the value (case and "_" folded to upper case and space).
SENSOR_OFF_VALUES = frozenset({
    "SENSOR OFF", "SENSOROFF", "PROBE OFF", "LEAD OFF", "LEADS OFF", "NO SENSOR",
    "SENSOR DISCONNECTED", "PROBE DISCONNECTED", "LEAD DISCONNECTED", "CHECK PROBE",
})
# Values that say "no number now" without blaming a sensor.
NO_VALUE_VALUES = frozenset({"---", "-?-", "NAN", "N/A"})
# OBX-8 measurement-status words (IEEE 11073-10201 MeasurementStatus, as PCD-01 sends them).
STATUS_SENSOR_OFF = frozenset({"not-available"})
STATUS_ARTEFACT = frozenset({"invalid", "questionable", "calibration-ongoing"})
STATUS_IGNORED = frozenset({"test-data", "demo-data"})
# OBX-11 result status: X = result cannot be obtained; D/W = deleted or wrong, superseded.
RESULT_CANNOT_OBTAIN = "X"
RESULT_IGNORED = frozenset({"D", "W"})


def strip_mllp(raw: bytes) -> bytes:
    """The HL7 payload inside one MLLP frame (unchanged when not framed)."""
    body = raw.strip(b" \t\r\n")
    if body.startswith(MLLP_START):
        body = body[1:]
        end = body.find(b"\x1c")
        if end >= 0:
            body = body[:end]
    return body


def decode_hl7(raw: bytes) -> str:
    """Text of a message with '\\r' segment separators. UTF-8, else Latin-1 (the usual
    MSH-18 8859/1), which decodes any byte so nothing fails on a name's accent."""
    body = strip_mllp(raw)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    segments = [line for line in _SEGMENT_SPLIT.split(text) if line.strip()]
    return "\r".join(segments)


class Delimiters:
    """MSH-1 and MSH-2: field, component, repetition, escape and subcomponent characters."""

    __slots__ = ("field", "component", "repetition", "escape", "subcomponent", "_escapes")

    def __init__(self, msh: str) -> None:
        self.field = msh[3]
        encoding = msh[4:].split(self.field, 1)[0]
        if len(encoding) < 2 or self.field in encoding:
            raise ObservationError("malformed_hl7", f"MSH-2 encoding characters {encoding!r}")
        defaults = "^~\\&"
        encoding = encoding + defaults[len(encoding):] if len(encoding) < 4 else encoding[:4]
        self.component, self.repetition, self.escape, self.subcomponent = encoding
        self._escapes = {"F": self.field, "S": self.component, "R": self.repetition,
                         "E": self.escape, "T": self.subcomponent, ".br": "\n"}

    def unescape(self, text: str) -> str:
        """Resolve \\F\\ \\S\\ \\R\\ \\T\\ \\E\\ \\Xhh\\ and \\.br\\; formatting (\\H\\, \\N\\) is dropped."""
        if self.escape not in text:
            return text
        parts = text.split(self.escape)
        out = [parts[0]]
        # Odd pieces sit between two escape characters; an unpaired one stays as text.
        for index in range(1, len(parts), 2):
            if index + 1 >= len(parts):
                out.append(self.escape + parts[index])
                break
            sequence = parts[index]
            if sequence in self._escapes:
                out.append(self._escapes[sequence])
            elif sequence[:1] == "X":
                try:
                    out.append(bytes.fromhex(sequence[1:]).decode("utf-8", "replace"))
                except ValueError:
                    out.append("")
            out.append(parts[index + 1])
        return "".join(out)


class Segment:
    """One segment's fields, so that ``fields[n]`` is field n (also for MSH, where MSH-1 is
    the field separator itself and MSH-2 the encoding characters)."""

    __slots__ = ("fields", "delimiters")

    def __init__(self, text: str, delimiters: Delimiters) -> None:
        fields = text.split(delimiters.field)
        if fields[0] == "MSH":
            fields = ["MSH", delimiters.field, *fields[1:]]
        self.fields = fields
        self.delimiters = delimiters

    @property
    def kind(self) -> str:
        return self.fields[0].strip()

    def get(self, field: int, repeat: int = 1, component: int = 1) -> str:
        """One unescaped leaf value (its first subcomponent), '' when absent."""
        if field >= len(self.fields):
            return ""
        if self.kind == "MSH" and field <= 2:
            return self.fields[field]
        repeats = self.fields[field].split(self.delimiters.repetition)
        if repeat > len(repeats):
            return ""
        components = repeats[repeat - 1].split(self.delimiters.component)
        if component > len(components):
            return ""
        leaf = components[component - 1].split(self.delimiters.subcomponent, 1)[0]
        return self.delimiters.unescape(leaf).strip()

    def repeats(self, field: int) -> int:
        if field >= len(self.fields) or not self.fields[field]:
            return 0
        return self.fields[field].count(self.delimiters.repetition) + 1


def _patient_id(pid: Segment) -> str:
    """PID-3: the identifier of type MR when several repeat, else the first non-empty one."""
    first = ""
    for repeat in range(1, pid.repeats(3) + 1):
        identifier = pid.get(3, repeat, 1)
        if identifier and pid.get(3, repeat, 5).upper() == "MR":
            return identifier
        first = first or identifier
    return first


def _location(pv1: Segment) -> tuple[str, str]:
    """PV1-3 point of care ^ room ^ bed -> (ward, bed); the bed is 'room-bed' when both
    are given, because bed letters repeat from room to room."""
    ward, room, bed = (pv1.get(3, 1, i) for i in (1, 2, 3))
    if room and bed:
        return ward, f"{room}-{bed}"
    return ward, bed or room


def _device_id(obx: Segment, fallback: str) -> str:
    """OBX-18 entity identifier (EUI-64), else its universal id, else the sending application."""
    return obx.get(18, 1, 1) or obx.get(18, 1, 3) or fallback


def _number(text: str) -> float | None:
    return float(text) if _HL7_NUMBER.fullmatch(text) else None


class _Context:
    """The PID/PV1/OBR group an OBX belongs to."""

    __slots__ = ("patient_id", "ward", "bed", "obr_time", "msh_time", "sender")

    def __init__(self, msh_time: str, sender: str) -> None:
        self.patient_id = ""
        self.ward = ""
        self.bed = ""
        self.obr_time = ""
        self.msh_time = msh_time
        self.sender = sender


def parse_hl7(raw: bytes, received_ms: int) -> IngestResult:
    """One ORU^R01 message (bare or in one MLLP frame) -> samples, technical events or a
    rejection. Raises nothing it can foresee; `vitalstream.ingest.parse_raw` catches the rest."""
    result = IngestResult(format="hl7")
    text = decode_hl7(raw)
    if not text.startswith("MSH") or len(text) < 8:
        result.rejection = Rejection("not_hl7", "the message does not start with an MSH segment")
        return result
    try:
        delimiters = Delimiters(text)
    except ObservationError as exc:
        result.rejection = Rejection(exc.reason, exc.detail)
        return result
    segments = [Segment(line, delimiters) for line in text.split("\r")]
    msh = segments[0]
    message_type = (msh.get(9, 1, 1), msh.get(9, 1, 2))
    if message_type != ("ORU", "R01"):
        result.rejection = Rejection(
            "unsupported_message", f"message type {'^'.join(message_type)!r}; expected ORU^R01")
        return result
    context = _Context(msh.get(7, 1, 1), msh.get(3, 1, 1))
    try:
        for segment in segments:
            kind = segment.kind
            if kind == "PID":
                context.patient_id = _patient_id(segment)
                context.ward, context.bed = "", ""
            elif kind == "PV1":
                context.ward, context.bed = _location(segment)
            elif kind == "OBR":
                context.obr_time = segment.get(7, 1, 1)
            elif kind == "OBX":
                _observation(segment, context, received_ms, result)
    except ObservationError as exc:
        # One bad observation rejects the whole message: the dead letter then replays whole,
        # and a unit or mapping error at the gateway is seen at once, not half hidden.
        return IngestResult(format="hl7", rejection=Rejection(exc.reason, exc.detail),
                            ignored=result.ignored)
    if not result.samples and not result.technical:
        result.rejection = Rejection(
            "no_observations", f"no mapped vital-sign observation ({result.ignored} ignored)")
    return result


def _observation(obx: Segment, context: _Context, received_ms: int, result: IngestResult) -> None:
    code, name = obx.get(3, 1, 1), obx.get(3, 1, 2)
    term = mdc_term(code) or mdc_term(name)
    event = MDC_TECHNICAL_EVENTS.get(code)
    if term is None and event is None:
        result.ignored += 1
        return
    result_status = obx.get(11, 1, 1).upper()
    statuses = {obx.get(8, repeat, 1).lower() for repeat in range(1, obx.repeats(8) + 1)}
    if result_status in RESULT_IGNORED or statuses & STATUS_IGNORED:
        result.ignored += 1
        return
    if not context.patient_id:
        raise ObservationError("missing_patient", "OBX before a PID with a patient identifier (PID-3)")
    stamp = obx.get(14, 1, 1) or context.obr_time or context.msh_time
    if not stamp:
        raise ObservationError("bad_timestamp", "no OBX-14, OBR-7 or MSH-7 time")
    device_time_ms = hl7_time_ms(stamp)
    source = _device_id(obx, context.sender)

    def technical(kind: str, parameter: str, detail: str) -> None:
        result.technical.append(technical_event(
            kind, context.patient_id, context.ward, context.bed, parameter, device_time_ms,
            source, detail))

    if event is not None:
        event_name, parameter, _ = event
        technical("sensor_off", parameter, event_name)
        return
    assert term is not None
    values = [obx.get(5, repeat, 1) for repeat in range(1, obx.repeats(5) + 1)]
    values = [value for value in values if value]
    marker = values[0].upper().replace("_", " ").strip() if len(values) == 1 else ""
    if result_status == RESULT_CANNOT_OBTAIN or statuses & STATUS_SENSOR_OFF or marker in SENSOR_OFF_VALUES:
        detail = (f"OBX-11 {result_status}" if result_status == RESULT_CANNOT_OBTAIN else
                  f"OBX-8 {sorted(statuses & STATUS_SENSOR_OFF)[0]}" if statuses & STATUS_SENSOR_OFF
                  else f"value {values[0]!r}")
        technical("sensor_off", term.parameter, f"{term.name}: {detail}")
        return
    if not values or marker in NO_VALUE_VALUES:
        technical("no_value", term.parameter, f"{term.name}: no value")
        return
    if len(values) > 1:
        raise ObservationError("bad_value", f"{term.name} has {len(values)} values in OBX-5")
    value_type = obx.get(2, 1, 1).upper()
    number = _number(values[0])
    if value_type == "SN":  # structured numeric: comparator ^ number; only '=' or none
        comparator = values[0]
        number = _number(obx.get(5, 1, 2)) if comparator in ("", "=") else None
    if number is None:
        raise ObservationError("bad_value", f"{term.name} value {values[0]!r} is not a number")
    unit = obx.get(6, 1, 1) or obx.get(6, 1, 2)
    value, artefact = canonical_value(term.parameter, number, unit)
    result.samples.append(Sample(
        patient_id=context.patient_id, ward=context.ward, bed=context.bed,
        parameter=term.parameter, value=value, unit=CANONICAL_UNITS[term.parameter],
        device_time_ms=device_time_ms, source=source, ingest_time_ms=received_ms,
        source_code=f"MDC:{term.code}", artefact=artefact or bool(statuses & STATUS_ARTEFACT),
    ))


def _msh_fields(raw: bytes) -> list[str]:
    """MSH fields of a possibly broken message, split by its own field separator."""
    text = decode_hl7(raw)
    first = text.split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return []
    separator = first[3]
    return ["MSH", separator, *first[4:].split(separator)]


def hl7_ack(raw: bytes, code: str, text: str, now_ms: int, error_code: str = "207") -> bytes:
    """An HL7 ACK for ``raw``: MSA-1 ``code`` (AA, AE, AR), MSA-2 its control id (MSH-10),
    and for errors an ERR segment with the HL7 table 0357 code and ``text`` (ERR-8)."""
    fields = _msh_fields(raw)

    def msh(index: int) -> str:
        return fields[index] if len(fields) > index else ""

    separator = "|"
    encoding = msh(2) if len(msh(2)) >= 4 else "^~\\&"
    component = encoding[0]
    trigger = msh(9).split(component)[1] if component in msh(9) else ""
    stamp = _format_hl7_time(now_ms)
    safe_text = _escape(text, separator, encoding)
    segments = [
        separator.join(["MSH", encoding, msh(5) or "VITALSTREAM", msh(6), msh(3), msh(4), stamp, "",
                        component.join(["ACK", trigger, "ACK"]), f"ACK{now_ms}", msh(11) or "P",
                        msh(12) or "2.6"]),
        separator.join(["MSA", code, msh(10), safe_text[:80]]),
    ]
    if code != "AA":
        severity = "E"
        segments.append(separator.join(
            ["ERR", "", "", component.join([error_code, _ERROR_NAMES.get(error_code, ""), "HL70357"]),
             severity, "", "", "", safe_text]))
    return ("\r".join(segments) + "\r").encode("utf-8")


_ERROR_NAMES = {"100": "Segment sequence error", "101": "Required field missing",
                "102": "Data type error", "103": "Table value not found",
                "200": "Unsupported message type", "207": "Application internal error"}


def _escape(text: str, separator: str, encoding: str) -> str:
    escape = encoding[2] if len(encoding) > 2 else "\\"
    out = text.replace(escape, f"{escape}E{escape}").replace(separator, f"{escape}F{escape}")
    for char, code in zip(encoding[:2] + encoding[3:4], "SRT", strict=False):
        out = out.replace(char, f"{escape}{code}{escape}")
    return out.replace("\r", " ").replace("\n", " ")


def _format_hl7_time(now_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y%m%d%H%M%S") + "+0000"
