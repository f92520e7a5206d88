"""The accuracy audit: the live alerts against the outcomes that happened, with
intervals, overall and by ward, age band and sex (``vitalstream audit-accuracy``).

Figures are validation's (``policy_figures``: PPV, sensitivity 1 h before, lead time,
alerts per patient-day), each with a 95 % interval: Wilson's for the proportions,
the exact Poisson (Garwood) interval for the rate, and a bootstrap of the events for the
median lead time (seeded: the same data give the same interval).

>>> wilson(8, 10)
(0.4902, 0.9433)
>>> poisson_rate(0, 2.0)[0]
0.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vitalstream.governance.compare import bar_plot, labels_of, page, scopes, table
from vitalstream.validation.labels import Event, PatientSpan
from vitalstream.validation.matching import new_alert_triggers, policy_figures

Z95 = 1.959963984540054
BOOTSTRAP = 2000


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    if n <= 0:
        return None
    p = successes / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def poisson_rate(count: int, exposure: float) -> tuple[float, float] | None:
    """Exact 95 % interval of a rate (count / exposure), from the chi-square quantiles."""
    if exposure <= 0:
        return None
    from scipy.stats import chi2

    low = 0.0 if count == 0 else chi2.ppf(0.025, 2 * count) / 2
    high = chi2.ppf(0.975, 2 * count + 2) / 2
    return round(float(low) / exposure, 4), round(float(high) / exposure, 4)


def median_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float] | None:
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    medians = np.median(rng.choice(data, size=(BOOTSTRAP, data.size), replace=True), axis=1)
    return round(float(np.percentile(medians, 2.5)), 3), round(float(np.percentile(medians, 97.5)), 3)


def audit_figures(triggers: Sequence[Any], labels: Any) -> dict[str, Any]:
    block = policy_figures(list(triggers), labels)
    days = labels.patient_days
    leads = [row["lead_h"] for row in block.get("per_event") or [] if row["lead_h"] is not None]
    flagged = (block["true_alerts"] or 0) + (block["false_alerts"] or 0)
    return {
        "patients": len(labels.patients), "patient_days": round(days, 4),
        "alerts": block["alerts"], "alerts_per_patient_day": block["alerts_per_patient_day"],
        "alerts_per_patient_day_ci95": poisson_rate(block["alerts"], days),
        "events": block["events"], "events_alerted_1h_before": block["events_alerted_1h_before"],
        "sensitivity_1h": block["sensitivity_1h"],
        "sensitivity_1h_ci95": wilson(block["events_alerted_1h_before"] or 0, block["events"] or 0),
        "true_alerts": block["true_alerts"], "false_alerts": block["false_alerts"],
        "ppv": block["ppv"], "ppv_ci95": wilson(block["true_alerts"] or 0, flagged),
        "median_lead_h": block["median_lead_h"], "median_lead_h_ci95": median_interval(leads),
        "lead_h_quartiles": block["lead_h_quartiles"],
    }


def accuracy_audit(alerts: Iterable[Mapping[str, Any]], spans: Mapping[str, PatientSpan],
                   events: Sequence[Event], demographics: Mapping[str, Mapping[str, Any]],
                   since_ms: int | None = None, until_ms: int | None = None) -> dict[str, Any]:
    from vitalstream.governance.compare import in_window

    triggers = [t for t in new_alert_triggers(in_window(alerts, since_ms, until_ms)) if t.patient_id in spans]
    # An event counts if it falls where the patient was watched (or within a day after).
    events = [e for e in events if e.patient_id in spans
              and spans[e.patient_id].start_ms <= e.event_ms <= spans[e.patient_id].end_ms + 86_400_000]
    out: dict[str, Any] = {"since_ms": since_ms, "until_ms": until_ms, "scopes": {}}
    for name, patients in scopes(spans, demographics).items():
        labels = labels_of(spans, events, patients, has_events=True)
        out["scopes"][name] = audit_figures([t for t in triggers if t.patient_id in patients], labels)
    return out


def render_accuracy(report: Mapping[str, Any], refused: Mapping[str, int]) -> str:
    names = list(report["scopes"])

    def ci(pair: Any) -> str:
        return f"{pair[0]}–{pair[1]}" if pair else ""
    rows = [[n, s["patients"], s["patient_days"], s["alerts_per_patient_day"], ci(s["alerts_per_patient_day_ci95"]),
             s["events"], s["sensitivity_1h"], ci(s["sensitivity_1h_ci95"]), s["ppv"], ci(s["ppv_ci95"]),
             s["median_lead_h"], ci(s["median_lead_h_ci95"])] for n, s in ((n, report["scopes"][n]) for n in names)]
    plots = [bar_plot("Sensitivity 1 h before and PPV", names, {
        "sensitivity": [report["scopes"][n]["sensitivity_1h"] for n in names],
        "PPV": [report["scopes"][n]["ppv"] for n in names]}, "share")]
    refusals = "".join(f"<li>{k}: {v}</li>" for k, v in refused.items()) or "<li>none</li>"
    return page("vitalstream: accuracy audit against outcomes", [
        "<p>95 % intervals: Wilson (proportions), exact Poisson (rate), bootstrap (median lead). "
        "Definitions: docs/governance.md.</p>",
        *(f"<img alt='figures by scope' src='data:image/png;base64,{p}'>" for p in plots),
        table(rows, ["scope", "patients", "patient-days", "alerts / patient-day", "95 % CI", "events",
                     "sensitivity 1 h", "95 % CI", "PPV", "95 % CI", "median lead h", "95 % CI"]),
        f"<h2>Outcome rows refused</h2><ul>{refusals}</ul>"])
