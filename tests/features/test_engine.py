"""Behaviour of the feature engine through its public entry points."""

from __future__ import annotations

import numpy as np
import pytest

from vitalstream.features import (
    DEFAULT_WINDOWS_S,
    ArtefactRules,
    FeatureEngine,
    feature_names,
    features_at,
    warm_up,
)
from vitalstream.samples import NUMERIC_PARAMETERS

HR, RR, SPO2, SBP, DBP, TEMP = range(6)
NAMES = feature_names()
EPOCH_S = 1_773_569_700.0  # 2026-03-15: real device clocks are large numbers


def col(name: str) -> int:
    return NAMES.index(name)


def feed(engine: FeatureEngine, patient: str, param: int, times_s, values, now_s=None):
    times_s = np.asarray(times_s, dtype=np.float64)
    slot = engine.slot_for(patient)
    n = len(times_s)
    slots, rows = engine.update(np.full(n, slot), np.full(n, param), times_s,
                                np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)),
                                now_s=now_s)
    return dict(zip(slots.tolist(), rows, strict=True))[slot]


def test_names_follow_parameter_order_and_default_windows():
    assert DEFAULT_WINDOWS_S == (300, 1800, 7200, 21600)
    assert NAMES[0] == "heart_rate_last" and NAMES[1] == "heart_rate_age_s"
    for window in ("5m", "30m", "2h", "6h"):
        assert f"resp_rate_mean_{window}" in NAMES
        assert f"spo2_slope_per_h_{window}" in NAMES
    assert NAMES.index("resp_rate_last") > NAMES.index("heart_rate_artefacts_6h")
    assert {"shock_index", "spo2_fresh", "temperature_fresh"} <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))
    assert feature_names((60, 3600))[2] == "heart_rate_count_1m"


def test_warm_up_compiles_every_kernel():
    assert warm_up() >= 0.0


def test_steady_heart_rate_gives_its_mean_and_a_flat_slope():
    engine = FeatureEngine()
    times_s = EPOCH_S + np.arange(600.0)
    row = feed(engine, "p1", HR, times_s, 72.0 + 0.5 * np.sin(times_s))
    assert row[col("heart_rate_mean_5m")] == pytest.approx(72.0, abs=0.05)
    assert abs(row[col("heart_rate_slope_per_h_5m")]) < 1.0
    # 1 Hz for 10 min fills the 5-minute window's buckets: full coverage, about 300 samples
    assert row[col("heart_rate_coverage_5m")] == 1.0
    assert 290 <= row[col("heart_rate_count_5m")] <= 300
    assert row[col("heart_rate_count_30m")] == 600


def test_rising_resp_rate_has_its_slope_per_hour_and_change():
    engine = FeatureEngine()
    times_s = EPOCH_S + np.arange(0.0, 1800.0, 60.0)
    row = feed(engine, "p1", RR, times_s, 14.0 + (times_s - EPOCH_S) / 3600.0 * 8.0)
    # +8 breaths/min per hour over the last half hour: an early sign of sepsis
    assert row[col("resp_rate_slope_per_h_2h")] == pytest.approx(8.0, rel=1e-9)
    assert row[col("resp_rate_change_2h")] == pytest.approx(8.0 * 29 / 60, abs=1e-4)


def test_variance_is_stable_on_large_device_times_and_offset_values():
    # sums of squares would lose these 0.01 degC fluctuations around 37 degC
    engine = FeatureEngine()
    rng = np.random.default_rng(4)
    values = 37.0 + rng.normal(0.0, 0.01, 3000)
    times_s = EPOCH_S + np.arange(3000.0)
    row = feed(engine, "p1", TEMP, times_s, values)
    in_2h = values  # 50 min of data: all of it inside the 2 h window
    assert row[col("temperature_std_2h")] == pytest.approx(np.std(in_2h, ddof=1), rel=1e-9)


def test_late_sample_within_tolerance_is_placed_in_time_order():
    times_s = EPOCH_S + np.arange(0.0, 120.0, 2.0)
    values = 90.0 + np.arange(len(times_s)) % 7
    in_order = FeatureEngine(late_tolerance_s=60.0)
    expected = feed(in_order, "p1", SPO2, times_s, values)
    shuffled = FeatureEngine(late_tolerance_s=60.0)
    arrival = np.r_[np.arange(0, 40), np.arange(45, 60), np.arange(40, 45)]  # 5 arrive late
    got = feed(shuffled, "p1", SPO2, times_s[arrival], values[arrival])
    assert shuffled.late_dropped == 0
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_sample_older_than_the_tolerance_is_counted_and_dropped_not_mixed_in():
    engine = FeatureEngine(late_tolerance_s=60.0)
    feed(engine, "p1", HR, [EPOCH_S + 100.0], 80.0)
    feed(engine, "p1", HR, [EPOCH_S + 40.0], 200.0)  # exactly 60 s late: still placed
    assert engine.late_dropped == 0
    row = feed(engine, "p1", HR, [EPOCH_S + 39.5], 30.0)  # 60.5 s late: dropped
    assert engine.late_dropped == 1
    assert row[col("heart_rate_count_5m")] == 2
    assert row[col("heart_rate_min_5m")] == 80.0
    assert row[col("heart_rate_last")] == 80.0  # a late sample never becomes "latest"


def test_probe_off_spo2_zero_is_an_artefact_kept_out_of_the_statistics():
    engine = FeatureEngine()
    times_s = EPOCH_S + np.arange(10.0)
    row = feed(engine, "p1", SPO2, times_s, [97, 97, 0, 0, 96, 97, 101, 97, 96, 97])
    assert row[col("spo2_min_5m")] == 96.0
    assert row[col("spo2_count_5m")] == 7
    assert row[col("spo2_artefacts_5m")] == 3
    assert engine.artefact_counts["out_of_range"] == 3


def test_spo2_dropout_is_an_artefact_but_a_sustained_desaturation_is_accepted():
    engine = FeatureEngine()
    # 97 -> 80 in one second is a slipping probe, not blood
    row = feed(engine, "p1", SPO2, [EPOCH_S, EPOCH_S + 1.0], [97.0, 80.0])
    assert engine.artefact_counts["spo2_dropout"] == 1
    assert row[col("spo2_last")] == 97.0
    # still 80 twenty seconds later: a real desaturation (< 2 points/s from the last 97)
    row = feed(engine, "p1", SPO2, [EPOCH_S + 20.0], 80.0)
    assert engine.artefact_counts["spo2_dropout"] == 1
    assert row[col("spo2_last")] == 80.0
    assert row[col("spo2_min_5m")] == 80.0


def test_frozen_heart_rate_flat_line_is_an_artefact_after_two_minutes():
    engine = FeatureEngine()
    times_s = EPOCH_S + np.arange(300.0)
    row = feed(engine, "p1", HR, times_s, 75.0)
    # identical to the beat for 300 s at 1 Hz: samples from the 120th second on are frozen
    assert engine.artefact_counts["flat_line"] == 300 - 120
    assert row[col("heart_rate_count_30m")] == 120
    assert row[col("heart_rate_artefacts_30m")] == 180


def test_hourly_charted_values_that_repeat_are_not_a_flat_line():
    engine = FeatureEngine()
    feed(engine, "p1", HR, EPOCH_S + np.arange(0.0, 12 * 3600.0, 3600.0), 80.0)
    assert engine.artefacts == 0


def test_age_and_freshness_show_when_data_stopped_arriving():
    engine = FeatureEngine()
    feed(engine, "p1", RR, [EPOCH_S], 18.0)
    row = engine.features_of(np.array([engine.slot_for("p1")]), now_s=EPOCH_S + 2400.0)[0]
    assert row[col("resp_rate_age_s")] == 2400.0
    assert row[col("resp_rate_fresh")] == 0.0  # older than 30 min: not a current value
    assert row[col("resp_rate_count_5m")] == 0  # the 5-minute window is empty, not zero-filled
    assert np.isnan(row[col("resp_rate_mean_5m")])
    assert row[col("resp_rate_mean_2h")] == 18.0
    assert row[col("temperature_fresh")] == 0.0  # never measured


def test_shock_index_needs_a_fresh_heart_rate_and_systolic_pressure():
    engine = FeatureEngine()
    feed(engine, "p1", HR, [EPOCH_S], 120.0)
    row = feed(engine, "p1", SBP, [EPOCH_S + 60.0], 100.0)
    assert row[col("shock_index")] == pytest.approx(1.2)  # > 1: shock until proven otherwise
    row = engine.features_of(np.array([engine.slot_for("p1")]), now_s=EPOCH_S + 7200.0)[0]
    assert np.isnan(row[col("shock_index")])  # heart rate 2 h old is stale


def test_batch_returns_each_touched_patient_once_with_its_own_features():
    engine = FeatureEngine(initial_patients=2)
    slots = np.array([engine.slot_for(p) for p in ("a", "b", "c", "a", "c", "a")])
    touched, rows = engine.update(slots, np.zeros(6, dtype=np.int64), EPOCH_S + np.arange(6.0),
                                  np.array([60.0, 70.0, 80.0, 62.0, 82.0, 64.0]))
    assert touched.tolist() == [engine.slot_for("a"), engine.slot_for("b"), engine.slot_for("c")]
    assert rows[:, col("heart_rate_mean_5m")].tolist() == [62.0, 70.0, 81.0]
    assert engine.capacity >= 3 and engine.n_patients == 3


def test_invalid_indices_and_times_are_counted_not_crashing():
    engine = FeatureEngine(initial_patients=1)
    slot = engine.slot_for("a")
    touched, rows = engine.update(np.array([slot, 99, slot, slot]), np.array([0, 0, 9, 0]),
                                  np.array([EPOCH_S, EPOCH_S, EPOCH_S, np.nan]),
                                  np.array([80.0, 80.0, 80.0, 80.0]))
    assert engine.invalid == 3 and engine.accepted == 1
    assert touched.tolist() == [slot]


def test_discharged_slot_is_reused_with_no_trace_of_the_previous_patient():
    engine = FeatureEngine(initial_patients=4)
    feed(engine, "old", HR, EPOCH_S + np.arange(60.0), 140.0 + np.arange(60.0) % 3)
    old_slot = engine.slot_for("old")
    engine.discharge("old")
    assert engine.n_patients == 0
    row = feed(engine, "new", HR, [EPOCH_S + 61.0], 70.0)
    assert engine.slot_for("new") == old_slot
    assert row[col("heart_rate_count_5m")] == 1
    assert row[col("heart_rate_max_6h")] == 70.0


def test_admissions_beyond_capacity_keep_every_patients_state():
    engine = FeatureEngine(initial_patients=2)
    for i in range(9):
        feed(engine, f"p{i}", HR, [EPOCH_S], 60.0 + i)
    assert engine.capacity >= 9
    rows = engine.features_of(np.array([engine.slot_for(f"p{i}") for i in range(9)]))
    assert rows[:, col("heart_rate_last")].tolist() == [60.0 + i for i in range(9)]


def test_snapshot_restores_identical_features_in_another_worker():
    first = FeatureEngine()
    rng = np.random.default_rng(1)
    times_s = EPOCH_S + np.cumsum(rng.uniform(0.5, 1.5, 3000))
    for param in range(6):
        feed(first, "p1", param, times_s, rng.normal(1, 0.01, 3000) * [80, 18, 96, 120, 70, 37][param])
    data = first.snapshot("p1")
    second = FeatureEngine(initial_patients=1)
    second.slot_for("someone else")
    second.restore("p1", data)
    now_s = float(times_s[-1]) + 30.0
    np.testing.assert_array_equal(second.features_of(np.array([second.slot_for("p1")]), now_s),
                                  first.features_of(np.array([first.slot_for("p1")]), now_s))
    assert len(data) < first.bytes_per_patient()  # compressed: empty buckets cost nothing
    with pytest.raises(ValueError):
        FeatureEngine(windows_s=(300,)).restore("p1", data)


def test_state_per_patient_fits_the_64_kib_budget_with_the_6_hour_window():
    assert FeatureEngine(initial_patients=1).bytes_per_patient() <= 64 * 1024


def test_live_batches_and_recorded_table_give_identical_features():
    """One code path: the monitor's batches and the training table agree exactly."""
    rng = np.random.default_rng(7)
    n = 6000
    patients = rng.integers(0, 5, n)
    params = rng.integers(0, len(NUMERIC_PARAMETERS), n)
    times_s = EPOCH_S + np.sort(rng.uniform(0.0, 30000.0, n))
    typical = np.array([80.0, 18.0, 95.0, 120.0, 70.0, 37.0])
    values = typical[params] * rng.normal(1.0, 0.05, n)
    values[rng.random(n) < 0.01] = 0.0  # probe-off artefacts on every path
    engine = FeatureEngine(initial_patients=2)
    slots = np.array([engine.slot_for(f"p{p}") for p in patients])
    cuts = np.sort(rng.choice(np.arange(1, n), 40, replace=False)).tolist() + [n]
    live_rows, query_patients, query_times = [], [], []
    start = 0
    for cut in cuts:
        touched, rows = engine.update(slots[start:cut], params[start:cut], times_s[start:cut],
                                      values[start:cut], now_s=float(times_s[cut - 1]))
        live_rows.append(rows)
        query_patients += [int(patients[start:cut][slots[start:cut] == s][0]) for s in touched]
        query_times += [float(times_s[cut - 1])] * len(touched)
        start = cut
    offline = features_at(patients, params, times_s, values, np.array(query_patients),
                          np.array(query_times))
    np.testing.assert_array_equal(np.vstack(live_rows), offline)
    assert engine.artefacts > 0


def test_offline_table_with_unusable_rows_is_refused_not_silently_thinned():
    one = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError):
        features_at(np.zeros(2, dtype=np.int64), np.zeros(3, dtype=np.int64), np.zeros(2),
                    np.zeros(2), one, np.zeros(1))
    with pytest.raises(ValueError, match="parameter index"):
        features_at(one, np.array([6]), np.zeros(1), np.zeros(1), one, np.zeros(1))
    with pytest.raises(ValueError, match="finite"):
        features_at(one, one, np.array([np.nan]), np.zeros(1), one, np.zeros(1))


def test_custom_rules_can_tighten_a_range():
    engine = FeatureEngine(rules=ArtefactRules(ranges={**ArtefactRules().ranges,
                                                       "temperature": (30.0, 43.0)}))
    feed(engine, "p1", TEMP, [EPOCH_S], 28.0)
    assert engine.artefact_counts["out_of_range"] == 1


def test_a_reused_slot_snapshots_as_a_fresh_one():
    """A slot given to a new patient carries nothing of the discharged one: its snapshot is
    byte for byte the one a fresh engine gives of the same readings (the state arrays are
    allocated uninitialised, so every field is reset, not only the counts)."""
    def feed(engine, patient_id, values):
        slot = engine.slot_for(patient_id)
        times = np.arange(len(values), dtype=np.float64) * 7.0 + 1_000.0
        engine.add(np.full(len(values), slot), np.zeros(len(values), dtype=np.int64), times,
                   np.asarray(values, dtype=np.float64))

    used = FeatureEngine()
    feed(used, "old", [150.0, 160.0, 170.0, 155.0] * 50)
    used.discharge("old")
    feed(used, "new", [72.0, 74.0])
    fresh = FeatureEngine()
    feed(fresh, "new", [72.0, 74.0])
    assert used.snapshot("new") == fresh.snapshot("new")
