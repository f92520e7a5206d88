"""Two workers and two rebalances while the ward streams in: a second worker joins (half
the patients move to it) and leaves again (they move back). The alerts match a
single-worker run, and once the group settles its committed offsets are at the end of
both input topics: nothing processed is left uncommitted, nothing is skipped."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from faults.faultkit import (
    Background,
    cohort_workload,
    differences,
    event_ids,
    lag,
    metric_or_zero,
    read_topic,
    reference_alerts,
    send,
    wait_for,
)

from vitalstream.broker import EmbeddedBroker
from vitalstream.ingest_stage import partition_for
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.broker]


def patients_in(record: Any) -> set[str]:
    """Patient ids a vitals record is about: its key, or the patients of its samples."""
    if record.key:
        return {record.key.decode()}
    body = orjson.loads(record.value)
    found = {str(s["patient_id"]) for part in ("samples", "technical") for s in body.get(part, ())}
    if body.get("rows"):
        from vitalstream.samples import sample_from_row  # the ingest stage's compact rows

        found |= {sample_from_row(row).patient_id for row in body["rows"]}
    return found


@pytest.mark.timeout(240)
def test_second_worker_joining_and_leaving_mid_stream_changes_no_alert_and_commits_everything(
        broker: EmbeddedBroker, settings: Settings, tmp_path: Path) -> None:
    ward = cohort_workload()
    reference = reference_alerts(m.value for m in ward.messages)
    expected = Counter(a["event_id"] for a in reference)
    stream_s = 32.0
    with WorkerProcess(broker.bootstrap, log_path=tmp_path / "worker-a.log") as first:
        gateway = Background(send(settings, ward.messages, rate_per_s=len(ward.messages) / stream_s))
        second = WorkerProcess(broker.bootstrap, log_path=tmp_path / "worker-b.log")
        joined_at = time.monotonic()
        try:  # stopped on every path: a worker left running slows every later test
            second.start(ready_timeout_s=60)  # ready means: partitions assigned after the rebalance
            join_s = time.monotonic() - joined_at
            # Let it own its patients for a while (alerts raised there), then hand them back.
            assert wait_for(lambda: metric_or_zero(second, "vitalstream_samples_processed_total")
                            >= ward.samples * 0.15, 40), "the second worker got no patients"
            took_over = second.metric("vitalstream_samples_processed_total")
        finally:
            second.stop()  # graceful: its partitions go back to the first worker
        assert gateway.join(60) == len(ward.messages)
        records = asyncio.run(read_topic(settings, settings.topic_alerts,
                                         lambda got: set(expected) <= set(event_ids(got)), 90))
        received = event_ids(records)
        # Settled: the group has committed the end of both input topics.
        behind: dict[str, int] = {}

        def committed_to_end() -> bool:
            # vitals.raw is read by the ingest stage's own group where it has one.
            raw = min(asyncio.run(lag(settings, group, [settings.topic_raw]))[settings.topic_raw]
                      for group in (settings.app_id, f"{settings.app_id}-ingest"))
            behind.update(asyncio.run(lag(settings, f"{settings.app_id}-monitor", [settings.topic_vitals])))
            behind[settings.topic_raw] = raw
            return not any(behind.values())

        settled = wait_for(committed_to_end, 30, every_s=1.0)
        processed = metric_or_zero(first, "vitalstream_samples_processed_total") + took_over
        print(f"rebalance: second worker ready {join_s:.1f} s after start, scored >= {took_over:.0f} samples; "
              f"both scored >= {processed:.0f} of {ward.samples}; alert events expected "
              f"{sum(expected.values())}, received {sum(received.values())}; uncommitted {behind}")
        missing, extra = differences(reference, records)
        assert not missing, f"alerts lost in the rebalance: {missing}"
        # Stale state on a worker that gets its patients back would raise alerts anew.
        assert not extra, f"alerts a single worker does not raise: {extra}"
        assert settled, f"offsets not committed after the rebalance settled: {behind}"
        # The worker forgets patients of partitions it lost by this mapping: it must be the
        # one the producers use.
        vitals = asyncio.run(read_topic(settings, settings.topic_vitals, lambda got: False, 3))
        placed = [(r.partition, partition_for(patient, settings.topic_partitions))
                  for r in vitals for patient in patients_in(r)]
        assert placed and all(actual == mapped for actual, mapped in placed)
