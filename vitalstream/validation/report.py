"""The validation report: figures from what the stream produced, as JSON, HTML and PNGs.

`build_report` is pure (labels + collected stream + run facts -> a JSON-ready dict);
`write_report` renders it. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from vitalstream.validation.labels import HOUR_MS, Labels
from vitalstream.validation.matching import (
    EARLY_H,
    LOOKBACK_H,
    NEW_ALERT_STATUSES,
    Trigger,
    classify_triggers,
    compare_with_naive,
    naive_news2_triggers,
    new_alert_triggers,
    policy_figures,
)
from vitalstream.validation.stream import StreamCollector

# Issue 6's targets for the default ward scenario.
TARGETS: dict[str, tuple[str, str, float]] = {
    "sensitivity_1h": (">=", "deterioration events alerted at least 1 h before", 0.90),
    "median_lead_h": (">=", "median lead time, hours", 4.0),
    "false_alerts_per_patient_day": ("<=", "false alerts per patient-day", 0.5),
}
TIMELINES = 4
PRIORITY_COLOURS = {"high": "#d62728", "medium": "#e6a700", "low": "#17becf"}
DEFINITIONS = {
    "new_alert": "a clinical alert message with status raised, escalated or reraised (each event_id once)",
    "technical": "technical alerts (no data, sensor off, artefacts) are counted apart, never as false alerts",
    "true_alert": f"a new alert for a patient at most {LOOKBACK_H:g} h before one of their events and not after it",
    "after_event_alert": "a new alert after the patient's event (outside any later event's window): neither true nor false",
    "false_alert": "every other new alert",
    "alerted_1h_before": f"at least one new alert between {LOOKBACK_H:g} h and {EARLY_H:g} h before the event",
    "lead_h": f"event time minus the earliest new alert in the {LOOKBACK_H:g} h before it; median over events with one",
    "ppv": "true alerts / (true + false alerts)",
    "patient_days": "sum over patients of their observed time (simulated: until they leave the ward after the event)",
    "oversight": "acknowledgement, escalation and answer of each new clinical alert by the simple responder "
                 "model of vitalstream/oversight/responders.py (docs/validation.md), through the real escalation "
                 "chain: simulated, not measured",
    "naive_news2_geN": "from the NEWS2 totals on ward.state, per patient in device-time order: an alert each time "
                       "the total rises to N or more from below N (or the first published total is >= N)",
}


def build_report(labels: Labels, collector: StreamCollector, run: dict[str, Any],
                 source: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the report (JSON-ready); ``run`` is `LiveRun.to_dict()`."""
    policy_triggers = new_alert_triggers(collector.alerts, "clinical")
    technical = new_alert_triggers(collector.alerts, "technical")
    series = collector.news2_series()
    policy = policy_figures(policy_triggers, labels)
    naive5 = policy_figures(naive_news2_triggers(series, 5), labels)
    naive7 = policy_figures(naive_news2_triggers(series, 7), labels)
    days = labels.patient_days
    report: dict[str, Any] = {
        "source": source,
        "patients": len(labels.patients),
        "patients_on_stream": len(series),
        "patient_days": round(days, 3),
        "labelled": labels.has_events,
        **policy,
        "naive_news2_ge5": naive5,
        "naive_news2_ge7": naive7,
        "technical": {
            "alerts": len(technical),
            "alerts_per_patient_day": round(len(technical) / days, 4) if days > 0 else None,
            "by_status": _count(a["status"] for a in collector.alerts if a.get("kind") == "technical"),
            "new_by_condition": _count(str((a.get("payload") or {}).get("technical", "")) for a in collector.alerts
                                       if a.get("kind") == "technical" and a.get("status") in NEW_ALERT_STATUSES),
        },
        "alert_messages_by_status": _count(a.get("status", "") for a in collector.alerts),
        # Every counted alert, traceable to its message on the alerts topic by event_id.
        "alert_list": [
            {"event_id": t.ref, "patient_id": t.patient_id, "device_time_ms": t.time_ms,
             "priority": t.priority, "verdict": verdict,
             "event_ms": event.event_ms if event is not None else None}
            for t, (verdict, event) in zip(policy_triggers, classify_triggers(policy_triggers, labels), strict=True)
        ],
        "stream": run,
        "definitions": DEFINITIONS,
    }
    if labels.has_events:
        report["issue7"] = compare_with_naive(policy, naive5)
        report["targets"] = {
            key: {"what": what, "target": f"{op} {limit:g}", "value": policy[key],
                  "met": None if policy[key] is None else
                  (policy[key] >= limit if op == ">=" else policy[key] <= limit)}
            for key, (op, what, limit) in TARGETS.items()
        }
    report["oversight"] = oversight_figures(collector.alerts, policy_triggers, labels)
    report["timelines"] = [{"patient_id": pid, "why": why, "png": f"timeline_{i + 1}.png"}
                           for i, (pid, why) in enumerate(choose_timelines(report, labels))]
    return report


def oversight_figures(alerts: list[dict[str, Any]], triggers: list[Trigger], labels: Labels) -> dict[str, Any]:
    """Time to acknowledge and answer, escalations and answers, from the responder model."""
    from vitalstream.oversight.responders import simulate

    verdicts = {t.ref: verdict for t, (verdict, _) in zip(triggers, classify_triggers(triggers, labels), strict=True)}
    wanted = set(verdicts)
    messages, seen = [], set()
    for alert in alerts:
        event_id = str(alert.get("event_id") or f"{alert.get('alert_id')}/{alert.get('status')}")
        if event_id in wanted and event_id not in seen:
            seen.add(event_id)
            messages.append({**alert, "event_id": event_id})
    return simulate(messages, verdicts)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def choose_timelines(report: dict[str, Any], labels: Labels, limit: int = TIMELINES) -> list[tuple[str, str]]:
    """A few patients worth looking at: missed events first, then the event with the
    median lead, the earliest-caught event, and the stable patient with most false alerts."""
    chosen: list[tuple[str, str]] = []
    per_event = report.get("per_event") or []
    for row in per_event:
        if not row["alerted_1h_before"] and len(chosen) < 2:
            chosen.append((row["patient_id"], f"missed event ({row['kind']})"))
    caught = sorted((r for r in per_event if r["alerted_1h_before"]), key=lambda r: r["lead_h"])
    if caught:
        chosen.append((caught[len(caught) // 2]["patient_id"], f"median lead ({caught[len(caught) // 2]['kind']})"))
        chosen.append((caught[-1]["patient_id"], f"longest lead ({caught[-1]['kind']})"))
    event_patients = {e.patient_id for e in labels.events}
    false_by_patient = report.get("false_alerts_by_patient") or {}
    stable = [pid for pid in false_by_patient if pid not in event_patients]
    if stable:
        chosen.append((stable[0], f"stable patient with most false alerts ({false_by_patient[stable[0]]})"))
    if not labels.has_events:
        chosen.extend((pid, f"{n} alerts") for pid, n in report["most_alerted_patients"].items())
    unique: list[tuple[str, str]] = []
    for pid, why in chosen:
        if pid not in {p for p, _ in unique}:
            unique.append((pid, why))
    if len(unique) > limit and stable:
        unique = [*unique[:limit - 1], unique[-1]] if unique[-1][0] == stable[0] else unique[:limit]
    return unique[:limit]


# -- rendering ---------------------------------------------------------------------------

def write_report(report: dict[str, Any], labels: Labels, collector: StreamCollector, out_dir: Path) -> None:
    """``report.json``, ``report.html`` and the PNGs into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    origin_ms = min((p.start_ms for p in labels.patients.values()), default=0)
    plots = []
    if labels.has_events and report["events"]:
        _plot_leads(report, out_dir / "lead_times.png")
        plots.append(("lead_times.png", "Lead time per event: the policy against naive NEWS2"))
    _plot_burden(report, out_dir / "alert_burden.png")
    plots.append(("alert_burden.png", "Alerts per patient-day by priority"))
    triggers = new_alert_triggers(collector.alerts, "clinical")
    naive = naive_news2_triggers(collector.news2_series(), 5)
    for entry in report["timelines"]:
        _plot_timeline(entry, labels, collector, triggers, naive, origin_ms, out_dir / entry["png"])
    (out_dir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    (out_dir / "report.html").write_text(render_html(report, plots), encoding="utf-8")


def _plot_leads(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = report["per_event"]
    naive = {(r["patient_id"], r["event_ms"]): r["lead_h"] for r in report["naive_news2_ge5"]["per_event"]}
    order = sorted(range(len(rows)), key=lambda i: -(rows[i]["lead_h"] or -1))
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(rows) + 2), 3.6))
    policy_leads = [rows[i]["lead_h"] or 0.0 for i in order]
    naive_leads = [naive.get((rows[i]["patient_id"], rows[i]["event_ms"])) or 0.0 for i in order]
    ax.bar(x - 0.2, policy_leads, 0.4, label="vitalstream policy", color="#1f77b4")
    ax.bar(x + 0.2, naive_leads, 0.4, label="naive NEWS2 >= 5", color="#aaaaaa")
    ax.axhline(EARLY_H, color="k", lw=0.8, ls="--")
    ax.axhline(4.0, color="k", lw=0.8, ls=":")
    ax.set(xlabel="event (sorted by the policy's lead)", ylabel="hours before the event",
           title="Lead time (0 = no alert in the 24 h before)")
    ax.set_xticks(x, [rows[i]["kind"][:4] for i in order], rotation=90, fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_burden(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    blocks = [("policy", report), ("naive NEWS2>=5", report["naive_news2_ge5"]),
              ("naive NEWS2>=7", report["naive_news2_ge7"])]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, (_name, block) in enumerate(blocks):
        bottom = 0.0
        for priority in ("high", "medium", "low"):
            value = block["alerts_per_patient_day_by_priority"][priority] or 0.0
            ax.bar(i, value, 0.6, bottom=bottom, color=PRIORITY_COLOURS[priority],
                   label=priority if i == 0 else None)
            bottom += value
        false_rate = block.get("false_alerts_per_patient_day")
        if false_rate is not None:
            ax.plot([i - 0.3, i + 0.3], [false_rate, false_rate], color="k", lw=2,
                    label="false alerts" if i == 0 else None)
    ax.set_xticks(range(len(blocks)), [name for name, _ in blocks])
    ax.set(ylabel="new alerts per patient-day", title="Alert burden")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_timeline(entry: dict[str, Any], labels: Labels, collector: StreamCollector,
                   triggers: list[Trigger], naive: list[Trigger], origin_ms: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    pid = entry["patient_id"]
    data = collector.timeline(pid)

    def hours(times_ms: Any) -> np.ndarray:
        return (np.asarray(times_ms, dtype=np.float64) - origin_ms) / HOUR_MS

    fig, (ax_cardio, ax_resp, ax_score) = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True)
    for parameter, ax, colour in (("heart_rate", ax_cardio, "#d62728"), ("systolic_bp", ax_cardio, "#1f77b4"),
                                  ("resp_rate", ax_resp, "#2ca02c"), ("spo2", ax_resp, "#9467bd")):
        if parameter in data["vitals"]:
            t, v = data["vitals"][parameter]
            ax.plot(hours(t), v, lw=0.8, color=colour, label=parameter)
    if "temperature" in data["vitals"]:
        t, v = data["vitals"]["temperature"]
        twin = ax_resp.twinx()
        twin.plot(hours(t), v, ".", ms=3, color="#8c564b", label="temperature")
        twin.set_ylabel("°C")
    ax_score.step(hours(data["time_ms"]), data["news2"], where="post", color="k", lw=1, label="NEWS2")
    if np.isfinite(data["risk"]).any():
        twin = ax_score.twinx()
        twin.plot(hours(data["time_ms"]), data["risk"], color="#7f7f7f", lw=0.8, label="risk")
        twin.set_ylabel("model risk")
    naive_times = [t.time_ms for t in naive if t.patient_id == pid]
    ax_score.plot(hours(naive_times), [5] * len(naive_times), "v", color="#aaaaaa", ms=5,
                  label="naive NEWS2>=5 alert")
    for trigger in (t for t in triggers if t.patient_id == pid):
        for ax in (ax_cardio, ax_resp, ax_score):
            ax.axvline(hours(trigger.time_ms), color=PRIORITY_COLOURS.get(trigger.priority, "k"), lw=1.2)
    for event in labels.events_of(pid):
        for ax in (ax_cardio, ax_resp, ax_score):
            ax.axvline(hours(event.event_ms), color="k", ls="--", lw=1.2)
            ax.axvspan(hours(event.event_ms - LOOKBACK_H * HOUR_MS), hours(event.event_ms - EARLY_H * HOUR_MS),
                       color="#2ca02c", alpha=0.06)
            if event.onset_ms is not None:
                ax.axvline(hours(event.onset_ms), color="#7f7f7f", ls=":", lw=1)
    ax_cardio.set_ylabel("/min, mmHg")
    ax_resp.set_ylabel("/min, %")
    ax_score.set_ylabel("NEWS2")
    ax_score.set_xlabel("hours since the start of the replay")
    for ax in (ax_cardio, ax_resp, ax_score):
        ax.legend(fontsize=7, loc="upper left")
    span = labels.patients.get(pid)
    where = f"ward {span.ward} bed {span.bed}" if span else ""
    if span is not None:
        ax_score.set_xlim(hours(span.start_ms), hours(span.end_ms))
    fig.suptitle(f"{pid} {where}: {entry['why']}\nalerts: colour = priority; dashed = event; "
                 "dotted = onset; green = 24 h to 1 h before", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return html.escape(str(value))


HEADLINE_ROWS: tuple[tuple[str, str], ...] = (
    ("alerts", "new clinical alerts"),
    ("alerts_per_patient_day", "alerts per patient-day"),
    ("events", "deterioration events"),
    ("events_alerted_1h_before", "events alerted >= 1 h before"),
    ("sensitivity_1h", "sensitivity (>= 1 h before)"),
    ("median_lead_h", "median lead, h"),
    ("true_alerts", "true alerts"),
    ("false_alerts", "false alerts"),
    ("false_alerts_per_patient_day", "false alerts per patient-day"),
    ("after_event_alerts", "alerts after the event"),
    ("ppv", "PPV"),
)


def render_html(report: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    blocks = (report, report["naive_news2_ge5"], report["naive_news2_ge7"])
    rows = "".join(f"<tr><th>{label}</th>{''.join(f'<td>{_fmt(b.get(key))}</td>' for b in blocks)}</tr>"
                   for key, label in HEADLINE_ROWS)
    for priority in ("high", "medium", "low"):
        cells = "".join(f"<td>{_fmt(b['alerts_per_patient_day_by_priority'][priority])}</td>" for b in blocks)
        rows += f"<tr><th>alerts per patient-day, {priority}</th>{cells}</tr>"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>vitalstream validation</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{text-align:left}"
        ".met{color:#2a7a2a}.unmet{color:#b00}</style></head><body>",
        "<h1>vitalstream validation report</h1>",
        f"<p>{_fmt(str(report['source'].get('description') or report['source'].get('path')).rstrip('.'))}. "
        f"{report['patients']} patients, {_fmt(report['patient_days'])} patient-days. Every figure below "
        "comes from the messages the live pipeline published on the alerts and ward.state topics "
        "(nothing recomputed offline).</p>",
    ]
    if not report["labelled"]:
        parts.append("<p><b>This recording has no outcome labels</b>: alert burden only.</p>")
    parts.append("<h2>Headline</h2><table><tr><th></th><th>vitalstream policy</th>"
                 f"<th>naive NEWS2 &gt;= 5</th><th>naive NEWS2 &gt;= 7</th></tr>{rows}</table>")
    if report.get("targets"):
        parts.append("<h2>Targets</h2><ul>")
        for target in report["targets"].values():
            css = "met" if target["met"] else "unmet"
            parts.append(f"<li class='{css}'>{html.escape(target['what'])} {html.escape(target['target'])}: "
                         f"{_fmt(target['value'])} ({'met' if target['met'] else 'not met'})</li>")
        issue7 = report["issue7"]
        parts.append(f"<li class='{'met' if issue7['met'] else 'unmet'}'>at least 50 % fewer alerts than naive "
                     f"NEWS2 &gt;= 5 and as many events caught &gt;= 1 h before: reduction "
                     f"{_fmt(issue7['alert_reduction_vs_naive_news2_ge5'])}, events {_fmt(issue7['events_alerted_1h_before'])}"
                     f" vs {_fmt(issue7['naive_events_alerted_1h_before'])} ({'met' if issue7['met'] else 'not met'})</li></ul>")
    for png, caption in plots:
        parts.append(f"<figure><img src='{png}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}"
                     "</figcaption></figure>")
    if report.get("per_event"):
        parts.append("<h2>Events</h2><table><tr><th>patient</th><th>ward/bed</th><th>kind</th><th>alerts before</th>"
                     "<th>first priority</th><th>lead h</th><th>&gt;= 1 h</th><th>naive &gt;= 5 lead h</th></tr>")
        naive = {(r["patient_id"], r["event_ms"]): r["lead_h"] for r in report["naive_news2_ge5"]["per_event"]}
        for row in report["per_event"]:
            parts.append(f"<tr><td>{_fmt(row['patient_id'])}</td><td>{_fmt(row['ward'])}/{_fmt(row['bed'])}</td>"
                         f"<td>{_fmt(row['kind'])}</td><td>{row['alerts_before_event']}</td>"
                         f"<td>{_fmt(row['first_alert_priority'])}</td><td>{_fmt(row['lead_h'])}</td>"
                         f"<td>{_fmt(row['alerted_1h_before'])}</td>"
                         f"<td>{_fmt(naive.get((row['patient_id'], row['event_ms'])))}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Timelines</h2>")
    for entry in report["timelines"]:
        parts.append(f"<figure><img src='{entry['png']}' alt='timeline'><figcaption>{_fmt(entry['patient_id'])}: "
                     f"{html.escape(entry['why'])}</figcaption></figure>")
    oversight = report.get("oversight")
    if oversight:
        rows = "".join(
            f"<tr><th>{p}</th><td>{_fmt(oversight['time_to_acknowledge'][p]['median_s'])}</td>"
            f"<td>{_fmt(oversight['time_to_acknowledge'][p]['p90_s'])}</td>"
            f"<td>{_fmt(oversight['time_to_answer'][p]['median_s'])}</td>"
            f"<td>{_fmt(oversight['time_to_answer'][p]['p90_s'])}</td></tr>" for p in ("high", "medium", "low"))
        parts.append("<h2>Human oversight (simulated responders)</h2><p>Each new clinical alert acknowledged, "
                     "escalated along the chain " + html.escape(" → ".join(oversight["chain"])) +
                     " and answered by the responder model (docs/validation.md), not by people.</p>"
                     "<table><tr><th>priority</th><th>acknowledge median s</th><th>p90 s</th>"
                     f"<th>answer median s</th><th>p90 s</th></tr>{rows}</table>"
                     f"<p>Escalations: {html.escape(str(oversight['escalations_by_step']))}. "
                     f"Answers: {html.escape(str(oversight['answers_by_reason']))}.</p>")
    technical = report["technical"]
    stream = report["stream"]
    parts.append(f"<h2>Technical alerts</h2><p>{technical['alerts']} new technical alerts "
                 f"({_fmt(technical['alerts_per_patient_day'])} per patient-day; by condition "
                 f"{html.escape(str(technical['new_by_condition']))}), kept apart from the figures above.</p>")
    parts.append("<h2>The run</h2><pre>" + html.escape(orjson.dumps(stream, option=orjson.OPT_INDENT_2).decode())
                 + "</pre>")
    parts.append("<h2>Definitions</h2><dl>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in report["definitions"].items()) + "</dl>")
    parts.append("</body></html>")
    return "\n".join(parts)
