"""HL7 v2 over MLLP: read framed messages, answer each with an HL7 ACK, publish to vitals.raw.

Frames are ``<VT> message <FS><CR>``. Messages on one connection are handled in order and
each is answered before the next is read (HL7 original-mode acknowledgement):

- AA: parsed into samples or technical events, and on the broker;
- AE: the content was rejected (the reason is in MSA-3 and ERR-8); the bytes are on the
  broker all the same, and ingest dead-letters them with that reason;
- AR: not taken (broker unavailable, message too large): the sender keeps it and resends.

Bytes outside any frame are dead-lettered (``mllp_framing``) instead of dropped.

    server = MllpServer(publisher, port=2575)
    await server.start()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from vitalstream.gateway import metrics
from vitalstream.gateway.publish import Publisher
from vitalstream.ingest import MAX_MESSAGE_BYTES, Rejection, parse_raw
from vitalstream.ingest.adt import is_adt
from vitalstream.ingest.hl7v2 import MLLP_END, MLLP_START, hl7_ack

log = logging.getLogger(__name__)

DOOR = "mllp"
PUBLISH_TIMEOUT_S = 15.0
# Reader buffer: a frame larger than this cannot be framed at all and closes the connection.
READ_LIMIT_BYTES = 4 * MAX_MESSAGE_BYTES

# Dead-letter reason -> HL7 table 0357 error code for ERR-3.
ERROR_CODES: dict[str, str] = {
    "not_hl7": "102", "malformed_hl7": "102", "unsupported_message": "200",
    "missing_patient": "101", "no_observations": "101", "bad_timestamp": "102",
    "bad_value": "102", "bad_unit": "103", "missing_unit": "101", "implausible_value": "207",
}


def now_ms() -> int:
    return int(time.time() * 1000)


class MllpServer:
    """The MLLP front door. ``publisher`` is a started `RawPublisher`; ``port`` 0 picks a free port."""

    def __init__(self, publisher: Publisher, host: str = "127.0.0.1", port: int = 2575,
                 clock_ms: Callable[[], int] = now_ms,
                 publish_timeout_s: float = PUBLISH_TIMEOUT_S, census: Any = None) -> None:
        self.publisher = publisher
        self.census = census  # a gateway.census.CensusDoor: ADT messages go to the census
        self.publish_timeout_s = publish_timeout_s
        self.host = host
        self.port = port
        self.clock_ms = clock_ms
        self.server: asyncio.Server | None = None

    async def start(self) -> MllpServer:
        self.server = await asyncio.start_server(self._connection, self.host, self.port,
                                                 limit=READ_LIMIT_BYTES)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def serve_forever(self) -> None:
        assert self.server is not None
        await self.server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = f"mllp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "mllp"
        try:
            while True:
                try:
                    chunk = await reader.readuntil(MLLP_END)
                except asyncio.IncompleteReadError as exc:  # connection closed
                    await self._junk(exc.partial, source)
                    return
                except asyncio.LimitOverrunError:
                    metrics.count(DOOR, "refused", "too_large")
                    writer.write(MLLP_START + hl7_ack(b"", "AR", "too_large: frame exceeds "
                                 f"{READ_LIMIT_BYTES} bytes", self.clock_ms()) + MLLP_END)
                    await writer.drain()
                    return
                start = chunk.rfind(MLLP_START)
                await self._junk(chunk[:start] if start >= 0 else chunk, source)
                if start < 0:
                    continue
                ack = await self.handle(chunk[start + 1:-len(MLLP_END)])
                writer.write(MLLP_START + ack + MLLP_END)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _junk(self, data: bytes, source: str) -> None:
        """Bytes that belong to no frame: dead-lettered, unless only whitespace."""
        if not data.strip(b" \t\r\n\x1c"):
            return
        try:
            await asyncio.wait_for(self.publisher.publish_dead_letter(data, Rejection("mllp_framing", "bytes outside an "
                                   "MLLP frame"), "hl7", source, self.clock_ms()), self.publish_timeout_s)
        except Exception as exc:  # logged, counted: the door must go on serving
            log.warning("could not dead-letter %d unframed bytes: %s", len(data), type(exc).__name__)
            metrics.count(DOOR, "refused", "broker_unavailable")
            return
        metrics.count(DOOR, "deadlettered", "mllp_framing")

    async def handle(self, raw: bytes) -> bytes:
        """One framed message -> its ACK, after publishing it."""
        received_ms = self.clock_ms()
        if len(raw) > MAX_MESSAGE_BYTES:
            metrics.count(DOOR, "refused", "too_large")
            return hl7_ack(raw, "AR", f"too_large: {len(raw)} bytes > {MAX_MESSAGE_BYTES}", received_ms)
        if self.census is not None and is_adt(raw):
            return await self.census.hl7(raw, received_ms)
        result = parse_raw(raw, received_ms, "hl7")
        try:
            await asyncio.wait_for(self.publisher.publish_raw(raw, "hl7", DOOR, key=result.patient_id),
                                   self.publish_timeout_s)
        except Exception as exc:
            log.warning("broker did not take an HL7 message: %s", type(exc).__name__)
            metrics.count(DOOR, "refused", "broker_unavailable")
            return hl7_ack(raw, "AR", "broker_unavailable: not stored, resend later", received_ms)
        if result.rejection is not None:
            metrics.count(DOOR, "rejected", result.rejection.reason)
            return hl7_ack(raw, "AE", f"{result.rejection.reason}: {result.rejection.detail}",
                           received_ms, ERROR_CODES.get(result.rejection.reason, "207"))
        metrics.count(DOOR, "accepted", samples=len(result.samples))
        return hl7_ack(raw, "AA", "", received_ms)
