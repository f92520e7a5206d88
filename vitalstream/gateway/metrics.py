"""Prometheus counters of the front doors. Labels are the door, the outcome and the reason
code, all from small closed sets: never a patient identifier.

Every message a door receives is counted once in ``vitalstream_gateway_messages`` and once
in ``vitalstream_gateway_outcomes`` with one of:

- ``accepted``: parsed into samples or technical events, published to vitals.raw;
- ``rejected``: the sender was told why (HL7 AE, HTTP 4xx) and the bytes were published to
  vitals.raw, where ingest dead-letters them with the same reason;
- ``deadlettered``: bytes that are no message at all (outside MLLP frames), or a message
  type the door does not read (HL7 AR), written straight to vitals.deadletter;
- ``refused``: not taken (broker unavailable, too large, an empty frame); the sender keeps
  and resends it.
"""

from __future__ import annotations

from prometheus_client import Counter

OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "deadlettered", "refused")

GATEWAY_MESSAGES = Counter(
    "vitalstream_gateway_messages", "Messages received by a gateway front door", ["door"]
)
GATEWAY_OUTCOMES = Counter(
    "vitalstream_gateway_outcomes", "Where each received message went", ["door", "outcome", "reason"]
)
GATEWAY_SAMPLES = Counter(
    "vitalstream_gateway_samples", "Canonical samples in the messages a door accepted", ["door"]
)


def count(door: str, outcome: str, reason: str = "", samples: int = 0) -> None:
    """Count one received message and its outcome."""
    GATEWAY_MESSAGES.labels(door).inc()
    GATEWAY_OUTCOMES.labels(door, outcome, reason).inc()
    if samples:
        GATEWAY_SAMPLES.labels(door).inc(samples)
GATEWAY_CONNECTIONS_REFUSED = Counter(
    "vitalstream_gateway_connections_refused", "Connections a door closed before any message: "
    "source not allowed, too many connections, idle or too slow", ["door", "reason"]
)
