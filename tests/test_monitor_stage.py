"""The monitor stage's guard around the core, without a broker: one patient whose
readings make the core fail does not stop the other patients of the batch."""

from __future__ import annotations

import asyncio
import copy

from simulators import SCENARIOS
from vitalstream import metrics, monitor_stage
from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor
from vitalstream.monitor_stage import MonitorStage
from vitalstream.samples import sample_row
from vitalstream.settings import Settings


class PoisonedPolicy(AlertPolicy):
    """A policy with a fault that only one patient's readings reach. Quiet readings never
    reach the Python policy (the compiled core takes them), so the poisoned patient has a
    setting (an SpO2 scale): every one of its readings takes the policy's full path."""

    def assess(self, state, assessment):  # type: ignore[no-untyped-def]
        if assessment.patient_id == self.poisoned:
            raise ArithmeticError("a fault the core did not foresee")
        return super().assess(state, assessment)


def test_a_patient_whose_readings_fail_the_core_is_left_out_and_the_others_are_scored() -> None:
    samples = list(SCENARIOS["smoke"].cohort().samples())[:5000]
    patients = sorted({s.patient_id for s in samples})
    policy = PoisonedPolicy()
    policy.poisoned = patients[0]
    clean = Monitor(AlertPolicy(), engine=FeatureEngine()).process(
        [s for s in samples if s.patient_id != patients[0]])

    async def score() -> object:
        monitor = Monitor(policy, engine=FeatureEngine())
        monitor.configure(patients[0], {"spo2_scale": 1, "reason": "test", "set_at_ms": samples[0].device_time_ms,
                                        "actor": {"user_id": "u-1", "role": "physician", "name": "Dr A"}})
        stage = MonitorStage(Settings(kafka_bootstrap="127.0.0.1:1"), monitor)
        return stage._score([sample_row(s) for s in samples])  # the stage scores rows

    failed_before = metrics.MONITOR_ERRORS._value.get()
    result = asyncio.run(score())
    assert metrics.MONITOR_ERRORS._value.get() - failed_before == 1
    assert result.failed == {patients[0]: "ArithmeticError"}
    # Everyone else is scored exactly as in a batch without the failing patient.
    assert [(a.patient_id, a.time_ms, a.news2.total) for a in result.assessments] == \
        [(a.patient_id, a.time_ms, a.news2.total) for a in clean.assessments]
    assert [a.alert_id for a in result.alerts] == [a.alert_id for a in clean.alerts]



def test_feature_snapshots_packed_in_the_thread_are_the_ones_packed_inline_and_restore(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Many snapshots due at once are compressed in the stage's thread; the rows are the
    same bytes as when compressed inline, and each restores the patient's buffers."""
    samples = list(SCENARIOS["smoke"].cohort().samples())[:5000]
    patients = sorted({s.patient_id for s in samples})
    assert len(patients) >= 8

    # Both packings start from copies of one monitor: a snapshot carries the engine's
    # buffers as they are, and bucket fields a patient never wrote are whatever memory
    # np.empty gave (in a long test run, not zeros), so two engines fed the same samples
    # need not give the same bytes. The same state must pack to the same bytes both ways.
    processed = Monitor(AlertPolicy(), engine=FeatureEngine())
    processed.process(samples)

    async def engine_rows(thread_from: int) -> tuple[dict[bytes, bytes], Monitor, bool]:
        monkeypatch.setattr(monitor_stage, "PACK_IN_THREAD_FROM", thread_from)
        monitor = copy.deepcopy(processed)
        stage = MonitorStage(Settings(kafka_bootstrap="127.0.0.1:1"), monitor)
        used: list[bool] = []
        submit = stage.packer.submit
        monkeypatch.setattr(stage.packer, "submit", lambda *a, **k: used.append(True) or submit(*a, **k))
        try:
            written = await stage.state_rows(patients, set(patients))
        finally:
            stage.packer.shutdown()
        return {key: value for _, key, value, _ in written if key.startswith(b"e|")}, monitor, bool(used)

    threaded, monitor, thread_used = asyncio.run(engine_rows(1))
    inline, _, inline_used_thread = asyncio.run(engine_rows(10**9))
    assert thread_used and not inline_used_thread
    assert len(threaded) == len(patients) and threaded == inline
    assert monitor.engine is not None
    for key, snapshot in threaded.items():
        patient_id = key[2:].decode()
        fresh = FeatureEngine()
        fresh.restore(patient_id, snapshot)
        assert fresh.snapshot_body(patient_id) == monitor.engine.snapshot_body(patient_id)
