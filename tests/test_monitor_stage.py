"""The monitor stage's guard around the core, without a broker: one patient whose
readings make the core fail does not stop the other patients of the batch."""

from __future__ import annotations

import asyncio

from simulators import SCENARIOS
from vitalstream import metrics
from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor
from vitalstream.monitor_stage import MonitorStage
from vitalstream.samples import sample_row
from vitalstream.settings import Settings


class PoisonedPolicy(AlertPolicy):
    """A policy with a fault that only one patient's readings reach."""

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
        stage = MonitorStage(Settings(kafka_bootstrap="127.0.0.1:1"), Monitor(policy, engine=FeatureEngine()))
        return stage._score([sample_row(s) for s in samples])  # the stage scores rows

    failed_before = metrics.MONITOR_ERRORS._value.get()
    result = asyncio.run(score())
    assert metrics.MONITOR_ERRORS._value.get() - failed_before == 1
    assert result.failed == {patients[0]: "ArithmeticError"}
    # Everyone else is scored exactly as in a batch without the failing patient.
    assert [(a.patient_id, a.time_ms, a.news2.total) for a in result.assessments] == \
        [(a.patient_id, a.time_ms, a.news2.total) for a in clean.assessments]
    assert [a.alert_id for a in result.alerts] == [a.alert_id for a in clean.alerts]
