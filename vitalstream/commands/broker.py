"""`vitalstream broker`: run the embedded tansu broker on loopback until interrupted."""

from __future__ import annotations

import argparse
import time

from vitalstream.broker import BrokerError, EmbeddedBroker

NAME = "broker"
HELP = "Run the embedded Kafka-protocol broker (tansu, in memory) on loopback."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092; 0 = free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError

    try:
        broker = EmbeddedBroker(port=args.port, host=args.host).start()
    except BrokerError as exc:
        raise UsageError(f"vitalstream broker: {exc}") from exc
    print(f"broker listening: VITALSTREAM_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
    try:
        while broker.process and broker.process.poll() is None:
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
