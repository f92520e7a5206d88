"""The validation report: figures from what the stream produced, as JSON, HTML and PNGs.

`build_report` is pure (labels + collected stream + run facts + provenance -> a
JSON-ready dict); `provenance` reads what the run was made with (date, commit, versions);
`write_report` renders it. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import math
import subprocess
import time
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


def policy_version() -> str:
    """The alert policy the worker runs (its default `PolicyConfig`, as `build_monitor`
    makes it), as a fingerprint of every threshold and window: two runs with the same
    fingerprint ran the same rules."""
    from vitalstream.alerts.policy import PolicyConfig

    config = orjson.dumps(dataclasses.asdict(PolicyConfig()), option=orjson.OPT_SORT_KEYS, default=str)
    return "PolicyConfig defaults, sha256 " + hashlib.sha256(config).hexdigest()[:12]


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """When and with what this run was made: the date (UTC), the commit of the code (with
    "+ local changes" when the checkout differs from it), vitalstream's version and the
    alert policy's fingerprint. The model version comes from the alerts (`build_report`)."""
    from importlib.metadata import PackageNotFoundError, version

    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += " + local changes"
    try:
        package = version("vitalstream")
    except PackageNotFoundError:
        package = "not installed"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit or "unknown (not a git checkout)",
            "vitalstream_version": package, "policy_version": policy_version()}


def model_versions(alerts: list[dict[str, Any]]) -> list[str]:
    """The risk model versions the stream's clinical alerts carry (what actually ran)."""
    found = set()
    for alert in alerts:
        risk = (alert.get("payload") or {}).get("risk") or {}
        if risk.get("model_version"):
            found.add(str(risk["model_version"]))
    return sorted(found)


def build_report(labels: Labels, collector: StreamCollector, run: dict[str, Any],
                 source: dict[str, Any], made_with: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every figure of the report (JSON-ready); ``run`` is `LiveRun.to_dict()`,
    ``made_with`` is `provenance()` (read now when not given)."""
    policy_triggers = new_alert_triggers(collector.alerts, "clinical")
    technical = new_alert_triggers(collector.alerts, "technical")
    series = collector.news2_series()
    policy = policy_figures(policy_triggers, labels)
    naive5 = policy_figures(naive_news2_triggers(series, 5), labels)
    naive7 = policy_figures(naive_news2_triggers(series, 7), labels)
    days = labels.patient_days
    report: dict[str, Any] = {
        "source": source,
        "simulated": source.get("kind") == "scenario",
        "provenance": {**(made_with if made_with is not None else provenance()),
                       "model_versions": model_versions(collector.alerts),
                       "seed": source.get("seed")},
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
    """One patient: HR and SBP, RR and temperature, SpO2 on its own axis, NEWS2 as the
    step line the stream published (with the model's risk), the policy's alerts, naive
    NEWS2 >= 5's alerts and the labelled events; every line is in a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    pid = entry["patient_id"]
    data = collector.timeline(pid)

    def hours(times_ms: Any) -> np.ndarray:
        return (np.asarray(times_ms, dtype=np.float64) - origin_ms) / HOUR_MS

    fig, axes = plt.subplots(4, 1, figsize=(9, 8.5), sharex=True,
                             gridspec_kw={"height_ratios": [1.2, 1, 0.8, 1.2]})
    ax_cardio, ax_resp, ax_spo2, ax_score = axes
    handles: dict[Any, list[Any]] = {ax: [] for ax in axes}

    def line(ax: Any, parameter: str, colour: str, label: str, **style: Any) -> None:
        if parameter in data["vitals"]:
            t, v = data["vitals"][parameter]
            handles[ax] += ax.plot(hours(t), v, color=colour, label=label, **style)

    line(ax_cardio, "heart_rate", "#d62728", "heart rate, /min", lw=0.8)
    line(ax_cardio, "systolic_bp", "#1f77b4", "systolic BP, mmHg", lw=0.8)
    line(ax_resp, "resp_rate", "#2ca02c", "respiration rate, /min", lw=0.8)
    if "temperature" in data["vitals"]:
        t, v = data["vitals"]["temperature"]
        twin = ax_resp.twinx()
        handles[ax_resp] += twin.plot(hours(t), v, ".", ms=3, color="#8c564b", label="temperature, °C (right)")
        twin.set_ylabel("°C")
    line(ax_spo2, "spo2", "#9467bd", "SpO2, %", lw=0.8)
    handles[ax_score] += ax_score.step(hours(data["time_ms"]), data["news2"], where="post", color="k", lw=1,
                                       label="NEWS2 (published on ward.state)")
    if np.isfinite(data["risk"]).any():
        twin = ax_score.twinx()
        handles[ax_score] += twin.plot(hours(data["time_ms"]), data["risk"], color="#7f7f7f", lw=0.8,
                                       label="model risk (right)")
        twin.set_ylabel("model risk")
    naive_times = [t.time_ms for t in naive if t.patient_id == pid]
    handles[ax_score] += ax_score.plot(hours(naive_times), [5] * len(naive_times), "v", color="#aaaaaa", ms=5,
                                       ls="none", label="naive NEWS2 >= 5 alert")
    priorities = set()
    for trigger in (t for t in triggers if t.patient_id == pid):
        priorities.add(trigger.priority)
        for ax in axes:
            ax.axvline(hours(trigger.time_ms), color=PRIORITY_COLOURS.get(trigger.priority, "k"), lw=1.2)
    events = labels.events_of(pid)
    for event in events:
        for ax in axes:
            ax.axvline(hours(event.event_ms), color="k", ls="--", lw=1.2)
            ax.axvspan(hours(event.event_ms - LOOKBACK_H * HOUR_MS), hours(event.event_ms - EARLY_H * HOUR_MS),
                       color="#2ca02c", alpha=0.06)
            if event.onset_ms is not None:
                ax.axvline(hours(event.onset_ms), color="#7f7f7f", ls=":", lw=1)
    ax_cardio.set_ylabel("/min, mmHg")
    ax_resp.set_ylabel("/min")
    ax_spo2.set_ylabel("SpO2 %")
    ax_score.set_ylabel("NEWS2")
    ax_score.set_xlabel("hours since the start of the replay")
    for ax in axes:
        if handles[ax]:
            ax.legend(handles=handles[ax], fontsize=7, loc="upper left")
    # The vertical marks, once for the figure.
    marks = [Line2D([], [], color=PRIORITY_COLOURS[p], lw=1.2, label=f"vitalstream alert, {p}")
             for p in ("high", "medium", "low") if p in priorities]
    if events:
        marks += [Line2D([], [], color="k", ls="--", lw=1.2, label="event (simulator's label)"),
                  Line2D([], [], color="#7f7f7f", ls=":", lw=1, label="onset of the deterioration"),
                  Patch(color="#2ca02c", alpha=0.15, label="24 h to 1 h before the event")]
    span = labels.patients.get(pid)
    where = f"ward {span.ward} bed {span.bed}" if span else ""
    if span is not None:
        ax_score.set_xlim(hours(span.start_ms), hours(span.end_ms))
    fig.suptitle(f"{pid} {where}: {entry['why']}", fontsize=9)
    if marks:
        fig.legend(handles=marks, loc="lower center", ncol=min(len(marks), 3), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if marks else 0, 1, 1))
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


def header_html(report: dict[str, Any]) -> list[str]:
    """What the reader must know first: simulated or recorded patients, and what made the
    figures (date, commit, model and policy versions, the scenario's seed)."""
    made = report["provenance"]
    source = report["source"]
    if report["simulated"]:
        what = (f"<p class='banner'><b>Simulated patients.</b> Every patient in this report was made by "
                f"vitalstream's own simulator (scenario {_fmt(source.get('name'))}, seed {_fmt(made.get('seed'))}); "
                "no real patient's data. The simulator is ours, so the figures are consistency checks of "
                "the pipeline and its policy, not evidence of clinical performance.</p>")
    else:
        what = (f"<p class='banner'><b>Recorded patients</b> from {_fmt(source.get('path'))} "
                f"({_fmt(source.get('kind'))}), replayed through the pipeline.</p>")
    models = ", ".join(made.get("model_versions") or []) or "none: no alert carried a risk (NEWS2 only)"
    rows = [("date", made.get("date")), ("commit", made.get("commit")),
            ("vitalstream", made.get("vitalstream_version")), ("risk model", models),
            ("alert policy", made.get("policy_version"))]
    if report["simulated"]:
        rows.append(("scenario seed", made.get("seed")))
    table = "".join(f"<tr><th>{label}</th><td class='l'>{_fmt(value)}</td></tr>" for label, value in rows)
    return [what, f"<table class='made'>{table}</table>"]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def comparison_paragraphs(report: dict[str, Any]) -> list[str]:
    """The comparison with the naive rules in words, from the figures (so it stays true
    when they change): what the policy saves against NEWS2 >= 5, and what it buys, and
    costs, against NEWS2 >= 7."""
    policy, ge5, ge7 = report, report["naive_news2_ge5"], report["naive_news2_ge7"]
    events = policy.get("events") or 0
    paragraphs = []
    reduction = _ratio(policy.get("alerts_per_patient_day"), ge5.get("alerts_per_patient_day"))
    if reduction is not None:
        paragraphs.append(
            f"Against alerting at every rise of NEWS2 to 5 or more, the policy sends "
            f"{100 * (1 - reduction):.0f} % fewer alerts ({_plain(policy['alerts_per_patient_day'])} against "
            f"{_plain(ge5['alerts_per_patient_day'])} per patient-day) and alerts "
            f"{policy.get('events_alerted_1h_before')} of {events} events at least 1 h before, against "
            f"{ge5.get('events_alerted_1h_before')}.")
    false_p, false_7 = policy.get("false_alerts_per_patient_day"), ge7.get("false_alerts_per_patient_day")
    ppv_p, ppv_7 = policy.get("ppv"), ge7.get("ppv")
    if false_p is not None and false_7 is not None:
        ratio = _ratio(false_p, false_7)
        likeness = ("about the same false-alert rate as" if ratio is not None and 0.8 <= ratio <= 1.25
                    else "fewer false alerts than" if false_p < false_7 else "more false alerts than")
        text = (f"NEWS2 >= 7 is the fairer comparison: the policy has {likeness} it "
                f"({_plain(false_p)} against {_plain(false_7)} per patient-day)")
        if ppv_p is not None and ppv_7 is not None:
            text += f", at a PPV of {_plain(ppv_p)} against {_plain(ppv_7)}"
            false_alerts = [a for a in report.get("alert_list", []) if a["verdict"] == "false"]
            below_high = sum(1 for a in false_alerts if a["priority"] in ("medium", "low"))
            if false_alerts:
                text += (f". Of the policy's {len(false_alerts)} false alerts, {below_high} were medium or low "
                         "(NEWS2 5-6, or one parameter scoring 3), which NEWS2 >= 7 never sends")
        paragraphs.append(text + ".")
        caught_p, caught_7 = policy.get("events_alerted_1h_before"), ge7.get("events_alerted_1h_before")
        lead_p, lead_7 = policy.get("median_lead_h"), ge7.get("median_lead_h")
        if caught_p is not None and caught_7 is not None:
            buys = (f"What the policy's alerts buy: {caught_p} of {events} events alerted at least 1 h before, "
                    f"against {caught_7}")
            if lead_p is not None and lead_7 is not None:
                buys += f", with a median lead of {_plain(lead_p)} h against {_plain(lead_7)} h"
            if caught_p > caught_7:
                verdict = f"{caught_p - caught_7} more of the patients who deteriorated were warned about in time"
            elif caught_p == caught_7 and lead_p is not None and lead_7 is not None and lead_p > lead_7:
                verdict = "as many patients warned about in time, and earlier"
            else:
                verdict = "no earlier warning than NEWS2 >= 7 on these patients"
            count_p, count_7 = policy.get("alerts_per_patient_day"), ge7.get("alerts_per_patient_day")
            if count_p is not None and count_7 is not None and count_p > count_7:
                cost = (f"The price is more alerts: {_plain(count_p)} per patient-day against {_plain(count_7)}. "
                        "Raising the policy's thresholds (per patient: docs/alerts.md) trades lead for precision.")
            elif count_p is not None and count_7 is not None:
                cost = (f"It does so with fewer alerts than NEWS2 >= 7: {_plain(count_p)} per patient-day "
                        f"against {_plain(count_7)}, because it alerts once per episode, not at every crossing.")
            else:
                cost = ""
            paragraphs.append(f"{buys}: {verdict}. {cost}".strip())
    return paragraphs


def _plain(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


# The run's facts as table rows: (label, value), in the order a reader asks for them.
RUN_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("whole run (broker and worker start, replay, drain), s", ("run_s",)),
    ("replay, s", ("feed_s",)),
    ("drain after the replay, s", ("drain_s",)),
    ("gateway message format", ("format",)),
    ("speed (none: as fast as possible)", ("speed",)),
    ("samples sent", ("replay", "samples")),
    ("messages sent", ("replay", "messages")),
    ("pipeline samples/s", ("pipeline_samples_per_s",)),
    ("alert messages read back", ("alert_messages",)),
    ("bed-state messages read back", ("bed_state_messages",)),
)


def run_rows(stream: dict[str, Any]) -> list[tuple[str, Any]]:
    """The run's facts (`LiveRun.to_dict()` and the run's settings) as (label, value) rows:
    the known ones first with their meaning, then every worker counter, then anything else."""
    rows: list[tuple[str, Any]] = []
    used: set[tuple[str, ...]] = set()
    for label, path in RUN_ROWS:
        value: Any = stream
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None or path == ("speed",):
            rows.append((label, value))
            used.add(path)
    for key, value in (stream.get("worker") or {}).items():
        rows.append((f"worker: {key.replace('_', ' ')}", value))
    for key, value in (stream.get("topics") or {}).items():
        rows.append((f"topic: {key.replace('_', ' ')}", value))
    for key, value in stream.get("replay", {}).items() if isinstance(stream.get("replay"), dict) else ():
        if ("replay", key) not in used:
            if key.endswith("_device_ms") and isinstance(value, int):  # a device time: show it as one
                key, value = key.removesuffix("_ms"), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value / 1000))
            rows.append((f"replay: {key.replace('_', ' ')}", value))
    for key, value in stream.items():
        if (key,) not in used and key not in ("worker", "topics", "replay"):
            rows.append((key.replace("_", " "), value))
    return rows


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
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{text-align:left}td.l{text-align:left}"
        ".banner{background:#fff4d6;border:1px solid #e6a700;padding:8px 12px}"
        ".met{color:#2a7a2a}.unmet{color:#b00}</style></head><body>",
        "<h1>vitalstream validation report</h1>",
        *header_html(report),
        f"<p>{_fmt(str(report['source'].get('description') or report['source'].get('path')).rstrip('.'))}. "
        f"{report['patients']} patients, {_fmt(report['patient_days'])} patient-days. Every figure below "
        "comes from the messages the live pipeline published on the alerts and ward.state topics "
        "(nothing recomputed offline).</p>",
    ]
    if not report["labelled"]:
        parts.append("<p><b>This recording has no outcome labels</b>: alert burden only.</p>")
    parts.append("<h2>Headline</h2><table><tr><th></th><th>vitalstream policy</th>"
                 f"<th>naive NEWS2 &gt;= 5</th><th>naive NEWS2 &gt;= 7</th></tr>{rows}</table>")
    if report["labelled"]:
        parts.append("<h2>What the comparison says</h2>"
                     + "".join(f"<p>{html.escape(text)}</p>" for text in comparison_paragraphs(report)))
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
    parts.append("<h2>The run</h2><table>" + "".join(
        f"<tr><th>{html.escape(label)}</th><td>{_fmt(value)}</td></tr>" for label, value in run_rows(stream))
        + "</table>")
    parts.append("<h2>Definitions</h2><dl>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in report["definitions"].items()) + "</dl>")
    parts.append("</body></html>")
    return "\n".join(parts)
