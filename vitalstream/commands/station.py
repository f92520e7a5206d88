"""`vitalstream station`: the nursing-station service (ward feeds, acknowledgements, the
ward board, FHIR and HL7 alert export)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from vitalstream.settings import Settings

NAME = "station"
HELP = "Serve ward alert feeds (SSE, WebSocket), acknowledgements and the ward board."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--host", help="interface to listen on (else VITALSTREAM_STATION_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (else VITALSTREAM_STATION_PORT, 6070; 0: a free port)")
    parser.add_argument("--tokens-file", help="wall-board tokens JSON file (else VITALSTREAM_STATION_TOKENS_FILE "
                        "or VITALSTREAM_STATION_TOKENS)")
    parser.add_argument("--users-file", help="user store (else VITALSTREAM_STATION_USERS_FILE; "
                        "made with `vitalstream users add`)")
    parser.add_argument("--export", action="store_true",
                        help="also publish every alert as a FHIR Flag and an HL7 ORU^R40 to the export topics")


async def serve(settings: Settings, access: object, config: object, export: bool,
                keyring: object, users: object) -> int:
    from vitalstream.delivery.service import StationService

    service = StationService(settings, access, config, export=export,  # type: ignore[arg-type]
                             keyring=keyring, users=users)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.stopping.set)
    await service.start()
    # One line for whoever started us (tests and the demo read the port from it).
    print(f"station service listening: http://{service.config.host}:{service.port}", flush=True)
    try:
        await service.wait_closed()
    finally:
        await service.stop()
    print("station service stopped", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from vitalstream.auth.users import UserStoreError, WatchedUsers
    from vitalstream.cli import UsageError
    from vitalstream.delivery.config import (
        StationAccess,
        StationConfigError,
        load_access,
        load_config,
    )
    from vitalstream.signing import Keyring, KeyringError

    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    if not settings.kafka_bootstrap:
        raise UsageError("vitalstream station: no broker: set VITALSTREAM_KAFKA_BOOTSTRAP or --bootstrap")
    environ = dict(os.environ)
    if args.tokens_file:
        if not os.path.exists(args.tokens_file):
            raise UsageError(f"vitalstream station: no such tokens file: {args.tokens_file}")
        environ["VITALSTREAM_STATION_TOKENS_FILE"] = args.tokens_file
    if args.users_file:
        if not os.path.exists(args.users_file):
            raise UsageError(f"vitalstream station: no such users file: {args.users_file}")
        environ["VITALSTREAM_STATION_USERS_FILE"] = args.users_file
    try:
        config = load_config(environ)
        tokens = environ.get("VITALSTREAM_STATION_TOKENS_FILE") or environ.get("VITALSTREAM_STATION_TOKENS")
        # Wall-board tokens are optional once people sign in as themselves.
        access = load_access(environ) if tokens or not config.users_file else StationAccess({})
        users = WatchedUsers(config.users_file) if config.users_file else None
        keyring = Keyring.for_process(settings, "station")
    except (StationConfigError, UserStoreError, KeyringError) as exc:
        raise UsageError(f"vitalstream station: {exc}") from None
    from vitalstream.oversight import OversightConfig, OversightConfigError

    try:  # the station checks snoozes against the same limits as the worker
        OversightConfig.from_json(settings.escalation_chains, settings.snooze_max_s)
    except OversightConfigError as exc:
        raise UsageError(f"vitalstream station: {exc}") from None
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    config = dataclasses.replace(config, **overrides)
    from vitalstream.broker import port_in_use
    from vitalstream.kafka import wait_for_broker

    taken = port_in_use(config.host, config.port)
    if taken:
        raise UsageError(f"vitalstream station: {taken}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(wait_for_broker(settings))
    try:
        return asyncio.run(serve(settings, access, config, args.export, keyring, users))
    except OSError as exc:
        raise UsageError(f"vitalstream station: cannot listen on {config.host}:{config.port}: "
                         f"{exc.strerror}") from None
