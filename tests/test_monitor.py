"""The pure monitor: batches in, alerts out, with no broker and no clock."""

from __future__ import annotations

import zlib

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_monitor import ReferenceMonitor

from simulators import SCENARIOS
from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor, due, next_due
from vitalstream.samples import CANONICAL_UNITS, Sample


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


def test_a_state_row_written_from_the_records_is_the_exported_state_byte_for_byte() -> None:
    # The worker writes state rows with orjson straight from the dataclasses (for_orjson);
    # a restarted worker reads them as export()'s dict. Every field of a ward that raised
    # alerts (open alerts, pending conditions, histories, settings) must come out the same.
    monitor = Monitor(AlertPolicy(), engine=FeatureEngine())
    monitor.process(list(SCENARIOS["smoke"].cohort().samples()))
    states = [monitor.patients[p].alert_state for p in monitor.patients]
    assert any(s.clinical or s.technical for s in states) and any(s.pending for s in states)
    for patient_id, record in monitor.patients.items():
        assert orjson.dumps({"offset": 7, "state": record.for_orjson()}) == \
            orjson.dumps({"offset": 7, "state": monitor.export(patient_id, engine=False)})


class RemembersEverything(ReferenceMonitor):
    """The reference monitor, never telling the policy which values changed (the policy
    then checks every observation): what the compiled core remembers must come out the same."""

    def assess(self, record):  # type: ignore[no-untyped-def]
        assessment = super().assess(record)
        assessment.changed = None
        return assessment


def test_telling_the_policy_what_changed_remembers_the_same_as_checking_every_value() -> None:
    samples = list(SCENARIOS["smoke"].cohort().samples())
    exact = Monitor(AlertPolicy(), engine=FeatureEngine())
    full = RemembersEverything(AlertPolicy(), engine=FeatureEngine())  # (the oracle)
    alerts = [[], []]
    for start in range(0, len(samples), 501):
        for monitor, out in zip((exact, full), alerts, strict=True):
            out.extend(monitor.process(samples[start:start + 501]).alerts)
    assert alerts[0] and alert_keys(alerts[0]) == alert_keys(alerts[1])
    assert exact.patients.keys() == full.patients.keys()
    for patient_id, record in exact.patients.items():
        assert record.alert_state.to_dict() == full.patients[patient_id].alert_state.to_dict()
    assert any(state.alert_state.last_gap for state in exact.patients.values())


def risks_by_time(monitor: Monitor, samples: list, step: int) -> dict[tuple[str, int], tuple]:
    """Risks of the assessments, the samples given ``step`` at a time, never splitting the
    readings of one device time (a gateway message keeps them together)."""
    out, piece = {}, []
    for index, sample in enumerate(samples):
        piece.append(sample)
        following = samples[index + 1] if index + 1 < len(samples) else None
        if following is None or (len(piece) >= step and following.device_time_ms != sample.device_time_ms):
            for assessment in monitor.process(piece).assessments:
                out[(assessment.patient_id, assessment.time_ms)] = (assessment.risk, assessment.risk_ms)
            piece = []
    return out


def test_risk_is_computed_once_a_minute_per_patient_and_carried_with_its_time_whatever_the_batching() -> None:
    from vitalstream.scoring.model import RiskModel

    model = RiskModel.load(None)
    samples = list(SCENARIOS["smoke"].cohort().samples())[:20_000]
    at_once = risks_by_time(Monitor(AlertPolicy(), engine=FeatureEngine(), model=model), samples, len(samples))
    in_pieces = risks_by_time(Monitor(AlertPolicy(), engine=FeatureEngine(), model=model), samples, 97)
    assert at_once == in_pieces
    scored = {(patient, ms) for (patient, _), (risk, ms) in at_once.items() if risk is not None}
    assert scored, "the smoke ward's patients have features: some risk is expected"
    for patient in {p for p, _ in scored}:
        # At most once per minute of the patient's own phase (patients admitted together
        # do not all come due in one batch).
        phase = zlib.crc32(patient.encode()) % 60_000
        minutes = [(ms + phase) // 60_000 for ms in sorted(ms for p, ms in scored if p == patient)]
        assert minutes == sorted(set(minutes)), minutes[:5]
        assert len(minutes) > 1
    # Every assessment in between shows the risk of the latest computation at or before it.
    for (patient, time_ms), (risk, risk_ms) in at_once.items():
        if risk is not None:
            assert risk_ms <= time_ms and (patient, risk_ms) in scored
            assert at_once[(patient, risk_ms)][0] == risk


def test_cached_news2_is_the_chart_score_of_the_same_values() -> None:
    import random

    from vitalstream.scoring.news2 import news2, news2_cached

    rng = random.Random(5)
    for _ in range(3000):
        observed = {name: (value, 0) for name, value in {
            "resp_rate": rng.choice([None, rng.randint(4, 40), round(rng.uniform(4, 40), 1)]),
            "spo2": rng.choice([None, rng.randint(80, 100)]),
            "on_oxygen": rng.choice([None, True, False]),
            "systolic_bp": rng.choice([None, rng.randint(60, 240)]),
            "heart_rate": rng.choice([None, rng.randint(30, 180)]),
            "consciousness": rng.choice([None, "A", "C", "V", "P", "U"]),
            "temperature": rng.choice([None, round(rng.uniform(34, 41), 1), round(rng.uniform(34, 41), 2)]),
        }.items() if value is not None}
        scale = rng.choice([1, 2])
        expected = news2({**{k: v for k, (v, _) in observed.items()}, "spo2_scale": scale})
        assert news2_cached(observed, scale) == expected


class EveryFeatureRow(ReferenceMonitor):
    """The reference monitor giving every assessment its feature row, as it did before rows
    were computed only where something may read them."""

    def _expects_bed_state(self, record, assessment):  # type: ignore[no-untyped-def]
        return True


def published(monitor: Monitor, samples: list, step: int) -> tuple[list, list, list]:
    """Everything the worker publishes of these samples, ``step`` at a time: the alerts'
    messages (payloads with trends and features), bed states (with trends), and each
    assessment's risk with its time."""
    alerts, states, risks = [], [], []
    for start in range(0, len(samples), step):
        result = monitor.process(samples[start:start + step])
        alerts += [orjson.loads(orjson.dumps(a.to_dict())) for a in result.alerts]
        states += monitor.bed_states(result.assessments)
        risks += [(a.patient_id, a.time_ms, a.risk, a.risk_ms) for a in result.assessments]
    return alerts, states, risks


def test_feature_rows_only_where_read_publish_the_same_as_rows_for_every_assessment() -> None:
    from vitalstream.alerts.policy import PolicyConfig
    from vitalstream.scoring.model import RiskModel

    model = RiskModel.load(None)
    samples = list(SCENARIOS["smoke"].cohort().samples())
    for config in (PolicyConfig(), PolicyConfig(risk_thresholds={"medium": 0.2, "high": 0.4})):
        for step in (len(samples), 501):
            lazy = published(Monitor(AlertPolicy(config), engine=FeatureEngine(), model=model), samples, step)
            full = published(EveryFeatureRow(AlertPolicy(config), engine=FeatureEngine(), model=model),
                             samples, step)
            alerts, states, risks = lazy
            assert alerts and any(a["payload"].get("trends") for a in alerts)
            assert states and any(s["trends_per_h"] for s in states)
            assert any(risk is not None for *_, risk, _ in risks)
            assert lazy == full


def test_a_quiet_ward_computes_few_feature_rows() -> None:
    # What the change is for: a ward of stable patients (each reporting one of five values
    # a second) needs a feature row for the risk model once a minute and a bed state once
    # a minute, not at each of its 60 assessments a minute.
    normal = {"heart_rate": 75.0, "resp_rate": 16.0, "spo2": 97.0, "systolic_bp": 125.0, "temperature": 36.9}
    names = list(normal)
    t0_ms = 1_790_000_000_000
    samples = [Sample(patient_id=f"p{patient}", ward="5A", bed=str(patient), parameter=names[second % 5],
                      value=normal[names[second % 5]] + (second % 3) * 0.5,
                      unit=CANONICAL_UNITS[names[second % 5]], device_time_ms=t0_ms + second * 1000,
                      source="test", ingest_time_ms=t0_ms + second * 1000)
               for second in range(600) for patient in range(50)]
    from vitalstream.scoring.model import RiskModel

    monitor = Monitor(AlertPolicy(), engine=FeatureEngine(), model=RiskModel.load(None))
    asked = []
    original = monitor.engine.features_of

    def counting(slots, now_s=None):  # type: ignore[no-untyped-def]
        asked.append(len(slots))
        return original(slots, now_s)

    monitor.engine.features_of = counting  # type: ignore[method-assign]
    assessments = 0
    for start in range(0, len(samples), 500):
        result = monitor.process(samples[start:start + 500])
        assert not result.alerts
        monitor.bed_states(result.assessments)
        assessments += len(result.assessments)
    assert assessments == len(samples)
    assert 0 < sum(asked) < assessments / 10


def test_the_monitor_builds_assessments_and_reads_rows_in_their_field_order() -> None:
    # Monitor._make passes an Assessment's fields by position (keywords took twice as
    # long), and Monitor.process_rows unpacks sample rows whole: the orders they rely on.
    import dataclasses

    from vitalstream.alerts import Assessment
    from vitalstream.samples import SAMPLE_FIELDS

    assert SAMPLE_FIELDS == ("patient_id", "ward", "bed", "parameter", "value", "unit", "device_time_ms",
                             "source", "ingest_time_ms", "source_code", "artefact")
    assert [f.name for f in dataclasses.fields(Assessment)] == [
        "patient_id", "ward", "bed", "time_ms", "news2", "observations", "features", "risk", "risk_ms",
        "model_version", "risk_factors", "stale", "spo2_scale", "explain", "changed", "bed_state"]


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=12), st.integers(0, 2**45), st.integers(0, 10**8),
       st.sampled_from([0, 1, 1000, 60_000, 3_600_000]))
def test_next_due_is_when_due_turns_true(patient_id: str, last_ms: int, later_ms: int, interval_ms: int) -> None:
    # The risk is checked with next_due (one comparison); it must agree with due.
    now_ms = last_ms + later_ms
    assert due(patient_id, last_ms, now_ms, interval_ms) == (now_ms >= next_due(patient_id, last_ms, interval_ms))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.integers(0, 5)), max_size=40), st.booleans())
def test_waves_in_one_pass_are_the_sorted_waves(readings: list, in_order: bool) -> None:
    # Wave k holds each patient's readings of their k-th reading time, in arrival order.
    if in_order:
        readings = sorted(readings, key=lambda r: r[1])
    rows = [[patient, "5A", "1", "heart_rate", float(i), "/min", 1000 * second, "t", 0, "", False]
            for i, (patient, second) in enumerate(readings)]
    monitor = Monitor(AlertPolicy())
    pids = [row[0] for row in rows]
    for patient_id in dict.fromkeys(pids):
        monitor._admit(patient_id, "5A", "1", 0)
    slots = np.array([monitor.patients[p].slot for p in pids], dtype=np.int64)
    times = np.array([row[6] for row in rows], dtype=np.int64)

    def by_patient(sort: bool) -> list:
        order, wave = monitor._wave_order(pids, slots, times, sort)
        waves: list[list] = [[] for _ in range(int(wave.max()) + 1)] if len(rows) else []
        for i in order.tolist():
            waves[wave[i]].append(rows[i])
        return [sorted((row[0], row[4]) for row in w) for w in waves]

    assert by_patient(False) == by_patient(True)
