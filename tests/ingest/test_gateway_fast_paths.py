"""The HL7 v2 and FHIR fast paths (`fast_rows`) against the full parsers (`parse_raw`): for
every message a fast path takes it gives exactly the rows `parse_raw` gives; every message
it does not take it leaves to `parse_raw` (which reads it, or refuses it with its reason).

The messages are generated around the shapes gateways send (the simulator's PCD-01 report
and FHIR Bundle), with the variations a fast path must decline mixed in: other separators
and line ends, escapes, repeats, compounds, device events, statuses, units, times ahead of
the receive time, modifiers, panels and references it cannot resolve alone."""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.formats import to_fhir_bundle, to_hl7_pcd01
from vitalstream.ingest import fast_rows, parse_raw
from vitalstream.ingest.codes import (
    MDC_OBSERVATIONS,
    PREFERRED_MDC_UNIT,
    PREFERRED_UCUM,
    install_site_codes,
    parse_site_codes,
)
from vitalstream.ingest.normalise import PLAUSIBILITY
from vitalstream.samples import CANONICAL_UNITS, Sample, sample_row

RECEIVED_MS = 1_773_619_200_000  # 2026-03-16 00:00 UTC
NUMERIC = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "diastolic_bp", "temperature")


def full_rows(raw: bytes, fmt: str | None, received_ms: int = RECEIVED_MS) -> list[tuple] | None:
    """The oracle: what the full parser gives, as rows; None when it refuses the message or
    makes a technical event (which the fast paths never make)."""
    result = parse_raw(raw, received_ms, fmt)
    if result.rejection is not None or result.technical:
        return None
    return [sample_row(s) for s in result.samples]


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(type(u) is type(v) and (u == v or (isinstance(u, float) and math.isnan(u)
                                                                   and math.isnan(v)))
                                 for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


def check(raw: bytes, fmt: str | None, expect_fast: str | None = None, received_ms: int = RECEIVED_MS) -> None:
    fast = fast_rows(raw, received_ms, fmt)
    if expect_fast is not None:
        assert fast is not None, f"the fast path declined a common message: {raw[:300]!r}"
        assert fast[0] == expect_fast
    if fast is not None:
        expected = full_rows(raw, fmt, received_ms)
        assert expected is not None, f"fast path accepted what parse_raw refuses: {raw!r}"
        assert same(fast[1], expected), (fast[1], expected)


def readings(parameters: list[str], values: list[float], patient: str = "p1") -> list[Sample]:
    return [Sample(patient, "4B", "12", parameter, value, CANONICAL_UNITS[parameter],
                   RECEIVED_MS - 60_000 + 1000 * (number // 5), "mon-4B-12", 0)
            for number, (parameter, value) in enumerate(zip(parameters, values, strict=False))]


well_formed_readings = st.lists(st.sampled_from(NUMERIC), min_size=1, max_size=12).flatmap(
    lambda parameters: st.tuples(st.just(parameters), st.lists(
        st.floats(0.0, 1.0), min_size=len(parameters), max_size=len(parameters))))


def possible(parameter: str, fraction: float) -> float:
    """A value inside the possible range of ``parameter`` (some outside the plausible one: artefacts)."""
    low, high = PLAUSIBILITY[parameter][:2]
    return round(low + fraction * (high - low), 2)


@settings(max_examples=100, deadline=None)
@given(well_formed_readings, st.sampled_from([None, "hl7"]))
def test_the_simulators_pcd01_reports_take_the_fast_path_and_agree(drawn: tuple, fmt: str | None) -> None:
    parameters, values = drawn
    # Values near the typical reading: inside the possible range, some outside the plausible one.
    samples = readings(parameters, [possible(p, v) for p, v in zip(parameters, values, strict=True)])
    check(to_hl7_pcd01(samples), fmt, expect_fast="hl7")


# --- HL7 v2: generated PCD-01 messages, most of them common, many of them not -------------

KNOWN_CODES = [f"{t.code}^{t.name}^MDC" for t in MDC_OBSERVATIONS] + [
    f"{t.code}^^MDC" for t in MDC_OBSERVATIONS[:4]] + [f"^{t.name}^" for t in MDC_OBSERVATIONS[:4]]
OTHER_CODES = [
    "150020^MDC_PRESS_BLD_NONINV^MDC",  # a compound: sys ^ dia ^ mean
    "196876^MDC_EVT_LEAD_DISCONN^MDC",  # a device event
    "69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC",  # an MDS row: ignored
    "8867-4^Heart rate^LN", "9279-1^^LN", "0002-4182^HR^MDIL", "^^", "", "147842^MDC_ECG_HEART_RATE^LN",
    "999^X^MDC^147842^MDC_ECG_HEART_RATE^MDC", "147842\\S\\1^X^MDC", "147842^MDC_ECG_HEART_RATE^MDC~1^^",
    "150021^MDC_PRESS_BLD_NONINV^MDC", " 147842 ^MDC_ECG_HEART_RATE^ mdc ",
]
UNITS = [f"{code}^{name}^MDC" for code, name in PREFERRED_MDC_UNIT.values()] + [
    "/min", "bpm", "%", "mm[Hg]", "mmHg", "kPa", "hPa", "Cel", "[degF]", "K", "1", "266560^MDC_DIM_FAHR^MDC",
    "^beats per minute", "", "kg", "^^^/min", "0004-0AA0^^MDIL", "%~/min", "mm\\S\\Hg", "^MDC_DIM_PERCENT^MDC",
]
VALUES = ["75", "97.5", "-3", "+12", ".5", "36.", "1e3", "NaN", "inf", "SENSOR OFF", "sensor_off", "---",
          "", " 88 ", "75^", "^75", "120^80^93", "75~76", "7\\S\\5", "1" * 400, "0", "350", "351", "47.5",
          "100.9", "12&3", "9" * 20]
STAMPS = ["20260315111458+0100", "20260315101458", "20260315101458.123+0000", "202603151014",
          "2026031510", "20261315101458", "", "20260315101458^S", "20260316000600+0000",
          "20260316000400+0000", "x", "20260315101458\\S\\", "20260315101458~20260315101459"]
STATUSES = ["", "", "questionable", "invalid", "test-data", "not-available", "questionable~invalid", "Valid",
            "demo-data^x", "calibration-ongoing"]
RESULTS = ["", "R", "F", "X", "D", "W", "r", "x", "F^x"]
TYPES = ["NM", "NM", "", "NA", "SN", "ST", "nm", "CWE"]
DEVICES = ["0012C1FFFE2A3B4C^^0012C1FFFE2A3B4C^EUI-64", "", "^^UID-7", "mon\\T\\1", "dev~other", " d1 ", "^^"]


@st.composite
def obx(draw: st.DrawFn, number: int, odd: bool) -> str:
    term = draw(st.sampled_from(MDC_OBSERVATIONS))
    code = draw(st.sampled_from([f"{term.code}^{term.name}^MDC", f"{term.code}^{term.name}^MDC",
                                 f"{term.code}^^MDC", f"^{term.name}^", f"{term.code}^{term.name}^"]))
    unit_code, unit_name = PREFERRED_MDC_UNIT[term.parameter]
    unit = draw(st.sampled_from([f"{unit_code}^{unit_name}^MDC", PREFERRED_UCUM[term.parameter], unit_code]))
    value = f"{possible(term.parameter, draw(st.floats(0.0, 1.0))):g}"
    common = not odd or draw(st.integers(0, 3)) > 0
    fields = ["OBX", str(number), draw(st.sampled_from(TYPES[:2] if common else TYPES)),
              code if common else draw(st.sampled_from([code, *KNOWN_CODES, *OTHER_CODES])),
              f"1.1.1.{number}", value if common else draw(st.sampled_from([value, *VALUES])),
              unit if common else draw(st.sampled_from([unit, *UNITS])), "",
              draw(st.sampled_from(STATUSES[:3] if common else STATUSES)), "", "",
              draw(st.sampled_from(RESULTS[:3] if common else RESULTS)), "", "",
              draw(st.sampled_from(STAMPS[:4] if common else STAMPS)), "", "", "",
              draw(st.sampled_from(DEVICES[:3] if common else DEVICES))]
    if not common and draw(st.booleans()):
        fields = fields[:draw(st.integers(4, 18))]
    return "|".join(fields)


@st.composite
def hl7_messages(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):  # half the messages are common ones, half have something odd
        return common_hl7(draw)
    header = draw(st.sampled_from(["MSH|^~\\&|", "MSH|^~\\&|", "MSH|^~\\&|", "MSH|^~\\|", "MSH#^~\\&#",
                                   "MSH|^~\\&#|", " MSH|^~\\&|"]))
    separator = header[3] if header.startswith("MSH") else "|"
    kind = draw(st.sampled_from(["ORU^R01^ORU_R01", "ORU^R01", "ORU^R01", "ADT^A01", "oru^r01", "ORU\\S\\R01",
                                 "ORU^R01~ADT^A01", ""]))
    msh = (header + separator.join(["GW^0012C1FFFE000001^EUI-64", "ICU", "", "",
                                     draw(st.sampled_from(STAMPS[:3] + ["", "x"])), "", kind, "MSG1", "P",
                                     "2.6"]))
    segments = [msh]
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.integers(0, 5)):
            segments.append(draw(st.sampled_from([
                "PID|||MRN-1^^^H^MR", "PID|||A^^^H^PI~MRN-2^^^H^MR", "PID||OLD-9", "PID|||", "PID",
                "PID|||MRN\\F\\3^^^H^MR", " PID|||MRN-4^^^H^MR", "PID|||\u00e9l\u00e8ve^^^H^MR"])))
        if draw(st.booleans()):
            segments.append(draw(st.sampled_from(["PV1||I|4B^^12", "PV1||I|4B^3^A", "PV1||I|^^7", "PV1",
                                                  "PV1||I|4B\\S\\x^^1"])))
        if draw(st.booleans()):
            segments.append("OBR|1|||182777000^monitoring^SNOMED-CT|||"
                            + draw(st.sampled_from(STAMPS[:3] + [""])))
        if draw(st.integers(0, 5)) == 0:
            segments.append(draw(st.sampled_from(["NTE|1||note", "ORC|RE", "MSH|^~\\&|X", "", " ", "\x1c"])))
        segments.extend(draw(obx(n, odd=True)) for n in range(1, draw(st.integers(0, 12)) + 1))
    ending = draw(st.sampled_from(["\r", "\r", "\r", "\n", "\r\n"]))
    text = ending.join(segments) + draw(st.sampled_from(["\r", "", "\r\r", " \r\n", "\n"]))
    encoded = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "latin-1"])), "replace")
    if draw(st.integers(0, 9)) == 0:
        encoded = b"\x0b" + encoded + b"\x1c\r"
    if draw(st.integers(0, 9)) == 0:
        encoded = b"\xef\xbb\xbf" + encoded
    return encoded


def common_hl7(draw: st.DrawFn) -> bytes:
    """A common report: standard header, a patient, its place, 1-12 numeric OBX rows."""
    segments = ["MSH|^~\\&|GW^0012C1FFFE000001^EUI-64|ICU|||" + draw(st.sampled_from(STAMPS[:3])) +
                "||ORU^R01^ORU_R01|MSG1|P|2.6", "PID|||MRN-1^^^H^MR", "PV1||I|4B^^12",
                "OBR|1|||182777000^monitoring^SNOMED-CT|||" + draw(st.sampled_from(STAMPS[:3] + [""]))]
    segments.extend(draw(obx(n, odd=False)) for n in range(1, draw(st.integers(1, 12)) + 1))
    return ("\r".join(segments) + "\r").encode()


@settings(max_examples=300, deadline=None)
@given(hl7_messages(), st.sampled_from([None, "hl7", "hl7", "json", "fhir"]),
       st.sampled_from([RECEIVED_MS, RECEIVED_MS, 0, 1_773_500_000_000]))
def test_hl7_fast_path_agrees_with_the_full_parser(raw: bytes, fmt: str | None, received_ms: int) -> None:
    check(raw, fmt, received_ms=received_ms)


def test_hl7_fast_path_follows_the_site_code_table() -> None:
    """A vendor code the site table maps is a reading once the table is installed, and the
    fast path's remembered OBX shapes do not outlive the table they were read with."""
    raw = (b"MSH|^~\\&|GW|ICU|||20260315101458||ORU^R01|1|P|2.6\rPID|||MRN-1^^^H^MR\r"
           b"OBX|1|NM|0002-4182^HR^MDIL||88|0004-0AA0^bpm^MDIL|||||R|||20260315101458\r"
           b"OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC||90|264864^^MDC|||||R|||20260315101458\r")
    before = fast_rows(raw, RECEIVED_MS, "hl7")
    assert before is not None and [row[4] for row in before[1]] == [90.0]  # the vendor row is ignored
    install_site_codes(parse_site_codes("kind,system,code,maps_to\nobservation,MDIL,0002-4182,heart_rate\n"
                                        "unit,MDIL,0004-0AA0,/min\n"))
    try:
        during = fast_rows(raw, RECEIVED_MS, "hl7")
        assert during is not None and [(row[4], row[9]) for row in during[1]] == [
            (88.0, "MDIL:0002-4182"), (90.0, "MDC:147842")]
        check(raw, "hl7", expect_fast="hl7")
    finally:
        install_site_codes(None)
    assert fast_rows(raw, RECEIVED_MS, "hl7") == before


# --- FHIR: the simulator's Bundles, changed in the ways senders differ ---------------------

MUTATIONS = [
    ("status", "preliminary"), ("status", "entered-in-error"), ("status", "unknown"), ("status", None),
    ("status", ["final"]), ("component", []), ("modifierExtension", [{"url": "x"}]),
    ("implicitRules", "x"), ("contained", []), ("dataAbsentReason", {"coding": [{"code": "error"}]}),
    ("effectiveDateTime", "2026-03-15T10:14:58+01:00"), ("effectiveDateTime", "2026-03-15"),
    ("effectiveDateTime", "2026-03-16T00:06:00Z"), ("effectiveDateTime", 5), ("effectiveInstant", "2026-03-15T10:14:58Z"),
    ("effectivePeriod", {"start": "2026-03-15T10:14:58Z"}), ("valueQuantity", {"value": 7, "unit": "kPa"}),
    ("valueQuantity", {"value": 98.6, "unit": "[degF]", "code": "[degF]", "system": "http://unitsofmeasure.org"}),
    ("valueQuantity", {"value": True, "code": "/min"}), ("valueQuantity", {"value": "75", "code": "/min"}),
    ("valueQuantity", {"value": 75}), ("valueQuantity", {"value": 75, "code": "kg"}),
    ("valueQuantity", {"value": 75, "unit": "beats per minute"}), ("valueQuantity", {"value": 75, "comparator": "<"}),
    ("valueQuantity", {"value": 10**18, "code": "%"}), ("valueQuantity", {"value": -1, "code": "/min"}),
    ("valueQuantity", {"value": 2, "code": "0004-0AA0", "system": "urn:mdil"}), ("valueQuantity", 75),
    ("valueString", "75"), ("subject", {"identifier": {"value": "MRN-7"}}), ("subject", {"reference": "Patient/zz"}),
    ("subject", {"reference": "Patient?identifier=urn:mrn|MRN-8"}), ("subject", {}), ("subject", "Patient/1"),
    ("encounter", {"reference": "Encounter/none"}), ("encounter", None), ("device", {"display": "monitor 3"}),
    ("device", {"reference": "Device/none"}), ("code", {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}),
    ("code", {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]}),
    ("code", {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150456"}]}),
    ("code", {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]}), ("code", "8867-4"),
    ("code", {"coding": [{"system": "urn:mdil", "code": "0002-4182"}]}), ("hasMember", []), ("note", [{"text": "x"}]),
]
ENTRY_MUTATIONS = [
    ("bundle type", "searchset"), ("bundle type", "transaction"), ("entry", "not a list"),
    ("patient modifier", True), ("entry modifier", True), ("extra resource", {"resourceType": "Provenance", "id": "x"}),
    ("drop patient", True), ("single observation", True), ("patient identifier", [{"value": "ALT-1"}]),
    ("device eui64", True), ("non-object entry", True), ("location loop", True),
]


@st.composite
def fhir_messages(draw: st.DrawFn) -> bytes:
    parameters, values = draw(well_formed_readings)
    parameters = [p for p in parameters if p != "diastolic_bp"] or ["heart_rate"]
    samples = readings(parameters, [possible(p, v) for p, v in zip(parameters, values, strict=False)],
                       patient=draw(st.sampled_from(["p1", "MRN 4711", "p/2"])))
    bundle: dict[str, Any] = orjson.loads(to_fhir_bundle(samples))
    observations = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    for _ in range(draw(st.integers(0, 3))):
        key, value = draw(st.sampled_from(MUTATIONS))
        target = draw(st.sampled_from(observations))
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
        if key.startswith("value") and key != "valueQuantity":
            target.pop("valueQuantity", None)
        if key.startswith("effective") and key != "effectiveDateTime":
            target.pop("effectiveDateTime", None)
    if draw(st.integers(0, 3)) == 0:
        what, value = draw(st.sampled_from(ENTRY_MUTATIONS))
        patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        if what == "bundle type":
            bundle["type"] = value
        elif what == "entry":
            bundle["entry"] = value
        elif what == "patient modifier":
            patient["resource"]["modifierExtension"] = [{"url": "x"}]
        elif what == "entry modifier":
            bundle["entry"][-1]["modifierExtension"] = [{"url": "x"}]
        elif what == "extra resource":
            bundle["entry"].insert(0, {"resource": value})
        elif what == "drop patient":
            bundle["entry"].remove(patient)
        elif what == "single observation":
            observation = observations[0]
            observation["subject"] = {"identifier": {"value": "p1"}}
            return orjson.dumps(observation)
        elif what == "patient identifier":
            patient["resource"]["identifier"] = value
        elif what == "device eui64":
            device = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Device")
            device["resource"]["identifier"].insert(0, {"system": "urn:ieee:std:11073:20101:eui64", "value": "00AB"})
        elif what == "non-object entry":
            bundle["entry"].append(7)
        elif what == "location loop":
            for entry in bundle["entry"]:
                if entry["resource"].get("physicalType"):
                    entry["resource"]["partOf"] = {"reference": entry["fullUrl"]}
    return orjson.dumps(bundle)


@settings(max_examples=100, deadline=None)
@given(well_formed_readings, st.sampled_from([None, "fhir"]))
def test_the_simulators_fhir_bundles_take_the_fast_path_and_agree(drawn: tuple, fmt: str | None) -> None:
    parameters, values = drawn
    samples = readings(parameters, [possible(p, v) for p, v in zip(parameters, values, strict=True)])
    check(to_fhir_bundle(samples), fmt, expect_fast="fhir")


@settings(max_examples=400, deadline=None)
@given(fhir_messages(), st.sampled_from([None, "fhir", "fhir", "json", "hl7"]),
       st.sampled_from([RECEIVED_MS, RECEIVED_MS, 0, 1_773_500_000_000]))
def test_fhir_fast_path_agrees_with_the_full_parser(raw: bytes, fmt: str | None, received_ms: int) -> None:
    check(raw, fmt, received_ms=received_ms)


def test_fast_paths_decline_what_they_cannot_read_alone() -> None:
    """A sensor-off report, a compound pressure and a BP panel are the full parser's: it
    makes their technical events and reads their positions."""
    base = ("MSH|^~\\&|GW|ICU|||20260315101458||ORU^R01|1|P|2.6\rPID|||MRN-1^^^H^MR\r"
            "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||{value}|262688^^MDC|||||{result}|||20260315101458\r")
    assert fast_rows(base.format(value="97", result="R").encode(), RECEIVED_MS, "hl7") is not None
    assert fast_rows(base.format(value="97", result="X").encode(), RECEIVED_MS, "hl7") is None
    assert fast_rows(base.format(value="SENSOR OFF", result="R").encode(), RECEIVED_MS, "hl7") is None
    compound = base.replace("150456^MDC_PULS_OXIM_SAT_O2", "150020^MDC_PRESS_BLD_NONINV").replace("|NM|", "|NA|")
    assert fast_rows(compound.format(value="120^80^93", result="R").encode(), RECEIVED_MS, "hl7") is None
    bundle = orjson.loads(to_fhir_bundle(readings(["systolic_bp"], [120.0])))
    bundle["entry"][-1]["resource"]["code"] = {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
    assert fast_rows(orjson.dumps(bundle), RECEIVED_MS, "fhir") is None
    assert parse_raw(orjson.dumps(bundle), RECEIVED_MS, "fhir").rejection is not None


def test_the_benchmarks_gateway_messages_are_ten_readings_the_fast_path_takes() -> None:
    """bench/pipeline.py's HL7 and FHIR phases send what this file holds the fast paths to:
    ten readings of one patient a message, keyed by that patient, read as the full parser reads them."""
    from bench.pipeline import gateway_messages

    for fmt in ("hl7", "fhir"):
        payloads, keys = gateway_messages(fmt, 40, 2, RECEIVED_MS - 3_600_000, prefix="t-")
        assert len(payloads) == len(keys) == 4
        for raw, key in zip(payloads, keys, strict=True):
            fast = fast_rows(raw, RECEIVED_MS, fmt)
            assert fast is not None and fast[0] == fmt and len(fast[1]) == 10
            assert {row[0].encode() for row in fast[1]} == {key}
            check(raw, fmt, expect_fast=fmt)
