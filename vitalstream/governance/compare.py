"""Live against shadow on the same patients: the figures of ``vitalstream compare``, and
the shared pieces of the reports (spans from bed states, subgroups, HTML with plots).

Pure: alert messages, bed states, outcome events and demographics in, a JSON-able dict
out. Definitions are validation's (``vitalstream.validation.matching``): a new alert is a
clinical raised, escalated or reraised message; an event is caught when a new alert came
in the 24 h before it, alerted 1 h before when one came at least 1 h before; lead time
is the event's time minus the first such alert. **Overlap**: a live and a shadow episode
(raised alerts) of the same patient within ``OVERLAP_MS`` of each other are the same
worry; each episode is counted once, as both, live only or shadow only.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vitalstream.governance.quality import age_band
from vitalstream.validation.labels import Event, Labels, PatientSpan
from vitalstream.validation.matching import Trigger, new_alert_triggers, policy_figures

OVERLAP_MS = 3_600_000
KEPT = ("alerts", "alerts_per_patient_day", "patients_alerted", "events", "events_alerted_1h_before",
        "sensitivity_1h", "median_lead_h", "lead_h_quartiles", "true_alerts", "false_alerts", "ppv")


def spans_from_bed_states(states: Iterable[Mapping[str, Any]], since_ms: int | None = None,
                          until_ms: int | None = None) -> dict[str, PatientSpan]:
    """Each patient's time under observation from the bed states they published, clipped
    to [since, until)."""
    first: dict[str, list[Any]] = {}
    for state in states:
        patient_id, t = state.get("patient_id"), state.get("time_ms")
        if not isinstance(patient_id, str) or not isinstance(t, int):
            continue
        entry = first.setdefault(patient_id, [state.get("ward", ""), state.get("bed", ""), t, t])
        entry[2], entry[3] = min(entry[2], t), max(entry[3], t)
    spans = {}
    for patient_id, (ward, bed, start, end) in first.items():
        start = max(start, since_ms) if since_ms is not None else start
        end = min(end, until_ms) if until_ms is not None else end
        if end > start:
            spans[patient_id] = PatientSpan(patient_id, str(ward), str(bed), start, end)
    return spans


def in_window(alerts: Iterable[Mapping[str, Any]], since_ms: int | None, until_ms: int | None) -> list[Mapping[str, Any]]:
    return [a for a in alerts if (since_ms is None or a.get("device_time_ms", 0) >= since_ms)
            and (until_ms is None or a.get("device_time_ms", 0) < until_ms)]


def scopes(spans: Mapping[str, PatientSpan], demographics: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Patients of each scope: everyone, each ward, each age band, each sex."""
    out: dict[str, set[str]] = {"all": set(spans)}
    for patient_id, span in spans.items():
        out.setdefault(f"ward {span.ward}", set()).add(patient_id)
        who = demographics.get(patient_id, {})
        out.setdefault(f"age {age_band(who.get('age_years'))}", set()).add(patient_id)
        out.setdefault(f"sex {who.get('sex') or 'unknown'}", set()).add(patient_id)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "all", kv[0])))


def labels_of(spans: Mapping[str, PatientSpan], events: Sequence[Event], patients: set[str],
              has_events: bool) -> Labels:
    return Labels("compare", {p: s for p, s in spans.items() if p in patients},
                  [e for e in events if e.patient_id in patients], has_events=has_events)


def overlap(live: Sequence[Trigger], shadow: Sequence[Trigger], window_ms: int = OVERLAP_MS) -> dict[str, Any]:
    unmatched = list(shadow)
    both = live_only = 0
    for trigger in live:
        match = next((s for s in unmatched if s.patient_id == trigger.patient_id
                      and abs(s.time_ms - trigger.time_ms) <= window_ms), None)
        if match is None:
            live_only += 1
        else:
            both += 1
            unmatched.remove(match)
    total = both + live_only + len(unmatched)
    return {"both": both, "live_only": live_only, "shadow_only": len(unmatched),
            "share": round(both / total, 4) if total else None}


def figures(triggers: Sequence[Trigger], labels: Labels) -> dict[str, Any]:
    block = policy_figures(list(triggers), labels)
    return {key: block.get(key) for key in KEPT} | {"patient_days": round(labels.patient_days, 4)}


def compare(live_alerts: Iterable[Mapping[str, Any]], shadow_alerts: Iterable[Mapping[str, Any]],
            spans: Mapping[str, PatientSpan], events: Sequence[Event] = (),
            demographics: Mapping[str, Mapping[str, Any]] | None = None, has_events: bool = False,
            since_ms: int | None = None, until_ms: int | None = None) -> dict[str, Any]:
    """Live and shadow figures per scope, and their overlap, on the patients of ``spans``."""
    demographics = demographics or {}
    live = [t for t in new_alert_triggers(in_window(live_alerts, since_ms, until_ms)) if t.patient_id in spans]
    shadow = [t for t in new_alert_triggers(in_window(shadow_alerts, since_ms, until_ms)) if t.patient_id in spans]
    report: dict[str, Any] = {"since_ms": since_ms, "until_ms": until_ms, "patients": len(spans),
                              "events_known": has_events, "scopes": {}}
    for name, patients in scopes(spans, demographics).items():
        labels = labels_of(spans, events, patients, has_events)
        live_in = [t for t in live if t.patient_id in patients]
        shadow_in = [t for t in shadow if t.patient_id in patients]
        raised = [t for t in live_in if t.ref.endswith("/raised")], [t for t in shadow_in if t.ref.endswith("/raised")]
        report["scopes"][name] = {"patients": len(patients), "live": figures(live_in, labels),
                                  "shadow": figures(shadow_in, labels), "overlap": overlap(*raised)}
    return report


# -- rendering ---------------------------------------------------------------------------
def bar_plot(title: str, groups: Sequence[str], series: Mapping[str, Sequence[float | None]], ylabel: str) -> str:
    """A grouped bar chart as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(figsize=(max(5, 0.9 * len(groups) + 2), 3.2), dpi=100)
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        axes.bar(np.arange(len(groups)) + k * width, [v or 0 for v in values], width, label=name)
    axes.set_xticks(np.arange(len(groups)) + width * (len(series) - 1) / 2, groups, rotation=30, ha="right")
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return html.escape("" if value is None else str(value))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, sections: Sequence[str]) -> str:
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}th:first-child,td:first-child"
             "{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def render_compare(report: Mapping[str, Any]) -> str:
    names = list(report["scopes"])
    rows = []
    for name in names:
        scope = report["scopes"][name]
        for side in ("live", "shadow"):
            f = scope[side]
            rows.append([name, side, f["patient_days"], f["alerts"], f["alerts_per_patient_day"],
                         f["events"], f["events_alerted_1h_before"], f["median_lead_h"], f["ppv"],
                         scope["overlap"]["share"] if side == "live" else None])
    plot = bar_plot("New alerts per patient-day", names, {
        side: [report["scopes"][n][side]["alerts_per_patient_day"] for n in names] for side in ("live", "shadow")},
        "alerts / patient-day")
    intro = (f"<p>{report['patients']} patients; outcomes {'known' if report['events_known'] else 'not given'}. "
             "Definitions: docs/governance.md.</p>")
    return page("vitalstream: live against shadow", [
        intro, f"<img alt='alerts per patient-day' src='data:image/png;base64,{plot}'>",
        table(rows, ["scope", "run", "patient-days", "new alerts", "per patient-day", "events",
                     "caught 1 h before", "median lead h", "PPV", "overlap"])])
