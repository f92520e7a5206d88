"""A worker killed (SIGKILL) with open escalation timers, a snooze and a care goal: the
worker that takes over calls the next responder at the time set before the crash, ends
the snooze when it was due and keeps the goal."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from oversightkit import DOCTOR_LEE, NURSE_ANN, alerts_until, deteriorated, of_status, send

from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.faults, pytest.mark.oversight]

AFTER_S = 15
ENV = {"VITALSTREAM_ESCALATION_CHAINS": orjson.dumps({"*": {"steps": [
    {"role": "bedside_nurse"}, {"role": "charge_nurse", "after_s": AFTER_S}]}}).decode(),
    "VITALSTREAM_SNOOZE_MAX_S": '{"high": 60, "medium": 60, "low": 60}',
    "VITALSTREAM_OVERSIGHT_INTERVAL_S": "0.5"}


def test_restart_keeps_escalation_timer_snooze_and_goal(settings: Settings, tmp_path: Path) -> None:
    worker = WorkerProcess(settings.kafka_bootstrap, env=ENV, log_path=tmp_path / "a.log").start()
    try:
        send(settings, settings.topic_raw, *deteriorated("p-a", "4B", "1"), key=b"p-a")
        send(settings, settings.topic_raw, *deteriorated("p-b", "4B", "2"), key=b"p-b")
        got = alerts_until(settings, lambda a: len(of_status(a, "raised")) == 2, 90)
        raised = {a["patient_id"]: a for a in of_status(got, "raised")}
        now = int(time.time() * 1000)
        send(settings, settings.topic_oversight,
             {"patient_id": "p-a", "type": "goal", "goal": "do_not_escalate", "reason": "agreed with family",
              "duration_s": 3600, "at_ms": now, "actor": DOCTOR_LEE},
             {"patient_id": "p-b", "type": "snooze", "alert_id": raised["p-b"]["alert_id"], "duration_s": 20,
              "reason": "chest X-ray", "at_ms": now, "actor": NURSE_ANN})
        got = alerts_until(settings, lambda a: of_status(a, "goal_set") and of_status(a, "snoozed"), 30)
        snooze_until = of_status(got, "snoozed")[0]["payload"]["oversight"]["snooze"]["until_ms"]
        assert not of_status(got, "called"), "killed before anyone was called"
    finally:
        worker.kill()
    with WorkerProcess(settings.kafka_bootstrap, env=ENV, log_path=tmp_path / "b.log"):
        ready_ms = int(time.time() * 1000)
        got = alerts_until(settings, lambda a: of_status(a, "called") and of_status(a, "snooze_ended"), 60)
    [called] = [a for a in of_status(got, "called") if a["patient_id"] == "p-a"]
    oversight = called["payload"]["oversight"]
    due_ms = raised["p-a"]["payload"]["oversight"]["opened_ms"] + AFTER_S * 1000
    assert oversight["held_since_ms"] <= max(due_ms, ready_ms) + 3000, "the timer was restarted, not kept"
    assert oversight["goals"] == ["do_not_escalate"], "the care goal survived the crash"
    [ended] = of_status(got, "snooze_ended")
    assert ended["patient_id"] == "p-b"
    assert ended["payload"]["oversight"]["as_of_ms"] <= max(snooze_until, ready_ms) + 3000
    assert len(of_status(got, "raised")) == 2, "no alert raised twice by the new worker"
