"""Fault tests: the real broker and real worker processes, faults injected from outside
(SIGKILL, SIGSTOP, a second worker, bursts, hostile bytes, TLS). Shared helpers live in
faultkit.py beside this file."""

from __future__ import annotations

import asyncio

import pytest

from vitalstream.broker import EmbeddedBroker
from vitalstream.kafka import ensure_topics
from vitalstream.settings import Settings


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    """Settings for a fresh broker with vitalstream's topics created."""
    configured = Settings(kafka_bootstrap=broker.bootstrap)
    asyncio.run(ensure_topics(configured))
    return configured
