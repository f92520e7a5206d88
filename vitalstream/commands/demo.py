"""`vitalstream demo`: broker, worker, simulated ward and a nursing station, end to end.

With no broker configured it starts the embedded one on a free port and stops it on exit.
It feeds a simulated ward (some patients deteriorating) into vitals.raw at a speed factor,
prints the ward's alerts as a nursing station sees them, and ends with measured figures.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def run_demo(settings: Settings, args: argparse.Namespace, worker_url: str) -> dict[str, Any]:
    from simulators import generate_cohort
    from vitalstream.commands.subscribe import format_alert
    from vitalstream.kafka import consumer, producer

    cohort = generate_cohort(args.patients, args.hours, seed=args.seed,
                             deteriorating_fraction=1 / 6, wards=("4B",))
    sent_at: dict[tuple[str, int], float] = {}
    alerts: list[dict[str, Any]] = []
    latencies_s: list[float] = []
    station = consumer(settings, settings.topic_alerts, from_beginning=False)
    await station.start()
    # Wait until the station's consumer holds its partitions, so no alert passes unseen.
    while not station.assignment():
        await station.getmany(timeout_ms=100)

    async def nursing_station() -> None:
        async for message in station:
            received_s = time.time()
            alert = orjson.loads(message.value)
            alerts.append(alert)
            sent = sent_at.get((alert["patient_id"], alert["device_time_ms"]))
            if sent is not None:
                latencies_s.append(received_s - sent)
            if not args.quiet:
                print(format_alert(alert), flush=True)

    listener = asyncio.create_task(nursing_station())
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
            await gateway.send(settings.topic_raw, orjson.dumps([s.to_dict() for s in report]))
        await gateway.flush()
        feed_s = time.monotonic() - started
        # Done when the worker has scored every sample and the alerts have stopped coming.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            processed = await asyncio.to_thread(scrape_metric, worker_url, "vitalstream_samples_processed_total")
            if processed >= samples:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.5)
    finally:
        await gateway.stop()
        listener.cancel()
        await station.stop()
    exposition = await asyncio.to_thread(scrape, worker_url)
    from vitalstream.metrics import quantile_from_exposition

    events = cohort.events()
    alerted_patients = {a["patient_id"] for a in alerts if a.get("kind") == "clinical"}
    return {
        "patients": args.patients, "hours": args.hours, "samples": samples,
        "feed_s": round(feed_s, 1), "alerts": len(alerts),
        "alerts_by_priority": {p: sum(1 for a in alerts if a.get("priority") == p)
                               for p in ("high", "medium", "low")},
        "deteriorating": len(events),
        "deteriorating_alerted": sum(1 for e in events if e["patient_id"] in alerted_patients),
        "stable_alerted": len(alerted_patients - {e["patient_id"] for e in events}),
        "send_to_alert_p50_ms": percentile_ms(latencies_s, 50),
        "send_to_alert_p99_ms": percentile_ms(latencies_s, 99),
        "ingest_to_scored_p50_ms": 1000 * quantile_from_exposition(
            exposition, "vitalstream_sample_processing_seconds", 0.5),
        "ingest_to_scored_p99_ms": 1000 * quantile_from_exposition(
            exposition, "vitalstream_sample_processing_seconds", 0.99),
    }


def scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return response.read().decode()


def scrape_metric(url: str, name: str) -> float:
    from vitalstream.metrics import sum_from_exposition

    return sum_from_exposition(scrape(url), name)


def print_summary(summary: dict[str, Any]) -> None:
    rate = summary["samples"] / summary["feed_s"] if summary["feed_s"] else 0.0
    print()
    print("demo summary (measured in this run)")
    print(f"  ward:      {summary['patients']} patients, {summary['hours']:g} simulated hours, "
          f"{summary['deteriorating']} deteriorating")
    print(f"  samples:   {summary['samples']:,} in {summary['feed_s']} s ({rate:,.0f} samples/s)")
    by_priority = ", ".join(f"{k} {v}" for k, v in summary["alerts_by_priority"].items())
    print(f"  alerts:    {summary['alerts']} ({by_priority}); deteriorating patients alerted "
          f"{summary['deteriorating_alerted']}/{summary['deteriorating']}, stable patients alerted "
          f"{summary['stable_alerted']}")
    print(f"  latency gateway send -> alert at station: p50 {summary['send_to_alert_p50_ms']:.0f} ms, "
          f"p99 {summary['send_to_alert_p99_ms']:.0f} ms")
    print(f"  latency ingest -> sample scored (worker histogram): "
          f"p50 {summary['ingest_to_scored_p50_ms']:.0f} ms, p99 {summary['ingest_to_scored_p99_ms']:.0f} ms")


def run(args: argparse.Namespace) -> int:
    from vitalstream.broker import BrokerError, EmbeddedBroker
    from vitalstream.cli import UsageError
    from vitalstream.kafka import ensure_topics
    from vitalstream.process import WorkerProcess

    check_arguments(args)
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
