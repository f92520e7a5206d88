"""The Faust application: wires topics and services to the pure core, nothing more.

    vitals.raw --ingest (aiokafka)--> vitals (keyed by patient) --monitor (aiokafka)--> alerts (keyed by ward)
                   \\--> vitals.deadletter (original bytes + reason)      \\--> ward.state, patients changelog
    alerts.ack, patients.settings --forwarded, keyed by patient--> vitals (ordered with the samples)

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

from vitalstream import faust_tuning, metrics
from vitalstream.alerts import AlertPolicy
from vitalstream.ingest_stage import IngestService
from vitalstream.monitor import Monitor
from vitalstream.monitor_stage import MonitorStage
from vitalstream.settings import Settings

log = logging.getLogger("vitalstream.worker")

# A metadata request every few seconds tells whether the broker answers; Faust's own
# clients retry silently for a long time, so without it an outage looks like a quiet ward.
BROKER_PROBE_INTERVAL_S = 2.0
BROKER_PROBE_TIMEOUT_S = 4.0
# Acknowledgements and settings are small records from stations: anything bigger is refused
# before it is parsed (forwarded into vitals it would exceed the producer's request size).
MAX_CONTROL_BYTES = 65_536
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
    policy = AlertPolicy()
    if settings.risk_alerts and model is not None:
        from vitalstream.alerts.policy import PolicyConfig

        points = {("budget" if name.startswith("budget") else name): value
                  for name, value in model.operating_points.items()}
        if settings.risk_alerts not in points:
            raise ValueError(f"VITALSTREAM_RISK_ALERTS={settings.risk_alerts!r}: the model has "
                             f"operating points {sorted(points)}")
        policy = AlertPolicy(PolicyConfig(risk_thresholds={"medium": points[settings.risk_alerts]}))
    return Monitor(policy, engine=engine, model=model,
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


def create_app(settings: Settings | None = None, monitor: Monitor | None = None) -> faust.App:
    settings = settings or Settings()
    faust_tuning.apply()
    if not settings.kafka_bootstrap:
        raise ValueError("VITALSTREAM_KAFKA_BOOTSTRAP is not set")
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
    probe = BrokerProbe(settings)
    vitals_topic = app.topic(settings.topic_vitals, key_serializer="raw", value_serializer="raw")
    acks_topic = app.topic(settings.topic_acks, key_serializer="raw", value_serializer="raw")
    patient_settings_topic = app.topic(settings.topic_patient_settings, key_serializer="raw",
                                       value_serializer="raw")

    # The two stages start with the app, not after Faust's own consumer group has settled
    # (where Faust starts extra services): each group join takes the broker's rebalance
    # timeout, and three in a row made a restarted worker 5 s slower.
    stages: dict[str, Any] = {}

    def make_stages(beacon: Any) -> list[Any]:
        stages["ingest"] = IngestService(settings, beacon=beacon)
        stages["monitor"] = MonitorStage(settings, monitor, beacon=beacon)
        return [stages["ingest"], stages["monitor"]]

    app.vitalstream_stages = make_stages  # type: ignore[attr-defined]

    async def forward(patient_id: str, value: bytes) -> None:
        stage = stages.get("monitor")
        if stage is None or stage.producer is None:  # before the stage started: Faust's producer
            await vitals_topic.send(key=patient_id.encode(), value=value)
        else:  # acknowledged by the broker before Faust may commit the control record
            await stage.send_all([(settings.topic_vitals, patient_id.encode(), value, None)])

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
                metrics.ACKS_REJECTED.inc()
                log.warning("ignored malformed acknowledgement: %s", type(exc).__name__)
                continue
            await forward(patient_id, orjson.dumps({"ack": ack}))

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
            await forward(patient_id, orjson.dumps({"settings": control}))

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
        return web.json(probe.status())

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        stage = stages.get("monitor")
        ready = (app.started and not app.rebalancing and probe.up and stage is not None and stage.ready()
                 and bool(app.consumer.assignment()))
        return web.json({"ready": bool(ready)}, status=200 if ready else 503)

    app.vitalstream_monitor = monitor  # type: ignore[attr-defined]
    return app
