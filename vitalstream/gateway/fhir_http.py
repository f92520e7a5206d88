"""FHIR R4 over HTTP: POST an Observation or a Bundle, published to vitals.raw.

Routes: ``POST /fhir``, ``/fhir/Observation`` and ``/fhir/Bundle`` (application/fhir+json
or application/json); ``GET /metrics`` (Prometheus) and ``GET /health``.

Answers: 200 with an OperationOutcome (information) for an accepted Observation or
collection Bundle, 200 with a batch-response or transaction-response Bundle for batch and
transaction Bundles; on error an OperationOutcome: 400 (not JSON, not valid FHIR), 415
(media type), 422 (valid FHIR that cannot become samples), 413 (too large, not taken), 503
(broker unavailable, not taken: resend), 405 for another method on a FHIR path. Rejected
content (400/422) is on vitals.raw all the same, and ingest dead-letters it with the reason
given here; an empty body (400 empty_message) is not published.

Transport (`security.DoorSecurity`): 401 without a configured bearer token; 408 for a body
not received whole within ``request_timeout_s``; optional TLS and mutual TLS; idle or
slowloris connections closed after ``idle_timeout_s``; at most ``max_connections`` open
(more are closed at once). ``/health`` and ``/metrics`` carry no patient data and need no
token (probes and Prometheus). The HTTP server's access log is off and its protocol-error
log keeps only the exception's class (aiohttp's text holds the raw request bytes).

    server = await FhirServer(fhir_app(publisher), "127.0.0.1", 8080).start()
    ...
    await server.close()
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
from vitalstream.gateway.security import DoorSecurity, http_server_logger
from vitalstream.ingest import MAX_AHEAD_MS, MAX_MESSAGE_BYTES, IngestResult, parse_raw

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
    "future_time": (422, "business-rule"),
    "no_observations": (422, "not-found"), "too_large": (413, "too-costly"),
    # FHIR issue type "extension": a modifierExtension was not recognised.
    "unknown_modifier": (422, "extension"), "empty_message": (400, "required"),
}
FHIR_PATHS = ("/fhir", "/fhir/Observation", "/fhir/Bundle")
_BOM = b"\xef\xbb\xbf"
_PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher", Publisher)
_CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock_ms", Callable[[], int])
_TIMEOUT: web.AppKey[float] = web.AppKey("publish_timeout_s", float)
_SECURITY: web.AppKey[DoorSecurity] = web.AppKey("security", DoorSecurity)
_MAX_AHEAD: web.AppKey[int] = web.AppKey("max_ahead_ms", int)


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
        document = orjson.loads(body.removeprefix(_BOM))
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


def _unauthorized() -> web.Response:
    metrics.count(DOOR, "refused", "unauthorized")
    response = _error(401, "login", "unauthorized", "send Authorization: Bearer <token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="vitalstream"'
    return response


async def receive(request: web.Request) -> web.Response:
    publisher = request.app[_PUBLISHER]
    security = request.app[_SECURITY]
    received_ms = request.app[_CLOCK]()
    if not security.token_ok(request.headers.get("Authorization")):
        return _unauthorized()
    if request.content_type not in ACCEPTED_MEDIA_TYPES:
        metrics.count(DOOR, "refused", "media_type")
        return _error(415, "not-supported", "media_type",
                      f"{request.content_type!r}; send {FHIR_JSON}")
    try:
        body = await asyncio.wait_for(request.read(), security.request_timeout_s)
    except web.HTTPRequestEntityTooLarge:
        metrics.count(DOOR, "refused", "too_large")
        return _error(413, "too-costly", "too_large", f"body exceeds {MAX_MESSAGE_BYTES} bytes")
    except TimeoutError:
        metrics.count(DOOR, "refused", "timeout")
        response = _error(408, "timeout", "timeout",
                          f"the body was not received whole within {security.request_timeout_s:g} s")
        response.force_close()  # the rest of a half-sent body must not be read as a next request
        return response
    result = parse_raw(body, received_ms, "fhir", request.app[_MAX_AHEAD])
    if result.rejection is not None and result.rejection.reason == "too_large":
        metrics.count(DOOR, "refused", "too_large")
        return _error(413, "too-costly", "too_large", result.rejection.detail)
    if result.rejection is not None and result.rejection.reason == "empty_message":
        metrics.count(DOOR, "refused", "empty_message")  # nothing to publish
        return _error(400, "required", "empty_message", "nothing received: the body is empty")
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


async def method_not_allowed(request: web.Request) -> web.Response:
    """Any method but POST on a FHIR path: 405 with an OperationOutcome (this door only takes
    data; it serves no search or read), and the Allow header HTTP requires."""
    response = _error(405, "not-supported", "method_not_allowed",
                      f"{request.method} {request.path}: this door only takes POST")
    response.headers["Allow"] = "POST"
    return response


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
             publish_timeout_s: float = PUBLISH_TIMEOUT_S, security: DoorSecurity | None = None,
             max_ahead_ms: int = MAX_AHEAD_MS, census: Any = None) -> web.Application:
    # One byte over the limit still reads, so parse_raw reports the size; more is refused early.
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 1)
    app[_PUBLISHER] = publisher
    app[_CLOCK] = clock_ms or (lambda: int(time.time() * 1000))
    app[_TIMEOUT] = publish_timeout_s
    app[_SECURITY] = security or DoorSecurity()
    app[_MAX_AHEAD] = max_ahead_ms
    for path in FHIR_PATHS:
        app.router.add_post(path, receive)
        app.router.add_route("*", path, method_not_allowed)
    for path in ("/fhir/Observation/{id}", "/fhir/Bundle/{id}"):  # read, update, delete: not here
        app.router.add_route("*", path, method_not_allowed)
    if census is not None:  # a gateway.census.CensusDoor: admissions, transfers, discharges
        async def encounter(request: web.Request) -> web.Response:
            # The census changes who is monitored where: the same token as observations.
            if not request.app[_SECURITY].token_ok(request.headers.get("Authorization")):
                return _unauthorized()
            return await census.encounter(request)

        app.router.add_post("/fhir/Encounter", encounter)
    app.router.add_get("/metrics", prometheus_metrics)
    app.router.add_get("/health", health)
    return app


class _Refuse(asyncio.Protocol):
    """A connection over the cap: told so, and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                        b"Retry-After: 5\r\nContent-Length: 0\r\n\r\n")
        transport.close()


class FhirServer:
    """An HTTP(S) server for an app of this module (or `metrics_app`), with the door's
    transport rules: TLS from ``security``, idle connections closed after
    ``security.idle_timeout_s`` (aiohttp's keep-alive timer also runs before the first
    request, so headers sent byte by byte are cut off too), at most
    ``security.max_connections`` open, no access log, quiet protocol errors."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 8080,
                 security: DoorSecurity | None = None) -> None:
        self.app, self.host, self.port = app, host, port
        self.security = security or (app[_SECURITY] if _SECURITY in app else DoorSecurity())
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    keepalive_timeout=self.security.idle_timeout_s,
                                    logger=http_server_logger())
        self.server: asyncio.Server | None = None

    async def start(self) -> FhirServer:
        await self.runner.setup()
        handler = self.runner.server
        assert handler is not None
        door = DOOR if _SECURITY in self.app else "metrics"

        def connection() -> asyncio.BaseProtocol:
            if len(handler.connections) >= self.security.max_connections:
                metrics.GATEWAY_CONNECTIONS_REFUSED.labels(door, "too_many_connections").inc()
                return _Refuse()
            return handler()

        tls = self.security.ssl_context
        self.server = await asyncio.get_running_loop().create_server(
            connection, self.host, self.port, ssl=tls,
            ssl_handshake_timeout=self.security.request_timeout_s if tls else None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()
        if self.server is not None:
            await self.server.wait_closed()
