"""`vitalstream validate`: replay a scenario or a recording through the live pipeline and
write a validation report (JSON, HTML, PNG) from the alerts the stream published."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitalstream.settings import Settings

NAME = "validate"
HELP = ("Replay a simulated scenario or a recording through the real broker and worker; write "
        "report.json and report.html (lead time, sensitivity, alerts per patient-day, PPV, naive NEWS2).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--scenario", help="simulated scenario (default: ward)")
    what.add_argument("--source", type=Path, help="a recording: NDJSON, CSV, PhysioNet 2019 .psv "
                      "folder/.tar.gz (SepsisLabel gives events) or PhysioNet 2012")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.json, report.html, PNGs")
    parser.add_argument("--patients", type=int, help="read at most N stays (PhysioNet sources)")
    parser.add_argument("--format", choices=("json", "fhir", "hl7"), default="json",
                        help="gateway message format of the replay (default json)")
    parser.add_argument("--speed", type=float, help="factor over real time (default: as fast as possible)")
    parser.add_argument("--bootstrap", help="use this broker (topics get a per-run prefix) instead of "
                        "starting an embedded one")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from vitalstream.broker import BrokerError
    from vitalstream.cli import UsageError
    from vitalstream.process import ServiceStartError
    from vitalstream.replay import SourceError
    from vitalstream.validation.live import ValidationError
    from vitalstream.validation.run import open_recording, open_scenario, validate

    if args.speed is not None and args.speed <= 0:
        raise UsageError("vitalstream validate: --speed must be positive")
    if args.patients is not None and args.patients < 1:
        raise UsageError("vitalstream validate: --patients must be at least 1")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"vitalstream validate: --out {args.out} is a file, not a folder")
    if args.source is not None:
        if not args.source.exists():
            raise UsageError(f"vitalstream validate: no such file or folder: {args.source}")
        try:
            replayable = open_recording(args.source, args.patients)
        except SourceError as exc:
            raise UsageError(f"vitalstream validate: {exc}") from exc
    else:
        try:
            replayable = open_scenario(args.scenario or "ward")
        except KeyError as exc:
            raise UsageError(f"vitalstream validate: {exc.args[0]}") from exc
    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    try:
        report = validate(replayable, args.out, settings, fmt=args.format, speed=args.speed,
                          progress=not args.quiet)
    except BrokerError as exc:  # the embedded broker did not start: nothing was done
        raise UsageError(f"vitalstream validate: {exc}") from exc
    except ServiceStartError as exc:
        raise UsageError(f"vitalstream validate: the worker did not start: {exc}") from exc
    except (ValidationError, TimeoutError, KafkaError) as exc:
        print(f"vitalstream validate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for line in summary_lines(report):
        print(line)
    print(f"report: {args.out / 'report.html'}")
    return 0


def summary_lines(report: dict) -> list[str]:
    """The headline figures, as printed at the end of a run."""
    def f(value: object) -> str:
        return "–" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)

    stream = report["stream"]
    source = report["source"]
    name = f"scenario {source['name']}" if source["kind"] == "scenario" else source["description"]
    lines = [f"{name}: {report['patients']} patients, "
             f"{f(report['patient_days'])} patient-days; {stream['worker']['samples_processed']:,} samples "
             f"scored, run {f(stream.get('run_s'))} s"]
    for name, block in (("policy", report), ("naive NEWS2>=5", report["naive_news2_ge5"]),
                        ("naive NEWS2>=7", report["naive_news2_ge7"])):
        lines.append(f"  {name:15s} alerts/patient-day {f(block['alerts_per_patient_day'])}  "
                     f"events alerted >=1 h before {f(block['events_alerted_1h_before'])}/{f(block['events'])}  "
                     f"median lead {f(block['median_lead_h'])} h  false/patient-day "
                     f"{f(block['false_alerts_per_patient_day'])}  PPV {f(block['ppv'])}")
    if report.get("issue7"):
        issue7 = report["issue7"]
        lines.append(f"  issue 7: alert reduction vs naive NEWS2>=5 {f(issue7['alert_reduction_vs_naive_news2_ge5'])}, "
                     f"events {f(issue7['events_alerted_1h_before'])} vs {f(issue7['naive_events_alerted_1h_before'])}"
                     f" -> {'met' if issue7['met'] else 'not met'}")
    for target in (report.get("targets") or {}).values():
        lines.append(f"  target {target['what']} {target['target']}: {f(target['value'])} "
                     f"({'met' if target['met'] else 'not met'})")
    return lines
