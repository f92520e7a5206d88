"""A faulty gateway floods the worker with readings for thousands of patient ids it has
never seen: the worker's monitored population stays at its limit, its memory bounded, the
flood is counted, and a known patient's deterioration still alerts on time."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from faults.faultkit import Message, send
from oversightkit import alerts_until, deteriorated, of_status
from oversightkit import send as send_values

from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.faults, pytest.mark.security]

LIMIT = 50
FLOOD_PATIENTS = 20_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def flood(now_ms: int) -> list[Message]:
    """2,000 messages of ten readings, each reading a patient id never seen before."""
    messages = []
    for m in range(FLOOD_PATIENTS // 10):
        rows = [{"patient_id": f"ghost-{m}-{k}", "ward": "4B", "bed": str(k), "parameter": "heart_rate",
                 "value": 80, "device_time_ms": now_ms, "source": "faulty-gateway"} for k in range(10)]
        messages.append(Message(f"ghost-{m}".encode(), orjson.dumps(rows), 10))
    return messages


def test_flood_of_unknown_ids_leaves_memory_bounded_and_known_alerts_on_time(
        settings: Settings, tmp_path: Path) -> None:
    env = {"VITALSTREAM_MAX_PATIENTS": str(LIMIT)}
    with WorkerProcess(settings.kafka_bootstrap, env=env, log_path=tmp_path / "worker.log") as worker:
        now = int(time.time() * 1000)
        known = [Message(f"p-{i}".encode(), orjson.dumps([{
            "patient_id": f"p-{i}", "ward": "4B", "bed": str(i), "parameter": name, "value": value,
            "device_time_ms": now - 1_800_000, "source": "monitor"} for name, value in
            (("heart_rate", 72), ("resp_rate", 15), ("spo2", 98))]), 3) for i in range(5)]
        import asyncio

        asyncio.run(send(settings, known))
        deadline = time.monotonic() + 60
        while worker.metric("vitalstream_patients_monitored") < 5 and time.monotonic() < deadline:
            time.sleep(0.3)
        before_mb = rss_mb(worker.process.pid)
        asyncio.run(send(settings, flood(now)))
        deadline = time.monotonic() + 90
        while ((worker.metric("vitalstream_patients_over_limit_total") < FLOOD_PATIENTS - (LIMIT - 5)
                or worker.metric("vitalstream_patients_monitored") < LIMIT) and time.monotonic() < deadline):
            time.sleep(0.5)
        assert worker.metric("vitalstream_patients_monitored") == LIMIT
        assert worker.metric("vitalstream_patients_limit") == LIMIT
        refused = worker.metric("vitalstream_patients_over_limit_total")
        assert refused == FLOOD_PATIENTS - (LIMIT - 5), "every reading of a patient over the limit is counted"
        grown_mb = rss_mb(worker.process.pid) - before_mb
        # Admitting 20,000 patients costs about 2 GB here (100 KB each); the limit holds it flat.
        assert grown_mb < 150, f"the worker grew {grown_mb:.0f} MB under the flood"

        sent_s = time.time()
        send_values(settings, settings.topic_raw, *deteriorated("p-1", "4B", "1"), key=b"p-1")
        got = alerts_until(settings, lambda a: [x for x in of_status(a, "raised") if x["patient_id"] == "p-1"], 30)
        [raised] = [x for x in of_status(got, "raised") if x["patient_id"] == "p-1"]
        seen_s = time.time() - sent_s
        assert seen_s < 10, f"a known patient's alert took {seen_s:.1f} s under the flood"
        assert not [x for x in got if x["patient_id"].startswith("ghost-")], "no alert for an invented id"
        assert raised["ward"] == "4B"
