"""The front doors' one way to the broker: original bytes to vitals.raw (or, for bytes that
are no message, a dead-letter record), acknowledged by the broker before the sender is."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer

from vitalstream.ingest import MAX_MESSAGE_BYTES, Rejection, dead_letter
from vitalstream.settings import Settings


class Publisher(Protocol):
    """What a front door needs from the broker side (a fake in no test: tests use the broker)."""

    async def publish_raw(self, raw: bytes, fmt: str, door: str, key: str = "") -> None: ...

    async def publish_dead_letter(self, raw: bytes, rejection: Rejection, fmt: str, source: str,
                                  received_ms: int) -> None: ...


class RawPublisher:
    """Publishes with acks=all and waits: a sender hears "accepted" only once the message is
    on the broker. Use as ``async with RawPublisher(settings) as publisher``."""

    def __init__(self, settings: Settings) -> None:
        from vitalstream.kafka import producer

        self.settings = settings
        # A dead letter wraps a message of up to MAX_MESSAGE_BYTES in base64 (4/3) plus a header.
        self.producer: AIOKafkaProducer = producer(
            settings, linger_ms=0, max_request_size=2 * MAX_MESSAGE_BYTES + 65_536)

    async def __aenter__(self) -> RawPublisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.producer.stop()

    async def publish_raw(self, raw: bytes, fmt: str, door: str, key: str = "") -> None:
        """The original bytes to vitals.raw; raises a KafkaError when the broker did not take them."""
        headers = [("vitalstream-format", fmt.encode()), ("vitalstream-door", door.encode())]
        await self.producer.send_and_wait(
            self.settings.topic_raw, value=raw, key=key.encode() if key else None, headers=headers)

    async def publish_dead_letter(self, raw: bytes, rejection: Rejection, fmt: str, source: str,
                                  received_ms: int) -> None:
        await self.producer.send_and_wait(
            self.settings.topic_deadletter,
            value=dead_letter(raw, rejection, fmt, source, received_ms))

    async def publish_census(self, record: dict[str, Any]) -> None:
        """A census record (vitalstream/ingest/adt.py) to the census topic, keyed by patient,
        signed with this gateway's key when it has one."""
        from vitalstream.signing import Keyring, KeyringError

        topic, key, value = self.settings.topic_census, str(record["patient_id"]).encode(), orjson.dumps(record)
        try:  # without a gateway key the worker refuses the record (counted, dead-lettered)
            ring = Keyring.for_process(self.settings, "gateway")
        except KeyringError:
            ring = None
        headers = ring.sign(topic, key, value) if ring is not None else None
        await self.producer.send_and_wait(topic, key=key, value=value, headers=headers)
