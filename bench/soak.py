"""Soak: a simulated ward streams into a real worker for minutes while the worker is killed
(SIGKILL) and restarted again and again. At the end every alert an uninterrupted run
raises must have been published (under the same id), and no other.

    python bench/soak.py --patients 40 --hours 24 --minutes 5 --kill-every 45

Prints the restarts (time to ready, to scoring again), alert events expected / received /
redelivered, lost and unexpected ones, and the scoring rate against an uninterrupted
baseline phase run first in the same process (the ratio the bench prints). Exit status 1
when an alert is lost or unexpected. Longer than a test may be; the fault tests in
tests/faults prove the same properties in bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

from simulators.cohort import generate_cohort
from vitalstream.alerts import AlertPolicy
from vitalstream.broker import EmbeddedBroker
from vitalstream.features import FeatureEngine
from vitalstream.ingest import parse_raw
from vitalstream.kafka import consumer, ensure_topics, producer
from vitalstream.monitor import Monitor
from vitalstream.process import WorkerProcess
from vitalstream.replay.producer import encode_report
from vitalstream.settings import Settings

FORMATS = ("json", "fhir", "hl7")


def ward_messages(patients: int, hours: float, seed: int) -> list[tuple[bytes, bytes, int]]:
    """(key, message, samples) per device report, formats in turn."""
    cohort = generate_cohort(patients, hours, seed=seed, deteriorating_fraction=0.2)
    out = []
    for index, report in enumerate(cohort.reports()):
        raw, _ = encode_report(report, FORMATS[index % 3], index + 1)
        if raw is not None:
            out.append((report[0].patient_id.encode(), raw, len(parse_raw(raw, 0).samples)))
    return out


def reference_events(messages: list[tuple[bytes, bytes, int]]) -> Counter[str]:
    """Event ids of an uninterrupted run (the pure core; no risk thresholds in the policy)."""
    monitor = Monitor(AlertPolicy(), engine=FeatureEngine(), model=None)
    events: Counter[str] = Counter()
    for start in range(0, len(messages), 2000):
        samples, technical = [], []
        for _, raw, _ in messages[start:start + 2000]:
            result = parse_raw(raw, 0)
            samples.extend(result.samples)
            technical.extend(result.technical)
        for alert in monitor.process(samples).alerts + monitor.technical(technical):
            if not str(alert.payload.get("condition", "")).startswith("no_data"):
                events[alert.event_id] += 1
    return events


async def send_paced(settings: Settings, messages: list[tuple[bytes, bytes, int]], rate_per_s: float) -> None:
    out = producer(settings)
    await out.start()
    started = time.monotonic()
    try:
        for sent, (key, raw, _) in enumerate(messages):
            wait_s = started + sent / rate_per_s - time.monotonic()
            if wait_s > 0.001:
                await asyncio.sleep(wait_s)
            await out.send(settings.topic_raw, raw, key=key)
        await out.flush()
    finally:
        await out.stop()


async def received_events(settings: Settings, expected: set[str], timeout_s: float) -> Counter[str]:
    events: Counter[str] = Counter()
    source = consumer(settings, settings.topic_alerts)
    await source.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not expected <= set(events):
            for records in (await source.getmany(timeout_ms=500)).values():
                for record in records:
                    alert = orjson.loads(record.value)
                    if not str(alert["payload"].get("condition", "")).startswith("no_data"):
                        events[alert["event_id"]] += 1
    finally:
        await source.stop()
    return events


def scored(worker: WorkerProcess) -> float:
    try:
        return worker.metric("vitalstream_samples_processed_total")
    except OSError:
        return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the ward streams")
    parser.add_argument("--kill-every", type=float, default=45.0, help="seconds between SIGKILLs")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.kill_every <= 5:
        parser.error("--minutes must be positive and --kill-every more than 5 s")

    messages = ward_messages(args.patients, args.hours, args.seed)
    expected = reference_events(messages)
    rate = len(messages) / (args.minutes * 60)
    total_samples = sum(n for _, _, n in messages)
    print(f"soak: {args.patients} patients x {args.hours:g} h = {len(messages)} messages, "
          f"{total_samples} samples at {rate:.0f} messages/s; {sum(expected.values())} alert events expected")
    work = Path(tempfile.mkdtemp(prefix="vitalstream-soak-"))
    with EmbeddedBroker(log_path=work / "tansu.log") as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess(broker.bootstrap, log_path=work / "worker.log").start()
        try:
            # Baseline: the first tenth streams without a fault; its scoring rate is the reference.
            baseline_n = max(1, len(messages) // 10)
            started = time.monotonic()
            asyncio.run(send_paced(settings, messages[:baseline_n], rate * 4))
            baseline_samples = sum(n for _, _, n in messages[:baseline_n])
            while scored(worker) < baseline_samples and time.monotonic() - started < 300:
                time.sleep(0.2)
            baseline_rate = baseline_samples / (time.monotonic() - started)

            gateway = threading.Thread(target=lambda: asyncio.run(
                send_paced(settings, messages[baseline_n:], rate)), daemon=True)
            soak_started = time.monotonic()
            gateway.start()
            restarts: list[tuple[float, float]] = []
            while gateway.is_alive():
                gateway.join(args.kill_every)
                if not gateway.is_alive():
                    break
                worker.kill()
                began = time.monotonic()
                worker = WorkerProcess(broker.bootstrap, log_path=work / "worker.log").start()
                ready_s = time.monotonic() - began
                while scored(worker) == 0 and time.monotonic() - began < 120:
                    time.sleep(0.2)
                restarts.append((ready_s, time.monotonic() - began))
            received = asyncio.run(received_events(settings, set(expected), 180))
            soak_s = time.monotonic() - soak_started
        finally:  # also on Ctrl-C and SIGTERM
            worker.stop()
    lost = set(expected) - set(received)
    unexpected = set(received) - set(expected)
    soak_rate = (total_samples - baseline_samples) / soak_s
    for number, (ready_s, again_s) in enumerate(restarts, start=1):
        print(f"restart {number}: ready {ready_s:.1f} s, scoring again {again_s:.1f} s after the kill")
    print(f"alert events: expected {sum(expected.values())}, received {sum(received.values())} "
          f"({sum(received.values()) - len(received)} redelivered), lost {len(lost)}, unexpected {len(unexpected)}")
    print(f"scoring rate with kills / baseline: {soak_rate:.0f} / {baseline_rate:.0f} samples/s "
          f"= {soak_rate / baseline_rate:.2f} (the soak is paced at {rate:.0f} messages/s)")
    print(f"logs: {work}")
    return 1 if lost or unexpected else 0


if __name__ == "__main__":
    from vitalstream.process import stop_on_sigterm

    stop_on_sigterm()  # SIGTERM stops the broker and worker this run started, as Ctrl-C does
    sys.exit(main())
