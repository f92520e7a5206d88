"""Messages as third-party senders build them (hl7apy for HL7 v2, fhir.resources R4B for
FHIR: see senders.py), read by `parse_raw` (issue 22)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitalstream.ingest import codes, detect_format, parse_raw
from vitalstream.ingest.codes import SiteCodeError, configure_site_codes, load_site_codes
from vitalstream.ingest.split import split_messages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from senders import (  # noqa: E402
    EUI64,
    HR_MDC,
    SPO2_MDC,
    UCUM,
    component,
    envelope,
    fhir_observation,
    loinc,
    nm,
    oru_r01,
    transaction,
)

RECEIVED_MS = 1_773_570_000_000


def values(result) -> dict[str, float]:
    assert result.rejection is None, result.rejection
    return {sample.parameter: sample.value for sample in result.samples}


def test_batch_in_one_payload_is_read_message_by_message() -> None:
    batch = "\r".join([
        envelope("FHS", fhs_3="GATEWAY", fhs_11="F-1"), envelope("BHS", bhs_3="GATEWAY", bhs_11="B-1"),
        oru_r01([HR_MDC], control_id="M-1"), oru_r01([SPO2_MDC], control_id="M-2"),
        envelope("BTS", bts_1="2"), envelope("FTS", fts_1="1"),
    ]).encode()
    assert detect_format(batch) == "hl7", "a batch starts with FHS, not MSH"
    result = parse_raw(batch, RECEIVED_MS)
    assert values(result) == {"heart_rate": 72.0, "spo2": 97.0}, "both messages of the batch"
    assert len(split_messages(batch, "hl7")) == 2


def test_batch_with_a_bad_message_names_it() -> None:
    bad = nm("150456^MDC_PULS_OXIM_SAT_O2^MDC", "97", "")
    batch = "\r".join([envelope("BHS", bhs_11="B-2"), oru_r01([HR_MDC]), oru_r01([bad]),
                       envelope("BTS", bts_1="2")]).encode()
    rejection = parse_raw(batch, RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "missing_unit"
    assert "batch message 2" in rejection.detail


def test_obx3_in_loinc_only_is_read_by_the_loinc_table() -> None:
    result = parse_raw(oru_r01([nm("8867-4^Heart rate^LN", "88", "/min^per minute^UCUM")]).encode(), RECEIVED_MS)
    assert values(result) == {"heart_rate": 88.0}
    assert result.samples[0].source_code == "LOINC:8867-4"


def test_obx3_loinc_first_with_mdc_as_the_alternate_code() -> None:
    code = "8480-6^Systolic blood pressure^LN^150021^MDC_PRESS_BLD_NONINV_SYS^MDC"
    result = parse_raw(oru_r01([nm(code, "131", "266016^MDC_DIM_MMHG^MDC")]).encode(), RECEIVED_MS)
    assert values(result) == {"systolic_bp": 131.0}
    assert result.samples[0].source_code == "LOINC:8480-6", "the primary code wins"


def test_obx3_vendor_code_first_falls_back_to_the_mdc_alternate() -> None:
    code = "0002-4182^HR^MDIL^147842^MDC_ECG_HEART_RATE^MDC"
    result = parse_raw(oru_r01([nm(code, "64", "264864^MDC_DIM_BEAT_PER_MIN^MDC")]).encode(), RECEIVED_MS)
    assert values(result) == {"heart_rate": 64.0}
    assert result.samples[0].source_code == "MDC:147842"


def test_compound_nibp_is_systolic_diastolic_mean_by_position() -> None:
    row = {"obx_2": "NA", "obx_3": "150020^MDC_PRESS_BLD_NONINV^MDC", "obx_5": "118^76^90",
           "obx_6": "266016^MDC_DIM_MMHG^MDC"}
    result = parse_raw(oru_r01([row]).encode(), RECEIVED_MS)
    # The mean (position 3) has no canonical parameter: not a sample, and not a diastolic.
    assert values(result) == {"systolic_bp": 118.0, "diastolic_bp": 76.0}
    assert {s.source_code for s in result.samples} == {"MDC:150020"}


def test_compound_nibp_with_an_empty_position_reports_it_missing() -> None:
    row = {"obx_2": "NA", "obx_3": "150020^MDC_PRESS_BLD_NONINV^MDC", "obx_5": "118^^90",
           "obx_6": "266016^MDC_DIM_MMHG^MDC"}
    result = parse_raw(oru_r01([row]).encode(), RECEIVED_MS)
    assert values(result) == {"systolic_bp": 118.0}
    assert [(e["kind"], e["parameter"]) for e in result.technical] == [("no_value", "diastolic_bp")]


def test_na_with_several_values_on_a_single_value_code_is_refused_not_cut() -> None:
    row = {"obx_2": "NA", "obx_3": "150456^MDC_PULS_OXIM_SAT_O2^MDC", "obx_5": "97^95^91",
           "obx_6": "262688^MDC_DIM_PERCENT^MDC"}
    rejection = parse_raw(oru_r01([row]).encode(), RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "bad_value"
    assert "NA gives 3" in rejection.detail, "the reason says what was wrong"


def test_na_with_one_value_on_a_single_value_code_is_that_value() -> None:
    row = {"obx_2": "NA", "obx_3": "150456^MDC_PULS_OXIM_SAT_O2^MDC", "obx_5": "96",
           "obx_6": "262688^MDC_DIM_PERCENT^MDC"}
    assert values(parse_raw(oru_r01([row]).encode(), RECEIVED_MS)) == {"spo2": 96.0}


def test_v231_sender_with_the_id_only_in_pid2() -> None:
    message = oru_r01([HR_MDC], version="2.3.1", pid={"pid_2": "LEGACY-42"})
    assert "|ORU^R01|" in message and "PID||LEGACY-42" in message
    result = parse_raw(message.encode(), RECEIVED_MS)
    assert values(result) == {"heart_rate": 72.0}
    assert result.samples[0].patient_id == "LEGACY-42"


def test_pid3_still_wins_over_pid2() -> None:
    result = parse_raw(oru_r01([HR_MDC], pid={"pid_2": "OLD-1", "pid_3": "MRN-9^^^H^MR"}).encode(), RECEIVED_MS)
    assert result.samples[0].patient_id == "MRN-9"


def test_structured_numeric_with_a_comparator_is_not_an_exact_reading() -> None:
    row = {"obx_2": "SN", "obx_3": "147842^MDC_ECG_HEART_RATE^MDC", "obx_5": ">^250",
           "obx_6": "264864^MDC_DIM_BEAT_PER_MIN^MDC"}
    rejection = parse_raw(oru_r01([row]).encode(), RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "bad_value" and "comparator" in rejection.detail
    exact = {**row, "obx_5": "^120"}
    assert values(parse_raw(oru_r01([exact]).encode(), RECEIVED_MS)) == {"heart_rate": 120.0}


# --- Site code table --------------------------------------------------------------------

SITE_TABLE = """# Philips IntelliVue (MDIL) codes on ward 4B's gateway
kind,system,code,maps_to
observation,MDIL,0002-4182,heart_rate
observation,MDIL,0002-4BB8,spo2
unit,MDIL,0004-0AA0,/min
unit,MDIL,0004-0220,%
observation,urn:oid:1.3.46.670589.6.1.1,0002-4182,heart_rate
"""


@pytest.fixture
def site_table(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "site-codes.csv"
    path.write_text(SITE_TABLE)
    configure_site_codes(str(path))
    try:
        yield path
    finally:
        configure_site_codes("")


def test_vendor_codes_map_through_the_site_table(site_table: Path) -> None:
    rows = [nm("0002-4182^HR^MDIL", "77", "0004-0aa0^bpm^MDIL"), nm("0002-4bb8^SpO2^MDIL", "95", "0004-0220^%^MDIL")]
    result = parse_raw(oru_r01(rows).encode(), RECEIVED_MS)
    assert values(result) == {"heart_rate": 77.0, "spo2": 95.0}
    assert result.samples[0].source_code == "MDIL:0002-4182", "the vendor code is kept as the source"


def test_vendor_codes_without_a_site_table_are_ignored_not_guessed() -> None:
    assert codes.site_table().observations == {}
    result = parse_raw(oru_r01([nm("0002-4182^HR^MDIL", "77", "0004-0aa0^bpm^MDIL")]).encode(), RECEIVED_MS)
    assert result.rejection is not None and result.rejection.reason == "no_observations"


def test_site_table_named_by_the_environment_serves_library_callers(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_raw called by a program that never ran a vitalstream command still reads the
    table that VITALSTREAM_SITE_CODE_TABLE names."""
    path = tmp_path / "env-codes.csv"
    path.write_text(SITE_TABLE)
    monkeypatch.setenv("VITALSTREAM_SITE_CODE_TABLE", str(path))
    result = parse_raw(oru_r01([nm("0002-4182^HR^MDIL", "66", "0004-0aa0^bpm^MDIL")]).encode(), RECEIVED_MS)
    assert values(result) == {"heart_rate": 66.0}


def test_site_table_maps_fhir_codings_too(site_table: Path) -> None:
    observation = fhir_observation(
        {"coding": [{"system": "urn:oid:1.3.46.670589.6.1.1", "code": "0002-4182"}]},
        {"value": 70, "system": UCUM, "code": "/min"})
    assert values(parse_raw(observation, RECEIVED_MS)) == {"heart_rate": 70.0}


@pytest.mark.parametrize(("text", "complaint"), [
    ("kind,system,code,maps_to\nobservation,MDIL,0002-4182,pulse\n", "'pulse' is not a parameter"),
    ("system,code,parameter\n", "header must be kind,system,code,maps_to"),
    ("kind,system,code,maps_to\nunit,MDIL,0004-0AA0,beats\n", "not a UCUM unit"),
    ("kind,system,code,maps_to\nobservation,MDIL,1,heart_rate\nobservation,MDIL,1,spo2\n", "mapped twice"),
    ("kind,system,code,maps_to\nobservation,MDIL,,heart_rate\n", "4 non-empty cells"),
    ("# only a comment\n", "empty"),
])
def test_a_bad_site_table_is_one_readable_line(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "codes.csv"
    path.write_text(text)
    with pytest.raises(SiteCodeError) as caught:
        load_site_codes(str(path))
    message = str(caught.value)
    assert complaint in message and "\n" not in message and str(path) in message


@pytest.mark.parametrize("command", [["ingest", "--format", "hl7"], ["gateway", "mllp", "--port", "0"],
                                     ["worker"]])
def test_commands_stop_at_start_on_a_bad_site_table(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("kind,system,code,maps_to\nobservation,MDIL,0002-4182,pulse\n")
    message = tmp_path / "m.hl7"
    message.write_text(oru_r01([HR_MDC]))
    argv = [*command, str(message)] if command[0] == "ingest" else command
    # A broker address nothing listens on: the table is checked before any connection.
    done = subprocess.run([sys.executable, "-m", "vitalstream", *argv], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "VITALSTREAM_SITE_CODE_TABLE": str(path),
                                           "VITALSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "codes.csv:2" in done.stderr
    assert "Traceback" not in done.stderr


# --- FHIR R4, built with fhir.resources --------------------------------------------------

def test_vital_signs_panel_with_values_as_components() -> None:
    panel = fhir_observation(loinc("85353-1"), component=[
        component("8867-4", 91, "/min"), component("9279-1", 19, "/min"), component("59408-5", 95, "%"),
        component("8310-5", 37.4, "Cel"), component("8480-6", 124, "mm[Hg]"), component("8462-4", 79, "mm[Hg]"),
        component("29463-7", 70, "kg")])  # body weight: not a vital sign NEWS2 reads
    result = parse_raw(panel, RECEIVED_MS)
    assert values(result) == {"heart_rate": 91.0, "resp_rate": 19.0, "spo2": 95.0, "temperature": 37.4,
                              "systolic_bp": 124.0, "diastolic_bp": 79.0}
    assert result.ignored == 1


def test_vital_signs_panel_without_components_is_still_only_a_grouping() -> None:
    grouping = fhir_observation(loinc("85353-1"), hasMember=[{"reference": "Observation/hr-1"}])
    assert parse_raw(grouping, RECEIVED_MS).rejection.reason == "no_observations"


def test_blood_pressure_coded_55284_4_with_components() -> None:
    bp = fhir_observation(loinc("55284-4"), component=[component("8480-6", 142, "mm[Hg]"),
                                                       component("8462-4", 88, "mm[Hg]")])
    assert values(parse_raw(bp, RECEIVED_MS)) == {"systolic_bp": 142.0, "diastolic_bp": 88.0}


def test_contained_patient_and_device_give_the_identifiers() -> None:
    observation = fhir_observation(
        loinc("8867-4"), {"value": 101, "system": UCUM, "code": "/min"},
        subject={"reference": "#p1"}, device={"reference": "#d1"},
        contained=[{"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-31"}]},
                   {"resourceType": "Device", "id": "d1", "identifier": [
                       {"system": "urn:serial", "value": "SN-1"}, {"system": EUI64, "value": "0012340000000042"}]}])
    result = parse_raw(observation, RECEIVED_MS)
    assert values(result) == {"heart_rate": 101.0}
    assert result.samples[0].patient_id == "MRN-31"
    assert result.samples[0].source == "0012340000000042", "the EUI-64, not '#d1' or the serial"


@pytest.mark.parametrize("reference", ["Patient?identifier=urn:oid:1.2.3|MRN-55",
                                       "Patient?identifier=urn%3Aoid%3A1.2.3%7CMRN-55",
                                       "Patient?identifier=MRN-55"])
def test_transaction_with_a_conditional_reference(reference: str) -> None:
    result = parse_raw(transaction(reference), RECEIVED_MS)
    assert values(result) == {"resp_rate": 23.0}
    assert result.samples[0].patient_id == "MRN-55"


def test_byte_order_mark_before_the_json() -> None:
    body = b"\xef\xbb\xbf" + transaction("urn:uuid:5d3c1b8e-0000-4000-8000-000000000001")
    assert detect_format(body) == "fhir"
    result = parse_raw(body, RECEIVED_MS)
    assert values(result) == {"resp_rate": 23.0} and result.samples[0].patient_id == "MRN-55"


@pytest.mark.parametrize(("code", "unit", "value", "expected"), [
    ("8867-4", "beats/minute", 84, ("heart_rate", 84.0)),
    ("8867-4", "Beats per minute", 84, ("heart_rate", 84.0)),
    ("9279-1", "breaths/minute", 18, ("resp_rate", 18.0)),
    ("8310-5", "degrees Fahrenheit", 100.4, ("temperature", 38.0)),
    ("8480-6", "mm Hg", 120, ("systolic_bp", 120.0)),
])
def test_unit_as_unambiguous_human_text(code: str, unit: str, value: float, expected: tuple) -> None:
    observation = fhir_observation(loinc(code), {"value": value, "unit": unit})
    result = parse_raw(observation, RECEIVED_MS)
    assert values(result) == dict([expected])


@pytest.mark.parametrize(("code", "unit"), [("8310-5", "C"), ("9279-1", "beats/minute"), ("8867-4", "per hour")])
def test_ambiguous_or_wrong_unit_text_is_refused(code: str, unit: str) -> None:
    """A bare C is the coulomb in UCUM; beats are not breaths: never guessed."""
    rejection = parse_raw(fhir_observation(loinc(code), {"value": 37, "unit": unit}), RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "bad_unit"


@pytest.mark.parametrize("comparator", [">", ">=", "<", "<="])
def test_value_with_a_comparator_is_not_an_exact_reading(comparator: str) -> None:
    observation = fhir_observation(loinc("8867-4"), {"value": 250, "comparator": comparator,
                                                     "system": UCUM, "code": "/min"})
    rejection = parse_raw(observation, RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "bad_value"
    assert "comparator" in rejection.detail and "250" in rejection.detail


MODIFIER = [{"url": "http://example.org/fhir/StructureDefinition/not-really", "valueBoolean": True}]


def test_unknown_modifier_extension_stops_the_resource() -> None:
    observation = fhir_observation(loinc("8867-4"), {"value": 80, "system": UCUM, "code": "/min"},
                                   modifierExtension=MODIFIER)
    rejection = parse_raw(observation, RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "unknown_modifier"


def test_unknown_modifier_extension_on_a_component_or_the_subject_stops_it_too() -> None:
    on_component = fhir_observation(loinc("85354-9"), component=[
        {**component("8480-6", 120, "mm[Hg]"), "modifierExtension": MODIFIER}, component("8462-4", 80, "mm[Hg]")])
    assert parse_raw(on_component, RECEIVED_MS).rejection.reason == "unknown_modifier"
    on_patient = fhir_observation(loinc("8867-4"), {"value": 80, "system": UCUM, "code": "/min"},
                                  subject={"reference": "#p1"}, contained=[
                                      {"resourceType": "Patient", "id": "p1", "modifierExtension": MODIFIER,
                                       "identifier": [{"value": "MRN-1"}]}])
    assert parse_raw(on_patient, RECEIVED_MS).rejection.reason == "unknown_modifier"


def test_plain_extension_is_not_a_modifier() -> None:
    observation = fhir_observation(loinc("8867-4"), {"value": 80, "system": UCUM, "code": "/min"},
                                   extension=[{"url": "http://example.org/x", "valueString": "note"}])
    assert values(parse_raw(observation, RECEIVED_MS)) == {"heart_rate": 80.0}


# --- Nothing received -------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\x0b\x1c\r", b"\xef\xbb\xbf"])
def test_empty_input_is_nothing_received(raw: bytes) -> None:
    for fmt in (None, "hl7", "fhir", "json"):
        rejection = parse_raw(raw, RECEIVED_MS, fmt).rejection
        assert rejection is not None and rejection.reason == "empty_message"


def test_ingest_command_reports_an_empty_file_as_a_rejection(tmp_path: Path) -> None:
    empty = tmp_path / "empty.hl7"
    empty.write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "vitalstream", "ingest", "--format", "hl7", str(empty)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, "nothing received is not a success"
    assert "empty_message: nothing received" in done.stderr
    assert "0 messages" not in done.stderr


def test_byte_order_mark_is_skipped_for_every_format() -> None:
    bom = b"\xef\xbb\xbf"
    canonical = b'{"patient_id": "p1", "parameter": "spo2", "value": 97, "device_time_ms": 1773569700000}'
    assert values(parse_raw(bom + canonical, RECEIVED_MS)) == {"spo2": 97.0}
    assert values(parse_raw(bom + oru_r01([HR_MDC]).encode(), RECEIVED_MS)) == {"heart_rate": 72.0}


def test_modifier_extension_on_a_bundle_entry_stops_it() -> None:
    import orjson

    bundle = orjson.loads(transaction("urn:uuid:5d3c1b8e-0000-4000-8000-000000000001"))
    bundle["entry"][0]["modifierExtension"] = MODIFIER  # on the Patient's entry
    rejection = parse_raw(orjson.dumps(bundle), RECEIVED_MS).rejection
    assert rejection is not None and rejection.reason == "unknown_modifier"


@pytest.mark.parametrize("system", ["LN", "LOINC", "2.16.840.1.113883.6.1"])
def test_loinc_coding_system_names_senders_write(system: str) -> None:
    result = parse_raw(oru_r01([nm(f"9279-1^Respiratory rate^{system}", "17", "/min")]).encode(), RECEIVED_MS)
    assert values(result) == {"resp_rate": 17.0}
