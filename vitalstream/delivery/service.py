"""The station service: ward feeds over Server-Sent Events and WebSocket, acknowledgements,
the ward board, and the alerts as FHIR for an EHR. One aiohttp process; the thin shell
around ``StationHub`` (fan-out) and ``WardStore`` (state).

It reads the ``alerts`` and ``ward.state`` topics from the beginning with its own
group-less consumer (every partition), so a restarted service rebuilds every ward's open
alerts and bed states before it answers ``/ready``; this assumes the topics keep at least
the open alerts' lifetime (see docs/station.md on retention). Acknowledgements go to
``alerts.ack``; the monitor answers with an ``acknowledged`` alert, which comes back
through the same feed to every station of the ward.

Routes (all ``/api`` routes need a station token: ``Authorization: Bearer <token>``, or
the board's cookie set by ``POST /session``):

    GET  /               login page          GET  /board          the ward board
    POST /session        token -> cookie     POST /session/end    forget the cookie
    GET  /api/me         station and wards   GET  /api/state      snapshot (JSON)
    GET  /api/stream     SSE feed            GET  /api/ws         WebSocket feed
    POST /api/ack        {"alert_id", "by"}  GET  /api/fhir/Flag  open alerts as FHIR Flags
    GET  /health, /ready, /metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitalstream.delivery import metrics
from vitalstream.delivery.config import Station, StationAccess, StationConfig
from vitalstream.delivery.export import alert_to_fhir_flag
from vitalstream.delivery.feeds import (
    KEEP_ALIVE,
    StationHub,
    Subscriber,
    observe_fanout,
    sse_frame,
    ws_frame,
)
from vitalstream.delivery.store import ALERTS, BED_STATES
from vitalstream.settings import Settings

log = logging.getLogger("vitalstream.station")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
COOKIE = "vitalstream_station"
HEARTBEAT_S = 15.0
KEEP_ALIVE_TICK_S = 5.0
WS_AUTH_TIMEOUT_S = 5.0
MAX_BY_CHARS = 60

HUB_KEY = web.AppKey("hub", StationHub)
_SSE_FRAMES = metrics.FRAMES.labels("sse")
_WS_FRAMES = metrics.FRAMES.labels("ws")
SERVICE_KEY = web.AppKey("service", object)

_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class AckRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StationService:
    """Kafka in and out, and the web application around the hub.

        service = StationService(settings, access, config)
        await service.start()    # consumer, producer, web server; ready once caught up
        await service.wait_closed()
    """

    def __init__(self, settings: Settings, access: StationAccess, config: StationConfig,
                 hub: StationHub | None = None, export: bool = False) -> None:
        self.settings = settings
        self.export = export
        self._export_task: asyncio.Task[None] | None = None
        self.access = access
        self.config = config
        self.hub = hub or StationHub()
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.producer: Any = None
        self._consumer_task: asyncio.Task[None] | None = None
        self._keep_alive_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port = config.port
        self._subscribers: set[Subscriber] = set()

    # -- Kafka -------------------------------------------------------------------------
    async def _consume(self) -> None:
        from aiokafka import TopicPartition

        from vitalstream.kafka import FETCH_MAX_WAIT_MS, consumer

        tags = {self.settings.topic_alerts: ALERTS, self.settings.topic_bed_state: BED_STATES}
        # A short fetch wait: an alert must not sit in the broker for the default 500 ms.
        source = consumer(self.settings, from_beginning=True, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        await source.start()
        try:
            partitions = []
            for topic in tags:
                found = source.partitions_for_topic(topic)
                while not found:
                    await source.topics()  # refreshes metadata
                    found = source.partitions_for_topic(topic)
                    if not found:
                        await asyncio.sleep(0.2)
                partitions.extend(TopicPartition(topic, p) for p in sorted(found))
            source.assign(partitions)
            await source.seek_to_beginning(*partitions)
            end = await source.end_offsets(partitions)
            behind = {tp for tp, offset in end.items() if offset > 0}
            if not behind:
                self.ready.set()
            while True:
                batch = await source.getmany(timeout_ms=200, max_records=2000)
                for tp, records in batch.items():
                    tag = tags[tp.topic]
                    for record in records:
                        self.hub.apply(tag, tp.partition, record.offset, record.value,
                                       record.timestamp / 1000.0 if record.timestamp else 0.0)
                if behind:
                    # The fetch's high watermark too: tansu's ListOffsets answer can stop
                    # short of the last record batch.
                    behind = {tp for tp in behind
                              if await source.position(tp) < max(end[tp], source.highwater(tp) or 0)}
                    if not behind:
                        log.warning("station service caught up: %d wards", len(self.hub.store.wards))
                        self.ready.set()
        finally:
            await source.stop()

    async def _export(self) -> None:
        """Every alert message as a FHIR Flag and an ORU^R40, keyed by ward. Its own
        consumer group commits after publishing: at least once, and the receivers drop
        repeats by Flag id + version or by MSH-10 (both follow the event id)."""
        from vitalstream.delivery.export import alert_to_oru_r40
        from vitalstream.kafka import consumer

        source = consumer(self.settings, self.settings.topic_alerts, group_id=f"{self.settings.app_id}-alert-export",
                          from_beginning=True, enable_auto_commit=False)
        await source.start()
        try:
            while True:
                batch = await source.getmany(timeout_ms=500, max_records=500)
                for records in batch.values():
                    for record in records:
                        try:
                            alert = orjson.loads(record.value)
                            flag = orjson.dumps(alert_to_fhir_flag(alert))
                            message = alert_to_oru_r40(alert)
                        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                            metrics.EVENTS.labels("export", "malformed").inc()
                            continue
                        key = str(alert.get("ward", "")).encode()
                        await self.producer.send(self.config.topic_alerts_fhir, key=key, value=flag)
                        await self.producer.send(self.config.topic_alerts_hl7, key=key, value=message)
                        metrics.EVENTS.labels("export", "published").inc()
                if batch:
                    await self.producer.flush()
                    await source.commit()
        finally:
            await source.stop()

    async def _keep_alive(self) -> None:
        """An SSE comment to each stream idle for ``HEARTBEAT_S`` (proxies close silent
        connections); WebSockets have aiohttp's ping."""
        while True:
            await asyncio.sleep(KEEP_ALIVE_TICK_S)
            self.hub.keep_alive(self._subscribers, HEARTBEAT_S)

    async def acknowledge(self, station: Station, alert_id: str, by: str) -> dict[str, Any]:
        """Publish a station's acknowledgement of an open alert of one of its wards."""
        alert = self.hub.store.open_alert(station.wards, alert_id)
        if alert is None:
            # The same answer for an unknown id and another ward's alert: nothing leaks.
            metrics.ACKS.labels("not_found").inc()
            raise AckRejected(404, "no open alert with this id on your wards")
        nurse = " ".join(str(by or "").split())[:MAX_BY_CHARS]
        ack = {"patient_id": alert["patient_id"], "alert_id": alert_id,
               "by": f"{nurse} ({station.name})" if nurse else station.name,
               "at_ms": int(time.time() * 1000), "ward": alert["ward"]}
        await self.producer.send_and_wait(self.settings.topic_acks, key=alert["ward"].encode(),
                                          value=orjson.dumps(ack))
        metrics.ACKS.labels("sent").inc()
        return {"sent": True, "alert_id": alert_id, "by": ack["by"]}

    # -- web ---------------------------------------------------------------------------
    def station_of(self, request: web.Request) -> Station | None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(COOKIE)
        station = self.access.authenticate(token)
        if station is None and (header or request.cookies.get(COOKIE)):
            metrics.AUTH_FAILURES.inc()
        return station

    def _require(self, request: web.Request) -> Station:
        station = self.station_of(request)
        if station is None:
            raise web.HTTPUnauthorized(text='{"error": "missing or unknown station token"}',
                                       content_type="application/json")
        return station

    def _wards(self, request: web.Request, station: Station) -> frozenset[str]:
        asked = request.query.getall("ward", [])
        if not asked:
            return station.wards
        wards = frozenset(asked)
        if not wards <= station.wards:
            raise web.HTTPForbidden(text='{"error": "ward not allowed for this station"}',
                                    content_type="application/json")
        return wards

    def _ready_or_503(self) -> None:
        if not self.ready.is_set():
            raise web.HTTPServiceUnavailable(text='{"error": "catching up with the alert topics"}',
                                             content_type="application/json",
                                             headers={"Retry-After": "1"})

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if self.station_of(request) is not None:
            raise web.HTTPSeeOther("/board")
        return web.FileResponse(WEB_DIR / "index.html", headers=_PAGE_HEADERS)

    async def board_page(self, request: web.Request) -> web.StreamResponse:
        if self.station_of(request) is None:
            raise web.HTTPSeeOther("/")
        return web.FileResponse(WEB_DIR / "board.html",
                                headers={**_PAGE_HEADERS, "Cache-Control": "no-store"})

    async def start_session(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", ""))
        if self.access.authenticate(token) is None:
            metrics.AUTH_FAILURES.inc()
            raise web.HTTPSeeOther("/?failed=1")
        response = web.HTTPSeeOther("/board")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                            secure=self.config.secure_cookie, path="/", max_age=30 * 24 * 3600)
        raise response

    async def end_session(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def me(self, request: web.Request) -> web.Response:
        station = self._require(request)
        return web.json_response({"station": station.name, "wards": sorted(station.wards)})

    async def state(self, request: web.Request) -> web.Response:
        station = self._require(request)
        wards = self._wards(request, station)
        self._ready_or_503()
        from vitalstream.delivery.store import encode_cursor

        snapshot = self.hub.store.snapshot(wards)
        snapshot["id"] = encode_cursor(self.hub.store.cursor(wards))
        snapshot["station"] = station.name
        return web.Response(body=orjson.dumps(snapshot), content_type="application/json")

    async def sse(self, request: web.Request) -> web.StreamResponse:
        station = self._require(request)
        wards = self._wards(request, station)
        self._ready_or_503()
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        subscriber, first = self.hub.subscribe(station, wards, last_id, "sse")
        self._subscribers.add(subscriber)
        try:
            chunk = b"retry: 1000\n\n" + b"".join(sse_frame(i, body) for i, body in first)
            await response.write(chunk)
            queue = subscriber.queue
            while True:
                # No timeout here (asyncio.wait_for would make a task per event and
                # connection): the keep-alive comes through the queue from one timer.
                entries = [await queue.get()]
                while not queue.empty():  # write what is waiting in one go
                    entries.append(queue.get_nowait())
                if None in entries:
                    return response
                if len(entries) == 1:
                    await response.write(entries[0][1])
                else:
                    await response.write(b"".join(entry[1] for entry in entries))  # type: ignore[index]
                events = 0
                for entry in entries:
                    if entry is not KEEP_ALIVE:
                        events += 1
                        observe_fanout(entry[2])  # type: ignore[index]
                if events:
                    _SSE_FRAMES.inc(events)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            self._subscribers.discard(subscriber)
            self.hub.unsubscribe(subscriber)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text="cross-site WebSocket refused")
        station = self.station_of(request)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        last_id = request.query.get("last_event_id")
        asked = request.query.getall("ward", [])
        if station is None:
            # Clients that cannot send a header authenticate with their first message.
            try:
                message = await ws.receive(timeout=WS_AUTH_TIMEOUT_S)
                hello = orjson.loads(message.data) if message.type == WSMsgType.TEXT else {}
            except (TimeoutError, orjson.JSONDecodeError):
                hello = {}
            if isinstance(hello, dict) and hello.get("type") == "auth":
                station = self.access.authenticate(str(hello.get("token", "")))
                last_id = hello.get("last_event_id") or last_id
                asked = hello.get("wards") or asked
            if station is None:
                metrics.AUTH_FAILURES.inc()
                await ws.send_str('{"type": "error", "error": "missing or unknown station token"}')
                await ws.close(code=4401)
                return ws
        wards = frozenset(asked) if asked else station.wards
        if not wards <= station.wards or not self.ready.is_set():
            error = "ward not allowed for this station" if self.ready.is_set() else "not ready"
            await ws.send_str(orjson.dumps({"type": "error", "error": error}).decode())
            await ws.close(code=4403 if self.ready.is_set() else 4503)
            return ws
        subscriber, first = self.hub.subscribe(station, wards, last_id, "ws")
        self._subscribers.add(subscriber)
        writer = asyncio.create_task(self._ws_writer(ws, subscriber, first))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await self._ws_command(ws, station, message.data)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._subscribers.discard(subscriber)
            self.hub.unsubscribe(subscriber)
        return ws

    async def _ws_writer(self, ws: web.WebSocketResponse, subscriber: Subscriber,
                         first: list[tuple[str, bytes]]) -> None:
        try:
            for event_id, body in first:
                await ws.send_frame(ws_frame(event_id, body), WSMsgType.TEXT)
            queue = subscriber.queue
            while True:
                entry = await queue.get()
                if entry is None:
                    await ws.close(code=4408, message=b"too slow: resume from your last id")
                    return
                # The frame is the same bytes object for every connection of these wards.
                await ws.send_frame(entry[1], WSMsgType.TEXT)
                _WS_FRAMES.inc()
                observe_fanout(entry[2])
        except (ConnectionResetError, RuntimeError):
            return

    async def _ws_command(self, ws: web.WebSocketResponse, station: Station, data: str) -> None:
        try:
            command = orjson.loads(data)
        except orjson.JSONDecodeError:
            command = None
        if not isinstance(command, dict) or command.get("type") != "ack":
            await ws.send_str('{"type": "error", "error": "expected {\\"type\\": \\"ack\\", \\"alert_id\\": ...}"}')
            return
        alert_id = str(command.get("alert_id", ""))
        try:
            result = await self.acknowledge(station, alert_id, str(command.get("by", "")))
            await ws.send_str(orjson.dumps({"type": "ack_sent", **result}).decode())
        except AckRejected as exc:
            await ws.send_str(orjson.dumps({"type": "ack_refused", "alert_id": alert_id,
                                            "error": exc.reason}).decode())

    async def post_ack(self, request: web.Request) -> web.Response:
        station = self._require(request)
        # A JSON body cannot be posted cross-site without a CORS preflight, which this
        # service never grants: with the SameSite cookie, that stops forged acknowledgements.
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text='{"error": "send application/json"}',
                                               content_type="application/json")
        try:
            body = await request.json(loads=orjson.loads)
            alert_id = str(body["alert_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='{"error": "expected {\\"alert_id\\": ...}"}',
                                     content_type="application/json") from None
        try:
            result = await self.acknowledge(station, alert_id, str(body.get("by", "")))
        except AckRejected as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        return web.json_response(result, status=202)

    async def fhir_flags(self, request: web.Request) -> web.Response:
        station = self._require(request)
        wards = self._wards(request, station)
        self._ready_or_503()
        alerts = [a for ward in sorted(wards) for a in self.hub.store.snapshot([ward])["wards"][ward]["alerts"]]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(alerts),
                  "entry": [{"resource": alert_to_fhir_flag(a)} for a in alerts]}
        return web.Response(body=orjson.dumps(bundle), content_type="application/fhir+json")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready_page(self, request: web.Request) -> web.Response:
        ready = self.ready.is_set()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    def make_app(self) -> web.Application:
        @web.middleware
        async def no_store(request: web.Request, handler: Any) -> web.StreamResponse:
            response = await handler(request)
            if request.path.startswith("/api/"):
                response.headers.setdefault("Cache-Control", "no-store")
            return response

        app = web.Application(middlewares=[no_store])
        app[HUB_KEY] = self.hub
        app.add_routes([
            web.get("/", self.login_page), web.get("/board", self.board_page),
            web.post("/session", self.start_session), web.post("/session/end", self.end_session),
            web.get("/api/me", self.me), web.get("/api/state", self.state),
            web.get("/api/stream", self.sse), web.get("/api/ws", self.websocket),
            web.post("/api/ack", self.post_ack), web.get("/api/fhir/Flag", self.fhir_flags),
            web.get("/health", self.health), web.get("/ready", self.ready_page),
            web.get("/metrics", self.metrics_page),
            web.static("/static", WEB_DIR, append_version=False),
        ])
        # The kill switch's admin page and endpoints, and the modes for the board.
        from vitalstream.governance.station_control import KillSwitchControl

        KillSwitchControl(self).install(app)
        return app

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        from vitalstream.kafka import ensure_topics, producer

        extra = (self.config.topic_alerts_fhir, self.config.topic_alerts_hl7) if self.export else ()
        await ensure_topics(self.settings, extra=extra)
        self.producer = producer(self.settings, linger_ms=0)
        await self.producer.start()
        self._consumer_task = asyncio.create_task(self._consume())
        self._keep_alive_task = asyncio.create_task(self._keep_alive())
        if self.export:
            self._export_task = asyncio.create_task(self._export())
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, backlog=1024)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def wait_closed(self) -> None:
        """Until stopped, or the consumer fails (then raise: the service must not serve
        a ward board that no longer updates)."""
        assert self._consumer_task is not None
        stop = asyncio.create_task(self.stopping.wait())
        tasks = [t for t in (self._consumer_task, self._export_task) if t is not None]
        await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                task.result()

    async def stop(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.deliver_end()
        for task in (self._consumer_task, self._export_task, self._keep_alive_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self.producer is not None:
            await self.producer.stop()
