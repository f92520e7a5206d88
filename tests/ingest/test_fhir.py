"""FHIR R4 vital-signs Observations and Bundles through `parse_raw`."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import orjson
import pytest

from vitalstream.ingest import parse_raw

DATA = Path(__file__).parent / "data"
RECEIVED_MS = 1_773_570_000_000
LOINC = "http://loinc.org"


def utc_ms(*fields: int, offset_h: int = 0, ms: int = 0) -> int:
    zone = dt.timezone(dt.timedelta(hours=offset_h))
    return int(dt.datetime(*fields, tzinfo=zone).timestamp() * 1000) + ms


def observation(code: str, **fields: object) -> dict:
    resource = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": "Patient/pat-1"},
                "effectiveDateTime": "2026-03-15T10:15:00Z"}
    resource.update(fields)
    return resource


def parse(resource: dict):
    return parse_raw(orjson.dumps(resource), RECEIVED_MS)


def test_transaction_bundle_with_bp_panel_in_kpa_and_temperature_in_fahrenheit():
    result = parse_raw((DATA / "fhir_transaction_bp_panel.json").read_bytes(), RECEIVED_MS)
    assert result.rejection is None and result.format == "fhir"
    by_parameter = {s.parameter: s for s in result.samples}
    # 12.0 / 8.0 kPa is 90 / 60 mmHg: a systolic that scores 3 in NEWS2 must not be lost to units.
    assert by_parameter["systolic_bp"].value == pytest.approx(90.0, abs=0.02)
    assert by_parameter["diastolic_bp"].value == pytest.approx(60.0, abs=0.02)
    assert by_parameter["systolic_bp"].source_code == "LOINC:8480-6"
    # 102.2 °F is 39.0 °C, the NEWS2 temperature band edge: exactly, not 38.99999.
    assert by_parameter["temperature"].value == 39.0
    # 12:14:30 at +02:00 is 10:14:30 UTC; the instant keeps its milliseconds.
    assert by_parameter["systolic_bp"].device_time_ms == utc_ms(2026, 3, 15, 10, 14, 30)
    assert by_parameter["spo2"].device_time_ms == utc_ms(2026, 3, 15, 10, 14, 58, ms=250)
    # 2 L/min inhaled oxygen: the patient is on supplemental oxygen (NEWS2 +2).
    assert by_parameter["on_oxygen"].value is True
    # Patient by its MR identifier; ward, room and bed from the Encounter's Location chain.
    sample = by_parameter["systolic_bp"]
    assert (sample.patient_id, sample.ward, sample.bed) == ("MRN-5150", "Ward 9 Respiratory", "Room 3-7")
    assert sample.source == "0012C1FFFE9F8E7D"
    # The respiratory-rate sensor reported an error: a technical event, not a value.
    assert [(t["kind"], t["parameter"]) for t in result.technical] == [("sensor_off", "resp_rate")]
    # The vital-signs panel only groups its members.
    assert result.ignored == 1


@pytest.mark.parametrize("bundle_type", ["collection", "batch", "transaction"])
def test_bundle_types_are_read(bundle_type):
    bundle = {"resourceType": "Bundle", "type": bundle_type,
              "entry": [{"resource": observation("8867-4", valueQuantity={"value": 72, "code": "/min"})}]}
    assert [s.value for s in parse(bundle).samples] == [72.0]


def test_effective_time_zone_is_honoured():
    result = parse(observation("9279-1", effectiveDateTime="2026-03-15T06:15:00-04:00",
                               valueQuantity={"value": 24, "unit": "breaths/min", "code": "/min",
                                              "system": "http://unitsofmeasure.org"}))
    assert result.samples[0].device_time_ms == utc_ms(2026, 3, 15, 10, 15)


def test_spo2_declared_as_fraction_becomes_percent():
    result = parse(observation("59408-5", valueQuantity={"value": 0.94, "code": "1"}))
    assert result.samples[0].value == 94.0


def test_unknown_codes_are_ignored_and_counted_not_dead_lettered():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation("29463-7", valueQuantity={"value": 70, "code": "kg"})},  # body weight
        {"resource": observation("8867-4", valueQuantity={"value": 64, "code": "/min"})}]}
    result = parse(bundle)
    assert result.rejection is None and result.ignored == 1 and len(result.samples) == 1


def test_entered_in_error_is_not_charted():
    result = parse(observation("8867-4", status="entered-in-error", valueQuantity={"value": 64, "code": "/min"}))
    assert result.rejection.reason == "no_observations" and result.ignored == 1


@pytest.mark.parametrize("change, reason", [
    ({"valueQuantity": {"value": 37.2}}, "missing_unit"),
    ({"valueQuantity": {"value": 37.2, "code": "mm[Hg]"}}, "bad_unit"),
    ({"valueQuantity": {"value": "37.2", "code": "Cel"}}, "bad_value"),
    ({"valueString": "37.2"}, "bad_value"),
    ({"valueQuantity": {"value": 98.6, "code": "Cel"}}, "implausible_value"),
    ({"effectiveDateTime": "2026-03-15", "valueQuantity": {"value": 37.2, "code": "Cel"}}, "bad_timestamp"),
    ({"subject": {"display": "Anna"}, "valueQuantity": {"value": 37.2, "code": "Cel"}}, "missing_patient"),
    ({"status": 7, "valueQuantity": {"value": 37.2, "code": "Cel"}}, "invalid_fhir"),
])
def test_unusable_temperature_rejects_the_message(change, reason):
    assert parse(observation("8310-5", **change)).rejection.reason == reason


def test_one_bad_observation_rejects_the_whole_bundle():
    good = observation("8867-4", valueQuantity={"value": 64, "code": "/min"})
    bad = observation("8867-4", valueQuantity={"value": 64})
    result = parse({"resourceType": "Bundle", "type": "batch",
                    "entry": [{"resource": good}, {"resource": bad}]})
    assert result.rejection.reason == "missing_unit" and result.samples == []


@pytest.mark.parametrize("document, reason", [
    ({"resourceType": "Patient", "id": "x"}, "unsupported_resource"),
    ({"resourceType": "Bundle", "type": "searchset", "entry": []}, "unsupported_resource"),
    ({"resourceType": "Bundle", "type": "collection", "entry": "nope"}, "no_observations"),
    (["not", "a", "resource"], "invalid_fhir"),
])
def test_resources_that_are_not_vital_signs_are_rejected(document, reason):
    assert parse_raw(orjson.dumps(document), RECEIVED_MS, "fhir").rejection.reason == reason


def test_bp_panel_with_sensor_error_component_gives_technical_event():
    panel = observation("85354-9", component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
         "dataAbsentReason": {"coding": [{"code": "error"}]}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
         "dataAbsentReason": {"coding": [{"code": "not-performed"}]}}])
    result = parse(panel)
    assert result.rejection is None
    assert [(t["kind"], t["parameter"]) for t in result.technical] == [
        ("sensor_off", "systolic_bp"), ("no_value", "diastolic_bp")]


def test_mdc_coded_observation_is_read_when_no_loinc_maps():
    resource = observation("x", valueQuantity={"value": 97, "code": "%"})
    resource["code"] = {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150456"}]}
    assert parse(resource).samples[0].source_code == "MDC:150456"


def test_subject_literal_reference_gives_patient_id():
    resource = copy.deepcopy(observation("8867-4", valueQuantity={"value": 64, "code": "/min"}))
    resource["subject"] = {"reference": "https://fhir.example/r4/Patient/pat-9/_history/2"}
    assert parse(resource).samples[0].patient_id == "pat-9"
