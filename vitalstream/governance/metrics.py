"""Prometheus metrics of governance: the audit trail, the kill switch, live quality.
Aggregated, never per patient: labels are modes, reasons, wards, parameters, bands."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

AUDIT_RECORDS = Counter("vitalstream_audit_records", "Audit records written, by type", ["type"])
AUDIT_DUPLICATES = Counter(
    "vitalstream_audit_duplicates_dropped",
    "Audit records not written again because their id is already on the partition (a re-sent batch)")
AUDIT_INTAKE_REFUSED = Counter(
    "vitalstream_audit_intake_refused", "audit.intake messages refused, by reason", ["reason"])
CONTROL_REFUSED = Counter(
    "vitalstream_kill_switch_refused", "Kill-switch instructions refused, by reason", ["reason"])
DEMOGRAPHICS_REFUSED = Counter(
    "vitalstream_demographics_refused", "Demographics messages refused (malformed, implausible age, unknown sex)")
MODE = Gauge("vitalstream_mode", "1 for the worker's default mode (normal or news2_only)", ["mode"])
MODE.labels("normal").set(1)
MODE.labels("news2_only").set(0)
