"""The audit chain and the kill switch's rules, without a broker: what verify calls a
break, what the writer drops, and which instructions are refused and why."""

from __future__ import annotations

import pytest

from vitalstream.governance import audit
from vitalstream.governance.killswitch import InstructionError, KillSwitch, parse_instruction

pytestmark = pytest.mark.governance

ADMIN = {"user_id": "u-a", "role": "admin", "name": "Ada"}


def chain_of(n: int, partition: int = 0) -> list[dict]:
    chain = audit.AuditChain(partitions=1)
    return [chain.append(partition, audit.action_record("acknowledge", 1000 + i, ADMIN, alert_id=f"al-{i}"))
            for i in range(n)]


def test_an_intact_chain_verifies_and_a_redelivered_copy_is_a_duplicate_not_a_break() -> None:
    records = chain_of(4)
    assert audit.verify(records).ok
    result = audit.verify([*records[:2], records[1], *records[2:]])
    assert result.ok and result.duplicates == 1


def test_an_altered_record_is_named_even_when_its_hash_was_recomputed() -> None:
    records = chain_of(4)
    records[1] = {**records[1], "at_ms": 5}
    first = audit.verify(records).first()
    assert first["seq"] == 1 and first["reason"].startswith("altered")
    records[1]["hash"] = audit.record_hash(records[1])  # a careful forger: then the next link breaks
    first = audit.verify(records).first()
    assert first["seq"] == 2 and first["reason"].startswith("broken link")


def test_a_removed_first_or_middle_record_breaks_the_chain_where_it_was() -> None:
    records = chain_of(4)
    assert audit.verify(records[1:]).first()["seq"] == 1
    assert audit.verify([records[0], *records[2:]]).first()["seq"] == 2


def test_record_ids_do_not_depend_on_who_wrote_them_or_when() -> None:
    alert = {"alert_id": "al-1", "status": "raised", "patient_id": "p", "ward": "4B", "device_time_ms": 7,
             "payload": {"observations": {"resp_rate": {"value": 26, "ms": 7, "score": 3}}}}
    a, b = audit.decision_record(alert, "pol-1"), audit.decision_record(dict(alert), "pol-1")
    assert a["id"] == b["id"] and a["detail"]["inputs"]["resp_rate"]["value"] == 26
    assert audit.decision_record({**alert, "status": "resolved"}, "pol-1")["id"] != a["id"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"mode": "off"}, "mode must be one of"),
    ({"scope": ""}, "scope"),
    ({"at_ms": "now"}, "at_ms"),
    ({"actor": {"user_id": "u-n", "role": "charge_nurse", "name": "N"}}, "only an admin"),
    ({"actor": {"user_id": "u-n", "role": "janitor", "name": "N"}}, "unknown role"),
    ({"actor": "root"}, "actor must be an object"),
])
def test_malformed_kill_switch_instructions_are_refused_with_their_reason(change: dict, reason: str) -> None:
    body = {"mode": "news2_only", "scope": "4B", "reason": "", "at_ms": 10, "actor": ADMIN, **change}
    with pytest.raises(InstructionError, match=reason):
        parse_instruction({"kill_switch": body})


def test_the_newest_instruction_covering_a_ward_wins() -> None:
    switch = KillSwitch()

    def throw(mode: str, scope: str, at_ms: int) -> bool:
        return switch.apply(parse_instruction({"kill_switch": {
            "mode": mode, "scope": scope, "reason": "", "at_ms": at_ms, "actor": ADMIN}}))

    assert throw("news2_only", "*", 10)
    assert switch.model_off() == (True, frozenset())
    assert throw("normal", "4B", 20)
    assert (switch.mode_for("4B"), switch.mode_for("4C")) == ("normal", "news2_only")
    assert switch.model_off() == (True, frozenset({"4B"}))
    assert not throw("news2_only", "4B", 15), "an older instruction changes nothing"
    assert throw("normal", "*", 30)
    assert switch.mode_for("4B") == switch.mode_for("4C") == "normal"
    assert switch.model_off() == (False, frozenset())


def test_a_record_found_on_another_partition_than_its_own_is_reported_moved() -> None:
    records = [{**r, "_partition": 0, "_offset": i} for i, r in enumerate(chain_of(3))]
    records[2] = {**records[2], "_partition": 1}
    first = audit.verify(records).first()
    assert first["partition"] == 1 and first["reason"].startswith("moved")
