"""Issue 23 items 1 and 5 through the real worker on the real broker: impossible values and
device times far ahead are refused with their reason, raise nothing, and move no clock.

One partition, live device times (the wall clock), three patients on it:
- ``trust-negative`` sends the reading that once scored "NEWS2 high" (HR -50, RR -3, SpO2
  -10 %, SBP -100, Temp -40) and 1e300, in every format: all dead-lettered
  ``implausible_value``, and no alert for them;
- ``trust-clock`` streams normal readings, then readings stamped 1 h and 5 years ahead
  (every format: dead-lettered ``future_time``) and one written straight onto ``vitals``
  past ingest (dropped and counted by the monitor), then deteriorates for real: a
  clinical alert must come, and none of its real readings may be dropped as late;
- ``trust-neighbour`` streams normal readings until a minute ago: it must not be told
  "no data" because of its neighbour's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson
import pytest
from faults.faultkit import Message, metric_or_zero, read_topic, send, wait_for

from simulators.formats import to_fhir_bundle, to_hl7_pcd01, to_json
from vitalstream.broker import EmbeddedBroker
from vitalstream.kafka import ensure_topics, producer
from vitalstream.process import WorkerProcess
from vitalstream.samples import CANONICAL_UNITS, Sample, sample_row
from vitalstream.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.faults, pytest.mark.broker]

MINUTE_MS = 60_000
NORMAL = {"heart_rate": 72.0, "resp_rate": 15.0, "spo2": 97.0, "systolic_bp": 124.0, "temperature": 36.8}
# NEWS2 3+3+3+3+2 = 14 on air: a high alert once it has held for a minute.
DETERIORATING = {"heart_rate": 140.0, "resp_rate": 30.0, "spo2": 85.0, "systolic_bp": 85.0, "temperature": 39.5}
IMPOSSIBLE = {"heart_rate": -50.0, "resp_rate": -3.0, "spo2": -10.0, "systolic_bp": -100.0, "temperature": -40.0}


def report(patient_id: str, bed: str, values: dict[str, float], time_ms: int) -> list[Sample]:
    return [Sample(patient_id, "4B", bed, parameter, value, CANONICAL_UNITS[parameter], time_ms,
                   f"mon-{bed}", 0) for parameter, value in values.items()]


def every_format(samples: list[Sample]) -> list[bytes]:
    return [to_json(samples), to_hl7_pcd01(samples), to_fhir_bundle(samples)]


@pytest.mark.timeout(180)
def test_impossible_and_future_readings_are_refused_and_move_no_clock(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    asyncio.run(ensure_topics(settings))
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 20 * MINUTE_MS
    messages: list[Message] = []

    def add(patient_id: str, raws: list[bytes]) -> None:
        messages.extend(Message(patient_id.encode(), raw, 0) for raw in raws)

    # Normal streaming for the clock patient and the neighbour, one report a minute.
    for minute in range(15):
        t_ms = start_ms + minute * MINUTE_MS
        add("trust-clock", [to_json(report("trust-clock", "1", NORMAL, t_ms))])
        add("trust-neighbour", [to_json(report("trust-neighbour", "2", NORMAL, t_ms))])
    impossible = [raw for parameter, value in IMPOSSIBLE.items()
                  for raw in every_format(report("trust-negative", "3", {parameter: value}, now_ms - MINUTE_MS))]
    impossible += every_format(report("trust-negative", "3", {"heart_rate": 1e300}, now_ms - MINUTE_MS))
    impossible.append(to_json(report("trust-negative", "3", IMPOSSIBLE, now_ms - MINUTE_MS)))
    add("trust-negative", impossible)
    future = [raw for ahead_ms in (3_600_000, 5 * 365 * 86_400_000)
              for raw in every_format(report("trust-clock", "1", NORMAL, now_ms + ahead_ms))]
    add("trust-clock", future)
    first_wave = len(messages)
    # Then the clock patient deteriorates (device time: the last five minutes), and the
    # neighbour reports on until a minute ago.
    later: list[Message] = []
    for minute in range(5):
        t_ms = now_ms - (5 - minute) * MINUTE_MS + 30_000
        later.append(Message(b"trust-clock", to_json(report("trust-clock", "1", DETERIORATING, t_ms)), 0))
        later.append(Message(b"trust-neighbour", to_json(report("trust-neighbour", "2", NORMAL, t_ms - 30_000)), 0))

    worker = WorkerProcess(broker.bootstrap, env={"VITALSTREAM_TOPIC_PARTITIONS": "1"}).start()
    try:
        asyncio.run(send(settings, messages))
        assert wait_for(lambda: metric_or_zero(worker, "vitalstream_messages_in_total") >= first_wave, 60)
        # Past ingest: a row an hour ahead straight onto vitals (a forged or buggy writer).
        asyncio.run(write_vitals(settings, report("trust-clock", "1", {"heart_rate": 75.0}, now_ms + 3_600_000)))
        asyncio.run(send(settings, later))
        total = first_wave + len(later)
        assert wait_for(lambda: metric_or_zero(worker, "vitalstream_messages_in_total") >= total, 60)
        alerts = asyncio.run(read_topic(settings, settings.topic_alerts, lambda got: any(
            orjson.loads(r.value)["patient_id"] == "trust-clock" for r in got), 60))
        letters = asyncio.run(read_topic(settings, settings.topic_deadletter,
                                         lambda got: len(got) >= len(impossible) + len(future), 30))
        # Two stale checks (every 10 s) after the last reading: a neighbour made stale by
        # a clock an hour ahead would be told "no data" by now.
        time.sleep(21)
        alerts = asyncio.run(read_topic(settings, settings.topic_alerts, lambda got: False, 3))
        late = worker.metric("vitalstream_late_samples_dropped_total")
        dropped = worker.metric("vitalstream_future_readings_dropped_total")
    finally:
        worker.stop()

    reasons = Counter(orjson.loads(r.value)["reason"] for r in letters)
    assert reasons == {"implausible_value": len(impossible), "future_time": len(future)}, reasons
    details = [orjson.loads(r.value)["detail"] for r in letters]
    assert any("resp_rate -3" in d for d in details) and any("1e+300" in d for d in details)
    assert late == 0, "real readings were dropped as late after a reading from the future"
    raised = [orjson.loads(r.value) for r in alerts]
    assert not [a for a in raised if a["patient_id"] == "trust-negative"], "an impossible value alerted"
    clinical = [a for a in raised if a["patient_id"] == "trust-clock" and a["kind"] == "clinical"]
    assert clinical and clinical[0]["priority"] == "high", "the real deterioration raised no clinical alert"
    assert all(a["device_time_ms"] <= now_ms for a in raised), "an alert carries a time from the future"
    no_data = [a for a in raised if a["kind"] == "technical" and a["payload"].get("technical") == "no_data"]
    assert not no_data, f"false no-data alerts: {[a['patient_id'] for a in no_data]}"
    assert dropped == 1, "the row past ingest was not dropped by the monitor"


async def write_vitals(settings: Settings, samples: list[Sample]) -> None:
    out = producer(settings)
    await out.start()
    try:
        record = {"rows": [list(sample_row(s)) for s in samples]}
        await out.send_and_wait(settings.topic_vitals, orjson.dumps(record), partition=0)
    finally:
        await out.stop()
