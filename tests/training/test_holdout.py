"""The model card's figures are what `vitalstream evaluate` measures on the held-out stays."""

from __future__ import annotations

import re

import orjson
import pytest
from testkit import SHARED_DATA, missing

from vitalstream.commands.evaluate import evaluate_data_dir, summary_lines
from vitalstream.scoring.model import MODELS_DIR

ARCHIVE = SHARED_DATA / "physionet2019_training_setA.tar.gz"


@pytest.mark.data
def test_evaluate_on_the_holdout_prints_exactly_the_model_cards_figures(tmp_path):
    if not ARCHIVE.is_file():
        missing(f"{ARCHIVE} is absent (PhysioNet 2019 set A, see ../shared/data/README.md)")
    metrics = evaluate_data_dir(SHARED_DATA, tmp_path / "out", log=lambda _m: None)
    printed = summary_lines(metrics)
    card = (MODELS_DIR / "MODEL_CARD.md").read_text()
    block = re.search(r"prints\n\(95 % bootstrap intervals by patient\):\n\n```\n(.*?)\n```",
                      card, re.S)
    assert block, "the card quotes evaluate's output in a fenced block"
    assert printed == block.group(1).splitlines()
    # Every figure of the first item is among them.
    text = "\n".join(printed)
    for needle in ("same-hour AUROC", "by ICU time", "calibration  slope", "reliability",
                   "lead h", "share in never-septic", "NEWS2 with oxygen >= 5", "NEWS2 >= 7",
                   "model news2_5_burden", "2012 held-out stays"):
        assert needle in text, needle
    recorded = orjson.loads((MODELS_DIR / "sepsis_risk_holdout_metrics.json").read_bytes())
    if recorded.get("unit_transfer"):  # pseudo-external checks, when train ran them
        assert "medical ICU -> surgical ICU" in text
    assert recorded["model_version"] == metrics["model_version"]
    assert summary_lines(recorded) == printed
    # Internally, at the same hour of stay, the model ranks above NEWS2 with and without
    # oxygen points (on held-out patients; the pseudo-external checks are reported, not held).
    same_hour = metrics["intervals"]["model"]["same_hour_auroc"]["value"]
    for baseline in ("news2", "news2_oxygen"):
        assert same_hour > metrics["intervals"][baseline]["same_hour_auroc"]["value"]
