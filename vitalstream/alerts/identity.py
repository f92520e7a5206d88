"""Stable alert identifiers.

An id is a hash of what defines the condition: the patient, the condition (clinical, or
a technical kind and parameter), its priority and the device time it started. No clock
and no counter go in, so a worker that re-processes the same samples after a restart
publishes the same id, and subscribers recognise the redelivery.

>>> alert_id("p1", "clinical", "high", 1773569700000) == alert_id("p1", "clinical", "high", 1773569700000)
True
>>> alert_id("p1", "clinical", "high", 1773569700000) == alert_id("p1", "clinical", "medium", 1773569700000)
False
"""

from __future__ import annotations

import hashlib


def alert_id(patient_id: str, condition: str, priority: str, started_ms: int) -> str:
    """``al-`` and 16 hex digits; the patient id cannot be read back from it."""
    key = f"{patient_id}\x1f{condition}\x1f{priority}\x1f{int(started_ms)}".encode()
    return "al-" + hashlib.blake2b(key, digest_size=8).hexdigest()
