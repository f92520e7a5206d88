"""The monitor stage's bounded population, without a broker: the limit per record and
batch, eviction of long-silent patients, and what a recovering worker restores."""

from __future__ import annotations

import time

import orjson
import pytest

from vitalstream.alerts import AlertPolicy
from vitalstream.monitor import Monitor
from vitalstream.monitor_stage import STATE_KEY, MonitorStage
from vitalstream.samples import Sample, sample_row
from vitalstream.settings import Settings

pytestmark = [pytest.mark.oversight, pytest.mark.security]


def stage(limit: int = 3, evict_s: float = 3600) -> MonitorStage:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", max_patients=limit, evict_silent_after_s=evict_s)
    return MonitorStage(settings, Monitor(AlertPolicy()))


def rows(*patients: str) -> list[list]:
    return [list(sample_row(Sample(patient_id=p, ward="4B", bed="1", parameter="heart_rate", value=80,
                                   unit="/min", device_time_ms=1_000, source="t", ingest_time_ms=0)))
            for p in patients]


def test_new_patients_beyond_the_limit_are_not_scored_known_ones_are() -> None:
    s = stage(limit=3)
    s.monitor.process_rows(rows("known"))
    kept = s._within_limit(rows("known", "a", "b", "c", "d"))
    assert sorted(r[0] for r in kept) == ["a", "b", "known"]
    # The next record of the same batch: the two admitted count against the limit.
    assert [r[0] for r in s._within_limit(rows("known", "e"))] == ["known"]


def test_long_silent_patients_without_anything_open_are_evicted() -> None:
    s = stage(evict_s=60)
    s.monitor.process_rows(rows("quiet", "busy", "recent"))
    now = int(time.time() * 1000)
    s.seen_wall.update(quiet=now - 120_000, busy=now - 120_000, recent=now - 1_000)
    s.desk._state("busy").goals["do_not_escalate"] = {"until_ms": now + 10**9}
    s._evict_silent(now)
    assert sorted(s.monitor.patients) == ["busy", "recent"]


def test_recovery_restores_neither_long_silent_patients_nor_more_than_the_limit() -> None:
    s = stage(limit=2, evict_s=60)
    now = int(time.time() * 1000)

    def row(patient_id: str, seen_ms: int, **extra: object) -> tuple[int, bytes]:
        state = {"patient_id": patient_id, "alert_state": {}}
        return 0, orjson.dumps({"offset": 1, "state": state, "seen_ms": seen_ms, **extra})

    latest = {STATE_KEY + b"old": row("old", now - 120_000),
              STATE_KEY + b"old-open": row("old-open", now - 120_000, oversight={"alerts": {}}),
              STATE_KEY + b"new": row("new", now - 1_000), STATE_KEY + b"newer": row("newer", now - 500),
              b"e|old": (0, b"x"), b"e|newer": (0, b"y")}
    kept = s._restorable(latest)
    assert set(kept) == {STATE_KEY + b"old-open", STATE_KEY + b"newer", b"e|newer"}
