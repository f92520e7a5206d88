"""10,000 hostile messages in the three formats interleaved with a ward's valid ones, plus
hostile acknowledgements and settings, through the real worker. Nothing crashes; every
raw message is either scored or dead-lettered with a known reason; the valid patients'
alerts are those of a clean run. The same run is then scanned for patient identifiers in
the worker's log (INFO and above) and /metrics, and for a secret from its environment;
last, the worker is stopped gracefully and must have committed everything it read."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from faults.faultkit import (
    Message,
    cohort_workload,
    comparable,
    event_ids,
    identifiers_in,
    lag,
    log_text,
    metric_or_zero,
    read_topic,
    reference_event_ids,
    send,
    wait_for,
)
from faults.hostile import HOSTILE_PREFIX, VALID_PREFIX, hostile_messages, interleave

from vitalstream.broker import EmbeddedBroker
from vitalstream.ingest import REASON_CODES, parse_raw
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.broker]

HOSTILE_COUNT = 10_000
SECRET = "s3cr3t-sasl-password-never-printed"


def hostile_controls(patient_id: str) -> list[bytes]:
    """Acknowledgements and settings records a station should never send (sent signed with a
    station's key, as a faulty station would: unsigned ones never get as far as parsing)."""
    big = "x" * (1 << 20)
    deep = "[" * 50_000 + "]" * 50_000
    acks = [b"", b"{", b"null", b"[]", deep.encode(), orjson.dumps({"patient_id": patient_id}),
            orjson.dumps({"patient_id": patient_id, "alert_id": "al-0000000000000000", "by": big}),
            orjson.dumps({"patient_id": [1, 2], "alert_id": {"x": 1}, "at_ms": "soon"}),
            orjson.dumps({"patient_id": patient_id, "alert_id": "al-x", "at_ms": 10**30 // 10**12})]
    settings = [b"", b"{", deep.encode(), orjson.dumps({"patient_id": patient_id, "record": "high"}),
                orjson.dumps({"patient_id": patient_id, "record": {"news2_high": "NaN", "set_by": big}}),
                orjson.dumps({"patient_id": patient_id, "record": {"spo2_scale": 7, "set_by": "x"}})]
    return acks + [b"settings:" + s for s in settings]


@pytest.mark.timeout(300)
def test_hostile_input_is_accounted_for_and_changes_no_valid_patients_alert(
        broker: EmbeddedBroker, settings: Settings, tmp_path: Path) -> None:
    ward = cohort_workload()
    kinds_and_messages = hostile_messages(ward.messages, HOSTILE_COUNT)
    hostile = [m for _, m, _ in kinds_and_messages]
    stream = interleave(ward.messages, [(m, earliest) for _, m, earliest in kinds_and_messages])
    expected = reference_event_ids(m.value for m in ward.messages)
    received_ms = int(time.time() * 1000)
    rejected = Counter(r.rejection.reason for r in (parse_raw(m.value, received_ms) for m in stream)
                       if r.rejection is not None)
    assert len(stream) == len(ward.messages) + HOSTILE_COUNT >= 15_000
    assert set(Counter(kind for kind, _, _ in kinds_and_messages)) >= {"huge", "nested", "far_time", "duplicate"}
    hostile_ids = {m.key.decode() for m in hostile if m.key.startswith(HOSTILE_PREFIX)}
    patient_ids = ward.patient_ids | hostile_ids
    log = tmp_path / "worker.log"
    worker = WorkerProcess(broker.bootstrap, log_path=log, args=["--loglevel", "info"],
                           env={"VITALSTREAM_KAFKA_SASL_PASSWORD": SECRET}).start()
    try:
        # Big enough for the 1 MiB + 4 KiB messages, which ingest must refuse itself.
        asyncio.run(send(settings, stream, max_request_size=8 << 20))
        victim = sorted(ward.patient_ids)[0]
        controls = hostile_controls(victim)
        asyncio.run(send(settings, [Message(victim.encode(), c, 0) for c in controls
                                    if not c.startswith(b"settings:")],
                         topic=settings.topic_acks, sign_as="station", max_request_size=8 << 20))
        asyncio.run(send(settings, [Message(victim.encode(), c[len(b"settings:"):], 0) for c in controls
                                    if c.startswith(b"settings:")],
                         topic=settings.topic_patient_settings, sign_as="station", max_request_size=8 << 20))
        assert wait_for(lambda: metric_or_zero(worker, "vitalstream_messages_in_total") >= len(stream), 120), \
            "ingest did not read every message"
        records = asyncio.run(read_topic(settings, settings.topic_alerts,
                                         lambda got: set(expected) <= set(event_ids(got)), 120))
        total_dead = sum(rejected.values())
        letters = asyncio.run(read_topic(settings, settings.topic_deadletter,
                                         lambda got: len(got) >= total_dead + len(controls), 30))
        # The worker's refusals of control records are dead letters too, each with its reason.
        control_letters = [r for r in letters if orjson.loads(r.value)["format"] in ("ack", "settings")]
        letters = [r for r in letters if r not in control_letters]
        assert worker.process is not None and worker.process.poll() is None, "the worker crashed"
        # Every malformed acknowledgement is counted where it is refused; the last one is
        # well formed but names no signed-in user (refused as well).
        malformed_acks = sum(1 for c in controls if not c.startswith(b"settings:"))
        assert wait_for(lambda: metric_or_zero(worker, "vitalstream_acknowledgements_rejected_total")
                        >= malformed_acks, 30)
        assert worker.metric("vitalstream_acknowledgements_rejected_total") == malformed_acks
        messages_in = worker.metric("vitalstream_messages_in_total")
        accepted = worker.metric("vitalstream_messages_accepted_total")
        deadlettered = worker.metric("vitalstream_messages_deadlettered_total")
        metrics_text = worker.scrape()
        health_ok = wait_for(lambda: worker.metric("vitalstream_broker_up") == 1, 5)
        stopping = worker.process
        worker.stop()  # SIGTERM: a graceful shutdown
        exit_status = stopping.returncode
    finally:
        worker.stop()

    # Every message in exactly one place, for the reason the pure parser gives.
    print(f"hostile: {len(stream)} messages ({HOSTILE_COUNT} hostile), {messages_in:.0f} read, "
          f"{accepted:.0f} accepted, {deadlettered:.0f} dead-lettered; reasons {dict(rejected)}")
    assert messages_in == len(stream)
    assert accepted + deadlettered == messages_in
    assert deadlettered == total_dead and len(letters) == total_dead
    assert len(control_letters) == len(controls)
    assert {orjson.loads(r.value)["reason"] for r in control_letters} <= {"malformed", "actor", "role", "out_of_bounds"}
    letter_reasons = Counter(orjson.loads(r.value)["reason"] for r in letters)
    assert letter_reasons == rejected
    assert set(letter_reasons) <= REASON_CODES - {"internal_error"}
    sent = {m.value for m in stream}
    by_digest = {hashlib.sha256(m.value).hexdigest(): m.value for m in stream}
    for r in letters:
        letter = orjson.loads(r.value)
        original = base64.b64decode(letter["original_b64"])
        if letter.get("original_truncated"):
            # Over 512 KiB: the letter holds the head, the length and the digest of the original.
            whole = by_digest[letter["original_sha256"]]
            assert whole.startswith(original) and len(whole) == letter["original_bytes"]
        else:
            assert original in sent

    # The valid patients' alerts are a clean run's; duplicates are redeliveries only.
    valid = [r for r in records if orjson.loads(r.value)["patient_id"] in ward.patient_ids]
    received = event_ids(valid)
    assert not set(expected) - set(received), "hostile input cost a valid patient an alert"
    assert not set(received) - set(expected), "hostile input made a valid patient alert"
    # A device clock far ahead must not move the stream clock (every bed would look silent).
    horizon_ms = int(time.time() * 1000) + 3_600_000
    assert not [a for a in map(orjson.loads, (r.value for r in records))
                if not comparable(a) and a["device_time_ms"] > horizon_ms]

    # No patient identifiers in metric labels or log lines; no secret anywhere.
    assert identifiers_in(metrics_text, patient_ids) == []
    text = log_text(log)
    assert text, "the worker wrote no log at INFO"
    leaked = identifiers_in(text, patient_ids)
    assert leaked == [], f"patient identifiers in the worker log: {leaked[:5]}"
    assert VALID_PREFIX.decode() + "7-" not in text
    assert SECRET not in text and SECRET not in metrics_text
    assert health_ok

    # Graceful shutdown: exit 0 and nothing read left uncommitted.
    assert exit_status == 0, f"worker exit status {exit_status} on SIGTERM"
    vitals_lag = asyncio.run(lag(settings, f"{settings.app_id}-monitor", [settings.topic_vitals]))
    vitals_lag.update(asyncio.run(lag(settings, settings.app_id, [settings.topic_acks])))
    raw_lag = min(asyncio.run(lag(settings, group, [settings.topic_raw]))[settings.topic_raw]
                  for group in (settings.app_id, f"{settings.app_id}-ingest"))
    assert raw_lag == 0 and not any(vitals_lag.values()), (raw_lag, vitals_lag)
