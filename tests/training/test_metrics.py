"""Weighted and stratified AUROC, calibration line and bootstrap intervals by patient."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vitalstream.training.metrics import (
    RankedRows,
    auroc,
    calibration_line,
    stay_weights,
    with_interval,
)


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(3)
    n = 6000
    hour = rng.integers(0, 30, n)
    score = np.round(rng.normal(size=n) + 0.05 * hour, 1)  # ties on purpose
    label = (rng.random(n) < 1 / (1 + np.exp(-(score - 2)))).astype(float)
    return score, label, hour


def test_auroc_is_sklearns_with_and_without_weights(rows):
    score, label, _ = rows
    weights = np.random.default_rng(1).integers(0, 4, len(score)).astype(float)
    assert auroc(score, label) == pytest.approx(roc_auc_score(label, score), abs=1e-12)
    assert auroc(score, label, weights=weights) == pytest.approx(
        roc_auc_score(label, score, sample_weight=weights), abs=1e-12)


def test_same_hour_auroc_compares_only_pairs_within_one_hour(rows):
    score, label, hour = rows
    numerator = denominator = 0.0
    for h in np.unique(hour):
        m = hour == h
        if 0 < label[m].sum() < m.sum():
            pairs = label[m].sum() * (1 - label[m]).sum()
            numerator += roc_auc_score(label[m], score[m]) * pairs
            denominator += pairs
    assert auroc(score, label, hour) == pytest.approx(numerator / denominator, abs=1e-12)
    # Time alone ranks nothing at the same hour: a score that is the hour gives 0.5.
    assert auroc(hour.astype(float), label, hour) == pytest.approx(0.5)
    assert auroc(hour.astype(float), label) > 0.55


def test_calibration_line_of_a_calibrated_and_an_overconfident_risk():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.01, 0.6, 40_000)
    y = (rng.random(len(p)) < p).astype(float)
    good = calibration_line(y, p)
    assert abs(good["slope"] - 1) < 0.05 and abs(good["intercept"]) < 0.05
    logit = np.log(p / (1 - p))
    too_high = 1 / (1 + np.exp(-(2 * logit + 0.5)))
    bad = calibration_line(y, too_high)
    assert bad["slope"] == pytest.approx(0.5, abs=0.05)
    shifted = calibration_line(y, 1 / (1 + np.exp(-(logit + 1.0))))  # risk too high
    assert shifted["intercept"] == pytest.approx(-1.0, abs=0.05)
    assert shifted["observed_over_expected"] < 0.8


def test_bootstrap_interval_by_patient_holds_the_value_and_widens_with_fewer_stays(rows):
    score, label, _ = rows
    stay = np.arange(len(score)) // 10  # ten rows a stay
    ranked = RankedRows(score, label)
    many = with_interval(lambda w: ranked.auroc(w[stay]), stay.max() + 1,
                         stay_weights(stay.max() + 1, 100, 1))
    assert many["ci"][0] < many["value"] < many["ci"][1]
    few = RankedRows(score[:600], label[:600])
    small = with_interval(lambda w: few.auroc(w[stay[:600]]), 60, stay_weights(60, 100, 1))
    assert small["ci"][1] - small["ci"][0] > many["ci"][1] - many["ci"][0]
