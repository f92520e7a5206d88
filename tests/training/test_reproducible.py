"""`vitalstream train` is reproducible: the same data and seed give the same model file,
byte for byte (so the same sha256), and the file loads to the same predictions."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import skops.io

from vitalstream.features import DEFAULT_WINDOWS_S, feature_names
from vitalstream.scoring.model import (
    DEFAULT_MODEL,
    TRUSTED_TYPES,
    RiskModel,
    canonical_skops,
    sha256_of,
    write_model,
)
from vitalstream.training.dataset import cohort_inputs, engine_rows
from vitalstream.training.fit import TrainConfig, train
from vitalstream.training.physionet import SAMPLE_DIR, read_psv_dir

# Small enough to train in seconds on the shipped sample's 40 stays.
SMALL = TrainConfig(max_iter=60, tree_count_step=20, min_samples_leaf=20, negative_keep=0.5)


@pytest.fixture(scope="module")
def sample():
    cohort = read_psv_dir(SAMPLE_DIR)
    windows = tuple(DEFAULT_WINDOWS_S)
    return cohort, engine_rows(cohort, windows), windows


def trained_file(sample, path, seed: int = SMALL.seed):
    cohort, features, windows = sample
    config = TrainConfig(**{**SMALL.__dict__, "seed": seed})
    payload, _, _ = train(cohort, features, config, feature_names(windows), windows,
                          log=lambda _m: None)
    digest = write_model(payload, path)
    return digest, RiskModel.load(path)


def test_training_twice_on_the_same_data_and_seed_gives_the_same_file(sample, tmp_path):
    first_digest, first = trained_file(sample, tmp_path / "a.skops")
    second_digest, second = trained_file(sample, tmp_path / "b.skops")
    assert first_digest == second_digest == sha256_of(tmp_path / "b.skops")
    assert (tmp_path / "a.skops").read_bytes() == (tmp_path / "b.skops").read_bytes()
    X = cohort_inputs(first, sample[0])
    assert np.array_equal(first.predict_proba(X), second.predict_proba(X))  # to the last bit
    # The seed matters: another seed splits the patients differently.
    other_digest, other = trained_file(sample, tmp_path / "c.skops", seed=7)
    assert other_digest != first_digest
    assert not np.array_equal(other.predict_proba(X), first.predict_proba(X))


def test_the_canonical_file_is_the_same_payload_whatever_its_memory_addresses(tmp_path):
    payload = skops.io.load(DEFAULT_MODEL, trusted=list(TRUSTED_TYPES))
    raw = skops.io.dumps(payload)  # skops names members after memory addresses
    twin = skops.io.dumps(copy.deepcopy(payload))
    assert raw != twin
    assert canonical_skops(raw) == canonical_skops(twin)
    write_model(payload, tmp_path / "m.skops")
    rewritten, shipped = RiskModel.load(tmp_path / "m.skops"), RiskModel.load()
    rng = np.random.default_rng(3)
    X = rng.normal(60.0, 25.0, size=(2000, len(shipped.feature_names)))
    X[rng.random(X.shape) < 0.3] = np.nan
    assert np.array_equal(rewritten.predict_proba(X), shipped.predict_proba(X))
    assert rewritten.platt == shipped.platt and rewritten.threshold == shipped.threshold


def test_the_shipped_file_is_already_canonical():
    # Written by `vitalstream train` (write_model), so rewriting it changes no byte.
    data = DEFAULT_MODEL.read_bytes()
    assert canonical_skops(data) == data
