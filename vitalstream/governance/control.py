"""The worker's governance forwarders: kill-switch instructions (``control.killswitch``)
and audit actions from stations and oversight (``audit.intake``).

Each message is verified where it enters (signature of an allowed service, then its
shape); a refused one is counted by reason and logged without identifiers. An accepted
kill-switch instruction goes into **every** partition of ``vitals``, so each worker
applies it in order with its patients' readings; an audit action goes into ``vitals``
by its patient's (or ward's) key, so the owner of that partition writes it to the audit
trail, the one writer of that chain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust
import orjson

from vitalstream.governance import audit
from vitalstream.governance import metrics as gov_metrics
from vitalstream.governance.killswitch import InstructionError
from vitalstream.governance.worker import verified_body, verified_instruction
from vitalstream.signing import Keyring, SignatureError

log = logging.getLogger("vitalstream.governance")

# Reasons a refusal is counted under (a closed set: metric labels).
SIGNATURE_REASONS = ("unsigned", "unknown_key", "wrong_service", "bad_signature")
INTAKE_SERVICES = frozenset({"station", "admin", "worker"})
DEMOGRAPHICS_SERVICES = frozenset({"gateway", "admin"})  # the admission feed comes through a gateway


def reason_label(reason: str) -> str:
    return reason if reason in (*SIGNATURE_REASONS, "not_json", "too_large") else "malformed"


class _Message:
    """A Faust event's record as the verifiers read it (headers as a list of pairs)."""

    def __init__(self, event: Any) -> None:
        message = event.message
        self.key, self.value = message.key, message.value
        headers = message.headers or []
        self.headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def check_intake(keyring: Keyring, topic: str, message: Any) -> tuple[str, dict[str, Any]]:
    """An ``audit.intake`` record as (key, audit record); InstructionError with the reason."""
    body = verified_body(keyring, topic, message, INTAKE_SERVICES)
    try:
        record = audit.action_from_message(body)
    except audit.AuditRecordError as exc:
        raise InstructionError(str(exc)) from None
    return str(record.get("patient_id") or record.get("ward") or record["actor"]["user_id"]), body


def load_shadow(settings: Any, monitor: Any) -> Any:
    """The shadow configuration, checked at start (ShadowConfigError: one line, not started)."""
    from vitalstream.governance.shadow import load_shadow as load

    return load(settings.shadow, monitor.policy.config, monitor.model)


def wire(app: faust.App, settings: Any, stages: dict[str, Any],
         forward: Callable[[str, bytes], Any]) -> None:
    """Add the two forwarders to the worker's Faust app."""
    keyring = Keyring.from_settings(settings)  # bad keys: the worker must not start
    control_topic = app.topic(settings.topic_control, key_serializer="raw", value_serializer="raw")
    demographics_topic = app.topic(settings.topic_demographics, key_serializer="raw", value_serializer="raw")
    intake_topic = app.topic(settings.topic_audit_intake, key_serializer="raw", value_serializer="raw")

    async def broadcast(value: bytes) -> None:
        stage = stages.get("monitor")
        while stage is None or stage.producer is None:
            await asyncio.sleep(0.1)
            stage = stages.get("monitor")
        partitions = len(await stage.producer.partitions_for(settings.topic_vitals))
        await stage.send_all([(settings.topic_vitals, b"", value, p) for p in range(partitions)])

    @app.timer(settings.drift_census_interval_s)
    async def quality_census() -> None:  # also while no batch comes (the census reads, never awaits)
        stage = stages.get("monitor")
        if stage is not None:
            stage.governance.quality.census(stage.monitor)

    @app.agent(control_topic)
    async def forward_kill_switch(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                instruction = verified_instruction(keyring, settings.topic_control, _Message(event))
            except InstructionError as exc:
                gov_metrics.CONTROL_REFUSED.labels(reason_label(str(exc))).inc()
                log.warning("kill switch instruction refused: %s", exc)
                continue
            await broadcast(orjson.dumps({"kill_switch": instruction.to_dict()}))

    @app.agent(demographics_topic)
    async def forward_demographics(stream: faust.StreamT) -> None:
        from vitalstream.governance.worker import DemographicsError, check_demographics

        async for event in stream.events():
            message = _Message(event)
            try:
                keyring.verify(settings.topic_demographics, message.key, message.value or b"", message.headers,
                               DEMOGRAPHICS_SERVICES)
                if len(message.value or b"") > audit.MAX_ACTION_BYTES:
                    raise DemographicsError("too_large")
                who = check_demographics(orjson.loads(message.value))
            except (orjson.JSONDecodeError, DemographicsError, SignatureError) as exc:
                gov_metrics.DEMOGRAPHICS_REFUSED.inc()
                log.warning("demographics refused: %s", exc if isinstance(exc, (DemographicsError, SignatureError))
                            else type(exc).__name__)
                continue
            await forward(who["patient_id"], orjson.dumps({"demographics": who}))

    @app.agent(intake_topic)
    async def forward_audit_actions(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                key, body = check_intake(keyring, settings.topic_audit_intake, _Message(event))
            except InstructionError as exc:
                gov_metrics.AUDIT_INTAKE_REFUSED.labels(reason_label(str(exc))).inc()
                log.warning("audit action refused: %s", exc)
                continue
            await forward(key, orjson.dumps(body))
