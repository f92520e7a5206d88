"""`vitalstream audit-accuracy`: the live alerts against the outcomes feed (CSV or FHIR
Encounter/Condition): PPV, sensitivity, lead time and alerts per patient-day, with 95 %
intervals, overall and by ward, age band and sex, as HTML and JSON.

    vitalstream audit-accuracy --outcomes outcomes.csv --since 2026-03-01 --until 2026-04-01 --out accuracy/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

NAME = "audit-accuracy"
HELP = "Accuracy audit against outcomes: PPV, sensitivity, lead time, alerts per patient-day by subgroup."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--outcomes", action="append", required=True,
                        help="outcomes feed, CSV or FHIR JSON/NDJSON (repeatable)")
    parser.add_argument("--since", help="from this device time (ISO 8601 or epoch ms)")
    parser.add_argument("--until", help="before this device time")
    parser.add_argument("--out", default="accuracy-report", help="folder for report.json and report.html")


def run(args: argparse.Namespace) -> int:
    from vitalstream.commands.compare import load_inputs, read_or_exit
    from vitalstream.governance.accuracy import accuracy_audit, render_accuracy
    from vitalstream.governance.compare import spans_from_bed_states

    settings, since_ms, until_ms, outcomes = load_inputs(args, "audit-accuracy")
    stream = read_or_exit(settings, "audit-accuracy", settings.topic_alerts, settings.topic_bed_state)
    spans = spans_from_bed_states(stream[settings.topic_bed_state], since_ms, until_ms)
    report = accuracy_audit(stream[settings.topic_alerts], spans, outcomes.events, outcomes.demographics,
                            since_ms, until_ms)
    report["outcome_rows_refused"] = outcomes.refused_counts()
    report["outcome_rows_refused_detail"] = [{"where": w, "reason": r} for w, r in outcomes.refused[:100]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out / "report.html").write_text(render_accuracy(report, report["outcome_rows_refused"]), encoding="utf-8")
    every = report["scopes"].get("all")
    if every:
        print(f"{every['events']} events; sensitivity 1 h {every['sensitivity_1h']} {every['sensitivity_1h_ci95']}; "
              f"PPV {every['ppv']} {every['ppv_ci95']}; {every['alerts_per_patient_day']} alerts per patient-day")
    for where, reason in outcomes.refused:
        print(f"outcome refused ({where}): {reason}")
    print(f"report: {out / 'report.html'} and {out / 'report.json'}")
    return 0
