"""Real alert and bed-state messages for the delivery tests, made by the pure monitor and
alert policy (no worker, no broker): an hour of minute-by-minute readings of a patient
whose RR climbs 16 -> 28, SpO2 falls 97 -> 90 and HR rises 80 -> 125 (NEWS2 0 -> 11)."""

from __future__ import annotations

from typing import Any

from vitalstream.alerts import AlertPolicy
from vitalstream.monitor import Monitor
from vitalstream.samples import sample_from_dict

T0_MS = 1_773_569_700_000  # 2026-03-15 10:15 UTC


def readings(patient_id: str, ward: str, bed: str, minute: int, t_ms: int) -> list[dict[str, Any]]:
    frac = minute / 59
    values = {"heart_rate": 80 + 45 * frac, "resp_rate": 16 + 12 * frac, "spo2": 97 - 7 * frac,
              "systolic_bp": 120 - 20 * frac, "temperature": 37.0 + 1.6 * frac,
              "consciousness": "A", "on_oxygen": False}
    return [{"patient_id": patient_id, "ward": ward, "bed": bed, "parameter": name, "value": value,
             "device_time_ms": t_ms, "source": f"monitor-{bed}"} for name, value in values.items()]


def deteriorating(patient_id: str, ward: str, bed: str, t0_ms: int = T0_MS,
                  ack_by: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(alert messages, bed-state messages) in publication order; with ``ack_by`` the last
    alert is acknowledged at the end."""
    monitor = Monitor(AlertPolicy(), bed_state_interval_s=600)
    alerts: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    for minute in range(60):
        t_ms = t0_ms + minute * 60_000
        samples = [sample_from_dict({**r, "ingest_time_ms": t_ms})
                   for r in readings(patient_id, ward, bed, minute, t_ms)]
        result = monitor.process(samples)
        alerts.extend(a.to_dict() for a in result.alerts)
        states.extend(monitor.bed_states(result.assessments))
    if ack_by:
        last = alerts[-1]
        alerts.extend(a.to_dict() for a in monitor.acknowledge(patient_id, last["alert_id"], ack_by,
                                                               t0_ms + 60 * 60_000))
    return alerts, states
