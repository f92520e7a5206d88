"""`vitalstream evaluate`: the risk model and vitals-only NEWS2 on a folder of labelled
PhysioNet 2019 `.psv` files; writes ``metrics.json`` and ``report.html`` (with PNG plots)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vitalstream.cli import UsageError

NAME = "evaluate"
HELP = "AUROC, AUPRC, utility, alert burden and lead time of the model vs NEWS2 on .psv files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--psv-dir", required=True, type=Path, help="folder of labelled .psv stays")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics.json, report.html")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating point (default: the model's)")
    parser.add_argument("--stays", type=Path, default=None,
                        help="file listing the stays (file stems) to evaluate, one a line")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The headline figures, as `evaluate` prints them and the model card quotes them."""
    m, n = metrics["model"], metrics["news2"]
    n5 = n["triggers"][">=5"]

    def f(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"stays {metrics['stays']}  rows {metrics['rows']}  septic stays {metrics['septic_stays']}",
        f"model  AUROC {f(m['auroc'])}  AUPRC {f(m['auprc'])}  utility {f(m['utility'])}  "
        f"sensitivity {f(m['sensitivity'])}  alerts/patient-day {f(m['alerts_per_patient_day'])}  "
        f"median lead {f(m['median_lead_time_h'], 1)} h  (threshold {m['threshold']:.4f})",
        f"NEWS2  AUROC {f(n['auroc'])}  AUPRC {f(n['auprc'])}  at >=5: utility {f(n5['utility'])}  "
        f"sensitivity {f(n5['sensitivity'])}  alerts/patient-day {f(n5['alerts_per_patient_day'])}  "
        f"median lead {f(n5['median_lead_time_h'], 1)} h",
        f"AUROC gain over NEWS2 {f(metrics['auroc_gain_over_news2'])}",
    ]
    for name, group in metrics["subgroups"].items():
        gm = group["model"] or {}
        lines.append(f"  {name:10s} stays {group['stays']:6d}  AUROC {f(gm.get('auroc'))}  "
                     f"NEWS2 {f(group['news2']['auroc'])}  utility {f(gm.get('utility'))}")
    return lines


def evaluate_folder(psv_dir: Path, out: Path, model_path: str | None = None,
                    threshold: float | None = None, stays: Path | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Score a folder with the model and NEWS2 and write the report; returns the metrics."""
    from vitalstream.scoring.model import RiskModel
    from vitalstream.training.baseline import vitals_news2
    from vitalstream.training.dataset import cohort_risk
    from vitalstream.training.evaluation import evaluate_scores
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
    metrics = evaluate_scores(cohort, risk, model.threshold if threshold is None else threshold,
                              news2)
    metrics["model_version"] = model.version
    labels = cohort.column("SepsisLabel").astype(int)
    write_report(metrics, labels, risk, news2, out,
                 title=f"Sepsis risk model vs vitals-only NEWS2: {psv_dir.name}")
    return metrics


def run(args: argparse.Namespace) -> int:
    from vitalstream.scoring.model import ModelFileError
    from vitalstream.training.physionet import DataMissing

    try:
        metrics = evaluate_folder(args.psv_dir, args.out, args.model, args.threshold,
                                  args.stays, progress=not args.no_progress)
    except (ModelFileError, DataMissing, ValueError) as exc:
        raise UsageError(f"evaluate: {exc}") from exc
    print("\n".join(summary_lines(metrics)))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'report.html'}", file=sys.stderr)
    return 0

