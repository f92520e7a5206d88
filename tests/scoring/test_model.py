"""The shipped risk model: integrity checks at load, the runtime contract, explanations."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from vitalstream.scoring import news2 as chart
from vitalstream.scoring.model import (
    BEDSIDE_FACTORS,
    DEFAULT_MODEL,
    DERIVED_FEATURES,
    TEST_CACHE_ENV,
    ModelFileError,
    RiskModel,
    checksum_path,
    news2_band_scores,
)
from vitalstream.training.dataset import context_inputs, engine_rows
from vitalstream.training.physionet import SAMPLE_DIR, read_psv_dir


@pytest.fixture(scope="module")
def model() -> RiskModel:
    return RiskModel.load()


@pytest.fixture(scope="module")
def sample_inputs(model):
    cohort = read_psv_dir(SAMPLE_DIR)
    features = engine_rows(cohort, model.windows_s)
    return cohort, model.input_row(features, *context_inputs(cohort))


def test_a_model_file_altered_by_one_byte_is_refused(tmp_path):
    copy = tmp_path / "sepsis_risk.skops"
    shutil.copy(DEFAULT_MODEL, copy)
    shutil.copy(checksum_path(DEFAULT_MODEL), checksum_path(copy))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        RiskModel.load(copy)


def test_a_model_file_without_its_checksum_is_refused(tmp_path):
    copy = tmp_path / "m.skops"
    shutil.copy(DEFAULT_MODEL, copy)
    with pytest.raises(ModelFileError, match="checksum"):
        RiskModel.load(copy)


def test_the_shipped_model_states_its_contract(model):
    assert model.version.startswith("deterioration-vitals-")
    # Physiology only: no clock, no demographics.
    assert not {"age_years", "sex_male", "hours_monitored"} & set(model.feature_names)
    assert model.feature_names[-len(DERIVED_FEATURES):] == list(DERIVED_FEATURES)
    assert 0.0 < model.threshold < 1.0 and 0.0 < model.show_from < 1.0
    # No count, coverage or sample-age inputs: they measure charting habits, not patients.
    assert not any(part in name for name in model.feature_names
                   for part in ("_count_", "_coverage_", "_age_s", "_fresh", "_artefacts_"))


def test_risk_is_a_probability_and_septic_hours_score_higher(model, sample_inputs):
    cohort, X = sample_inputs
    risk = model.predict_proba(X)
    labels = cohort.column("SepsisLabel")
    assert risk.shape == (len(X),) and ((risk >= 0) & (risk <= 1)).all()
    assert risk[labels == 1].mean() > risk[labels == 0].mean()


def test_a_batch_of_a_thousand_patients_scores_in_milliseconds(model, sample_inputs):
    _, X = sample_inputs
    batch = np.resize(X, (1000, X.shape[1]))
    model.predict_proba(batch)  # first call warms the thread pool
    started = time.perf_counter()
    model.predict_proba(batch)
    assert time.perf_counter() - started < 0.25  # generous for a loaded 2-core CI box


def test_explanations_are_deterministic_named_factors_that_raise_the_risk(model, sample_inputs):
    _, X = sample_inputs
    row = X[int(np.argmax(model.predict_proba(X)))]
    factors = model.explain(row, top=3)
    assert factors == model.explain(row, top=3)
    assert 1 <= len(factors) <= 3
    weights = [w for _, w in factors]
    assert all(w > 0 for w in weights) and weights == sorted(weights, reverse=True)
    assert all(name in BEDSIDE_FACTORS for name, _ in factors)  # things a nurse can check
    assert not any("_" in name for name, _ in factors)  # human words, not column names


def test_no_factor_is_named_where_the_risk_carries_little_information(model, sample_inputs):
    _, X = sample_inputs
    risk = model.predict_proba(X)
    low = X[risk < model.show_from]
    assert len(low) and all(model.explain(row) == [] for row in low[:50])
    high = X[risk >= model.show_from]
    assert len(high) and any(model.explain(row) for row in high[:50])


def test_vectorised_news2_bands_are_the_charts_scores():
    grids = {"resp_rate": np.arange(0.0, 70.0, 0.05), "spo2": np.arange(50.0, 100.01, 0.05),
             "systolic_bp": np.arange(40.0, 260.0, 0.05), "heart_rate": np.arange(20.0, 220.0, 0.05),
             "temperature": np.arange(30.0, 43.0, 0.01)}
    scorers = {"resp_rate": chart.score_resp_rate, "spo2": chart.score_spo2,
               "systolic_bp": chart.score_systolic_bp, "heart_rate": chart.score_heart_rate,
               "temperature": chart.score_temperature}
    for parameter, grid in grids.items():
        grid = np.round(grid, 2)
        expected = np.array([scorers[parameter](float(v)) for v in grid], dtype=float)
        assert np.array_equal(news2_band_scores(parameter, grid), expected), parameter
    assert np.isnan(news2_band_scores("heart_rate", np.array([np.nan]))).all()


def test_a_typical_patient_has_nothing_raising_the_risk(model):
    typical = model.input_row(np.full(model.n_engine_features, np.nan), 60.0, False, 1.0)
    # All vitals missing read as typical: nothing raises the risk, and the risk is low.
    assert model.explain(typical, top=9) == []
    assert model.predict_proba(typical[None, :])[0] < model.show_from


def test_rows_of_the_wrong_width_are_refused(model):
    with pytest.raises(ValueError):
        model.input_row(np.zeros(3), 60.0, True, 1.0)
    with pytest.raises(ValueError):
        model.predict_proba(np.zeros((2, 3)))


def test_the_compiled_tree_walk_gives_the_trained_estimators_probabilities(model, sample_inputs):
    # The reference is scikit-learn's own predict on the same trees (a private attribute,
    # used here only as the oracle), including rows with missing inputs.
    _, X = sample_inputs
    rows = np.vstack([X, np.where(np.arange(X.shape[1]) % 3 == 0, np.nan, X[0])])
    expected = model._estimator.decision_function(np.where(np.isnan(rows), model._reference, rows))
    assert np.allclose(model.margin(rows), expected, rtol=0, atol=1e-9)


def test_the_model_loaded_in_a_child_process_is_the_same_model(model, sample_inputs, tmp_path, monkeypatch):
    # The worker loads the model with load_isolated, so it never imports scikit-learn.
    monkeypatch.delenv(TEST_CACHE_ENV, raising=False)  # the child itself, not the tests' cache
    isolated = RiskModel.load_isolated()
    _, rows = sample_inputs
    assert isolated.version == model.version and isolated.feature_names == model.feature_names
    assert isolated.threshold == model.threshold and isolated.windows_s == model.windows_s
    assert np.array_equal(isolated.predict_proba(rows), model.predict_proba(rows))
    assert [isolated.explain(row) for row in rows[:20]] == [model.explain(row) for row in rows[:20]]
    # A damaged file is refused the same way, with the reason in one line.
    copy = tmp_path / "sepsis_risk.skops"
    shutil.copy(DEFAULT_MODEL, copy)
    shutil.copy(checksum_path(DEFAULT_MODEL), checksum_path(copy))
    copy.write_bytes(copy.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="^checksum mismatch"):
        RiskModel.load_isolated(copy)


def test_the_tests_model_cache_serves_the_same_bytes_only(model, sample_inputs, tmp_path, monkeypatch):
    # The test hook that spares each worker of the suite its model child: the same model
    # from the cache, and a file whose bytes differ still goes to the child and is refused.
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(TEST_CACHE_ENV, str(cache))
    first = RiskModel.load_isolated()
    assert len(list(cache.glob("*.npz"))) == 1
    again = RiskModel.load_isolated()
    _, rows = sample_inputs
    assert again.version == first.version == model.version
    assert np.array_equal(again.predict_proba(rows), model.predict_proba(rows))
    copy = tmp_path / "sepsis_risk.skops"
    shutil.copy(DEFAULT_MODEL, copy)
    checksum_path(copy).write_text("0" * 64 + "  sepsis_risk.skops\n")
    with pytest.raises(ModelFileError, match="^checksum mismatch"):
        RiskModel.load_isolated(copy)
    assert len(list(cache.glob("*.npz"))) == 1


def test_the_worker_never_imports_scikit_learn():
    import subprocess
    import sys

    probe = ("import sys; from vitalstream.settings import Settings; from vitalstream.app import create_app; "
             "app = create_app(Settings(kafka_bootstrap='127.0.0.1:1')); "
             "assert app.vitalstream_monitor.model is not None; "
             "print(sorted(m for m in ('sklearn', 'skops') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_model_raises_alerts_only_behind_its_setting(model):
    from vitalstream.app import build_monitor
    from vitalstream.settings import Settings

    assert Settings().risk_alerts == ""  # off by default
    assert not build_monitor(Settings()).policy.config.risk_thresholds
    monitor = build_monitor(Settings(risk_alerts="budget"))
    assert monitor.policy.config.risk_thresholds == {"medium": pytest.approx(model.show_from)}
    with pytest.raises(ValueError, match="operating points"):
        build_monitor(Settings(risk_alerts="everything"))
