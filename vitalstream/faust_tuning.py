"""One adjustment to faust-streaming that latency needs.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` written into the
code, not a setting. A broker that holds a fetch until that wait expires (tansu does, at
low volume) then adds up to 1.5 s per hop, and a sample crosses two hops
(vitals.raw, vitals) before it is scored: at 5,000 samples/s the p99 target is 100 ms.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 20

_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _create_low_latency_consumer(self: Any, transport: Any) -> Any:
    consumer = _create_worker_consumer(self, transport)
    # Read by the fetcher when the consumer starts, which happens after this returns.
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
    return consumer


def apply() -> None:
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_low_latency_consumer
