"""Labels: PhysioNet 2019 sepsis events (first SepsisLabel hour + 6 h), recording spans,
and the stream collector that keeps what the worker published."""

from __future__ import annotations

from pathlib import Path

from vitalstream.replay import read_path
from vitalstream.replay.readers import RECORDING_START_MS
from vitalstream.validation import StreamCollector
from vitalstream.validation.labels import labels_for_recording, physionet2019_sepsis_events

H = 3_600_000
HEADER = "HR|O2Sat|Temp|SBP|MAP|DBP|Resp|Age|Gender|Unit1|Unit2|HospAdmTime|ICULOS|SepsisLabel"


def psv(folder: Path, name: str, labels: list[int], header: str = HEADER) -> None:
    rows = [header]
    for hour, label in enumerate(labels, start=1):
        fields = ["90", "97", "37.0", "120", "85", "70", "18", "65", "1", "1", "0", "-1", str(hour), str(label)]
        if "SepsisLabel" not in header:
            fields = fields[:-1]
        rows.append("|".join(fields))
    (folder / name).write_text("\n".join(rows) + "\n")


def test_sepsis_event_is_six_hours_after_the_first_positive_label(tmp_path: Path) -> None:
    # The 2019 challenge labels sepsis from 6 h before its clinical onset (t_sepsis - 6).
    psv(tmp_path, "p1.psv", [0, 0, 0, 0, 1, 1, 1, 1])  # first label at ICULOS 5
    psv(tmp_path, "p2.psv", [0] * 8)
    labels = labels_for_recording(tmp_path, read_path(tmp_path), "physionet2019", RECORDING_START_MS)
    assert labels.has_events
    assert [(e.patient_id, e.event_ms - RECORDING_START_MS) for e in labels.events] == [("p1", 11 * H)]
    assert labels.events[0].ward == "MICU"
    # Hourly rows: each stay counts its 8 charted hours (ICULOS 1..8, one hour past the last row).
    assert labels.patients["p2"].end_ms - labels.patients["p2"].start_ms == 8 * H


def test_files_without_sepsis_labels_give_no_events(tmp_path: Path) -> None:
    psv(tmp_path, "p1.psv", [0, 0, 0], header=HEADER.replace("|SepsisLabel", ""))
    assert physionet2019_sepsis_events(tmp_path, RECORDING_START_MS) is None
    labels = labels_for_recording(tmp_path, read_path(tmp_path), "physionet2019", RECORDING_START_MS)
    assert not labels.has_events and len(labels.patients) == 1


def test_collector_orders_states_and_keeps_each_measurement_once() -> None:
    collector = StreamCollector()
    # A bed state repeats the latest reading until a new one arrives: one point, not three.
    for minute, total in ((2, 6), (0, 3), (1, 5)):
        collector.add_state({"patient_id": "p", "time_ms": minute * 60_000, "news2": {"total": total},
                             "risk": 0.1, "observations": {"resp_rate": {"value": 24.0, "time_ms": 0}}})
    times, totals = collector.news2_series()["p"]
    assert times.tolist() == [0, 60_000, 120_000] and totals.tolist() == [3, 5, 6]
    t, v = collector.timeline("p")["vitals"]["resp_rate"]
    assert t.tolist() == [0] and v.tolist() == [24.0]
    assert collector.bed_states == 3


def test_collector_reads_message_bytes() -> None:
    collector = StreamCollector()
    collector.add_alert(b'{"alert_id": "a", "status": "raised"}')
    assert collector.alerts == [{"alert_id": "a", "status": "raised"}]
