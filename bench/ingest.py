"""Ingest parse cost per sample, in process: the full parser against the fast path.

    python bench/ingest.py

One message of each gateway format as the simulator writes it (ten readings of one patient:
two seconds of five vital signs), parsed by `parse_raw` (the full parser, what the worker
ran for HL7 and FHIR before the fast paths) and by `fast_rows` (what the worker runs now).
CPU time, the best of 25 rounds of 500 messages, so other jobs on the machine count less.
The last line of standard output is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from simulators.formats import to_message
from vitalstream.ingest import fast_rows, parse_raw
from vitalstream.samples import CANONICAL_UNITS, Sample

PARAMS = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature")
NORMAL = {"heart_rate": 75.0, "resp_rate": 16.0, "spo2": 97.0, "systolic_bp": 125.0, "temperature": 36.9}


def cpu_seconds_per_call(call: Callable[[], object], calls: int = 500, rounds: int = 25) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - started) / calls)
    return best


def main() -> int:
    received_ms = int(time.time() * 1000)
    t0_ms = received_ms - 60_000
    readings = [Sample("b000123", "W03", "123", parameter, NORMAL[parameter] + second * 0.5,
                       CANONICAL_UNITS[parameter], t0_ms + second * 1000, "mon-W03-123", 0)
                for second in range(2) for parameter in PARAMS]
    result: dict[str, float] = {}
    for fmt in ("hl7", "fhir", "json"):
        raw = to_message(readings, fmt)
        full = parse_raw(raw, received_ms, fmt)
        fast = fast_rows(raw, received_ms, fmt)
        assert full.rejection is None and len(full.samples) == 10 and fast is not None, fmt
        full_s = cpu_seconds_per_call(lambda raw=raw, fmt=fmt: parse_raw(raw, received_ms, fmt))
        fast_s = cpu_seconds_per_call(lambda raw=raw, fmt=fmt: fast_rows(raw, received_ms, fmt))
        result[f"{fmt}_full_us_per_sample"] = round(full_s * 1e5, 2)
        result[f"{fmt}_fast_us_per_sample"] = round(fast_s * 1e5, 2)
        print(f"{fmt:5s} {len(raw):5,d} bytes, 10 readings: full parser {full_s * 1e5:6.2f} µs a sample, "
              f"fast path {fast_s * 1e5:5.2f} µs a sample ({full_s / fast_s:.1f}x)", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
