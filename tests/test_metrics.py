"""Metric helpers: batch observation must equal one-by-one observation (it uses
prometheus_client internals, so this pins them), and exposition quantiles must read
the way Prometheus' histogram_quantile does."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from vitalstream.metrics import (
    LATENCY_BUCKETS_S,
    count_totals,
    observe_many,
    quantile_from_exposition,
    sum_from_exposition,
)


def test_batch_observation_equals_observing_each_value() -> None:
    values = np.random.default_rng(3).exponential(0.05, 2000)
    one, many = CollectorRegistry(), CollectorRegistry()
    single = Histogram("lat_seconds", "x", buckets=LATENCY_BUCKETS_S, registry=one)
    batch = Histogram("lat_seconds", "x", buckets=LATENCY_BUCKETS_S, registry=many)
    for value in values:
        single.observe(float(value))
    observe_many(batch, values)
    def counts(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines()
                if "_bucket" in line or "_count" in line]

    assert counts(one) == counts(many)
    assert abs(sum_from_exposition(generate_latest(one).decode(), "lat_seconds_sum")
               - sum_from_exposition(generate_latest(many).decode(), "lat_seconds_sum")) < 1e-9
    text = generate_latest(many).decode()
    assert sum_from_exposition(text, "lat_seconds_count") == 2000


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lat_seconds", "x", buckets=(0.01, 0.1, 1.0), registry=registry)
    observe_many(histogram, np.array([0.005] * 50 + [0.05] * 50))
    text = generate_latest(registry).decode()
    # rank 99 of 100 lies in (0.01, 0.1], 49 of the bucket's 50 observations in
    assert abs(quantile_from_exposition(text, "lat_seconds", 0.99) - (0.01 + 0.09 * 49 / 50)) < 1e-9


def test_counters_follow_running_totals_kept_elsewhere() -> None:
    registry = CollectorRegistry()
    counter = Counter("artefacts", "x", ["rule"], registry=registry)
    seen: dict[str, int] = {}
    count_totals(counter, {"flat_line": 3}, seen)
    count_totals(counter, {"flat_line": 5, "spo2_dropout": 2}, seen)
    text = generate_latest(registry).decode()
    assert 'artefacts_total{rule="flat_line"} 5.0' in text
    assert 'artefacts_total{rule="spo2_dropout"} 2.0' in text
