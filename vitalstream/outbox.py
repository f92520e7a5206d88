"""The at-least-once outbox of the busy stages (``ingest_stage``, ``monitor_stage``).

A stage hands each batch it has read to the outbox as the messages the batch produced
and the offsets that follow it. The outbox keeps one order for every batch:

1. send the batch's messages (retrying while the broker is away);
2. wait for the broker's acknowledgement of every one of them (``acks=all``); if a send
   failed, send this batch and every later one again, in order, so the newest write of a
   key stays the last;
3. only then add the batch's offsets to the commit (``kafka.PendingCommits``: at most
   every ``COMMIT_INTERVAL_S`` under load, at once when everything is settled).

The stage does not wait for step 2 to read and process its next batch: up to
``max_unsettled`` batches may be out, settled oldest first. A crash between 2 and 3
reads the batch again (at least once); nothing is committed that the broker has not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from vitalstream import metrics
from vitalstream.kafka import PendingCommits, consumer_lag

log = logging.getLogger(__name__)

# A message to write: (topic, key, value, partition or None for the key's partition).
Write = tuple[str, "bytes | None", bytes, "int | None"]
# Messages handed to the producer: (topic, partition, messages, acknowledgement).
Sent = tuple[str, int, int, "asyncio.Future[Any]"]
RETRY_S = 0.5


@dataclasses.dataclass(slots=True)
class Unsettled:
    """A batch whose messages are on their way to the broker: its offsets are committed,
    and ``done`` handed to the stage's ``on_settled``, once they are acknowledged."""

    writes: list[Write]
    sent: list[Sent]
    offsets: dict[Any, int]
    done: Any = None


class Outbox:
    """Send, acknowledge, then commit, in order, for one stage.

    ``send`` hands messages to the stage's producer and returns what it sent (it may
    raise KafkaError: the outbox retries); ``on_settled(done)`` counts a settled batch;
    ``on_acknowledged(sent, metadata)`` sees the broker's answer to each send (the monitor
    notes the offsets of its changelog rows there)."""

    def __init__(self, stage: str, topic: str, send: Callable[[list[Write]], Awaitable[list[Sent]]],
                 on_settled: Callable[[Any], None], max_unsettled: int,
                 on_acknowledged: Callable[[list[Sent], list[Any]], None] | None = None) -> None:
        self.stage, self.topic = stage, topic
        self._send, self._on_settled, self._on_acknowledged = send, on_settled, on_acknowledged
        self.max_unsettled = max_unsettled
        self.unsettled: deque[Unsettled] = deque()
        self.to_commit = PendingCommits(stage)  # settled offsets not yet committed
        self.positions: dict[Any, int] = {}  # partition -> next offset, as far as settled

    def __bool__(self) -> bool:
        """Anything not yet acknowledged or committed."""
        return bool(self.unsettled) or bool(self.to_commit)

    async def send(self, writes: list[Write]) -> list[Sent]:
        """Hand ``writes`` to the producer, retrying while the broker is away. A message too
        large for a request is a bug, not an outage: raised."""
        while True:
            try:
                return await self._send(writes)
            except MessageSizeTooLargeError:
                raise
            except KafkaError as exc:
                log.warning("%s: publish failed (%s); retrying", self.stage, type(exc).__name__)
                await asyncio.sleep(RETRY_S)

    async def put(self, writes: list[Write], offsets: dict[Any, int], done: Any = None) -> None:
        """Send a batch's messages; its ``offsets`` are committed once they are acknowledged."""
        self.unsettled.append(Unsettled(writes, await self.send(writes), offsets, done))

    async def send_now(self, writes: list[Write]) -> None:
        """Send ``writes`` and wait for their acknowledgement (no offsets: an alert that
        must be on the broker before the state that records it)."""
        await self._acknowledged([Unsettled(writes, await self.send(writes), {})])

    async def settle(self, source: AIOKafkaConsumer, everything: bool = True) -> None:
        """Settle batches oldest first: wait for their acknowledgements, then commit their
        offsets and count them. Without ``everything``, only the batches already
        acknowledged, and the oldest while more than ``max_unsettled`` are out. Offsets
        refused after a rebalance are read again by the partition's new owner."""
        while self.unsettled:
            oldest = self.unsettled[0]
            if (not everything and len(self.unsettled) <= self.max_unsettled
                    and not all(future.done() for *_, future in oldest.sent)):
                return
            await self._acknowledged(self.unsettled)
            self.unsettled.popleft()
            self.to_commit.add(oldest.offsets)
            self.positions.update(oldest.offsets)
            self._on_settled(oldest.done)
            metrics.CONSUMER_LAG.labels(self.topic).set(consumer_lag(source, self.positions))
        await self.to_commit.commit(source, everything)

    async def _acknowledged(self, batches: Sequence[Unsettled]) -> None:
        """Wait until the broker has acknowledged the first of ``batches``; if a send failed,
        send every one of them again, in order, until it has."""
        first = batches[0]
        while True:
            try:
                metas = await asyncio.gather(*(future for *_, future in first.sent))
                break
            except MessageSizeTooLargeError:
                raise
            except KafkaError as exc:
                log.warning("%s: publish failed (%s); sending the unsettled batches again",
                            self.stage, type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                for batch in batches:
                    batch.sent = await self.send(batch.writes)
        if self._on_acknowledged is not None:
            self._on_acknowledged(first.sent, metas)
