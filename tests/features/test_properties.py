"""Property tests: the engine equals a plain numpy reference on random irregular,
out-of-order streams with gaps, at window edges too.

Tolerance: counts, coverage, artefact counts, ages and freshness exactly; mean, std and
slope to 1e-9 relative (Welford/Chan merges versus two-pass numpy); min, max, last-minus-
first and shock index to 1e-4 absolute, because min, max and the first value of a bucket
are kept as float32 and reported to 4 decimals (more than any monitor reports).
"""

from __future__ import annotations

import numpy as np
from features_reference import reference_features
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalstream.features import ArtefactRules, FeatureEngine, feature_names, features_at

# Small windows and buckets so that random streams cross many window and bucket edges.
WINDOWS_S = (60, 600, 3600)
BUCKETS = 6  # widths 10 s, 100 s, 600 s
TOLERANCE_S = 120.0
# Loose artefact thresholds so that random streams trip every rule.
RULES = ArtefactRules(flat_line_s=4.0, flat_line_min_samples=3,
                      spo2_dropout_min_drop_pct=10.0, spo2_dropout_max_fall_pct_per_s=2.0)
NAMES = feature_names(WINDOWS_S)
LOOSE = np.array([any(f"_{kind}_" in name or name.endswith(f"_{kind}") or name == kind
                      for kind in ("min", "max", "change", "shock_index")) for name in NAMES])
TIGHT = ~LOOSE

# Values on a coarse grid make ties, flat lines and exact window edges frequent.
VALUES = st.sampled_from([0.0, 30.0, 36.5, 55.0, 80.0, 85.5, 90.0, 97.0, 120.0, 400.0])
GAPS_S = st.sampled_from([0.0, 0.5, 1.0, 2.0, 10.0, 30.0, 100.0, 599.5, 3000.0])
DELAYS_S = st.sampled_from([0.0, 0.0, 0.0, 5.0, 50.0, 119.5, 200.0, 5000.0])


@st.composite
def streams(draw):
    """One patient's samples in arrival order: irregular device times with gaps, each
    delivered after a random delay (some late beyond tolerance), split into batches."""
    n = draw(st.integers(1, 60))
    gaps = np.array(draw(st.lists(GAPS_S, min_size=n, max_size=n)))
    times_s = 1_000.0 + np.cumsum(gaps)
    params = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64)
    values = np.array(draw(st.lists(VALUES, min_size=n, max_size=n)))
    delays = np.array(draw(st.lists(DELAYS_S, min_size=n, max_size=n)))
    arrival = np.argsort(times_s + delays, kind="stable")
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=5))) | {n})
    extra_now_s = draw(st.sampled_from([None, 0.0, 5.0, 600.0, 4000.0]))
    return params[arrival], times_s[arrival], values[arrival], cuts, extra_now_s


def assert_rows_match(engine_row: np.ndarray, reference_row: np.ndarray) -> None:
    np.testing.assert_allclose(engine_row[TIGHT], reference_row[TIGHT], rtol=1e-9, atol=1e-9,
                               equal_nan=True)
    np.testing.assert_allclose(engine_row[LOOSE], reference_row[LOOSE], rtol=0, atol=1e-4,
                               equal_nan=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_live_engine_matches_reference_on_out_of_order_streams_with_gaps(stream):
    params, times_s, values, cuts, extra_now_s = stream
    engine = FeatureEngine(WINDOWS_S, initial_patients=2, late_tolerance_s=TOLERANCE_S,
                           buckets_per_window=BUCKETS, rules=RULES)
    slot = engine.slot_for("p1")
    start = 0
    for cut in cuts:
        batch = slice(start, cut)
        now_s = None if extra_now_s is None else float(times_s[:cut].max()) + extra_now_s
        touched, rows = engine.update(np.full(cut - start, slot), params[batch], times_s[batch],
                                      values[batch], now_s=now_s)
        assert list(touched) == [slot]
        expected = reference_features(params[:cut], times_s[:cut], values[:cut],
                                      -np.inf if now_s is None else now_s, WINDOWS_S, BUCKETS,
                                      RULES, TOLERANCE_S)
        assert_rows_match(rows[0], expected)
        start = cut


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.sampled_from([0.0, 10.0, 99.5, 600.0, 601.0, 3600.0, 9000.0]),
                           min_size=1, max_size=6))
def test_offline_features_are_causal_and_match_reference_at_query_times(stream, query_offsets):
    params, times_s, values, _, _ = stream
    in_time_order = np.argsort(times_s, kind="stable")
    params, times_s, values = params[in_time_order], times_s[in_time_order], values[in_time_order]
    query_times_s = times_s[0] + np.array(query_offsets)
    rows = features_at(np.zeros(len(times_s), dtype=np.int64), params, times_s, values,
                       np.zeros(len(query_times_s), dtype=np.int64), query_times_s, WINDOWS_S,
                       buckets_per_window=BUCKETS, rules=RULES)
    for row, query_s in zip(rows, query_times_s, strict=True):
        seen = times_s <= query_s  # a feature at time t may only use samples up to t
        expected = reference_features(params[seen], times_s[seen], values[seen], query_s,
                                      WINDOWS_S, BUCKETS, RULES, late_tolerance_s=np.inf)
        assert_rows_match(row, expected)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0, 15.0, 100.0]),
                          st.integers(0, 2), st.integers(500, 1000).map(lambda v: v / 10)),
                min_size=1, max_size=150))
def test_rows_after_every_sample_match_reference_as_windows_slide(samples):
    """A row per sample moves each window on one bucket at a time: the cached merge of the
    closed buckets is updated incrementally (a bucket in, a bucket out) and must still
    equal a fresh computation, also when the bucket leaving held the minimum or maximum."""
    gaps, params, values = (np.array(column) for column in zip(*samples, strict=True))
    times_s = 5_000.0 + np.cumsum(gaps)
    engine = FeatureEngine(WINDOWS_S, initial_patients=1, late_tolerance_s=TOLERANCE_S,
                           buckets_per_window=BUCKETS, rules=RULES)
    slot = engine.slot_for("p1")
    for i in range(len(times_s)):
        _, rows = engine.update(np.array([slot]), params[i:i + 1], times_s[i:i + 1],
                                values[i:i + 1].astype(np.float64))
        expected = reference_features(params[:i + 1], times_s[:i + 1], values[:i + 1],
                                      -np.inf, WINDOWS_S, BUCKETS, RULES, TOLERANCE_S)
        assert_rows_match(rows[0], expected)
