"""HL7 v2 ORU^R01 as profiled by IHE PCD-01 -> canonical samples and technical events.

Segments are split with the message's own delimiters (MSH-1, MSH-2) and escape sequences
are resolved per leaf value. The ``hl7`` library does the same but costs 1.6 ms for a 10-OBX
report against 0.1 ms here (docs/ingest.md), and the worker parses every message. Segments
are walked in order, so a message with several PID/PV1/OBR groups gives each OBX the
patient, location and observation time of its own group.

Field use (PCD-01): PID-3 patient id (the MR identifier when several repeat; PID-2 for
senders before v2.3.1 that put it only there), PV1-3 ward ^ room ^ bed, OBX-3 code (MDC,
LOINC or a site table's vendor code, in components 1-3 or the alternate 4-6), OBX-5 value
(NA for compound metrics such as NIBP sys^dia^mean), OBX-6 unit (MDC, UCUM, a site table's
vendor unit or a listed unit text), OBX-8 measurement status, OBX-11 result status, OBX-14
time (else OBR-7, else MSH-7), OBX-18 device id (EUI-64). A batch (FHS/BHS ... BTS/FTS) is
read message by message.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from vitalstream.ingest import MAX_MESSAGE_BYTES, codes
from vitalstream.ingest.codes import (
    HL7_LOINC_SYSTEM,
    HL7_MDC_SYSTEM,
    MDC_KNOWN,
    MDC_SYSTEM,
    MDC_TECHNICAL_EVENTS,
    SiteCodes,
    compound_for_mdc,
    declared_unit,
    mdc_term,
    parameter_for_loinc,
    ucum_for_mdc_unit,
)
from vitalstream.ingest.normalise import (
    PLAUSIBILITY,
    UNIT_CONVERSIONS,
    ObservationError,
    canonical_value,
    unit_conversion,
)
from vitalstream.ingest.result import IngestResult, Rejection, technical_event
from vitalstream.ingest.times import MAX_AHEAD_MS, hl7_time_ms
from vitalstream.samples import CANONICAL_UNITS, Sample

MLLP_START = b"\x0b"
MLLP_END = b"\x1c\r"

# HL7 NM: optional sign, digits, optional decimal point; no exponent, no "nan", no "1_0".
_HL7_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
BATCH_HEADERS = ("FHS", "BHS")
# The trigger an ACK names when the message it answers gives none (not HL7, no MSH-9): the
# one event this door reads, so that MSH-9 is a complete ACK^R01^ACK (docs/ingest.md).
DEFAULT_ACK_TRIGGER = "R01"

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

    def components(self, field: int, repeat: int = 1) -> list[str]:
        """Every component of one repetition, unescaped (an NA value is one number per component)."""
        if field >= len(self.fields):
            return []
        repeats = self.fields[field].split(self.delimiters.repetition)
        if repeat > len(repeats):
            return []
        return [self.delimiters.unescape(part.split(self.delimiters.subcomponent, 1)[0]).strip()
                for part in repeats[repeat - 1].split(self.delimiters.component)]

    def repeats(self, field: int) -> int:
        if field >= len(self.fields) or not self.fields[field]:
            return 0
        return self.fields[field].count(self.delimiters.repetition) + 1


def _patient_id(pid: Segment) -> str:
    """PID-3: the identifier of type MR when several repeat, else the first non-empty one;
    without PID-3, PID-2 (the external patient id that v2.3.1 and earlier senders fill, kept
    in later versions for backward compatibility)."""
    first = ""
    for repeat in range(1, pid.repeats(3) + 1):
        identifier = pid.get(3, repeat, 1)
        if identifier and pid.get(3, repeat, 5).upper() == "MR":
            return identifier
        first = first or identifier
    return first or pid.get(2, 1, 1)


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

    __slots__ = ("patient_id", "ward", "bed", "obr_time", "msh_time", "sender", "site")

    def __init__(self, msh_time: str, sender: str) -> None:
        self.site = codes.site_table()  # once per message
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
    if text[:3] in BATCH_HEADERS:
        return _parse_batch(text, received_ms)
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


def batch_messages(text: str) -> list[str]:
    """The messages of a batch (FHS/BHS ... BTS/FTS): each MSH up to the next MSH or trailer."""
    messages: list[list[str]] = []
    for line in text.split("\r"):
        kind = line[:3]
        if kind == "MSH":
            messages.append([line])
        elif kind in ("FHS", "BHS", "BTS", "FTS"):
            if messages and messages[-1]:
                messages.append([])
        elif messages:
            messages[-1].append(line)
    return ["\r".join(lines) for lines in messages if lines]


def split_batch(raw: bytes) -> list[bytes]:
    """The messages of a batch as bytes, each byte as sent (decoded and encoded as Latin-1,
    which maps every byte to itself); segments end in '\\r'."""
    text = "\r".join(line for line in _SEGMENT_SPLIT.split(strip_mllp(raw).decode("latin-1")) if line.strip())
    return [message.encode("latin-1") for message in batch_messages(text)]


def _parse_batch(text: str, received_ms: int) -> IngestResult:
    """Every message of a batch, as if each came alone; one rejected message rejects the
    batch here (the MLLP door answers each message of a batch on its own instead)."""
    result = IngestResult(format="hl7")
    messages = batch_messages(text)
    if not messages:
        result.rejection = Rejection("no_observations", "the batch holds no message (no MSH)")
        return result
    for number, message in enumerate(messages, start=1):
        part = parse_hl7(message.encode("utf-8"), received_ms)
        result.ignored += part.ignored
        if part.rejection is not None:
            return IngestResult(format="hl7", ignored=result.ignored, rejection=Rejection(
                part.rejection.reason, f"batch message {number}: {part.rejection.detail}"))
        result.samples.extend(part.samples)
        result.technical.extend(part.technical)
    return result


class _Term:
    """What an OBX-3 names: one parameter, a compound (one parameter per NA position), or a
    device event. ``label`` names it in a rejection; ``source_code`` goes on the sample."""

    __slots__ = ("parameter", "positions", "event", "label", "source_code")

    def __init__(self, label: str, source_code: str, parameter: str = "",
                 positions: tuple[str | None, ...] = (), event: tuple[str, str, str] | None = None) -> None:
        self.label = label
        self.source_code = source_code
        self.parameter = parameter
        self.positions = positions
        self.event = event


# OBX-3 coding-system names (HL7 table 0396 and the ISO OIDs senders also write).
_MDC_SYSTEMS = frozenset({"", HL7_MDC_SYSTEM, MDC_SYSTEM.upper(), "ISO11073", "2.16.840.1.113883.6.24"})
_LOINC_SYSTEMS = frozenset({"", HL7_LOINC_SYSTEM, "LOINC", "2.16.840.1.113883.6.1"})


def _mdc(identifier: str, text: str) -> _Term | None:
    if identifier not in MDC_KNOWN and text not in MDC_KNOWN:
        return None
    if identifier in MDC_TECHNICAL_EVENTS:
        return _Term(MDC_TECHNICAL_EVENTS[identifier][0], f"MDC:{identifier}",
                     event=MDC_TECHNICAL_EVENTS[identifier])
    compound = compound_for_mdc(identifier) or compound_for_mdc(text)
    if compound is not None:
        return _Term(compound[1], f"MDC:{compound[0]}", positions=compound[2])
    term = mdc_term(identifier) or mdc_term(text)
    if term is not None:
        return _Term(term.name, f"MDC:{term.code}", parameter=term.parameter)
    return None


def _coded(identifier: str, text: str, system: str, site: SiteCodes) -> _Term | None:
    """One CWE triplet of OBX-3: an MDC, LOINC or site-table code (MDC is assumed when the
    coding system is empty, as PCD-01 writes it). Under a coding-system name that is neither
    and that the site table does not map, MDC terms are still known by their code or
    reference id, as gateways that misname the system have always been read."""
    folded = system.upper()
    if folded in _MDC_SYSTEMS:
        term = _mdc(identifier, text)
        if term is not None:
            return term
    if folded in _LOINC_SYSTEMS:
        parameter = parameter_for_loinc(identifier)
        if parameter is not None:
            return _Term(f"LOINC {identifier}", f"LOINC:{identifier}", parameter=parameter)
    if system and identifier and site.observations:
        parameter = site.parameter(system, identifier)
        if parameter is not None:
            return _Term(f"{system} {identifier}", f"{system}:{identifier}", parameter=parameter)
    if folded not in _MDC_SYSTEMS and folded not in _LOINC_SYSTEMS:
        return _mdc(identifier, text)
    return None


def _term(obx: Segment, site: SiteCodes) -> _Term | None:
    """OBX-3 components 1-3, else the alternate code in components 4-6."""
    parts = obx.components(3) + ["", "", ""]
    term = _coded(parts[0], parts[1], parts[2], site)
    if term is None and len(parts) > 6 and (parts[3] or parts[4]):
        term = _coded(parts[3], parts[4], parts[5], site)
    return term


def _unit(obx: Segment, parameter: str, site: SiteCodes) -> str:
    """OBX-6 as a unit normalisation reads: the first of its identifier, text, alternate
    identifier and alternate text that is a known unit for ``parameter`` (a site-table vendor
    unit becomes its UCUM code, a listed unit text too); else its identifier or text as sent,
    which normalisation then refuses with the reason."""
    parts = obx.components(6) + ["", "", "", "", "", ""]
    code = parts[0]
    if code and (ucum_for_mdc_unit(code) or code.casefold() in UNIT_CONVERSIONS.get(parameter, {})):
        return code  # the common case: an MDC or UCUM code in component 1
    if site.units:
        for code_at, system_at in ((0, 2), (3, 5)):
            vendor_unit = site.unit(parts[system_at], parts[code_at]) if parts[code_at] else None
            if vendor_unit:
                return vendor_unit
    return declared_unit(parameter, (code, parts[1], parts[3], parts[4]))


def _observation(obx: Segment, context: _Context, received_ms: int, result: IngestResult) -> None:
    term = _term(obx, context.site)
    if term is None:
        result.ignored += 1
        return
    result_status = obx.get(11, 1, 1).upper()
    statuses = {obx.get(8, repeat, 1).lower() for repeat in range(1, obx.repeats(8) + 1)}
    if result_status in RESULT_IGNORED or statuses & STATUS_IGNORED:
        result.ignored += 1
        return
    if not context.patient_id:
        raise ObservationError("missing_patient", "OBX before a PID with a patient identifier (PID-3, or PID-2)")
    stamp = obx.get(14, 1, 1) or context.obr_time or context.msh_time
    if not stamp:
        raise ObservationError("bad_timestamp", "no OBX-14, OBR-7 or MSH-7 time")
    device_time_ms = hl7_time_ms(stamp)
    source = _device_id(obx, context.sender)

    def technical(kind: str, parameter: str, detail: str) -> None:
        result.technical.append(technical_event(
            kind, context.patient_id, context.ward, context.bed, parameter, device_time_ms,
            source, detail))

    if term.event is not None:
        technical("sensor_off", term.event[1], term.event[0])
        return
    parameters = [p for p in term.positions if p] or [term.parameter]
    # The first component of each repetition that holds anything (an SN "^120" has an empty first).
    values = [parts[0] for parts in (obx.components(5, repeat) for repeat in range(1, obx.repeats(5) + 1))
              if any(parts)]
    marker = values[0].upper().replace("_", " ").strip() if len(values) == 1 else ""
    if result_status == RESULT_CANNOT_OBTAIN or statuses & STATUS_SENSOR_OFF or marker in SENSOR_OFF_VALUES:
        detail = (f"OBX-11 {result_status}" if result_status == RESULT_CANNOT_OBTAIN else
                  f"OBX-8 {sorted(statuses & STATUS_SENSOR_OFF)[0]}" if statuses & STATUS_SENSOR_OFF
                  else f"value {values[0]!r}")
        for parameter in parameters:
            technical("sensor_off", parameter, f"{term.label}: {detail}")
        return
    if not values or marker in NO_VALUE_VALUES:
        for parameter in parameters:
            technical("no_value", parameter, f"{term.label}: no value")
        return
    if len(values) > 1:
        raise ObservationError("bad_value", f"{term.label} has {len(values)} values in OBX-5")
    value_type = obx.get(2, 1, 1).upper()
    artefact = bool(statuses & STATUS_ARTEFACT)

    def sample(parameter: str, text: str) -> None:
        number = _number(text)
        if number is None:
            raise ObservationError("bad_value", f"{term.label} value {text!r} is not a number")
        value, outside_plausible = canonical_value(parameter, number, _unit(obx, parameter, context.site))
        result.samples.append(Sample(
            patient_id=context.patient_id, ward=context.ward, bed=context.bed,
            parameter=parameter, value=value, unit=CANONICAL_UNITS[parameter],
            device_time_ms=device_time_ms, source=source, ingest_time_ms=received_ms,
            source_code=term.source_code, artefact=artefact or outside_plausible,
        ))

    if term.positions:  # a compound metric: NA sys ^ dia ^ mean, each position its parameter
        parts = obx.components(5)
        if value_type not in ("NA", "") or len(parts) > len(term.positions):
            raise ObservationError("bad_value", f"{term.label} is a compound of {len(term.positions)} "
                                   f"values (OBX-2 NA); got OBX-2 {value_type or 'empty'} with "
                                   f"{len(parts)} value(s)")
        for parameter, text in zip(term.positions, parts, strict=False):
            if parameter is None:
                continue
            if not text or text.upper() in NO_VALUE_VALUES:
                technical("no_value", parameter, f"{term.label}: no {parameter} value")
            else:
                sample(parameter, text)
        return
    if value_type == "NA":  # numeric array on a metric with one value: no position is defined
        parts = [part for part in obx.components(5) if part]
        if len(parts) != 1:
            raise ObservationError("bad_value", f"{term.label} has one value; OBX-2 NA gives "
                                   f"{len(parts)} and no position of them is defined for it")
        sample(term.parameter, parts[0])
        return
    text = values[0]
    if value_type == "SN":  # structured numeric: comparator ^ number; only '=' or none
        comparator = values[0]
        if comparator not in ("", "="):
            raise ObservationError("bad_value", f"{term.label} value {comparator}"
                                   f"{obx.get(5, 1, 2)} has a comparator: not an exact reading")
        text = obx.get(5, 1, 2)
    sample(term.parameter, text)


def _msh_fields(raw: bytes) -> list[str]:
    """MSH fields of a possibly broken message, split by its own field separator."""
    text = decode_hl7(raw)
    first = text.split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return []
    separator = first[3]
    return ["MSH", separator, *first[4:].split(separator)]


def message_type(raw: bytes) -> tuple[str, str] | None:
    """MSH-9 message code and trigger event (upper case) of a message, None when it has no MSH."""
    fields = _msh_fields(raw)
    if len(fields) < 3 or not fields[2]:
        return None
    parts = (fields[9] if len(fields) > 9 else "").split(fields[2][0])
    return parts[0].strip().upper(), (parts[1].strip().upper() if len(parts) > 1 else "")


def is_batch(raw: bytes) -> bool:
    """Whether ``raw`` is an HL7 batch (it starts with FHS or BHS)."""
    return strip_mllp(raw).lstrip()[:3] in (b"FHS", b"BHS")


def hl7_ack(raw: bytes, code: str, text: str, now_ms: int, error_code: str = "207") -> bytes:
    """An HL7 ACK for ``raw``: MSA-1 ``code`` (AA, AE, AR), MSA-2 its control id (MSH-10),
    and for errors an ERR segment with the HL7 table 0357 code (ERR-3) and ``text`` (ERR-8).
    MSH-9 is ACK ^ the trigger of ``raw`` ^ ACK; when ``raw`` names none (not HL7), the
    trigger is R01, the one this door reads (DEFAULT_ACK_TRIGGER)."""
    fields = _msh_fields(raw)

    def msh(index: int) -> str:
        return fields[index] if len(fields) > index else ""

    separator = "|"
    encoding = msh(2) if len(msh(2)) >= 4 else "^~\\&"
    component = encoding[0]
    trigger = (msh(9).split(component)[1] if component in msh(9) else "").strip()
    trigger = trigger or DEFAULT_ACK_TRIGGER
    stamp = _format_hl7_time(now_ms)
    safe_text = _escape(text, separator, encoding)
    segments = [
        separator.join(["MSH", encoding, msh(5) or "VITALSTREAM", msh(6), msh(3), msh(4), stamp, "",
                        component.join(["ACK", trigger, "ACK"]), f"ACK{now_ms}", msh(11) or "P",
                        msh(12) or "2.6"]),
        # MSA-2 is required; with no MSH-10 to echo (not HL7, an empty frame) it is the HL7 null "".
        separator.join(["MSA", code, msh(10) or '""', safe_text[:80]]),
    ]
    if code != "AA":
        severity = "E"
        segments.append(separator.join(
            ["ERR", "", "", component.join([error_code, _ERROR_NAMES.get(error_code, ""), "HL70357"]),
             severity, "", "", "", safe_text]))
    return ("\r".join(segments) + "\r").encode("utf-8")


# HL7 table 0357 (message error condition codes), the ones vitalstream answers with.
_ERROR_NAMES = {"100": "Segment sequence error", "101": "Required field missing",
                "102": "Data type error", "103": "Table value not found",
                "200": "Unsupported message type", "201": "Unsupported event code",
                "207": "Application internal error"}


def hl7_batch_ack(batch: bytes, acks: list[bytes], now_ms: int) -> bytes:
    """The answer to a batch: a batch of the same envelope (FHS/BHS ... BTS/FTS) holding one
    ACK per message, in order. BHS-12 (and FHS-12) name the batch (file) control id of the
    batch answered, BTS-1 counts the ACKs. HL7 v2 lets a receiver acknowledge only the
    messages in error; vitalstream acknowledges every one, so that a sender can match each
    message's MSH-10 to its MSA-2 (docs/ingest.md)."""
    lines = decode_hl7(batch).split("\r")
    header = {line[:3]: line for line in lines if line[:3] in BATCH_HEADERS}
    stamp = _format_hl7_time(now_ms)

    def envelope(kind: str) -> str:
        line = header.get(kind, "")
        separator = line[3] if len(line) > 3 else "|"
        fields = line[4:].split(separator) if line else []

        def field(number: int) -> str:  # fields[0] is the encoding characters (xHS-2)
            return fields[number - 2] if 0 <= number - 2 < len(fields) else ""

        encoding = field(2) if len(field(2)) >= 4 else "^~\\&"
        return separator.join([kind, encoding, field(5) or "VITALSTREAM", field(6), field(3),
                               field(4), stamp, "", "", "", f"{kind[0]}ACK{now_ms}", field(11)])

    body = b"".join(ack if ack.endswith(b"\r") else ack + b"\r" for ack in acks)
    head = [envelope("FHS")] if "FHS" in header else []
    head.append(envelope("BHS"))
    tail = [f"BTS|{len(acks)}"] + (["FTS|1"] if "FHS" in header else [])
    return ("\r".join(head) + "\r").encode("utf-8") + body + ("\r".join(tail) + "\r").encode("utf-8")


def _escape(text: str, separator: str, encoding: str) -> str:
    escape = encoding[2] if len(encoding) > 2 else "\\"
    out = text.replace(escape, f"{escape}E{escape}").replace(separator, f"{escape}F{escape}")
    for char, code in zip(encoding[:2] + encoding[3:4], "SRT", strict=False):
        out = out.replace(char, f"{escape}{code}{escape}")
    return out.replace("\r", " ").replace("\n", " ")


def _format_hl7_time(now_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y%m%d%H%M%S") + "+0000"


# The fast path of the commonest HL7 message. ``hl7_rows`` reads the PCD-01 shape gateways
# send most (a bare ORU^R01 with the usual separators, numeric OBX rows of mapped codes) and
# declines (None) everything else, which `parse_hl7` then reads or refuses with its reason.
# What an OBX means besides its value, time and device (OBX-2 type, OBX-3 code, OBX-6 unit,
# OBX-8 and OBX-11 statuses) is decided by the full parser's own functions the first time a
# combination is seen, and remembered; only the per-reading fields are read here.
_STANDARD_MSH = "MSH|^~\\&|"
_STANDARD_DELIMITERS = Delimiters(_STANDARD_MSH)
_CACHE_MAX = 4096  # distinct OBX shapes or timestamps, then the cache starts afresh
_IGNORED = "ignored"  # an OBX the full parser skips (unknown code, test data, deleted)
_UNSEEN = "unseen"
_ObxShape = tuple[str, str, str, Callable[[float], float], bool, tuple[float, ...]] | str | None
_shapes: dict[tuple[str, ...], _ObxShape] = {}
_shapes_site: list[SiteCodes | None] = [None]
_stamps: dict[str, int] = {}
_SPECIAL = frozenset("\\~^&")


def _obx_shape(fields: list[str], site: SiteCodes) -> _ObxShape:
    """What the full parser makes of an OBX whatever its value, time and device:
    (parameter, canonical unit, source code, unit conversion, artefact by OBX-8, plausibility
    range), ``_IGNORED``, or None when
    it is anything else (a compound, a device event, a status that means no reading, a value
    type other than NM, a unit that is refused): the message then goes to the full parser."""
    obx = Segment("|".join(fields), _STANDARD_DELIMITERS)
    term = _term(obx, site)
    if term is None:
        return _IGNORED
    if term.parameter and term.parameter not in PLAUSIBILITY:
        return None
    result_status = obx.get(11, 1, 1).upper()
    statuses = {obx.get(8, repeat, 1).lower() for repeat in range(1, obx.repeats(8) + 1)}
    if result_status in RESULT_IGNORED or statuses & STATUS_IGNORED:
        return _IGNORED
    if (term.event is not None or term.positions or result_status == RESULT_CANNOT_OBTAIN
            or statuses & STATUS_SENSOR_OFF or obx.get(2, 1, 1).upper() not in ("NM", "")):
        return None
    try:
        convert = unit_conversion(term.parameter, _unit(obx, term.parameter, site))
    except ObservationError:
        return None
    return (term.parameter, CANONICAL_UNITS[term.parameter], term.source_code, convert,
            bool(statuses & STATUS_ARTEFACT), PLAUSIBILITY[term.parameter])


def _stamp_ms(stamp: str) -> int | None:
    millis = _stamps.get(stamp)
    if millis is None:
        try:
            millis = hl7_time_ms(stamp)
        except ObservationError:
            return None
        if len(_stamps) >= _CACHE_MAX:
            _stamps.clear()
        _stamps[stamp] = millis
    return millis


def _first_leaf(field: str, component: int = 1) -> str | None:
    """``Segment.get(field, 1, component)`` for a field without escape sequences (None: it has one)."""
    parts = field.split("~", 1)[0].split("^")
    if component > len(parts):
        return ""
    leaf = parts[component - 1].split("&", 1)[0]
    return None if "\\" in leaf else leaf.strip()


def hl7_rows(raw: bytes, received_ms: int, max_ahead_ms: int = MAX_AHEAD_MS) -> list[tuple[Any, ...]] | None:
    """The samples of a common PCD-01 message as rows (``sample_row`` order), exactly as
    `vitalstream.ingest.parse_raw` gives them, or None for any message it does not take
    (the full parser then reads it, or refuses it with the reason). It takes only messages
    whose every OBX gives one numeric reading or is skipped, so it never makes a technical
    event or a rejection, and it applies the checks of `vitalstream.ingest.vet` itself."""
    if not raw.startswith(b"MSH|^~\\&|") or len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        text = raw.rstrip(b" \t\r\n").decode("utf-8")
    except UnicodeDecodeError:  # Latin-1 names: the full parser decodes them its way
        return None
    if "\n" in text:
        return None
    lines = [line for line in text.split("\r") if line.strip()]
    msh = Segment(lines[0], _STANDARD_DELIMITERS)
    if (msh.get(9, 1, 1), msh.get(9, 1, 2)) != ("ORU", "R01"):
        return None
    site = codes.site_table()
    if _shapes_site[0] is not site or len(_shapes) >= _CACHE_MAX:
        _shapes.clear()
        _shapes_site[0] = site
    msh_time, sender = msh.get(7, 1, 1), msh.get(3, 1, 1)
    patient_id = ward = bed = obr_time = ""
    latest_ms = received_ms + max_ahead_ms if received_ms > 0 else None
    shapes, stamps, special = _shapes, _stamps, _SPECIAL
    rows: list[tuple[Any, ...]] = []
    for line in lines[1:]:
        fields = line.split("|")
        kind = fields[0].strip()
        if kind != "OBX":
            if kind == "PID":
                patient_id, ward, bed = _patient_id(Segment(line, _STANDARD_DELIMITERS)), "", ""
            elif kind == "PV1":
                ward, bed = _location(Segment(line, _STANDARD_DELIMITERS))
            elif kind == "OBR":
                obr_time = Segment(line, _STANDARD_DELIMITERS).get(7, 1, 1)
            continue
        if len(fields) < 19:
            fields += [""] * (19 - len(fields))
        key = (fields[2], fields[3], fields[6], fields[8], fields[11])
        shape = shapes.get(key, _UNSEEN)
        if shape is _UNSEEN:
            shape = shapes[key] = _obx_shape(fields, site)
        if shape is _IGNORED:
            continue
        if shape is None or not patient_id:
            return None
        parameter, unit, source_code, convert, artefact, bounds = shape  # type: ignore[misc]
        value_text, stamp, source = fields[5], fields[14], fields[18]
        if not special.isdisjoint(value_text):
            return None
        number = _number(value_text.strip())
        if number is None:
            return None
        # OBX-14 and OBX-18 as `Segment.get` reads them: the first component of the first
        # repetition, unescaped; the plain text of the common case needs none of that.
        stamp = stamp.strip() if special.isdisjoint(stamp) else _first_leaf(stamp)
        source = source.strip() if special.isdisjoint(source) else _first_leaf(source)
        if stamp is None or source is None:
            return None
        if not source:
            source = _first_leaf(fields[18], 3)
            if source is None:
                return None
            source = source or sender
        stamp = stamp or obr_time or msh_time
        device_time_ms = stamps.get(stamp)
        if device_time_ms is None:
            device_time_ms = _stamp_ms(stamp)
            if device_time_ms is None:
                return None
        if latest_ms is not None and device_time_ms > latest_ms:
            return None
        value = convert(number)
        possible_low, possible_high, plausible_low, plausible_high = bounds
        if not possible_low <= value <= possible_high:  # (infinity too)
            return None
        rows.append((patient_id, ward, bed, parameter, value, unit, device_time_ms, source, received_ms,
                     source_code, artefact or not plausible_low <= value <= plausible_high))
    return rows or None
