"""`vitalstream keys`: a fresh set of signing keys (VITALSTREAM_SIGNING_KEYS), one per service."""

from __future__ import annotations

import argparse

NAME = "keys"
HELP = "Print fresh signing keys for VITALSTREAM_SIGNING_KEYS (JSON, one key per service)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", action="append", default=[],
                        help="only these services (repeatable; default: worker, station, gateway, admin)")
    parser.add_argument("--suffix", default="1", help="key id suffix, e.g. the rotation's date (default 1)")


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError
    from vitalstream.signing import SERVICES, generate_keys, keys_json

    services = args.service or list(SERVICES)
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        raise UsageError(f"vitalstream keys: unknown service {unknown[0]!r} (one of {', '.join(SERVICES)})")
    keys = {kid.rsplit("-", 1)[0] + f"-{args.suffix}": entry for kid, entry in generate_keys(services).items()}
    print(keys_json(keys))
    return 0
