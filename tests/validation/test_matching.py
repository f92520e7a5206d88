"""Matching alerts and naive NEWS2 triggers to labelled events, on hand-made records."""

from __future__ import annotations

import numpy as np
import pytest

from vitalstream.validation import (
    Event,
    Labels,
    PatientSpan,
    Trigger,
    compare_with_naive,
    naive_news2_triggers,
    new_alert_triggers,
    policy_figures,
)
from vitalstream.validation.matching import classify_triggers

H = 3_600_000


def ward(event_h: float = 20.0, hours: float = 24.0) -> Labels:
    """Two patients for `hours` each: "det" deteriorates with an event at `event_h`,
    "stable" does not."""
    spans = {pid: PatientSpan(pid, "4B", str(i), 0, int(hours * H)) for i, pid in enumerate(("det", "stable"))}
    return Labels("test", spans, [Event("det", "4B", "0", "sepsis", int(event_h * H), onset_ms=int(8 * H))])


def alert(patient_id: str, at_h: float, status: str = "raised", kind: str = "clinical",
          priority: str = "medium", alert_id: str | None = None) -> dict:
    alert_id = alert_id or f"{patient_id}-{at_h}"
    return {"alert_id": alert_id, "event_id": f"{alert_id}/{status}", "patient_id": patient_id,
            "kind": kind, "status": status, "priority": priority, "device_time_ms": int(at_h * H)}


def test_an_alert_six_hours_before_the_event_is_true_and_leads_by_six_hours() -> None:
    figures = policy_figures([Trigger("det", 14 * H, "medium")], ward(event_h=20))
    assert figures["events_alerted_1h_before"] == 1
    assert figures["median_lead_h"] == 6.0
    assert (figures["true_alerts"], figures["false_alerts"], figures["ppv"]) == (1, 0, 1.0)
    assert figures["missed_events"] == []


def test_an_alert_30_min_before_the_event_is_true_but_too_late_to_count_as_caught() -> None:
    # Half an hour is too little for a ward team to act before the event.
    figures = policy_figures([Trigger("det", int(19.5 * H), "high")], ward(event_h=20))
    assert figures["events_alerted_1h_before"] == 0
    assert figures["events_alerted_before_event"] == 1
    assert figures["median_lead_h"] == 0.5
    assert figures["true_alerts"] == 1
    assert [m["patient_id"] for m in figures["missed_events"]] == ["det"]


def test_lead_time_is_taken_from_the_earliest_alert_in_the_24_hours_before() -> None:
    triggers = [Trigger("det", 10 * H, "low"), Trigger("det", 18 * H, "high")]
    figures = policy_figures(triggers, ward(event_h=20))
    assert figures["median_lead_h"] == 10.0
    assert figures["per_event"][0]["first_alert_priority"] == "low"
    assert figures["per_event"][0]["alerts_before_event"] == 2


def test_alerts_more_than_24_h_before_after_the_event_and_on_stable_patients() -> None:
    labels = ward(event_h=30, hours=40)
    triggers = [Trigger("det", 5 * H, "medium"),      # 25 h before: not about this event
                Trigger("det", 31 * H, "high"),       # after the event: being treated
                Trigger("stable", 12 * H, "medium")]  # no event at all
    verdicts = [v for v, _ in classify_triggers(triggers, labels)]
    assert verdicts == ["false", "after_event", "false"]
    figures = policy_figures(triggers, labels)
    assert (figures["true_alerts"], figures["false_alerts"], figures["after_event_alerts"]) == (0, 2, 1)
    assert figures["ppv"] == 0.0
    assert figures["events_alerted_1h_before"] == 0 and figures["median_lead_h"] is None
    assert figures["false_alerts_by_patient"] == {"det": 1, "stable": 1}


def test_rates_are_per_patient_day_of_observed_time() -> None:
    # Two patients for 12 h each make one patient-day.
    labels = ward(event_h=10, hours=12)
    triggers = [Trigger("stable", H, "high"), Trigger("stable", 2 * H, "low"), Trigger("det", 5 * H, "low")]
    figures = policy_figures(triggers, labels)
    assert labels.patient_days == pytest.approx(1.0)
    assert figures["alerts_per_patient_day"] == 3.0
    assert figures["alerts_per_patient_day_by_priority"] == {"high": 1.0, "medium": 0.0, "low": 2.0}
    assert figures["false_alerts_per_patient_day"] == 2.0


def test_only_new_clinical_alerts_count_and_a_redelivered_message_counts_once() -> None:
    messages = [
        alert("det", 14, "raised", alert_id="a1"),
        alert("det", 14, "raised", alert_id="a1"),             # redelivered: same event_id
        alert("det", 14.5, "acknowledged", alert_id="a1"),     # a nurse's answer, not an alert
        alert("det", 15, "escalated", priority="high", alert_id="a2"),
        alert("det", 16, "reraised", priority="high", alert_id="a3"),
        alert("det", 17, "resolved", alert_id="a3"),
        alert("stable", 3, "raised", kind="technical", priority="low", alert_id="t1"),
    ]
    clinical = new_alert_triggers(messages)
    assert [t.ref for t in clinical] == ["a1/raised", "a2/escalated", "a3/reraised"]
    assert [t.ref for t in new_alert_triggers(messages, kind="technical")] == ["t1/raised"]


def test_naive_news2_alerts_each_time_the_total_rises_to_the_threshold() -> None:
    times = np.arange(8) * 60_000
    series = {"p": (times, np.array([3, 5, 6, 4, 5, 7, 7, 2])),
              "q": (times[:2], np.array([6, 6]))}  # first published score already >= 5
    ge5 = naive_news2_triggers(series, 5)
    assert [(t.patient_id, t.time_ms) for t in ge5] == [("q", 0), ("p", 60_000), ("p", 240_000)]
    ge7 = naive_news2_triggers(series, 7)
    assert [(t.patient_id, t.time_ms, t.priority) for t in ge7] == [("p", 300_000, "high")]


def test_issue7_comparison_needs_half_the_alerts_and_as_many_events_caught() -> None:
    policy = {"alerts_per_patient_day": 0.4, "events_alerted_1h_before": 9}
    assert compare_with_naive(policy, {"alerts_per_patient_day": 1.0, "events_alerted_1h_before": 9})["met"]
    fewer_caught = compare_with_naive(policy, {"alerts_per_patient_day": 1.0, "events_alerted_1h_before": 10})
    assert fewer_caught["at_least_50pct_fewer_alerts"] and not fewer_caught["met"]
    too_many = compare_with_naive(policy, {"alerts_per_patient_day": 0.7, "events_alerted_1h_before": 9})
    assert too_many["alert_reduction_vs_naive_news2_ge5"] == pytest.approx(0.4286, abs=1e-4)
    assert not too_many["met"]


def test_a_recording_without_labels_reports_alert_burden_only() -> None:
    labels = Labels.from_spans([PatientSpan("r1", "ICU", "", 0, 23 * H)], "rec", report_interval_ms=H)
    figures = policy_figures([Trigger("r1", H, "medium")], labels)
    assert figures["alerts_per_patient_day"] == 1.0
    assert figures["events"] is None and figures["false_alerts_per_patient_day"] is None
    assert classify_triggers([Trigger("r1", H, "medium")], labels) == [("unlabelled", None)]
