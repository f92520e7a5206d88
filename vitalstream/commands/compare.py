"""`vitalstream compare`: live against shadow (silent mode) on the same patients, as HTML
with plots and JSON.

    vitalstream compare --since 2026-03-15T00:00 --until 2026-03-22T00:00 --outcomes outcomes.csv --out compare/
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson

from vitalstream.settings import Settings

NAME = "compare"
HELP = "Compare the live alerts with the shadow's (alerts.shadow) on the same patients: HTML and JSON."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--since", help="from this device time (ISO 8601, UTC unless given, or epoch ms)")
    parser.add_argument("--until", help="before this device time")
    parser.add_argument("--outcomes", action="append", default=[],
                        help="outcomes and demographics, CSV or FHIR (repeatable): events caught, lead time, subgroups")
    parser.add_argument("--out", default="compare-report", help="folder for report.json and report.html")


def read_or_exit(settings: Settings, command: str, *topics: str) -> dict[str, list[dict[str, Any]]]:
    """``read_stream``, a broker that cannot be read being one line and exit status 2."""
    from aiokafka.errors import KafkaError

    from vitalstream.cli import UsageError

    try:
        return asyncio.run(read_stream(settings, *topics))
    except (TimeoutError, KafkaError, OSError) as exc:
        raise UsageError(f"vitalstream {command}: cannot read {', '.join(topics)} from "
                         f"{settings.kafka_bootstrap}: {exc or type(exc).__name__}") from None


async def read_stream(settings: Settings, *topics: str) -> dict[str, list[dict[str, Any]]]:
    from vitalstream.governance.audit import read_raw

    out = {}
    for topic in topics:
        messages = await read_raw(settings, topic)
        out[topic] = [orjson.loads(m.value) for m in messages if m.value]
    return out


def load_inputs(args: argparse.Namespace, command: str) -> tuple[Settings, int | None, int | None, Any]:
    from vitalstream.cli import UsageError
    from vitalstream.commands.audit import parse_time
    from vitalstream.governance.outcomes import read_outcomes

    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    if not settings.kafka_bootstrap:
        raise UsageError(f"vitalstream {command}: no broker: set VITALSTREAM_KAFKA_BOOTSTRAP or --bootstrap")
    since_ms, until_ms = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise UsageError(f"vitalstream {command}: --until must be after --since")
    for path in args.outcomes:
        if not Path(path).is_file():
            raise UsageError(f"vitalstream {command}: no such outcomes file: {path}")
    outcomes = read_outcomes(args.outcomes)
    outcomes.age_at(until_ms or since_ms or 0)
    return settings, since_ms, until_ms, outcomes


def run(args: argparse.Namespace) -> int:
    from vitalstream.governance.compare import compare, render_compare, spans_from_bed_states

    settings, since_ms, until_ms, outcomes = load_inputs(args, "compare")
    stream = read_or_exit(settings, "compare", settings.topic_alerts, settings.topic_alerts_shadow,
                          settings.topic_bed_state)
    spans = spans_from_bed_states(stream[settings.topic_bed_state], since_ms, until_ms)
    report = compare(stream[settings.topic_alerts], stream[settings.topic_alerts_shadow], spans,
                     outcomes.events, outcomes.demographics, has_events=bool(args.outcomes),
                     since_ms=since_ms, until_ms=until_ms)
    report["outcome_rows_refused"] = outcomes.refused_counts()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out / "report.html").write_text(render_compare(report), encoding="utf-8")
    every = report["scopes"]["all"] if report["scopes"] else None
    if every:
        print(f"live {every['live']['alerts_per_patient_day']} vs shadow {every['shadow']['alerts_per_patient_day']} "
              f"alerts per patient-day on {report['patients']} patients; overlap {every['overlap']['share']}")
    for where, reason in outcomes.refused:
        print(f"outcome refused ({where}): {reason}")
    print(f"report: {out / 'report.html'} and {out / 'report.json'}")
    return 0
