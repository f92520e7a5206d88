"""`vitalstream gateway mllp|fhir --port P`: run a front door that takes gateway messages
(HL7 v2 over MLLP, or FHIR R4 over HTTP) and publishes them to vitals.raw."""

from __future__ import annotations

import argparse
import asyncio
import logging

from vitalstream.gateway.security import DoorConfigError, DoorSecurity, pin_library_logs
from vitalstream.settings import Settings

NAME = "gateway"
HELP = "Run a gateway front door: HL7 v2 over MLLP (with ACKs) or FHIR R4 over HTTP."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    doors = parser.add_subparsers(dest="door", metavar="DOOR", parser_class=type(parser))
    doors.required = True
    mllp = doors.add_parser("mllp", help="HL7 v2 ORU^R01 over TCP with MLLP framing")
    mllp.add_argument("--port", type=int, default=2575, help="TCP port (default 2575; 0 = free port)")
    mllp.add_argument("--metrics-port", type=int, default=0,
                      help="also serve /metrics and /health on this HTTP port (default: none)")
    fhir = doors.add_parser("fhir", help="FHIR R4 Observation/Bundle POSTs over HTTP")
    fhir.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 = free port)")
    for door in (mllp, fhir):
        door.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
        door.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")


async def serve(settings: Settings, door: str, host: str, port: int, metrics_port: int = 0,
                security: DoorSecurity | None = None) -> None:
    from vitalstream.gateway.fhir_http import FhirServer, fhir_app, metrics_app
    from vitalstream.gateway.mllp import MllpServer
    from vitalstream.gateway.publish import RawPublisher
    from vitalstream.kafka import ensure_topics

    security = security or DoorSecurity.from_settings(settings)
    max_ahead_ms = int(settings.device_time_max_ahead_s * 1000)
    scheme = "https" if security.ssl_context else "http"
    await ensure_topics(settings)
    from vitalstream.gateway.census import CensusDoor
    from vitalstream.ingest.adt import KnownBeds

    async with RawPublisher(settings) as publisher:
        census = CensusDoor(publisher, KnownBeds.parse(settings.census_beds))
        servers: list[FhirServer] = []
        try:
            if door == "mllp":
                server = await MllpServer(publisher, host, port, security=security,
                                          max_ahead_ms=max_ahead_ms, census=census).start()
                print(f"mllp gateway listening on {host}:{server.port}"
                      f"{' (TLS)' if security.ssl_context else ''}", flush=True)
                if metrics_port:
                    # Plain HTTP, no TLS: the metrics carry no patient data.
                    metrics = await FhirServer(metrics_app(), host, metrics_port, DoorSecurity(
                        idle_timeout_s=security.idle_timeout_s,
                        max_connections=security.max_connections)).start()
                    servers.append(metrics)
                    print(f"metrics on http://{host}:{metrics.port}/metrics", flush=True)
                try:
                    await server.serve_forever()
                finally:
                    await server.close()
            else:
                app = fhir_app(publisher, security=security, max_ahead_ms=max_ahead_ms, census=census)
                fhir = await FhirServer(app, host, port, security).start()
                servers.append(fhir)
                print(f"fhir gateway listening on {scheme}://{host}:{fhir.port}/fhir", flush=True)
                await asyncio.Event().wait()  # until interrupted
        finally:
            for running in servers:
                await running.close()


def run(args: argparse.Namespace) -> int:
    from vitalstream.broker import port_in_use
    from vitalstream.cli import UsageError
    from vitalstream.process import run_until_stopped

    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    if not settings.kafka_bootstrap:
        raise UsageError("vitalstream gateway: no broker: set VITALSTREAM_KAFKA_BOOTSTRAP or "
                         "--bootstrap (or start one with `vitalstream broker`)")
    from vitalstream.ingest.adt import KnownBeds

    try:
        KnownBeds.parse(settings.census_beds)
    except ValueError as exc:
        raise UsageError(f"vitalstream gateway: {exc}") from None
    for port in (args.port, getattr(args, "metrics_port", 0)):
        if not 0 <= port <= 65535:
            raise UsageError(f"vitalstream gateway: port {port} is not 0-65535")
    from vitalstream.ingest.codes import SiteCodeError, configure_site_codes

    try:  # the door checks messages with the same tables as the worker
        configure_site_codes(settings.site_code_table)
        security = DoorSecurity.from_settings(settings)
        security.check_binding(args.door, args.host)
    except (SiteCodeError, DoorConfigError) as exc:
        raise UsageError(f"vitalstream gateway: {exc}") from None
    metrics_port = getattr(args, "metrics_port", 0)
    for port in (args.port, metrics_port):
        taken = port_in_use(args.host, port)
        if taken:  # said before the broker is contacted
            raise UsageError(f"vitalstream gateway: {taken}")
    logging.basicConfig(level=logging.WARNING)
    pin_library_logs()
    try:
        run_until_stopped(serve(settings, args.door, args.host, args.port, metrics_port, security))
        print(f"{args.door} gateway stopped", flush=True)
    except OSError as exc:
        raise UsageError(f"vitalstream gateway: cannot listen on {args.host}:{args.port}: "
                         f"{exc.strerror or exc}") from exc
    return 0
