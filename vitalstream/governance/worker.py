"""The monitor stage's governance duties, kept out of the stage: the audit records of
its decisions and of the human actions it applies, and the kill switch.

The stage calls ``take`` for each vitals record's governance parts, ``on_ack`` and
``on_settings`` when it applies one, ``stamp`` on its alerts before they go out, and
``writes`` for the audit records to send with them (acknowledged before the batch's
state rows and before its offsets are committed: the alerts' at-least-once order).
``resume`` reads the tail of the audit partitions the stage gains, so the chain goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError

from vitalstream import metrics
from vitalstream.alerts import Alert
from vitalstream.governance import audit
from vitalstream.governance import metrics as gov_metrics
from vitalstream.governance.killswitch import InstructionError, KillSwitch, parse_instruction
from vitalstream.governance.quality import LiveQuality
from vitalstream.ingest_stage import partition_for_key

log = logging.getLogger("vitalstream.governance")

Write = tuple[str, bytes, bytes, "int | None"]
TAIL_TIMEOUT_S = 30.0


class DemographicsError(ValueError):
    """A demographics message that is refused; the message is the reason."""


def check_demographics(body: Any) -> dict[str, Any]:
    """``{patient_id, age_years, sex, source, at_ms}`` checked; DemographicsError otherwise."""
    if not isinstance(body, Mapping):
        raise DemographicsError("expected a JSON object")
    patient_id, age, sex = body.get("patient_id"), body.get("age_years"), body.get("sex")
    at_ms, source = body.get("at_ms", 0), body.get("source", "")
    if not isinstance(patient_id, str) or not patient_id:
        raise DemographicsError("patient_id must be a string")
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age < 130):
        raise DemographicsError("age_years must be a number of years (0-129) or null")
    if sex not in (None, "female", "male"):
        raise DemographicsError("sex must be female, male or null")
    if isinstance(at_ms, bool) or not isinstance(at_ms, int) or not isinstance(source, str):
        raise DemographicsError("at_ms must be an integer and source a string")
    return {"patient_id": patient_id, "age_years": None if age is None else float(age), "sex": sex,
            "source": source[:60], "at_ms": at_ms, "ward": str(body.get("ward", ""))[:40],
            "bed": str(body.get("bed", ""))[:40]}


class WorkerGovernance:
    KEYS = frozenset({"kill_switch", "audit_action", "oversight", "demographics"})

    def __init__(self, settings: Any, monitor: Any) -> None:
        self.settings = settings
        self.monitor = monitor
        self.topic = settings.topic_audit
        self.partitions = settings.topic_partitions
        self.chain = audit.AuditChain(self.partitions, tail=settings.audit_tail_records)
        self.killswitch = KillSwitch()
        self.policy_version = audit.policy_version(monitor.policy.config)
        self.pending: list[tuple[int, dict[str, Any]]] = []
        self.quality = LiveQuality(settings, settings.model_path or None)
        self.reader: Any = None
        self.shadow: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        from vitalstream.kafka import FETCH_MAX_WAIT_MS, consumer

        self.reader = consumer(self.settings, from_beginning=True, enable_auto_commit=False,
                               max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        await self.reader.start()
        await self.load_killswitch()

    async def stop(self) -> None:
        if self.reader is not None:
            await self.reader.stop()

    async def load_killswitch(self) -> None:
        """The instructions so far, from the control topic (a restarted worker keeps the mode)."""
        from vitalstream.signing import Keyring

        try:
            keyring = Keyring.from_settings(self.settings)
            records = await audit.read_raw(self.settings, self.settings.topic_control, timeout_s=10.0)
        except Exception as exc:  # no control topic yet: the mode is normal
            log.warning("kill switch: instructions not read at start (%s)", type(exc).__name__)
            return
        for message in records:
            try:
                self.apply_instruction(verified_instruction(keyring, self.settings.topic_control, message))
            except InstructionError:
                continue  # refused and counted by the forwarder when it arrived

    async def resume(self, partitions: Iterable[int]) -> None:
        """Read the last ``audit_tail_records`` records of each audit partition gained."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        for p in range(self.partitions):
            if p not in partitions:
                self.chain.forget(p)
        if not tps:
            return
        reader = self.reader
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, 0)
        deadline = time.monotonic() + TAIL_TIMEOUT_S
        while any(reader.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise KafkaTimeoutError("no fetch answer from the audit partitions")
            await reader.getmany(*tps, timeout_ms=300)
        ends = {tp: int(reader.highwater(tp) or 0) for tp in tps}
        tails: dict[int, list[dict[str, Any]]] = {tp.partition: [] for tp in tps}
        for tp, end in ends.items():
            reader.seek(tp, max(0, end - self.chain.tail))
        while True:
            pending = [tp for tp in tps if await reader.position(tp) < ends[tp]]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise KafkaTimeoutError("reading the audit tail did not finish")
            for tp, messages in (await reader.getmany(*pending, timeout_ms=300)).items():
                for message in messages:
                    if message.offset < ends[tp]:
                        tails[tp.partition].append(orjson.loads(message.value))
        for partition, tail in tails.items():
            self.chain.resume(partition, tail)

    # -- what the stage hands over ----------------------------------------------------
    def _partition(self, key: str) -> int:
        return partition_for_key(key.encode(), self.partitions)

    def take(self, body: Mapping[str, Any], partition: int) -> None:
        """The governance parts of one vitals record: a kill-switch instruction (applied
        on every partition, audited on its scope's) or a forwarded audit action."""
        if "kill_switch" in body:
            try:
                instruction = parse_instruction(body)
            except InstructionError as exc:  # checked by the forwarder: not ours, or a bug
                metrics.VITALS_REJECTED.inc()
                log.error("kill switch instruction refused in vitals: %s", exc)
                return
            self.apply_instruction(instruction)
            # (Whether it changed the mode is not recorded: a worker restarted after applying
            # it from the control topic would record the same instruction under another id.)
            if partition == self._partition(instruction.scope):
                self.pending.append((partition, audit.action_record(
                    "kill_switch", instruction.at_ms, instruction.actor,
                    ward=None if instruction.scope == "*" else instruction.scope,
                    detail={"mode": instruction.mode, "scope": instruction.scope,
                            "reason": instruction.reason},
                    record_type="config")))
        demographics = body.get("demographics")
        if demographics is not None:
            self.on_demographics(demographics, partition)
        oversight = body.get("oversight")
        if isinstance(oversight, Mapping) and isinstance(oversight.get("patient_id"), str):
            self.on_oversight(oversight, partition)
        if "audit_action" in body:
            try:
                record = audit.action_from_message(body)
            except audit.AuditRecordError as exc:
                metrics.VITALS_REJECTED.inc()
                log.error("audit action refused in vitals: %s", exc)
                return
            self.pending.append((partition, record))

    def apply_instruction(self, instruction: Any) -> bool:
        changed = self.killswitch.apply(instruction)
        if changed:
            self.monitor.model_off = self.killswitch.model_off()
            log.warning("kill switch: %s for %s by %s", instruction.mode, instruction.scope,
                        instruction.actor.get("user_id"))
            for ward_mode in ("normal", "news2_only"):
                gov_metrics.MODE.labels(ward_mode).set(0)
            gov_metrics.MODE.labels(self.killswitch.mode_for("\x00")).set(1)
        return changed

    def on_demographics(self, body: Any, partition: int) -> None:
        """Age and sex from the admission system: the model's context inputs and the
        quality metrics' subgroups; audited as a configuration record."""
        from vitalstream.samples import Sample

        try:
            who = check_demographics(body)
        except DemographicsError as exc:  # checked by the forwarder: not ours, or a bug
            metrics.VITALS_REJECTED.inc()
            log.error("demographics refused in vitals: %s", exc)
            return
        patient_id = who["patient_id"]
        record = self.monitor.patients.get(patient_id) or self.monitor.record_for(Sample(
            patient_id=patient_id, ward=who["ward"], bed=who["bed"], parameter="spo2_scale", value=1,
            unit="scale", device_time_ms=who["at_ms"], source="demographics", ingest_time_ms=0))
        record.age_years = who["age_years"]
        record.sex_male = None if who["sex"] is None else who["sex"] == "male"
        self.pending.append((partition, audit.action_record(
            "demographics", who["at_ms"], None, patient_id=patient_id, ward=who["ward"] or None,
            detail={"age_years": who["age_years"], "sex": who["sex"], "source": who["source"]},
            record_type="config")))

    def on_oversight(self, record: Mapping[str, Any], partition: int) -> None:
        """An oversight control message (answer, snooze, disposition, goal) as it reaches
        the patient's worker: audited, and an answer counted by its reason code."""
        kind = str(record.get("type", ""))[:40]
        actor = record.get("actor") if isinstance(record.get("actor"), Mapping) else None
        at_ms = record.get("at_ms", 0)
        if kind == "answer":
            self.quality.on_answer(record.get("reason"))
        self.pending.append((partition, audit.action_record(
            kind or "oversight", at_ms if isinstance(at_ms, int) and not isinstance(at_ms, bool) else 0,
            dict(actor) if actor else None, patient_id=record["patient_id"],
            ward=record.get("ward") if isinstance(record.get("ward"), str) else None,
            alert_id=record.get("alert_id") if isinstance(record.get("alert_id"), str) else None,
            detail={k: v for k, v in record.items() if k not in ("actor", "patient_id")})))

    def observe(self, samples: list[Any]) -> None:
        """A settled batch (the stage's metrics step): quality counts, and the census when due."""
        self.quality.observe(samples)
        self.quality.census(self.monitor)

    def on_ack(self, ack: Mapping[str, Any], partition: int, outcome: list[Alert]) -> None:
        actor = ack.get("actor") if isinstance(ack.get("actor"), Mapping) else None
        actor = actor or {"user_id": str(ack.get("by", "")), "role": "", "name": str(ack.get("by", ""))}
        answer = ack.get("answer") if isinstance(ack.get("answer"), Mapping) else None
        detail: dict[str, Any] = {"by": str(ack.get("by", "")), "applied": bool(outcome)}
        if answer is not None:
            detail["answer"] = dict(answer)
            self.quality.on_answer(answer.get("code"))
        self.pending.append((partition, audit.action_record(
            "answer" if answer is not None else "acknowledge", int(ack.get("at_ms", 0) or 0), actor,
            patient_id=str(ack["patient_id"]), ward=ack.get("ward") or None,
            alert_id=str(ack["alert_id"]), detail=detail)))

    def on_settings(self, control: Mapping[str, Any], partition: int, refused: str | None) -> None:
        record = control.get("record") or {}
        by = str(record.get("set_by", ""))
        actor = control.get("actor") if isinstance(control.get("actor"), Mapping) else \
            {"user_id": by, "role": "", "name": by}
        at_ms = record.get("set_at_ms", 0)
        self.pending.append((partition, audit.action_record(
            "settings", at_ms if isinstance(at_ms, int) and not isinstance(at_ms, bool) else 0, actor,
            patient_id=str(control["patient_id"]), ward=control.get("ward") or None,
            detail={"record": dict(record), "outcome": refused or "applied"}, record_type="config")))

    def set_shadow(self, config: Any) -> None:
        from vitalstream.governance.shadow import Shadow

        if config is None:
            return
        self.shadow = Shadow(config, self.settings.topic_alerts_shadow)
        if config.model is not None:
            self.monitor.on_risk = self.shadow.on_risk
        log.warning("shadow mode: policy %s, model %s -> %s", config.version,
                    config.model_version or "the live one", self.settings.topic_alerts_shadow)

    def shadow_writes(self, assessments: list[Any]) -> list[Write]:
        if self.shadow is None or not assessments:
            return []
        return self.shadow.writes(self.shadow.assess(assessments))

    def stamp(self, alerts: list[Alert]) -> None:
        """Every alert says which mode it was decided in."""
        for alert in alerts:
            alert.payload["mode"] = self.killswitch.mode_for(alert.ward)

    def writes(self, alerts: list[Alert], partition_of: Mapping[str, int]) -> list[Write]:
        """The audit records of ``alerts`` (their decisions) and of the actions taken in
        since the last call, linked into their partitions' chains."""
        self.quality.on_alerts(alerts, self.monitor.patients)
        for alert in alerts:
            if alert.status == "acknowledged":  # recorded as the action that caused it (on_ack)
                continue
            partition = partition_of.get(alert.patient_id)
            if partition is None:
                partition = self._partition(alert.patient_id)
            self.pending.append((partition, audit.decision_record(
                alert.to_dict(), self.policy_version, alert.payload.get("mode", "normal"),
                "decision" if alert.status in audit.DECISION_EVENTS else "delivery")))
        out: list[Write] = []
        pending, self.pending = self.pending, []
        for partition, record in pending:
            linked = self.chain.append(partition, record)
            if linked is None:
                gov_metrics.AUDIT_DUPLICATES.inc()
                continue
            key = (record.get("patient_id") or record.get("ward") or "").encode()
            out.append((self.topic, key, orjson.dumps(linked), partition))
            gov_metrics.AUDIT_RECORDS.labels(record["type"]).inc()
        return out


def verified_body(keyring: Any, topic: str, message: Any, services: Any) -> Any:
    """A governance record's JSON body: signed by one of ``services``, at most
    ``audit.MAX_ACTION_BYTES``, JSON; InstructionError with the reason (``unsigned``,
    ``bad_signature``, ``too_large``, ``not_json``, ...) otherwise."""
    from vitalstream.signing import SignatureError

    try:
        keyring.verify(topic, message.key, message.value or b"", message.headers, services)
    except SignatureError as exc:
        raise InstructionError(str(exc)) from None
    if len(message.value or b"") > audit.MAX_ACTION_BYTES:
        raise InstructionError("too_large")
    try:
        return orjson.loads(message.value)
    except orjson.JSONDecodeError:
        raise InstructionError("not_json") from None


def verified_instruction(keyring: Any, topic: str, message: Any) -> Any:
    """A control-topic record as an Instruction: signed by an admin key, well formed;
    InstructionError with the reason otherwise (``verified_body``)."""
    return parse_instruction(verified_body(keyring, topic, message, {"admin"}))
