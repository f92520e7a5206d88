"""HL7 v2 over MLLP: read framed messages, answer each with an HL7 ACK, publish to vitals.raw.

Frames are ``<VT> message <FS><CR>``. Messages on one connection are handled in order and
each is answered before the next is read (HL7 original-mode acknowledgement):

- AA: parsed into samples or technical events, and on the broker;
- AE: the content was rejected (the reason is in MSA-3 and ERR-8); the bytes are on the
  broker all the same, and ingest dead-letters them with that reason;
- AR: not taken: broker unavailable or message too large (the sender keeps it and resends),
  a message type this door does not read (`not_accepted_here`: e.g. ADT, dead-lettered so
  it is not lost), or an empty frame (nothing received).

A batch (FHS/BHS ... BTS/FTS) in one frame is taken message by message, and answered in one
frame by a batch holding an ACK per message (`hl7_batch_ack`). Bytes outside any frame are
dead-lettered (``mllp_framing``) instead of dropped.

Transport (`security.DoorSecurity`): TLS when a certificate is configured (MLLP over TLS),
a source allow-list, a connection cap, and idle sessions closed after
``idle_timeout_s`` without a complete frame (the bytes of a frame left unfinished are
dead-lettered). None of this logs a peer's bytes or a patient identifier.

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
from vitalstream.gateway.security import DoorSecurity
from vitalstream.ingest import MAX_AHEAD_MS, MAX_MESSAGE_BYTES, Rejection, parse_raw
from vitalstream.ingest.adt import is_adt
from vitalstream.ingest.hl7v2 import (
    MLLP_END,
    MLLP_START,
    hl7_ack,
    hl7_batch_ack,
    is_batch,
    message_type,
    split_batch,
)

log = logging.getLogger(__name__)

DOOR = "mllp"
PUBLISH_TIMEOUT_S = 15.0
# Reader buffer: a frame larger than this cannot be framed at all and closes the connection.
READ_LIMIT_BYTES = 4 * MAX_MESSAGE_BYTES

# Dead-letter reason -> HL7 table 0357 error code for ERR-3. An implausible value is a
# number of the right type that no patient can have (a unit or mapping error): 102 "data
# type error" is the data error the table has for a value the field cannot hold; 207
# "application internal error" would blame vitalstream, and 103 is for coded table values.
ERROR_CODES: dict[str, str] = {
    "not_hl7": "100", "malformed_hl7": "102", "unsupported_message": "200",
    "missing_patient": "101", "no_observations": "101", "bad_timestamp": "102",
    "bad_value": "102", "bad_unit": "103", "missing_unit": "101", "implausible_value": "102",
    "future_time": "102", "empty_message": "100",
}
# The message types (MSH-9 code, trigger) this door reads; anything else is answered AR.
ACCEPTED_MESSAGE_TYPES: frozenset[tuple[str, str]] = frozenset({("ORU", "R01")})


def not_accepted_here(raw: bytes, accepted: frozenset[tuple[str, str]] = ACCEPTED_MESSAGE_TYPES,
                      ) -> tuple[Rejection, str] | None:
    """(rejection, ERR-3 code) for an HL7 message whose type this door does not read, else
    None (also for text with no MSH: the content check answers that, AE not_hl7).
    HL7 v2 answers an unsupported MSH-9 with AR: 200 unsupported message type, or 201
    unsupported event code when the message code is read here with another trigger."""
    kind = message_type(raw)
    if kind is None or kind in accepted:
        return None
    code, trigger = kind
    error = "201" if code in {known for known, _ in accepted} else "200"
    wanted = ", ".join("^".join(pair) for pair in sorted(accepted))
    return Rejection("unsupported_message", f"message type {code}^{trigger} is not accepted here "
                     f"(this door reads {wanted})"), error


def now_ms() -> int:
    return int(time.time() * 1000)


class MllpServer:
    """The MLLP front door. ``publisher`` is a started `RawPublisher`; ``port`` 0 picks a free port."""

    def __init__(self, publisher: Publisher, host: str = "127.0.0.1", port: int = 2575,
                 clock_ms: Callable[[], int] = now_ms,
                 publish_timeout_s: float = PUBLISH_TIMEOUT_S,
                 security: DoorSecurity | None = None, max_ahead_ms: int = MAX_AHEAD_MS,
                 census: Any = None) -> None:
        self.publisher = publisher
        self.census = census  # a gateway.census.CensusDoor: ADT messages go to the census
        self.publish_timeout_s = publish_timeout_s
        self.host = host
        self.port = port
        self.clock_ms = clock_ms
        self.security = security or DoorSecurity()
        self.max_ahead_ms = max_ahead_ms
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> MllpServer:
        tls = self.security.ssl_context
        self.server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=READ_LIMIT_BYTES, ssl=tls,
            ssl_handshake_timeout=self.security.request_timeout_s if tls else None)
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
        refusal = ("not_allowed" if not self.security.source_ok(peer[0] if isinstance(peer, tuple) else "")
                   else "too_many_connections" if self.connections >= self.security.max_connections
                   else "")
        if refusal:
            metrics.GATEWAY_CONNECTIONS_REFUSED.labels(DOOR, refusal).inc()
            writer.close()
            return
        self.connections += 1
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.readuntil(MLLP_END), self.security.idle_timeout_s)
                except TimeoutError:  # idle, or a frame that never ends: its bytes are kept
                    metrics.GATEWAY_CONNECTIONS_REFUSED.labels(DOOR, "idle_timeout").inc()
                    reader.feed_eof()
                    await self._junk(await reader.read(), source)
                    return
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
            self.connections -= 1
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
        """One frame -> its answer: an ACK, or for a batch a batch of ACKs."""
        if is_batch(raw):
            messages = split_batch(raw)
            if not messages:
                metrics.count(DOOR, "refused", "empty_message")
                return hl7_ack(b"", "AR", "empty_message: the batch holds no message",
                               self.clock_ms(), ERROR_CODES["empty_message"])
            return hl7_batch_ack(raw, [await self.handle_message(m) for m in messages], self.clock_ms())
        return await self.handle_message(raw)

    async def handle_message(self, raw: bytes) -> bytes:
        """One message -> its ACK, after publishing it."""
        received_ms = self.clock_ms()
        if not raw.strip(b" \t\r\n"):
            metrics.count(DOOR, "refused", "empty_message")
            return hl7_ack(raw, "AR", "empty_message: nothing received (an empty frame)", received_ms,
                           ERROR_CODES["empty_message"])
        if len(raw) > MAX_MESSAGE_BYTES:
            metrics.count(DOOR, "refused", "too_large")
            return hl7_ack(raw, "AR", f"too_large: {len(raw)} bytes > {MAX_MESSAGE_BYTES}", received_ms)
        if self.census is not None and is_adt(raw):
            return await self.census.hl7(raw, received_ms)
        refusal = not_accepted_here(raw)
        if refusal is not None:
            return await self._refuse(raw, *refusal, received_ms)
        result = parse_raw(raw, received_ms, "hl7", self.max_ahead_ms)
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

    async def _refuse(self, raw: bytes, rejection: Rejection, error_code: str, received_ms: int) -> bytes:
        """AR for a message this door does not read; its bytes go to the dead-letter topic
        (not to vitals.raw), so that nothing sent here is lost silently."""
        try:
            await asyncio.wait_for(self.publisher.publish_dead_letter(
                raw, rejection, "hl7", DOOR, received_ms), self.publish_timeout_s)
        except Exception as exc:  # the sender is told AR either way, and keeps the message
            log.warning("could not dead-letter a refused HL7 message: %s", type(exc).__name__)
            metrics.count(DOOR, "refused", "broker_unavailable")
        else:
            metrics.count(DOOR, "deadlettered", rejection.reason)
        return hl7_ack(raw, "AR", f"{rejection.reason}: {rejection.detail}", received_ms, error_code)
