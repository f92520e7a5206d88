"""HL7 v2 ORU^R01 (IHE PCD-01) through the public entry point `parse_raw`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from vitalstream.ingest import parse_raw
from vitalstream.ingest.hl7v2 import hl7_ack

DATA = Path(__file__).parent / "data"
RECEIVED_MS = 1_773_619_200_000  # 2026-03-16 00:00 UTC: after every device time here


def utc_ms(*fields: int, offset_h: int = 0) -> int:
    zone = dt.timezone(dt.timedelta(hours=offset_h))
    return int(dt.datetime(*fields, tzinfo=zone).timestamp() * 1000)


def message(*segments: str, separator: str = "\r") -> bytes:
    header = ("MSH|^~\\&|GW^0012C1FFFE000001^EUI-64|ICU|||20260315111502+0100||ORU^R01^ORU_R01|"
              "MSG1|P|2.6")
    return separator.join((header, *segments)).encode()


PID = "PID|||MRN-1^^^H^MR"
PV1 = "PV1||I|4B^^12"


def test_pcd01_monitor_report_gives_one_sample_per_numeric_obx():
    result = parse_raw((DATA / "pcd01_monitor.hl7").read_bytes(), RECEIVED_MS)
    assert result.rejection is None and result.format == "hl7"
    by_code = {s.source_code: s for s in result.samples}
    # Both heart-rate sources are kept apart by their source code: ECG and pulse oximeter.
    assert by_code["MDC:147842"].parameter == by_code["MDC:149530"].parameter == "heart_rate"
    assert (by_code["MDC:147842"].value, by_code["MDC:149530"].value) == (92.0, 94.0)
    assert by_code["MDC:151562"].value == 22.0
    assert (by_code["MDC:150021"].value, by_code["MDC:150022"].value) == (104.0, 61.0)
    # Oral temperature 100.9 °F declared as MDC_DIM_FAHR is a fever of 38.28 °C.
    assert by_code["MDC:188424"].parameter == "temperature"
    assert by_code["MDC:188424"].value == pytest.approx((100.9 - 32) * 5 / 9, abs=0.005)
    assert by_code["MDC:188424"].unit == "Cel"
    # OBX-14 11:14:58 at +01:00 is 10:14:58 UTC; the NIBP cycle ran earlier, at 11:12:30.
    assert by_code["MDC:147842"].device_time_ms == utc_ms(2026, 3, 15, 10, 14, 58)
    assert by_code["MDC:150021"].device_time_ms == utc_ms(2026, 3, 15, 11, 12, 30, offset_h=1)
    first = by_code["MDC:147842"]
    assert (first.patient_id, first.ward, first.bed) == ("MRN-4711", "4B", "12-A")
    assert first.source == "0012C1FFFE2A3B4C" and first.ingest_time_ms == RECEIVED_MS
    # The SpO2 probe reported "result cannot be obtained": a technical event, not a value.
    assert [(t["kind"], t["parameter"]) for t in result.technical] == [("sensor_off", "spo2")]
    assert "spo2" not in {s.parameter for s in result.samples}
    # MDS and VMD rows and the mean pressure have no canonical parameter.
    assert result.ignored == 3


def test_newline_separators_and_escapes_parse_like_carriage_returns():
    cr = (DATA / "pcd01_monitor.hl7").read_bytes()
    lf = cr.replace(b"\r", b"\n")
    crlf = cr.replace(b"\r", b"\r\n")
    assert parse_raw(lf, RECEIVED_MS).samples == parse_raw(cr, RECEIVED_MS).samples
    assert parse_raw(crlf, RECEIVED_MS).samples == parse_raw(cr, RECEIVED_MS).samples


def test_escape_sequences_are_resolved_in_identifiers():
    raw = message("PID|||A\\T\\B\\X2D\\1^^^H^MR", "PV1||I|Ward\\F\\4^^1",
                  "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||96|%^^UCUM|||||R|||20260315101500+0000")
    sample = parse_raw(raw, RECEIVED_MS).samples[0]
    assert (sample.patient_id, sample.ward) == ("A&B-1", "Ward|4")


def test_pid3_prefers_the_medical_record_number_among_repetitions():
    raw = message("PID|||999^^^Ins^PI~MRN-77^^^H^MR", "OBX|1|NM|151562^MDC_RESP_RATE^MDC||18|/min^^UCUM|||||R")
    assert parse_raw(raw, RECEIVED_MS).samples[0].patient_id == "MRN-77"


def test_time_falls_back_from_obx14_to_obr7_to_msh7():
    obx = "OBX|1|NM|151562^MDC_RESP_RATE^MDC||18|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R"
    with_obr = message(PID, "OBR|1||||||20260315093000-0500", obx)
    only_msh = message(PID, obx)
    assert parse_raw(with_obr, RECEIVED_MS).samples[0].device_time_ms == utc_ms(2026, 3, 15, 14, 30)
    # MSH-7 11:15:02 at +01:00.
    assert parse_raw(only_msh, RECEIVED_MS).samples[0].device_time_ms == utc_ms(2026, 3, 15, 10, 15, 2)


def test_time_without_offset_is_utc_and_fractions_are_kept():
    raw = message(PID, "OBX|1|NM|151562^MDC_RESP_RATE^MDC||18|/min^^UCUM|||||R|||20260315101500.125")
    assert parse_raw(raw, RECEIVED_MS).samples[0].device_time_ms == utc_ms(2026, 3, 15, 10, 15) + 125


def test_each_patient_group_keeps_its_own_patient_and_bed():
    obx = "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||{hr}|/min^^UCUM|||||R"
    raw = message("PID|||P1^^^H^MR", "PV1||I|4B^^1", obx.format(hr=70),
                  "PID|||P2^^^H^MR", "PV1||I|4B^^2", obx.format(hr=120))
    samples = parse_raw(raw, RECEIVED_MS).samples
    assert [(s.patient_id, s.bed, s.value) for s in samples] == [("P1", "1", 70.0), ("P2", "2", 120.0)]


@pytest.mark.parametrize("value, status, flags, kind", [
    ("SENSOR_OFF", "R", "", "sensor_off"),
    ("", "R", "not-available", "sensor_off"),
    ("", "R", "", "no_value"),
    ("---", "R", "", "no_value"),
])
def test_sensor_off_markers_become_technical_events(value, status, flags, kind):
    raw = message(PID, PV1, f"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||{value}|%^^UCUM|"
                            f"|{flags}|||{status}|||20260315101500+0000")
    result = parse_raw(raw, RECEIVED_MS)
    assert result.rejection is None and result.samples == []
    assert [(t["kind"], t["parameter"], t["bed"]) for t in result.technical] == [(kind, "spo2", "12")]


def test_ecg_lead_disconnected_event_silences_heart_rate():
    raw = message(PID, "OBX|1|CWE|196876^MDC_EVT_LEAD_DISCONN^MDC|1.1.1.1|||||||R")
    assert [t["parameter"] for t in parse_raw(raw, RECEIVED_MS).technical] == ["heart_rate"]


def test_questionable_measurement_is_kept_as_artefact():
    raw = message(PID, "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||88|%^^UCUM||questionable|||R")
    sample = parse_raw(raw, RECEIVED_MS).samples[0]
    assert sample.value == 88.0 and sample.artefact


def test_implausible_but_possible_value_is_flagged_artefact():
    # A heart rate of 280/min is possible from a device but not from a ward patient's pulse.
    raw = message(PID, "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||280|/min^^UCUM|||||R")
    assert parse_raw(raw, RECEIVED_MS).samples[0].artefact


def test_demo_data_and_deleted_results_are_ignored_not_charted():
    raw = message(PID, "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||80|/min^^UCUM||demo-data|||R",
                  "OBX|2|NM|151562^MDC_RESP_RATE^MDC||18|/min^^UCUM|||||W",
                  "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|%^^UCUM|||||R")
    result = parse_raw(raw, RECEIVED_MS)
    assert [s.parameter for s in result.samples] == ["spo2"] and result.ignored == 2


@pytest.mark.parametrize("obx, reason", [
    # 98.6 declared as Celsius: a unit error at the gateway, never silently read as °F.
    ("OBX|1|NM|150344^MDC_TEMP^MDC||98.6|268192^MDC_DIM_DEGC^MDC|||||R", "implausible_value"),
    ("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97||||||R", "missing_unit"),
    ("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|266016^MDC_DIM_MMHG^MDC|||||R", "bad_unit"),
    ("OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||8O|/min^^UCUM|||||R", "bad_value"),
    ("OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||80|/min^^UCUM|||||R|||2026031510", "bad_timestamp"),
    ("OBX|1|NM|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC||||||||X", "no_observations"),
])
def test_unusable_observations_reject_the_message_with_a_reason(obx, reason):
    result = parse_raw(message(PID, obx), RECEIVED_MS)
    assert result.rejection is not None and result.rejection.reason == reason
    assert result.samples == [] and result.technical == []


def test_observation_without_a_patient_is_rejected():
    raw = message("OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||80|/min^^UCUM|||||R")
    assert parse_raw(raw, RECEIVED_MS).rejection.reason == "missing_patient"


def test_other_message_types_are_rejected_as_unsupported():
    raw = b"MSH|^~\\&|ADT|H|||20260315101500||ADT^A01|1|P|2.6\rPID|||MRN-1"
    assert parse_raw(raw, RECEIVED_MS).rejection.reason == "unsupported_message"


def test_mllp_framed_message_parses_like_the_bare_one():
    bare = (DATA / "pcd01_monitor.hl7").read_bytes()
    framed = b"\x0b" + bare + b"\x1c\r"
    assert parse_raw(framed, RECEIVED_MS).samples == parse_raw(bare, RECEIVED_MS).samples


def test_ack_carries_the_control_id_and_the_reason():
    raw = (DATA / "pcd01_monitor.hl7").read_bytes()
    ack = hl7_ack(raw, "AE", "bad_unit: temperature in 'x|y'", RECEIVED_MS, "103").decode()
    segments = ack.rstrip("\r").split("\r")
    assert segments[0].split("|")[8] == "ACK^R01^ACK"
    msa = segments[1].split("|")
    assert msa[:3] == ["MSA", "AE", "MSG20260315111502"]
    # The field separator inside the text is escaped, so the ACK still parses.
    assert "\\F\\" in msa[3] and segments[2].startswith("ERR|||103^")
