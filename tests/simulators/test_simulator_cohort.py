"""The simulated cohort: reproducible, labelled, and physiologically coherent enough that
NEWS2 rises before deterioration events while stable patients mostly stay low."""

from __future__ import annotations

import collections
import statistics
from itertools import pairwise

import numpy as np
import pytest

from simulators import ARCHETYPES, SCENARIOS, Cohort, generate_cohort
from vitalstream.samples import decode_sample, encode_sample
from vitalstream.scoring.news2 import news2

HOUR_MS = 3_600_000


def spot_sets(cohort: Cohort) -> dict[str, list[tuple[int, dict]]]:
    """Each patient's nurse observation sets (spot checks carry all NEWS2 parameters)."""
    sets: dict[str, dict[int, dict]] = collections.defaultdict(dict)
    for sample in cohort.samples():
        if sample.source.startswith("obs-"):
            sets[sample.patient_id].setdefault(sample.device_time_ms, {})[sample.parameter] = sample.value
    return {pid: sorted(by_time.items()) for pid, by_time in sets.items()}


@pytest.fixture(scope="module")
def mixed() -> Cohort:
    # Half deteriorating so every archetype appears several times, 36 h so courses fit.
    return generate_cohort(60, hours=36, seed=5, deteriorating_fraction=0.5)


def test_same_seed_same_cohort_and_patients_do_not_depend_on_cohort_size() -> None:
    a = generate_cohort(6, hours=2, seed=9, deteriorating_fraction=0.0)
    b = generate_cohort(6, hours=2, seed=9, deteriorating_fraction=0.0)
    bigger = generate_cohort(8, hours=2, seed=9, deteriorating_fraction=0.0)
    assert list(a.samples()) == list(b.samples())
    assert a.to_dict() == b.to_dict()
    first = [s for s in bigger.samples() if s.patient_id == "sim-9-0000"]
    assert first == [s for s in a.samples() if s.patient_id == "sim-9-0000"]
    other_seed = generate_cohort(6, hours=2, seed=10, deteriorating_fraction=0.0)
    assert [p.baseline for p in other_seed.patients] != [p.baseline for p in a.patients]


def test_named_scenarios_match_the_issue() -> None:
    ward = SCENARIOS["ward"].cohort()
    assert (len(ward.patients), ward.hours) == (200, 48.0)
    assert 0.10 <= len(ward.events()) / 200 <= 0.15
    assert {e["archetype"] for e in ward.events()} == set(ARCHETYPES)
    smoke = SCENARIOS["smoke"].cohort()
    assert 8 <= len(smoke.patients) <= 12 and len(smoke.events()) >= 2


@pytest.mark.parametrize("name", ["ward", "smoke", "demo"])
def test_events_are_labelled_inside_the_window(name: str) -> None:
    cohort = SCENARIOS[name].cohort()
    span = cohort.end_ms - cohort.start_ms
    for event in cohort.events():
        # Between 30 % and 95 % of the window, so a lead time before it can be measured.
        assert cohort.start_ms + 0.3 * span <= event["event_ms"] <= cohort.start_ms + 0.95 * span
        assert cohort.start_ms <= event["onset_ms"] < event["event_ms"]
    labels = cohort.to_dict()
    assert labels["events"] == cohort.events()
    assert len(labels["patients"]) == len(cohort.patients)
    assert labels["patient_days"] < len(cohort.patients) * cohort.hours / 24 + 1e-9


def test_samples_are_canonical_and_in_device_time_order() -> None:
    cohort = SCENARIOS["smoke"].cohort()
    samples = list(cohort.samples())
    assert all(a.device_time_ms <= b.device_time_ms for a, b in pairwise(samples))
    assert all(decode_sample(encode_sample(s)) == s for s in samples[:: max(1, len(samples) // 500)])
    ends = {p.patient_id: p.end_ms for p in cohort.patients}
    # A deteriorating patient leaves the ward (ICU) after the event: no data afterwards.
    assert all(cohort.start_ms <= s.device_time_ms < ends[s.patient_id] for s in samples)
    reports = list(cohort.reports())
    assert sum(map(len, reports)) == len(samples)
    assert all(len({(s.patient_id, s.source, s.device_time_ms) for s in r}) == 1 for r in reports)


def test_news2_rises_before_events_and_stable_patients_stay_low(mixed: Cohort) -> None:
    sets = spot_sets(mixed)
    rose = 0
    for patient in mixed.patients:
        if not patient.deteriorating:
            continue
        scores = [(t, news2(obs).total) for t, obs in sets[patient.patient_id]]
        late = [s for t, s in scores if patient.event_ms - 3 * HOUR_MS <= t <= patient.event_ms]
        rose += bool(late) and max(late) >= 5
    deteriorating = sum(p.deteriorating for p in mixed.patients)
    # Most deteriorating patients reach a medium NEWS2 in the 3 h before the event.
    assert rose >= 0.8 * deteriorating
    typical = [news2(obs).total for p in mixed.patients if not p.deteriorating and p.profile == "typical"
               for _, obs in sets[p.patient_id]]
    # Stable patients with ordinary baselines: almost all observation sets score 0-4.
    assert np.mean(np.array(typical) <= 4) >= 0.97


@pytest.mark.parametrize("archetype", ARCHETYPES)
def test_archetypes_move_the_vital_signs_their_way(archetype: str) -> None:
    cohort = generate_cohort(8, hours=36, seed=21, deteriorating_fraction=1.0, archetypes=(archetype,))
    sets = spot_sets(cohort)
    first, last = collections.defaultdict(list), collections.defaultdict(list)
    for patient in cohort.patients:
        observations = [obs for t, obs in sets[patient.patient_id] if t <= patient.event_ms]
        before_onset = [obs for t, obs in sets[patient.patient_id] if t <= patient.onset_ms + HOUR_MS]
        start, end = (before_onset or observations)[0], observations[-1]
        for name in ("heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature"):
            first[name].append(start[name])
            last[name].append(end[name])
        last["consciousness"].append(end["consciousness"])
        last["on_oxygen"].append(any(obs["on_oxygen"] for obs in observations))

    def change(name: str) -> float:
        return statistics.median(b - a for a, b in zip(first[name], last[name], strict=True))

    if archetype == "sepsis":
        assert change("heart_rate") > 20 and change("resp_rate") > 5
    elif archetype == "respiratory_failure":
        assert change("resp_rate") > 7 and change("heart_rate") > 10
        assert sum(last["on_oxygen"]) >= 6  # the nurse started oxygen for falling SpO2
    elif archetype == "haemorrhage":
        assert change("heart_rate") > 25 and change("systolic_bp") < -20
    elif archetype == "opioid_respiratory_depression":
        assert change("resp_rate") < -5 and change("spo2") < -3
        assert sum(level != "A" for level in last["consciousness"]) >= 6
    elif archetype == "af_rapid":
        assert statistics.median(last["heart_rate"]) >= 125 and change("systolic_bp") < -10


def test_chronic_baselines_copd_on_scale_2_and_athletes_slow() -> None:
    cohort = generate_cohort(200, hours=4, seed=3, deteriorating_fraction=0.0)
    sets = spot_sets(cohort)
    copd = [p for p in cohort.patients if p.profile == "copd"]
    athletes = [p for p in cohort.patients if p.profile == "athlete"]
    assert copd and athletes
    for patient in copd:
        assert patient.spo2_scale == 2
        assert all(obs["spo2_scale"] == 2 for _, obs in sets[patient.patient_id])
    assert statistics.median(obs["heart_rate"] for p in athletes for _, obs in sets[p.patient_id]) <= 55


def test_devices_sample_at_their_rates_with_artefacts_and_gaps(mixed: Cohort) -> None:
    by_source: dict[str, list] = collections.defaultdict(list)
    for sample in mixed.samples():
        by_source[sample.source].append(sample)
    monitors = [s for name, s in by_source.items() if name.startswith("mon-")]
    hr_gaps = [np.diff(sorted({x.device_time_ms for x in s if x.parameter == "heart_rate"})) for s in monitors]
    # Bedside monitor: once a minute, with dropouts showing as longer gaps.
    assert np.median(np.concatenate(hr_gaps)) == 60_000
    assert max(g.max() for g in hr_gaps) >= 5 * 60_000
    nibp = [np.diff(sorted({x.device_time_ms for x in s if x.parameter == "systolic_bp"})) for s in monitors]
    assert np.median(np.concatenate(nibp)) == 30 * 60_000
    flagged = sum(x.artefact for s in by_source.values() for x in s)
    assert flagged > 0
    spots = [s for name, s in by_source.items() if name.startswith("obs-")]
    parameters = {x.parameter for s in spots for x in s}
    assert {"consciousness", "on_oxygen", "spo2_scale", "temperature"} <= parameters


def test_one_second_bedside_monitor() -> None:
    cohort = generate_cohort(1, hours=0.1, seed=1, deteriorating_fraction=0.0,
                             monitor_period_s=1.0, device_mix={"monitor": 1.0})
    times = sorted({s.device_time_ms for s in cohort.samples() if s.parameter == "heart_rate" and s.source.startswith("mon-")})
    assert np.median(np.diff(times)) == 1000
    assert len(times) >= 0.8 * 360  # dropouts may take a little


def test_invalid_requests_are_refused() -> None:
    with pytest.raises(ValueError):
        generate_cohort(0, hours=1)
    with pytest.raises(ValueError):
        generate_cohort(2, hours=1, deteriorating_fraction=1.5)
    with pytest.raises(ValueError):
        generate_cohort(2, hours=1, archetypes=("flu",))
