"""Readers: recorded files -> canonical samples, with recorded times mapped to device times."""

from __future__ import annotations

import collections
from itertools import pairwise
from pathlib import Path

import pytest
from testkit import SHARED_DATA

from vitalstream.replay import Pacer, Recording, SourceError, limit_samples, read_path, sniff_kind
from vitalstream.replay.readers import RECORDING_START_MS, gcs_to_acvpu
from vitalstream.samples import Sample

DATA = Path(__file__).parent / "data"
HOUR_MS = 3_600_000


def test_physionet2019_folder_keeps_every_charted_vital_at_its_icu_hour() -> None:
    recording = read_path(DATA / "physionet2019")
    samples = list(recording.samples())
    # p900001: 4 + 5 + 6 charted vitals (MAP has no canonical parameter); p900002: 6 + 2.
    assert len(samples) == 23
    by_patient = collections.Counter(s.patient_id for s in samples)
    assert by_patient == {"p900001": 15, "p900002": 8}
    septic_hour = [s for s in samples if s.patient_id == "p900001" and s.source_code.endswith(":Temp")]
    # ICULOS 3 and 4 -> 3 h and 4 h after the fixed start; 38.9 degC is the febrile row.
    assert [(s.device_time_ms - RECORDING_START_MS) // HOUR_MS for s in septic_hour] == [3, 4]
    assert septic_hour[-1].value == 38.9
    wards = {s.patient_id: s.ward for s in samples}
    assert wards == {"p900001": "MICU", "p900002": "SICU"}
    assert all(a.device_time_ms <= b.device_time_ms for a, b in pairwise(samples))


def test_physionet2012_record_maps_gcs_fio2_and_ventilation() -> None:
    samples = list(read_path(DATA / "physionet2012").samples())
    by_code = collections.defaultdict(list)
    for s in samples:
        by_code[s.source_code.split(":")[1]].append(s)
    assert len(samples) == 11  # SaO2 (arterial gas, not SpO2) and SysABP -1 (missing) left out
    assert {s.ward for s in samples} == {"MICU"}  # ICUType 3
    assert {s.patient_id for s in samples} == {"900100"}
    # GCS 14 (confused) -> new confusion; GCS 10 -> responds to voice.
    assert [s.value for s in by_code["GCS"]] == ["C", "V"]
    # FiO2 0.21 is room air; 0.5 is supplemental oxygen; ventilation implies oxygen.
    assert [s.value for s in by_code["FiO2"]] == [False, True]
    assert [s.value for s in by_code["MechVent"]] == [True]
    assert by_code["Temp"][0].device_time_ms == RECORDING_START_MS + 7 * 60_000
    assert by_code["RespRate"][0].parameter == "resp_rate"


@pytest.mark.parametrize(("gcs", "acvpu"), [(15, "A"), (14, "C"), (13, "V"), (9, "V"), (8, "P"), (6, "P"), (5, "U"), (3, "U")])
def test_gcs_bands_to_acvpu(gcs: int, acvpu: str) -> None:
    assert gcs_to_acvpu(gcs) == acvpu


def test_ndjson_and_csv_long_and_wide(tmp_path: Path) -> None:
    ndjson = tmp_path / "obs.ndjson"
    ndjson.write_text(
        '{"patient_id": "a", "ward": "4B", "bed": "1", "parameter": "resp_rate", "value": 22, "device_time_ms": 2000}\n'
        '\n'
        '{"samples": [{"patient_id": "b", "parameter": "consciousness", "value": "v", "device_time_ms": 1000}]}\n')
    samples = list(read_path(ndjson).samples())
    assert [(s.patient_id, s.value) for s in samples] == [("b", "V"), ("a", 22.0)]

    long_csv = tmp_path / "long.csv"
    long_csv.write_text("patient_id,ward,bed,parameter,value,device_time_ms\n"
                        "a,4B,1,heart_rate,101,1000\na,4B,1,on_oxygen,true,1000\n")
    assert [s.value for s in read_path(long_csv).samples()] == [101.0, True]

    wide_csv = tmp_path / "wide.csv"
    wide_csv.write_text("patient_id,device_time_ms,heart_rate,spo2,consciousness\n"
                        "a,1000,88,,A\nb,500,nan,91,\n")
    samples = list(read_path(wide_csv).samples())
    assert [(s.patient_id, s.parameter, s.value) for s in samples] == [
        ("b", "spo2", 91.0), ("a", "heart_rate", 88.0), ("a", "consciousness", "A")]


def test_unreadable_sources_say_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"patient_id": "a", "parameter": "heart_rate", "value": "fast", "device_time_ms": 1}\n')
    with pytest.raises(SourceError, match="bad.ndjson:1"):
        read_path(bad)
    with pytest.raises(SourceError, match="unknown kind"):
        (tmp_path / "x.bin").write_bytes(b"\0")
        read_path(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError):
        read_path(tmp_path / "absent.psv")


def test_reports_group_one_device_time_and_survive_chunk_edges() -> None:
    samples = [Sample(f"p{i % 3}", "4B", str(i % 3), "heart_rate" if i % 2 else "spo2", 80.0 + i % 20,
                      "/min" if i % 2 else "%", 1000 * (i // 6), f"dev{i % 3}", 0) for i in range(60)]
    recording = Recording.from_samples(samples)
    whole = list(recording.reports(chunk=1000))
    tiny = list(recording.reports(chunk=1))
    assert whole == tiny
    # 10 device times x 3 patients, each report with its HR and SpO2.
    assert len(whole) == 30 and all(len(report) == 2 for report in whole)
    assert all({s.patient_id for s in report} == {report[0].patient_id} for report in whole)


def test_pacer_keeps_inter_arrival_times_at_the_speed_factor() -> None:
    pacer = Pacer(speed=120.0)
    assert [pacer.due_s(t) for t in (60_000, 120_000, 3_660_000)] == [0.0, 0.5, 30.0]
    # A late, out-of-order report is due at once rather than in the stream's past.
    assert pacer.due_s(0) == 0.0
    assert Pacer(speed=None).due_s(10**12) == 0.0
    with pytest.raises(ValueError):
        Pacer(speed=0)


def test_limit_cuts_the_last_report() -> None:
    reports = [[1, 2, 3], [4, 5], [6]]
    assert list(limit_samples(reports, 4)) == [[1, 2, 3], [4]]  # type: ignore[arg-type]
    assert list(limit_samples(reports, None)) == reports  # type: ignore[arg-type]


@pytest.mark.data
@pytest.mark.parametrize("name", ["physionet2019_training_setA.tar.gz", "physionet2012_set-a.tar.gz"])
def test_shared_physionet_archives_read_directly(name: str) -> None:
    archive = SHARED_DATA / name
    if not archive.exists():
        pytest.skip(f"{archive} absent: PhysioNet challenge data (physionet.org) not provided")
    assert sniff_kind(archive) == ("physionet2019" if "2019" in name else "physionet2012")
    recording = read_path(archive, max_stays=30)
    assert len(recording.patient_ids) == 30
    parameters = {s.parameter for s in recording.samples()}
    assert {"heart_rate", "resp_rate", "systolic_bp", "temperature"} <= parameters
