"""Synthetic assessments for the alert tests: a patient whose readings we set minute by
minute, scored exactly as the monitor scores them (NEWS2 from the latest values)."""

from __future__ import annotations

from typing import Any

from vitalstream.alerts import Assessment
from vitalstream.scoring.news2 import news2

T0_MS = 1_773_569_700_000  # 2026-03-15 10:15 UTC
MIN_MS = 60_000

# NEWS2 0: a well adult on air.
WELL: dict[str, Any] = {"resp_rate": 16.0, "spo2": 97.0, "on_oxygen": False, "systolic_bp": 125.0,
                        "heart_rate": 78.0, "consciousness": "A", "temperature": 36.8}


class Patient:
    """One synthetic patient: ``at(minute, **changes)`` is the assessment after a report
    at that minute in which every parameter given (and, by default, every monitored one)
    was measured."""

    def __init__(self, patient_id: str = "p1", ward: str = "4B", bed: str = "12") -> None:
        self.patient_id, self.ward, self.bed = patient_id, ward, bed
        self.values = dict(WELL)
        self.times = dict.fromkeys(WELL, T0_MS)

    def at(self, minute: float, measured: tuple[str, ...] | None = None, risk: float | None = None,
           features: dict[str, float] | None = None, stale: tuple[str, ...] = (),
           spo2_scale: int = 1, factors: list[tuple[str, float]] | None = None,
           **values: Any) -> Assessment:
        t_ms = T0_MS + int(minute * MIN_MS)
        self.values.update(values)
        for name in (measured if measured is not None else (*values, "resp_rate", "spo2", "heart_rate")):
            self.times[name] = t_ms
        observations = {name: (value, self.times[name]) for name, value in self.values.items()
                        if name not in stale}
        scored = {name: value for name, (value, _) in observations.items()}
        scored["spo2_scale"] = spo2_scale
        return Assessment(
            patient_id=self.patient_id, ward=self.ward, bed=self.bed, time_ms=t_ms,
            news2=news2(scored), observations=observations, features=features or {},
            risk=risk, model_version="test-model-1" if risk is not None else None,
            risk_factors=factors or [], stale=list(stale), spo2_scale=spo2_scale,
        )
