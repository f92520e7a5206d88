"""The ingest stage: vitals.raw -> vitals (keyed by patient) or vitals.deadletter.

It runs inside the worker beside the Faust app but reads with a plain aiokafka consumer
group (``<app_id>-ingest``), because it is stateless and its input is the fastest stream
of the system: one message per device report. Measured on this machine against the same
broker, a bare Faust agent reads about 2,900 events/s, an aiokafka ``getmany`` loop over
200,000 (bench/pipeline.py prints both). The monitor stage (``monitor_stage``) reads the
``vitals`` topic, where one record carries the samples of many patients of one partition
from one ingest batch.

Delivery is at least once: offsets are committed only after every message of the batch
has been acknowledged by the broker on ``vitals`` or ``vitals.deadletter``. The loop reads
the next batch while a batch's acknowledgements are on their way (up to ``MAX_IN_FLIGHT``):
send, acknowledge and commit are the outbox's (``vitalstream.outbox``), as in the monitor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import mode
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from vitalstream import metrics
from vitalstream.ingest import MAX_AHEAD_MS, Rejection, dead_letter, fast_rows, parse_raw
from vitalstream.kafka import fetch, stage_consumer, stage_producer
from vitalstream.outbox import Outbox, Sent, Write
from vitalstream.samples import sample_row
from vitalstream.settings import Settings

log = logging.getLogger("vitalstream.ingest")

FORMAT_HEADER = "vitalstream-format"
# Batches sent but not yet acknowledged by the broker before the loop waits for the oldest.
MAX_IN_FLIGHT = 4
# Samples per vitals record: keeps a record far below the broker's 1 MB default limit.
ROWS_PER_RECORD = 2000


def partition_for(patient_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``patient_id``: the
    monitor writes the patient's changelog rows to the same one. Remembered: murmur2 is
    pure Python here (about 2 µs), and live batches hold a few readings of each patient."""
    key = (patient_id, partitions)
    found = _PARTITIONS.get(key)
    if found is None:
        if len(_PARTITIONS) >= _PARTITIONS_MAX:
            _PARTITIONS.clear()
        found = _PARTITIONS[key] = partition_for_key(patient_id.encode(), partitions)
    return found


_PARTITIONS: dict[tuple[str, int], int] = {}
_PARTITIONS_MAX = 200_000  # patients (about 30 MB at most), then it starts afresh


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclasses.dataclass(slots=True)
class RawMessage:
    """What the stage needs of one record of vitals.raw."""

    value: bytes
    key: bytes | None = None
    source: str = ""  # where it came from, for its dead letter ("topic/partition@offset")
    fmt: str | None = None
    record: Any = None  # the consumer record, which ``where`` names when ``source`` is empty

    def where(self) -> str:
        """``source``, or the record's topic, partition and offset: written out only for a
        dead letter (formatting it for every message cost 0.2 µs each)."""
        if self.source or self.record is None:
            return self.source
        return f"{self.record.topic}/{self.record.partition}@{self.record.offset}"


@dataclasses.dataclass(slots=True)
class IngestBatch:
    """The outcome of one batch: what to publish, and the counts that prove nothing was lost."""

    vitals: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = dataclasses.field(default_factory=list)
    messages_in: Counter[str] = dataclasses.field(default_factory=Counter)
    accepted: Counter[str] = dataclasses.field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    samples: int = 0


def ingest_batch(messages: Iterable[RawMessage], received_ms: int, partitions: int,
                 max_ahead_ms: int = MAX_AHEAD_MS) -> IngestBatch:
    """Parse a batch of raw messages (pure). ``received_ms`` is the wall clock: readings
    stamped more than ``max_ahead_ms`` after it are dead-lettered (``future_time``).

    The samples and technical events of the batch go out as a few ``vitals`` records per
    partition (rows of ``SAMPLE_FIELDS``), each sent to the partition its patients' keys
    hash to. A patient's readings stay in order, and the monitor receives a handful of
    records per batch however many devices reported."""
    batch = IngestBatch()
    rows: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    technical: dict[int, list[dict[str, Any]]] = defaultdict(list)
    fast_messages: Counter[str] = Counter()
    fast_samples = 0
    for message in messages:
        fast = fast_rows(message.value, received_ms, message.fmt, max_ahead_ms)
        if fast is not None:
            fast_messages[fast[0]] += 1
            fast_samples += len(fast[1])
            for row in fast[1]:
                rows[partition_for(row[0], partitions)].append(row)
            continue
        result = parse_raw(message.value, received_ms, message.fmt, max_ahead_ms)
        batch.messages_in[result.format] += 1
        if result.rejection is not None:
            batch.dead_letters.append((message.key, dead_letter(
                message.value, result.rejection, result.format, message.where(), received_ms)))
            batch.rejected[(result.format, result.rejection.reason)] += 1
            continue
        batch.accepted[result.format] += 1
        batch.samples += len(result.samples)
        for sample in result.samples:
            rows[partition_for(sample.patient_id, partitions)].append(sample_row(sample))
        for event in result.technical:
            technical[partition_for(str(event.get("patient_id", "")), partitions)].append(event)
    if fast_messages:
        batch.messages_in.update(fast_messages)
        batch.accepted.update(fast_messages)
        batch.samples += fast_samples
    for number in sorted(set(rows) | set(technical)):
        partition_rows = rows.get(number, [])
        partition_technical = technical.get(number, [])
        for start in range(0, max(len(partition_rows), len(partition_technical), 1), ROWS_PER_RECORD):
            record: dict[str, Any] = {"rows": partition_rows[start:start + ROWS_PER_RECORD]}
            if partition_technical[start:start + ROWS_PER_RECORD]:
                record["technical"] = partition_technical[start:start + ROWS_PER_RECORD]
            batch.vitals.append((number, orjson.dumps(record)))
    return batch


def safe_ingest_batch(messages: list[RawMessage], received_ms: int, partitions: int,
                      max_ahead_ms: int = MAX_AHEAD_MS) -> IngestBatch:
    """``ingest_batch`` that cannot stop ingestion: should a batch fail in a way the parsers
    did not foresee, its messages are parsed one by one and any that still fails is
    dead-lettered as ``internal_error``, so one poisonous message never stalls a ward."""
    try:
        return ingest_batch(messages, received_ms, partitions, max_ahead_ms)
    except Exception:
        log.exception("ingest: a batch failed; parsing its messages one by one")
    merged = IngestBatch()
    for message in messages:
        try:
            one = ingest_batch([message], received_ms, partitions, max_ahead_ms)
        except Exception as exc:
            one = IngestBatch()
            one.messages_in["unknown"] += 1
            one.rejected[("unknown", "internal_error")] += 1
            one.dead_letters.append((message.key, dead_letter(
                message.value, Rejection("internal_error", type(exc).__name__), "unknown",
                message.where(), received_ms)))
        merged.vitals += one.vitals
        merged.dead_letters += one.dead_letters
        merged.messages_in.update(one.messages_in)
        merged.accepted.update(one.accepted)
        merged.rejected.update(one.rejected)
        merged.samples += one.samples
    return merged


def count(batch: IngestBatch) -> None:
    for fmt, n in batch.messages_in.items():
        metrics.MESSAGES_IN.labels(fmt).inc(n)
    for fmt, n in batch.accepted.items():
        metrics.MESSAGES_ACCEPTED.labels(fmt).inc(n)
    for (fmt, reason), n in batch.rejected.items():
        metrics.MESSAGES_DEADLETTERED.labels(fmt, reason).inc(n)
    metrics.SAMPLES_IN.inc(batch.samples)


def format_header(headers: Any) -> str | None:
    if not headers:
        return None
    for name, value in headers or ():
        if name == FORMAT_HEADER and value:
            fmt = value.decode("ascii", "replace")
            return fmt if fmt in ("hl7", "fhir", "json") else None
    return None


class IngestService(mode.Service):
    """The ingest loop as a service of the worker: started and stopped with the Faust app."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        # Batches sent, not yet acknowledged and committed; counted once settled.
        self.outbox = Outbox("ingest", settings.topic_raw, self._send, count, MAX_IN_FLIGHT)

    async def on_start(self) -> None:
        self.consumer = stage_consumer(self.settings, "ingest", max_partition_fetch_bytes=4 << 20)
        self.producer = stage_producer(self.settings)
        await self.producer.start()
        await self.consumer.start()
        # Subscribed after start: the group join then runs in the background, at the same
        # time as the monitor stage's (the embedded broker takes seconds for each join).
        self.consumer.subscribe([self.settings.topic_raw])

    async def on_stop(self) -> None:
        # The batch in flight is committed if it lands; if not, it is read again on restart.
        if self.outbox and self.consumer is not None:
            try:
                await asyncio.wait_for(self.settle(), 5.0)
            except (TimeoutError, KafkaError) as exc:
                log.warning("ingest: last batch not committed at stop (%s)", type(exc).__name__)
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    @mode.Service.task
    async def _ingest(self) -> None:
        """Fetch, parse and send a batch, and go on to the next without waiting for the
        broker: batches are settled (acknowledged, then committed) oldest first, as their
        acknowledgements come, and the loop waits only when ``MAX_IN_FLIGHT`` are out."""
        assert self.consumer is not None and self.producer is not None
        while not self.should_stop:
            records = await fetch(self.consumer, self.settings.ingest_batch_size, "ingest")
            messages = [
                RawMessage(record.value or b"", record.key, "", format_header(record.headers), record)
                for partition_records in records.values() for record in partition_records
            ]
            if not messages:
                await self.settle()
                continue
            partitions = len(await self.producer.partitions_for(self.settings.topic_vitals))
            batch = safe_ingest_batch(messages, int(time.time() * 1000), partitions,
                                      int(self.settings.device_time_max_ahead_s * 1000))
            writes: list[Write] = [(self.settings.topic_vitals, None, value, partition)
                                   for partition, value in batch.vitals]
            writes += [(self.settings.topic_deadletter, key, value, None) for key, value in batch.dead_letters]
            await self.outbox.put(writes, {tp: rs[-1].offset + 1 for tp, rs in records.items() if rs}, batch)
            await self.settle(everything=False)

    async def _send(self, writes: list[Write]) -> list[Sent]:
        """Hand a batch's messages to the producer (``Outbox`` retries on KafkaError)."""
        assert self.producer is not None
        send = self.producer.send
        return [(topic, -1 if partition is None else partition, 1,
                 await send(topic, value, key=key, partition=partition))
                for topic, key, value, partition in writes]

    async def settle(self, everything: bool = True) -> None:
        """Settle batches in flight, oldest first (``Outbox.settle``): acknowledged by the
        broker (sent again until they land: at least once), then committed and counted."""
        assert self.consumer is not None
        await self.outbox.settle(self.consumer, everything)
