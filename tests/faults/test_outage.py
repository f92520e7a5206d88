"""The broker stops answering for 30 s (its process is frozen with SIGSTOP) while a
gateway keeps sending: the worker stays up, says it is degraded on /health, /ready and
in its metrics, reconnects by itself and scores the backlog; no alert is lost."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from faults.faultkit import (
    Background,
    cohort_workload,
    event_ids,
    metric_or_zero,
    read_topic,
    reference_event_ids,
    send,
    wait_for,
)

from vitalstream.broker import EmbeddedBroker
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.broker]

OUTAGE_S = 30.0


def health(worker: WorkerProcess, page: str = "health") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{worker.url}/{page}", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.timeout(240)
def test_worker_survives_30_s_broker_outage_reports_degraded_and_scores_the_backlog(
        broker: EmbeddedBroker, settings: Settings, tmp_path: Path) -> None:
    ward = cohort_workload()
    expected = reference_event_ids(m.value for m in ward.messages)
    cut = len(ward.messages) // 3
    first, rest = ward.messages[:cut], ward.messages[cut:]
    with WorkerProcess(broker.bootstrap, log_path=tmp_path / "worker.log") as worker:
        asyncio.run(send(settings, first))
        first_samples = sum(m.samples for m in first)
        assert wait_for(lambda: worker.metric("vitalstream_samples_processed_total") >= first_samples, 60)
        assert wait_for(lambda: health(worker)[1]["status"] == "ok", 10)
        assert worker.metric("vitalstream_broker_up") == 1

        # The gateway sends the rest over about 40 s, most of it into the outage; its
        # producer holds what the broker cannot take, as a gateway's buffer would.
        gateway = Background(send(settings, rest, rate_per_s=len(rest) / 40.0, request_timeout_ms=120_000))
        time.sleep(3.0)
        processed_before = worker.metric("vitalstream_samples_processed_total")
        broker.pause()
        paused_at = time.monotonic()
        try:
            assert wait_for(lambda: health(worker)[1]["status"] == "degraded", 15), \
                "health still says ok with the broker frozen"
            status, body = health(worker)
            assert status == 200 and body["broker_up"] is False, "liveness must not ask for a restart"
            assert health(worker, "ready")[0] == 503, "a worker without its broker is not ready"
            assert worker.metric("vitalstream_broker_up") == 0
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - paused_at)))
            assert worker.process is not None and worker.process.poll() is None, "the worker died"
            assert health(worker)[1]["broker_down_s"] >= OUTAGE_S - 8
        finally:
            broker.resume()
        resumed_at = time.monotonic()
        assert gateway.join(90) == len(rest)
        assert wait_for(lambda: health(worker)[1]["status"] == "ok", 20), "no recovery after the outage"
        assert wait_for(lambda: health(worker, "ready")[0] == 200, 60), "not ready again after the outage"
        total = ward.samples
        assert wait_for(lambda: metric_or_zero(worker, "vitalstream_samples_processed_total") >= total, 90), \
            "the backlog was not scored"
        backlog_s = time.monotonic() - resumed_at
        records = asyncio.run(read_topic(settings, settings.topic_alerts,
                                         lambda got: set(expected) <= set(event_ids(got)), 60))
        received = event_ids(records)
        print(f"outage {OUTAGE_S:.0f} s: {processed_before:.0f} samples scored before it, "
              f"backlog scored {backlog_s:.1f} s after the broker returned; "
              f"alert events expected {sum(expected.values())}, received {sum(received.values())}")
        assert not set(expected) - set(received), "alerts lost in the outage"
        assert not set(received) - set(expected)
        assert worker.metric("vitalstream_broker_up") == 1
