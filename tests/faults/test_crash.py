"""A worker killed with SIGKILL mid-stream and restarted: state comes back from the
changelog, every alert an uninterrupted run raises is raised (again, later, under the
same id), and a worker holding 1,000 patients is processing again within 30 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from faults.faultkit import (
    census,
    cohort_workload,
    comparable,
    event_ids,
    metric_or_zero,
    read_topic,
    reference_event_ids,
    send,
    wait_for,
)

from vitalstream.broker import EmbeddedBroker
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.broker]

RESTART_TARGET_S = 30.0


@pytest.mark.timeout(240)
def test_killed_worker_recovers_patients_and_raises_every_alert_under_the_same_id(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    ward = cohort_workload()  # 10 patients for 8 h, 3 deteriorating
    beds = census(1000)  # 1,000 stable patients: state to recover, never an alert
    expected = reference_event_ids(m.value for m in ward.messages)
    assert sum(1 for e in expected if e.endswith("/raised")) >= 3, "the workload must raise alerts"
    cut = len(ward.messages) * 2 // 5
    first, rest = ward.messages[:cut], ward.messages[cut:]
    log = tmp_path / "worker.log"

    crashed = WorkerProcess(broker.bootstrap, log_path=log).start()
    try:  # killed on every path: a worker left running slows every later test
        asyncio.run(send(settings, beds + first))
        # Kill while the ward's first part is still being scored: a crash mid-stream.
        kill_at = sum(m.samples for m in beds) + sum(m.samples for m in first) // 2
        assert wait_for(lambda: metric_or_zero(crashed, "vitalstream_samples_processed_total") >= kill_at, 90)
    finally:
        crashed.kill()

    restarted = WorkerProcess(broker.bootstrap, log_path=log)
    started = time.monotonic()
    restarted.start(ready_timeout_s=60)
    try:
        asyncio.run(send(settings, rest))
        assert wait_for(lambda: metric_or_zero(restarted, "vitalstream_samples_processed_total") > 0, 60)
        processing_again_s = time.monotonic() - started
        records = asyncio.run(read_topic(settings, settings.topic_alerts,
                                         lambda got: set(expected) <= set(event_ids(got)), 90))
        received = event_ids(records)
        print(f"restart with 1,000 patients of state: processing again after {processing_again_s:.1f} s; "
              f"alert events expected {sum(expected.values())}, received {sum(received.values())} "
              f"({sum(received.values()) - len(received)} redelivered)")
        assert not set(expected) - set(received), "alerts lost by the crash"
        # A patient whose state was lost would alert afresh: a new episode start, a new id.
        assert not set(received) - set(expected), "alerts an uninterrupted run does not raise"
        # Their data stop after 3 minutes, so "no data" alerts are right; nothing else is.
        assert not [a for a in map(orjson.loads, (r.value for r in records))
                    if a["ward"] == "6C" and comparable(a)], "a stable patient alerted"
        assert processing_again_s < RESTART_TARGET_S
        dead = asyncio.run(read_topic(settings, settings.topic_deadletter, lambda got: False, 2))
        assert dead == [], "valid messages were dead-lettered"
    finally:
        restarted.stop()
