"""The pure monitor: batches in, alerts out, with no broker and no clock."""

from __future__ import annotations

import orjson

from simulators import SCENARIOS
from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor


def alert_keys(alerts) -> list[tuple]:
    return [(a.alert_id, a.status, a.priority, a.device_time_ms, a.summary) for a in alerts]


def test_alerts_do_not_depend_on_how_the_broker_batched_the_samples() -> None:
    # A fast replay hands the monitor hours of readings in one batch; live, it sees a few
    # seconds at a time. A nurse must get the same alerts either way.
    cohort = SCENARIOS["smoke"].cohort()
    samples = list(cohort.samples())
    one_batch = Monitor(AlertPolicy(), engine=FeatureEngine())
    many_batches = Monitor(AlertPolicy(), engine=FeatureEngine())
    at_once = one_batch.process(samples).alerts
    in_pieces = []
    for start in range(0, len(samples), 97):
        in_pieces.extend(many_batches.process(samples[start:start + 97]).alerts)
    assert at_once, "the smoke ward has deteriorating patients: some alert is expected"
    assert alert_keys(sorted(at_once, key=lambda a: (a.device_time_ms, a.patient_id))) == \
        alert_keys(sorted(in_pieces, key=lambda a: (a.device_time_ms, a.patient_id)))


def test_exported_state_restores_a_patient_that_alerts_the_same_afterwards() -> None:
    # A restarted worker rebuilds each patient from the changelog table.
    cohort = SCENARIOS["smoke"].cohort()
    samples = list(cohort.samples())
    half = len(samples) // 2
    original = Monitor(AlertPolicy(), engine=FeatureEngine())
    original.process(samples[:half])
    restored = Monitor(AlertPolicy(), engine=FeatureEngine())
    for patient_id in list(original.patients):
        restored.restore(orjson.loads(orjson.dumps(original.export(patient_id))))
    assert alert_keys(original.process(samples[half:]).alerts) == \
        alert_keys(restored.process(samples[half:]).alerts)
