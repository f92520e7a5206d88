"""The kill switch at the station service: an admin page and its endpoints, and the mode
each ward is in, for the board's banner.

Routes added to the station service:

    GET  /admin              the admin page (sign-in with an admin token, then the switch)
    POST /admin/session      admin token -> cookie
    POST /api/killswitch     {"mode": "normal"|"news2_only", "scope": "*"|ward, "reason"}  (admin)
    GET  /api/mode           the modes in force (a station sees its wards', an admin all)

An instruction is signed with the admin key of the station's keyring
(``VITALSTREAM_SIGNING_KEYS`` must hold one of service ``admin``), names the admin as
its actor, and goes to ``control.killswitch``; the worker verifies it, applies it and
writes it to the audit trail. The modes shown here come from reading that topic back
(verified the same way), so the board shows what the workers apply.

Admins: ``VITALSTREAM_ADMIN_TOKENS``, JSON ``{"<token>": {"user_id": "u-…", "name": "…"}}``
(tokens kept as SHA-256 digests, compared in constant time). This is the governance
module's own stopgap; where ``vitalstream.auth`` provides signed-in users with roles,
``admin_of`` is the one place to use it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
from typing import Any

import orjson
from aiohttp import web

from vitalstream.governance.killswitch import InstructionError, KillSwitch, parse_instruction
from vitalstream.governance.worker import verified_instruction
from vitalstream.signing import Keyring, KeyringError

log = logging.getLogger("vitalstream.station")

ADMIN_COOKIE = "vitalstream_admin"
MIN_TOKEN_CHARS = 16


class AdminAccess:
    """Admin token -> actor, in constant time whichever token is presented."""

    def __init__(self, admins: dict[str, dict[str, str]]) -> None:
        self._admins = []
        for token, who in admins.items():
            if len(token) < MIN_TOKEN_CHARS or not isinstance(who, dict) or not who.get("user_id"):
                raise ValueError("VITALSTREAM_ADMIN_TOKENS: each token >= 16 characters, with a user_id")
            actor = {"user_id": str(who["user_id"]), "role": "admin", "name": str(who.get("name", who["user_id"]))}
            self._admins.append((hashlib.sha256(token.encode()).digest(), actor))

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> AdminAccess:
        text = (environ or os.environ).get("VITALSTREAM_ADMIN_TOKENS", "")
        try:
            return cls(orjson.loads(text) if text.strip() else {})
        except orjson.JSONDecodeError:
            raise ValueError("VITALSTREAM_ADMIN_TOKENS is not JSON") from None

    def actor(self, token: str | None) -> dict[str, str] | None:
        digest = hashlib.sha256((token or "").encode()).digest()
        found = None
        for known, actor in self._admins:
            if hmac.compare_digest(known, digest):
                found = actor
        return found


class KillSwitchControl:
    """The admin endpoints and the mode follower, installed into a station's web app."""

    def __init__(self, service: Any, access: AdminAccess | None = None) -> None:
        self.service = service
        self.settings = service.settings
        self.access = access or AdminAccess.from_environment()
        self.keyring = Keyring.from_settings(self.settings)
        self.switch = KillSwitch()
        self._follower: asyncio.Task[None] | None = None

    def admin_of(self, request: web.Request) -> dict[str, str] | None:
        """The admin who acts: a signed-in user with the admin role (vitalstream/auth), else
        the holder of an admin token (VITALSTREAM_ADMIN_TOKENS, for scripts)."""
        viewer = self.service.viewer_of(request)
        user = getattr(viewer, "user", None)
        if user is not None:
            return user.actor() if user.role == "admin" else None
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(ADMIN_COOKIE)
        return self.access.actor(token)

    async def admin_page(self, request: web.Request) -> web.StreamResponse:
        from vitalstream.delivery.service import _PAGE_HEADERS, WEB_DIR

        page = "admin.html" if self.admin_of(request) else "admin_login.html"
        return web.FileResponse(WEB_DIR / page, headers={**_PAGE_HEADERS, "Cache-Control": "no-store"})

    async def start_session(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", ""))
        if self.access.actor(token) is None:
            raise web.HTTPSeeOther("/admin?failed=1")
        await self.audit_sign_in(self.access.actor(token))
        response = web.HTTPSeeOther("/admin")
        response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="Strict",
                            secure=self.service.config.secure_cookie, path="/", max_age=8 * 3600)
        raise response

    async def audit_sign_in(self, actor: dict[str, str] | None) -> None:
        """An admin's sign-in goes to the audit trail (through audit.intake, signed with
        this station's key); without a signing key it is logged, not recorded."""
        from vitalstream.governance.audit import record_action

        if actor is None or self.keyring.current is None:
            log.warning("admin sign-in not audited: this station has no signing key")
            return
        await record_action(self.service.producer, self.settings, self.keyring, "sign_in", actor,
                            detail={"page": "admin"})

    async def post_killswitch(self, request: web.Request) -> web.Response:
        actor = self.admin_of(request)
        if actor is None:
            return web.json_response({"error": "an admin token is required"}, status=403)
        if request.content_type != "application/json":  # no cross-site form posts (as /api/ack)
            return web.json_response({"error": "send application/json"}, status=415)
        try:
            body = await request.json(loads=orjson.loads)
            instruction = parse_instruction({"kill_switch": {
                "mode": body.get("mode"), "scope": str(body.get("scope") or "*").strip(),
                "reason": str(body.get("reason", ""))[:200], "actor": actor, "at_ms": int(time.time() * 1000)}})
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return web.json_response({"error": "expected {\"mode\", \"scope\", \"reason\"}"}, status=400)
        except InstructionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            signer = self.keyring.for_service("admin")
        except KeyringError as exc:
            return web.json_response({"error": f"this station cannot sign as admin: {exc}"}, status=503)
        topic = self.settings.topic_control
        key, value = instruction.scope.encode(), orjson.dumps({"kill_switch": instruction.to_dict()})
        await self.service.producer.send_and_wait(topic, key=key, value=value,
                                                  headers=signer.sign(topic, key, value))
        log.warning("kill switch sent: %s for %s by %s", instruction.mode, instruction.scope, actor["user_id"])
        return web.json_response({"sent": True, **instruction.to_dict()}, status=202)

    async def modes(self, request: web.Request) -> web.Response:
        admin = self.admin_of(request)
        station = None if admin else self.service.station_of(request)
        if admin is None and station is None:
            return web.json_response({"error": "missing or unknown token"}, status=401)
        wards = sorted(station.wards) if station else sorted(w for w in self.switch.instructions if w != "*")
        return web.json_response({"default": self.switch.mode_for("\x00"),
                                  "wards": {w: self.switch.mode_for(w) for w in wards},
                                  **({"instructions": self.switch.status()["instructions"]} if admin else {})})

    async def _follow(self) -> None:
        from aiokafka import TopicPartition

        from vitalstream.kafka import FETCH_MAX_WAIT_MS, consumer

        topic = self.settings.topic_control
        source = consumer(self.settings, from_beginning=True, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        await source.start()
        try:
            partitions = source.partitions_for_topic(topic)
            while not partitions:
                await asyncio.sleep(0.5)
                await source.force_metadata_update()
                partitions = source.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            source.assign(tps)
            await source.seek_to_beginning(*tps)
            while True:
                for messages in (await source.getmany(*tps, timeout_ms=500)).values():
                    for message in messages:
                        try:
                            self.switch.apply(verified_instruction(self.keyring, topic, message))
                        except InstructionError as exc:
                            log.warning("kill switch instruction ignored: %s", exc)
        finally:
            await source.stop()

    async def _on_startup(self, app: web.Application) -> None:
        self._follower = asyncio.create_task(self._follow())

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower

    def install(self, app: web.Application) -> None:
        app.add_routes([
            web.get("/admin", self.admin_page), web.post("/admin/session", self.start_session),
            web.post("/api/killswitch", self.post_killswitch), web.get("/api/mode", self.modes),
        ])
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
