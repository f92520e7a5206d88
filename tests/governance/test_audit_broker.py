"""The audit trail on the real broker: every decision and action of a worker goes to the
audit topic hash-chained; an alert's lineage prints from its id; a worker killed and
restarted loses no record and duplicates none; an altered and a removed record are both
found by ``vitalstream audit --verify`` (on copies of the topic: a Kafka log cannot be
edited in place)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from governance.govkit import (
    ADMIN,
    KEYRING,
    NURSE,
    collect,
    deteriorating,
    run,
    send,
    stable,
    values,
    worker_env,
)

from vitalstream.alerts import AlertPolicy
from vitalstream.broker import EmbeddedBroker
from vitalstream.cli import main
from vitalstream.governance import audit
from vitalstream.governance.worker import WorkerGovernance
from vitalstream.ingest_stage import partition_for_key
from vitalstream.kafka import ensure_topics, producer
from vitalstream.monitor import Monitor
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.governance, pytest.mark.broker]

DECIDED = ("raised", "escalated", "reraised", "resolved")


def decision_events(alerts: list[dict]) -> set[tuple[str, str, int]]:
    return {(a["alert_id"], a["status"], a["device_time_ms"]) for a in alerts if a["status"] in DECIDED}


def audited_events(records: list[dict]) -> set[tuple[str, str, int]]:
    return {(r["alert_id"], r["event"], r["at_ms"]) for r in records if r["type"] == "decision"}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


async def copy_topic(settings: Settings, source: str, target: str, change) -> None:
    """Copy every record of ``source`` to the same partition of ``target``, through
    ``change(record) -> bytes | None`` (None leaves it out)."""
    messages = await audit.read_raw(settings, source)
    await ensure_topics(settings, extra=(target,))
    out = producer(settings)
    await out.start()
    try:
        for message in messages:
            value = change(message)
            if value is not None:
                await out.send(target, value, key=message.key, partition=message.partition)
        await out.flush()
    finally:
        await out.stop()


@pytest.mark.timeout(240)
def test_decisions_and_actions_are_chained_traced_and_survive_a_restart(
        broker: EmbeddedBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    run(ensure_topics(settings))
    end_ms = int(time.time() * 1000)
    first = deteriorating("p-det", "4B", "12", end_ms)
    calm = stable("p-calm", "4B", "11", end_ms)
    worker = WorkerProcess(broker.bootstrap, env=worker_env(), log_path=tmp_path / "worker1.log").start()
    try:
        run(send(settings, settings.topic_raw, [(b"p-det", m) for m in first[:45]]
                 + [(b"p-calm", m) for m in calm]))
        raised = run(collect(settings, settings.topic_alerts, lambda got: len(got) >= 1, 60))
        assert raised, "the deteriorating patient raised nothing before the restart"
    finally:
        worker.kill()  # SIGKILL: whatever was not committed is read again by the next worker
    worker = WorkerProcess(broker.bootstrap, env=worker_env(), log_path=tmp_path / "worker2.log").start()
    try:
        # Age and sex from the admission system (signed by a gateway key): audited, and the
        # next alerts of the patient count in their subgroup; an implausible age is refused.
        run(send(settings, settings.topic_demographics, [
            (b"p-other", orjson.dumps({"patient_id": "p-other", "age_years": 71, "sex": "female",
                                       "source": "adt", "at_ms": 1})),
            (b"p-other", orjson.dumps({"patient_id": "p-other", "age_years": 300, "sex": "female"}))],
            signer=KEYRING.for_service("gateway")))
        run(send(settings, settings.topic_raw, [(b"p-det", m) for m in first[45:]]
                 + [(b"p-other", m) for m in deteriorating("p-other", "4C", "3", end_ms)]))
        alerts = values(run(collect(settings, settings.topic_alerts, lambda got: {
            (a["patient_id"], a["priority"]) for a in values(got)} >= {("p-det", "high"), ("p-other", "high")}, 90)))
        target = next(a for a in alerts if a["patient_id"] == "p-det" and a["status"] == "raised")
        # A nurse answers, through alerts.ack as a station sends it (with the actor shape).
        ack = {"patient_id": "p-det", "alert_id": alerts[-1]["alert_id"] if alerts[-1]["patient_id"] == "p-det"
               else max((a for a in alerts if a["patient_id"] == "p-det"), key=lambda a: a["device_time_ms"])["alert_id"],
               "by": "Nina Nurse (4B desk)", "at_ms": int(time.time() * 1000), "ward": "4B", "actor": NURSE, "actor_wards": ["4B"]}
        run(send(settings, settings.topic_acks, [(b"4B", orjson.dumps(ack))], signer=KEYRING.for_service("station")))
        # A station's own action (a sign-in) comes signed through audit.intake.
        key, value = audit.intake_message("sign_in", ADMIN, int(time.time() * 1000), ward="4B",
                                          detail={"station": "4B desk"})
        run(send(settings, settings.topic_audit_intake, [(key, value)], signer=KEYRING.for_service("station")))
        # A forged one (no signature) is refused and counted, not recorded.
        forged_key, forged = audit.intake_message("sign_in", {**ADMIN, "name": "Mallory"}, 1, ward="4B")
        run(send(settings, settings.topic_audit_intake, [(forged_key, forged)]))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = run(audit.read_topic(settings, settings.topic_audit))
            if {"acknowledge", "sign_in", "demographics"} <= {r["event"] for r in records}:
                break
            time.sleep(0.5)
        assert worker.metric("vitalstream_audit_intake_refused_total") == 1
        assert worker.metric("vitalstream_demographics_refused_total") == 1
        scrape = worker.scrape()
        assert 'vitalstream_group_alerts_total{age_band="65-79",sex="female"}' in scrape, \
            "p-other's alerts count in her subgroup"
        alerts = values(run(collect(settings, settings.topic_alerts, lambda got: False, 3)))
    finally:
        worker.stop()

    # Nothing lost: every decision the alerts topic shows is in the trail; none twice.
    assert decision_events(alerts) <= audited_events(records)
    ids = Counter(r["id"] for r in records)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert {"acknowledge", "sign_in"} <= {r["event"] for r in records}
    assert "Mallory" not in orjson.dumps(records).decode()
    told = next(r for r in records if r["event"] == "demographics")
    assert told["patient_id"] == "p-other" and told["detail"] == {"age_years": 71.0, "sex": "female", "source": "adt"}
    decision = next(r for r in records if r["alert_id"] == target["alert_id"] and r["event"] == "raised")
    assert decision["policy_version"].startswith("pol-") and decision["mode"] == "normal"
    assert decision["model_version"] == target["payload"]["risk"]["model_version"]
    assert decision["detail"]["inputs"]["resp_rate"]["value"] == target["payload"]["observations"]["resp_rate"]["value"]

    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--verify")
    assert code == 0, out
    assert f"{len(records)} records" in out

    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--alert", ack["alert_id"])
    assert code == 0
    for section in ("readings:", "scores:", "decision:", "deliveries:", "answers:"):
        assert section in out
    assert "resp_rate =" in out and "acknowledge" in out and "Nina Nurse" in out
    assert target["alert_id"] in out, "the lineage goes back to the alert the acknowledged one replaced"

    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--user", "u-nurse-7", "--format", "ndjson")
    listed = [orjson.loads(line) for line in out.splitlines()]
    assert listed and {r["actor"]["user_id"] for r in listed} == {"u-nurse-7"}
    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--ward", "4C", "--format", "csv")
    rows = out.splitlines()
    assert rows[0].startswith("partition,seq,at") and len(rows) > 1 and all(",4C," in r for r in rows[1:])

    # Tampering, on copies of the topic: one record altered in place, one removed.
    busiest = Counter(r["partition"] for r in records).most_common(1)[0][0]
    chain = [r for r in records if r["partition"] == busiest]
    assert len(chain) >= 3
    victim = chain[1]

    def altered(message):
        record = orjson.loads(message.value)
        if record["id"] == victim["id"]:
            record["detail"]["summary"] = "nothing to see"  # hash left as it was
            return orjson.dumps(record)
        return message.value

    run(copy_topic(settings, settings.topic_audit, "audit.altered", altered))
    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--topic", "audit.altered", "--verify")
    assert code == 1
    assert f"partition {busiest} offset {victim['_offset']} seq 1 id {victim['id']}: altered" in out

    run(copy_topic(settings, settings.topic_audit, "audit.deleted",
                   lambda m: None if orjson.loads(m.value)["id"] == victim["id"] else m.value))
    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--topic", "audit.deleted", "--verify")
    assert code == 1
    assert f"partition {busiest} offset 1 seq 2 id {chain[2]['id']}: broken link" in out

    # An export verifies the same way, and a removed line in it is found too.
    export = tmp_path / "audit.ndjson"
    code, out = cli(capsys, "audit", "--bootstrap", broker.bootstrap, "--format", "ndjson")
    export.write_text(out)
    assert cli(capsys, "audit", "--file", str(export), "--verify")[0] == 0
    lines = out.splitlines()
    cut = next(i for i, line in enumerate(lines) if orjson.loads(line)["id"] == victim["id"])
    export.write_text("\n".join(lines[:cut] + lines[cut + 1:]) + "\n")
    code, out = cli(capsys, "audit", "--file", str(export), "--verify")
    assert code == 1 and "broken link" in out


@pytest.mark.timeout(60)
def test_a_new_owner_continues_the_chain_and_drops_a_resent_record(broker: EmbeddedBroker) -> None:
    """What a restart does to the chain, step by step on the real broker: the new owner
    reads the partition's tail, a record the old owner already wrote (the same id) is
    not written again, and the next record links to the last one written."""
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=2)
    run(ensure_topics(settings))
    alerts = [{"alert_id": f"al-{i}", "status": "raised", "patient_id": "p1", "ward": "4B",
               "device_time_ms": 1_000 * i, "payload": {}} for i in range(4)]

    async def scenario() -> tuple[list, list]:
        old = WorkerGovernance(settings, Monitor(AlertPolicy()))
        partition = partition_for_key(b"p1", 2)  # where send() puts key p1
        records = [old.chain.append(partition, audit.decision_record(a, old.policy_version)) for a in alerts[:3]]
        await send(settings, settings.topic_audit, [(b"p1", orjson.dumps(r)) for r in records])
        new = WorkerGovernance(settings, Monitor(AlertPolicy()))
        await new.start()
        try:
            await new.resume({0, 1})
        finally:
            await new.stop()
        again = [new.chain.append(partition, audit.decision_record(a, new.policy_version)) for a in alerts[2:]]
        return records, again

    records, again = run(scenario())
    assert again[0] is None, "a record already on the partition is dropped, not written twice"
    assert again[1]["seq"] == 3 and again[1]["prev"] == records[-1]["hash"]
    assert audit.verify([*records, again[1]]).ok
