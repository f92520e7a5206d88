"""Who may use a front door, and how long a connection may take: the doors' transport rules.

- **FHIR**: bearer tokens (``Authorization: Bearer <token>``) when any are configured,
  compared by their SHA-256 digest in constant time; optionally mutual TLS (a client
  certificate signed by ``gateway_tls_client_cafile``).
- **MLLP**: a source allow-list of networks (CIDRs) and TLS, optionally mutual.
- Both: a door bound to an interface other than loopback without a way to tell its
  senders apart (tokens or client certificates for FHIR; an allow-list or client
  certificates for MLLP) refuses to start, unless ``gateway_allow_unauthenticated`` says
  so explicitly. Idle and slow connections are closed; connections are capped.

Decisions are pure (`DoorSecurity` is built from `Settings` and answers questions); the
doors apply them.

>>> security = DoorSecurity(token_digests=(digest("t" * 32),))
>>> security.token_ok("Bearer " + "t" * 32), security.token_ok("Bearer wrong"), security.token_ok(None)
(True, False, False)
>>> DoorSecurity(allow=parse_networks("10.1.0.0/16")).source_ok("10.1.2.3"), DoorSecurity().source_ok("8.8.8.8")
(True, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import ssl
from pathlib import Path

from vitalstream.settings import Settings

MIN_TOKEN_CHARS = 32
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DoorConfigError(ValueError):
    """A front door's security settings cannot be used; the message says which and why."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma- or space-separated CIDRs (a bare address is a /32 or /128)."""
    networks = []
    for item in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise DoorConfigError(f"VITALSTREAM_GATEWAY_MLLP_ALLOW: {item!r} is not a network: {exc}") from None
    return tuple(networks)


def _tokens(settings: Settings) -> list[str]:
    tokens = settings.gateway_tokens.get_secret_value().replace(",", " ").split()
    if settings.gateway_tokens_file:
        try:
            text = Path(settings.gateway_tokens_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise DoorConfigError(f"cannot read VITALSTREAM_GATEWAY_TOKENS_FILE "
                                  f"{settings.gateway_tokens_file}: {exc.strerror}") from None
        tokens += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    short = [t for t in tokens if len(t) < MIN_TOKEN_CHARS]
    if short:
        raise DoorConfigError(f"gateway tokens must have at least {MIN_TOKEN_CHARS} characters "
                              f"({len(short)} shorter); make them with `openssl rand -hex 32`")
    return tokens


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for a door from ``gateway_tls_*`` (None when no certificate is set): TLS 1.2 or
    later, and client certificates required when a client CA is given (mutual TLS)."""
    if not settings.gateway_tls_certfile:
        if settings.gateway_tls_client_cafile:
            raise DoorConfigError("VITALSTREAM_GATEWAY_TLS_CLIENT_CAFILE needs VITALSTREAM_GATEWAY_TLS_CERTFILE")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.gateway_tls_certfile, settings.gateway_tls_keyfile or None)
        if settings.gateway_tls_client_cafile:
            context.load_verify_locations(settings.gateway_tls_client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise DoorConfigError(f"gateway TLS: {exc}") from None
    return context


@dataclasses.dataclass(frozen=True)
class DoorSecurity:
    """What a door enforces. The defaults are an open door on loopback (tests, a laptop)."""

    token_digests: tuple[bytes, ...] = ()
    allow: tuple[Network, ...] = ()
    ssl_context: ssl.SSLContext | None = None
    allow_unauthenticated: bool = False
    idle_timeout_s: float = 120.0
    request_timeout_s: float = 30.0
    max_connections: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> DoorSecurity:
        return cls(token_digests=tuple(digest(t) for t in _tokens(settings)),
                   allow=parse_networks(settings.gateway_mllp_allow),
                   ssl_context=server_ssl_context(settings),
                   allow_unauthenticated=settings.gateway_allow_unauthenticated,
                   idle_timeout_s=settings.gateway_idle_timeout_s,
                   request_timeout_s=settings.gateway_request_timeout_s,
                   max_connections=settings.gateway_max_connections)

    @property
    def mutual_tls(self) -> bool:
        return self.ssl_context is not None and self.ssl_context.verify_mode == ssl.CERT_REQUIRED

    def token_ok(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries a configured token (True when none are)."""
        if not self.token_digests:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = digest(token.strip())
        # Every digest is compared, so the time taken says nothing about which one matched.
        return sum(hmac.compare_digest(given, known) for known in self.token_digests) > 0

    def source_ok(self, address: str) -> bool:
        """Whether an MLLP peer address is on the allow-list (True when there is none)."""
        if not self.allow:
            return True
        try:
            peer = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.allow)

    def check_binding(self, door: str, host: str) -> None:
        """Refuse to serve ``door`` on a non-loopback ``host`` with nothing that tells
        senders apart, unless explicitly allowed. Raises DoorConfigError."""
        if is_loopback(host) or self.allow_unauthenticated or self.mutual_tls:
            return
        if door == "fhir" and self.token_digests:
            return
        if door == "mllp" and self.allow:
            return
        needs = ("VITALSTREAM_GATEWAY_TOKENS(_FILE) or mutual TLS" if door == "fhir" else
                 "VITALSTREAM_GATEWAY_MLLP_ALLOW or mutual TLS")
        raise DoorConfigError(
            f"the {door} door would accept anyone on {host}: set {needs}, or "
            "VITALSTREAM_GATEWAY_ALLOW_UNAUTHENTICATED=true to run it open on purpose")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class QuietProtocolErrors(logging.Filter):
    """aiohttp logs a malformed request with its exception, whose text holds the raw bytes
    it could not parse (a patient identifier among them): keep the fact and the exception's
    class, drop the text, at every level."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = "HTTP request not handled: %s"
        record.args = (type(exc).__name__ if exc is not None else "error",)
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def http_server_logger() -> logging.Logger:
    """The logger a door's HTTP server writes its protocol errors to (filtered)."""
    logger = logging.getLogger("vitalstream.gateway.http")
    if not any(isinstance(f, QuietProtocolErrors) for f in logger.filters):
        logger.addFilter(QuietProtocolErrors())
    return logger


def pin_library_logs() -> None:
    """aiokafka at DEBUG logs every record it sends, key (the patient id) and value: a door
    keeps it at INFO whatever the root level, so no level of the door's logs holds them."""
    kafka = logging.getLogger("aiokafka")
    if kafka.getEffectiveLevel() < logging.INFO:
        kafka.setLevel(logging.INFO)
