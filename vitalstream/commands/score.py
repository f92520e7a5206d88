"""`vitalstream score`: NEWS2 for observation sets given as NDJSON on standard input."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import IO, Any

import orjson

from vitalstream.samples import PARAMETERS, SampleError, normalise_value
from vitalstream.scoring.news2 import news2

NAME = "score"
HELP = "Read observation sets (NDJSON, canonical keys) on stdin; write NEWS2 per line."

# Key, meaning and unit, in the order of the NEWS2 chart.
SCORED = {
    "resp_rate": "respiration rate, /min",
    "spo2": "SpO2, %",
    "spo2_scale": "SpO2 scale, 1 or 2 (2: hypercapnic respiratory failure)",
    "on_oxygen": "on supplemental oxygen, true/false",
    "systolic_bp": "systolic blood pressure, mmHg",
    "heart_rate": "heart rate, /min",
    "consciousness": "ACVPU: A, C, V, P or U",
    "temperature": "temperature, Cel",
}
SCORED_KEYS = tuple(SCORED)
# Known to vitalstream but not on the NEWS2 chart: read without a warning, not scored.
UNSCORED_KEYS = tuple(p for p in PARAMETERS if p not in SCORED)
# Short names people type, so the warning can say which key was meant.
ALIASES = {"rr": "resp_rate", "resp": "resp_rate", "respiratory_rate": "resp_rate",
           "hr": "heart_rate", "pulse": "heart_rate", "sbp": "systolic_bp", "sys": "systolic_bp",
           "bp": "systolic_bp", "temp": "temperature", "t": "temperature", "o2": "on_oxygen",
           "oxygen": "on_oxygen", "sat": "spo2", "sats": "spo2", "avpu": "consciousness",
           "acvpu": "consciousness", "gcs": "consciousness"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("accepted keys (one JSON object per line; a missing key makes the score "
                     "partial):\n" + "".join(f"  {key:14} {meaning}\n" for key, meaning in SCORED.items())
                     + f"  {', '.join(UNSCORED_KEYS)}: read, not on the NEWS2 chart\n"
                     "other keys are ignored with a warning on stderr.\n"
                     "example: echo '{\"resp_rate\": 22, \"spo2\": 93, \"heart_rate\": 110}' | vitalstream score")


def unknown_key_warning(keys: list[str]) -> str:
    """What the user typed that is not a key, with the key each probably meant."""
    named = []
    for key in keys:
        meant = ALIASES.get(key.lower()) or next(iter(difflib.get_close_matches(key, SCORED_KEYS, 1)), None)
        named.append(f"{key!r} (did you mean {meant!r}?)" if meant else repr(key))
    return (f"ignored unknown key{'s' if len(keys) > 1 else ''} {', '.join(named)}; accepted: "
            f"{', '.join(SCORED_KEYS)}")


def unknown_keys(line: bytes) -> list[str]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(record, dict):
        return []
    return [key for key in record if key not in SCORED and key not in UNSCORED_KEYS]


def score_line(line: bytes) -> dict[str, Any]:
    """One observation set to its output object; raises ValueError with the reason.
    Keys that are not observations are left out (`unknown_keys` names them)."""
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
            continue
        ignored = unknown_keys(line)
        if ignored:
            err.write(f"line {number}: {unknown_key_warning(ignored)}\n")
    out.flush()
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    return score_stream(sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
