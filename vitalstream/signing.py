"""Signatures on control and alert messages: a consumer trusts a record only if it carries
an HMAC made with a key of a service allowed to write it.

Broker ACLs are one layer (``deploy/ACLS.md``); this one does not depend on the broker: a
record written by anyone who can reach a topic but holds no key is refused, counted and
dead-lettered by its consumer.

The signature travels in a Kafka record header, so the value's bytes stay as they are:

    vs-sig: "<key id>:<base64url HMAC-SHA256>"

The MAC covers a version tag, the topic, the record key and the value, so a signed record
cannot be moved to another topic or another key (an acknowledgement for one ward replayed
as another's). What a replay of the same record on the same topic does is each consumer's
business (acknowledgements are checked against the open alert and their time).

Keys come from ``VITALSTREAM_SIGNING_KEYS`` (or the file ``VITALSTREAM_SIGNING_KEYS_FILE``),
a JSON object ``{key_id: {"service": name, "secret": text}}`` (at least 32 characters of
secret), and the key this process signs with from ``VITALSTREAM_SIGNING_KEY_ID`` (else the
first key of its own service). Without keys the worker and the station do not start. Services: ``worker``, ``station``, ``gateway``,
``admin``. Rotation: add the new key beside the old one everywhere, move signers to the new
key id, then remove the old one (``docs/reliability.md``).

>>> ring = Keyring({"w1": ("worker", b"x" * 32)}, current="w1")
>>> headers = ring.sign("alerts", b"4B", b'{"a":1}')
>>> ring.verify("alerts", b"4B", b'{"a":1}', headers, {"worker"})
'worker'
>>> try:
...     ring.verify("alerts", b"4C", b'{"a":1}', headers, {"worker"})
... except SignatureError as exc:
...     print(exc)
bad_signature
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson

HEADER = "vs-sig"
_TAG = b"vs1\x00"
SERVICES: tuple[str, ...] = ("worker", "station", "gateway", "admin")
MIN_SECRET_CHARS = 32

Headers = Sequence[tuple[str, bytes]]


class SignatureError(ValueError):
    """Why a record's signature was refused: ``unsigned``, ``unknown_key``,
    ``wrong_service``, ``bad_signature`` (the message is the reason code)."""


class KeyringError(ValueError):
    """Signing keys that cannot be used; the message says why, in one line."""


def _mac(secret: bytes, topic: str, key: bytes | None, value: bytes) -> bytes:
    # One-shot C HMAC over the joined parts: a few µs for a 2.5 KB alert (bench/signing.py),
    # less than updating an hmac object part by part.
    return hmac.digest(secret, b"".join((_TAG, topic.encode(), b"\x00", key or b"", b"\x00", value)),
                       hashlib.sha256)


class Keyring:
    """Key id -> (service, secret); ``current`` is the key this process signs with."""

    def __init__(self, keys: Mapping[str, tuple[str, bytes]], current: str | None = None) -> None:
        for kid, (service, secret) in keys.items():
            if service not in SERVICES:
                raise KeyringError(f"signing key {kid!r}: unknown service {service!r} "
                                   f"(one of {', '.join(SERVICES)})")
            if len(secret) < MIN_SECRET_CHARS:
                raise KeyringError(f"signing key {kid!r}: secret shorter than {MIN_SECRET_CHARS} characters")
            if ":" in kid or not kid:
                raise KeyringError(f"signing key id {kid!r} must be non-empty and contain no ':'")
        if current is not None and current not in keys:
            raise KeyringError(f"VITALSTREAM_SIGNING_KEY_ID {current!r} is not among the signing keys")
        self._keys = dict(keys)
        self.current = current
        self._prefix = (current or "").encode() + b":"

    def __repr__(self) -> str:  # never the secrets
        return f"Keyring({sorted(self._keys)}, current={self.current!r})"

    @property
    def service(self) -> str | None:
        """The service this process signs as."""
        return None if self.current is None else self._keys[self.current][0]

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def sign(self, topic: str, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        """The headers to send with a record; raises KeyringError without a signing key."""
        if self.current is None:
            raise KeyringError("no signing key for this process (VITALSTREAM_SIGNING_KEY_ID)")
        mac = _mac(self._keys[self.current][1], topic, key, value)
        return [(HEADER, self._prefix + base64.urlsafe_b64encode(mac).rstrip(b"="))]

    def verify(self, topic: str, key: bytes | None, value: bytes, headers: Iterable[tuple[str, Any]] | None,
               services: Collection[str]) -> str:
        """The service that signed the record, if it is one of ``services``; else SignatureError."""
        header = None
        for name, raw in headers or ():
            if name == HEADER:
                header = raw
        if not header:
            raise SignatureError("unsigned")
        try:
            kid, _, mac_text = bytes(header).decode("ascii").partition(":")
            given = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        except (ValueError, TypeError, UnicodeDecodeError):
            raise SignatureError("bad_signature") from None
        entry = self._keys.get(kid)
        if entry is None:
            raise SignatureError("unknown_key")
        service, secret = entry
        if not hmac.compare_digest(_mac(secret, topic, key, value), given):
            raise SignatureError("bad_signature")
        if service not in services:
            raise SignatureError("wrong_service")
        return service

    def for_service(self, service: str) -> Keyring:
        """The same keys, signing with the first key of ``service`` (for tools and tests)."""
        kids = [kid for kid, (owner, _) in sorted(self._keys.items()) if owner == service]
        if not kids:
            raise KeyringError(f"no signing key for service {service!r}")
        return Keyring(self._keys, current=kids[0])

    @classmethod
    def from_json(cls, text: str, current: str | None = None) -> Keyring:
        """Parse ``VITALSTREAM_SIGNING_KEYS``; raises KeyringError with one readable line."""
        try:
            document = orjson.loads(text) if text.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise KeyringError(f"VITALSTREAM_SIGNING_KEYS is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise KeyringError("VITALSTREAM_SIGNING_KEYS must be a JSON object {key_id: {service, secret}}")
        keys: dict[str, tuple[str, bytes]] = {}
        for kid, entry in document.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("service"), str)
                    and isinstance(entry.get("secret"), str)):
                raise KeyringError(f"signing key {kid!r} must be {{\"service\": ..., \"secret\": ...}}")
            keys[kid] = (entry["service"], entry["secret"].encode())
        return cls(keys, current=current or None)

    @classmethod
    def from_settings(cls, settings: Any) -> Keyring:
        """The keys of ``VITALSTREAM_SIGNING_KEYS``, else of ``VITALSTREAM_SIGNING_KEYS_FILE``."""
        text = settings.signing_keys.get_secret_value()
        path = getattr(settings, "signing_keys_file", "")
        if not text.strip() and path:
            try:
                with open(path, encoding="utf-8") as keys_file:
                    text = keys_file.read()
            except OSError as exc:
                raise KeyringError(f"cannot read VITALSTREAM_SIGNING_KEYS_FILE {path}: {exc.strerror}") from None
        return cls.from_json(text, settings.signing_key_id or None)

    @classmethod
    def for_process(cls, settings: Any, service: str | None) -> Keyring:
        """The keyring of a process that runs as ``service`` (None: it only verifies).

        No keys at all is refused (a consumer without keys would have to trust anything or
        refuse everything); without ``VITALSTREAM_SIGNING_KEY_ID`` the process signs with the
        first key of its own service, and a key id of another service is refused."""
        ring = cls.from_settings(settings)
        if not ring._keys:
            raise KeyringError("no signing keys: set VITALSTREAM_SIGNING_KEYS "
                               "(`vitalstream keys` prints a fresh set; docs/reliability.md)")
        if service is None:
            return ring
        if ring.current is None:
            return ring.for_service(service)
        if ring.service != service:
            raise KeyringError(f"VITALSTREAM_SIGNING_KEY_ID {ring.current!r} is a {ring.service} key, "
                               f"not a {service} key")
        return ring

    def services(self) -> set[str]:
        """The services that have a key here."""
        return {service for service, _ in self._keys.values()}


def generate_keys(services: Iterable[str] = SERVICES) -> dict[str, dict[str, str]]:
    """Fresh random keys, one per service (the demo and the tests use them)."""
    return {f"{service}-1": {"service": service, "secret": secrets.token_urlsafe(32)}
            for service in services}


def keys_json(keys: Mapping[str, Mapping[str, str]]) -> str:
    return orjson.dumps(dict(keys)).decode()


_RUN_KEYS: list[str] = []


def run_keys() -> str:
    """``VITALSTREAM_SIGNING_KEYS`` of this process's environment, or else a fresh set made
    once per process: what the demo, the validation run and the tests hand to the worker and
    station processes they start (each signs with its own service's key)."""
    import os

    configured = os.environ.get("VITALSTREAM_SIGNING_KEYS", "")
    if configured.strip():
        return configured
    if not _RUN_KEYS:
        _RUN_KEYS.append(keys_json(generate_keys()))
    return _RUN_KEYS[0]
