"""`vitalstream predict`: the risk model over a folder of PhysioNet 2019 `.psv` files, writing
the challenge's prediction files (``PredictedProbability|PredictedLabel``, one row per
input row, each computed only from that row and the rows before it)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vitalstream.cli import UsageError

NAME = "predict"
HELP = "Write challenge-format risk predictions for every .psv file of a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--psv-dir", required=True, type=Path, help="folder of .psv stays")
    parser.add_argument("--out", required=True, type=Path, help="folder for the prediction files")
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="label threshold (default: the model's operating point)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def format_predictions(risk: np.ndarray, threshold: float) -> str:
    lines = ["PredictedProbability|PredictedLabel"]
    lines += [f"{p:.6f}|{int(p >= threshold)}" for p in risk.tolist()]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from vitalstream.scoring.model import ModelFileError, RiskModel
    from vitalstream.training.dataset import cohort_risk
    from vitalstream.training.physionet import DataMissing, read_psv_dir

    started = time.perf_counter()
    try:
        model = RiskModel.load(args.model)
        cohort = read_psv_dir(args.psv_dir, progress=not args.no_progress)
    except (ModelFileError, DataMissing, ValueError) as exc:
        raise UsageError(f"predict: {exc}") from exc
    threshold = model.threshold if args.threshold is None else args.threshold
    risk = cohort_risk(model, cohort)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(cohort.names):
        stay_risk = risk[cohort.offsets[i]:cohort.offsets[i + 1]]
        (args.out / f"{name}.psv").write_text(format_predictions(stay_risk, threshold))
    print(f"predict: {cohort.n_stays} files, {len(risk)} rows, model {model.version}, "
          f"threshold {threshold:.4f}, {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0
