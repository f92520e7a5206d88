"""`vitalstream train`: fit the deterioration risk model on PhysioNet 2019 set A and 2012
set A, write the skops artefact with its checksum, measure it on held-out patients and
write the model card."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from vitalstream.cli import UsageError

NAME = "train"
HELP = "Train the risk model on PhysioNet 2019 and 2012 set A (bedside vitals only)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vitalstream.scoring.model import DEFAULT_MODEL

    parser.add_argument("--data-dir", default=None,
                        help="folder with physionet2019_training_setA.tar.gz or its .psv files "
                             "(default: $VITALSTREAM_DATA_DIR, else ../shared/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL,
                        help="model file to write (default: models/sepsis_risk.skops)")
    parser.add_argument("--seed", type=int, default=20190, help="seed of split, subsampling, trees")
    parser.add_argument("--negative-keep", type=float, default=0.15,
                        help="fraction of negative 2019 fitting hours kept (default 0.15)")
    parser.add_argument("--alert-budget", type=float, default=0.25,
                        help="new alerts per patient-day at the budget operating point, chosen "
                             "on the calibration patients (default 0.25)")
    parser.add_argument("--no-2012", action="store_true",
                        help="train on 2019 set A only (default: stack the 2012 set's hours, "
                             "labelled by in-hospital death, when physionet2012_set-a.tar.gz is "
                             "in the data folder)")
    parser.add_argument("--no-card", action="store_true", help="do not rewrite MODEL_CARD.md")
    parser.add_argument("--no-transfer-check", action="store_true",
                        help="skip the pseudo-external check (train on one ICU type, measure "
                             "on the other; four more fits)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from vitalstream.commands.evaluate import model_thresholds, summary_lines
    from vitalstream.features import DEFAULT_WINDOWS_S, feature_names
    from vitalstream.scoring.model import RiskModel, write_model
    from vitalstream.training.baseline import vitals_news2, vitals_news2_oxygen
    from vitalstream.training.card import render_card
    from vitalstream.training.dataset import cohort_risk, context_inputs, engine_rows
    from vitalstream.training.evaluation import full_evaluation
    from vitalstream.training.fit import TrainConfig, train
    from vitalstream.training.mortality2012 import death_figures, load_2012
    from vitalstream.training.physionet import DataMissing, default_data_dir, load_set_a
    from vitalstream.training.report import write_metrics
    from vitalstream.training.transfer import pseudo_external

    if not 0.0 < args.negative_keep <= 1.0:
        raise UsageError("train: --negative-keep must be in (0, 1]")
    progress = not args.no_progress
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr)

    data_dir = args.data_dir or default_data_dir()
    try:
        cohort = load_set_a(data_dir, progress=progress)
    except DataMissing as exc:
        raise UsageError(f"train: {exc}") from exc
    if not cohort.has_labels():
        raise UsageError("train: the files have no SepsisLabel column")
    log(f"read {cohort.n_stays:,} stays, {len(cohort.values):,} rows")
    windows = tuple(DEFAULT_WINDOWS_S)
    features = engine_rows(cohort, windows)
    second = None if args.no_2012 else load_2012(data_dir, windows)
    log(f"feature engine: {features.shape[1]} features per row"
        + (f"; 2012 set A: {second.n_stays:,} stays" if second is not None else "; no 2012 set"))
    if args.alert_budget <= 0:
        raise UsageError("train: --alert-budget must be above 0")
    config = TrainConfig(seed=args.seed, negative_keep=args.negative_keep,
                         alert_budget=args.alert_budget)
    payload, split, split_2012 = train(cohort, features, config, feature_names(windows), windows,
                                       log, progress, second)

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = write_model(payload, out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {digest[:12]}...)")
    holdout = out.with_name(out.stem + "_holdout.txt")
    holdout.write_text("".join(f"{cohort.names[i]}\n" for i in split.test))

    model = RiskModel.load(out)
    test = cohort.subset(split.test)
    risk = cohort_risk(model, test)
    thresholds = model_thresholds(model)
    news2 = vitals_news2(test)
    metrics = full_evaluation(test, risk, thresholds, news2, vitals_news2_oxygen(test))
    log("held-out stays measured")
    metrics["model_version"] = model.version
    X_test = model.input_row(engine_rows(test, model.windows_s), *context_inputs(test))
    septic_hours = test.column("SepsisLabel") == 1
    metrics["factor_reliance"] = {
        name: {"all_hours": float(delta.mean()), "septic_hours": float(delta[septic_hours].mean())}
        for name, delta in model.factor_effects(X_test).items()
    }
    if second is not None and split_2012 is not None:
        rows = second.rows_of(split_2012.test)
        risk_2012 = model.predict_proba(model.input_row(second.features[rows], None, None, 0.0))
        metrics["mortality_2012"] = death_figures(second, split_2012.test, risk_2012)
        (out.with_name(out.stem + "_holdout_2012.txt")).write_text(
            "".join(f"{r}\n" for r in second.records[split_2012.test]))
    if not args.no_transfer_check:
        log("pseudo-external checks: one ICU type to the other; one data set to the other")
        metrics.update(pseudo_external(cohort, features, second, config, feature_names(windows),
                                       split, split_2012, log))
    write_metrics(metrics, out.with_name(out.stem + "_holdout_metrics.json"))
    lines = summary_lines(metrics)
    print("\n".join(lines))
    if not args.no_card:
        command = shlex.join(["vitalstream", "train", "--seed", str(args.seed),
                              "--negative-keep", str(args.negative_keep),
                              "--alert-budget", str(args.alert_budget)])
        card = render_card(model, metrics, command, lines, holdout.name,
                           time.perf_counter() - started)
        (out.parent / "MODEL_CARD.md").write_text(card)
        log(f"wrote {out.parent / 'MODEL_CARD.md'}")
    return 0
