"""The per-patient monitor: the pure core between canonical samples and alerts.

No Kafka, no asyncio, no clock: the Faust app hands it batches of samples and control
records, and publishes what it returns. The same class runs in the worker, in replay
and in the tests.

For each batch it updates the latest value of every parameter, hands the numeric samples
to the feature engine in one call, scores NEWS2 from the latest value of each parameter
within its window, scores the risk model for the patients the batch touched, and asks
the alert policy what to publish.

NEWS2 windows: continuously monitored parameters (HR, RR, SpO2, diastolic BP) count
when measured within ``news2_window_s`` (30 min) of the patient's newest sample; the
parameters a ward charts at observation rounds (temperature, systolic BP, consciousness,
oxygen) count within ``round_window_s`` (4.5 h), so a 4-hourly round still makes a full
score. Every value keeps its own time, and alerts print it.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vitalstream.alerts import Alert, AlertPolicy, Assessment, PatientAlertState
from vitalstream.samples import NUMERIC_PARAMETERS, PARAM_INDEX, Sample
from vitalstream.scoring.news2 import news2

ROUND_PARAMETERS = frozenset({"temperature", "systolic_bp", "consciousness", "on_oxygen"})
NEWS2_INPUTS = ("resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate",
                "consciousness", "temperature")


@dataclasses.dataclass(slots=True)
class PatientRecord:
    """What the monitor remembers of one patient besides the feature engine's buffers."""

    patient_id: str
    ward: str
    bed: str
    first_seen_ms: int
    newest_ms: int
    latest: dict[str, tuple[Any, int]]
    spo2_scale: int
    alert_state: PatientAlertState
    age_years: float | None = None
    sex_male: bool | None = None

    def to_dict(self, engine_snapshot: bytes | None) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id, "ward": self.ward, "bed": self.bed,
            "first_seen_ms": self.first_seen_ms, "newest_ms": self.newest_ms,
            "latest": {k: [v, t] for k, (v, t) in self.latest.items()},
            "spo2_scale": self.spo2_scale, "alert_state": self.alert_state.to_dict(),
            "age_years": self.age_years, "sex_male": self.sex_male,
            "engine": base64.b64encode(engine_snapshot).decode() if engine_snapshot else None,
        }


@dataclasses.dataclass(slots=True)
class MonitorResult:
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    assessments: list[Assessment] = dataclasses.field(default_factory=list)
    touched: list[str] = dataclasses.field(default_factory=list)
    samples: int = 0


class Monitor:
    """Per-patient state and scoring for the patients of one worker.

        monitor = Monitor(AlertPolicy())
        result = monitor.process(samples)   # -> alerts to publish
    """

    def __init__(self, policy: AlertPolicy, engine: Any | None = None, model: Any | None = None,
                 news2_window_s: float = 1800.0, round_window_s: float = 16200.0,
                 resolution_s: float = 1.0) -> None:
        self.policy = policy
        self.engine = engine
        self.model = model
        self.news2_window_ms = int(news2_window_s * 1000)
        self.round_window_ms = int(round_window_s * 1000)
        self.resolution_ms = max(1, int(resolution_s * 1000))
        self.patients: dict[str, PatientRecord] = {}
        self._feature_names: list[str] = list(engine.feature_names) if engine is not None else []

    # -- state -------------------------------------------------------------------------
    def record_for(self, sample: Sample) -> PatientRecord:
        record = self.patients.get(sample.patient_id)
        if record is None:
            record = PatientRecord(
                patient_id=sample.patient_id, ward=sample.ward, bed=sample.bed,
                first_seen_ms=sample.device_time_ms, newest_ms=sample.device_time_ms,
                latest={}, spo2_scale=1, alert_state=self.policy.new_state(),
            )
            self.patients[sample.patient_id] = record
        return record

    def export(self, patient_id: str) -> dict[str, Any]:
        """One patient's state as a JSON-able dict (for the changelog-backed table)."""
        snapshot = self.engine.snapshot(patient_id) if self.engine is not None else None
        return self.patients[patient_id].to_dict(snapshot)

    def restore(self, state: dict[str, Any]) -> None:
        """Recreate a patient from ``export``'s dict (a restarted worker)."""
        record = PatientRecord(
            patient_id=state["patient_id"], ward=state["ward"], bed=state["bed"],
            first_seen_ms=state["first_seen_ms"], newest_ms=state["newest_ms"],
            latest={k: (v, t) for k, (v, t) in state["latest"].items()},
            spo2_scale=state["spo2_scale"],
            alert_state=PatientAlertState.from_dict(state["alert_state"]),
            age_years=state.get("age_years"), sex_male=state.get("sex_male"),
        )
        self.patients[record.patient_id] = record
        if self.engine is not None and state.get("engine"):
            self.engine.restore(record.patient_id, base64.b64decode(state["engine"]))

    def discharge(self, patient_id: str) -> None:
        self.patients.pop(patient_id, None)
        if self.engine is not None:
            self.engine.discharge(patient_id)

    # -- scoring -----------------------------------------------------------------------
    def process(self, samples: Sequence[Sample]) -> MonitorResult:
        """Take one batch of samples (any patients, any order) and return what to publish.

        The batch is cut into waves by device time: wave k holds each patient's k-th
        reading time (to ``resolution_ms``). Each wave is one call into the feature engine
        and one assessment per patient in it, so a patient is assessed at every reading
        time whether the readings arrived in one batch (a fast replay) or many (live): the
        alerts do not depend on how the broker happened to batch them.
        """
        result = MonitorResult(samples=len(samples))
        touched: dict[str, None] = {}
        for wave in self._waves(samples):
            self._process_wave(wave, result)
            touched.update(dict.fromkeys(s.patient_id for s in wave))
        result.touched = list(touched)
        return result

    def _waves(self, samples: Sequence[Sample]) -> Iterable[list[Sample]]:
        by_patient: dict[str, dict[int, list[Sample]]] = {}
        for sample in samples:
            times = by_patient.setdefault(sample.patient_id, {})
            times.setdefault(sample.device_time_ms // self.resolution_ms, []).append(sample)
        readings = [[times[t] for t in sorted(times)] for times in by_patient.values()]
        depth = max((len(r) for r in readings), default=0)
        for k in range(depth):
            yield [sample for r in readings if k < len(r) for sample in r[k]]

    def _process_wave(self, samples: list[Sample], result: MonitorResult) -> None:
        touched: dict[str, PatientRecord] = {}
        numeric: list[tuple[int, int, float, float]] = []
        for sample in samples:
            record = self.record_for(sample)
            touched[sample.patient_id] = record
            if sample.ward:
                record.ward, record.bed = sample.ward, sample.bed
            if sample.parameter == "spo2_scale":
                record.spo2_scale = int(sample.value)
                continue
            if sample.artefact:
                continue
            current = record.latest.get(sample.parameter)
            if current is None or sample.device_time_ms >= current[1]:
                record.latest[sample.parameter] = (sample.value, sample.device_time_ms)
            record.newest_ms = max(record.newest_ms, sample.device_time_ms)
            if self.engine is not None and sample.parameter in NUMERIC_PARAMETERS:
                numeric.append((self.engine.slot_for(sample.patient_id), PARAM_INDEX[sample.parameter],
                                sample.device_time_ms / 1000.0, float(sample.value)))
        features_by_patient = self._update_features(numeric, touched)
        risks = self._score_risk(touched, features_by_patient)
        for patient_id, record in touched.items():
            assessment = self.assess(record, features_by_patient.get(patient_id), risks.get(patient_id))
            result.assessments.append(assessment)
            result.alerts.extend(self.policy.assess(record.alert_state, assessment))

    def _update_features(self, numeric: list[tuple[int, int, float, float]],
                         touched: dict[str, PatientRecord]) -> dict[str, np.ndarray]:
        if self.engine is None or not numeric:
            return {}
        batch = np.array(numeric, dtype=np.float64)
        slots, rows = self.engine.update(batch[:, 0].astype(np.int64), batch[:, 1].astype(np.int64),
                                         batch[:, 2], batch[:, 3])
        by_slot = {int(slot): row for slot, row in zip(slots, rows, strict=True)}
        return {pid: by_slot[self.engine.slot_for(pid)] for pid in touched
                if self.engine.slot_for(pid) in by_slot}

    def _score_risk(self, touched: dict[str, PatientRecord],
                    features: dict[str, np.ndarray]) -> dict[str, tuple[float, list[tuple[str, float]]]]:
        if self.model is None or not features:
            return {}
        ids = [pid for pid in touched if pid in features]
        rows = np.vstack([
            self.model.input_row(features[pid], touched[pid].age_years, touched[pid].sex_male,
                                 (touched[pid].newest_ms - touched[pid].first_seen_ms) / 3.6e6)
            for pid in ids
        ])
        probabilities = self.model.predict_proba(rows)
        risks = {}
        for pid, row, probability in zip(ids, rows, probabilities, strict=True):
            # Factors cost several model calls: only for risks that may be shown in an alert.
            factors = self.model.explain(row) if probability >= self.model.threshold * 0.8 else []
            risks[pid] = (float(probability), factors)
        return risks

    def assess(self, record: PatientRecord, feature_row: np.ndarray | None,
               risk: tuple[float, list[tuple[str, float]]] | None) -> Assessment:
        now_ms = record.newest_ms
        observations: dict[str, tuple[Any, int]] = {}
        stale: list[str] = []
        for parameter in (*NEWS2_INPUTS, "diastolic_bp"):
            latest = record.latest.get(parameter)
            if latest is None:
                continue
            window_ms = self.round_window_ms if parameter in ROUND_PARAMETERS else self.news2_window_ms
            if now_ms - latest[1] <= window_ms:
                observations[parameter] = latest
            else:
                stale.append(parameter)
        values = {name: value for name, (value, _) in observations.items()}
        values["spo2_scale"] = record.spo2_scale
        features = ({name: float(v) for name, v in zip(self._feature_names, feature_row, strict=True)}
                    if feature_row is not None else {})
        return Assessment(
            patient_id=record.patient_id, ward=record.ward, bed=record.bed, time_ms=now_ms,
            news2=news2(values), observations=observations, features=features,
            risk=risk[0] if risk else None,
            model_version=getattr(self.model, "version", None) if risk else None,
            risk_factors=risk[1] if risk else [], stale=stale, spo2_scale=record.spo2_scale,
        )

    # -- control -----------------------------------------------------------------------
    def acknowledge(self, patient_id: str, alert_id: str, by: str, at_ms: int) -> list[Alert]:
        record = self.patients.get(patient_id)
        if record is None:
            return []
        return self.policy.acknowledge(record.alert_state, alert_id, by, at_ms)

    def technical(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        alerts: list[Alert] = []
        for event in events:
            record = self.patients.get(event.get("patient_id", ""))
            if record is None:
                continue
            alerts.extend(self.policy.technical(record.alert_state, event))
        return alerts

    def check_stale(self, now_ms: int) -> list[Alert]:
        alerts: list[Alert] = []
        for record in self.patients.values():
            alerts.extend(self.policy.check_stale(record.alert_state, now_ms))
        return alerts

    def stale_patients(self) -> int:
        return sum(1 for r in self.patients.values()
                   if any(r.newest_ms - t > (self.round_window_ms if p in ROUND_PARAMETERS
                                              else self.news2_window_ms)
                          for p, (_, t) in r.latest.items()))
