"""Alerts nurses can trust: the alert policy, per-patient settings and the composer.

    from vitalstream.alerts import AlertPolicy, Assessment
    policy = AlertPolicy()
    state = policy.new_state()            # one per patient, JSON-able
    alerts = policy.assess(state, assessment)

docs/alerts.md explains the policy for a charge nurse and gives the full rules.
"""

from vitalstream.alerts.composer import clock_time, compose_summary
from vitalstream.alerts.identity import alert_id
from vitalstream.alerts.messages import PRIORITIES, Alert, Assessment
from vitalstream.alerts.policy import AlertPolicy, OpenAlert, PatientAlertState, PolicyConfig
from vitalstream.alerts.settings import PatientSettings, SettingsError, apply_settings

__all__ = [
    "PRIORITIES",
    "Alert",
    "AlertPolicy",
    "Assessment",
    "OpenAlert",
    "PatientAlertState",
    "PatientSettings",
    "PolicyConfig",
    "SettingsError",
    "alert_id",
    "apply_settings",
    "clock_time",
    "compose_summary",
]
