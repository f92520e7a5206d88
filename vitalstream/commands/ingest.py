"""`vitalstream ingest --format hl7|fhir|json PATH...`: the offline check for integration
engineers. Canonical samples go to standard output as NDJSON, one line per rejected
message to standard error; exit 0 when every message parsed, 1 when some were rejected."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO

import orjson

from vitalstream.ingest import FORMATS, parse_raw
from vitalstream.ingest.split import split_messages
from vitalstream.samples import encode_sample

NAME = "ingest"
HELP = "Parse gateway messages from files (HL7 v2 PCD-01, FHIR R4, JSON) and print canonical samples."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt",
                        help="message format of every file")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="file with one or more messages ('-' reads standard input)")
    parser.add_argument("--technical", action="store_true",
                        help='also print technical events (sensor off) as {"technical": {...}} lines')
    parser.add_argument("--quiet", action="store_true", help="no summary line on standard error")


def ingest_files(named_inputs: list[tuple[str, bytes]], fmt: str, out: IO[bytes], err: IO[str],
                 received_ms: int, technical: bool = False, summary: bool = True) -> int:
    """Parse every message of every input; returns the exit status (0 or 1)."""
    messages = accepted = rejected = samples = events = ignored = 0
    for name, data in named_inputs:
        pieces = split_messages(data, fmt)
        if not pieces:  # an empty file is nothing received: a rejection, not "0 messages"
            messages += 1
            rejected += 1
            err.write(f"{name}: empty_message: nothing received ({len(data)} bytes, no message)\n")
            continue
        for number, raw in enumerate(pieces, start=1):
            messages += 1
            result = parse_raw(raw, received_ms, fmt)
            ignored += result.ignored
            if result.rejection is not None:
                rejected += 1
                err.write(f"{name}:{number}: {result.rejection.reason}: {result.rejection.detail}\n")
                continue
            accepted += 1
            for sample in result.samples:
                out.write(encode_sample(sample) + b"\n")
            samples += len(result.samples)
            events += len(result.technical)
            if technical:
                for event in result.technical:
                    out.write(orjson.dumps({"technical": event}) + b"\n")
    out.flush()
    if summary:
        err.write(f"{messages} messages: {accepted} accepted ({samples} samples, {events} technical "
                  f"events, {ignored} observations ignored), {rejected} rejected\n")
    return 1 if rejected else 0


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError
    from vitalstream.ingest.codes import SiteCodeError, configure_site_codes
    from vitalstream.settings import Settings

    try:
        configure_site_codes(Settings().site_code_table)
    except SiteCodeError as exc:
        raise UsageError(f"vitalstream ingest: {exc}") from None
    inputs = []
    for path in args.paths:
        if path == "-":
            inputs.append(("<stdin>", sys.stdin.buffer.read()))
            continue
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"vitalstream ingest: no such file: {path}")
        try:
            inputs.append((path, file.read_bytes()))
        except OSError as exc:
            raise UsageError(f"vitalstream ingest: cannot read {path}: {exc.strerror}") from exc
    return ingest_files(inputs, args.fmt, sys.stdout.buffer, sys.stderr, int(time.time() * 1000),
                        technical=args.technical, summary=not args.quiet)
