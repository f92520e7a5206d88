"""Matching alerts to labelled events, and the figures of one alerting policy.

Pure functions over plain records: the alerts as they were on the ``alerts`` topic, the bed
states as they were on ``ward.state``, and the `Labels`. Definitions (docs/validation.md
repeats them):

- **New alert**: a clinical alert message whose status is raised, escalated or reraised
  (acknowledged and resolved messages are not new alerts). Technical alerts (probe off, no
  data) are counted apart and never enter sensitivity, PPV or false alerts.
- **Naive NEWS2 >= T**: from the NEWS2 totals the stream published per patient, in device
  time order: a trigger each time the total rises to T or more from below T (or the
  patient's first published score is already >= T). The worker publishes a bed state at
  once whenever the total changes, so every crossing is on the topic.
- **True alert**: a trigger for a patient at most ``lookback_h`` (24 h) before one of the
  patient's events and not after it. **After-event**: a trigger after an event and outside
  any later event's window (the patient is already being treated; neither true nor
  false). **False alert**: every other trigger.
- **Alerted 1 h before**: at least one trigger between 24 h and 1 h before the event.
- **Lead time**: event time minus the earliest trigger in the 24 h before the event;
  the median is over events with such a trigger (late ones included, missed ones not).
- **PPV**: true / (true + false).

>>> events = [Event("p1", "4B", "1", "sepsis", event_ms=10 * HOUR_MS)]
>>> spans = {"p1": PatientSpan("p1", "4B", "1", 0, 12 * HOUR_MS),
...          "p2": PatientSpan("p2", "4B", "2", 0, 12 * HOUR_MS)}
>>> labels = Labels("doc", spans, events)
>>> block = policy_figures([Trigger("p1", 4 * HOUR_MS, "medium"), Trigger("p2", HOUR_MS, "low")], labels)
>>> block["events_alerted_1h_before"], block["median_lead_h"], block["false_alerts"], block["ppv"]
(1, 6.0, 1, 0.5)
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vitalstream.alerts.messages import PRIORITIES
from vitalstream.validation.labels import HOUR_MS, Event, Labels, PatientSpan

NEW_ALERT_STATUSES: tuple[str, ...] = ("raised", "escalated", "reraised")
LOOKBACK_H = 24.0
EARLY_H = 1.0
TOP_PATIENTS = 20  # per-patient counts listed in a report (a recording may hold thousands)

__all__ = ["EARLY_H", "LOOKBACK_H", "NEW_ALERT_STATUSES", "Event", "PatientSpan", "Trigger",
           "classify_triggers", "compare_with_naive", "naive_news2_triggers", "new_alert_triggers", "policy_figures"]


@dataclasses.dataclass(frozen=True, slots=True)
class Trigger:
    """One new alert of a policy: whose, when (device ms), how urgent, and what it was
    on the stream (the alert's ``event_id``, or the bed state's time for naive rules)."""

    patient_id: str
    time_ms: int
    priority: str
    ref: str = ""


def new_alert_triggers(alerts: Iterable[Mapping[str, Any]], kind: str = "clinical") -> list[Trigger]:
    """The new alerts of one kind among alert messages, each once (by ``event_id``: a
    redelivered message is not a second alert)."""
    seen: set[str] = set()
    triggers = []
    for alert in alerts:
        if alert.get("kind") != kind or alert.get("status") not in NEW_ALERT_STATUSES:
            continue
        event_id = str(alert.get("event_id") or f"{alert.get('alert_id')}/{alert.get('status')}")
        if event_id in seen:
            continue
        seen.add(event_id)
        triggers.append(Trigger(str(alert["patient_id"]), int(alert["device_time_ms"]),
                                str(alert.get("priority", "")), event_id))
    return sorted(triggers, key=lambda t: (t.time_ms, t.patient_id))


def naive_news2_triggers(news2_series: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         threshold: int) -> list[Trigger]:
    """Triggers of "alert whenever NEWS2 >= threshold" from each patient's published
    NEWS2 totals (times ms, totals), already in device-time order. A trigger's priority
    is the NEWS2 band it rose into (high at 7 or more, else medium)."""
    triggers = []
    for patient_id, (times_ms, totals) in news2_series.items():
        above = np.asarray(totals) >= threshold
        rising = above & ~np.concatenate([[False], above[:-1]])
        for index in np.flatnonzero(rising).tolist():
            total = int(totals[index])
            triggers.append(Trigger(patient_id, int(times_ms[index]), "high" if total >= 7 else "medium",
                                    f"news2={total}@{int(times_ms[index])}"))
    return sorted(triggers, key=lambda t: (t.time_ms, t.patient_id))


def classify_triggers(triggers: list[Trigger], labels: Labels,
                      lookback_h: float = LOOKBACK_H) -> list[tuple[str, Event | None]]:
    """Each trigger's verdict ("true", "false", "after_event"; "unlabelled" when the labels
    have no events) and the event a true one is matched to."""
    if not labels.has_events:
        return [("unlabelled", None)] * len(triggers)
    lookback_ms = int(lookback_h * HOUR_MS)
    events_by_patient: dict[str, list[Event]] = defaultdict(list)
    for event in sorted(labels.events, key=lambda e: e.event_ms):
        events_by_patient[event.patient_id].append(event)
    verdicts: list[tuple[str, Event | None]] = []
    for trigger in triggers:
        events = events_by_patient.get(trigger.patient_id, [])
        # Events in time order: the first window that holds the trigger wins.
        event = next((e for e in events if e.event_ms - lookback_ms <= trigger.time_ms <= e.event_ms), None)
        if event is not None:
            verdicts.append(("true", event))
        elif any(trigger.time_ms > e.event_ms for e in events):
            verdicts.append(("after_event", None))
        else:
            verdicts.append(("false", None))
    return verdicts


def _top(counts: Mapping[str, int], limit: int = TOP_PATIENTS) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


def _per_day(count: int, patient_days: float) -> float | None:
    return round(count / patient_days, 4) if patient_days > 0 else None


def policy_figures(triggers: list[Trigger], labels: Labels, lookback_h: float = LOOKBACK_H,
                   early_h: float = EARLY_H) -> dict[str, Any]:
    """Every figure of one policy's triggers against the labels (definitions above).
    Event figures are None when the labels have no events (alert burden only)."""
    days = labels.patient_days
    by_priority = {p: sum(1 for t in triggers if t.priority == p) for p in reversed(PRIORITIES)}
    figures: dict[str, Any] = {
        "alerts": len(triggers),
        "alerts_per_patient_day": _per_day(len(triggers), days),
        "alerts_per_patient_day_by_priority": {p: _per_day(n, days) for p, n in by_priority.items()},
        "alerts_by_priority": by_priority,
        "patients_alerted": len({t.patient_id for t in triggers}),
        "most_alerted_patients": _top(Counter(t.patient_id for t in triggers)),
    }
    if not labels.has_events:
        figures.update({key: None for key in (
            "events", "events_alerted_1h_before", "sensitivity_1h", "events_alerted_before_event",
            "median_lead_h", "lead_h_quartiles", "true_alerts", "false_alerts", "after_event_alerts",
            "false_alerts_per_patient_day", "ppv", "missed_events", "per_event")})
        return figures

    early_ms = int(early_h * HOUR_MS)
    before_event: dict[Event, list[Trigger]] = defaultdict(list)
    counts = {"true": 0, "false": 0, "after_event": 0}
    false_by_patient: dict[str, int] = defaultdict(int)
    for trigger, (verdict, event) in zip(triggers, classify_triggers(triggers, labels, lookback_h), strict=True):
        counts[verdict] += 1
        if event is not None:
            before_event[event].append(trigger)
        if verdict == "false":
            false_by_patient[trigger.patient_id] += 1

    per_event = []
    for event in sorted(labels.events, key=lambda e: (e.event_ms, e.patient_id)):
        hits = before_event.get(event, [])
        first = min(hits, key=lambda t: t.time_ms) if hits else None
        lead_h = (event.event_ms - first.time_ms) / HOUR_MS if first else None
        per_event.append({
            **event.to_dict(),
            "alerts_before_event": len(hits),
            "first_alert_ms": first.time_ms if first else None,
            "first_alert_priority": first.priority if first else None,
            "first_alert_ref": first.ref if first else None,
            "lead_h": round(lead_h, 3) if lead_h is not None else None,
            "alerted_1h_before": any(t.time_ms <= event.event_ms - early_ms for t in hits),
        })
    leads = np.array([row["lead_h"] for row in per_event if row["lead_h"] is not None])
    alerted_early = sum(1 for row in per_event if row["alerted_1h_before"])
    flagged = counts["true"] + counts["false"]
    figures.update({
        "events": len(per_event),
        "events_alerted_1h_before": alerted_early,
        "sensitivity_1h": round(alerted_early / len(per_event), 4) if per_event else None,
        "events_alerted_before_event": int(leads.size),
        "median_lead_h": round(float(np.median(leads)), 3) if leads.size else None,
        "lead_h_quartiles": [round(float(q), 3) for q in np.percentile(leads, [25, 75])] if leads.size else None,
        "true_alerts": counts["true"],
        "false_alerts": counts["false"],
        "after_event_alerts": counts["after_event"],
        "false_alerts_per_patient_day": _per_day(counts["false"], days),
        "ppv": round(counts["true"] / flagged, 4) if flagged else None,
        "false_alerts_by_patient": _top(false_by_patient),
        "missed_events": [{k: row[k] for k in ("patient_id", "ward", "bed", "kind", "event_ms", "lead_h")}
                          for row in per_event if not row["alerted_1h_before"]],
        "per_event": per_event,
    })
    return figures


def compare_with_naive(policy: Mapping[str, Any], naive: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 7's target: at least 50 % fewer alerts per patient-day than naive NEWS2 >= 5,
    while catching at least as many events 1 h or more before they happen."""
    policy_rate, naive_rate = policy["alerts_per_patient_day"], naive["alerts_per_patient_day"]
    reduction = (1.0 - policy_rate / naive_rate) if policy_rate is not None and naive_rate else None
    caught, naive_caught = policy.get("events_alerted_1h_before"), naive.get("events_alerted_1h_before")
    fewer = reduction is not None and reduction >= 0.5
    as_many = None if caught is None or naive_caught is None else caught >= naive_caught
    return {
        "alert_reduction_vs_naive_news2_ge5": round(reduction, 4) if reduction is not None else None,
        "events_alerted_1h_before": caught,
        "naive_events_alerted_1h_before": naive_caught,
        "at_least_50pct_fewer_alerts": fewer,
        "catches_at_least_as_many": as_many,
        "met": bool(fewer and as_many) if as_many is not None else None,
    }
