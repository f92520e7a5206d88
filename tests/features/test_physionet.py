"""The offline path on real ICU charting (PhysioNet 2019): hourly, irregular, with gaps.

The shipped 40-stay sample always runs; set A in ../shared/data runs when present."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from features_reference import reference_features
from testkit import SHARED_DATA

from vitalstream.features import DEFAULT_WINDOWS_S, ArtefactRules, feature_names, features_at
from vitalstream.features.engine import DEFAULT_BUCKETS_PER_WINDOW

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "vitalstream" / "data" / "physionet2019_sample"
SET_A = SHARED_DATA / "physionet2019_training_setA.tar.gz"
VITAL_COLUMNS = {"HR": 0, "Resp": 1, "O2Sat": 2, "SBP": 3, "DBP": 4, "Temp": 5}
NAMES = feature_names()


def stay_samples(text: str, patient: int):
    lines = text.strip().splitlines()
    header = lines[0].split("|")
    table = np.array([line.split("|") for line in lines[1:]], dtype=np.float64)
    hour_s = table[:, header.index("ICULOS")] * 3600.0
    columns = [[], [], [], []]
    for name, param in VITAL_COLUMNS.items():
        present = ~np.isnan(table[:, header.index(name)])
        columns[0].append(np.full(present.sum(), patient))
        columns[1].append(np.full(present.sum(), param))
        columns[2].append(hour_s[present])
        columns[3].append(table[present, header.index(name)])
    return [np.concatenate(c) for c in columns], hour_s


def load(texts: list[str]):
    samples, queries = [[], [], [], []], [[], []]
    for patient, text in enumerate(texts):
        columns, hour_s = stay_samples(text, patient)
        for store, column in zip(samples, columns, strict=True):
            store.append(column)
        queries[0].append(np.full(len(hour_s), patient))
        queries[1].append(hour_s)
    return [np.concatenate(c) for c in samples], [np.concatenate(c) for c in queries]


def check_rows_against_reference(texts: list[str], n_checked: int) -> np.ndarray:
    (patients, params, times_s, values), (q_patients, q_times_s) = load(texts)
    rows = features_at(patients, params, times_s, values, q_patients, q_times_s)
    assert rows.shape == (len(q_times_s), len(NAMES))
    rng = np.random.default_rng(0)
    for i in rng.choice(len(q_times_s), min(n_checked, len(q_times_s)), replace=False):
        mine = (patients == q_patients[i]) & (times_s <= q_times_s[i])
        order = np.argsort(times_s[mine], kind="stable")
        expected = reference_features(params[mine][order], times_s[mine][order],
                                      values[mine][order], q_times_s[i], DEFAULT_WINDOWS_S,
                                      DEFAULT_BUCKETS_PER_WINDOW, ArtefactRules(), np.inf)
        np.testing.assert_allclose(rows[i], expected, rtol=1e-9, atol=1e-4, equal_nan=True)
    return rows


def test_hourly_charting_of_the_shipped_stays_matches_the_reference():
    texts = [path.read_text() for path in sorted(SAMPLE_DIR.glob("*.psv"))]
    assert len(texts) >= 20, "the project ships a sample of PhysioNet 2019 stays"
    rows = check_rows_against_reference(texts, n_checked=150)
    # hourly charting fills about 6 of the 6 h window's 30 twelve-minute buckets
    coverage = rows[:, NAMES.index("heart_rate_coverage_6h")]
    assert 0.0 < np.nanmax(coverage) <= 0.2 + 1e-12


@pytest.mark.data
def test_set_a_stays_match_the_reference():
    if not SET_A.is_file():
        pytest.skip(f"PhysioNet 2019 set A not found at {SET_A} (see ../shared/data/README.md)")
    texts = []
    with tarfile.open(SET_A) as tar:
        for member in tar:
            if member.name.endswith(".psv"):
                texts.append(tar.extractfile(member).read().decode())
                if len(texts) == 300:
                    break
    check_rows_against_reference(texts, n_checked=300)
