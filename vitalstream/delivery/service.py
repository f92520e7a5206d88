"""The station service: ward feeds over Server-Sent Events and WebSocket, acknowledgements,
the ward board, and the alerts as FHIR for an EHR. One aiohttp process; the thin shell
around ``StationHub`` (fan-out) and ``WardStore`` (state).

It reads the ``alerts`` and ``ward.state`` topics from the beginning with its own
group-less consumer (every partition), so a restarted service rebuilds every ward's open
alerts and bed states before it answers ``/ready``; this assumes the topics keep at least
the open alerts' lifetime (see docs/station.md on retention). Acknowledgements go to
``alerts.ack``; the monitor answers with an ``acknowledged`` alert, which comes back
through the same feed to every station of the ward.

Who is asking (``docs/station.md``): a signed-in user (``POST /session`` with user name and
password sets a cookie holding a random session id; the session lives on the server), the
same user through a trusted single-sign-on proxy header, or a wall board with a station
token (``Authorization: Bearer <token>``, or a board session from ``POST /session`` with the
token). Boards see their wards and never act; every action carries the signed-in user
(``{"user_id", "role", "name"}``) checked here for role and ward, and the record is signed
with the station's key (``vitalstream.signing``) so the worker can check it again.

Every record read from ``alerts`` and ``ward.state`` must carry a worker's signature: a
forged one is counted (``vitalstream_station_refused_total``) and never reaches a board.

    GET  /               sign-in page        GET  /board          the ward board
    POST /session        sign in -> cookie   POST /session/end    sign out (ends the session)
    GET  /api/me         who, wards, rights  GET  /api/state      snapshot (JSON)
    GET  /api/stream     SSE feed            GET  /api/ws         WebSocket feed
    POST /api/ack        {"alert_id"}        POST /api/settings   {"patient_id", "record"}
    GET  /api/fhir/Flag  open alerts as FHIR Flags
    GET  /health, /ready, /metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vitalstream.alerts.settings import PatientSettings, SettingsError, apply_settings
from vitalstream.auth.roles import may
from vitalstream.auth.sessions import FailureLimiter, SessionStore
from vitalstream.auth.users import User, WatchedUsers
from vitalstream.delivery import metrics
from vitalstream.delivery.config import Station, StationAccess, StationConfig
from vitalstream.delivery.export import alert_to_fhir_flag, alert_to_fhir_flags
from vitalstream.delivery.feeds import (
    KEEP_ALIVE,
    OVERFLOW_GRACE_S,
    StationHub,
    Subscriber,
    observe_fanout,
    sse_frame,
    ws_frame,
)
from vitalstream.delivery.store import ALERTS, BED_STATES
from vitalstream.settings import Settings
from vitalstream.signing import Keyring, SignatureError

log = logging.getLogger("vitalstream.station")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
COOKIE = "vitalstream_station"
HEARTBEAT_S = 15.0
KEEP_ALIVE_TICK_S = 5.0
WS_AUTH_TIMEOUT_S = 5.0
MAX_HELLO_WARDS = 64

SSE_OVERFLOW = (b'event: overflow\ndata: {"type": "overflow", "error": "too slow: '
                b'reconnect with your last event id"}\n\n')
HUB_KEY = web.AppKey("hub", StationHub)
_SSE_FRAMES = metrics.FRAMES.labels("sse")
_WS_FRAMES = metrics.FRAMES.labels("ws")
SERVICE_KEY = web.AppKey("service", object)

_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser posts with "Origin: null", and the
    # Origin check on state-changing requests needs the real origin.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class AckRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    """Who a request comes from: what it may see (``station``: a name and wards) and, for a
    signed-in person, the user (None for a wall board's token: it sees and never acts)."""

    station: Station
    user: User | None = None


def _json_error(kind: type[web.HTTPException], reason: str, **kwargs: Any) -> web.HTTPException:
    return kind(text=orjson.dumps({"error": reason}).decode(), content_type="application/json", **kwargs)


def _hello_problem(hello: Any) -> str:
    """Why a WebSocket hello cannot be used ("" when it can)."""
    if not isinstance(hello, dict) or hello.get("type") != "auth":
        return 'expected {"type": "auth", "token": "..."} as the first message'
    if not isinstance(hello.get("token"), str):
        return "token must be a string"
    wards = hello.get("wards")
    if wards is not None and not (isinstance(wards, list) and len(wards) <= MAX_HELLO_WARDS
                                  and all(isinstance(w, str) for w in wards)):
        return "wards must be a list of ward names"
    last_id = hello.get("last_event_id")
    if last_id is not None and not isinstance(last_id, str):
        return "last_event_id must be a string"
    return ""


class StationService:
    """Kafka in and out, and the web application around the hub.

        service = StationService(settings, access, config)
        await service.start()    # consumer, producer, web server; ready once caught up
        await service.wait_closed()
    """

    def __init__(self, settings: Settings, access: StationAccess, config: StationConfig,
                 hub: StationHub | None = None, export: bool = False, keyring: Keyring | None = None,
                 users: WatchedUsers | None = None) -> None:
        self.settings = settings
        self.keyring = keyring or Keyring.for_process(settings, "station")
        self.users = users if users is not None else (WatchedUsers(config.users_file) if config.users_file else None)
        self.sessions = SessionStore(max_age_s=config.session_hours * 3600, idle_s=config.idle_minutes * 60)
        self.user_failures = FailureLimiter(config.signin_limit, config.signin_window_s)
        self.address_failures = FailureLimiter(config.signin_address_limit, config.signin_window_s)
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
                        if not self.signed_by_worker(record, "alert" if tag == ALERTS else "bed"):
                            continue
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

    def signed_by_worker(self, record: Any, kind: str) -> bool:
        """Whether a record of ``alerts`` or ``ward.state`` carries a worker's signature;
        a forged or unsigned one is counted by reason and goes no further."""
        try:
            self.keyring.verify(record.topic, record.key, record.value or b"", record.headers, ("worker",))
            return True
        except SignatureError as exc:
            metrics.REFUSED.labels(kind, str(exc)).inc()
            log.warning("refused a %s record without a worker's signature: %s", kind, exc)
            return False

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
                        if not self.signed_by_worker(record, "export"):
                            continue
                        try:
                            alert = orjson.loads(record.value)
                            flags = [orjson.dumps(flag) for flag in alert_to_fhir_flags(alert)]
                            message = alert_to_oru_r40(alert)
                        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                            metrics.EVENTS.labels("export", "malformed").inc()
                            continue
                        key = str(alert.get("ward", "")).encode()
                        for flag in flags:  # a replaced alert's Flag is closed first
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

    def _actor(self, viewer: Viewer, action: str) -> User:
        """The signed-in user allowed to take ``action``, or AckRejected."""
        user = viewer.user
        if user is None:
            raise AckRejected(403, "a wall-board token cannot act: sign in as yourself")
        if not may(user.role, action):
            raise AckRejected(403, f"the {user.role} role may not {action.replace('_', ' ')}")
        return user

    async def _publish(self, topic: str, key: bytes, value: bytes) -> None:
        await self.producer.send_and_wait(topic, key=key, value=value,
                                          headers=self.keyring.sign(topic, key, value))

    async def acknowledge(self, viewer: Viewer, alert_id: str) -> dict[str, Any]:
        """Publish a signed-in user's acknowledgement of an open alert of one of their wards."""
        try:
            user = self._actor(viewer, "acknowledge")
        except AckRejected:
            metrics.ACKS.labels("forbidden").inc()
            raise
        alert = self.hub.store.open_alert(viewer.station.wards, alert_id)
        if alert is None:
            # The same answer for an unknown id and another ward's alert: nothing leaks.
            metrics.ACKS.labels("not_found").inc()
            raise AckRejected(404, "no open alert with this id on your wards")
        ack = {"patient_id": alert["patient_id"], "alert_id": alert_id, "actor": user.actor(),
               "by": user.name, "actor_wards": sorted(user.wards),
               "at_ms": int(time.time() * 1000), "ward": alert["ward"]}
        await self._publish(self.settings.topic_acks, alert["ward"].encode(), orjson.dumps(ack))
        metrics.ACKS.labels("sent").inc()
        return {"sent": True, "alert_id": alert_id, "by": user.name, "actor": user.actor()}

    async def change_settings(self, viewer: Viewer, patient_id: str, record: Any) -> dict[str, Any]:
        """Publish a signed-in clinician's settings change for a patient of one of their
        wards, checked here for bounds and role (the worker checks both again)."""
        user = self._actor(viewer, "settings")
        where = self.hub.store.locate(viewer.station.wards, patient_id)
        if where is None:
            raise AckRejected(404, "no patient with this id on your wards")
        if not isinstance(record, dict):
            raise AckRejected(400, "record must be an object")
        record = {k: v for k, v in record.items() if k not in ("actor", "set_by", "set_at_ms")}
        record.update(actor=user.actor(), set_at_ms=int(time.time() * 1000))
        try:
            apply_settings(PatientSettings(), record)  # bounds and role, as the worker will
        except SettingsError as exc:
            raise AckRejected(403 if "role" in str(exc) else 400, str(exc)) from None
        ward, bed = where
        control = {"patient_id": patient_id, "ward": ward, "bed": bed, "record": record}
        await self._publish(self.settings.topic_patient_settings, ward.encode(), orjson.dumps(control))
        return {"sent": True, "patient_id": patient_id, "by": user.name}

    # -- web ---------------------------------------------------------------------------
    def _user_viewer(self, user: User | None) -> Viewer | None:
        if user is None or user.disabled:
            return None
        return Viewer(Station(name=user.name, wards=user.wards), user)

    def _current_user(self, user_id: str) -> User | None:
        """The user as the user file says now (None once disabled or removed)."""
        if self.users is None:
            return None
        user = self.users.current(time.monotonic()).by_id(user_id)
        return None if user is None or user.disabled else user

    def viewer_of(self, request: web.Request) -> Viewer | None:
        """Who the request comes from: the SSO header from a trusted proxy, a session
        cookie (a user's or a board's), or a wall board's bearer token."""
        config = self.config
        if config.sso_header and self.users is not None and request.remote in config.sso_proxies:
            username = request.headers.get(config.sso_header, "").strip()
            if username:
                store = self.users.current(time.monotonic())
                user = store.get(username)
                viewer = self._user_viewer(user)
                if viewer is None:
                    metrics.AUTH_FAILURES.inc()
                return viewer
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            station = self.access.authenticate(header[7:].strip())
            if station is None:
                metrics.AUTH_FAILURES.inc()
                return None
            return Viewer(station)
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            return None
        session = self.sessions.get(session_id, time.monotonic())
        if session is None:
            return None
        if session.board is not None:
            return Viewer(session.board)
        viewer = self._user_viewer(self._current_user(session.user_id))
        if viewer is None:  # disabled since: the session ends with it
            self.sessions.end_user(session.user_id)
        return viewer

    def station_of(self, request: web.Request) -> Station | None:
        viewer = self.viewer_of(request)
        return viewer.station if viewer is not None else None

    def _require(self, request: web.Request) -> Viewer:
        viewer = self.viewer_of(request)
        if viewer is None:
            raise _json_error(web.HTTPUnauthorized, "not signed in (or the session ended)")
        return viewer

    def same_origin(self, request: web.Request) -> bool:
        """Whether a browser's Origin (else Referer) names this service or a configured
        origin; a request with neither (not a browser) passes."""
        source = request.headers.get("Origin") or request.headers.get("Referer")
        if not source:
            return True
        parts = source.split("://", 1)
        if len(parts) != 2:
            return False
        origin = f"{parts[0]}://{parts[1].split('/', 1)[0]}"
        return parts[1].split("/", 1)[0] == request.host or origin in self.config.origins

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

    def _throttled(self, keys: list[tuple[FailureLimiter, str]]) -> int:
        now_s = time.monotonic()
        return max((limiter.retry_after(key, now_s) for limiter, key in keys), default=0)

    async def start_session(self, request: web.Request) -> web.StreamResponse:
        """Sign in: user name and password (or a wall board's token). Failures are limited
        per user name and per client address (429 with Retry-After)."""
        if not self.same_origin(request):
            metrics.AUTH_FAILURES.inc()
            raise _json_error(web.HTTPForbidden, "cross-site sign-in refused")
        form = await request.post()
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        token = str(form.get("token", ""))
        address = request.remote or "?"
        keys = [(self.address_failures, address)] + ([(self.user_failures, username)] if username else [])
        wait_s = self._throttled(keys)
        if wait_s:
            metrics.SIGNINS.labels("throttled").inc()
            raise _json_error(web.HTTPTooManyRequests, "too many failed sign-ins: try again later",
                              headers={"Retry-After": str(wait_s)})
        now_s = time.monotonic()
        session_id = None
        if username and self.users is not None:
            user = self.users.current(now_s).verify(username, password)
            if user is not None:
                session_id = self.sessions.create(user.user_id, now_s)
        elif token and not username:
            station = self.access.authenticate(token)
            if station is not None:
                session_id = self.sessions.create("", now_s, board=station)
        if session_id is None:
            metrics.AUTH_FAILURES.inc()
            metrics.SIGNINS.labels("failed").inc()
            for limiter, key in keys:
                limiter.failed(key, now_s)
            raise web.HTTPSeeOther("/?failed=1")
        if username:  # the address keeps its count: one good account must not reset it
            self.user_failures.succeeded(username)
        metrics.SIGNINS.labels("signed_in").inc()
        response = web.HTTPSeeOther("/board")
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict",
                            secure=self.config.secure_cookie, path="/",
                            max_age=int(self.config.session_hours * 3600))
        raise response

    async def end_session(self, request: web.Request) -> web.StreamResponse:
        if not self.same_origin(request):
            raise _json_error(web.HTTPForbidden, "cross-site request refused")
        self.sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def me(self, request: web.Request) -> web.Response:
        viewer = self._require(request)
        user = viewer.user
        return web.json_response({
            "station": viewer.station.name, "wards": sorted(viewer.station.wards),
            "user": user.actor() if user else None,
            "can_acknowledge": bool(user and may(user.role, "acknowledge")),
            "can_change_settings": bool(user and may(user.role, "settings"))})

    async def state(self, request: web.Request) -> web.Response:
        station = self._require(request).station
        wards = self._wards(request, station)
        self._ready_or_503()
        from vitalstream.delivery.store import encode_cursor

        snapshot = self.hub.store.snapshot(wards)
        snapshot["id"] = encode_cursor(self.hub.store.cursor(wards))
        snapshot["station"] = station.name
        return web.Response(body=orjson.dumps(snapshot), content_type="application/json")

    async def sse(self, request: web.Request) -> web.StreamResponse:
        station = self._require(request).station
        wards = self._wards(request, station)
        self._ready_or_503()
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        subscriber, first = self.hub.subscribe(station, wards, last_id, "sse")
        self._drop_when_stuck(subscriber, request)
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
                    if subscriber.overflowed:  # told, if its socket still takes it
                        await response.write(SSE_OVERFLOW)
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
        if not self.same_origin(request):
            raise web.HTTPForbidden(text="cross-site WebSocket refused")
        viewer = self.viewer_of(request)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        last_id: Any = request.query.get("last_event_id")
        asked: Any = request.query.getall("ward", [])
        if viewer is None:
            # Clients that cannot send a header authenticate with their first message:
            # {"type": "auth", "token": "...", "wards": [...], "last_event_id": "..."}.
            try:
                message = await ws.receive(timeout=WS_AUTH_TIMEOUT_S)
                hello = orjson.loads(message.data) if message.type == WSMsgType.TEXT else None
            except (TimeoutError, orjson.JSONDecodeError, TypeError):
                hello = None
            problem = _hello_problem(hello)
            if problem:
                metrics.AUTH_FAILURES.inc()
                await ws.send_str(orjson.dumps({"type": "error", "error": problem}).decode())
                await ws.close(code=4400, message=problem.encode()[:120])
                return ws
            station = self.access.authenticate(hello["token"])
            viewer = Viewer(station) if station is not None else None
            last_id = hello.get("last_event_id") or last_id
            asked = hello.get("wards") or asked
            if viewer is None:
                metrics.AUTH_FAILURES.inc()
                await ws.send_str('{"type": "error", "error": "missing or unknown station token"}')
                await ws.close(code=4401, message=b"missing or unknown station token")
                return ws
        station = viewer.station
        wards = frozenset(asked) if asked else station.wards
        if not wards <= station.wards or not self.ready.is_set():
            error = "ward not allowed for this station" if self.ready.is_set() else "not ready"
            await ws.send_str(orjson.dumps({"type": "error", "error": error}).decode())
            await ws.close(code=4403 if self.ready.is_set() else 4503)
            return ws
        subscriber, first = self.hub.subscribe(station, wards, last_id, "ws")
        self._drop_when_stuck(subscriber, request)
        self._subscribers.add(subscriber)
        writer = asyncio.create_task(self._ws_writer(ws, subscriber, first))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await self._ws_command(ws, viewer, message.data)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._subscribers.discard(subscriber)
            self.hub.unsubscribe(subscriber)
        return ws

    @staticmethod
    def _drop_when_stuck(subscriber: Subscriber, request: web.Request) -> None:
        """Once the subscriber overflows, its writer says so and closes; if the client reads
        nothing, the writer waits on a full socket forever: abort the connection then."""
        transport = request.transport

        def abort() -> None:
            if transport is not None and not transport.is_closing():
                transport.abort()

        subscriber.on_overflow = lambda: asyncio.get_running_loop().call_later(OVERFLOW_GRACE_S, abort)

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

    async def _ws_command(self, ws: web.WebSocketResponse, viewer: Viewer, data: str) -> None:
        try:
            command = orjson.loads(data)
        except orjson.JSONDecodeError:
            command = None
        if not isinstance(command, dict) or command.get("type") != "ack":
            await ws.send_str('{"type": "error", "error": "expected {\\"type\\": \\"ack\\", \\"alert_id\\": ...}"}')
            return
        alert_id = str(command.get("alert_id", ""))
        try:
            result = await self.acknowledge(viewer, alert_id)
            await ws.send_str(orjson.dumps({"type": "ack_sent", **result}).decode())
        except AckRejected as exc:
            await ws.send_str(orjson.dumps({"type": "ack_refused", "alert_id": alert_id,
                                            "error": exc.reason}).decode())

    async def post_ack(self, request: web.Request) -> web.Response:
        viewer = self._require(request)
        if not self.same_origin(request):
            raise _json_error(web.HTTPForbidden, "cross-site request refused")
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
            result = await self.acknowledge(viewer, alert_id)
        except AckRejected as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        return web.json_response(result, status=202)

    async def post_settings(self, request: web.Request) -> web.Response:
        viewer = self._require(request)
        if not self.same_origin(request):
            raise _json_error(web.HTTPForbidden, "cross-site request refused")
        if request.content_type != "application/json":
            raise _json_error(web.HTTPUnsupportedMediaType, "send application/json")
        try:
            body = await request.json(loads=orjson.loads)
            patient_id, record = str(body["patient_id"]), body["record"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise _json_error(web.HTTPBadRequest, 'expected {"patient_id": ..., "record": {...}}') from None
        try:
            result = await self.change_settings(viewer, patient_id, record)
        except AckRejected as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        return web.json_response(result, status=202)

    async def fhir_flags(self, request: web.Request) -> web.Response:
        station = self._require(request).station
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
            web.post("/api/ack", self.post_ack), web.post("/api/settings", self.post_settings),
            web.get("/api/fhir/Flag", self.fhir_flags),
            web.get("/health", self.health), web.get("/ready", self.ready_page),
            web.get("/metrics", self.metrics_page),
            web.static("/static", WEB_DIR, append_version=False),
        ])
        from vitalstream.delivery.oversight import OversightRoutes

        app.add_routes(OversightRoutes(self).routes())  # answers, snoozes, dispositions, goals
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
