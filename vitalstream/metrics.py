"""Prometheus metrics of the worker. Metric objects never do I/O; the worker's web
server exposes them at /metrics. No label ever carries a patient identifier: labels are
formats, reasons, priorities and kinds, all from small closed sets.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

# 1 ms to 10 s: the latency target is 100 ms p99, and a stalled stream shows as seconds.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)

MESSAGES_IN = Counter(
    "vitalstream_messages_in", "Raw gateway messages read from vitals.raw", ["format"]
)
MESSAGES_ACCEPTED = Counter(
    "vitalstream_messages_accepted", "Raw messages turned into samples or technical events", ["format"]
)
MESSAGES_DEADLETTERED = Counter(
    "vitalstream_messages_deadlettered", "Raw messages sent to the dead-letter topic", ["format", "reason"]
)
SAMPLES_IN = Counter("vitalstream_samples_in", "Canonical samples produced by ingest")
VITALS_REJECTED = Counter(
    "vitalstream_vitals_records_rejected", "Unreadable records on the internal vitals topic (a bug, not bad input)"
)
MONITOR_ERRORS = Counter(
    "vitalstream_monitor_errors_total",
    "Patients' batches the monitor failed to score (a fault in vitalstream: see the worker log); "
    "the other patients of each batch were scored",
)
SAMPLES_PROCESSED = Counter("vitalstream_samples_processed", "Canonical samples scored by the monitor")
FUTURE_READINGS_DROPPED = Counter(
    "vitalstream_future_readings_dropped", "Samples and technical events on vitals stamped further "
    "ahead of the wall clock than ingest allows (written past ingest), counted and dropped"
)
LATE_SAMPLES_DROPPED = Counter(
    "vitalstream_late_samples_dropped", "Samples older than the late tolerance, counted and dropped"
)
ARTEFACTS = Counter(
    "vitalstream_artefacts", "Samples the feature engine kept out of the statistics, by rule", ["rule"]
)
BAD_TIME_DROPPED = Counter(
    "vitalstream_bad_device_time_dropped", "Samples and technical events with a device time no alert can show"
)
ALERTS_OUT = Counter(
    "vitalstream_alerts_out", "Alert messages published to the alerts topic", ["priority", "kind", "status"]
)
ALERT_EVENTS = Counter(
    "vitalstream_alert_events",
    "Alert policy decisions: raised, escalated, reraised, suppressed, acknowledged, resolved",
    ["event", "kind", "priority"],
)
ACKS_REJECTED = Counter(
    "vitalstream_acknowledgements_rejected",
    "Acknowledgements refused where they enter (malformed, wrong types, over 64 KiB)",
)
SETTINGS_REJECTED = Counter(
    "vitalstream_patient_settings_rejected", "Per-patient settings records the policy refused"
)
CONTROL_REFUSED = Counter(
    "vitalstream_control_refused",
    "Control records (acknowledgements, settings) refused by the worker, by where they came "
    "(ack, settings: the station topics; vitals: a control record written onto vitals) and why "
    "(unsigned, bad_signature, unknown_key, wrong_service, malformed, actor, role, ward); "
    "each is dead-lettered to vitals.deadletter",
    ["source", "reason"],
)
ALERT_LATENCY = Histogram(
    "vitalstream_alert_latency_seconds",
    "From the device time of the sample that triggered an alert to the alert's publication",
    buckets=LATENCY_BUCKETS_S,
)
SAMPLE_LATENCY = Histogram(
    "vitalstream_sample_latency_seconds",
    "From a sample's device time to the end of its processing by the monitor",
    buckets=LATENCY_BUCKETS_S,
)
PROCESSING_LATENCY = Histogram(
    "vitalstream_sample_processing_seconds",
    "Per-sample processing latency: from ingest (receipt on vitals.raw) to scored by the monitor",
    buckets=LATENCY_BUCKETS_S,
)
PATIENTS_MONITORED = Gauge("vitalstream_patients_monitored", "Patients with state in this worker")
PATIENTS_LIMIT = Gauge("vitalstream_patients_limit", "Most patients this worker monitors at once (VITALSTREAM_MAX_PATIENTS)")
PATIENTS_OVER_LIMIT = Counter(
    "vitalstream_patients_over_limit", "Readings of new patients not scored because the worker's population was full")
PATIENTS_EVICTED = Counter(
    "vitalstream_patients_evicted", "Patients evicted from memory (long silent, or discharged)", ["why"])
STALE_PATIENTS = Gauge("vitalstream_stale_patients", "Patients with at least one stale NEWS2 input")
BROKER_UP = Gauge("vitalstream_broker_up", "1 when the worker's last broker operation succeeded")
# Human oversight (vitalstream/oversight): labels are ward, priority, role and reason codes,
# never a patient or a user.
_RESPONSE_BUCKETS_S = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
TIME_TO_ACK = Histogram(
    "vitalstream_alert_time_to_acknowledge_seconds", "Wall time from an alert's raise to its acknowledgement",
    ["ward", "priority"], buckets=_RESPONSE_BUCKETS_S)
TIME_TO_ANSWER = Histogram(
    "vitalstream_alert_time_to_answer_seconds", "Wall time from an alert's raise to its answer",
    ["ward", "priority"], buckets=_RESPONSE_BUCKETS_S)
ESCALATIONS = Counter(
    "vitalstream_escalations", "Alerts passed to the next responder, by the role called and why "
    "(no_acknowledgement, unanswered, declined)", ["ward", "role", "reason"])
ANSWERS = Counter("vitalstream_alert_answers", "Answers to alerts by reason code", ["ward", "priority", "reason"])
OVERSIGHT_REFUSED = Counter(
    "vitalstream_oversight_refused", "Acknowledgements, answers, snoozes, goals and census messages refused, "
    "by reason", ["reason"])
CENSUS_EVENTS = Counter("vitalstream_census_events", "Census records applied by the worker", ["event"])
CENSUS_QUARANTINED = Counter(
    "vitalstream_census_quarantined", "Readings of patients not admitted (or discharged): kept on vitals, not scored")
CENSUS_QUARANTINE_PATIENTS = Gauge(
    "vitalstream_census_quarantine_patients", "Distinct patients not admitted whose readings arrived (bounded)")
CONSUMER_LAG = Gauge(
    "vitalstream_consumer_lag_messages", "Messages behind the end of the input topics", ["topic"]
)


def count_totals(counter: Counter, totals: dict[str, int], seen: dict[str, int]) -> None:
    """Advance a counter to running totals kept elsewhere (the feature engine counts in
    its own arrays): adds what grew since ``seen``, which it then updates."""
    for key, total in totals.items():
        grown = total - seen.get(key, 0)
        if grown > 0:
            (counter.labels(key) if key else counter).inc(grown)
        seen[key] = total


def observe_many(histogram: Histogram, values_s: np.ndarray) -> None:
    """Observe a batch of values at once.

    prometheus_client observes one value per call (a lock and a bucket scan each); a batch
    of thousands per call is the normal case here, so count per bucket with numpy and add
    the counts. Uses the library's private bucket counters, pinned by a test.
    """
    if len(values_s) == 0:
        return
    values_s = np.asarray(values_s, dtype=np.float64)
    upper = np.asarray(histogram._upper_bounds)  # ends with +Inf
    indices = np.searchsorted(upper, values_s, side="left")
    counts = np.bincount(indices, minlength=len(upper))
    for bucket, count in zip(histogram._buckets, counts, strict=False):
        if count:
            bucket.inc(int(count))
    histogram._sum.inc(float(values_s.sum()))


def sum_from_exposition(text: str, name: str) -> float:
    """Sum of every series of one sample name in a /metrics text (e.g. ``..._total``)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and len(line) > len(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def quantile_from_exposition(text: str, name: str, q: float) -> float:
    """A quantile of a histogram in a /metrics text, interpolated inside the bucket the way
    Prometheus' histogram_quantile does, so both can be compared."""
    buckets: dict[float, float] = {}
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if line.startswith(prefix):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    if not buckets:
        return float("nan")
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower_bound, lower_count = bound, count
    return bounds[-2]
