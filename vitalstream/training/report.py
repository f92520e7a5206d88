"""Writing an evaluation: ``metrics.json`` and ``report.html`` with ROC, precision-recall
and calibration plots as PNG files beside it."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.metrics import precision_recall_curve, roc_curve


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def write_metrics(metrics: dict[str, Any], path: Path) -> Path:
    path.write_bytes(orjson.dumps(_clean(metrics), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def _plots(labels: np.ndarray, risk: np.ndarray, news2: np.ndarray,
           metrics: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    if len(np.unique(labels)) == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        for name, scores in (("model", risk), ("vitals-only NEWS2", news2)):
            fpr, tpr, _ = roc_curve(labels, scores)
            ax.plot(fpr, tpr, label=name)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
        ax.set(xlabel="false positive rate (hours)", ylabel="true positive rate (hours)",
               title="ROC, hour level")
        ax.legend(loc="lower right")
        fig.savefig(out_dir / "roc.png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(5, 5))
        for name, scores in (("model", risk), ("vitals-only NEWS2", news2)):
            precision, recall, _ = precision_recall_curve(labels, scores)
            ax.plot(recall, precision, label=name)
        ax.axhline(labels.mean(), color="grey", linewidth=0.5, label="prevalence")
        ax.set(xlabel="recall (hours)", ylabel="precision (hours)", title="Precision-recall")
        ax.legend(loc="upper right")
        fig.savefig(out_dir / "pr.png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        files += ["roc.png", "pr.png"]
    bins = metrics["calibration"]["bins"]
    if bins:
        fig, ax = plt.subplots(figsize=(5, 5))
        predicted = [b["mean_predicted"] for b in bins]
        observed = [b["observed"] for b in bins]
        top = max(max(predicted), max(observed), 1e-3) * 1.1
        ax.plot([0, top], [0, top], color="grey", linewidth=0.5, label="perfect")
        ax.plot(predicted, observed, marker="o", label="model (deciles of risk)")
        ax.set(xlabel="mean predicted risk", ylabel="observed SepsisLabel rate",
               title="Calibration", xlim=(0, top), ylim=(0, top))
        ax.legend(loc="upper left")
        fig.savefig(out_dir / "calibration.png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        files.append("calibration.png")
    return files


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "-".join(_fmt(v) for v in value)
    return html.escape(str(value))


ALERT_ROWS: tuple[tuple[str, str], ...] = (
    ("auroc", "AUROC (hour)"),
    ("auprc", "AUPRC (hour)"),
    ("utility", "normalised utility"),
    ("sensitivity", "sensitivity (septic stays alerted by onset)"),
    ("hour_sensitivity", "sensitivity (hours)"),
    ("hour_specificity", "specificity (hours)"),
    ("hour_ppv", "PPV (hours)"),
    ("alerts_per_patient_day", "new alerts per patient-day"),
    ("alert_hours_per_patient_day", "alert hours per patient-day"),
    ("median_lead_time_h", "median lead time, h before first label"),
    ("lead_time_iqr_h", "lead time IQR, h"),
)


def write_report(
    metrics: dict[str, Any], labels: np.ndarray, risk: np.ndarray, news2: np.ndarray,
    out_dir: Path, title: str,
) -> Path:
    """Write metrics.json, the PNG plots and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out_dir / "metrics.json")
    images = _plots(labels, risk, news2, metrics, out_dir)
    model = metrics["model"]
    news = metrics["news2"]
    triggers = news["triggers"]
    head = "".join(f"<th>NEWS2 {html.escape(k)}</th>" for k in triggers)
    rows = []
    for key, label in ALERT_ROWS:
        if key in ("auroc", "auprc"):
            cells = "".join(f"<td>{_fmt(news[key])}</td>" for _ in triggers)
        else:
            cells = "".join(f"<td>{_fmt(t.get(key))}</td>" for t in triggers.values())
        rows.append(f"<tr><td>{label}</td><td>{_fmt(model.get(key))}</td>{cells}</tr>")
    group_rows = []
    for name, group in metrics["subgroups"].items():
        m = group["model"] or {}
        group_rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{group['stays']}</td><td>{group['septic_stays']}</td>"
            f"<td>{_fmt(m.get('auroc'))}</td><td>{_fmt(group['news2']['auroc'])}</td>"
            f"<td>{_fmt(m.get('utility'))}</td><td>{_fmt(m.get('sensitivity'))}</td>"
            f"<td>{_fmt(m.get('alerts_per_patient_day'))}</td></tr>"
        )
    figures = "".join(f'<img src="{name}" alt="{name}">' for name in images)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}
td:first-child{{text-align:left}}img{{width:32%;min-width:18em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{metrics['stays']} stays, {metrics['rows']} hourly rows, {metrics['septic_stays']} septic stays,
{_fmt(metrics['patient_days'])} patient-days. Model {html.escape(str(metrics.get('model_version', '')))},
threshold {_fmt(model['threshold'])}. Vitals-only NEWS2 is scored on the same rows.</p>
<h2>Model and vitals-only NEWS2</h2>
<table><tr><th></th><th>model</th>{head}</tr>{''.join(rows)}</table>
<p>AUROC gain over vitals-only NEWS2: {_fmt(metrics['auroc_gain_over_news2'])};
Brier score {_fmt(metrics['calibration']['brier'])}.</p>
<h2>By subgroup</h2>
<table><tr><th>group</th><th>stays</th><th>septic</th><th>model AUROC</th><th>NEWS2 AUROC</th>
<th>utility</th><th>sensitivity</th><th>alerts/patient-day</th></tr>{''.join(group_rows)}</table>
<h2>Plots</h2>{figures}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
