"""The model card's figures are what `evaluate` measures on the held-out set-A stays."""

from __future__ import annotations

import tarfile

import orjson
import pytest
from testkit import SHARED_DATA, missing

from vitalstream.commands.evaluate import evaluate_folder
from vitalstream.scoring.model import MODELS_DIR

ARCHIVE = SHARED_DATA / "physionet2019_training_setA.tar.gz"


@pytest.mark.data
def test_evaluate_on_the_holdout_reproduces_the_model_card_figures(tmp_path):
    if not ARCHIVE.is_file():
        missing(f"{ARCHIVE} is absent (PhysioNet 2019 set A, see ../shared/data/README.md)")
    holdout = MODELS_DIR / "sepsis_risk_holdout.txt"
    wanted = {f"{line.strip()}.psv" for line in holdout.read_text().splitlines()}
    with tarfile.open(ARCHIVE, "r:gz") as tar:
        members = [m for m in tar if m.isfile() and m.name.rsplit("/", 1)[-1] in wanted]
        for member in members:
            member.name = member.name.rsplit("/", 1)[-1]
        tar.extractall(tmp_path / "psv", members=members, filter="data")
    metrics = evaluate_folder(tmp_path / "psv", tmp_path / "out", stays=holdout)
    card = orjson.loads((MODELS_DIR / "sepsis_risk_holdout_metrics.json").read_bytes())
    for key in ("auroc", "auprc", "utility", "sensitivity", "alerts_per_patient_day"):
        assert metrics["model"][key] == pytest.approx(card["model"][key], abs=5e-4), key
    assert metrics["news2"]["auroc"] == pytest.approx(card["news2"]["auroc"], abs=5e-4)
    same_hour = metrics["intervals"]["model"]["same_hour_auroc"]["value"]
    assert same_hour == pytest.approx(card["intervals"]["model"]["same_hour_auroc"]["value"],
                                      abs=5e-4)
    # Internally, at the same hour of stay, the model ranks above NEWS2 with and without
    # oxygen points, and no subgroup is far below overall.
    for baseline in ("news2", "news2_oxygen"):
        assert same_hour >= metrics["intervals"][baseline]["same_hour_auroc"]["value"] + 0.05
    for name, group in metrics["subgroup_intervals"].items():
        assert group["model"]["same_hour_auroc"]["value"] >= same_hour - 0.05, name
