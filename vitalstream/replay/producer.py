"""Paced replay of device reports into ``vitals.raw``.

The pacing is pure (`Pacer`: device time in, wall-clock offset out); the async producer
around it only encodes, waits and sends. Each report (one patient, one device, one time)
becomes one gateway message keyed by patient id, so a patient's messages stay in order on
one partition. Sends are not awaited one by one: delivery futures are collected and
awaited in batches, as aiokafka batches the records themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Iterable, Iterator

from simulators.formats import encodable, to_message
from vitalstream.samples import Sample
from vitalstream.settings import Settings

PENDING_LIMIT = 2000  # delivery futures awaited together


@dataclasses.dataclass(slots=True)
class Pacer:
    """When (seconds after the replay started) a report with this device time is due.

    ``speed`` is the factor over real time (1 real time, 60 an hour a minute); None sends
    as fast as possible.

    >>> pacer = Pacer(speed=60.0)
    >>> pacer.due_s(1_000_000), pacer.due_s(1_000_000 + 3_600_000)
    (0.0, 60.0)
    """

    speed: float | None
    first_device_ms: int | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")

    def due_s(self, device_time_ms: int) -> float:
        if self.first_device_ms is None:
            self.first_device_ms = device_time_ms
        if self.speed is None:
            return 0.0
        # Late or out-of-order reports are due at once, never in the past of the stream.
        return max(0, device_time_ms - self.first_device_ms) / 1000.0 / self.speed


@dataclasses.dataclass(slots=True)
class ReplayStats:
    messages: int = 0
    samples: int = 0
    skipped_samples: int = 0  # samples the chosen format cannot carry
    first_device_ms: int | None = None
    last_device_ms: int | None = None
    wall_s: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, float | int | None]:
        return {**dataclasses.asdict(self), "samples_per_s": round(self.samples_per_s, 1)}


def shift_to(reports: Iterable[list[Sample]], start_ms: int) -> Iterator[list[Sample]]:
    """The reports with every device time moved by one offset, so that the first report
    is at ``start_ms`` (`vitalstream replay --shift-to-now`: the ward board then shows the
    replay as live data instead of "no data" for readings days old). Intervals between
    readings are kept; at a speed above 1 the shifted times run ahead of the wall clock.

    >>> s = Sample("p1", "4B", "1", "heart_rate", 80.0, "/min", 1_000, "m", 1_000)
    >>> [[x.device_time_ms for x in r] for r in shift_to([[s], [dataclasses.replace(s, device_time_ms=61_000)]], 5_000_000)]
    [[5000000], [5060000]]
    """
    offset = None
    for report in reports:
        if not report:
            continue
        if offset is None:
            offset = start_ms - report[0].device_time_ms
        yield [dataclasses.replace(sample, device_time_ms=sample.device_time_ms + offset) for sample in report]


def limit_samples(reports: Iterable[list[Sample]], limit: int | None) -> Iterator[list[Sample]]:
    """At most ``limit`` samples; the last report is cut short if needed."""
    left = limit
    for report in reports:
        if left is not None:
            if left <= 0:
                return
            report = report[:left]
            left -= len(report)
        yield report


def encode_report(report: list[Sample], fmt: str, control_id: int) -> tuple[bytes | None, int]:
    """(message or None when nothing in it can be carried, samples left out)."""
    carried = [s for s in report if encodable(s.parameter, fmt)]
    if fmt == "fhir" and not any(s.parameter == "spo2" for s in carried):
        carried = [s for s in carried if s.parameter != "on_oxygen"]
    if not carried:
        return None, len(report)
    return to_message(carried, fmt, str(control_id)), len(report) - len(carried)


async def replay(reports: Iterable[list[Sample]], settings: Settings, fmt: str = "json",
                 speed: float | None = None, topic: str | None = None,
                 progress: bool = True, total: int | None = None) -> ReplayStats:
    """Send every report to ``topic`` (default ``settings.topic_raw``) at ``speed``."""
    from tqdm import tqdm

    from vitalstream.kafka import ensure_topics, producer

    topic = topic or settings.topic_raw
    await ensure_topics(settings, extra=(topic,) if topic != settings.topic_raw else ())
    stats = ReplayStats()
    pacer = Pacer(speed)
    sender = producer(settings)
    await sender.start()
    bar = tqdm(total=total, unit="sample", unit_scale=True, file=sys.stderr, disable=not progress,
               mininterval=0.5, desc=f"replay -> {topic}")
    started = time.monotonic()
    pending: list[asyncio.Future[object]] = []
    try:
        for report in reports:
            if not report:
                continue
            device_ms = report[0].device_time_ms
            wait_s = pacer.due_s(device_ms) - (time.monotonic() - started)
            if wait_s > 0.002:
                await asyncio.sleep(wait_s)
            message, skipped = encode_report(report, fmt, stats.messages + 1)
            stats.skipped_samples += skipped
            bar.update(len(report))
            if message is None:
                continue
            pending.append(await sender.send(topic, message, key=report[0].patient_id.encode()))
            stats.messages += 1
            stats.samples += len(report) - skipped
            stats.first_device_ms = device_ms if stats.first_device_ms is None else stats.first_device_ms
            stats.last_device_ms = device_ms
            if len(pending) >= PENDING_LIMIT:
                await asyncio.gather(*pending)
                pending.clear()
                bar.set_postfix(messages=stats.messages, refresh=False)
        await sender.flush()
        await asyncio.gather(*pending)
    finally:
        stats.wall_s = time.monotonic() - started
        bar.set_postfix(messages=stats.messages)
        bar.close()
        await sender.stop()
    return stats
