"""Replay into the real broker: every sample sent reaches vitals.raw, in order per patient."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import pytest

from simulators import SCENARIOS
from vitalstream.broker import EmbeddedBroker
from vitalstream.cli import main
from vitalstream.ingest import parse_raw
from vitalstream.kafka import consumer
from vitalstream.replay import Recording, read_path, replay
from vitalstream.samples import Sample
from vitalstream.settings import Settings

pytestmark = pytest.mark.broker
DATA = Path(__file__).parent / "data"


def clinical(sample: Sample) -> tuple:
    return (sample.patient_id, sample.ward, sample.bed, sample.parameter, sample.value,
            sample.device_time_ms, sample.source)


async def read_raw(settings: Settings, expected_samples: int, timeout_s: float = 30.0) -> list[tuple[bytes, list[Sample]]]:
    """(key, parsed samples) of every message on vitals.raw until the expected count arrives."""
    reader = consumer(settings, settings.topic_raw)
    await reader.start()
    messages: list[tuple[bytes, list[Sample]]] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected_samples and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    result = parse_raw(record.value, 0)
                    assert result.rejection is None, result.rejection
                    messages.append((record.key, result.samples))
                    seen += len(result.samples)
    finally:
        await reader.stop()
    return messages


async def test_smoke_scenario_reaches_vitals_raw_with_every_sample(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    cohort = SCENARIOS["smoke"].cohort()
    expected = list(cohort.samples())
    stats = await replay(cohort.reports(), settings, speed=None, progress=False)
    assert stats.samples == len(expected) and stats.skipped_samples == 0
    messages = await read_raw(settings, len(expected))
    received = [s for _, samples in messages for s in samples]
    assert collections.Counter(map(clinical, received)) == collections.Counter(map(clinical, expected))
    assert len(messages) == stats.messages
    # Keyed by patient, so each patient's reports stay in device-time order on one partition.
    assert all(key == samples[0].patient_id.encode() for key, samples in messages)
    by_patient = collections.defaultdict(list)
    for _, samples in messages:
        by_patient[samples[0].patient_id].append(samples[0].device_time_ms)
    assert all(times == sorted(times) for times in by_patient.values())


async def test_psv_folder_in_hl7_reaches_vitals_raw(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    recording = read_path(DATA / "physionet2019")
    stats = await replay(recording.reports(), settings, fmt="hl7", speed=None, progress=False)
    assert stats.samples == len(recording) == 23
    received = [s for _, samples in await read_raw(settings, 23) for s in samples]
    assert sorted(map(clinical, received)) == sorted(map(clinical, recording.samples()))


async def test_speed_factor_keeps_inter_arrival_times(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    # Three reports a minute apart in device time, replayed at 60x: about 2 s of wall time.
    samples = [Sample("p1", "4B", "1", "heart_rate", 80.0 + i, "/min", 1_000_000 + 60_000 * i, "m", 0)
               for i in range(3)]
    started = time.monotonic()
    stats = await replay(Recording.from_samples(samples).reports(), settings, speed=60.0, progress=False)
    elapsed = time.monotonic() - started
    assert stats.messages == 3
    assert 1.9 <= stats.wall_s <= elapsed and elapsed < 10


def test_cli_replays_a_psv_folder_and_reports_counts(broker: EmbeddedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(DATA / "physionet2019"), "--max-speed", "--quiet", "--bootstrap", broker.bootstrap])
    assert code == 0
    assert '"samples":23' in capsys.readouterr().out
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    received = asyncio.run(read_raw(settings, 23))
    assert sum(len(samples) for _, samples in received) == 23


def test_shift_to_now_moves_the_replay_to_the_wall_clock_keeping_its_intervals(broker: EmbeddedBroker, capsys) -> None:
    """A demo replay of a scenario dated in the past shows on the board as live data."""
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    original = [s for report in SCENARIOS["smoke"].cohort().reports() for s in report][:200]
    before_ms = int(time.time() * 1000)
    assert main(["replay", "sim:smoke", "--limit", "200", "--max-speed", "--shift-to-now", "--quiet",
                 "--bootstrap", broker.bootstrap]) == 0
    after_ms = int(time.time() * 1000)
    received = sorted((s for _, samples in asyncio.run(read_raw(settings, 200)) for s in samples),
                      key=lambda s: (s.device_time_ms, s.patient_id, s.parameter))
    assert len(received) == 200
    first = received[0].device_time_ms
    assert before_ms <= first <= after_ms  # the first reading is "now"
    offset = first - original[0].device_time_ms
    expected = sorted(s.device_time_ms + offset for s in original)
    assert [s.device_time_ms for s in received] == expected  # every interval kept
    assert original[0].device_time_ms < before_ms - 86_400_000  # the scenario itself is dated long ago
