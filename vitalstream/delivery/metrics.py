"""Prometheus metrics of the station service (its own process, its own /metrics).
Labels are transports, outcomes and message types; never a ward, station or patient."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from vitalstream.metrics import LATENCY_BUCKETS_S

CONNECTIONS = Gauge("vitalstream_station_connections", "Open station connections", ["transport"])
EVENTS = Counter("vitalstream_station_events", "Kafka messages applied to the ward store", ["type", "outcome"])
FRAMES = Counter("vitalstream_station_frames", "Events written to station connections", ["transport"])
SLOW_CLOSED = Counter(
    "vitalstream_station_slow_closed",
    "Connections closed because they fell too far behind (they resume from their cursor)")
REFUSED = Counter(
    "vitalstream_station_refused",
    "Records of alerts or ward.state without a valid worker signature, never shown "
    "(type: alert, bed, export; reason: unsigned, bad_signature, unknown_key, wrong_service)",
    ["type", "reason"])
SIGNINS = Counter("vitalstream_station_signins", "Sign-in attempts by outcome (signed_in, failed, throttled)",
                  ["outcome"])
AUTH_FAILURES = Counter("vitalstream_station_auth_failures", "Requests with a missing or unknown token")
ACKS = Counter("vitalstream_station_acks", "Acknowledgements received from stations", ["outcome"])
FANOUT_LATENCY = Histogram(
    "vitalstream_station_fanout_seconds",
    "From an event's Kafka timestamp to its write on a station connection",
    buckets=LATENCY_BUCKETS_S,
)
