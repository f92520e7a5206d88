"""The census at the front doors: HL7 ADT over MLLP and FHIR ``Encounter`` over HTTP become
census records on the ``census`` topic (keyed by patient, signed with the gateway's key
when it has one), which the worker applies in order with the patient's readings.

Answers: HL7 AA once the record is on the broker, AE with ERR (ERR-3 from table 0357, the
reason in ERR-8) for an unknown bed or a message that says no patient or place, AR when the
broker did not take it; FHIR 200, 422 or 503 with an OperationOutcome. A refused message
is dead-lettered with its reason (nothing is lost) and counted in
``vitalstream_gateway_outcomes{outcome="rejected", reason}``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiohttp import web

from vitalstream.gateway import metrics
from vitalstream.gateway.publish import RawPublisher
from vitalstream.ingest import Rejection
from vitalstream.ingest.adt import ERROR_CODES, CensusError, KnownBeds, parse_adt, parse_encounter
from vitalstream.ingest.hl7v2 import hl7_ack

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0  # as VITALSTREAM_GATEWAY_REQUEST_TIMEOUT_S's default


class CensusDoor:
    """``await door.hl7(raw, received_ms)`` -> the ACK; ``door.encounter`` is an aiohttp handler."""

    def __init__(self, publisher: RawPublisher, beds: KnownBeds | None = None) -> None:
        self.publisher = publisher
        self.beds = beds or KnownBeds()

    async def _refuse(self, raw: bytes, door: str, fmt: str, exc: CensusError, received_ms: int) -> None:
        metrics.count(door, "rejected", exc.reason)
        try:
            await asyncio.wait_for(self.publisher.publish_dead_letter(
                raw, Rejection(exc.reason, exc.detail), fmt, door, received_ms), PUBLISH_TIMEOUT_S)
        except Exception as error:  # the sender was told; the door goes on serving
            log.warning("could not dead-letter a census message: %s", type(error).__name__)

    async def hl7(self, raw: bytes, received_ms: int) -> bytes:
        try:
            record = parse_adt(raw, received_ms, self.beds)
        except CensusError as exc:
            await self._refuse(raw, "mllp", "hl7", exc, received_ms)
            return hl7_ack(raw, "AE", str(exc), received_ms, ERROR_CODES.get(exc.reason, "207"))
        try:
            await asyncio.wait_for(self.publisher.publish_census(record), PUBLISH_TIMEOUT_S)
        except Exception as exc:
            log.warning("broker did not take a census message: %s", type(exc).__name__)
            metrics.count("mllp", "refused", "broker_unavailable")
            return hl7_ack(raw, "AR", "broker_unavailable: not stored, resend later", received_ms)
        metrics.count("mllp", "accepted", f"census_{record['event']}")
        return hl7_ack(raw, "AA", "", received_ms)

    async def encounter(self, request: web.Request) -> web.Response:
        from vitalstream.gateway.fhir_http import _error, _fhir_response, operation_outcome

        received_ms = int(time.time() * 1000)
        try:  # a body that never arrives whole is the same 408 as the observation route's
            body = await asyncio.wait_for(request.read(), REQUEST_TIMEOUT_S)
        except TimeoutError:
            return _error(408, "timeout", "timeout", "the body was not received whole in time")
        try:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise CensusError("malformed_adt", "not JSON") from None
            record = parse_encounter(document, received_ms, self.beds)
        except CensusError as exc:
            await self._refuse(body, "fhir", "fhir", exc, received_ms)
            return _error(422, "business-rule" if exc.reason == "unknown_bed" else "invalid", exc.reason, exc.detail)
        try:
            await asyncio.wait_for(self.publisher.publish_census(record), PUBLISH_TIMEOUT_S)
        except Exception as exc:
            log.warning("broker did not take a census message: %s", type(exc).__name__)
            metrics.count("fhir", "refused", "broker_unavailable")
            return _error(503, "transient", "broker_unavailable", "not stored, resend later")
        metrics.count("fhir", "accepted", f"census_{record['event']}")
        return _fhir_response(200, operation_outcome("information", "informational",
                                                     f"census: {record['event']}"))
