"""Validation: replay patients through the live pipeline and report how early and how
often it alerted, from the alerts and bed states the stream really published.

- `labels`: patients, their observed time and labelled events (simulator, PhysioNet 2019).
- `matching`: new alerts and naive NEWS2 triggers matched to events; every figure (pure).
- `stream`: what was read from the ``alerts`` and ``ward.state`` topics, kept compactly.
- `live`: the shell: broker, worker, replay, collection.
- `report`: report.json, report.html and PNGs.
- `run`: one run end to end (`validate`).

See docs/validation.md.
"""

from vitalstream.validation.labels import Event, Labels, PatientSpan
from vitalstream.validation.matching import (
    NEW_ALERT_STATUSES,
    Trigger,
    compare_with_naive,
    naive_news2_triggers,
    new_alert_triggers,
    policy_figures,
)
from vitalstream.validation.report import build_report, write_report
from vitalstream.validation.run import Replayable, open_recording, open_scenario, validate
from vitalstream.validation.stream import StreamCollector

__all__ = ["NEW_ALERT_STATUSES", "Event", "Labels", "PatientSpan", "Replayable", "StreamCollector",
           "Trigger", "build_report", "compare_with_naive", "naive_news2_triggers", "new_alert_triggers",
           "open_recording", "open_scenario", "policy_figures", "validate", "write_report"]
