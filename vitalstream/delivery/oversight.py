"""The station's oversight routes: answer an alert, snooze it, record a delivery's
disposition, set or end a care goal. Each is checked here (the alert is open on one of the
station's wards, the user's role may do it, the reason code is known, the snooze is not
too long) and then published on ``alerts.oversight`` for the patient's worker, which
checks again and answers on the ward's feed (``answered``, ``snoozed``, ``called``...).

    POST /api/answer       {"alert_id", "reason", "text"?}
    POST /api/snooze       {"alert_id", "duration_s" (or "max": the priority's limit), "reason"}
    POST /api/disposition  {"alert_id", "disposition": "delivered" | "seen" | "declined"}
    POST /api/goal         {"ward", "bed", "goal": "comfort_care" | "do_not_escalate", "reason", "duration_s"?}
    POST /api/goal/end     {"ward", "bed", "goal"}

A refusal is an HTTP status with ``{"error": reason}`` and is counted
(``vitalstream_station_oversight_total{outcome="refused_<status>"}``); nothing is published.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import Counter

from vitalstream.oversight import OversightConfig, Refused, check_actor, check_answer
from vitalstream.oversight.config import GOAL_ROLES
from vitalstream.oversight.desk import DISPOSITIONS, GOALS

if TYPE_CHECKING:
    from vitalstream.delivery.service import StationService

VIEWER = "vitalstream_viewer"  # the request's checked Viewer, set by OversightRoutes._body
OVERSIGHT = Counter("vitalstream_station_oversight", "Oversight requests from stations by outcome "
                    "(sent, or the refusal's reason)", ["outcome"])


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _positive_seconds(duration_s: Any) -> None:
    if isinstance(duration_s, bool) or not isinstance(duration_s, int | float) or duration_s <= 0:
        raise Rejected(400, "duration_s must be a positive number of seconds")


def _reason(body: Mapping[str, Any], missing: str) -> str:
    """The body's reason, its white space collapsed; Rejected(400, missing) if there is none."""
    reason = " ".join(str(body.get("reason") or "").split())
    if not reason:
        raise Rejected(400, missing)
    return reason


def _goal(body: Mapping[str, Any]) -> None:
    if body.get("goal") not in GOALS:
        raise Rejected(400, f"goal is one of {', '.join(GOALS)}")


def actor_of(request: web.Request, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The signed-in user who acts (``{"user_id", "role", "name"}``), from the session the
    station checked; never from the body. None for a wall board's token (it only views)."""
    viewer = request.get(VIEWER)
    user = getattr(viewer, "user", None)
    return user.actor() if user is not None else None


class OversightRoutes:
    """The routes above, on a station service (its store, producer and station check)."""

    def __init__(self, service: StationService) -> None:
        self.service = service
        settings = service.settings
        self.config = OversightConfig.from_json(settings.escalation_chains, settings.snooze_max_s)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/answer", self.answer), web.post("/api/snooze", self.snooze),
                web.post("/api/disposition", self.disposition), web.post("/api/goal", self.goal),
                web.post("/api/goal/end", self.goal_end)]

    async def _body(self, request: web.Request) -> tuple[Any, dict[str, Any]]:
        viewer = self.service._require(request)
        if not self.service.same_origin(request):
            raise Rejected(403, "cross-site request refused")
        if request.content_type != "application/json":  # (no cross-site form posts: see post_ack)
            raise Rejected(415, "send application/json")
        request[VIEWER] = viewer
        station = viewer.station
        try:
            body = await request.json(loads=orjson.loads)
        except orjson.JSONDecodeError:
            raise Rejected(400, "not JSON") from None
        if not isinstance(body, dict):
            raise Rejected(400, "expected a JSON object")
        return station, body

    def _actor(self, request: web.Request, body: dict[str, Any], roles: Any = None) -> dict[str, str]:
        try:
            return check_actor(actor_of(request, body), *(() if roles is None else (roles,)))
        except Refused as exc:
            # (Nobody signed in is a 401 already: no actor here is a wall board's token.)
            raise Rejected(403, {"no_actor": "a wall-board token cannot act: sign in as yourself",
                                 "role": "your role may not do this"}[str(exc)]) from None

    def _open(self, station: Any, body: dict[str, Any]) -> dict[str, Any]:
        alert = self.service.hub.store.open_alert(station.wards, str(body.get("alert_id", "")))
        if alert is None:  # the same for an unknown id and another ward's alert
            raise Rejected(404, "no open alert with this id on your wards")
        return alert

    def _patient_at(self, station: Any, body: dict[str, Any]) -> tuple[str, str, str]:
        ward, bed = str(body.get("ward", "")), str(body.get("bed", ""))
        if ward not in station.wards:
            raise Rejected(404, "no such bed on your wards")
        state = self.service.hub.store.wards.get(ward)
        patient = None
        if state is not None:
            patient = (state.beds.get(bed) or {}).get("patient_id") or next(
                (a["patient_id"] for a in state.alerts.values() if str(a.get("bed")) == bed), None)
        if not patient:
            raise Rejected(404, "no such bed on your wards")
        return str(patient), ward, bed

    async def _publish(self, patient_id: str, ward: str, record: dict[str, Any],
                       actor: dict[str, str]) -> web.Response:
        message = {**record, "patient_id": patient_id, "ward": ward, "actor": actor,
                   "at_ms": int(time.time() * 1000)}
        await self.service._publish(self.service.settings.topic_oversight, ward.encode(), orjson.dumps(message))
        OVERSIGHT.labels("sent").inc()
        return web.json_response({"sent": True, "type": record["type"]}, status=202)

    async def _handle(self, request: web.Request, build: Any) -> web.Response:
        try:
            station, body = await self._body(request)
            return await build(request, station, body)
        except Rejected as exc:
            OVERSIGHT.labels(f"refused_{exc.status}").inc()
            return web.json_response({"error": exc.reason}, status=exc.status)

    async def answer(self, request: web.Request) -> web.Response:
        async def build(request: web.Request, station: Any, body: dict[str, Any]) -> web.Response:
            actor = self._actor(request, body)
            alert = self._open(station, body)
            try:
                reason, _, text = check_answer(body)
            except Refused as exc:
                raise Rejected(400, f"{exc}: one of the answer reason codes (docs/station.md)") from None
            oversight = alert.get("oversight") or {}
            if oversight.get("answer"):
                raise Rejected(409, "already answered")
            if alert.get("status") != "acknowledged" and not oversight.get("acknowledged"):
                raise Rejected(409, "acknowledge the alert first")
            return await self._publish(alert["patient_id"], alert["ward"], {
                "type": "answer", "alert_id": alert["alert_id"], "reason": reason, "text": text}, actor)
        return await self._handle(request, build)

    async def snooze(self, request: web.Request) -> web.Response:
        async def build(request: web.Request, station: Any, body: dict[str, Any]) -> web.Response:
            actor = self._actor(request, body)
            alert = self._open(station, body)
            duration_s = body.get("duration_s")
            longest = self.config.snooze_max_s[alert["priority"]]
            if duration_s == "max":  # the board's button: as long as this priority allows
                duration_s = longest
            _positive_seconds(duration_s)
            if duration_s > longest:
                raise Rejected(400, f"a {alert['priority']} alert can be snoozed for at most {longest:.0f} s")
            reason = _reason(body, "say why it is snoozed")
            return await self._publish(alert["patient_id"], alert["ward"], {
                "type": "snooze", "alert_id": alert["alert_id"], "duration_s": duration_s,
                "reason": reason}, actor)
        return await self._handle(request, build)

    async def disposition(self, request: web.Request) -> web.Response:
        async def build(request: web.Request, station: Any, body: dict[str, Any]) -> web.Response:
            actor = self._actor(request, body)
            alert = self._open(station, body)
            disposition = body.get("disposition")
            if disposition not in DISPOSITIONS or disposition == "accepted":
                raise Rejected(400, "disposition is delivered, seen or declined (accept = acknowledge)")
            return await self._publish(alert["patient_id"], alert["ward"], {
                "type": "disposition", "alert_id": alert["alert_id"], "disposition": disposition}, actor)
        return await self._handle(request, build)

    async def goal(self, request: web.Request) -> web.Response:
        async def build(request: web.Request, station: Any, body: dict[str, Any]) -> web.Response:
            actor = self._actor(request, body, GOAL_ROLES)
            patient_id, ward, bed = self._patient_at(station, body)
            _goal(body)
            duration_s = body.get("duration_s", self.config.goal_max_s)
            _positive_seconds(duration_s)
            if duration_s > self.config.goal_max_s:
                raise Rejected(400, f"duration_s must be at most {self.config.goal_max_s:.0f} s (then review)")
            reason = _reason(body, "say why (the goal shows on the board with its reason)")
            return await self._publish(patient_id, ward, {
                "type": "goal", "goal": body["goal"], "reason": reason, "duration_s": duration_s,
                "bed": bed}, actor)
        return await self._handle(request, build)

    async def goal_end(self, request: web.Request) -> web.Response:
        async def build(request: web.Request, station: Any, body: dict[str, Any]) -> web.Response:
            actor = self._actor(request, body, GOAL_ROLES)
            patient_id, ward, bed = self._patient_at(station, body)
            _goal(body)
            return await self._publish(patient_id, ward, {"type": "goal_end", "goal": body["goal"],
                                                          "bed": bed}, actor)
        return await self._handle(request, build)
