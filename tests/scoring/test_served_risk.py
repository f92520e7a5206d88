"""The stream's risk is the offline risk: the same readings through the live monitor
(feature engine updated batch by batch, model loaded the worker's way) give the risk
`vitalstream evaluate` and `vitalstream train` compute for the same hours."""

from __future__ import annotations

import numpy as np
import pytest

from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor
from vitalstream.samples import CANONICAL_UNITS, NUMERIC_PARAMETERS, Sample
from vitalstream.scoring.model import RiskModel
from vitalstream.training.dataset import cohort_risk, cohort_samples, hours_monitored
from vitalstream.training.physionet import SAMPLE_DIR, read_psv_dir

# A whole number of 6 h from the epoch, so the engine's buckets line up with the offline
# table's (which starts at 0 s); the features do not depend on the clock otherwise.
T0_S = 78_704 * 21_600


@pytest.fixture(scope="module")
def cohort():
    full = read_psv_dir(SAMPLE_DIR)
    lengths = np.diff(full.offsets)
    return full.subset(np.argsort(-lengths, kind="stable")[:4])  # the four longest stays


def streamed_risk(model: RiskModel, cohort) -> dict[tuple[int, int], float]:
    """Risk per (stay, hour) from the monitor, one batch per charted hour of each stay."""
    monitor = Monitor(AlertPolicy(), engine=FeatureEngine(), model=model, risk_interval_s=60.0)
    patient, param, time_s, value = cohort_samples(cohort)
    out: dict[tuple[int, int], float] = {}
    keys = np.stack([time_s, patient], axis=1)
    for t, stay in np.unique(keys, axis=0):
        chosen = (time_s == t) & (patient == stay)
        batch = [Sample(patient_id=f"stay-{int(stay)}", ward="4B", bed=str(int(stay)),
                        parameter=NUMERIC_PARAMETERS[int(p)], value=float(v),
                        unit=CANONICAL_UNITS[NUMERIC_PARAMETERS[int(p)]],
                        device_time_ms=int((T0_S + t) * 1000), source="test",
                        ingest_time_ms=int((T0_S + t) * 1000))
                 for p, v in zip(param[chosen], value[chosen], strict=True)]
        for assessment in monitor.process(batch).assessments:
            if assessment.risk is not None and assessment.risk_ms == assessment.time_ms:
                out[(int(stay), int(round(t / 3600)))] = assessment.risk
    return out


def test_the_monitors_risk_is_the_offline_risk_of_the_same_readings(cohort):
    offline_model = RiskModel.load()
    served_model = RiskModel.load_isolated()  # as the worker loads it
    offline = cohort_risk(offline_model, cohort)
    hours = hours_monitored(cohort).astype(int)
    stay = cohort.stay_index()
    offline_at = {(int(s), int(h)): float(r) for s, h, r in zip(stay, hours, offline, strict=True)}
    served = streamed_risk(served_model, cohort)
    assert len(served) > 100, "every charted hour should be scored"
    assert set(served) <= set(offline_at)
    differences = [abs(served[key] - offline_at[key]) for key in served]
    assert max(differences) < 1e-9
    # Not a constant: the comparison covers risks that move.
    assert np.ptp(list(served.values())) > 0.001


def test_the_board_is_told_to_print_the_risk_only_from_the_models_show_from(cohort):
    model = RiskModel.load()
    monitor = Monitor(AlertPolicy(), engine=FeatureEngine(), model=model, risk_interval_s=60.0)
    patient, param, time_s, value = cohort_samples(cohort)
    states = []
    for t in np.unique(time_s):
        chosen = time_s == t
        batch = [Sample(patient_id=f"stay-{int(s)}", ward="4B", bed=str(int(s)),
                        parameter=NUMERIC_PARAMETERS[int(p)], value=float(v),
                        unit=CANONICAL_UNITS[NUMERIC_PARAMETERS[int(p)]],
                        device_time_ms=int((T0_S + t) * 1000), source="test",
                        ingest_time_ms=int((T0_S + t) * 1000))
                 for s, p, v in zip(patient[chosen], param[chosen], value[chosen], strict=True)]
        states += monitor.bed_states(monitor.process(batch).assessments)
    scored = [s for s in states if s["risk"] is not None]
    assert scored, "the bed states carry the risk"
    for state in scored:
        assert state["risk_shown"] == (state["risk"] >= model.show_from)
    # Both kinds occur on these stays, so the flag is not a constant.
    assert {s["risk_shown"] for s in scored} == {True, False}
