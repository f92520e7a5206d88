"""What a clinician answers after acknowledging an alert: reviewed and acted, or reviewed
and no action, as reason codes (free text only with ``other``).

>>> check_answer({"reason": "physician_informed"})
('physician_informed', True, '')
>>> check_answer({"reason": "other", "text": "family at bedside, patient anxious"})[1]
False
>>> check_answer({"reason": "because"})
Traceback (most recent call last):
...
vitalstream.oversight.answers.Refused: unknown_reason
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACTED: tuple[str, ...] = ("rapid_response_called", "physician_informed", "treatment_changed",
                          "observations_increased")
NO_ACTION: tuple[str, ...] = ("expected_or_known", "artefact_or_equipment", "comfort_care", "other")
REASONS: tuple[str, ...] = (*ACTED, *NO_ACTION)
# Words a charge nurse reads on the board and in the report.
REASON_TEXT: dict[str, str] = {
    "rapid_response_called": "rapid response called", "physician_informed": "physician informed",
    "treatment_changed": "treatment changed", "observations_increased": "observations increased",
    "expected_or_known": "expected or known", "artefact_or_equipment": "artefact or equipment",
    "comfort_care": "patient on comfort care", "other": "other",
}
MAX_TEXT_CHARS = 200


class Refused(ValueError):
    """A control message that changes nothing; the message is the reason code (counted)."""


def check_answer(record: Mapping[str, Any]) -> tuple[str, bool, str]:
    """(reason, acted, text) of an answer, or ``Refused``: an unknown reason, or ``other``
    without a text saying what it was."""
    reason = record.get("reason")
    if reason not in REASONS:
        raise Refused("unknown_reason")
    text = " ".join(str(record.get("text") or "").split())[:MAX_TEXT_CHARS]
    if reason == "other" and not text:
        raise Refused("other_needs_text")
    return str(reason), reason in ACTED, text
