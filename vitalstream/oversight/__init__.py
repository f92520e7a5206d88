"""Human oversight of alerts: who is called, who answered, what is snoozed, care goals.

    from vitalstream.oversight import OversightConfig, OversightDesk
    desk = OversightDesk(OversightConfig.default())

Pure (time is an argument); the worker wires it to alert transitions, control messages
and a timer (``monitor_stage``), never to readings. docs/station.md explains it for the
charge nurse and for the engineer who configures the chains.
"""

from vitalstream.oversight.answers import ACTED, NO_ACTION, REASONS, Refused, check_answer
from vitalstream.oversight.config import OversightConfig, OversightConfigError
from vitalstream.oversight.desk import OversightDesk, PatientOversight, attention_order, check_actor

__all__ = [
    "ACTED",
    "NO_ACTION",
    "REASONS",
    "OversightConfig",
    "OversightConfigError",
    "OversightDesk",
    "PatientOversight",
    "Refused",
    "attention_order",
    "check_actor",
    "check_answer",
]
