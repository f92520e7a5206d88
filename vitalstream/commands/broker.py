"""`vitalstream broker`: run the embedded tansu broker on loopback until interrupted
(Ctrl-C, SIGTERM); tansu stops with it."""

from __future__ import annotations

import argparse
import sys
import time

from vitalstream.broker import BrokerError, EmbeddedBroker

NAME = "broker"
HELP = "Run the embedded Kafka-protocol broker (tansu, in memory) on loopback."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092; 0 = free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError

    if not 0 <= args.port <= 65535:
        raise UsageError(f"vitalstream broker: port {args.port} is not 0-65535")
    try:
        broker = EmbeddedBroker(port=args.port, host=args.host).start()
    except BrokerError as exc:
        hint = "; stop it or choose another --port" if "in use" in str(exc) else ""
        raise UsageError(f"vitalstream broker: {exc}{hint}") from exc
    try:
        print(f"broker listening: VITALSTREAM_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        while broker.process and broker.process.poll() is None:
            time.sleep(0.5)
        status = broker.process.returncode if broker.process else None
        print(f"vitalstream broker: tansu exited unexpectedly (status {status})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see vitalstream.process.stop_on_sigterm)
        print("broker stopped", flush=True)
        return 0
    finally:
        broker.stop()
