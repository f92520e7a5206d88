"""`vitalstream predict` and `vitalstream evaluate` on the shipped sample, through the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import orjson
import pytest

from vitalstream.cli import main
from vitalstream.training.physionet import SAMPLE_DIR


def read_predictions(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "PredictedProbability|PredictedLabel"
    return np.array([[float(x) for x in line.split("|")] for line in lines[1:]])


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    out = tmp_path_factory.mktemp("pred")
    assert main(["predict", "--psv-dir", str(SAMPLE_DIR), "--out", str(out), "--no-progress"]) == 0
    return out


def test_every_input_file_gets_a_prediction_file_with_one_row_per_hour(predicted):
    inputs = sorted(SAMPLE_DIR.glob("*.psv"))
    assert sorted(p.name for p in predicted.glob("*.psv")) == [p.name for p in inputs]
    for path in inputs[:5]:
        rows = read_predictions(predicted / path.name)
        assert len(rows) == len(path.read_text().splitlines()) - 1
        assert ((rows[:, 0] >= 0) & (rows[:, 0] <= 1)).all()
        assert set(rows[:, 1]) <= {0.0, 1.0}


def test_an_hours_prediction_does_not_change_when_later_hours_change(predicted, tmp_path):
    # Causality as the challenge defines it: row t sees rows 0..t only.
    source = max(SAMPLE_DIR.glob("*.psv"), key=lambda p: len(p.read_text().splitlines()))
    lines = source.read_text().splitlines()
    cut = len(lines) // 2
    header = lines[0].split("|")
    hr = header.index("HR")
    changed = [lines[0], *lines[1:cut]]
    for line in lines[cut:]:
        cells = line.split("|")
        cells[hr] = "165"  # a later tachycardia the earlier hours must not see
        changed.append("|".join(cells))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / source.name).write_text("\n".join(changed) + "\n")
    assert main(["predict", "--psv-dir", str(folder), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    before = read_predictions(predicted / source.name)
    after = read_predictions(tmp_path / "out" / source.name)
    assert np.array_equal(before[: cut - 1], after[: cut - 1])
    assert not np.array_equal(before[cut - 1:, 0], after[cut - 1:, 0])


def test_evaluate_writes_metrics_and_a_report_with_plots(tmp_path, capsys):
    out = tmp_path / "eval"
    local = tmp_path / "site" / "local.skops"
    assert main(["evaluate", "--psv-dir", str(SAMPLE_DIR), "--out", str(out), "--no-progress",
                 "--recalibrate-out", str(local)]) == 0
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    assert metrics["stays"] == 40 and metrics["septic_stays"] == 14
    assert 0.5 < metrics["model"]["auroc"] <= 1.0
    assert metrics["news2"]["auroc"] is not None
    assert {"age 18-44", "female", "male"} <= set(metrics["subgroups"])
    html = (out / "report.html").read_text()
    for plot in ("roc.png", "pr.png", "calibration.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG" and plot in html
    printed = capsys.readouterr().out
    intervals = metrics["intervals"]["model"]
    for key in ("auroc", "same_hour_auroc"):  # what it prints is what it wrote
        entry = intervals[key]
        assert f"{entry['value']:.3f} ({entry['ci'][0]:.3f}-{entry['ci'][1]:.3f})" in printed
    assert {"model utility-optimal", "NEWS2 >= 5", "NEWS2 with oxygen >= 7"} <= set(
        metrics["operating_points"])
    assert set(metrics["intervals"]["calibration"]) == {"slope", "intercept", "observed_over_expected"}
    # The recalibrated model loads (its checksum written beside it), with the same trees.
    from vitalstream.scoring.model import RiskModel
    recalibrated, shipped = RiskModel.load(local), RiskModel.load()
    assert recalibrated.feature_names == shipped.feature_names
    assert recalibrated.platt != shipped.platt


def test_a_folder_without_psv_files_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["predict", "--psv-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no .psv files" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_evaluate_refuses_unlabelled_files(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(next(SAMPLE_DIR.glob("*.psv")), folder)
    text = (folder / next(SAMPLE_DIR.glob("*.psv")).name)
    lines = [line.rsplit("|", 1)[0] for line in text.read_text().splitlines()]
    text.write_text("\n".join(lines) + "\n")
    assert main(["evaluate", "--psv-dir", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "SepsisLabel" in capsys.readouterr().err
