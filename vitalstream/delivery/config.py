"""Who may connect to the station service, and what it reads and writes.

Stations are configured, not registered: each has a secret token and the wards it may
see. Read from the environment (documented here, where each variable is read):

- ``VITALSTREAM_STATION_TOKENS``: JSON ``{"<token>": ["4B"], ...}`` or
  ``{"<token>": {"station": "4B desk", "wards": ["4B", "4C"]}, ...}``.
- ``VITALSTREAM_STATION_TOKENS_FILE``: path of a file with the same JSON (preferred in
  production: a mounted secret, not an environment visible in ``ps e``).
- ``VITALSTREAM_STATION_HOST`` (``127.0.0.1``), ``VITALSTREAM_STATION_PORT`` (``6070``):
  where the service listens.
- ``VITALSTREAM_STATION_SECURE_COOKIE`` (``false``): mark the board's session cookie
  ``Secure`` (set it when the service sits behind TLS).
- ``VITALSTREAM_TOPIC_ALERTS_FHIR`` (``alerts.fhir``), ``VITALSTREAM_TOPIC_ALERTS_HL7``
  (``alerts.hl7``): where the alert export publishes FHIR Flags and HL7 ORU^R40 messages.
- ``VITALSTREAM_STATION_USERS_FILE``: the user store (``vitalstream.auth.users``; made with
  ``vitalstream users add``). Without it nobody can sign in: only wall-board tokens, which
  see and never act.
- ``VITALSTREAM_STATION_SESSION_HOURS`` (``12``), ``VITALSTREAM_STATION_IDLE_MINUTES``
  (``30``): a session ends this long after sign-in, or after this long without a request.
- ``VITALSTREAM_STATION_SIGNIN_LIMIT`` (``5``), ``VITALSTREAM_STATION_SIGNIN_ADDRESS_LIMIT``
  (``20``), ``VITALSTREAM_STATION_SIGNIN_WINDOW_S`` (``300``): failed sign-ins allowed per
  user name and per client address within the window before 429 with ``Retry-After``.
- ``VITALSTREAM_STATION_ORIGINS``: comma-separated ``scheme://host[:port]`` origins, besides the
  service's own host, from which browsers may post (a reverse proxy's public name).
- ``VITALSTREAM_STATION_SSO_HEADER`` (empty: off), ``VITALSTREAM_STATION_SSO_PROXIES``:
  single sign-on by a trusted reverse proxy. A request from one of the proxy addresses
  (comma-separated IPs) whose header names a user of the user store is that user; the header
  from any other address is ignored. The proxy must strip the header from client requests.

Tokens are for wall boards: they show a ward and cannot acknowledge or change anything.

Tokens are kept only as SHA-256 digests and compared with ``hmac.compare_digest`` against
every configured digest, so neither a token nor which station matched leaks through
timing, logs or ``repr``.

>>> access = StationAccess.from_json('{"correct-horse-battery-4B": ["4B"]}')
>>> access.authenticate("correct-horse-battery-4B").wards
frozenset({'4B'})
>>> access.authenticate("correct-horse-battery-4C") is None
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

# Shorter secrets can be guessed online; a token is typed once per wall screen.
MIN_TOKEN_CHARS = 16


class StationConfigError(ValueError):
    """A station configuration that cannot be used; the message never contains a token."""


@dataclasses.dataclass(frozen=True, slots=True)
class Station:
    """One authenticated nursing station: a display name and the wards it may see."""

    name: str
    wards: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class StationConfig:
    host: str = "127.0.0.1"
    port: int = 6070
    secure_cookie: bool = False
    topic_alerts_fhir: str = "alerts.fhir"
    topic_alerts_hl7: str = "alerts.hl7"
    users_file: str = ""
    session_hours: float = 12.0
    idle_minutes: float = 30.0
    signin_limit: int = 5
    signin_address_limit: int = 20
    signin_window_s: float = 300.0
    origins: frozenset[str] = frozenset()
    sso_header: str = ""
    sso_proxies: frozenset[str] = frozenset()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class StationAccess:
    """Token -> station lookup that takes the same time whichever token is presented."""

    def __init__(self, stations: Mapping[str, Station]) -> None:
        self._stations = [(_digest(token), station) for token, station in stations.items()]

    def __repr__(self) -> str:
        return f"StationAccess({len(self._stations)} stations)"

    @property
    def stations(self) -> list[Station]:
        return [station for _, station in self._stations]

    def authenticate(self, token: str | None) -> Station | None:
        if not token:
            return None
        presented = _digest(token)
        found: Station | None = None
        # No early exit: every digest is compared, so the time does not say which matched.
        for digest, station in self._stations:
            if hmac.compare_digest(presented, digest):
                found = station
        return found

    @classmethod
    def from_json(cls, text: str | bytes) -> StationAccess:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise StationConfigError(f"station tokens are not valid JSON (line {exc.lineno})") from None
        return cls.from_mapping(document)

    @classmethod
    def from_mapping(cls, document: Any) -> StationAccess:
        if not isinstance(document, dict) or not document:
            raise StationConfigError("station tokens must be a non-empty JSON object {token: wards}")
        stations: dict[str, Station] = {}
        for number, (token, entry) in enumerate(document.items(), start=1):
            where = f"station #{number}"
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
                raise StationConfigError(f"{where}: token shorter than {MIN_TOKEN_CHARS} characters")
            if isinstance(entry, list):
                name, wards = f"station-{number}", entry
            elif isinstance(entry, dict):
                name, wards = str(entry.get("station") or f"station-{number}"), entry.get("wards")
            else:
                raise StationConfigError(f"{where}: expected a list of wards or {{station, wards}}")
            if (not isinstance(wards, list) or not wards
                    or not all(isinstance(w, str) and w.strip() for w in wards)):
                raise StationConfigError(f"{where} ({name}): wards must be a non-empty list of names")
            stations[token] = Station(name=name, wards=frozenset(w.strip() for w in wards))
        return cls(stations)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_access(environ: Mapping[str, str] | None = None) -> StationAccess:
    """Station tokens from ``VITALSTREAM_STATION_TOKENS_FILE`` or ``VITALSTREAM_STATION_TOKENS``."""
    env = os.environ if environ is None else environ
    path = env.get("VITALSTREAM_STATION_TOKENS_FILE", "")
    if path:
        try:
            return StationAccess.from_json(Path(path).read_bytes())
        except OSError as exc:
            raise StationConfigError(f"cannot read VITALSTREAM_STATION_TOKENS_FILE {path}: "
                                     f"{exc.strerror}") from None
    text = env.get("VITALSTREAM_STATION_TOKENS", "")
    if not text:
        raise StationConfigError("no stations configured: set VITALSTREAM_STATION_TOKENS_FILE "
                                 "or VITALSTREAM_STATION_TOKENS")
    return StationAccess.from_json(text)


def load_config(environ: Mapping[str, str] | None = None) -> StationConfig:
    env = os.environ if environ is None else environ
    defaults = StationConfig()

    def number(name: str, default: float, kind: type = float) -> Any:
        try:
            value = kind(env.get(name, default))
        except ValueError:
            raise StationConfigError(f"{name} must be a number") from None
        if value < 0:
            raise StationConfigError(f"{name} must not be negative")
        return value

    def listed(name: str) -> frozenset[str]:
        return frozenset(part.strip() for part in env.get(name, "").split(",") if part.strip())

    sso_header = env.get("VITALSTREAM_STATION_SSO_HEADER", "").strip()
    sso_proxies = listed("VITALSTREAM_STATION_SSO_PROXIES")
    if sso_header and not sso_proxies:
        raise StationConfigError("VITALSTREAM_STATION_SSO_HEADER needs VITALSTREAM_STATION_SSO_PROXIES "
                                 "(the proxy addresses it is trusted from)")
    return StationConfig(
        host=env.get("VITALSTREAM_STATION_HOST", defaults.host),
        port=number("VITALSTREAM_STATION_PORT", defaults.port, int),
        secure_cookie=_flag(env.get("VITALSTREAM_STATION_SECURE_COOKIE", "false")),
        topic_alerts_fhir=env.get("VITALSTREAM_TOPIC_ALERTS_FHIR", defaults.topic_alerts_fhir),
        topic_alerts_hl7=env.get("VITALSTREAM_TOPIC_ALERTS_HL7", defaults.topic_alerts_hl7),
        users_file=env.get("VITALSTREAM_STATION_USERS_FILE", ""),
        session_hours=number("VITALSTREAM_STATION_SESSION_HOURS", defaults.session_hours),
        idle_minutes=number("VITALSTREAM_STATION_IDLE_MINUTES", defaults.idle_minutes),
        signin_limit=number("VITALSTREAM_STATION_SIGNIN_LIMIT", defaults.signin_limit, int),
        signin_address_limit=number("VITALSTREAM_STATION_SIGNIN_ADDRESS_LIMIT",
                                    defaults.signin_address_limit, int),
        signin_window_s=number("VITALSTREAM_STATION_SIGNIN_WINDOW_S", defaults.signin_window_s),
        origins=frozenset(o.rstrip("/") for o in listed("VITALSTREAM_STATION_ORIGINS")),
        sso_header=sso_header,
        sso_proxies=sso_proxies,
    )
