"""Local recalibration: a site whose risk level differs gets its calibration back."""

from __future__ import annotations

import numpy as np

from vitalstream.scoring.model import RiskModel
from vitalstream.training.calibration import local_platt
from vitalstream.training.dataset import cohort_inputs
from vitalstream.training.metrics import calibration_line
from vitalstream.training.physionet import SAMPLE_DIR, read_psv_dir


def test_recalibration_on_a_shifted_synthetic_site_restores_calibration():
    model = RiskModel.load()
    X = cohort_inputs(model, read_psv_dir(SAMPLE_DIR))
    rng = np.random.default_rng(7)
    X = X[rng.integers(0, len(X), 60_000)]  # the sample's hours, many times over
    margin = model.margin(X)
    a, b = model.platt
    # The new site: the same ranking, but its true risk is flatter and shifted against the
    # model's (the challenge's unseen hospital saw risks about 30 % off).
    true_risk = 1.0 / (1.0 + np.exp(-(0.6 * (a * margin + b) - 0.8)))
    labels = (rng.random(len(X)) < true_risk).astype(float)
    before = calibration_line(labels, model.predict_proba(X))
    assert before["slope"] < 0.75 and abs(before["intercept"]) > 0.3  # miscalibrated there
    recalibrated = RiskModel(model.recalibrated(local_platt(model, X, labels)), "site")
    after = calibration_line(labels, recalibrated.predict_proba(X))
    assert abs(after["slope"] - 1.0) < 0.1 and abs(after["intercept"]) < 0.1
    assert abs(after["observed_over_expected"] - 1.0) < 0.05
    # The ranking (and so every AUROC) is unchanged.
    order = np.argsort(model.margin(X), kind="stable")
    assert (np.diff(recalibrated.predict_proba(X)[order]) >= 0).all()


def test_the_recalibration_command_chooses_the_operating_points_again_on_the_site(tmp_path):
    from vitalstream.commands.evaluate import recalibrate_cohort
    from vitalstream.training.fit import new_alerts_per_patient_day

    cohort = read_psv_dir(SAMPLE_DIR)
    done = recalibrate_cohort(None, cohort, tmp_path / "site.skops", alert_budget=0.5)
    site, shipped = RiskModel.load(tmp_path / "site.skops"), RiskModel.load()
    assert site.platt == done["platt"] != shipped.platt
    assert set(site.operating_points) == {"utility_optimal", "budget_0.5_alerts_per_patient_day",
                                          "news2_5_burden", "news2_7_burden"}
    risk = site.predict_proba(cohort_inputs(site, cohort))
    budget = site.operating_points["budget_0.5_alerts_per_patient_day"]
    assert site.show_from == budget
    assert new_alerts_per_patient_day(risk >= budget, cohort.offsets) <= 0.5
    assert site.threshold == site.operating_points["utility_optimal"]
