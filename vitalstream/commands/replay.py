"""`vitalstream replay SOURCE`: push simulated or recorded patients into ``vitals.raw``,
keeping their inter-arrival times at a speed factor."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError

from vitalstream.samples import Sample
from vitalstream.settings import Settings

NAME = "replay"
HELP = ("Replay a simulated scenario (sim:NAME) or recorded vital signs (NDJSON, CSV, PhysioNet "
        "2019 .psv / 2012 folders or .tar.gz) into vitals.raw at a speed factor.")
PHYSIONET_HINT = ("the PhysioNet challenge files are at physionet.org/content/challenge-2019 and "
                  "physionet.org/content/challenge-2012 (see ../shared/data/README.md)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", help="sim:NAME (a scenario), or a file or folder")
    parser.add_argument("--scenario", help="simulated scenario to replay (same as SOURCE sim:NAME)")
    parser.add_argument("--format", choices=("json", "fhir", "hl7"), default="json",
                        help="gateway message format (default json)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0,
                      help="factor over real time: 1 real time (default), 60 = one hour a minute")
    pace.add_argument("--max-speed", action="store_true", help="send as fast as possible")
    parser.add_argument("--limit", type=int, help="send at most N samples")
    parser.add_argument("--patients", type=int, help="read at most N stays (PhysioNet sources)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", help="topic to write (default: the raw topic, vitals.raw)")
    parser.add_argument("--labels", type=Path, help="write the scenario's patients and labelled events "
                        "(JSON) to this file")
    parser.add_argument("--shift-to-now", action="store_true",
                        help="move every device time by one offset so the first reading is now (a demo "
                        "replay then shows live on the ward board); --labels keep the original times")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def open_source(args: argparse.Namespace) -> tuple[Iterable[list[Sample]], int | None, dict | None]:
    """(reports, sample count when known cheaply, labels for simulated cohorts)."""
    from vitalstream.cli import UsageError
    from vitalstream.replay import SourceError, read_path

    source = args.source or ""
    if args.scenario and source and not source.startswith("sim:"):
        raise UsageError("vitalstream replay: give either a SOURCE path or --scenario, not both")
    if args.scenario or source.startswith("sim:"):
        from simulators import SCENARIOS

        name = args.scenario or source[len("sim:"):]
        if name not in SCENARIOS:
            raise UsageError(f"vitalstream replay: unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        cohort = SCENARIOS[name].cohort()
        return cohort.reports(), None, cohort.to_dict()
    if not source:
        raise UsageError("vitalstream replay: give a SOURCE (sim:NAME or a path) or --scenario NAME")
    path = Path(source)
    if not path.exists():
        hint = f"; {PHYSIONET_HINT}" if "physionet" in source.lower() else ""
        raise UsageError(f"vitalstream replay: no such file or folder: {source}{hint}")
    try:
        recording = read_path(path, max_stays=args.patients)
    except SourceError as exc:
        raise UsageError(f"vitalstream replay: {exc}") from exc
    if recording.refused:
        counts = ", ".join(f"{parameter} {n}" for parameter, n in sorted(recording.refused.items()))
        print(f"vitalstream replay: left out values outside the possible range (implausible_value): "
              f"{counts}", file=sys.stderr)
    return recording.reports(), len(recording), None


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError
    from vitalstream.replay import limit_samples, replay, shift_to

    if args.speed is not None and args.speed <= 0:
        raise UsageError("vitalstream replay: --speed must be positive")
    if args.limit is not None and args.limit < 0:
        raise UsageError("vitalstream replay: --limit must be >= 0")
    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    if not settings.kafka_bootstrap:
        raise UsageError("vitalstream replay: no broker: start one with `vitalstream broker` and set "
                         "VITALSTREAM_KAFKA_BOOTSTRAP, or pass --bootstrap")
    reports, total, labels = open_source(args)
    if labels is not None and args.labels:
        args.labels.write_bytes(orjson.dumps(labels, option=orjson.OPT_INDENT_2))
    if args.limit is not None:
        total = min(total, args.limit) if total is not None else args.limit
    reports = limit_samples(reports, args.limit)
    if args.shift_to_now:
        reports = shift_to(reports, int(time.time() * 1000))
    try:
        stats = asyncio.run(replay(reports, settings, fmt=args.format,
                                   speed=None if args.max_speed else args.speed,
                                   topic=args.topic, progress=not args.quiet, total=total))
    except KeyboardInterrupt:
        return 130
    except (KafkaError, OSError) as exc:
        print(f"vitalstream replay: broker {settings.kafka_bootstrap}: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(stats.to_dict()).decode(), file=sys.stdout, flush=True)
    return 0
