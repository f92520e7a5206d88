"""The Faust application: wires topics and tables to the pure core, nothing more.

    vitals.raw --ingest (aiokafka)--> vitals (keyed by patient) --monitor--> alerts (keyed by ward)
                   \\--> vitals.deadletter (original bytes + reason)
    alerts.ack --forwarded, keyed by patient--> vitals (so it is ordered with the samples)

Per-patient state lives in the monitor and is written to a changelog-backed table (at
once when alerts or settings change, else once per save interval), so a restarted worker
recovers it. Batches, not single events, cross into the
core: ``take_events`` hands the monitor up to ``batch_size`` events at a time, and the
ingest stage reads up to ``ingest_batch_size`` raw messages per ``getmany``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import faust
import mode
import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitalstream import faust_tuning, metrics
from vitalstream.alerts import Alert, AlertPolicy
from vitalstream.alerts.settings import SettingsError
from vitalstream.ingest_stage import IngestService, partition_for
from vitalstream.monitor import Monitor
from vitalstream.samples import SampleError, sample_from_dict, sample_from_row
from vitalstream.settings import Settings

log = logging.getLogger("vitalstream.worker")

# A metadata request every few seconds tells whether the broker answers; Faust's own
# clients retry silently for a long time, so without it an outage looks like a quiet ward.
BROKER_PROBE_INTERVAL_S = 2.0
BROKER_PROBE_TIMEOUT_S = 4.0
# Acknowledgements and settings are small records from stations: anything bigger is refused
# before it is parsed (forwarded into vitals it would exceed the producer's request size).
MAX_CONTROL_BYTES = 65_536
# Device times further ahead of the wall clock than this do not move the stream clock.
CLOCK_FUTURE_TOLERANCE_S = 3600.0


def now_ms() -> int:
    return int(time.time() * 1000)


class StreamClock:
    """Device-time "now" for stale-data checks: the newest device time seen, advanced by
    the wall time since it was seen. Live, this is the wall clock; in a fast replay it
    follows the recording, and when data stop it keeps running, so silence shows."""

    def __init__(self) -> None:
        self.device_ms = 0
        self.seen_at_s = time.monotonic()

    def observe(self, device_ms: int) -> None:
        if device_ms > self.device_ms:
            self.device_ms = device_ms
            self.seen_at_s = time.monotonic()

    def now_ms(self) -> int:
        return self.device_ms + int((time.monotonic() - self.seen_at_s) * 1000)


class BrokerProbe:
    """Whether the broker answered the latest metadata request, and since when it has not."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: AIOKafkaClient | None = None
        self.up = True
        self.down_since_s: float | None = None

    async def check(self) -> bool:
        try:
            if self.client is None:
                self.client = AIOKafkaClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                             request_timeout_ms=int(BROKER_PROBE_TIMEOUT_S * 1000),
                                             **self.settings.kafka_client_kwargs())
                await asyncio.wait_for(self.client.bootstrap(), BROKER_PROBE_TIMEOUT_S)
            await asyncio.wait_for(self.client.fetch_all_metadata(), BROKER_PROBE_TIMEOUT_S)
            up = True
        except (TimeoutError, KafkaError, OSError) as exc:
            up = False
            await self.close()
            if self.up:
                log.warning("broker unreachable: %s", type(exc).__name__)
        if up and not self.up:
            log.warning("broker reachable again after %.0f s", time.monotonic() - (self.down_since_s or 0))
        self.down_since_s = None if up else (self.down_since_s or time.monotonic())
        self.up = up
        metrics.BROKER_UP.set(1 if up else 0)
        return up

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), BROKER_PROBE_TIMEOUT_S)
            except (TimeoutError, KafkaError, OSError):
                pass

    def status(self) -> dict[str, Any]:
        down_s = time.monotonic() - self.down_since_s if self.down_since_s is not None else 0.0
        return {"status": "ok" if self.up else "degraded", "broker_up": self.up,
                "broker_down_s": round(down_s, 1)}


def build_monitor(settings: Settings) -> Monitor:
    """The monitor with the feature engine and the risk model when they are available."""
    engine = model = None
    try:
        from vitalstream.features import FeatureEngine

        engine = FeatureEngine()
    except ImportError:
        log.warning("feature engine not available: scoring NEWS2 only")
    if engine is not None:
        from vitalstream.scoring.model import ModelFileError, RiskModel

        try:
            model = RiskModel.load(settings.model_path or None)
        except ModelFileError as exc:
            if settings.model_path:
                raise  # a model the operator named must load, or the worker must not start
            log.warning("risk model not available (%s): scoring NEWS2 only", exc)
    return Monitor(AlertPolicy(), engine=engine, model=model,
                   news2_window_s=settings.news2_window_s)


def create_app(settings: Settings | None = None, monitor: Monitor | None = None) -> faust.App:
    settings = settings or Settings()
    faust_tuning.apply()
    if not settings.kafka_bootstrap:
        raise ValueError("VITALSTREAM_KAFKA_BOOTSTRAP is not set")
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hostport}" for hostport in settings.kafka_bootstrap.split(",")],
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        topic_partitions=settings.topic_partitions,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        web_in_thread=False,
        datadir=settings.state_dir,
        producer_linger_ms=1,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_s,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 4),
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        key_serializer="raw",
        value_serializer="raw",
    )
    monitor = monitor or build_monitor(settings)
    # One clock per partition of vitals: in a fast replay partitions run ahead of each
    # other, and a patient must not look silent because another partition is further on.
    clocks: dict[int, StreamClock] = defaultdict(StreamClock)
    probe = BrokerProbe(settings)
    vitals_topic = app.topic(settings.topic_vitals, key_serializer="raw", value_serializer="raw")
    acks_topic = app.topic(settings.topic_acks, key_serializer="raw", value_serializer="raw")
    patient_settings_topic = app.topic(settings.topic_patient_settings, key_serializer="raw",
                                       value_serializer="raw")
    # use_partitioner: the changelog partition follows the key exactly as vitals does,
    # so a patient's row may be written from a batch or a timer, not only per event.
    patients_table = app.Table("patients", key_type=str, value_type=bytes,
                               partitions=settings.topic_partitions, use_partitioner=True)

    # Alerts and bed states go out through a plain aiokafka producer: Faust's producer
    # buffer sends one message per await, and a fast replay publishes a bed state per
    # patient-minute (it reached 400,000 waiting messages on the ward scenario).
    outputs: dict[str, AIOKafkaProducer] = {}

    @app.service
    class Outputs(mode.Service):
        async def on_start(self) -> None:
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2,
                                        acks="all", max_batch_size=1 << 20,
                                        **settings.kafka_client_kwargs())
            await producer.start()
            outputs["producer"] = producer

        async def on_stop(self) -> None:
            producer = outputs.pop("producer", None)
            if producer is not None:
                await producer.stop()  # flushes what is pending

    async def publish(topic: str, key: bytes, value: bytes) -> Any:
        producer = outputs.get("producer")
        if producer is None:  # before the service started: Faust's own producer
            app.topic(topic, key_serializer="raw", value_serializer="raw").send_soon(key=key, value=value)
            return None
        return await producer.send(topic, value, key=key)

    async def publish_alerts(alerts: list[Alert]) -> None:
        for (event, kind, priority), count in monitor.policy.drain_events().items():
            metrics.ALERT_EVENTS.labels(event, kind, priority).inc(count)
        if not alerts:
            return
        published_s = time.time()
        futures = []
        for alert in alerts:
            futures.append(await publish(settings.topic_alerts, alert.ward.encode(),
                                         orjson.dumps(alert.to_dict())))
            metrics.ALERTS_OUT.labels(alert.priority, alert.kind, alert.status).inc()
        # An alert is on the broker before the readings that raised it can be committed.
        await asyncio.gather(*(f for f in futures if f is not None))
        metrics.observe_many(metrics.ALERT_LATENCY, np.array(
            [published_s - alert.device_time_ms / 1000.0 for alert in alerts]))

    save_interval_ms = int(settings.state_save_interval_s * 1000)

    def save(patient_ids: Any, force: Any = ()) -> None:
        """Write patients' state to the changelog-backed table: at once when their alert
        state or settings changed (``force``), else at most once per save interval of device
        time. A changelog message per patient per batch would cost more than the scoring."""
        for patient_id in patient_ids:
            record = monitor.patients.get(patient_id)
            if record is None:
                continue
            # A value charted at a round (temperature, BP, ACVPU, oxygen) comes once in hours:
            # saved at once, so a crash cannot leave the score without it until the next round.
            if (patient_id in force or record.unsaved_round
                    or record.newest_ms - record.saved_ms >= save_interval_ms):
                patients_table[patient_id] = orjson.dumps(monitor.export(patient_id))
                record.saved_ms = record.newest_ms
                record.unsaved_round = False

    def recover(patient_ids: Any) -> None:
        for patient_id in patient_ids:
            if patient_id not in monitor.patients:
                stored = patients_table.get(patient_id)
                if stored:
                    monitor.restore(orjson.loads(stored))

    # Ingest is stateless and the busiest stream: a plain aiokafka loop (see ingest_stage).
    @app.service
    class Ingest(IngestService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(settings, **kwargs)

    counted: dict[str, int] = {}
    counted_artefacts: dict[str, int] = {}
    counted_bad_time: dict[str, int] = {}

    @app.agent(vitals_topic)
    async def monitor_patients(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout_s):
            samples, technical, alerts = [], [], []
            controlled: set[str] = set()
            horizon_ms = now_ms() + int(CLOCK_FUTURE_TOLERANCE_S * 1000)
            for event in events:
                try:
                    record = orjson.loads(event.value)
                    first = len(samples)
                    samples.extend(sample_from_row(row) for row in record.get("rows", ()))
                    samples.extend(sample_from_dict(s) for s in record.get("samples", ()))
                    # A device clock years ahead must not make every bed look silent.
                    newest_ms = max((s.device_time_ms for s in samples[first:]
                                     if s.device_time_ms <= horizon_ms), default=0)
                    if newest_ms:
                        clocks[event.message.partition].observe(newest_ms)
                except (orjson.JSONDecodeError, SampleError, TypeError, AttributeError) as exc:
                    # vitals is internal: a record here that is not ours is a bug or an
                    # intruder; count it and go on rather than stop every patient's monitor.
                    metrics.VITALS_REJECTED.inc()
                    log.error("unreadable record on %s: %s", settings.topic_vitals, type(exc).__name__)
                    continue
                technical.extend(record.get("technical", ()))
                control = record.get("settings")
                if control:
                    recover([control["patient_id"]])
                    controlled.add(str(control["patient_id"]))
                    try:
                        monitor.configure(control["patient_id"], control["record"],
                                          control.get("ward", ""), control.get("bed", ""))
                    except (SettingsError, KeyError, TypeError, ValueError) as exc:
                        metrics.SETTINGS_REJECTED.inc()
                        log.warning("per-patient settings refused: %s", exc)
                ack = record.get("ack")
                if ack:
                    recover([ack["patient_id"]])
                    controlled.add(str(ack["patient_id"]))
                    alerts.extend(monitor.acknowledge(ack["patient_id"], ack["alert_id"],
                                                      str(ack.get("by", "")), int(ack.get("at_ms", now_ms()))))
            recover({s.patient_id for s in samples} | {str(t.get("patient_id")) for t in technical})
            result = monitor.process(samples)
            alerts.extend(result.alerts)
            alerts.extend(monitor.technical(technical))
            await publish_alerts(alerts)
            for state in monitor.bed_states(result.assessments, int(settings.bed_state_interval_s * 1000)):
                await publish(settings.topic_bed_state, state["ward"].encode(), orjson.dumps(state))
            changed = controlled | {a.patient_id for a in alerts}
            save(set(result.touched) | {str(t.get("patient_id")) for t in technical} | changed, changed)
            if samples:
                done_s = time.time()
                device_s = np.fromiter((s.device_time_ms for s in samples), np.float64, len(samples)) / 1000.0
                ingest_s = np.fromiter((s.ingest_time_ms for s in samples), np.float64, len(samples)) / 1000.0
                metrics.observe_many(metrics.SAMPLE_LATENCY, done_s - device_s)
                metrics.observe_many(metrics.PROCESSING_LATENCY, done_s - ingest_s)
                metrics.SAMPLES_PROCESSED.inc(len(samples))
            metrics.PATIENTS_MONITORED.set(len(monitor.patients))
            if monitor.engine is not None:
                metrics.count_totals(metrics.LATE_SAMPLES_DROPPED, {"": monitor.engine.late_dropped}, counted)
                metrics.count_totals(metrics.ARTEFACTS, monitor.engine.artefact_counts, counted_artefacts)
            metrics.count_totals(metrics.BAD_TIME_DROPPED, {"": monitor.dropped_bad_time}, counted_bad_time)

    # Acknowledgements and settings arrive keyed by ward or station; they are re-keyed by
    # patient into the vitals topic, so the patient's worker sees them in order with the
    # readings (a settings change applies from the next reading on).
    @app.agent(acks_topic)
    async def forward_acks(stream: faust.StreamT) -> None:
        async for value in stream:
            try:
                if len(value or b"") > MAX_CONTROL_BYTES:
                    raise ValueError(f"{len(value)} bytes > {MAX_CONTROL_BYTES}")
                ack = orjson.loads(value)
                patient_id, alert_id = ack["patient_id"], ack["alert_id"]
                # Checked here, where a bad record is dropped, not in the monitor it would stop.
                if not (isinstance(patient_id, str) and isinstance(alert_id, str)
                        and isinstance(ack.get("by", ""), str)
                        and isinstance(ack.get("at_ms", 0), int) and not isinstance(ack.get("at_ms"), bool)):
                    raise TypeError("patient_id, alert_id and by must be strings, at_ms an integer")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("ignored malformed acknowledgement: %s", type(exc).__name__)
                continue
            vitals_topic.send_soon(key=patient_id.encode(), value=orjson.dumps({"ack": ack}))

    @app.agent(patient_settings_topic)
    async def forward_settings(stream: faust.StreamT) -> None:
        async for value in stream:
            try:
                if len(value or b"") > MAX_CONTROL_BYTES:
                    raise ValueError(f"{len(value)} bytes > {MAX_CONTROL_BYTES}")
                control = orjson.loads(value)
                patient_id = control["patient_id"]
                if not isinstance(patient_id, str) or not isinstance(control["record"], dict):
                    raise TypeError("patient_id must be a string and record an object")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                metrics.SETTINGS_REJECTED.inc()
                log.warning("ignored malformed settings message: %s", type(exc).__name__)
                continue
            vitals_topic.send_soon(key=patient_id.encode(), value=orjson.dumps({"settings": control}))

    @app.timer(10.0)
    async def stale_check() -> None:
        if not clocks:
            return
        recover(list(patients_table.keys()))
        now_by_partition = {partition: clock.now_ms() for partition, clock in clocks.items()}
        fallback_ms = max(now_by_partition.values())
        alerts = monitor.check_stale(lambda patient_id: now_by_partition.get(
            partition_for(patient_id, settings.topic_partitions), fallback_ms))
        await publish_alerts(alerts)
        save({a.patient_id for a in alerts}, {a.patient_id for a in alerts})
        metrics.STALE_PATIENTS.set(monitor.stale_patients())

    # A patient who moved to another worker and back must not be scored from the memory of
    # before: forget the patients of partitions this worker no longer owns; recover() reads
    # them from the table (kept current by their other owner) when they come back.
    @app.on_partitions_assigned.connect
    async def forget_moved_patients(sender: Any, assigned: Any, **kwargs: Any) -> None:
        owned = {tp.partition for tp in assigned if tp.topic == settings.topic_vitals}
        for patient_id in [p for p in monitor.patients
                           if partition_for(p, settings.topic_partitions) not in owned]:
            monitor.discharge(patient_id)

    @app.timer(BROKER_PROBE_INTERVAL_S)
    async def probe_broker() -> None:
        await probe.check()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp wants the charset apart from the content type
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";  charset")[0]
                         .replace("; charset=utf-8", ""))

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        # 200 even when degraded: restarting the worker does not bring a broker back
        # (liveness); /ready turns 503 so traffic and alarms go elsewhere.
        return web.json(probe.status())

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        ready = (app.started and not app.rebalancing and probe.up
                 and app.tables.recovery.completed.is_set() and bool(app.consumer.assignment()))
        return web.json({"ready": bool(ready)}, status=200 if ready else 503)

    app.vitalstream_monitor = monitor  # type: ignore[attr-defined]
    return app
