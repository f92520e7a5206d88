"""What the live stream produced, kept compactly while it is read: every alert message,
and per patient the NEWS2 totals, risk and observed vital signs of the bed states.

Pure: it is handed message values (bytes or dicts) by whoever reads the topics.

>>> collector = StreamCollector()
>>> collector.add_state({"patient_id": "p1", "time_ms": 60_000, "news2": {"total": 5},
...                      "risk": None, "observations": {"heart_rate": {"value": 112.0, "time_ms": 59_000}}})
>>> collector.add_state({"patient_id": "p1", "time_ms": 0, "news2": {"total": 2}, "observations": {}})
>>> times, totals = collector.news2_series()["p1"]
>>> times.tolist(), totals.tolist()
([0, 60000], [2, 5])
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np
import orjson

# The vital signs a timeline plots (NEWS2's numeric inputs).
TIMELINE_PARAMETERS: tuple[str, ...] = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature")


class _PatientStates:
    __slots__ = ("observations", "risk", "time_ms", "total")

    def __init__(self) -> None:
        self.time_ms = array("q")
        self.total = array("b")
        self.risk = array("d")
        # parameter -> (times, values), one point per distinct measurement time
        self.observations: dict[str, tuple[array, array]] = {}


class StreamCollector:
    """Alerts and bed states as they arrived; ``bed_states`` counts the messages."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.bed_states = 0
        self._patients: dict[str, _PatientStates] = {}

    def add_alert(self, value: bytes | dict[str, Any]) -> None:
        self.alerts.append(orjson.loads(value) if isinstance(value, bytes | bytearray | memoryview) else value)

    def add_state(self, value: bytes | dict[str, Any]) -> None:
        state = orjson.loads(value) if isinstance(value, bytes | bytearray | memoryview) else value
        self.bed_states += 1
        patient = self._patients.get(state["patient_id"])
        if patient is None:
            patient = self._patients[state["patient_id"]] = _PatientStates()
        patient.time_ms.append(int(state["time_ms"]))
        patient.total.append(int(state["news2"]["total"]))
        risk = state.get("risk")
        patient.risk.append(math.nan if risk is None else float(risk))
        for parameter, observed in (state.get("observations") or {}).items():
            if parameter not in TIMELINE_PARAMETERS or not isinstance(observed, dict):
                continue
            series = patient.observations.get(parameter)
            if series is None:
                series = patient.observations[parameter] = (array("q"), array("d"))
            at_ms = int(observed["time_ms"])
            if not series[0] or series[0][-1] != at_ms:
                series[0].append(at_ms)
                series[1].append(float(observed["value"]))

    @property
    def patient_ids(self) -> list[str]:
        return sorted(self._patients)

    def _order(self, patient: _PatientStates) -> np.ndarray:
        return np.argsort(np.frombuffer(patient.time_ms, dtype=np.int64), kind="stable")

    def news2_series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Patient -> (times ms, NEWS2 totals) in device-time order."""
        series = {}
        for patient_id, patient in self._patients.items():
            order = self._order(patient)
            series[patient_id] = (np.frombuffer(patient.time_ms, dtype=np.int64)[order],
                                  np.frombuffer(patient.total, dtype=np.int8)[order].astype(np.int64))
        return series

    def timeline(self, patient_id: str) -> dict[str, Any]:
        """One patient's published scores and vital signs, in device-time order (arrays)."""
        patient = self._patients.get(patient_id)
        if patient is None:
            return {"time_ms": np.zeros(0, np.int64), "news2": np.zeros(0), "risk": np.zeros(0), "vitals": {}}
        order = self._order(patient)
        vitals = {}
        for parameter, (times, values) in patient.observations.items():
            t = np.frombuffer(times, dtype=np.int64)
            v = np.frombuffer(values, dtype=np.float64)
            by_time = np.argsort(t, kind="stable")
            vitals[parameter] = (t[by_time], v[by_time])
        return {"time_ms": np.frombuffer(patient.time_ms, dtype=np.int64)[order],
                "news2": np.frombuffer(patient.total, dtype=np.int8)[order].astype(np.int64),
                "risk": np.frombuffer(patient.risk, dtype=np.float64)[order], "vitals": vitals}
