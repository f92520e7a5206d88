"""The pseudo-external check: trained on one ICU type, measured on the other."""

from __future__ import annotations

import numpy as np
import pytest

from vitalstream.features import DEFAULT_WINDOWS_S, feature_names
from vitalstream.training.dataset import engine_rows
from vitalstream.training.fit import TrainConfig
from vitalstream.training.physionet import COL, SAMPLE_DIR, Cohort, read_psv_dir
from vitalstream.training.transfer import unit_of_stays, unit_transfer

SMALL = TrainConfig(max_iter=50, tree_count_step=25, min_samples_leaf=20, negative_keep=1.0)


@pytest.fixture(scope="module")
def sample():
    cohort = read_psv_dir(SAMPLE_DIR)
    windows = tuple(DEFAULT_WINDOWS_S)
    return cohort, engine_rows(cohort, windows), feature_names(windows)


def test_stays_are_split_by_their_recorded_icu_type_and_unrecorded_stays_take_no_part(sample):
    cohort, _, _ = sample
    units = unit_of_stays(cohort)
    medical, surgical = units["medical ICU"], units["surgical ICU"]
    assert len(medical) and len(surgical) and not set(medical) & set(surgical)
    first_rows = cohort.values[cohort.offsets[:-1]]
    assert (first_rows[medical, COL["Unit1"]] == 1).all()
    assert (first_rows[surgical, COL["Unit2"]] == 1).all()
    neither = np.setdiff1d(np.arange(cohort.n_stays), np.concatenate([medical, surgical]))
    assert np.isnan(first_rows[neither, COL["Unit1"]]).all()  # the sample has such stays


def test_each_direction_is_measured_on_every_stay_of_the_other_unit_beside_news2(sample):
    cohort, features, names = sample
    # The sample's units are too small to hold septic stays in every part: give its 40
    # stays alternate units so each direction has septic stays to fit, calibrate and measure.
    alternate = cohort.stay_index() % 2
    values = cohort.values.copy()
    values[:, COL["Unit1"]] = alternate == 0
    values[:, COL["Unit2"]] = alternate == 1
    cohort = Cohort(cohort.names, cohort.offsets, values)
    units = unit_of_stays(cohort)
    result = unit_transfer(cohort, features, SMALL, names, log=lambda _m: None, min_stays=5,
                           draws=20)
    assert set(result) == {"medical ICU -> surgical ICU", "surgical ICU -> medical ICU"}
    measured = result["medical ICU -> surgical ICU"]
    assert measured["stays"] == len(units["surgical ICU"])
    assert measured["trained_on"]["stays"] == len(units["medical ICU"])
    assert measured["news2"]["auroc"] is not None
    for figures in result.values():
        same_hour = figures["intervals"]["model"]["same_hour_auroc"]["value"]
        assert same_hour is None or 0.0 <= same_hour <= 1.0
        assert figures["intervals"]["news2_oxygen"]["auroc"]["value"] is not None
        assert figures["auroc_gain_over_news2"] == pytest.approx(
            figures["model"]["auroc"] - figures["news2"]["auroc"])


def test_too_few_stays_of_a_unit_skip_the_check_rather_than_report_noise(sample):
    cohort, features, names = sample
    assert unit_transfer(cohort, features, SMALL, names, log=lambda _m: None) is None
