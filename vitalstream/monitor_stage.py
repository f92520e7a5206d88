"""The monitor stage: ``vitals`` -> the per-patient monitor -> alerts, bed states and state.

A plain aiokafka consumer group (``<app_id>-monitor``), like the ingest stage, and not a
Faust agent with a Faust table, because the order of three writes is what makes a crash
or a rebalance lose nothing, and Faust did not keep it: its table sends changelog rows
from a buffer of its own, and in about one rebalance in three here a patient's row
reached the broker after Faust had committed the offsets of the readings in it (the new
owner then scored that patient from older state). Here each batch is

1. scored by the monitor;
2. its alerts published and acknowledged by the broker;
3. its bed states and the state of every patient it touched written to the changelog
   topic ``<app_id>-patients-changelog`` (keyed by patient, on the patient's partition)
   and acknowledged;
4. only then are its offsets committed. The loop does not wait for step 3's
   acknowledgement: it scores the next batch meanwhile (up to ``MAX_UNSETTLED`` batches
   unsettled), settles batches oldest first, and commits at most every
   ``kafka.COMMIT_INTERVAL_S`` under load (steps 3-4 are ``vitalstream.outbox``).

Each changelog row carries the offset of the last ``vitals`` record applied to the
patient, so a batch read again after a crash (state written, offsets not yet committed)
is not applied twice: alerts keep their ids and the features see each reading once.

Rebalances go through a listener: a partition's patients are dropped when it goes to
another worker, and read back from the changelog (to its end) before the first record of
a partition this worker gains is scored. A partition that comes back after another
worker wrote to it is read again; one that never left keeps its state in memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import logging
import operator
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from typing import Any

import mode
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)

from vitalstream import gate, metrics
from vitalstream.alerts import Alert
from vitalstream.alerts.settings import SettingsError
from vitalstream.governance.worker import WorkerGovernance
from vitalstream.ingest import Rejection, dead_letter
from vitalstream.ingest.adt import CENSUS_EVENTS
from vitalstream.ingest_stage import partition_for_key
from vitalstream.kafka import changelog_topic, consumer, fetch, stage_consumer, stage_producer
from vitalstream.monitor import Monitor, MonitorResult
from vitalstream.outbox import Outbox, Sent, Write
from vitalstream.oversight import OversightConfig, OversightDesk, Refused
from vitalstream.oversight.desk import STATUSES as OVERSIGHT_STATUSES
from vitalstream.samples import (
    R_BED,
    R_INGEST,
    R_PATIENT,
    R_TIME,
    R_WARD,
    ROW_WIDTH,
    Sample,
    SampleError,
    row_in_bed,
    sample_from_dict,
    sample_row,
)
from vitalstream.settings import Settings
from vitalstream.signing import Keyring

log = logging.getLogger("vitalstream.monitor")

RECOVERY_POLL_MS = 500
CHANGELOG_ANSWER_TIMEOUT_S = 30.0
_TIME_OF, _INGEST_OF, _PATIENT_OF = (operator.itemgetter(i) for i in (R_TIME, R_INGEST, R_PATIENT))
# Keys of the patients changelog: a patient's state, and their feature engine's buffers.
STATE_KEY, ENGINE_KEY = b"s|", b"e|"
# Scored batches whose state rows are not yet acknowledged before the loop waits for the oldest.
MAX_UNSETTLED = 4
# Feature snapshots are compressed in groups of at most PACK_CHUNK (so at most that many
# uncompressed buffers, 55 KB each, are held at once), in a thread from PACK_IN_THREAD_FROM.
PACK_CHUNK = 64
PACK_IN_THREAD_FROM = 8
TRIM_INTERVAL_S = 10.0  # how often freed C heap goes back to the system (a few ms each)
# Patients remembered as discharged (their later readings are not scored), and patients
# not admitted whose readings are counted in quarantine: both bounded, oldest forgotten.
MAX_DISCHARGED = 100_000
MAX_QUARANTINED = 10_000



def release_freed_memory() -> None:
    """Hand memory freed by the C allocator back to the system (glibc keeps it in its heap:
    about 50 MB of 940 MB at 10,000 patients here). A no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def now_ms() -> int:
    return int(time.time() * 1000)


class StreamClock:
    """Device-time "now" for stale-data checks: the newest device time seen, advanced by
    the wall time since it was seen. Live, this is the wall clock; in a fast replay it
    follows the recording, and when data stop it keeps running, so silence shows.
    It never runs ahead of the wall clock: one device stamped ahead (within ingest's
    tolerance) must not make the other patients of its partition look silent."""

    def __init__(self) -> None:
        self.device_ms = 0
        self.seen_at_s = time.monotonic()

    def observe(self, device_ms: int, wall_ms: int | None = None) -> None:
        device_ms = min(device_ms, now_ms() if wall_ms is None else wall_ms)
        if device_ms > self.device_ms:
            self.device_ms = device_ms
            self.seen_at_s = time.monotonic()

    def now_ms(self) -> int:
        return self.device_ms + int((time.monotonic() - self.seen_at_s) * 1000)


class Signer:
    """Signs what the worker writes to topics whose consumers verify it: control records
    forwarded onto ``vitals``, ``alerts``, ``ward.state`` (vitalstream.signing). About a
    microsecond a record (docs/reliability.md); samples on ``vitals`` are not signed."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.keyring = keyring
        self.topics = frozenset({settings.topic_vitals, settings.topic_alerts, settings.topic_bed_state})

    def headers(self, topic: str, key: bytes | None, value: bytes) -> list[tuple[str, bytes]] | None:
        return self.keyring.sign(topic, key, value) if topic in self.topics else None


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: MonitorStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.stage.on_revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.stage.on_assigned({tp.partition for tp in assigned})


class MonitorStage(mode.Service):
    """The monitor loop as a service of the worker: started and stopped with the Faust app."""

    def __init__(self, settings: Settings, monitor: Monitor, keyring: Keyring | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.monitor = monitor
        self.keyring = keyring or Keyring.for_process(settings, "worker")
        self.signer = Signer(settings, self.keyring)
        monitor.bed_state_interval_ms = int(settings.bed_state_interval_s * 1000)
        self.changelog = changelog_topic(settings)
        # One clock per partition of vitals: in a fast replay partitions run ahead of each
        # other, and a patient must not look silent because another partition is further on.
        self.clocks: dict[int, StreamClock] = defaultdict(StreamClock)
        self.lock = asyncio.Lock()  # one batch, timer or rebalance step at a time
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.reader: AIOKafkaConsumer | None = None
        self.owned: set[int] = set()
        self.recovered = asyncio.Event()
        self.rebalancing = False
        self.applied: dict[str, int] = {}  # patient -> offset of the last vitals record applied
        self.written: dict[int, int] = {}  # changelog partition -> offset of our last row
        self.applied_through: dict[int, int] = {}  # partition -> last record offset applied
        self.replay_until: dict[int, int] = {}  # partition -> highest applied offset restored
        self.partition_of: dict[str, int] = {}  # patient -> their vitals (and changelog) partition
        self.save_interval_ms = int(settings.state_save_interval_s * 1000)
        self._counted: dict[str, dict[str, int]] = defaultdict(dict)
        # Scored batches whose bed states and state rows are on their way, then committed.
        self.outbox = Outbox("monitor", settings.topic_vitals, self._send, self._observe, MAX_UNSETTLED,
                             on_acknowledged=self._note_written)
        self._trimmed_s = 0.0
        # One thread compresses feature snapshots (one malloc arena, not one per thread);
        # made again at each start, as a stop shuts it down (its thread starts at first use).
        self.packer = self._new_packer()
        # Who holds each open alert, answers, snoozes, goals (raises at start if misconfigured).
        self.desk = OversightDesk(OversightConfig.from_json(settings.escalation_chains, settings.snooze_max_s))
        # Census (ADT): patient -> (ward, bed) as admitted; discharged patients; quarantine.
        self.census: dict[str, tuple[str, str]] = {}
        self.discharged: OrderedDict[str, int] = OrderedDict()
        self.quarantine: OrderedDict[str, int] = OrderedDict()
        self._census_writes: list[Write] = []  # vacated beds and discharge rows of the batch
        self.max_patients = settings.max_patients
        self._admitting: set[str] = set()  # new patients of the batch being taken, near the limit
        # Wall time each patient's readings last arrived (per batch, not per reading): eviction
        # goes by it, not by device time, so a fast replay of old recordings evicts nobody.
        self.seen_wall: dict[str, int] = {}
        self.evict_after_ms = int(settings.evict_silent_after_s * 1000)
        metrics.PATIENTS_LIMIT.set(self.max_patients)
        # Audit records of the decisions and actions, and the kill switch (governance/worker.py).
        self.governance = WorkerGovernance(settings, monitor)

    # -- lifecycle -----------------------------------------------------------------------
    @staticmethod
    def _new_packer() -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitalstream-pack")

    async def on_start(self) -> None:
        self.packer = self._new_packer()
        self.producer = stage_producer(self.settings)
        # The changelog reader, assigned partitions by hand in a rebalance (no group).
        self.reader = consumer(self.settings, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
        self.consumer = stage_consumer(self.settings, "monitor", max_partition_fetch_bytes=8 << 20)
        await self.producer.start()
        await self.reader.start()
        await self.consumer.start()
        self.consumer.subscribe([self.settings.topic_vitals], listener=_Rebalance(self))
        await self.governance.start()  # (while the group join goes on)

    async def on_stop(self) -> None:
        # The lock waits for the batch in progress; the one in flight is then settled.
        async with self.lock:
            try:
                await asyncio.wait_for(self.settle(), 5.0)
            except (TimeoutError, KafkaError) as exc:  # read again on restart
                log.warning("monitor: last batch not committed at stop (%s)", type(exc).__name__)
            await self.governance.stop()
            for client in (self.consumer, self.reader, self.producer):
                if client is not None:
                    try:
                        await client.stop()
                    except KafkaError as exc:  # a broker gone at shutdown: nothing more to do
                        log.warning("monitor: stopping a client failed (%s)", type(exc).__name__)
        self.packer.shutdown(wait=False)

    def ready(self) -> bool:
        return (self.recovered.is_set() and not self.rebalancing and self.consumer is not None
                and bool(self.consumer.assignment()))

    # -- rebalance -----------------------------------------------------------------------
    async def on_revoked(self) -> None:
        self.rebalancing = True
        async with self.lock:  # the batch in progress finishes, and the one in flight commits
            await self.settle()

    async def on_assigned(self, partitions: set[int]) -> None:
        async with self.lock:
            while True:
                try:
                    ends = await self._changelog_ends(partitions)
                    # Kept in memory only if no other worker wrote this partition's state since.
                    kept = {p for p in partitions & self.owned
                            if ends.get(p, 0) == self.written.get(p, -1) + 1}
                    self._forget(kept)
                    self.owned = set(kept)
                    # A kept partition restarts at its committed offset, which is behind
                    # what was applied if the last commit was refused in the rebalance.
                    for partition in kept:
                        self.replay_until[partition] = max(self.replay_until.get(partition, -1),
                                                           self.applied_through.get(partition, -1))
                    await self._recover(partitions - kept, ends)
                    await self.governance.resume(partitions)  # the audit chains go on from their tails
                    break
                except KafkaError as exc:
                    # Scoring without the patients' state would raise wrong alerts: retry.
                    log.warning("monitor: reading the state changelog failed (%s); retrying",
                                type(exc).__name__)
                    await asyncio.sleep(1.0)
                except Exception as exc:
                    # Not a broker hiccup: stop the worker (its orchestrator restarts it)
                    # rather than score patients without their state.
                    log.exception("monitor: restoring state failed")
                    await self.crash(exc)
                    raise
            self.owned = set(partitions)
            metrics.PATIENTS_MONITORED.set(len(self.monitor.patients))
            self.rebalancing = False
            self.recovered.set()

    def _forget(self, keep: set[int]) -> None:
        """Drop the patients, clocks and positions of every partition but ``keep``."""
        for patient_id in [p for p in self.monitor.patients if self.partition_of.get(p) not in keep]:
            self.monitor.discharge(patient_id)
            self.desk.forget(patient_id)
            self.seen_wall.pop(patient_id, None)
            self.applied.pop(patient_id, None)
            self.partition_of.pop(patient_id, None)
        for table in (self.census, self.discharged, self.quarantine):
            for patient_id in [p for p in table if self.partition_of.get(p) not in keep]:
                del table[patient_id]
        for table in (self.clocks, self.written, self.replay_until, self.applied_through):
            for partition in [p for p in table if p not in keep]:
                del table[partition]
        positions = self.outbox.positions
        for tp in [tp for tp in positions if tp.partition not in keep]:
            del positions[tp]

    async def _changelog_ends(self, partitions: set[int]) -> dict[int, int]:
        """The end offset of each changelog partition, from a fetch's high watermark: the
        embedded broker (tansu 0.6) answers a ListOffsets request with the end of the first
        message of the last batch, not of the batch, so ``end_offsets`` would stop short."""
        assert self.reader is not None
        tps = [TopicPartition(self.changelog, p) for p in partitions]
        if not tps:
            return {}
        self.reader.assign(tps)
        for tp in tps:  # from our own last row: a short fetch if no one else wrote since
            self.reader.seek(tp, self.written.get(tp.partition, -1) + 1)
        deadline = time.monotonic() + CHANGELOG_ANSWER_TIMEOUT_S
        while any(self.reader.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise KafkaTimeoutError("no fetch answer from the changelog partitions")
            await self.reader.getmany(*tps, timeout_ms=RECOVERY_POLL_MS)
        return {tp.partition: int(self.reader.highwater(tp) or 0) for tp in tps}

    async def _read_to(self, ends: dict[TopicPartition, int]) -> bool:
        assert self.reader is not None
        for tp, end in ends.items():
            if await self.reader.position(tp) < end:
                return False
        return True

    async def _recover(self, partitions: set[int], ends: dict[int, int]) -> None:
        """Read the changelog of ``partitions`` to ``ends`` and restore their patients."""
        assert self.reader is not None
        wanted = {TopicPartition(self.changelog, p): ends.get(p, 0) for p in partitions}
        wanted = {tp: end for tp, end in wanted.items() if end > 0}
        if not wanted:
            return
        started = time.monotonic()
        self.reader.assign(list(wanted))
        await self.reader.seek_to_beginning(*wanted)
        latest: dict[bytes, tuple[int, bytes | None]] = {}
        while not await self._read_to(wanted):
            for records in (await self.reader.getmany(*wanted, timeout_ms=RECOVERY_POLL_MS)).values():
                for record in records:
                    if record.key is not None and record.offset < wanted[TopicPartition(record.topic, record.partition)]:
                        latest[record.key] = (record.partition, record.value)
        restored = 0
        snapshots: list[tuple[str, bytes]] = []
        latest = self._restorable(latest)
        for key, (partition, value) in latest.items():
            if not value:
                continue
            if key.startswith(ENGINE_KEY):
                snapshots.append((key[len(ENGINE_KEY):].decode(), value))
                continue
            try:
                row = orjson.loads(value)
                if row.get("state") is None:  # a discharged patient's last row
                    patient_id = key[len(STATE_KEY):].decode()
                    self.discharged[patient_id] = int((row.get("census") or {}).get("at_ms", 0))
                    self.applied[patient_id] = int(row["offset"])
                    self.partition_of[patient_id] = partition
                    continue
                if row.get("census"):
                    self.census[str(row["state"]["patient_id"])] = (str(row["census"]["ward"]),
                                                                    str(row["census"]["bed"]))
                self.monitor.restore(row["state"])
                patient_id = str(row["state"]["patient_id"])
                if row.get("seen_ms"):
                    self.seen_wall[patient_id] = int(row["seen_ms"])
                if row.get("oversight"):
                    self.desk.restore(row["oversight"])
                self.applied[patient_id] = int(row["offset"])
                self.partition_of[patient_id] = partition
                self.replay_until[partition] = max(self.replay_until.get(partition, -1), int(row["offset"]))
                restored += 1
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                metrics.VITALS_REJECTED.inc()
                log.error("unreadable state row in %s: %s", self.changelog, type(exc).__name__)
        for patient_id, snapshot in snapshots:  # after the state rows: the patients exist
            try:
                self.monitor.restore_engine(patient_id, snapshot)
            except ValueError as exc:  # another engine configuration: features start afresh
                log.error("feature snapshot not restored: %s", exc)
        for tp, end in wanted.items():
            self.written[tp.partition] = end - 1
        log.info("monitor: restored %d patients from %d changelog partitions in %.1f s",
                 restored, len(wanted), time.monotonic() - started)

    # -- the loop ------------------------------------------------------------------------
    @mode.Service.task
    async def _monitor(self) -> None:
        """Each batch is scored and its alerts published and acknowledged; its bed states
        and state rows are handed to the producer and the loop goes on. Batches are
        settled (acknowledged, then committed) oldest first as their acknowledgements
        come; the loop waits only when ``MAX_UNSETTLED`` are out. One producer sends a
        partition's rows in order, so a patient's rows reach the changelog in order."""
        assert self.consumer is not None
        while not self.should_stop:
            batches = await fetch(self.consumer, self.settings.batch_size, "monitor")
            async with self.lock:
                owned = self.consumer.assignment()
                records = [r for tp, rs in batches.items() if tp in owned for r in rs]
                if not records:
                    await self.settle()
                    continue
                writes, samples = await self.process(records)
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items() if tp in owned}
                await self.outbox.put(writes, offsets, samples)
                await self.settle(everything=False)
            if time.monotonic() - self._trimmed_s >= TRIM_INTERVAL_S:
                release_freed_memory()
                self._trimmed_s = time.monotonic()

    async def settle(self, everything: bool = True) -> None:
        """Settle unsettled batches, oldest first (``Outbox.settle``): acknowledged, then
        committed, then their samples counted. Offsets refused after a rebalance are read
        again by the new owner, and the offsets in the state rows keep them from being
        applied twice."""
        assert self.consumer is not None
        await self.outbox.settle(self.consumer, everything)

    async def process(self, records: list[Any]) -> tuple[list[Write], list[Any]]:
        """Score one batch of ``vitals`` records and publish the alerts it raised (steps
        1-2); return its bed states and state rows to write (step 3), and its samples."""
        monitor = self.monitor
        samples, technical, alerts = [], [], []
        controlled: set[str] = set()
        wall_ms = now_ms()
        refused: list[Write] = []
        self._admitting.clear()
        for record in records:
            try:
                self._take(record, samples, technical, alerts, controlled, wall_ms, refused)
            except (orjson.JSONDecodeError, SampleError, TypeError, AttributeError, KeyError, ValueError) as exc:
                # vitals is internal: a record here that is not ours is a bug or an
                # intruder; count it and go on rather than stop every patient's monitor.
                metrics.VITALS_REJECTED.inc()
                log.error("unreadable record on %s: %s", self.settings.topic_vitals, type(exc).__name__)
        result = self._score(samples)
        alerts.extend(result.alerts)
        census_writes, self._census_writes = self._census_writes, []
        alerts.extend(monitor.technical(technical))
        self.desk.on_alerts(alerts, now_ms())
        await self.publish_alerts(alerts)
        states = monitor.bed_states(result.assessments)
        changed = controlled | {a.patient_id for a in alerts}
        touched = set(result.touched) | {str(t.get("patient_id")) for t in technical} | changed
        seen_ms = now_ms()
        for patient_id in result.touched:
            self.seen_wall[patient_id] = seen_ms
        writes = [(self.settings.topic_bed_state, s["ward"].encode(), orjson.dumps(s), None) for s in states]
        writes += self.governance.shadow_writes(result.assessments)  # alerts.shadow, never to stations
        return refused + writes + census_writes + await self.state_rows(touched, changed), samples

    def _take(self, record: Any, samples: list[Any], technical: list[dict[str, Any]], alerts: list[Alert],
              controlled: set[str], wall_ms: int, refused: list[Write]) -> None:
        """Unpack one vitals record: samples and technical events to score, control records
        (acknowledgements, settings) applied at once. Parts of it already in a patient's
        saved state (the record is read again after a crash or rebalance) are skipped, and
        so are readings further ahead of the wall clock than ingest lets through (counted):
        one would move its patient's clock and drop their real readings as late.

        A record holding a control record is taken only with a worker's signature (the
        forwarders sign what they checked): anything else, such as an acknowledgement
        written straight onto vitals, is counted and its dead letter added to ``refused``."""
        body = orjson.loads(record.value)
        offset, applied = record.offset, self.applied
        try:
            gate.check_on_vitals(self.keyring, record, body)
        except gate.Refused as exc:
            metrics.CONTROL_REFUSED.labels("vitals", exc.reason).inc()
            log.warning("refused a control record on %s: %s", record.topic, exc.reason)
            letter = dead_letter(record.value, Rejection(exc.reason, exc.detail), "vitals",
                                 f"{record.topic}/{record.partition}@{offset}", now_ms())
            refused.append((self.settings.topic_deadletter, record.key or b"", letter, None))
            return

        def new(patient_id: Any) -> bool:
            return applied.get(str(patient_id), -1) < offset

        rows = body.get("rows", [])
        # (map over C-level getters: a third of the time of a generator over the rows)
        if rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {ROW_WIDTH}):
            raise SampleError(f"a sample row has {ROW_WIDTH} fields")
        rows += [sample_row(sample_from_dict(s)) for s in body.get("samples", ())]
        if self.census or self.discharged or self.settings.census_required:
            rows = self._admitted(rows)
        rows = self._within_limit(rows)
        # Only a record at or before a restored patient's applied offset can hold readings
        # already in the state: after recovery, the partition's first records.
        if offset <= self.replay_until.get(record.partition, -1):
            rows = [r for r in rows if applied.get(r[R_PATIENT], -1) < offset]
        events = [t for t in body.get("technical", ()) if new(t.get("patient_id"))
                  and self._monitored(str(t.get("patient_id")))]
        if events and len(self.monitor.patients) >= self.max_patients:  # (a full population admits nobody)
            events = [t for t in events if str(t.get("patient_id")) in self.monitor.patients]
        horizon_ms = wall_ms + int(self.settings.device_time_max_ahead_s * 1000)
        if max(map(_TIME_OF, rows), default=0) > horizon_ms or any(
                int(t.get("device_time_ms") or 0) > horizon_ms for t in events):
            kept = [r for r in rows if r[R_TIME] <= horizon_ms]
            kept_events = [t for t in events if int(t.get("device_time_ms") or 0) <= horizon_ms]
            metrics.FUTURE_READINGS_DROPPED.inc(len(rows) - len(kept) + len(events) - len(kept_events))
            rows, events = kept, kept_events
        control, ack = body.get("settings"), body.get("ack")
        if body.keys() & self.governance.KEYS:  # kill switch, audit actions, oversight, demographics
            self.governance.take(body, record.partition)
        samples.extend(rows)
        technical.extend(events)
        newest_ms = max(map(_TIME_OF, rows), default=0)
        if newest_ms:
            self.clocks[record.partition].observe(newest_ms, wall_ms)
        if control and new(control["patient_id"]):
            controlled.add(str(control["patient_id"]))
            try:
                self.monitor.configure(control["patient_id"], control["record"],
                                       control.get("ward", ""), control.get("bed", ""))
                self.governance.on_settings(control, record.partition, None)
            except (SettingsError, KeyError, TypeError, ValueError) as exc:
                metrics.SETTINGS_REJECTED.inc()
                log.warning("per-patient settings refused: %s", exc)
                self.governance.on_settings(control, record.partition, f"refused: {exc}")
        patient = self.monitor.patients.get(str(ack["patient_id"])) if ack else None
        if patient is not None:
            try:
                gate.check_ward(ack, patient.ward)
            except gate.Refused as exc:
                metrics.CONTROL_REFUSED.labels("ack", exc.reason).inc()
                log.warning("refused an acknowledgement for a patient of another ward")
                ack = None
        if ack and new(ack["patient_id"]):
            controlled.add(str(ack["patient_id"]))
            answered = self._acknowledge(ack)
            self.governance.on_ack(ack, record.partition, answered)
            alerts.extend(answered)
        oversight = body.get("oversight")
        if oversight and new(oversight["patient_id"]):
            controlled.add(str(oversight["patient_id"]))
            alerts.extend(self._oversee(oversight))
        census = body.get("census")
        if census and new(census["patient_id"]):
            controlled.add(str(census["patient_id"]))
            alerts.extend(self._admit(census))
        patients = set(map(_PATIENT_OF, rows)) | {str(t.get("patient_id")) for t in events}
        patients |= {str(c["patient_id"]) for c in (control, ack, oversight, census) if c}
        self.applied_through[record.partition] = offset
        for patient_id in patients:  # after the checks above: this record is now applied
            applied[patient_id] = offset
            self.partition_of[patient_id] = record.partition

    def _score(self, samples: list[Any]) -> MonitorResult:
        """``monitor.process``, which cannot stop the ward. A patient whose assessment the
        alert policy fails on loses that batch's assessments, nobody else does (the core
        guards each patient). Should the batch fail before that, in the features or the
        model, its patients are scored again one by one and only the failing one is left
        out; the others then are assessed at the batch's end only (their readings were
        already taken in), which is not exact but does not stop every patient's monitor.
        Either way the failure is counted and logged, without identifiers."""
        try:
            result = self.monitor.process_rows(samples)
        except Exception:
            log.exception("monitor: a batch failed; scoring its patients one by one")
            result = MonitorResult(samples=len(samples))
            by_patient: dict[str, list[Any]] = defaultdict(list)
            for row in samples:
                by_patient[row[R_PATIENT]].append(row)
            for patient_id, patient_samples in by_patient.items():
                try:
                    one = self.monitor.process_rows(patient_samples)
                except Exception as exc:
                    result.failed[patient_id] = type(exc).__name__
                    continue
                result.alerts += one.alerts
                result.assessments += one.assessments
                result.touched += one.touched
                result.failed.update(one.failed)
        for error in result.failed.values():
            metrics.MONITOR_ERRORS.inc()
            log.error("monitor: a patient's readings could not be scored: %s", error)
        return result

    def _observe(self, samples: list[Any]) -> None:
        if samples:
            done_s = time.time()
            device_s = np.fromiter(map(_TIME_OF, samples), np.float64, len(samples)) / 1000.0
            ingest_s = np.fromiter(map(_INGEST_OF, samples), np.float64, len(samples)) / 1000.0
            metrics.observe_many(metrics.SAMPLE_LATENCY, done_s - device_s)
            metrics.observe_many(metrics.PROCESSING_LATENCY, done_s - ingest_s)
            metrics.SAMPLES_PROCESSED.inc(len(samples))
        self.governance.observe(samples)  # live quality counts and the census (governance/quality.py)
        monitor = self.monitor
        metrics.PATIENTS_MONITORED.set(len(monitor.patients))
        if monitor.engine is not None:
            metrics.count_totals(metrics.LATE_SAMPLES_DROPPED, {"": monitor.engine.late_dropped},
                                 self._counted["late"])
            metrics.count_totals(metrics.ARTEFACTS, monitor.engine.artefact_counts, self._counted["artefacts"])
        metrics.count_totals(metrics.BAD_TIME_DROPPED, {"": monitor.dropped_bad_time}, self._counted["time"])

    async def state_rows(self, patient_ids: Iterable[str], force: set[str]) -> list[Write]:
        """Changelog rows of patients' state: at once when their alert state or settings
        changed (``force``), else at most once per save interval of device time. The
        feature engine's buffers go in a row of their own (key ``e|<patient>``) when a
        snapshot is due, once a minute; the state row (``s|<patient>``) is small.

        Compressing the buffers is most of the cost (about 0.1 ms a patient): with many
        due, they are compressed in a thread, which zlib lets run on another core while
        this loop goes on with the ingest stage."""
        rows: list[Write] = []
        bodies: list[int] = []  # indices in rows of engine rows still uncompressed
        for patient_id in patient_ids:
            record = self.monitor.patients.get(patient_id)
            if record is None:
                if patient_id in self.discharged:  # the last row says so: not restored
                    row = {"offset": self.applied.get(patient_id, -1), "state": None,
                           "census": {"status": "discharged", "at_ms": self.discharged[patient_id]}}
                    rows.append((self.changelog, STATE_KEY + patient_id.encode(), orjson.dumps(row),
                                 self.partition_of.get(patient_id)))
                continue
            # A value charted at a round (temperature, BP, ACVPU, oxygen) comes once in hours:
            # saved at once, so a crash cannot leave the score without it until the next round.
            if (patient_id in force or record.unsaved_round
                    or record.newest_ms - record.saved_ms >= self.save_interval_ms):
                partition = self.partition_of.get(patient_id)
                key = patient_id.encode()
                snapshot = self.monitor.snapshot_due(patient_id)
                if snapshot is not None:
                    bodies.append(len(rows))
                    rows.append((self.changelog, ENGINE_KEY + key, snapshot, partition))
                    if len(bodies) == PACK_CHUNK:
                        await self._pack(rows, bodies)
                        bodies = []
                row = {"offset": self.applied.get(patient_id, -1), "state": record.for_orjson(),
                       "seen_ms": self.seen_wall.get(patient_id)}
                oversight = self.desk.export(patient_id)
                if oversight is not None:
                    row["oversight"] = oversight
                if patient_id in self.census:
                    ward, bed = self.census[patient_id]
                    row["census"] = {"ward": ward, "bed": bed}
                rows.append((self.changelog, STATE_KEY + key, orjson.dumps(row), partition))
                record.saved_ms = record.newest_ms
                record.unsaved_round = False
        if bodies:
            await self._pack(rows, bodies)
        return rows

    async def _pack(self, rows: list[Write], indices: list[int]) -> None:
        """Compress the engine buffers at these indices of ``rows``, in place."""
        raw = [rows[i][2] for i in indices]
        pack = self.monitor.pack_snapshot
        if len(raw) >= PACK_IN_THREAD_FROM:
            packed = await asyncio.get_running_loop().run_in_executor(
                self.packer, lambda: [pack(body) for body in raw])
        else:
            packed = [pack(body) for body in raw]
        for i, snapshot in zip(indices, packed, strict=True):
            topic, key, _, partition = rows[i]
            rows[i] = (topic, key, snapshot, partition)

    async def send_all(self, messages: list[Write]) -> None:
        """Send and wait for the broker's acknowledgement of every message, retrying while
        the broker is away (nothing is committed before this returns)."""
        await self.outbox.send_now(messages)

    async def send(self, messages: list[Write]) -> list[Sent]:
        """Hand messages to the producer, retrying while the broker is away; what was sent."""
        return await self.outbox.send(messages)

    def _note_written(self, sent: list[Sent], metas: list[Any]) -> None:
        """The offset of our last changelog row per partition, from the acknowledgements."""
        for (topic, partition, count, _), meta in zip(sent, metas, strict=True):
            if topic == self.changelog and count:
                self.written[partition] = max(self.written.get(partition, -1), meta.offset + count - 1)

    async def _send(self, messages: list[Write]) -> list[Sent]:
        """Messages go out as one record batch per partition: a state row per patient per
        batch costs one append, not one ``send`` each (which cost 0.1 ms apiece here)."""
        assert self.producer is not None
        groups: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
        counts: dict[str, int] = {}
        for topic, key, value, partition in messages:
            if partition is None:  # by key, as Kafka's default partitioner does
                if topic not in counts:
                    counts[topic] = len(await self.producer.partitions_for(topic))
                partition = partition_for_key(key, counts[topic])
            groups[(topic, partition)].append((key, value))
        sent: list[Sent] = []
        sign = self.signer.headers
        for (topic, partition), items in groups.items():
            batch, count = self.producer.create_batch(), 0
            for key, value in items:
                headers = sign(topic, key, value) or []
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    sent.append((topic, partition, count, await self.producer.send_batch(
                        batch, topic, partition=partition)))
                    batch, count = self.producer.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        raise MessageSizeTooLargeError(f"a message of {len(value)} bytes for {topic}")
                count += 1
            sent.append((topic, partition, count, await self.producer.send_batch(
                batch, topic, partition=partition)))
        return sent

    async def publish_alerts(self, alerts: list[Alert]) -> None:
        for (event, kind, priority), count in self.monitor.policy.drain_events().items():
            metrics.ALERT_EVENTS.labels(event, kind, priority).inc(count)
        self._count_oversight()
        self.governance.stamp(alerts)
        audit_writes = self.governance.writes(alerts, self.partition_of)
        if not alerts:
            if audit_writes:
                await self.send_all(audit_writes)
            return
        published_s = time.time()
        # An alert (and its audit record) is on the broker before the state that records
        # it, and before the readings that raised it are committed.
        await self.send_all([(self.settings.topic_alerts, a.ward.encode(), orjson.dumps(a.to_dict()), None)
                             for a in alerts] + audit_writes)
        for alert in alerts:
            metrics.ALERTS_OUT.labels(alert.priority, alert.kind, alert.status).inc()
        metrics.observe_many(metrics.ALERT_LATENCY, np.array(
            [published_s - alert.device_time_ms / 1000.0 for alert in alerts
             if alert.status not in OVERSIGHT_STATUSES]))

    async def check_stale(self) -> None:
        """Technical "no data" alerts, each patient by its partition's clock."""
        async with self.lock:
            await self.settle()  # its rows first: a patient's rows reach the changelog in order
            if not self.clocks:
                return
            now_by_partition = {partition: clock.now_ms() for partition, clock in self.clocks.items()}
            fallback_ms = max(now_by_partition.values())
            alerts = self.monitor.check_stale(lambda patient_id: now_by_partition.get(
                self.partition_of.get(patient_id, -1), fallback_ms))
            self.desk.on_alerts(alerts, now_ms())
            await self.publish_alerts(alerts)
            raised = {a.patient_id for a in alerts}
            await self.send_all(await self.state_rows(raised, raised))
            metrics.STALE_PATIENTS.set(self.monitor.stale_patients())
            self.governance.quality.census(self.monitor)  # also while no readings come
            self._evict_silent(now_ms())

    # -- human oversight (vitalstream/oversight): alert transitions, control messages, a timer
    def _acknowledge(self, ack: dict[str, Any]) -> list[Alert]:
        """An acknowledgement: by a signed-in actor whose role may acknowledge (else
        refused and counted, nothing changes), or a legacy one with a name only."""
        try:
            actor, at_ms = gate.check_acknowledgement(ack, now_ms(), self.desk.config.control_window_s)
        except gate.Refused as exc:
            self.desk.counts[("refused", exc.reason)] += 1
            log.warning("acknowledgement refused: %s", exc.reason.removeprefix("ack_"))
            return []
        by = str(ack.get("by", "")) or (f"{actor['name']} ({actor['user_id']})" if actor else "")
        acknowledged = self.monitor.acknowledge(ack["patient_id"], ack["alert_id"], by, at_ms, actor)
        # At the acknowledgement's own time: the same when applied again after a crash.
        self.desk.on_alerts(acknowledged, at_ms, actor)
        return acknowledged

    def _oversee(self, record: dict[str, Any]) -> list[Alert]:
        """An answer, snooze, disposition or care goal from a station."""
        patient_id = str(record["patient_id"])
        if patient_id not in self.monitor.patients:
            self.desk.counts[("refused", "unknown_patient")] += 1
            return []
        try:
            return self.desk.control(patient_id, record, record.get("actor"), now_ms())
        except Refused as exc:
            log.warning("oversight message refused: %s", exc)
            return []

    async def check_oversight(self) -> None:
        """Call the next responder, end snoozes and goals that are due (a timer)."""
        if not self.desk.next_ms or min(self.desk.next_ms.values()) > now_ms():
            self._count_oversight()
            return
        async with self.lock:
            await self.settle()  # its rows first: a patient's rows reach the changelog in order
            events = self.desk.due(now_ms())
            await self.publish_alerts(events)
            touched = {e.patient_id for e in events}
            await self.send_all(await self.state_rows(touched, touched))

    def _count_oversight(self) -> None:
        counts, timings = self.desk.drain()
        for key, count in counts.items():
            if key[0] == "escalation":
                metrics.ESCALATIONS.labels(*key[1:]).inc(count)
            elif key[0] == "answer":
                metrics.ANSWERS.labels(*key[1:]).inc(count)
            elif key[0] == "refused":
                metrics.OVERSIGHT_REFUSED.labels(key[1]).inc(count)
        for what, ward, priority, seconds in timings:
            (metrics.TIME_TO_ACK if what == "ack" else metrics.TIME_TO_ANSWER).labels(ward, priority).observe(seconds)

    # -- census (ADT): who is monitored, in which bed ----------------------------------------
    def _monitored(self, patient_id: str) -> bool:
        if patient_id in self.census:
            return True
        if patient_id in self.discharged or self.settings.census_required:
            self._quarantine(patient_id, 1)
            return False
        return True

    def _quarantine(self, patient_id: str, readings: int) -> None:
        """Readings of a patient not admitted (or discharged): on vitals still, not scored."""
        metrics.CENSUS_QUARANTINED.inc(readings)
        quarantine = self.quarantine
        quarantine[patient_id] = quarantine.pop(patient_id, 0) + readings
        while len(quarantine) > MAX_QUARANTINED:
            quarantine.popitem(last=False)
        metrics.CENSUS_QUARANTINE_PATIENTS.set(len(quarantine))

    def _admitted(self, rows: list[Any]) -> list[Any]:
        """The rows of patients the census lets the monitor score, in the census's ward and
        bed (a gateway's label can lag a transfer); the others are counted in quarantine."""
        census, kept = self.census, []
        for row in rows:
            place = census.get(row[R_PATIENT])
            if place is not None:
                if (row[R_WARD], row[R_BED]) != place:
                    row = row_in_bed(row, *place)
                kept.append(row)
            elif self._monitored(row[R_PATIENT]):
                kept.append(row)
        return kept

    def _vacate(self, patient_id: str, ward: str, bed: str) -> None:
        """A bed state that tells the ward's boards the patient left this bed."""
        if ward and bed:
            vacated = {"ward": ward, "bed": bed, "patient_id": patient_id, "time_ms": now_ms(), "vacated": True}
            self._census_writes.append((self.settings.topic_bed_state, ward.encode(), orjson.dumps(vacated), None))

    def _adopt(self, patient_id: str) -> None:
        """Open alerts the desk does not follow yet (state from before oversight): followed
        from now, so a transfer or discharge reaches them too."""
        record = self.monitor.patients.get(patient_id)
        tracked = self.desk.patients.get(patient_id)
        if record is None:
            return
        for open_alert in record.alert_state.open_alerts():
            if tracked is None or open_alert.alert_id not in tracked.alerts:
                self.desk.on_alerts([Alert(open_alert.alert_id, patient_id, record.ward, record.bed,
                                           open_alert.kind, open_alert.priority, "raised", "", open_alert.raised_ms,
                                           {})], now_ms())

    def _admit(self, census: dict[str, Any]) -> list[Alert]:
        """Apply one census record: admit or update sets the patient's ward and bed, a
        transfer moves their open alerts to the new ward's boards, a discharge closes them
        and forgets the patient (no more "no data" alerts; the changelog keeps the last row)."""
        patient_id, event = str(census["patient_id"]), census.get("event")
        ward, bed = str(census.get("ward") or ""), str(census.get("bed") or "")
        if event not in CENSUS_EVENTS or (event != "discharge" and not (ward and bed)):
            metrics.OVERSIGHT_REFUSED.labels("census_malformed").inc()
            return []
        record = self.monitor.patients.get(patient_id)
        self._adopt(patient_id)
        if event == "discharge":
            self.census.pop(patient_id, None)
            self.seen_wall.pop(patient_id, None)
            self.discharged.pop(patient_id, None)
            self.discharged[patient_id] = int(census.get("at_ms") or now_ms())
            while len(self.discharged) > MAX_DISCHARGED:
                self.discharged.popitem(last=False)
            out = self.desk.discharge(patient_id, now_ms())
            if record is not None:
                self._vacate(patient_id, record.ward, record.bed)
                state = record.alert_state
                state.clinical, state.level, state.clear_since_ms = None, None, None
                state.technical.clear()
                state.pending.clear()
                self.monitor.discharge(patient_id)
            metrics.CENSUS_EVENTS.labels("discharge").inc()
            return out
        self.discharged.pop(patient_id, None)
        self.quarantine.pop(patient_id, None)
        self.census[patient_id] = (ward, bed)
        metrics.CENSUS_EVENTS.labels(str(event)).inc()
        if record is None:
            self.monitor.record_for(Sample(patient_id=patient_id, ward=ward, bed=bed, parameter="spo2_scale",
                                           value=1, unit="scale", device_time_ms=int(census.get("at_ms") or 0),
                                           source="census", ingest_time_ms=0))
            return []
        if (record.ward, record.bed) == (ward, bed):
            return []
        self._vacate(patient_id, record.ward, record.bed)
        record.ward, record.bed = ward, bed
        record.alert_state.ward, record.alert_state.bed = ward, bed
        record.bed_state_shown = ()  # the new bed shows the patient at the next reading
        return self.desk.transfer(patient_id, ward, bed, now_ms())

    # -- bounded population (issue 23.3) ------------------------------------------------------
    def _within_limit(self, rows: list[Any]) -> list[Any]:
        """The rows of a record without the patients a full population cannot admit: one set
        operation per record, a row filter only when new patients would pass the limit."""
        patients, admitting = self.monitor.patients, self._admitting
        if len(patients) + len(admitting) < self.max_patients - len(rows) or not rows:
            return rows
        new = set(map(_PATIENT_OF, rows)).difference(patients).difference(admitting)
        room = self.max_patients - len(patients) - len(admitting)
        if len(new) <= room:
            admitting.update(new)  # admitted when the batch is scored, after every record is taken
            return rows
        admitted = set(sorted(new)[:max(0, room)])
        admitting.update(admitted)
        kept = [r for r in rows if r[R_PATIENT] in patients or r[R_PATIENT] in admitting]
        metrics.PATIENTS_OVER_LIMIT.inc(len(rows) - len(kept))
        for patient_id in new - admitted:
            self._quarantine(patient_id, 0)
        if len(rows) != len(kept):
            log.warning("monitor: %d patients monitored, the limit: readings of %d new patients not scored",
                        len(patients), len(new) - len(admitted))
        return kept

    def _evictable(self, patient_id: str) -> bool:
        record = self.monitor.patients[patient_id]
        return (not record.alert_state.open_alerts() and patient_id not in self.desk.patients
                and patient_id not in self.census)

    def _evict_silent(self, wall_ms: int) -> None:
        """Forget patients whose readings stopped arriving longer ago than the eviction time
        (wall time), with nothing open (their last state row stays in the changelog). Runs
        on the stale-check timer."""
        seen = self.seen_wall
        silent = [p for p in self.monitor.patients
                  if wall_ms - seen.get(p, wall_ms) > self.evict_after_ms and self._evictable(p)]
        for patient_id in silent:
            self.monitor.discharge(patient_id)
            self.applied.pop(patient_id, None)
            seen.pop(patient_id, None)
        if silent:
            metrics.PATIENTS_EVICTED.labels("silent").inc(len(silent))
            metrics.PATIENTS_MONITORED.set(len(self.monitor.patients))

    def _restorable(self, latest: dict[bytes, tuple[int, bytes | None]]) -> dict[bytes, tuple[int, bytes | None]]:
        """The changelog rows a recovering worker restores: not patients whose readings
        stopped arriving longer ago than the eviction time (wall time) unless something is
        open for them, and at most ``max_patients``, the most recently seen first."""
        rows: list[tuple[int, bool, bytes]] = []
        for key, (_, value) in latest.items():
            if not key.startswith(STATE_KEY) or not value:
                continue
            try:
                row = orjson.loads(value)
                state = row.get("state") or {}
                busy = bool(row.get("oversight") or row.get("census") or (state.get("alert_state") or {}).get(
                    "clinical") or (state.get("alert_state") or {}).get("technical"))
                seen_ms = row.get("seen_ms")
                rows.append((int(seen_ms) if state and seen_ms else 2**62, busy, key))
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                rows.append((2**62, True, key))  # reported by the caller
        wall_ms = now_ms()
        keep = [r for r in rows if r[1] or wall_ms - r[0] <= self.evict_after_ms]
        keep.sort(key=lambda r: (not r[1], -r[0]))
        wanted = {key for _, _, key in keep[:self.max_patients]}
        dropped = len(rows) - len(wanted)
        if dropped:
            metrics.PATIENTS_EVICTED.labels("not_restored").inc(dropped)
        return {key: item for key, item in latest.items()
                if key in wanted or not key.startswith(STATE_KEY)
                and (key[len(ENGINE_KEY):] and STATE_KEY + key[len(ENGINE_KEY):] in wanted)}
