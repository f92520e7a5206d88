"""`vitalstream evaluate`: the risk model and vitals-only NEWS2 on a folder of labelled
PhysioNet 2019 `.psv` files; writes ``metrics.json`` and ``report.html`` (with PNG plots)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vitalstream.cli import UsageError

NAME = "evaluate"
HELP = "Same-hour AUROC, calibration, alert burden, lead time of the model vs NEWS2 on .psv files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--psv-dir", required=True, type=Path, help="folder of labelled .psv stays")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics.json, report.html")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating point (default: the model's)")
    parser.add_argument("--stays", type=Path, default=None,
                        help="file listing the stays (file stems) to evaluate, one a line")
    parser.add_argument("--recalibrate-out", type=Path, default=None,
                        help="also refit the calibration (Platt) on these stays and write the "
                             "recalibrated model here (local recalibration; see the model card)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _ci(entry: Any, digits: int = 3) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    ci = entry.get("ci")
    text = f"{entry['value']:.{digits}f}"
    return text + (f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else "")


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The headline figures, as `evaluate` prints them and the model card quotes them
    (95 % bootstrap intervals by patient in brackets)."""
    i = metrics["intervals"]
    lines = [
        f"stays {metrics['stays']}  rows {metrics['rows']}  septic stays {metrics['septic_stays']}",
        "                     hour AUROC            same-hour AUROC",
    ]
    for label, key in (("model", "model"), ("NEWS2", "news2"), ("NEWS2 + oxygen", "news2_oxygen")):
        lines.append(f"  {label:18s} {_ci(i[key]['auroc']):22s}{_ci(i[key]['same_hour_auroc'])}")
    lines.append("  AUROC by ICU time    " + "  ".join(
        f"{band}: {_ci(entry)}" for band, entry in i["model"]["auroc_by_icu_time"].items()))
    lines.append("  NEWS2 by ICU time    " + "  ".join(
        f"{band}: {_ci(entry)}" for band, entry in i["news2"]["auroc_by_icu_time"].items()))
    c = i["calibration"]
    lines.append(f"  calibration  slope {_ci(c['slope'], 2)}  intercept {_ci(c['intercept'], 2)}  "
                 f"observed/expected {_ci(c['observed_over_expected'], 2)}")
    lines.append("operating point          threshold  sensitivity        PPV (hours)        "
                 "alerts/pt-day      lead h             share in never-septic  utility")
    for name, p in metrics["operating_points"].items():
        lines.append(f"  {name[:24]:24s} {p['threshold']:<9.4g} {_ci(p['sensitivity']):18s} "
                     f"{_ci(p['hour_ppv']):18s} {_ci(p['alerts_per_patient_day'], 2):18s} "
                     f"{_ci(p['median_lead_time_h'], 1):18s} "
                     f"{_ci(p['share_of_alerts_in_never_event_stays'], 2):22s} {_ci(p['utility'])}")
    for name, group in metrics.get("subgroup_intervals", {}).items():
        lines.append(f"  {name:10s} same-hour AUROC {_ci(group['model']['same_hour_auroc'])}  "
                     f"NEWS2 {_ci(group['news2']['same_hour_auroc'])}")
    death = metrics.get("mortality_2012")
    if death:
        lines.append(f"2012 held-out stays {death['stays']} ({death['deaths']} deaths), max over "
                     f"48 h, in-hospital death AUROC: model {_ci(death['model_auroc'])}  NEWS2 "
                     f"{_ci(death['news2_auroc'])}  NEWS2 + oxygen {_ci(death['news2_oxygen_auroc'])}")
    return lines


def evaluate_folder(psv_dir: Path, out: Path, model_path: str | None = None,
                    threshold: float | None = None, stays: Path | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Score a folder with the model and NEWS2 and write the report; returns the metrics."""
    from vitalstream.scoring.model import RiskModel
    from vitalstream.training.baseline import vitals_news2, vitals_news2_oxygen
    from vitalstream.training.dataset import cohort_risk
    from vitalstream.training.evaluation import full_evaluation
    from vitalstream.training.physionet import read_psv_dir
    from vitalstream.training.report import write_report

    model = RiskModel.load(model_path)
    cohort = read_psv_dir(psv_dir, progress=progress)
    if stays is not None:
        wanted = {line.strip() for line in stays.read_text().splitlines() if line.strip()}
        chosen = [i for i, name in enumerate(cohort.names) if name in wanted]
        if len(chosen) != len(wanted):
            raise ValueError(f"{len(wanted) - len(chosen)} listed stays are not in {psv_dir}")
        cohort = cohort.subset(chosen)
    if not cohort.has_labels():
        raise ValueError(f"{psv_dir}: evaluation needs a SepsisLabel column on every row")
    risk = cohort_risk(model, cohort)
    news2 = vitals_news2(cohort)
    thresholds = {"utility-optimal" if threshold is None else "given":
                  model.threshold if threshold is None else threshold}
    thresholds.update({key: value for key, value in model.operating_points.items()
                       if key.startswith("budget")})
    metrics = full_evaluation(cohort, risk, thresholds, news2, vitals_news2_oxygen(cohort))
    metrics["model_version"] = model.version
    labels = cohort.column("SepsisLabel").astype(int)
    write_report(metrics, labels, risk, news2, out,
                 title=f"Risk model vs vitals-only NEWS2: {psv_dir.name}")
    return metrics


def recalibrate_folder(psv_dir: Path, model_path: str | None, out: Path) -> tuple[float, float]:
    """Refit the model's Platt numbers on a site's labelled stays and write the model with
    them (and its checksum) to ``out``; returns the new (slope, intercept)."""
    import skops.io

    from vitalstream.scoring.model import RiskModel, write_checksum
    from vitalstream.training.calibration import local_platt
    from vitalstream.training.dataset import cohort_inputs
    from vitalstream.training.physionet import read_psv_dir

    model = RiskModel.load(model_path)
    cohort = read_psv_dir(psv_dir)
    if not cohort.has_labels():
        raise ValueError(f"{psv_dir}: recalibration needs a SepsisLabel column on every row")
    platt = local_platt(model, cohort_inputs(model, cohort), cohort.column("SepsisLabel"))
    out.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model.recalibrated(platt), out)
    write_checksum(out)
    return platt


def run(args: argparse.Namespace) -> int:
    from vitalstream.scoring.model import ModelFileError
    from vitalstream.training.physionet import DataMissing

    try:
        metrics = evaluate_folder(args.psv_dir, args.out, args.model, args.threshold,
                                  args.stays, progress=not args.no_progress)
    except (ModelFileError, DataMissing, ValueError) as exc:
        raise UsageError(f"evaluate: {exc}") from exc
    print("\n".join(summary_lines(metrics)))
    if args.recalibrate_out is not None:
        try:
            slope, intercept = recalibrate_folder(args.psv_dir, args.model, args.recalibrate_out)
        except (ModelFileError, DataMissing, ValueError) as exc:
            raise UsageError(f"evaluate: {exc}") from exc
        print(f"recalibrated (Platt slope {slope:.3f}, intercept {intercept:.3f}): wrote "
              f"{args.recalibrate_out}; evaluate it on later weeks before use", file=sys.stderr)
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'report.html'}", file=sys.stderr)
    return 0

