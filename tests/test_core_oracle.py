"""The compiled per-reading core against its specification: the Python per-reading path of
``reference_monitor.ReferenceMonitor`` (today's policy, assessed reading by reading). The
same alerts (ids, statuses, summaries, payloads), the same bed states and the same state,
on the simulated ward and on generated streams, whatever the batching."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_monitor import ReferenceMonitor

from simulators import SCENARIOS
from vitalstream.alerts import AlertPolicy, PolicyConfig
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor
from vitalstream.samples import CANONICAL_UNITS, Sample


def alerts_of(alerts) -> list[bytes]:
    return [orjson.dumps(a.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
            for a in alerts]


def run(monitor, samples, step: int, acks: bool = False) -> tuple[list[bytes], list[bytes]]:
    """Alerts and bed states of the samples given ``step`` at a time (as the stage calls the
    monitor: process, then bed states of the assessments), acknowledging each raised alert
    the batch after it if ``acks``."""
    alerts, states, to_ack = [], [], []
    for start in range(0, len(samples), step):
        for alert in to_ack:
            alerts.extend(monitor.acknowledge(alert.patient_id, alert.alert_id, "Nurse A", alert.device_time_ms + 1))
        result = monitor.process(samples[start:start + step])
        alerts.extend(result.alerts)
        states.extend(orjson.dumps(s, option=orjson.OPT_SORT_KEYS) for s in monitor.bed_states(result.assessments))
        to_ack = [a for a in result.alerts if a.status == "raised"] if acks else []
    return alerts_of(alerts), states


def state_of(monitor) -> dict:
    return {p: orjson.loads(orjson.dumps(monitor.export(p, engine=False))) for p in sorted(monitor.patients)}


def same_state(new: dict, reference: dict) -> None:
    assert new.keys() == reference.keys()
    for patient_id in new:
        assert new[patient_id] == reference[patient_id], patient_id


@pytest.mark.parametrize("step", [97, 1009, 10**9])
def test_the_ward_gives_the_reference_alerts_bed_states_and_state(step: int) -> None:
    samples = list(SCENARIOS["smoke"].cohort().samples())
    new, reference = Monitor(AlertPolicy(), engine=FeatureEngine()), ReferenceMonitor(AlertPolicy(), engine=FeatureEngine())
    got, expected = run(new, samples, step, acks=True), run(reference, samples, step, acks=True)
    assert expected[0], "the smoke ward has deteriorating patients: some alert is expected"
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    same_state(state_of(new), state_of(reference))


def test_the_ward_with_the_risk_model_gives_the_reference_alerts() -> None:
    from vitalstream.scoring.model import RiskModel

    model = RiskModel.load(None)
    samples = list(SCENARIOS["smoke"].cohort().samples())[:30_000]
    config = PolicyConfig()
    new = Monitor(AlertPolicy(config), engine=FeatureEngine(), model=model)
    reference = ReferenceMonitor(AlertPolicy(config), engine=FeatureEngine(), model=model)
    got, expected = run(new, samples, 499), run(reference, samples, 499)
    assert got == expected
    same_state(state_of(new), state_of(reference))


PARAMETERS = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature", "consciousness",
              "on_oxygen", "diastolic_bp", "spo2_scale")


@st.composite
def streams(draw) -> list[Sample]:
    """A few patients' readings over hours: values across every NEWS2 band, gaps that make
    inputs stale, artefacts, SpO2 scale changes, readings out of order within a batch."""
    n = draw(st.integers(1, 120))
    out = []
    t = 1_773_569_700_000
    for _ in range(n):
        t += draw(st.sampled_from([0, 1000, 5000, 60_000, 400_000, 2_000_000]))
        patient = draw(st.sampled_from(["p1", "p2", "p3"]))
        parameter = draw(st.sampled_from(PARAMETERS))
        if parameter == "consciousness":
            value = draw(st.sampled_from(["A", "A", "C", "V"]))
        elif parameter == "on_oxygen":
            value = draw(st.booleans())
        elif parameter == "spo2_scale":
            value = draw(st.sampled_from([1, 2]))
        else:
            low, high = {"heart_rate": (30, 150), "resp_rate": (5, 32), "spo2": (80, 100),
                         "systolic_bp": (80, 230), "temperature": (34.5, 40.0), "diastolic_bp": (40, 110)}[parameter]
            value = round(draw(st.floats(low, high)), 1)
        late = draw(st.sampled_from([0, 0, 0, 0, 3000]))
        out.append(Sample(patient, "4B", patient[-1], parameter, value, CANONICAL_UNITS[parameter], t - late,
                          "gen", t, artefact=draw(st.sampled_from([False] * 9 + [True]))))
    return out


@settings(max_examples=60, deadline=None)
@given(streams(), st.sampled_from([1, 7, 1000]), st.booleans())
def test_generated_streams_give_the_reference_alerts_and_state(samples, step, engine) -> None:
    config = PolicyConfig(persistence_s={"high": 0, "medium": 60, "low": 120}, resolve_after_s=600)
    new = Monitor(AlertPolicy(config), engine=FeatureEngine() if engine else None,
                  bed_state_interval_s=300)
    reference = ReferenceMonitor(AlertPolicy(config), engine=FeatureEngine() if engine else None,
                                 bed_state_interval_s=300)
    assert run(new, samples, step, acks=True) == run(reference, samples, step, acks=True)
    same_state(state_of(new), state_of(reference))
    later = max(s.device_time_ms for s in samples) + 3_600_000
    assert alerts_of(new.check_stale(later)) == alerts_of(reference.check_stale(later))


def test_the_compiled_news2_is_the_chart() -> None:
    # Every rounded value of each parameter's range, on both SpO2 scales, with and without
    # oxygen: the core's total, red score and band are news2()'s.
    import numpy as np

    from vitalstream import monitor_kernel as K
    from vitalstream.scoring.news2 import BANDS, news2

    names = K.WINDOWED
    ranges = {"resp_rate": np.arange(0, 60, 0.5), "spo2": np.arange(70, 101, 0.5),
              "systolic_bp": np.arange(50, 260, 0.5), "heart_rate": np.arange(20, 200, 0.5),
              "temperature": np.arange(33, 42, 0.05)}
    for parameter, grid in ranges.items():
        for scale in (1, 2):
            for oxygen in (False, True):
                for value in grid:
                    value = float(round(value, 2))
                    values = np.zeros(len(names))
                    present = np.zeros(len(names), dtype=np.bool_)
                    values[names.index(parameter)] = value
                    present[names.index(parameter)] = True
                    values[names.index("on_oxygen")] = float(oxygen)
                    present[names.index("on_oxygen")] = True
                    present[names.index("consciousness")] = True
                    total, red, band = K.news2_of(values, present, scale)
                    expected = news2({parameter: value, "on_oxygen": oxygen, "consciousness": "A",
                                      "spo2_scale": scale})
                    assert (total, bool(red), BANDS[band]) == (expected.total, expected.red_score, expected.band), \
                        (parameter, value, scale, oxygen)
