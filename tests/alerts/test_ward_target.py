"""Issue 7's target on a simulated ward: at least 50 % fewer clinical alerts per
patient-day than the naive rule (alert whenever NEWS2 rises to >= 5), while catching at
least as many deteriorations 1 h or more before they happen. NEWS2 only (no risk model),
so the comparison is the policy against the rule it replaces. The validation report
measures the same on the full default ward."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from simulators.scenarios import scenario
from vitalstream.alerts import AlertPolicy
from vitalstream.monitor import Monitor

HOUR_MS = 3_600_000
NEW_ALERT = ("raised", "escalated", "reraised")


def caught(alert_times: list[int], event_ms: int) -> bool:
    """An alert between 24 h and 1 h before the event."""
    return any(event_ms - 24 * HOUR_MS <= t <= event_ms - HOUR_MS for t in alert_times)


def test_policy_halves_alerts_and_catches_as_many_events_as_naive_news2() -> None:
    cohort = scenario("demo").cohort()
    monitor = Monitor(AlertPolicy())
    naive: dict[str, list[int]] = defaultdict(list)
    policy: dict[str, list[int]] = defaultdict(list)
    previous: dict[str, int] = {}
    for rows in cohort.rows():
        samples = cohort.to_samples(rows)
        # One batch per minute of device time, as the worker takes them.
        cuts = (np.flatnonzero(np.diff(rows.time_ms // 60_000)) + 1).tolist()
        for start, end in zip([0, *cuts], [*cuts, len(samples)], strict=True):
            result = monitor.process(samples[start:end])
            for alert in result.alerts:
                if alert.kind == "clinical" and alert.status in NEW_ALERT:
                    policy[alert.patient_id].append(alert.device_time_ms)
            for assessment in result.assessments:
                total = assessment.news2.total
                if total >= 5 > previous.get(assessment.patient_id, 0):
                    naive[assessment.patient_id].append(assessment.time_ms)
                previous[assessment.patient_id] = total
    days = cohort.patient_days
    naive_rate = sum(map(len, naive.values())) / days
    policy_rate = sum(map(len, policy.values())) / days
    events = cohort.events()
    naive_caught = sum(caught(naive[e["patient_id"]], e["event_ms"]) for e in events)
    policy_caught = sum(caught(policy[e["patient_id"]], e["event_ms"]) for e in events)
    assert policy_rate <= 0.5 * naive_rate, (policy_rate, naive_rate)
    assert policy_caught >= naive_caught, (policy_caught, naive_caught)
    assert policy_caught >= 1  # the comparison means something only if events are caught
