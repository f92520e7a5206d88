"""The Faust application: wires topics and services to the pure core, nothing more.

    vitals.raw --ingest (aiokafka)--> vitals (keyed by patient) --monitor (aiokafka)--> alerts (keyed by ward)
                   \\--> vitals.deadletter (original bytes + reason)      \\--> ward.state, patients changelog
    alerts.ack, patients.settings --verified, forwarded, keyed by patient, signed--> vitals
                   \\--> vitals.deadletter (unsigned, forged or not allowed: with the reason)

The two busy stages are plain aiokafka consumer groups run as services of the app
(``ingest_stage``, ``monitor_stage``): batches, not single events, cross into the core, and
the monitor writes each patient's state to its changelog before it commits the offsets
of the readings in it. Faust runs the services, the control forwarders, the timers and
the web pages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitalstream import faust_tuning, gate, metrics
from vitalstream.alerts import AlertPolicy
from vitalstream.governance import control as governance_control
from vitalstream.ingest import Rejection, dead_letter
from vitalstream.ingest_stage import IngestService
from vitalstream.monitor import Monitor
from vitalstream.monitor_stage import MonitorStage, Signer
from vitalstream.settings import Settings
from vitalstream.signing import Keyring

log = logging.getLogger("vitalstream.worker")

# A metadata request every few seconds tells whether the broker answers; Faust's own
# clients retry silently for a long time, so without it an outage looks like a quiet ward.
BROKER_PROBE_INTERVAL_S = 2.0
BROKER_PROBE_TIMEOUT_S = 4.0


class BrokerProbe:
    """Whether the broker answered the latest metadata request, and since when it has not."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: AIOKafkaClient | None = None
        # Up until a check says otherwise: the worker starts only once it has reached the
        # broker (it creates its topics first), and /health and the gauge must agree from
        # the start (the first check comes with the first timer tick).
        self.up = True
        self.down_since_s: float | None = None
        metrics.BROKER_UP.set(1)

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
            # Loaded in a child process: the worker never imports scikit-learn (130 MB).
            model = RiskModel.load_isolated(settings.model_path or None)
        except ModelFileError as exc:
            if settings.model_path:
                raise  # a model the operator named must load, or the worker must not start
            log.warning("risk model not available (%s): scoring NEWS2 only", exc)
    import dataclasses

    config = settings.policy_config()  # VITALSTREAM_POLICY, checked (PolicySettingsError)
    if settings.risk_alerts and model is not None:
        points = {("budget" if name.startswith("budget") else name): value
                  for name, value in model.operating_points.items()}
        if settings.risk_alerts not in points:
            raise ValueError(f"VITALSTREAM_RISK_ALERTS={settings.risk_alerts!r}: the model has "
                             f"operating points {sorted(points)}")
        config = dataclasses.replace(config, risk_thresholds={"medium": points[settings.risk_alerts]})
    return Monitor(AlertPolicy(config), engine=engine, model=model,
                   news2_window_s=settings.news2_window_s, risk_interval_s=settings.risk_interval_s,
                   bed_state_interval_s=settings.bed_state_interval_s)


class _App(faust.App):
    """Faust's app, starting vitalstream's stages (``vitalstream_stages``) as it starts."""

    async def on_start(self) -> None:
        await super().on_start()
        make = getattr(self, "vitalstream_stages", None)
        # on_start runs at every (re)start of the app: the stages are made once.
        if make is not None and not getattr(self, "_vitalstream_staged", False):
            self._vitalstream_staged = True
            for stage in make(self.beacon):
                await self.add_runtime_dependency(stage)


def create_app(settings: Settings | None = None, monitor: Monitor | None = None,
               keyring: Keyring | None = None) -> faust.App:
    """The worker's app; raises KeyringError (one line) without usable signing keys."""
    settings = settings or Settings()
    faust_tuning.apply()
    if not settings.kafka_bootstrap:
        raise ValueError("VITALSTREAM_KAFKA_BOOTSTRAP is not set")
    keyring = keyring or Keyring.for_process(settings, "worker")
    app = _App(
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
    shadow = governance_control.load_shadow(settings, monitor)  # ShadowConfigError: not started
    probe = BrokerProbe(settings)
    stage_signer = Signer(settings, keyring)
    acks_topic = app.topic(settings.topic_acks, key_serializer="raw", value_serializer="raw")
    patient_settings_topic = app.topic(settings.topic_patient_settings, key_serializer="raw",
                                       value_serializer="raw")
    oversight_topic = app.topic(settings.topic_oversight, key_serializer="raw", value_serializer="raw")
    census_topic = app.topic(settings.topic_census, key_serializer="raw", value_serializer="raw")

    # The two stages start with the app, not after Faust's own consumer group has settled
    # (where Faust starts extra services): each group join takes the broker's rebalance
    # timeout, and three in a row made a restarted worker 5 s slower.
    stages: dict[str, Any] = {}

    def make_stages(beacon: Any) -> list[Any]:
        stages["ingest"] = IngestService(settings, beacon=beacon)
        stages["monitor"] = MonitorStage(settings, monitor, keyring=keyring, beacon=beacon)
        stages["monitor"].governance.set_shadow(shadow)
        return [stages["ingest"], stages["monitor"]]

    app.vitalstream_stages = make_stages  # type: ignore[attr-defined]

    async def write(messages: list[tuple[str, bytes, bytes, None]]) -> None:
        """Send and wait for the broker (signed where the topic is: MonitorStage._send)."""
        stage = stages.get("monitor")
        if stage is None or stage.producer is None:  # before the stage started: Faust's producer
            for topic, key, value, _ in messages:
                headers = stage_signer.headers(topic, key, value)
                await app.topic(topic, key_serializer="raw", value_serializer="raw").send(
                    key=key, value=value, headers=headers)
        else:  # acknowledged by the broker before Faust may commit the control record
            await stage.send_all(messages)

    async def take_control(event: Any, source: str) -> tuple[str, dict[str, Any]] | None:
        """A station's or front door's control record, checked where it enters
        (``gate.check_entry``). A refused record is counted by reason and dead-lettered
        with it, and goes no further."""
        message, value = event.message, event.value or b""
        try:
            return gate.check_entry(keyring, source, message.topic, message.key, value, message.headers)
        except gate.Refused as refused:
            if source in ("ack", "settings"):
                (metrics.ACKS_REJECTED if source == "ack" else metrics.SETTINGS_REJECTED).inc()
            else:
                metrics.OVERSIGHT_REFUSED.labels(f"{source}_{refused.reason}").inc()
            metrics.CONTROL_REFUSED.labels(source, refused.reason).inc()
            log.warning("refused %s record: %s", source, refused.reason)
            where = f"{message.topic}/{message.partition}@{message.offset}"
            letter = dead_letter(value, Rejection(refused.reason, refused.detail), source, where,
                                 int(time.time() * 1000))
            await write([(settings.topic_deadletter, message.key or b"", letter, None)])
            return None

    async def forward_control(stream: faust.StreamT, source: str) -> None:
        """Each record of a control topic, checked by `take_control`, into vitals by patient
        as ``{source: record}``."""
        async for event in stream.events():
            taken = await take_control(event, source)
            if taken is not None:
                patient_id, record = taken
                await write([(settings.topic_vitals, patient_id.encode(), orjson.dumps({source: record}), None)])

    # Acknowledgements and settings arrive keyed by ward or station; they are re-keyed by
    # patient into the vitals topic, signed by this worker (the monitor takes a control
    # record from vitals only with a worker's signature), so the patient's worker sees them
    # in order with the readings (a settings change applies from the next reading on).
    @app.agent(acks_topic)
    async def forward_acks(stream: faust.StreamT) -> None:
        await forward_control(stream, "ack")

    @app.agent(patient_settings_topic)
    async def forward_settings(stream: faust.StreamT) -> None:
        await forward_control(stream, "settings")

    # Answers, snoozes, dispositions and care goals (signed by a station), and the census
    # (signed by a front door): checked and forwarded into vitals like acknowledgements.
    @app.agent(oversight_topic)
    async def forward_oversight(stream: faust.StreamT) -> None:
        await forward_control(stream, "oversight")

    @app.agent(census_topic)
    async def forward_census(stream: faust.StreamT) -> None:
        await forward_control(stream, "census")

    @app.timer(settings.oversight_interval_s)
    async def oversight_check() -> None:
        stage = stages.get("monitor")
        if stage is not None:
            await stage.check_oversight()

    # Kill-switch instructions and audit actions (governance/control.py): verified here,
    # then forwarded into vitals, where each partition's owner applies and audits them.
    async def forward(key: str, value: bytes) -> None:  # into vitals, signed by this worker
        await write([(settings.topic_vitals, key.encode(), value, None)])

    governance_control.wire(app, settings, stages, forward)

    @app.timer(10.0)
    async def stale_check() -> None:
        stage = stages.get("monitor")
        if stage is not None:
            await stage.check_stale()

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
        stage = stages.get("monitor")
        modes = stage.governance.killswitch.status() if stage is not None else None
        return web.json({**probe.status(), "mode": modes})

    def is_ready() -> bool:
        stage = stages.get("monitor")
        return bool(app.started and not app.rebalancing and probe.up and stage is not None
                    and stage.ready() and app.consumer.assignment())

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        ready = is_ready()
        return web.json({"ready": ready}, status=200 if ready else 503)

    app.vitalstream_is_ready = is_ready  # type: ignore[attr-defined]
    app.vitalstream_stage_consumers = lambda: [  # type: ignore[attr-defined]
        stage.consumer for stage in stages.values() if stage.consumer is not None]

    app.vitalstream_monitor = monitor  # type: ignore[attr-defined]
    return app
