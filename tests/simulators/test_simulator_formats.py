"""Simulator output in each gateway format reads back through ingest as the same samples."""

from __future__ import annotations

import pytest

from simulators import SCENARIOS
from simulators.formats import encodable, to_fhir_bundle, to_hl7_pcd01, to_json, to_message
from vitalstream.ingest import detect_format, parse_raw
from vitalstream.samples import Sample

RECEIVED_MS = 1_773_600_000_000


def clinical(sample: Sample) -> tuple:
    """What must survive a gateway: who, where, what, when, which device."""
    return (sample.patient_id, sample.ward, sample.bed, sample.parameter, sample.value,
            sample.device_time_ms, sample.source)


@pytest.fixture(scope="module")
def reports() -> list[list[Sample]]:
    return list(SCENARIOS["smoke"].cohort().reports())


def test_canonical_json_round_trip_keeps_every_field(reports: list[list[Sample]]) -> None:
    for report in reports[:2000]:
        result = parse_raw(to_json(report), RECEIVED_MS)
        assert result.rejection is None
        assert [s.to_dict() | {"ingest_time_ms": 0} for s in result.samples] == [s.to_dict() for s in report]


@pytest.mark.parametrize("fmt", ["hl7", "fhir"])
def test_hl7_and_fhir_round_trip(reports: list[list[Sample]], fmt: str) -> None:
    checked = 0
    for number, report in enumerate(reports):
        carried = [s for s in report if encodable(s.parameter, fmt)]
        if fmt == "fhir" and not any(s.parameter == "spo2" for s in carried):
            carried = [s for s in carried if s.parameter != "on_oxygen"]
        if not carried:
            continue
        raw = to_message(report, fmt, str(number))
        assert detect_format(raw) == fmt
        result = parse_raw(raw, RECEIVED_MS)
        assert result.rejection is None, result.rejection
        assert sorted(map(clinical, result.samples)) == sorted(map(clinical, carried))
        checked += 1
    assert checked > 1000


def test_spot_check_oxygen_travels_with_spo2_in_fhir(reports: list[list[Sample]]) -> None:
    spot = next(r for r in reports if any(s.parameter == "on_oxygen" for s in r))
    samples = parse_raw(to_fhir_bundle(spot), RECEIVED_MS).samples
    expected = next(s.value for s in spot if s.parameter == "on_oxygen")
    assert [s.value for s in samples if s.parameter == "on_oxygen"] == [expected]


def test_hl7_marks_flagged_artefacts_questionable() -> None:
    motion = Sample("p1", "4B", "3", "spo2", 71.0, "%", 1_773_569_700_000, "oxi-1", 0, artefact=True)
    raw = to_hl7_pcd01([motion])
    assert b"|questionable|" in raw
    assert parse_raw(raw, RECEIVED_MS).samples[0].artefact


def test_hl7_refuses_two_patients_in_one_message() -> None:
    a = Sample("p1", "4B", "1", "heart_rate", 80.0, "/min", 1000, "m", 0)
    b = Sample("p2", "4B", "2", "heart_rate", 80.0, "/min", 1000, "m", 0)
    with pytest.raises(ValueError, match="one patient"):
        to_hl7_pcd01([a, b])
