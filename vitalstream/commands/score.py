"""`vitalstream score`: NEWS2 for observation sets given as NDJSON on standard input."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

import orjson

from vitalstream.samples import SampleError, normalise_value
from vitalstream.scoring.news2 import news2

NAME = "score"
HELP = "Read observation sets (NDJSON, canonical keys) on stdin; write NEWS2 per line."

SCORED_KEYS = ("resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate",
               "consciousness", "temperature", "spo2_scale")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options: input is stdin, output stdout


def score_line(line: bytes) -> dict[str, Any]:
    """One observation set to its output object; raises ValueError with the reason."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise ValueError("an observation set must be a JSON object")
    observations = {}
    for key, value in record.items():
        if key not in SCORED_KEYS or value is None:
            continue
        try:
            observations[key] = normalise_value(key, value)
        except SampleError as exc:
            raise ValueError(str(exc)) from exc
    return {"news2": news2(observations).to_dict()}


def score_stream(lines: IO[bytes], out: IO[bytes], err: IO[str]) -> int:
    failed = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.write(orjson.dumps(score_line(line)) + b"\n")
        except ValueError as exc:
            failed += 1
            err.write(f"line {number}: {exc}\n")
    out.flush()
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    return score_stream(sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
