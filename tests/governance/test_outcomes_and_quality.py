"""The outcomes feed (CSV and FHIR), the comparison's overlap, the drift index and the
quality census's subgroup labels, without a broker."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from vitalstream.governance.accuracy import median_interval, poisson_rate, wilson
from vitalstream.governance.compare import overlap
from vitalstream.governance.drift import DriftMonitor, counts, psi, reference_from_values
from vitalstream.governance.outcomes import read_csv_text, read_fhir_text
from vitalstream.governance.quality import age_band, sex_label
from vitalstream.validation.matching import Trigger

pytestmark = pytest.mark.governance


def test_csv_outcomes_give_events_and_demographics_and_refuse_bad_rows_with_their_reason() -> None:
    feed = read_csv_text(
        "patient_id,kind,time,ward,age_years,sex\n"
        "p1,icu_transfer,2026-03-15T14:20:00Z,4B,71,F\n"
        "p2,,,4B,54,male\n"
        ",death,1000,,,\n"
        "p3,death,yesterday,,,\n"
        "p4,death,1000,,200,\n"
        "p5,death,1000,,,x\n")
    assert [(e.patient_id, e.kind, e.event_ms) for e in feed.events] == [("p1", "icu_transfer", 1773584400000)]
    assert feed.demographics == {"p1": {"age_years": 71.0, "sex": "female"}, "p2": {"age_years": 54.0, "sex": "male"}}
    assert [w for w, _ in feed.refused] == ["line 4", "line 5", "line 6", "line 7"]
    assert feed.refused_counts() == {"no patient_id": 1, "time not ISO 8601 or epoch ms": 1,
                                     "age_years not a plausible age": 1, "sex must be female or male": 1}


def test_fhir_encounters_and_conditions_become_events_and_patients_give_age_and_sex() -> None:
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-06-01"}},
        {"resource": {"resourceType": "Encounter", "subject": {"reference": "Patient/p1"},
                      "period": {"start": "2026-03-15T10:00:00Z"},
                      "location": [{"location": {"display": "ICU bed 3"}}]}},
        {"resource": {"resourceType": "Encounter", "subject": {"reference": "Patient/p2"},
                      "period": {"start": "2026-03-15T09:00:00Z", "end": "2026-03-16T02:00:00Z"},
                      "hospitalization": {"dischargeDisposition": {"coding": [{"code": "exp"}]}}}},
        {"resource": {"resourceType": "Encounter", "subject": {"reference": "Patient/p3"},
                      "type": [{"coding": [{"code": "rapid-response"}]}], "period": {"start": "2026-03-15T08:00:00Z"}}},
        {"resource": {"resourceType": "Condition", "subject": {"reference": "Patient/p4"},
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91302008"}]},
                      "onsetDateTime": "2026-03-15T07:00:00Z"}},
        {"resource": {"resourceType": "Encounter", "subject": {"reference": "Group/g"}, "period": {}}},
        {"resource": {"resourceType": "Encounter", "subject": {"reference": "Patient/p5"},
                      "period": {"start": "2026-03-15T08:00:00Z"}}},
        {"resource": {"resourceType": "Observation"}},
    ]}
    feed = read_fhir_text(orjson.dumps(bundle).decode())
    assert sorted((e.patient_id, e.kind) for e in feed.events) == [
        ("p1", "icu_transfer"), ("p2", "death"), ("p3", "rapid_response"), ("p4", "other")]
    death = next(e for e in feed.events if e.kind == "death")
    assert death.event_ms == 1773626400000, "a death is at the encounter's end"
    feed.age_at(death.event_ms)
    assert feed.demographics["p1"] == {"sex": "female", "age_years": 75.0}
    assert [w for w, _ in feed.refused] == ["entry 5", "entry 6", "entry 7"]
    ndjson = read_fhir_text('{"resourceType": "Patient", "id": "p9"}\nnot json\n')
    assert ndjson.refused == [("line 2", "not JSON")] and "p9" in ndjson.demographics


def test_overlap_counts_each_episode_once() -> None:
    live = [Trigger("p1", 0, "medium"), Trigger("p2", 0, "medium"), Trigger("p1", 10 * 3_600_000, "high")]
    shadow = [Trigger("p1", 1_800_000, "medium"), Trigger("p3", 0, "low")]
    assert overlap(live, shadow) == {"both": 1, "live_only": 2, "shadow_only": 1, "share": 0.25}


def test_psi_is_zero_on_the_reference_and_large_on_a_shifted_population() -> None:
    rng = np.random.default_rng(1)
    reference = reference_from_values(rng.normal(80, 12, 20_000))
    assert psi(reference, counts(reference, rng.normal(80, 12, 5_000))) < 0.02
    assert psi(reference, counts(reference, rng.normal(95, 12, 5_000))) > 0.25
    monitor = DriftMonitor({"heart_rate": reference}, window=3, min_observations=100)
    monitor.add({"heart_rate": rng.normal(80, 12, 50)})
    assert np.isnan(monitor.psi()["heart_rate"]), "too few values to say"
    for _ in range(3):
        monitor.add({"heart_rate": rng.normal(110, 12, 50)})
    assert monitor.psi()["heart_rate"] > 0.25 and monitor.observations("heart_rate") == 150


def test_subgroup_labels_are_a_small_closed_set() -> None:
    assert [age_band(a) for a in (None, 17, 18, 44.9, 45, 64, 65, 79, 80, 101)] == [
        "unknown", "under_18", "18-44", "18-44", "45-64", "45-64", "65-79", "65-79", "80+", "80+"]
    assert [sex_label(s) for s in (None, True, False)] == ["unknown", "male", "female"]


def test_intervals_contain_their_estimate() -> None:
    assert wilson(0, 0) is None and wilson(0, 10)[0] == 0.0
    low, high = poisson_rate(12, 4.0)
    assert low < 3.0 < high
    assert median_interval([1.0]) is None
    low, high = median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert low <= 3.0 <= high
