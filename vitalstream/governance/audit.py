"""The audit trail: every decision of the alert policy and every human action, on an
append-only ``audit`` topic, hash-chained per partition.

A record is a JSON object. Its **canonical bytes** are the object without its ``hash``
field (and without fields starting with ``_``, which readers add, like ``_offset``), serialised by orjson with keys sorted (UTF-8, no whitespace; orjson writes the
shortest float that reads back the same, so parsing and writing again gives the same
bytes). ``hash`` is the SHA-256 (hex) of those bytes, and ``prev`` is the ``hash`` of
the record before it on the same partition (64 zeros for the first), so a record that is
altered fails its own hash and one that is removed breaks the next record's ``prev``.
``seq`` counts the records of the partition from 0.

``id`` is stable: a hash of what the record is about (the alert's id, status and time;
an action's actor, kind, target and time), never of when or by whom it was written. A
worker that re-sends a batch after a restart makes the same ids, and the writer drops a
record whose id is already among the partition's last records.

**One writer per partition.** The audit topic has the partitions of ``vitals``, and only
the worker that owns vitals partition *p* writes audit partition *p* (a decision is
written on its patient's partition, a human action on the partition of its patient, or
of its ward). Actions made elsewhere (a station's sign-in, an oversight answer) go
signed to ``audit.intake`` through ``record_action``; the worker forwards them into
``vitals`` by that key, and the partition's owner writes them. A new owner reads the
partition's tail before it writes, so the chain goes on from the last record.

Pure except ``record_action`` and ``read_topic`` (the thin Kafka edge used by the CLI
and the stations).

>>> chain = AuditChain(partitions=2)
>>> r = chain.append(0, decision_record({"alert_id": "al-1", "status": "raised",
...     "patient_id": "p1", "ward": "4B", "device_time_ms": 5, "payload": {}}, "pol-x"))
>>> r["seq"], r["prev"] == GENESIS, verify([r]).ok
(0, True, True)
>>> chain.append(0, decision_record({"alert_id": "al-1", "status": "raised",
...     "patient_id": "p1", "ward": "4B", "device_time_ms": 5, "payload": {}}, "pol-x")) is None
True
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

SCHEMA = 1
GENESIS = "0" * 64
# How many of a partition's last records a writer remembers (and a new owner reads back)
# to drop a re-sent one: more than a worker can have sent and not committed.
TAIL_RECORDS = 5000
DECISION_EVENTS = frozenset({"raised", "escalated", "reraised", "resolved"})
ROLES = ("bedside_nurse", "charge_nurse", "rapid_response", "physician", "admin")
MAX_ACTION_BYTES = 65_536


class AuditRecordError(ValueError):
    """An audit action that cannot be recorded; the message is the reason."""


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: the record without ``hash``, keys sorted."""
    return orjson.dumps({k: v for k, v in record.items() if k != "hash" and not k.startswith("_")},
                        option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def stable_id(*parts: Any) -> str:
    """``au-`` and 24 hex digits of what the record is about."""
    return "au-" + hashlib.sha256(orjson.dumps(list(parts), option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def policy_version(config: Any) -> str:
    """A short hash of a PolicyConfig's every field: two workers with the same version
    decided with the same policy."""
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
    return "pol-" + digest.hexdigest()[:12]


def _inputs(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The readings a decision was made on: value and device time of each."""
    return {name: {"value": o.get("value"), "ms": o.get("ms"), "score": o.get("score")}
            for name, o in (payload.get("observations") or {}).items() if isinstance(o, Mapping)}


def decision_record(alert: Mapping[str, Any], policy: str, mode: str = "normal",
                    record_type: str = "decision") -> dict[str, Any]:
    """The audit record of an alert message (``Alert.to_dict()``): what was decided, on
    which readings and scores, with which model, policy and mode. Other alert events
    (an oversight escalation step calling a responder, ...) are ``delivery`` records."""
    payload = alert.get("payload") or {}
    news2 = payload.get("news2") or {}
    risk = payload.get("risk") or None
    status = str(alert.get("status", ""))
    at_ms = int(alert.get("device_time_ms", 0))
    detail = {
        "kind": alert.get("kind"), "priority": alert.get("priority"), "replaces": alert.get("replaces"),
        "summary": alert.get("summary"),
        "inputs": _inputs(payload),
        "news2": {"total": news2.get("total"), "components": news2.get("components"),
                  "partial": news2.get("partial"), "spo2_scale": news2.get("spo2_scale")} if news2 else None,
        "risk": {"value": risk.get("value"), "ms": risk.get("ms"), "factors": risk.get("factors")}
        if risk else None,
        "reasons": payload.get("reasons"), "thresholds": payload.get("thresholds"),
        "technical": payload.get("technical"), "parameter": payload.get("parameter"),
        "since": (payload.get("since") or {}).get("ms"),
    }
    return {
        "v": SCHEMA, "type": record_type, "event": status,
        "id": stable_id(record_type, alert.get("event_id") or f"{alert.get('alert_id')}/{status}", at_ms),
        "at_ms": at_ms, "patient_id": alert.get("patient_id"), "ward": alert.get("ward"),
        "bed": alert.get("bed"), "alert_id": alert.get("alert_id"), "actor": None,
        "model_version": (risk or {}).get("model_version"), "policy_version": policy,
        "mode": mode, "detail": {k: v for k, v in detail.items() if v is not None},
    }


def check_actor(actor: Any) -> dict[str, str]:
    """The actor shape every human action carries; AuditRecordError if it is not."""
    if not isinstance(actor, Mapping):
        raise AuditRecordError("actor must be an object {user_id, role, name}")
    user_id, role, name = actor.get("user_id"), actor.get("role"), actor.get("name")
    if not (isinstance(user_id, str) and user_id and isinstance(name, str) and isinstance(role, str)):
        raise AuditRecordError("actor needs user_id, role and name as strings")
    if role not in ROLES:
        raise AuditRecordError(f"unknown role {role!r}")
    return {"user_id": user_id[:64], "role": role, "name": name[:80]}


def action_record(action: str, at_ms: int, actor: Mapping[str, Any] | None, *,
                  patient_id: str | None = None, ward: str | None = None, alert_id: str | None = None,
                  detail: Mapping[str, Any] | None = None, record_type: str = "action") -> dict[str, Any]:
    """The audit record of something a person (or an operator's tool) did."""
    detail = dict(detail or {})
    return {
        "v": SCHEMA, "type": record_type, "event": action,
        "id": stable_id(record_type, action, int(at_ms), actor, patient_id, ward, alert_id, detail),
        "at_ms": int(at_ms), "patient_id": patient_id, "ward": ward, "bed": None,
        "alert_id": alert_id, "actor": dict(actor) if actor else None,
        "model_version": None, "policy_version": None, "mode": None, "detail": detail,
    }


def action_from_message(body: Any) -> dict[str, Any]:
    """An ``audit.intake`` message ``{"audit_action": {...}}`` as an audit record, checked:
    AuditRecordError with the reason if it cannot be one."""
    if not isinstance(body, Mapping) or not isinstance(body.get("audit_action"), Mapping):
        raise AuditRecordError("expected {\"audit_action\": {...}}")
    action = body["audit_action"]
    name, at_ms = action.get("action"), action.get("at_ms")
    if not (isinstance(name, str) and 0 < len(name) <= 40):
        raise AuditRecordError("action must be a short string")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or at_ms < 0:
        raise AuditRecordError("at_ms must be a non-negative integer")
    for field in ("patient_id", "ward", "alert_id"):
        if action.get(field) is not None and not isinstance(action[field], str):
            raise AuditRecordError(f"{field} must be a string")
    if action.get("detail") is not None and not isinstance(action["detail"], Mapping):
        raise AuditRecordError("detail must be an object")
    record_type = action.get("type", "action")
    if record_type not in ("action", "config"):
        raise AuditRecordError("type must be action or config")
    return action_record(name, at_ms, check_actor(action.get("actor")),
                         patient_id=action.get("patient_id"), ward=action.get("ward"),
                         alert_id=action.get("alert_id"), detail=action.get("detail"),
                         record_type=record_type)


class AuditChain:
    """The writer's side of the chain: per partition, the last hash, the next ``seq``
    and the ids of the last ``TAIL_RECORDS`` records (to drop a re-sent one).

    ``append`` links a record and returns it, or None if its id was written already.
    Pure: the monitor stage sends what it returns, and calls ``resume`` with a
    partition's tail when it gains the partition.
    """

    def __init__(self, partitions: int, tail: int = TAIL_RECORDS) -> None:
        self.partitions = partitions
        self.tail = tail
        self.last: dict[int, tuple[int, str]] = {}  # partition -> (seq, hash) of its last record
        self.seen: dict[int, tuple[deque[str], set[str]]] = {}
        self.duplicates_dropped = 0

    def _seen(self, partition: int) -> tuple[deque[str], set[str]]:
        entry = self.seen.get(partition)
        if entry is None:
            entry = self.seen[partition] = (deque(), set())
        return entry

    def _remember(self, partition: int, record_id: str) -> None:
        order, ids = self._seen(partition)
        order.append(record_id)
        ids.add(record_id)
        while len(order) > self.tail:
            ids.discard(order.popleft())

    def resume(self, partition: int, tail: Sequence[Mapping[str, Any]]) -> None:
        """Continue a partition's chain after its last records (read from the topic)."""
        self.seen.pop(partition, None)
        self.last.pop(partition, None)
        for record in tail:
            self._remember(partition, str(record.get("id")))
            self.last[partition] = (int(record.get("seq", -1)), str(record.get("hash")))

    def forget(self, partition: int) -> None:
        self.seen.pop(partition, None)
        self.last.pop(partition, None)

    def append(self, partition: int, record: dict[str, Any]) -> dict[str, Any] | None:
        if record["id"] in self._seen(partition)[1]:
            self.duplicates_dropped += 1
            return None
        seq, prev = self.last.get(partition, (-1, GENESIS))
        linked = {**record, "partition": partition, "seq": seq + 1, "prev": prev}
        linked["hash"] = record_hash(linked)
        self.last[partition] = (seq + 1, linked["hash"])
        self._remember(partition, record["id"])
        return linked


@dataclasses.dataclass
class Verification:
    """What ``verify`` found: ``broken`` names the first broken link of each partition."""

    records: int = 0
    partitions: int = 0
    duplicates: int = 0
    broken: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken

    def first(self) -> dict[str, Any] | None:
        return self.broken[0] if self.broken else None


def verify(records: Iterable[Mapping[str, Any]]) -> Verification:
    """Check the chain of every partition, records in log order (as read, or as exported).

    A record whose hash is not the hash of its canonical bytes was altered; one whose
    ``prev`` is not the hash of the record before it (or whose ``seq`` does not follow)
    comes after a removed, inserted or reordered record. An exact copy of the record
    before it (same id and hash: a producer's retry delivered it twice) is counted as a
    duplicate, not a break. Nothing is repaired: each partition reports its first break
    and is not checked further."""
    result = Verification()
    last: dict[int, Mapping[str, Any]] = {}
    broken: set[int] = set()
    for position, record in enumerate(records):
        result.records += 1
        partition = int(record.get("partition", -1))
        if partition in broken:
            continue
        where = {"partition": partition, "seq": record.get("seq"), "id": record.get("id"),
                 "offset": record.get("_offset", position)}
        before = last.get(partition)
        if "_partition" in record and record["_partition"] != partition:
            result.broken.append({**where, "partition": record["_partition"],
                                  "reason": f"moved: a record of partition {partition} on partition "
                                            f"{record['_partition']}"})
            broken.add(record["_partition"])
            continue
        if record.get("hash") != record_hash(record):
            result.broken.append({**where, "reason": "altered: the record's hash does not match its content"})
            broken.add(partition)
            continue
        if before is not None and record.get("id") == before.get("id") and record.get("hash") == before.get("hash"):
            result.duplicates += 1
            continue
        expected_prev = before.get("hash") if before is not None else GENESIS
        expected_seq = int(before.get("seq", -1)) + 1 if before is not None else 0
        if record.get("prev") != expected_prev or record.get("seq") != expected_seq:
            after = f"seq {before.get('seq')}" if before is not None else "the start of the partition"
            result.broken.append({**where, "reason": f"broken link: prev/seq do not follow {after} "
                                                     f"(expected seq {expected_seq}): a record before it "
                                                     "was removed, inserted or reordered"})
            broken.add(partition)
            continue
        last[partition] = record
    result.partitions = len(last | {p: {} for p in broken})
    return result


# -- the Kafka edge ----------------------------------------------------------------------
async def read_raw(settings: Any, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every message of ``topic`` to its current end, partition by partition in log
    order. Ends from a fetch's high watermark (the embedded broker's ListOffsets answer
    stops short; see monitor_stage._changelog_ends)."""
    import asyncio
    import time

    from aiokafka import TopicPartition

    from vitalstream.kafka import FETCH_MAX_WAIT_MS, consumer

    source = consumer(settings, from_beginning=True, enable_auto_commit=False,
                      max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    try:
        await source.start()
        deadline = time.monotonic() + timeout_s
        partitions = source.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} not found")
            await asyncio.sleep(0.2)
            await source.force_metadata_update()
            partitions = source.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        source.assign(tps)
        await source.seek_to_beginning(*tps)
        by_partition: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        while True:
            batch = await source.getmany(*tps, timeout_ms=300)
            for tp, messages in batch.items():
                by_partition[tp.partition].extend(messages)
            highs = {tp: source.highwater(tp) for tp in tps}
            if all(h is not None for h in highs.values()):
                positions = {tp: await source.position(tp) for tp in tps}
                if all(positions[tp] >= (highs[tp] or 0) for tp in tps):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end in {timeout_s} s")
        return [m for p in sorted(by_partition) for m in by_partition[p]]
    finally:
        await source.stop()


async def read_topic(settings: Any, topic: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The audit records of ``topic`` in log order, each with its ``_offset``; a record
    that is not JSON becomes ``{"_offset", "_unreadable": true}`` (verify reports it)."""
    out = []
    for message in await read_raw(settings, topic, timeout_s):
        try:
            record = orjson.loads(message.value)
            if not isinstance(record, dict):
                raise ValueError
        except (orjson.JSONDecodeError, ValueError):
            record = {"_unreadable": True, "partition": message.partition}
        record["_offset"], record["_partition"] = message.offset, message.partition
        out.append(record)
    return out


def intake_message(action: str, actor: Mapping[str, Any], at_ms: int, *, patient_id: str | None = None,
                   ward: str | None = None, alert_id: str | None = None,
                   detail: Mapping[str, Any] | None = None, record_type: str = "action") -> tuple[bytes, bytes]:
    """Key and value of an ``audit.intake`` message (checked as the worker will check it)."""
    body = {"audit_action": {"action": action, "actor": dict(actor), "at_ms": int(at_ms),
                             "patient_id": patient_id, "ward": ward, "alert_id": alert_id,
                             "detail": dict(detail or {}), "type": record_type}}
    action_from_message(body)  # refuse here what the worker would refuse
    key = (patient_id or ward or actor.get("user_id") or "").encode()
    return key, orjson.dumps(body)


async def record_action(producer: Any, settings: Any, keyring: Any, action: str,
                        actor: Mapping[str, Any], at_ms: int | None = None, **fields: Any) -> None:
    """Send a human action or a configuration change to the audit trail (through
    ``audit.intake``, signed with this process's key). Station and oversight code call
    this; ``fields``: patient_id, ward, alert_id, detail, record_type ("config" for a
    configuration change). Raises AuditRecordError for an action that cannot be recorded."""
    import time

    key, value = intake_message(action, actor, int(time.time() * 1000) if at_ms is None else at_ms, **fields)
    topic = settings.topic_audit_intake
    await producer.send_and_wait(topic, key=key, value=value, headers=keyring.sign(topic, key, value))
