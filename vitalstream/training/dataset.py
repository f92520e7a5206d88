"""PhysioNet stays to model rows, through the same feature engine the monitor runs.

Each charted vital becomes a canonical sample at its hour (time = (ICULOS - 1) h, so an
ICU stay's first hour is time 0), and every row is a query at its own hour: the engine
uses only samples at or before it, so a row never sees its future.

The canonical stream has no mean arterial pressure, so MAP is not a model input. Hospital
system A often charted MAP without DBP (DBP is missing on 48 % of rows, MAP on 10 %);
where DBP is missing and SBP and MAP were charted, DBP is recovered as (3 MAP - SBP) / 2,
the inverse of the usual MAP estimate, and kept only if it is plausible (20 mmHg to SBP).
"""

from __future__ import annotations

import numpy as np

from vitalstream.features import DEFAULT_WINDOWS_S, feature_names, features_at
from vitalstream.samples import PARAM_INDEX
from vitalstream.scoring.model import RiskModel
from vitalstream.training.physionet import Cohort

# Challenge column -> canonical parameter.
VITAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("HR", "heart_rate"),
    ("Resp", "resp_rate"),
    ("O2Sat", "spo2"),
    ("SBP", "systolic_bp"),
    ("DBP", "diastolic_bp"),
    ("Temp", "temperature"),
)


def diastolic_bp(cohort: Cohort) -> np.ndarray:
    """Charted DBP, recovered from MAP and SBP where only those were charted."""
    dbp = cohort.column("DBP").copy()
    sbp = cohort.column("SBP")
    derived = (3.0 * cohort.column("MAP") - sbp) / 2.0
    use = np.isnan(dbp) & ~np.isnan(derived) & (derived >= 20.0) & (derived < sbp)
    dbp[use] = derived[use]
    return dbp


def hours_monitored(cohort: Cohort) -> np.ndarray:
    """Hours since the ICU stay's first hour (ICULOS 1 is hour 0)."""
    return cohort.column("ICULOS") - 1.0


def cohort_samples(cohort: Cohort) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(patient_idx, parameter index, time_s, value) of every charted vital, in the
    feature engine's long format, sorted by patient then time."""
    stay = cohort.stay_index()
    time_s = hours_monitored(cohort) * 3600.0
    patients, params, times, values = [], [], [], []
    for column, parameter in VITAL_COLUMNS:
        value = diastolic_bp(cohort) if column == "DBP" else cohort.column(column)
        present = ~np.isnan(value)
        patients.append(stay[present])
        params.append(np.full(int(present.sum()), PARAM_INDEX[parameter]))
        times.append(time_s[present])
        values.append(value[present])
    patient_idx = np.concatenate(patients).astype(np.int64)
    param_idx = np.concatenate(params).astype(np.int64)
    times_s = np.concatenate(times)
    vals = np.concatenate(values)
    order = np.lexsort((param_idx, times_s, patient_idx))
    return patient_idx[order], param_idx[order], times_s[order], vals[order]


def context_inputs(cohort: Cohort) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Age in years, sex (1 male, 0 female) and hours monitored of every row."""
    return cohort.column("Age"), cohort.column("Gender"), hours_monitored(cohort)


def engine_rows(cohort: Cohort, windows_s: tuple[int, ...] = DEFAULT_WINDOWS_S) -> np.ndarray:
    """The feature engine's full row for every cohort row, each a query at its own hour;
    one batched call for the whole cohort."""
    if not len(cohort.values):
        return np.zeros((0, len(feature_names(windows_s))))
    patient_idx, params, times_s, values = cohort_samples(cohort)
    query_patient = cohort.stay_index().astype(np.int64)
    query_time_s = hours_monitored(cohort) * 3600.0
    return features_at(
        patient_idx, params, times_s, values, query_patient, query_time_s, windows_s=windows_s
    )


def cohort_risk(model: RiskModel, cohort: Cohort) -> np.ndarray:
    """The model's calibrated risk for every row of a cohort (causal per row), assembled
    with `RiskModel.input_row` exactly as the monitor does."""
    if not len(cohort.values):
        return np.zeros(0)
    features = engine_rows(cohort, model.windows_s)
    return model.predict_proba(model.input_row(features, *context_inputs(cohort)))


def cohort_inputs(model: RiskModel, cohort: Cohort) -> np.ndarray:
    """The model's input rows of every cohort row (as `cohort_risk` scores them)."""
    return model.input_row(engine_rows(cohort, model.windows_s), *context_inputs(cohort))
