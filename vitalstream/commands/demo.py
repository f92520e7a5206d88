"""`vitalstream demo`: broker, worker, simulated ward and a nursing station, end to end.

With no broker configured it starts the embedded one on a free port and stops it on exit.
It feeds a simulated ward (some patients deteriorating) into vitals.raw at a speed factor,
prints the ward's alerts as a nursing station sees them, and ends with measured figures.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from vitalstream.settings import Settings

NAME = "demo"
HELP = "Run broker, worker and a simulated ward end to end; print alerts and measured latency."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=24, help="simulated patients (default 24)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--speed", type=float, default=1200.0,
                        help="simulated seconds per wall second (default 1200: 24 h in 72 s)")
    parser.add_argument("--seed", type=int, default=11, help="cohort seed (default 11)")
    parser.add_argument("--bootstrap", help="use this broker instead of VITALSTREAM_KAFKA_BOOTSTRAP")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def check_arguments(args: argparse.Namespace) -> None:
    from vitalstream.cli import UsageError

    if args.patients < 1 or args.patients > 5000:
        raise UsageError("vitalstream demo: --patients must be between 1 and 5000")
    if not 0 < args.hours <= 168:
        raise UsageError("vitalstream demo: --hours must be more than 0 and at most 168")
    if args.speed <= 0:
        raise UsageError("vitalstream demo: --speed must be positive")


async def pace(items: Any, speed: float, key: Any) -> Any:
    """Yield items no earlier than their device time allows at ``speed`` x real time."""
    first_ms = None
    started = time.monotonic()
    for item in items:
        at_ms = key(item)
        if first_ms is None:
            first_ms = at_ms
        delay = (at_ms - first_ms) / 1000.0 / speed - (time.monotonic() - started)
        if delay > 0.001:
            await asyncio.sleep(delay)
        yield item


def percentile_ms(values_s: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values_s) * 1000.0, q)) if values_s else float("nan")


class TimeOrder:
    """Alerts printed in device-time order. Partitions are scored side by side, so alerts
    arrive out of order by up to the pipeline's delay; each waits until the feed is past
    it by ``hold_s`` plus the current send-to-alert delay (the feed's device time is the
    watermark, the delay is measured on the alerts themselves), then lines come out sorted.
    A worker that falls behind makes the lines come later, not out of order."""

    def __init__(self, speed: float, hold_s: float = 2.0) -> None:
        self.speed = speed
        self.hold_s = hold_s
        self.waiting: list[tuple[int, int, dict[str, Any]]] = []
        self.count = 0

    def add(self, alert: dict[str, Any]) -> None:
        self.count += 1
        heapq.heappush(self.waiting, (int(alert.get("device_time_ms", 0)), self.count, alert))

    def ready(self, feed_ms: float | None, delay_s: float = 0.0) -> list[dict[str, Any]]:
        """Alerts older than the watermark (all of them when ``feed_ms`` is None: the end)."""
        out = []
        hold_ms = self.speed * (self.hold_s + delay_s) * 1000.0
        while self.waiting and (feed_ms is None or self.waiting[0][0] <= feed_ms - hold_ms):
            out.append(heapq.heappop(self.waiting)[2])
        return out


async def run_demo(settings: Settings, args: argparse.Namespace, worker_url: str) -> dict[str, Any]:
    from simulators import generate_cohort
    from vitalstream.commands.subscribe import format_alert
    from vitalstream.kafka import consumer, producer

    cohort = generate_cohort(args.patients, args.hours, seed=args.seed,
                             deteriorating_fraction=1 / 6, wards=("4B",))
    sent_at: dict[tuple[str, int], float] = {}
    alerts: list[dict[str, Any]] = []
    latencies_s: list[float] = []
    order = TimeOrder(args.speed)
    feed_ms: list[float | None] = [float("-inf")]  # device time the feed has reached
    station = consumer(settings, settings.topic_alerts, from_beginning=False)
    await station.start()
    # Wait until the station's consumer holds its partitions, so no alert passes unseen.
    while not station.assignment():
        await station.getmany(timeout_ms=100)

    def print_ready() -> None:
        recent = latencies_s[-20:]
        for alert in order.ready(feed_ms[0], max(recent) if recent else 0.0):
            if not args.quiet:
                print(format_alert(alert), flush=True)

    async def nursing_station() -> None:
        async for message in station:
            received_s = time.time()
            alert = orjson.loads(message.value)
            alerts.append(alert)
            order.add(alert)
            sent = sent_at.get((alert["patient_id"], alert["device_time_ms"]))
            if sent is not None:
                latencies_s.append(received_s - sent)

    async def printer() -> None:
        while True:
            print_ready()
            await asyncio.sleep(0.2)

    listener = asyncio.create_task(nursing_station())
    printing = asyncio.create_task(printer())
    gateway = producer(settings, linger_ms=2)
    await gateway.start()
    samples = 0
    started = time.monotonic()
    try:
        async for report in pace(cohort.reports(), args.speed, key=lambda r: r[0].device_time_ms):
            now = time.time()
            for sample in report:
                sent_at[(sample.patient_id, sample.device_time_ms)] = now
            samples += len(report)
            feed_ms[0] = report[0].device_time_ms
            await gateway.send(settings.topic_raw, orjson.dumps([s.to_dict() for s in report]))
        await gateway.flush()
        feed_s = time.monotonic() - started
        # Done when the worker has scored every sample and the alerts have stopped coming.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                processed = await asyncio.to_thread(scrape_metric, worker_url,
                                                    "vitalstream_samples_processed_total")
            except OSError:  # a busy worker may answer a scrape late: ask again
                processed = 0.0
            if processed >= samples:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.5)
    finally:
        await gateway.stop()
        listener.cancel()
        printing.cancel()
        await station.stop()
    feed_ms[0] = None
    print_ready()
    try:
        exposition = await asyncio.to_thread(scrape, worker_url)
    except OSError:
        exposition = ""  # the worker's latency figures are then not shown
    from vitalstream.metrics import quantile_from_exposition

    return {
        "patients": args.patients, "hours": args.hours, "samples": samples,
        "feed_s": round(feed_s, 1), **summarise_alerts(alerts, cohort.events()),
        "send_to_alert_p50_ms": percentile_ms(latencies_s, 50),
        "send_to_alert_p99_ms": percentile_ms(latencies_s, 99),
        "ingest_to_scored_p50_ms": 1000 * quantile_from_exposition(
            exposition, "vitalstream_sample_processing_seconds", 0.5),
        "ingest_to_scored_p99_ms": 1000 * quantile_from_exposition(
            exposition, "vitalstream_sample_processing_seconds", 0.99),
    }


PRIORITIES = ("high", "medium", "low")


def summarise_alerts(alerts: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the station received, counted by what each message is: a new clinical alert
    (raised), a higher priority or a repeat (escalated, reraised), an acknowledgement, a
    resolution, or a technical alert (equipment, kept apart); and, for each patient the
    simulator made deteriorate, whether and when a clinical alert came, against its onset
    and event. A message seen twice (same event id) counts once.

    >>> s = summarise_alerts([
    ...     {"alert_id": "a", "status": "raised", "kind": "clinical", "priority": "medium",
    ...      "patient_id": "p1", "ward": "4B", "bed": "3", "device_time_ms": 5_000},
    ...     {"alert_id": "a", "status": "resolved", "kind": "clinical", "priority": "medium",
    ...      "patient_id": "p1", "ward": "4B", "bed": "3", "device_time_ms": 9_000},
    ...     {"alert_id": "t", "status": "raised", "kind": "technical", "priority": "low",
    ...      "patient_id": "p2", "ward": "4B", "bed": "4", "device_time_ms": 6_000}],
    ...     [{"patient_id": "p1", "ward": "4B", "bed": "3", "archetype": "sepsis",
    ...       "onset_ms": 1_000, "event_ms": 20_000}])
    >>> s["messages"], s["clinical_new"], s["clinical_resolved"], s["technical_new"]
    (3, 1, 1, 1)
    >>> s["deteriorating_alerted"], s["deteriorating_beds"][0]["alerted_ms"]
    (1, 5000)
    """
    unique = list({a.get("event_id") or f"{a['alert_id']}/{a['status']}": a for a in alerts}.values())
    unique.sort(key=lambda a: a.get("device_time_ms", 0))
    clinical = [a for a in unique if a.get("kind") == "clinical"]
    technical = [a for a in unique if a.get("kind") != "clinical"]

    def count(items: list[dict[str, Any]], *statuses: str) -> int:
        return sum(1 for a in items if a.get("status") in statuses)

    raised = [a for a in clinical if a.get("status") in ("raised", "escalated", "reraised")]
    beds = []
    for event in sorted(events, key=lambda e: e["onset_ms"]):
        # The first clinical alert once the deterioration has begun (one before is a false alert).
        alert = next((a for a in raised if a["patient_id"] == event["patient_id"]
                      and a["device_time_ms"] >= event["onset_ms"]), None)
        beds.append({"bed": event["bed"], "ward": event["ward"], "archetype": event["archetype"],
                     "onset_ms": event["onset_ms"], "event_ms": event["event_ms"],
                     "alerted_ms": alert["device_time_ms"] if alert else None,
                     "priority": alert["priority"] if alert else None})
    deteriorating = {e["patient_id"] for e in events}
    stable_alerted = sorted({(a.get("ward", ""), str(a.get("bed", ""))) for a in raised
                             if a["patient_id"] not in deteriorating},
                            key=lambda wb: (wb[0], int(wb[1]) if wb[1].isdigit() else 0, wb[1]))
    return {
        "messages": len(alerts),
        "clinical_new": count(clinical, "raised"),
        "clinical_new_by_priority": {p: sum(1 for a in clinical if a.get("status") == "raised"
                                            and a.get("priority") == p) for p in PRIORITIES},
        "clinical_escalated": count(clinical, "escalated", "reraised"),
        "clinical_acknowledged": count(clinical, "acknowledged"),
        "clinical_resolved": count(clinical, "resolved"),
        "technical_new": count(technical, "raised", "reraised"),
        "technical_resolved": count(technical, "resolved"),
        "deteriorating": len(events),
        "deteriorating_alerted": sum(1 for bed in beds if bed["alerted_ms"] is not None),
        "deteriorating_beds": beds,
        "stable_alerted": len(stable_alerted),
        "stable_alerted_beds": [bed for _, bed in stable_alerted],
    }


def scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return response.read().decode()


def scrape_metric(url: str, name: str) -> float:
    from vitalstream.metrics import sum_from_exposition

    return sum_from_exposition(scrape(url), name)


def _clock(ms: int) -> str:
    return time.strftime("%H:%M", time.gmtime(ms / 1000))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    rate = summary["samples"] / summary["feed_s"] if summary["feed_s"] else 0.0
    by_priority = ", ".join(f"{k} {v}" for k, v in summary["clinical_new_by_priority"].items())
    lines = [
        "",
        "demo summary (measured in this run)",
        f"  ward:      {summary['patients']} patients, {summary['hours']:g} simulated hours, "
        f"{summary['deteriorating']} made to deteriorate by the simulator",
        f"  samples:   {summary['samples']:,} in {summary['feed_s']} s ({rate:,.0f} samples/s)",
        f"  clinical alerts: {summary['clinical_new']} new ({by_priority}), "
        f"{summary['clinical_escalated']} escalated or raised again, {summary['clinical_resolved']} resolved",
        f"  technical alerts (equipment, no data): {summary['technical_new']} new, "
        f"{summary['technical_resolved']} resolved",
        f"  messages on the alerts topic: {summary['messages']} (all of the above"
        + (f", {summary['clinical_acknowledged']} acknowledgements" if summary["clinical_acknowledged"] else "")
        + ")",
        f"  deteriorating beds, alerted {summary['deteriorating_alerted']}/{summary['deteriorating']}:",
    ]
    for bed in summary["deteriorating_beds"]:
        what = (f"Bed {bed['bed']} ({bed['archetype'].replace('_', ' ')}): onset {_clock(bed['onset_ms'])}, "
                f"event {_clock(bed['event_ms'])}; ")
        if bed["alerted_ms"] is None:
            what += "NOT alerted"
        else:
            lead_h = (bed["event_ms"] - bed["alerted_ms"]) / 3_600_000
            when = f"{lead_h:.1f} h before the event" if lead_h >= 0 else f"{-lead_h:.1f} h after the event"
            what += f"alerted {_clock(bed['alerted_ms'])} ({bed['priority']}), {when}"
        lines.append(f"    {what}")
    stable = summary["stable_alerted_beds"]
    lines.append(f"  stable patients with a clinical alert: {summary['stable_alerted']}"
                 + (f" (bed{'s' if len(stable) > 1 else ''} {', '.join(stable)})" if stable else ""))
    lines.append(f"  latency gateway send -> alert at station: p50 {summary['send_to_alert_p50_ms']:.0f} ms, "
                 f"p99 {summary['send_to_alert_p99_ms']:.0f} ms")
    lines.append(f"  latency ingest -> sample scored (worker histogram): "
                 f"p50 {summary['ingest_to_scored_p50_ms']:.0f} ms, p99 {summary['ingest_to_scored_p99_ms']:.0f} ms")
    return lines


def print_summary(summary: dict[str, Any]) -> None:
    for line in summary_lines(summary):
        print(line)


def _preload() -> None:
    """Import what the demo runs after "worker ready" while no signal is expected: a
    SIGTERM (raised as KeyboardInterrupt) inside an import that builds classes with
    ``exec`` (dataclasses, namedtuples) makes Python 3.11 end by SIGINT instead of the
    demo's own clean exit 130."""
    import urllib.request  # noqa: F401

    import simulators  # noqa: F401
    from vitalstream import metrics  # noqa: F401
    from vitalstream.commands import subscribe  # noqa: F401


def run(args: argparse.Namespace) -> int:
    from vitalstream.broker import BrokerError, EmbeddedBroker
    from vitalstream.cli import UsageError
    from vitalstream.kafka import ensure_topics
    from vitalstream.process import ServiceStartError, WorkerProcess

    check_arguments(args)
    _preload()
    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    broker = None
    with tempfile.TemporaryDirectory(prefix="vitalstream-demo-") as scratch:
        try:
            if not settings.kafka_bootstrap:
                broker = EmbeddedBroker(log_path=Path(scratch) / "broker.log").start()
                settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
                print(f"started embedded broker on {broker.bootstrap}", file=sys.stderr)
            asyncio.run(ensure_topics(settings))
            worker = WorkerProcess(settings.kafka_bootstrap, log_path=Path(scratch) / "worker.log",
                                   state_dir=str(Path(scratch) / "state"))
            print("starting worker...", file=sys.stderr)
            worker.start()
            try:
                print(f"worker ready: metrics at {worker.url}/metrics; feeding the ward at "
                      f"{args.speed:g}x", file=sys.stderr)
                summary = asyncio.run(run_demo(settings, args, worker.url))
            finally:
                worker.stop()
        except BrokerError as exc:
            raise UsageError(f"vitalstream demo: {exc}") from exc
        except ServiceStartError as exc:
            raise UsageError(f"vitalstream demo: the worker did not start: {exc}") from exc
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the finally blocks stopped the children
            interrupted = True
        else:
            interrupted = False
        finally:
            if broker is not None:
                broker.stop()
    if interrupted:
        print("demo interrupted: its worker" + (" and broker are" if broker else " is") + " stopped",
              file=sys.stderr)
        return 130
    print_summary(summary)
    return 0
