"""`vitalstream subscribe --ward W`: print a ward's alerts as they arrive."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from vitalstream.settings import Settings

NAME = "subscribe"
HELP = "Print the alerts of one or more wards as they arrive (a minimal nursing station)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ward", action="append", required=True, help="ward to follow (repeatable)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--from-beginning", action="store_true", help="also print earlier alerts")
    parser.add_argument("--json", action="store_true", help="print each alert as one JSON line")
    parser.add_argument("--max-alerts", type=int, default=0, help="stop after this many alerts (0: never)")


def format_alert(alert: dict[str, Any]) -> str:
    """One line a nurse reads: time, priority, status and the composed summary."""
    stamp = time.strftime("%H:%M:%S", time.gmtime(alert.get("device_time_ms", 0) / 1000))
    return (f"{stamp} {alert.get('priority', '?').upper():6} {alert.get('status', ''):12} "
            f"{alert.get('summary', '')}")


async def follow(settings: Settings, wards: set[str], from_beginning: bool, as_json: bool,
                 max_alerts: int, keyring: Any) -> int:
    """Print the wards' alerts; one without a worker's signature is refused, counted and
    named on standard error (never printed as an alert)."""
    from vitalstream.kafka import consumer, wait_for_broker
    from vitalstream.signing import SignatureError

    await wait_for_broker(settings)
    alerts = consumer(settings, settings.topic_alerts, from_beginning=from_beginning)
    await alerts.start()
    printed = 0
    refused: dict[str, int] = {}
    try:
        async for message in alerts:
            if message.key is None or message.key.decode("utf-8", "replace") not in wards:
                continue
            try:
                keyring.verify(message.topic, message.key, message.value or b"", message.headers, ("worker",))
            except SignatureError as exc:
                refused[str(exc)] = refused.get(str(exc), 0) + 1
                print(f"vitalstream subscribe: refused an alert record ({exc}; "
                      f"{sum(refused.values())} so far)", file=sys.stderr, flush=True)
                continue
            alert = orjson.loads(message.value)
            line = orjson.dumps(alert).decode() if as_json else format_alert(alert)
            print(line, flush=True)
            printed += 1
            if max_alerts and printed >= max_alerts:
                break
    finally:
        await alerts.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError

    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    if not settings.kafka_bootstrap:
        raise UsageError("vitalstream subscribe: no broker: set VITALSTREAM_KAFKA_BOOTSTRAP or --bootstrap")
    if args.max_alerts < 0:
        raise UsageError("vitalstream subscribe: --max-alerts must be >= 0")
    from vitalstream.process import run_until_stopped
    from vitalstream.signing import Keyring, KeyringError

    try:  # the worker's keys, to tell its alerts from forged ones
        keyring = Keyring.for_process(settings, None)
    except KeyringError as exc:
        raise UsageError(f"vitalstream subscribe: {exc}") from None
    try:
        return run_until_stopped(follow(settings, set(args.ward), args.from_beginning, args.json,
                                        args.max_alerts, keyring)) or 0
    finally:
        sys.stdout.flush()
