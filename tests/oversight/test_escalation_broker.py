"""Escalation on the real broker with a real worker: nobody acknowledges, the charge nurse
is called at the configured time, she accepts and answers, the history names each step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from oversightkit import CHARGE_CAT, ENV, alerts_until, deteriorated, of_status, send

from vitalstream.broker import EmbeddedBroker
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.oversight]


def test_unacknowledged_alert_goes_to_charge_nurse_who_accepts_and_answers(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    with WorkerProcess(broker.bootstrap, env=ENV, log_path=tmp_path / "worker.log",
                       args=["--loglevel", "info"]) as worker:
        send(settings, settings.topic_raw, *deteriorated("p-esc", "4B", "7"), key=b"p-esc")
        got = alerts_until(settings, lambda a: of_status(a, "called"), 90)  # (a cold start compiles)
        [raised] = of_status(got, "raised")
        assert raised["priority"] == "high"
        assert raised["payload"]["oversight"]["holder"] == "bedside_nurse"
        [called] = of_status(got, "called")
        assert called["alert_id"] == raised["alert_id"]
        assert called["payload"]["oversight"]["holder"] == "charge_nurse"
        held_s = (called["payload"]["oversight"]["held_since_ms"]
                  - raised["payload"]["oversight"]["opened_ms"]) / 1000
        assert 3.0 <= held_s < 6.0, f"called after {held_s} s; configured 3 s"
        assert "charge nurse" in called["summary"] and "no acknowledgement" in called["summary"]

        # A user whose role may not answer alerts (an administrator) is refused: nothing changes.
        alert_id = raised["alert_id"]
        admin = {"user_id": "u-adm", "role": "admin", "name": "Ad Min"}
        # (Records signed with the station's key, as the station writes them for a signed-in user.)
        ack = {"patient_id": "p-esc", "alert_id": alert_id, "ward": "4B", "actor_wards": ["4B"]}
        send(settings, settings.topic_acks, {**ack, "at_ms": int(time.time() * 1000), "actor": admin}, key=b"4B")
        # A replayed acknowledgement (an hour old) is refused too.
        send(settings, settings.topic_acks, {**ack, "at_ms": int(time.time() * 1000) - 3_600_000,
                                             "actor": CHARGE_CAT}, key=b"4B")
        # Unsigned (a forger writing the topic) is refused where it enters.
        send(settings, settings.topic_acks, {**ack, "at_ms": int(time.time() * 1000), "actor": CHARGE_CAT},
             key=b"4B", service=None)
        # The charge nurse accepts (acknowledges), then answers with a reason code.
        send(settings, settings.topic_acks, {**ack, "at_ms": int(time.time() * 1000), "actor": CHARGE_CAT},
             key=b"4B")
        send(settings, settings.topic_oversight,
             {"patient_id": "p-esc", "type": "answer", "alert_id": alert_id, "reason": "because",
              "at_ms": int(time.time() * 1000), "actor": CHARGE_CAT},
             {"patient_id": "p-esc", "type": "answer", "alert_id": alert_id, "reason": "physician_informed",
              "at_ms": int(time.time() * 1000), "actor": CHARGE_CAT}, key=b"4B")
        got = alerts_until(settings, lambda a: of_status(a, "answered"))
        [acked] = of_status(got, "acknowledged")
        assert acked["payload"]["oversight"]["acknowledged"]["user_id"] == "u-cat"
        [answered] = of_status(got, "answered")
        oversight = answered["payload"]["oversight"]
        assert oversight["answer"]["reason"] == "physician_informed" and oversight["answer"]["acted"]
        steps = [(h["event"], h.get("role") or h.get("user_id"), h.get("reason")) for h in oversight["history"]]
        assert steps == [("raised", "bedside_nurse", None), ("called", "charge_nurse", "no_acknowledgement"),
                         ("acknowledged", "u-cat", None), ("answered", "u-cat", "physician_informed")]
        times = [h["at_ms"] for h in oversight["history"]]
        assert times == sorted(times) and all(t > 0 for t in times)
        assert len({a["event_id"] for a in got}) == len(got), "every event has its own id"
        text = worker.scrape()
        assert worker.metric("vitalstream_escalations_total") == 1
        assert 'reason="physician_informed"' in text and "vitalstream_alert_time_to_answer_seconds_count" in text
        assert 'vitalstream_oversight_refused_total{reason="unknown_reason"} 1.0' in text
        # The administrator's acknowledgement is refused by the forwarder (role), the unsigned
        # one too (its signature); the replayed one by the monitor.
        assert 'vitalstream_control_refused_total{reason="role",source="ack"} 1.0' in text
        assert 'vitalstream_control_refused_total{reason="unsigned",source="ack"} 1.0' in text
        assert worker.metric("vitalstream_acknowledgements_rejected_total") == 2
        assert 'vitalstream_oversight_refused_total{reason="ack_stale_or_future"} 1.0' in text
        assert "p-esc" not in text and "u-cat" not in text, "no patient or user ids in metrics"
