"""What the fault tests share: a workload of gateway messages in the three formats, the
alerts an uninterrupted run gives for it (the pure core on the same bytes), and small
clients to send, read back, and look at committed offsets on the real broker."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from simulators.cohort import DEFAULT_START_MS, generate_cohort
from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.ingest import parse_raw
from vitalstream.kafka import consumer, producer
from vitalstream.monitor import Monitor
from vitalstream.replay.producer import encode_report
from vitalstream.samples import sample_from_dict
from vitalstream.settings import Settings

FORMATS = ("json", "fhir", "hl7")


@dataclass
class Message:
    key: bytes
    value: bytes
    samples: int


@dataclass
class Workload:
    messages: list[Message]
    patient_ids: set[str] = field(default_factory=set)

    @property
    def samples(self) -> int:
        return sum(m.samples for m in self.messages)


def cohort_workload(n_patients: int = 10, hours: float = 8.0, seed: int = 7,
                    deteriorating_fraction: float = 0.3, max_messages: int | None = None) -> Workload:
    """Simulated patients' device reports, one gateway message each, the format turning
    json -> fhir -> hl7 report by report so every format carries every patient."""
    cohort = generate_cohort(n_patients, hours, seed=seed, deteriorating_fraction=deteriorating_fraction)
    messages: list[Message] = []
    patients: set[str] = set()
    for index, report in enumerate(cohort.reports()):
        raw, _ = encode_report(report, FORMATS[index % 3], index + 1)
        if raw is None:
            continue
        parsed = parse_raw(raw, 0)
        assert parsed.rejection is None, parsed.rejection
        messages.append(Message(report[0].patient_id.encode(), raw, len(parsed.samples)))
        patients.add(report[0].patient_id)
        if max_messages and len(messages) >= max_messages:
            break
    return Workload(messages, patients)


def census(n_patients: int, start_ms: int = DEFAULT_START_MS, readings: int = 3) -> list[Message]:
    """Stable patients at textbook-normal values (NEWS2 0), one JSON report a minute: state
    to recover, and never an alert."""
    messages = []
    for minute in range(readings):
        t_ms = start_ms + minute * 60_000
        for index in range(n_patients):
            patient_id = f"census-{index:04d}"
            values = {"heart_rate": 72 + index % 7, "resp_rate": 15, "spo2": 98, "systolic_bp": 124,
                      "temperature": 36.8, "consciousness": "A", "on_oxygen": False}
            raw = orjson.dumps([{"patient_id": patient_id, "ward": "6C", "bed": str(index),
                                 "parameter": name, "value": value, "device_time_ms": t_ms,
                                 "source": f"mon-6C-{index}"} for name, value in values.items()])
            messages.append(Message(patient_id.encode(), raw, len(values)))
    return messages


def reference_alerts(values: Iterable[bytes], chunk: int = 2000) -> list[dict[str, Any]]:
    """Alerts of an uninterrupted run: the worker's own core on the same bytes, in the
    worker's order (samples, then technical events, batch by batch).

    Without the risk model: the shipped policy has no risk thresholds, so risk never
    decides an alert, and scoring it would make the reference 30x slower."""
    policy = AlertPolicy()
    assert not policy.config.risk_thresholds, "risk alerts on: the reference needs the model"
    monitor = Monitor(policy, engine=FeatureEngine(), model=None)
    out: list[dict[str, Any]] = []
    batch: list[bytes] = []

    def run(raws: list[bytes]) -> None:
        samples, technical = [], []
        for raw in raws:
            result = parse_raw(raw, 0)
            if result.rejection is None:
                samples.extend(sample_from_dict(s.to_dict()) for s in result.samples)
                technical.extend(result.technical)
        alerts = monitor.process(samples).alerts + monitor.technical(technical)
        out.extend(a.to_dict() for a in alerts if comparable(a.to_dict()))

    for raw in values:
        batch.append(raw)
        if len(batch) >= chunk:
            run(batch)
            batch = []
    if batch:
        run(batch)
    return out


def reference_event_ids(values: Iterable[bytes], chunk: int = 2000) -> Counter[str]:
    """Alert event ids (id/status) of an uninterrupted run (see ``reference_alerts``)."""
    return Counter(a["event_id"] for a in reference_alerts(values, chunk))


def differences(expected: Iterable[dict[str, Any]], records: Iterable[Any]) -> tuple[list, list]:
    """(missing, extra): alerts of the reference not received, and received alerts not in
    the reference, each as (patient, event id, device time, summary start) to read."""
    def brief(a: dict[str, Any]) -> tuple:
        return (a["patient_id"], a["event_id"], a["device_time_ms"], a["summary"][:80])

    wanted = {a["event_id"]: a for a in expected}
    got = {a["event_id"]: a for a in (orjson.loads(r.value) for r in records) if comparable(a)}
    return ([brief(a) for e, a in wanted.items() if e not in got],
            [brief(a) for e, a in got.items() if e not in wanted])


def comparable(alert: dict[str, Any]) -> bool:
    """Alerts that follow from the data alone. "No data" alerts follow from the wall
    clock (the stream clock runs on while a replay pauses), so no two runs share them."""
    condition = str(alert.get("payload", {}).get("condition", alert.get("kind")))
    # Oversight events (a call to the next responder...) follow from the wall clock too.
    from vitalstream.oversight.desk import STATUSES

    return not condition.startswith("no_data") and alert.get("status") not in STATUSES


def event_ids(records: Iterable[Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for record in records:
        alert = orjson.loads(record.value)
        if comparable(alert):
            out[alert["event_id"]] += 1
    return out


# -- broker clients --------------------------------------------------------------------
async def send(settings: Settings, messages: Iterable[Message], rate_per_s: float | None = None,
               topic: str | None = None, sign_as: str | None = None, **producer_options: Any) -> int:
    """Send keyed by patient (as the gateways do), optionally paced and signed with the key
    of service ``sign_as`` (a station's control records); returns how many."""
    from testkit import keyring

    signer = keyring(sign_as) if sign_as else None
    out = producer(settings, **producer_options)
    await out.start()
    sent = 0
    started = time.monotonic()
    try:
        pending = []
        for message in messages:
            if rate_per_s:
                wait_s = started + sent / rate_per_s - time.monotonic()
                if wait_s > 0.001:
                    await asyncio.sleep(wait_s)
            target = topic or settings.topic_raw
            headers = signer.sign(target, message.key, message.value) if signer else None
            pending.append(await out.send(target, message.value, key=message.key, headers=headers))
            sent += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await out.flush()
        await asyncio.gather(*pending)
    finally:
        await out.stop()
    return sent


async def read_topic(settings: Settings, topic: str, until: Callable[[list[Any]], bool],
                     timeout_s: float) -> list[Any]:
    """Every record of ``topic`` from the beginning, until ``until(records)`` or the timeout."""
    records: list[Any] = []
    source = consumer(settings, topic)
    await source.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await source.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
            if until(records):
                break
    finally:
        await source.stop()
    return records


async def lag(settings: Settings, group_id: str, topics: Iterable[str]) -> dict[str, int]:
    """Messages after the consumer group's committed offsets, per topic (0: all committed).

    The end of each partition is found by reading it (the offset after its last record):
    tansu's ListOffsets answer can stop short of the last record batch."""
    reader = consumer(settings, enable_auto_commit=False)
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        wanted = [TopicPartition(topic, p) for topic in topics
                  for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(wanted)
        await reader.seek_to_beginning(*wanted)
        ends = dict.fromkeys(wanted, 0)
        quiet = 0
        while quiet < 2:
            batch = await reader.getmany(timeout_ms=300, max_records=10_000)
            quiet = 0 if batch else quiet + 1
            for tp, records in batch.items():
                ends[tp] = max(ends[tp], records[-1].offset + 1)
    finally:
        await reader.stop()
    group = consumer(settings, group_id=group_id, enable_auto_commit=False)
    await group.start()
    try:
        out: dict[str, int] = {}
        for tp in wanted:
            done = await group.committed(tp) or 0
            out[tp.topic] = out.get(tp.topic, 0) + max(0, ends[tp] - done)
        return out
    finally:
        await group.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def metric_or_zero(worker: Any, name: str) -> float:
    try:
        return float(worker.metric(name))
    except OSError:
        return 0.0


class Background:
    """Run a coroutine in a thread with its own event loop (a gateway sending while the
    test watches the worker)."""

    def __init__(self, coroutine: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(coroutine,), daemon=True)
        self.thread.start()

    def _run(self, coroutine: Any) -> None:
        try:
            self.result = asyncio.run(coroutine)
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def join(self, timeout_s: float) -> Any:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "background sender did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def identifiers_in(text: str, patient_ids: Iterable[str]) -> list[str]:
    """Patient identifiers found in ``text`` (whole tokens, so 'p-1' does not match 'p-10')."""
    found = []
    for patient_id in patient_ids:
        if re.search(rf"(?<![\w-]){re.escape(patient_id)}(?![\w-])", text):
            found.append(patient_id)
    return found


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
