"""Census from HL7 ADT and FHIR Encounter: each event, and each refusal with its reason."""

from __future__ import annotations

import pytest

from vitalstream.ingest.adt import CensusError, KnownBeds, is_adt, parse_adt, parse_encounter

pytestmark = pytest.mark.oversight

BEDS = KnownBeds.parse('{"4B": "1-24", "5C": ["1", "2", "3"]}')


def adt(trigger: str, location: str = "4B^^12", pid: str = "MRN-7^^^HOSP^MR") -> bytes:
    return (f"MSH|^~\\&|ADT|HOSP|VS|HOSP|20260315101500||ADT^{trigger}^ADT_{trigger}|c-{trigger}|P|2.6\r"
            f"EVN|{trigger}|20260315102000\rPID|||{pid}||Doe^Jane\rPV1||I|{location}").encode()


@pytest.mark.parametrize(("trigger", "event"), [("A01", "admit"), ("A02", "transfer"),
                                                 ("A03", "discharge"), ("A08", "update")])
def test_each_adt_event_becomes_its_census_event(trigger: str, event: str) -> None:
    record = parse_adt(adt(trigger), 0, BEDS)
    assert (record["event"], record["patient_id"], record["ward"], record["bed"]) == (event, "MRN-7", "4B", "12")
    assert record["at_ms"] == 1773570000000, "EVN-2 is when it happened"


def test_mrn_is_chosen_among_repeated_identifiers_and_room_bed_joined() -> None:
    record = parse_adt(adt("A01", "4B^12^A", "NHS-1^^^NHS^NH~MRN-9^^^HOSP^MR"), 0, KnownBeds())
    assert (record["patient_id"], record["bed"]) == ("MRN-9", "12-A")


@pytest.mark.parametrize(("message", "reason"), [
    (adt("A01", "4B^^31"), "unknown_bed"),
    (adt("A02", "9Z^^1"), "unknown_bed"),
    (adt("A01", "4B"), "missing_location"),
    (adt("A01", pid=""), "missing_patient"),
    (adt("A04"), "unsupported_event"),
    (b"EVN|A01", "malformed_adt"),
])
def test_bad_adt_is_refused_with_its_reason(message: bytes, reason: str) -> None:
    with pytest.raises(CensusError) as error:
        parse_adt(message, 0, BEDS)
    assert error.value.reason == reason


def test_discharge_needs_no_bed() -> None:
    assert parse_adt(adt("A03", ""), 0, BEDS)["event"] == "discharge"


def test_only_adt_goes_to_the_census() -> None:
    assert is_adt(adt("A01")) and is_adt(b"\x0b" + adt("A03"))
    assert not is_adt(b"MSH|^~\\&|MON|H|||20260315101500||ORU^R01^ORU_R01|1|P|2.6\rPID|||p1")


def encounter(status: str, location: list | None = None) -> dict:
    return {"resourceType": "Encounter", "id": "enc-1", "status": status,
            "subject": {"identifier": {"system": "urn:mrn", "value": "MRN-7"}},
            "location": location if location is not None else [
                {"location": {"display": "4B"}, "physicalType": {"coding": [{"code": "wa"}]}},
                {"location": {"display": "12"}, "physicalType": {"coding": [{"code": "bd"}]}}]}


def test_encounter_in_progress_admits_and_finished_discharges() -> None:
    admitted = parse_encounter(encounter("in-progress"), 5, BEDS)
    assert (admitted["event"], admitted["ward"], admitted["bed"], admitted["at_ms"]) == ("admit", "4B", "12", 5)
    assert parse_encounter(encounter("finished", []), 5, BEDS)["event"] == "discharge"
    slash = parse_encounter(encounter("in-progress", [{"location": {"display": "5C/3"}}]), 5, BEDS)
    assert (slash["ward"], slash["bed"]) == ("5C", "3")


@pytest.mark.parametrize(("document", "reason"), [
    (encounter("in-progress", [{"location": {"display": "5C/9"}}]), "unknown_bed"),
    (encounter("planned"), "unsupported_event"),
    ({**encounter("in-progress"), "subject": {}}, "missing_patient"),
    ({"resourceType": "Observation"}, "malformed_adt"),
])
def test_bad_encounter_is_refused_with_its_reason(document: dict, reason: str) -> None:
    with pytest.raises(CensusError) as error:
        parse_encounter(document, 0, BEDS)
    assert error.value.reason == reason


def test_bed_list_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="beds as"):
        KnownBeds.parse('{"4B": 24}')
