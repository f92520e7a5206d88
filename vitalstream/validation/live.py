"""The live part of a validation run: replay into the real pipeline and read back what it
produced. This is the thin shell around the pure matching and report code.

A run never mixes with another: without a configured broker it starts its own embedded
broker; with one, every topic name and the worker's application id get a per-run prefix.
Alerts and bed states are read from the beginning of their topics by a consumer without a
group (no committed offsets), so the same replay reads the same messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vitalstream.replay.producer import ReplayStats
from vitalstream.samples import Sample
from vitalstream.settings import Settings
from vitalstream.validation.stream import StreamCollector

log = logging.getLogger(__name__)

TOPIC_FIELDS: tuple[str, ...] = ("topic_raw", "topic_vitals", "topic_deadletter", "topic_alerts",
                                 "topic_acks", "topic_patient_settings", "topic_bed_state")
WORKER_COUNTERS: dict[str, str] = {
    "messages_in": "vitalstream_messages_in_total",
    "messages_deadlettered": "vitalstream_messages_deadlettered_total",
    "samples_in": "vitalstream_samples_in_total",
    "samples_processed": "vitalstream_samples_processed_total",
    "late_samples_dropped": "vitalstream_late_samples_dropped_total",
}


class ValidationError(RuntimeError):
    """The live run could not finish (worker stalled or died); the message says where."""


def isolated_settings(settings: Settings, run_id: str) -> tuple[Settings, dict[str, str]]:
    """Settings whose topics and application id carry ``run_id``, and the worker's
    environment variables that say the same."""
    update: dict[str, Any] = {name: f"{run_id}.{getattr(settings, name)}" for name in TOPIC_FIELDS}
    update["app_id"] = f"{settings.app_id}-{run_id}"
    env = {f"VITALSTREAM_{name.upper()}": str(value) for name, value in update.items()}
    return settings.model_copy(update=update), env


@dataclasses.dataclass(slots=True)
class LiveRun:
    """What one replay through the pipeline produced, with its own measurements."""

    collector: StreamCollector
    replay: ReplayStats
    worker: dict[str, float]
    feed_s: float
    drain_s: float
    settings: Settings

    def to_dict(self) -> dict[str, Any]:
        processed = self.worker.get("samples_processed", 0.0)
        elapsed_s = self.feed_s + self.drain_s
        return {
            "replay": self.replay.to_dict(),
            "worker": {k: int(v) for k, v in self.worker.items()},
            "alert_messages": len(self.collector.alerts),
            "bed_state_messages": self.collector.bed_states,
            "feed_s": round(self.feed_s, 1),
            "drain_s": round(self.drain_s, 1),
            "pipeline_samples_per_s": round(processed / elapsed_s, 1) if elapsed_s > 0 else None,
            "topics": {"alerts": self.settings.topic_alerts, "bed_state": self.settings.topic_bed_state,
                       "raw": self.settings.topic_raw},
        }


def scrape_counters(worker_url: str) -> dict[str, float]:
    from vitalstream.metrics import sum_from_exposition

    with urllib.request.urlopen(f"{worker_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {key: sum_from_exposition(text, name) for key, name in WORKER_COUNTERS.items()}


async def run_live(reports: Iterable[list[Sample]], settings: Settings, worker_url: str,
                   fmt: str = "json", speed: float | None = None, progress: bool = False,
                   total: int | None = None, stall_timeout_s: float = 60.0,
                   settle_s: float = 2.0) -> LiveRun:
    """Replay ``reports`` into the raw topic, wait until the worker has scored every sample
    it ingested, and collect the alerts and bed states it published."""
    from vitalstream.kafka import consumer
    from vitalstream.replay import replay

    collector = StreamCollector()
    source = consumer(settings, settings.topic_alerts, settings.topic_bed_state, from_beginning=True,
                      max_partition_fetch_bytes=4 << 20)
    await source.start()

    async def collect() -> None:
        while True:
            batch = await source.getmany(timeout_ms=200, max_records=10_000)
            for partition, records in batch.items():
                add = collector.add_alert if partition.topic == settings.topic_alerts else collector.add_state
                for record in records:
                    add(record.value)

    collecting = asyncio.create_task(collect())
    try:
        before = await asyncio.to_thread(scrape_counters, worker_url)
        started = time.monotonic()
        stats = await replay(reports, settings, fmt=fmt, speed=speed, progress=progress, total=total)
        feed_s = time.monotonic() - started
        counters = await _wait_for_worker(worker_url, before, stats, stall_timeout_s, collecting)
        await _drain(source, collecting, settle_s, worker_url, counters)
        drain_s = time.monotonic() - started - feed_s
    finally:
        collecting.cancel()
        try:
            await collecting
        except asyncio.CancelledError:
            pass
        await source.stop()
    return LiveRun(collector, stats, counters, feed_s, drain_s, settings)


def _delta(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: now[key] - before.get(key, 0.0) for key in now}


async def _wait_for_worker(worker_url: str, before: dict[str, float], stats: ReplayStats,
                           stall_timeout_s: float, collecting: asyncio.Task[None]) -> dict[str, float]:
    """Until every message sent was read and every sample ingested was scored (messages
    that failed ingest are dead-lettered, so their samples never reach the monitor)."""
    last_progress, last_seen = time.monotonic(), None
    while True:
        if collecting.done():
            collecting.result()  # re-raise a consumer failure
        try:
            counters = _delta(await asyncio.to_thread(scrape_counters, worker_url), before)
        except OSError:  # a busy worker may answer /metrics late: that is no progress yet
            await asyncio.sleep(1.0)
            if time.monotonic() - last_progress > stall_timeout_s:
                raise ValidationError(f"worker's /metrics did not answer for {stall_timeout_s:.0f} s") from None
            continue
        if (counters["messages_in"] >= stats.messages
                and counters["samples_processed"] + counters["late_samples_dropped"] >= counters["samples_in"]):
            return counters
        seen = (counters["messages_in"], counters["samples_processed"])
        if seen != last_seen:
            last_seen, last_progress = seen, time.monotonic()
        elif time.monotonic() - last_progress > stall_timeout_s:
            raise ValidationError(
                f"worker made no progress for {stall_timeout_s:.0f} s: read {int(counters['messages_in'])} of "
                f"{stats.messages} messages, scored {int(counters['samples_processed'])} of "
                f"{int(counters['samples_in'])} ingested samples")
        await asyncio.sleep(0.5)


async def _drain(source: Any, collecting: asyncio.Task[None], settle_s: float, worker_url: str,
                 counters: dict[str, float]) -> None:
    """Until the collector has read to the end of both topics and nothing new arrived for
    ``settle_s`` (the worker's last sends may still be in its producer's buffer)."""
    quiet_since = time.monotonic()
    last_ends: dict[Any, int | None] = {}
    while True:
        if collecting.done():
            collecting.result()
        partitions = source.assignment()
        ends = {tp: source.highwater(tp) for tp in partitions}
        caught_up = bool(partitions)
        for tp, end in ends.items():
            caught_up = caught_up and end is not None and await source.position(tp) >= end
        if ends != last_ends or not caught_up:
            last_ends, quiet_since = ends, time.monotonic()
        elif time.monotonic() - quiet_since >= settle_s:
            return
        await asyncio.sleep(0.2)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_pipeline(reports: Iterable[list[Sample]], settings: Settings, work_dir: Path,
                 fmt: str = "json", speed: float | None = None, progress: bool = False,
                 total: int | None = None, run_id: str | None = None) -> LiveRun:
    """Start what is missing (embedded broker when no bootstrap is configured; always a
    fresh worker on per-run topics), replay, collect, and stop what was started."""
    from vitalstream.broker import EmbeddedBroker
    from vitalstream.kafka import ensure_topics
    from vitalstream.process import WorkerProcess

    work_dir.mkdir(parents=True, exist_ok=True)
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        # A terminated run still stops the worker and broker it started (finally blocks below).
        previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    run_id = run_id or f"validate-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    broker = None
    with tempfile.TemporaryDirectory(prefix="vitalstream-validate-") as scratch:
        try:
            if not settings.kafka_bootstrap:
                broker = EmbeddedBroker(log_path=work_dir / "broker.log").start()
                settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
                print(f"started embedded broker on {broker.bootstrap}", file=sys.stderr)
            settings, env = isolated_settings(settings, run_id)
            asyncio.run(ensure_topics(settings))
            worker = WorkerProcess(settings.kafka_bootstrap, env=env, log_path=work_dir / "worker.log",
                                   state_dir=str(Path(scratch) / "state"))
            print("starting worker...", file=sys.stderr)
            worker.start()
            try:
                print(f"worker ready; replaying into {settings.topic_raw}", file=sys.stderr)
                return asyncio.run(run_live(reports, settings, worker.url, fmt=fmt, speed=speed,
                                            progress=progress, total=total))
            finally:
                # Its state is in memory and its topics are this run's: no need to wait long.
                worker.stop(timeout_s=5.0)
        finally:
            if broker is not None:
                broker.stop()
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
