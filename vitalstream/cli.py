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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.run(args) or 0)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"vitalstream: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
