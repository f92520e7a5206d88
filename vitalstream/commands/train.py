"""`vitalstream train`: fit the sepsis risk model on PhysioNet 2019 set A, write the skops
artefact with its checksum, measure it on held-out patients and write the model card."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from vitalstream.cli import UsageError

NAME = "train"
HELP = "Train the sepsis risk model on PhysioNet 2019 set A (bedside vitals only)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vitalstream.scoring.model import DEFAULT_MODEL

    parser.add_argument("--data-dir", default=None,
                        help="folder with physionet2019_training_setA.tar.gz or its .psv files "
                             "(default: $VITALSTREAM_DATA_DIR, else ../shared/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL,
                        help="model file to write (default: models/sepsis_risk.skops)")
    parser.add_argument("--seed", type=int, default=20190, help="seed of split, subsampling, trees")
    parser.add_argument("--negative-keep", type=float, default=0.3,
                        help="fraction of negative fitting hours kept (default 0.3)")
    parser.add_argument("--no-card", action="store_true", help="do not rewrite MODEL_CARD.md")
    parser.add_argument("--no-transfer-check", action="store_true",
                        help="skip the pseudo-external check (train on one ICU type, measure "
                             "on the other; four more fits)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import skops.io

    from vitalstream.commands.evaluate import summary_lines
    from vitalstream.features import DEFAULT_WINDOWS_S, feature_names
    from vitalstream.scoring.model import RiskModel, write_checksum
    from vitalstream.training.baseline import vitals_news2
    from vitalstream.training.card import render_card
    from vitalstream.training.dataset import cohort_risk, context_inputs, engine_rows
    from vitalstream.training.evaluation import evaluate_scores
    from vitalstream.training.fit import TrainConfig, train
    from vitalstream.training.mortality2012 import mortality_check
    from vitalstream.training.physionet import DataMissing, default_data_dir, load_set_a
    from vitalstream.training.report import write_metrics
    from vitalstream.training.transfer import unit_transfer

    if not 0.0 < args.negative_keep <= 1.0:
        raise UsageError("train: --negative-keep must be in (0, 1]")
    progress = not args.no_progress
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr)

    try:
        cohort = load_set_a(args.data_dir, progress=progress)
    except DataMissing as exc:
        raise UsageError(f"train: {exc}") from exc
    if not cohort.has_labels():
        raise UsageError("train: the files have no SepsisLabel column")
    log(f"read {cohort.n_stays:,} stays, {len(cohort.values):,} rows")
    windows = tuple(DEFAULT_WINDOWS_S)
    features = engine_rows(cohort, windows)
    log(f"feature engine: {features.shape[1]} features per row")
    config = TrainConfig(seed=args.seed, negative_keep=args.negative_keep)
    payload, split = train(cohort, features, config, feature_names(windows), windows, log,
                           progress)

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(payload, out)
    digest = write_checksum(out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {digest[:12]}...)")
    holdout = out.with_name(out.stem + "_holdout.txt")
    holdout.write_text("".join(f"{cohort.names[i]}\n" for i in split.test))

    model = RiskModel.load(out)
    test = cohort.subset(split.test)
    risk = cohort_risk(model, test)
    metrics = evaluate_scores(test, risk, model.threshold, vitals_news2(test))
    metrics["model_version"] = model.version
    low_burden = model.operating_points["low_burden_0.25_alerts_per_patient_day"]
    metrics["low_burden_operating_point"] = evaluate_scores(
        test, risk, low_burden, vitals_news2(test))["model"]
    X_test = model.input_row(engine_rows(test, model.windows_s), *context_inputs(test))
    septic_hours = test.column("SepsisLabel") == 1
    metrics["factor_reliance"] = {
        name: {"all_hours": float(delta.mean()), "septic_hours": float(delta[septic_hours].mean())}
        for name, delta in model.factor_effects(X_test).items()
    }
    metrics["mortality_2012"] = mortality_check(model, args.data_dir or default_data_dir())
    if not args.no_transfer_check:
        log("pseudo-external check: trained on one ICU type, measured on the other")
        metrics["unit_transfer"] = unit_transfer(cohort, features, config, feature_names(windows),
                                                 log)
    write_metrics(metrics, out.with_name(out.stem + "_holdout_metrics.json"))
    lines = summary_lines(metrics)
    print("\n".join(lines))
    if not args.no_card:
        command = shlex.join(["vitalstream", "train", "--seed", str(args.seed),
                              "--negative-keep", str(args.negative_keep)])
        card = render_card(model, metrics, command, lines, holdout.name,
                           time.perf_counter() - started)
        (out.parent / "MODEL_CARD.md").write_text(card)
        log(f"wrote {out.parent / 'MODEL_CARD.md'}")
    return 0
