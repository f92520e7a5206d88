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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--psv-dir", type=Path, default=None,
                        help="folder of labelled .psv stays (a site's own weeks, say)")
    source.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the PhysioNet tarballs, as `vitalstream train` reads it "
                             "(the default when --psv-dir is not given: $VITALSTREAM_DATA_DIR, "
                             "else ../shared/data); there the default --stays is the model's "
                             "held-out list, and the held-out 2012 stays' death figures and the "
                             "pseudo-external checks are reported too")
    parser.add_argument("--out", required=True, type=Path, help="folder for metrics.json, report.html")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="operating point (default: the model's)")
    parser.add_argument("--stays", type=Path, default=None,
                        help="file listing the stays (file stems) to evaluate, one a line")
    parser.add_argument("--transfer-check", action="store_true",
                        help="with --data-dir: refit the pseudo-external checks (train on one "
                             "ICU type, test on the other; 2019 <-> 2012; several minutes) "
                             "instead of quoting the figures `vitalstream train` recorded")
    parser.add_argument("--recalibrate-out", type=Path, default=None,
                        help="also refit the calibration (Platt) on these stays, choose the "
                             "operating points again on them, and write that model here (local "
                             "recalibration; see the model card)")
    parser.add_argument("--alert-budget", type=float, default=None,
                        help="with --recalibrate-out: new alerts per patient-day of the budget "
                             "operating point chosen on these stays (default: the model's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def model_thresholds(model: Any) -> dict[str, float]:
    """The operating points `evaluate` and `train` report: the utility-optimal threshold,
    then every other operating point the model file names (alert budget, NEWS2's burden)."""
    points = {"utility-optimal": model.threshold}
    points.update({key: value for key, value in model.operating_points.items()
                   if key != "utility_optimal"})
    return points


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
    for label, key in (("model", "model"), ("NEWS2", "news2"), ("NEWS2 + oxygen", "news2_oxygen")):
        lines.append(f"  {label + ' by ICU time':28s}" + "  ".join(
            f"{band}: {_ci(entry)}" for band, entry in i[key]["auroc_by_icu_time"].items()))
    c = i["calibration"]
    lines.append(f"  calibration  slope {_ci(c['slope'], 2)}  intercept {_ci(c['intercept'], 2)}  "
                 f"observed/expected {_ci(c['observed_over_expected'], 2)}")
    bins = metrics["calibration"].get("bins") or []
    if bins:
        lines.append("  reliability (deciles of risk: mean predicted / observed)  " + "  ".join(
            f"{b['mean_predicted']:.3f}/{b['observed']:.3f}" for b in bins))
    lines.append("operating point                                threshold  sensitivity         PPV (hours)         "
                 "alerts/pt-day      lead h             share in never-septic  utility")
    for name, p in sorted(metrics["operating_points"].items()):  # as metrics.json keeps them
        lines.append(f"  {name[:46]:46s} {p['threshold']:<9.4g} {_ci(p['sensitivity']):19s} "
                     f"{_ci(p['hour_ppv']):19s} {_ci(p['alerts_per_patient_day'], 2):18s} "
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
    lines += transfer_lines(metrics)
    return lines


def transfer_lines(metrics: dict[str, Any]) -> list[str]:
    """The pseudo-external checks: same-hour AUROC of the model and NEWS2 (without, with
    oxygen points) on the side the model never saw."""
    rows = dict(metrics.get("unit_transfer") or {})
    second = metrics.get("dataset_transfer") or {}
    if "2012 -> 2019 (sepsis)" in second:
        rows["2012 death -> 2019 held-out sepsis"] = second["2012 -> 2019 (sepsis)"]
    death = second.get("2019 -> 2012 (death)")
    if not rows and not death:
        return []
    lines = ["pseudo-external                          same-hour AUROC: model / NEWS2 / NEWS2 + "
             "oxygen                hour AUROC model  calibration slope"]
    for name, m in rows.items():
        i = m["intervals"]
        lines.append(f"  {name[:38]:38s} {_ci(i['model']['same_hour_auroc']):22s}"
                     f"{_ci(i['news2']['same_hour_auroc']):22s}"
                     f"{_ci(i['news2_oxygen']['same_hour_auroc']):22s}"
                     f"{_ci(i['model']['auroc']):22s}{m['calibration_line']['slope']:.2f}")
    if death:
        lines.append(f"  2019 sepsis -> all 2012 stays, death AUROC (max over 48 h): model "
                     f"{_ci(death['model_auroc'])}  NEWS2 {_ci(death['news2_auroc'])}  NEWS2 + "
                     f"oxygen {_ci(death['news2_oxygen_auroc'])}")
    return lines


def read_stays(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def evaluate_cohort(cohort: Any, model: Any, out: Path, threshold: float | None = None,
                    title: str = "") -> dict[str, Any]:
    """Score labelled stays with the model and NEWS2 and write the report; returns the metrics."""
    from vitalstream.training.baseline import vitals_news2, vitals_news2_oxygen
    from vitalstream.training.dataset import cohort_risk
    from vitalstream.training.evaluation import full_evaluation
    from vitalstream.training.report import write_report

    if not cohort.has_labels():
        raise ValueError(f"{title}: evaluation needs a SepsisLabel column on every row")
    risk = cohort_risk(model, cohort)
    news2 = vitals_news2(cohort)
    thresholds = model_thresholds(model)
    if threshold is not None:
        thresholds = {"given": threshold, **thresholds}
    metrics = full_evaluation(cohort, risk, thresholds, news2, vitals_news2_oxygen(cohort))
    metrics["model_version"] = model.version
    labels = cohort.column("SepsisLabel").astype(int)
    write_report(metrics, labels, risk, news2, out,
                 title=f"Risk model vs vitals-only NEWS2: {title}")
    return metrics


def choose_stays(cohort: Any, stays: Path | None, where: Path) -> Any:
    if stays is None:
        return cohort
    wanted = set(read_stays(stays))
    chosen = [i for i, name in enumerate(cohort.names) if name in wanted]
    if len(chosen) != len(wanted):
        raise ValueError(f"{len(wanted) - len(chosen)} listed stays are not in {where}")
    return cohort.subset(chosen)


def evaluate_folder(psv_dir: Path, out: Path, model_path: str | None = None,
                    threshold: float | None = None, stays: Path | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Score a folder of .psv files with the model and NEWS2 and write the report."""
    from vitalstream.scoring.model import RiskModel
    from vitalstream.training.physionet import read_psv_dir

    model = RiskModel.load(model_path)
    cohort = choose_stays(read_psv_dir(psv_dir, progress=progress), stays, psv_dir)
    return evaluate_cohort(cohort, model, out, threshold, psv_dir.name)


def beside_model(model_path: str | None, suffix: str) -> Path:
    from vitalstream.scoring.model import DEFAULT_MODEL

    path = Path(model_path) if model_path else DEFAULT_MODEL
    return path.with_name(path.stem + suffix)


def evaluate_data_dir(data_dir: Path | None, out: Path, model_path: str | None = None,
                      threshold: float | None = None, stays: Path | None = None,
                      transfer_check: bool = False, progress: bool = False,
                      log: Any = None) -> dict[str, Any]:
    """`evaluate_folder` on the challenge tarballs `vitalstream train` reads: by default the
    model's held-out 2019 stays, plus in-hospital death on its held-out 2012 stays and the
    pseudo-external checks (recorded by `train` for this very model, or refitted with
    ``transfer_check``): everything the model card quotes, measured again."""
    import numpy as np
    import orjson

    from vitalstream.scoring.model import RiskModel
    from vitalstream.training.mortality2012 import death_figures, load_2012
    from vitalstream.training.physionet import default_data_dir, load_set_a
    from vitalstream.training.report import write_metrics

    say = log or (lambda message: print(message, file=sys.stderr))
    folder = data_dir or default_data_dir()
    model = RiskModel.load(model_path)
    full = load_set_a(folder, progress=progress)
    if stays is None and beside_model(model_path, "_holdout.txt").is_file():
        stays = beside_model(model_path, "_holdout.txt")
        say(f"evaluating the held-out stays listed in {stays}")
    metrics = evaluate_cohort(choose_stays(full, stays, folder), model, out, threshold,
                              folder.name)
    second = load_2012(folder, model.windows_s)
    listed_2012 = beside_model(model_path, "_holdout_2012.txt")
    if second is not None and listed_2012.is_file():
        wanted = {int(r) for r in read_stays(listed_2012)}
        chosen = np.flatnonzero(np.isin(second.records, list(wanted)))
        if len(chosen) != len(wanted):
            raise ValueError(f"{len(wanted) - len(chosen)} stays of {listed_2012.name} are not "
                             f"in the 2012 set A of {folder}")
        rows = second.rows_of(chosen)
        risk = model.predict_proba(model.input_row(second.features[rows], None, None, 0.0))
        metrics["mortality_2012"] = death_figures(second, chosen, risk)
    if transfer_check:
        from vitalstream.features import feature_names
        from vitalstream.training.dataset import engine_rows
        from vitalstream.training.fit import TrainConfig, split_patients, split_stays_by_outcome
        from vitalstream.training.transfer import pseudo_external

        config = TrainConfig(**model.metadata["config"])
        windows = model.windows_s
        split_2012 = split_stays_by_outcome(second.died, config) if second is not None else None
        metrics.update(pseudo_external(full, engine_rows(full, windows), second, config,
                                       feature_names(windows), split_patients(full, config),
                                       split_2012, say))
    else:
        recorded = beside_model(model_path, "_holdout_metrics.json")
        if recorded.is_file():
            stored = orjson.loads(recorded.read_bytes())
            if stored.get("model_version") == model.version:
                for key in ("unit_transfer", "dataset_transfer"):
                    if stored.get(key):
                        metrics[key] = stored[key]
                say(f"pseudo-external checks as `vitalstream train` measured them for this model "
                    f"({recorded.name}); --transfer-check refits them")
    write_metrics(metrics, out / "metrics.json")
    return metrics


def recalibrate_cohort(model_path: str | None, cohort: Any, out: Path,
                       alert_budget: float | None = None) -> dict[str, Any]:
    """Local recalibration on a site's labelled stays: refit the model's Platt numbers
    there, choose its operating points again on the same stays (the alert budget, the
    utility-optimal threshold, NEWS2's burden), and write the model and its checksum to
    ``out``. Returns the new Platt numbers and operating points."""
    from vitalstream.scoring.model import RiskModel, write_model
    from vitalstream.training.calibration import local_operating_points, local_platt
    from vitalstream.training.dataset import cohort_inputs

    model = RiskModel.load(model_path)
    if not cohort.has_labels():
        raise ValueError("recalibration needs a SepsisLabel column on every row")
    X = cohort_inputs(model, cohort)
    labels = cohort.column("SepsisLabel")
    platt = local_platt(model, X, labels)
    budget = alert_budget or float(model.metadata.get("config", {}).get("alert_budget", 0.25))
    points = local_operating_points(model, platt, X, cohort, budget)
    write_model(model.recalibrated(platt, points), out)
    return {"platt": platt, "operating_points": points, "alert_budget": budget}


def run(args: argparse.Namespace) -> int:
    from vitalstream.scoring.model import ModelFileError
    from vitalstream.training.physionet import DataMissing

    if args.alert_budget is not None and args.alert_budget <= 0:
        raise UsageError("evaluate: --alert-budget must be above 0")
    if args.transfer_check and args.psv_dir is not None:
        raise UsageError("evaluate: --transfer-check needs the tarballs (--data-dir), not --psv-dir")
    try:
        if args.psv_dir is not None:
            metrics = evaluate_folder(args.psv_dir, args.out, args.model, args.threshold,
                                      args.stays, progress=not args.no_progress)
        else:
            metrics = evaluate_data_dir(args.data_dir, args.out, args.model, args.threshold,
                                        args.stays, args.transfer_check,
                                        progress=not args.no_progress)
    except (ModelFileError, DataMissing, ValueError, OSError) as exc:
        raise UsageError(f"evaluate: {exc}") from exc
    print("\n".join(summary_lines(metrics)))
    if args.recalibrate_out is not None:
        try:
            if args.psv_dir is None:
                raise ValueError("--recalibrate-out needs the site's own stays (--psv-dir)")
            from vitalstream.training.physionet import read_psv_dir

            cohort = choose_stays(read_psv_dir(args.psv_dir), args.stays, args.psv_dir)
            done = recalibrate_cohort(args.model, cohort, args.recalibrate_out, args.alert_budget)
        except (ModelFileError, DataMissing, ValueError, OSError) as exc:
            raise UsageError(f"evaluate: {exc}") from exc
        slope, intercept = done["platt"]
        points = ", ".join(f"{k} {v:.4g}" for k, v in done["operating_points"].items())
        print(f"recalibrated (Platt slope {slope:.3f}, intercept {intercept:.3f}; operating points "
              f"chosen on these stays: {points}): wrote {args.recalibrate_out}; check it on "
              "later weeks before any alert depends on it", file=sys.stderr)
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'report.html'}", file=sys.stderr)
    return 0
