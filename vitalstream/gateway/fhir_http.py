"""FHIR R4 over HTTP: POST an Observation or a Bundle, published to vitals.raw.

Routes: ``POST /fhir``, ``/fhir/Observation`` and ``/fhir/Bundle`` (application/fhir+json
or application/json); ``GET /metrics`` (Prometheus) and ``GET /health``.

Answers: 200 with an OperationOutcome (information) for an accepted Observation or
collection Bundle, 200 with a batch-response or transaction-response Bundle for batch and
transaction Bundles; on error an OperationOutcome: 400 (not JSON, not valid FHIR), 415
(media type), 422 (valid FHIR that cannot become samples), 413 (too large, not taken), 503
(broker unavailable, not taken: resend). Rejected content (400/422) is on vitals.raw all
the same, and ingest dead-letters it with the reason given here.

    app = fhir_app(publisher)
    runner = web.AppRunner(app); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 8080).start()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitalstream.gateway import metrics
from vitalstream.gateway.publish import Publisher
from vitalstream.ingest import MAX_MESSAGE_BYTES, IngestResult, parse_raw

log = logging.getLogger(__name__)

DOOR = "fhir"
PUBLISH_TIMEOUT_S = 15.0
FHIR_JSON = "application/fhir+json"
ACCEPTED_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
# Reason -> (HTTP status, OperationOutcome issue type).
REASON_STATUS: dict[str, tuple[int, str]] = {
    "not_json": (400, "structure"), "invalid_fhir": (400, "structure"),
    "unsupported_resource": (422, "not-supported"), "missing_patient": (422, "required"),
    "bad_timestamp": (422, "value"), "bad_value": (422, "value"), "bad_unit": (422, "value"),
    "missing_unit": (422, "required"), "implausible_value": (422, "business-rule"),
    "no_observations": (422, "not-found"), "too_large": (413, "too-costly"),
}
_PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher", Publisher)
_CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock_ms", Callable[[], int])
_TIMEOUT: web.AppKey[float] = web.AppKey("publish_timeout_s", float)


def operation_outcome(severity: str, code: str, diagnostics: str, reason: str = "") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if reason:
        issue["details"] = {"coding": [{"system": "urn:vitalstream:ingest-reason", "code": reason}],
                            "text": reason}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _fhir_response(status: int, resource: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(resource), content_type=FHIR_JSON)


def _error(status: int, code: str, reason: str, detail: str) -> web.Response:
    return _fhir_response(status, operation_outcome("error", code, f"{reason}: {detail}", reason))


def _accepted(body: bytes, result: IngestResult) -> web.Response:
    summary = (f"accepted: {len(result.samples)} samples, {len(result.technical)} technical "
               f"events, {result.ignored} observations ignored")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = {}
    bundle_type = document.get("type") if document.get("resourceType") == "Bundle" else None
    if bundle_type in ("batch", "transaction"):
        entries = document.get("entry") if isinstance(document.get("entry"), list) else []
        outcome = operation_outcome("information", "informational", summary)
        return _fhir_response(200, {
            "resourceType": "Bundle", "type": f"{bundle_type}-response",
            "entry": [{"response": {"status": "200 OK", "outcome": outcome}} for _ in entries],
        })
    return _fhir_response(200, operation_outcome("information", "informational", summary))


async def receive(request: web.Request) -> web.Response:
    publisher = request.app[_PUBLISHER]
    received_ms = request.app[_CLOCK]()
    if request.content_type not in ACCEPTED_MEDIA_TYPES:
        metrics.count(DOOR, "refused", "media_type")
        return _error(415, "not-supported", "media_type",
                      f"{request.content_type!r}; send {FHIR_JSON}")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.count(DOOR, "refused", "too_large")
        return _error(413, "too-costly", "too_large", f"body exceeds {MAX_MESSAGE_BYTES} bytes")
    result = parse_raw(body, received_ms, "fhir")
    if result.rejection is not None and result.rejection.reason == "too_large":
        metrics.count(DOOR, "refused", "too_large")
        return _error(413, "too-costly", "too_large", result.rejection.detail)
    try:
        await asyncio.wait_for(publisher.publish_raw(body, "fhir", DOOR, key=result.patient_id),
                               request.app[_TIMEOUT])
    except Exception as exc:
        log.warning("broker did not take a FHIR message: %s", type(exc).__name__)
        metrics.count(DOOR, "refused", "broker_unavailable")
        return _error(503, "transient", "broker_unavailable", "not stored, resend later")
    if result.rejection is not None:
        metrics.count(DOOR, "rejected", result.rejection.reason)
        status, code = REASON_STATUS.get(result.rejection.reason, (422, "processing"))
        return _error(status, code, result.rejection.reason, result.rejection.detail)
    metrics.count(DOOR, "accepted", samples=len(result.samples))
    return _accepted(body, result)


async def prometheus_metrics(request: web.Request) -> web.Response:
    del request
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def health(request: web.Request) -> web.Response:
    del request
    return web.json_response({"status": "ok"})


def metrics_app() -> web.Application:
    """Only /metrics and /health (for a door without HTTP of its own, e.g. MLLP)."""
    app = web.Application()
    app.router.add_get("/metrics", prometheus_metrics)
    app.router.add_get("/health", health)
    return app


def fhir_app(publisher: Publisher, clock_ms: Callable[[], int] | None = None,
             publish_timeout_s: float = PUBLISH_TIMEOUT_S, census: Any = None) -> web.Application:
    # One byte over the limit still reads, so parse_raw reports the size; more is refused early.
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 1)
    app[_PUBLISHER] = publisher
    app[_CLOCK] = clock_ms or (lambda: int(time.time() * 1000))
    app[_TIMEOUT] = publish_timeout_s
    for path in ("/fhir", "/fhir/Observation", "/fhir/Bundle"):
        app.router.add_post(path, receive)
    if census is not None:  # a gateway.census.CensusDoor: admissions, transfers, discharges
        app.router.add_post("/fhir/Encounter", census.encounter)
    app.router.add_get("/metrics", prometheus_metrics)
    app.router.add_get("/health", health)
    return app
