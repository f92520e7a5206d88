"""The `vitalstream` command line. Each subcommand lives in its own module under
`vitalstream.commands` with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; this file only lists them and turns usage errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: tuple[str, ...] = (
    "vitalstream.commands.broker",
    "vitalstream.commands.score",
    "vitalstream.commands.worker",
    "vitalstream.commands.subscribe",
    "vitalstream.commands.demo",
    "vitalstream.commands.train", "vitalstream.commands.predict", "vitalstream.commands.evaluate",
    "vitalstream.commands.ingest", "vitalstream.commands.gateway",
    "vitalstream.commands.replay",
    "vitalstream.commands.validate",
    "vitalstream.commands.station",
    "vitalstream.commands.users",
    "vitalstream.commands.keys",
    "vitalstream.commands.config",
    "vitalstream.commands.audit", "vitalstream.commands.compare", "vitalstream.commands.audit_accuracy",
)


class UsageError(Exception):
    """A wrong flag, value or missing file: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one readable line, not a usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitalstream", description="Deterioration monitoring on Kafka.")
    parser.add_argument("--version", action="version", version=f"vitalstream {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vitalstream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _broker_unreachable(exc: BaseException) -> bool:
    # Only a command that imported vitalstream.kafka can have raised it; the others
    # (score, ingest, --help) do not pay for importing aiokafka to find out.
    kafka = sys.modules.get("vitalstream.kafka")
    return kafka is not None and isinstance(exc, kafka.BrokerUnreachable)


def main(argv: Sequence[str] | None = None) -> int:
    from vitalstream.process import stop_on_sigterm

    stop_on_sigterm()
    command = "vitalstream"
    try:
        args = build_parser().parse_args(argv)
        command = f"vitalstream {args.command}"
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"vitalstream: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _broker_unreachable(exc):
            raise
        print(f"{command}: {exc}", file=sys.stderr)  # one line: why, and what to do
        return 2


if __name__ == "__main__":
    sys.exit(main())
