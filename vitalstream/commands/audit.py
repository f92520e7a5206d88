"""`vitalstream audit`: list, export, trace and verify the audit trail.

    vitalstream audit --patient P --since 2026-03-15T08:00 --format csv
    vitalstream audit --alert al-0123456789abcdef        # readings -> scores -> decision -> deliveries -> answers
    vitalstream audit --verify                           # exit 1 and the first broken link if the chain is broken
    vitalstream audit --file export.ndjson --verify      # an exported copy

The audit topic holds patient identifiers: run this with a role allowed to read it
(docs/governance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from vitalstream.governance import audit
from vitalstream.settings import Settings

NAME = "audit"
HELP = "List, export, trace (--alert) and verify (--verify) the hash-chained audit trail."
CSV_FIELDS = ("partition", "seq", "at", "type", "event", "patient_id", "ward", "bed", "alert_id",
              "user_id", "role", "name", "model_version", "policy_version", "mode", "id", "prev",
              "hash", "detail")
ANSWERS = frozenset({"acknowledge", "answer", "snooze", "decline", "accept"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", help="audit topic to read (default VITALSTREAM_TOPIC_AUDIT)")
    parser.add_argument("--file", help="read an NDJSON export instead of the topic")
    parser.add_argument("--patient", help="records of this patient")
    parser.add_argument("--user", help="records of actions by this user id")
    parser.add_argument("--ward", help="records of this ward")
    parser.add_argument("--since", help="from this time (ISO 8601, UTC unless given, or epoch ms)")
    parser.add_argument("--until", help="before this time (ISO 8601 or epoch ms)")
    parser.add_argument("--alert", help="print the lineage of one alert id")
    parser.add_argument("--verify", action="store_true", help="check the hash chain of every partition")
    parser.add_argument("--format", choices=("text", "ndjson", "csv"), default="text")


def parse_time(text: str | None, flag: str) -> int | None:
    """Epoch ms from ISO 8601 (UTC when no zone is given) or digits; UsageError otherwise."""
    from vitalstream.cli import UsageError

    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"vitalstream audit: {flag} {text!r} is not an ISO 8601 time or epoch ms") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def shown(ms: Any) -> str:
    if not isinstance(ms, int):
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def load_file(path: str) -> list[dict[str, Any]]:
    from vitalstream.cli import UsageError

    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise UsageError(f"vitalstream audit: {path} line {number} is not JSON") from None
    return records


def select(records: Iterable[dict[str, Any]], patient: str | None = None, user: str | None = None,
           ward: str | None = None, since_ms: int | None = None, until_ms: int | None = None) -> list[dict[str, Any]]:
    out = []
    for record in records:
        at_ms = record.get("at_ms")
        if patient is not None and record.get("patient_id") != patient:
            continue
        if user is not None and (record.get("actor") or {}).get("user_id") != user:
            continue
        if ward is not None and record.get("ward") != ward:
            continue
        if since_ms is not None and not (isinstance(at_ms, int) and at_ms >= since_ms):
            continue
        if until_ms is not None and not (isinstance(at_ms, int) and at_ms < until_ms):
            continue
        out.append(record)
    return out


def lineage(records: Sequence[dict[str, Any]], alert_id: str) -> list[dict[str, Any]]:
    """The records of one alert and of the alerts it replaced or that replaced it, in
    time order: its decisions and every action that names one of those ids."""
    ids = {alert_id}
    while True:
        grown = set(ids)
        for record in records:
            if record.get("type") != "decision":
                continue
            replaces = (record.get("detail") or {}).get("replaces")
            if record.get("alert_id") in grown and replaces:
                grown.add(replaces)
            if replaces in grown and record.get("alert_id"):
                grown.add(record["alert_id"])
        if grown == ids:
            break
        ids = grown
    chosen = [r for r in records if r.get("alert_id") in ids]
    return sorted(chosen, key=lambda r: (r.get("at_ms") or 0, r.get("type") != "decision"))


def render_lineage(chosen: Sequence[dict[str, Any]], alert_id: str) -> str:
    decisions = [r for r in chosen if r.get("type") == "decision"]
    actions = [r for r in chosen if r.get("type") not in ("decision", "delivery")]
    delivered = [r for r in chosen if r.get("type") == "delivery"]
    lines = [f"Lineage of alert {alert_id}"]
    for record in decisions:
        detail = record.get("detail") or {}
        lines.append(f"\n[{shown(record.get('at_ms'))}] {record.get('alert_id')} "
                     f"{record.get('event')} ({detail.get('priority')}, {detail.get('kind')}) "
                     f"ward {record.get('ward')} bed {record.get('bed')}")
        lines.append("  readings:")
        for name, item in sorted((detail.get("inputs") or {}).items()):
            lines.append(f"    {name} = {item.get('value')} at {shown(item.get('ms'))}"
                         f" (NEWS2 points {item.get('score')})")
        news2, risk = detail.get("news2") or {}, detail.get("risk") or {}
        lines.append("  scores:")
        lines.append(f"    NEWS2 {news2.get('total')} components {news2.get('components')}"
                     f"{' partial' if news2.get('partial') else ''}")
        if risk:
            lines.append(f"    risk {risk.get('value')} at {shown(risk.get('ms'))} model {record.get('model_version')}")
        else:
            lines.append("    risk: none (model off or not available)")
        lines.append("  decision:")
        lines.append(f"    {record.get('event')} by policy {record.get('policy_version')} in mode "
                     f"{record.get('mode')}; replaces {detail.get('replaces')}")
        for reason in detail.get("reasons") or []:
            lines.append(f"    reason: {orjson.dumps(reason).decode()}")
        if detail.get("summary"):
            lines.append(f"    summary: {detail['summary']}")
    deliveries = [r for r in actions if r.get("event") not in ANSWERS]
    answers = [r for r in actions if r.get("event") in ANSWERS]
    lines.append("\ndeliveries:")
    for record in decisions:  # written with the alert it records, to the ward's alert topic
        lines.append(f"  [{shown(record.get('at_ms'))}] {record.get('alert_id')} {record.get('event')} "
                     f"published to the alerts of ward {record.get('ward')}")
    for record in delivered:
        detail = record.get("detail") or {}
        lines.append(f"  [{shown(record.get('at_ms'))}] {record.get('alert_id')} {record.get('event')}: "
                     f"{detail.get('summary') or ''}")
    for title, group in (("", deliveries), ("answers", answers)):
        if title:
            lines.append(f"\n{title}:" + ("" if group else " none recorded"))
        for record in group:
            actor = record.get("actor") or {}
            lines.append(f"  [{shown(record.get('at_ms'))}] {record.get('event')} {record.get('alert_id')} by "
                         f"{actor.get('name') or actor.get('user_id')} ({actor.get('role') or 'no role'}) "
                         f"{orjson.dumps(record.get('detail') or {}).decode()}")
    return "\n".join(lines)


def render(records: Sequence[dict[str, Any]], form: str) -> str:
    if form == "ndjson":
        return "".join(orjson.dumps({k: v for k, v in r.items() if not k.startswith("_")}).decode() + "\n"
                       for r in records)
    if form == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_FIELDS)
        for r in records:
            actor = r.get("actor") or {}
            writer.writerow([r.get("partition"), r.get("seq"), shown(r.get("at_ms")), r.get("type"), r.get("event"),
                             r.get("patient_id"), r.get("ward"), r.get("bed"), r.get("alert_id"),
                             actor.get("user_id"), actor.get("role"), actor.get("name"), r.get("model_version"),
                             r.get("policy_version"), r.get("mode"), r.get("id"), r.get("prev"), r.get("hash"),
                             orjson.dumps(r.get("detail") or {}).decode()])
        return buffer.getvalue()
    lines = []
    for r in records:
        actor = r.get("actor") or {}
        who = f" by {actor.get('user_id')} ({actor.get('role') or 'no role'})" if actor else ""
        lines.append(f"{shown(r.get('at_ms'))} p{r.get('partition')}#{r.get('seq')} {r.get('type'):8} "
                     f"{r.get('event'):12} ward {r.get('ward') or '-'} patient {r.get('patient_id') or '-'} "
                     f"alert {r.get('alert_id') or '-'}{who}")
    return "\n".join(lines) + ("\n" if lines else "")


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError

    settings = Settings(**({"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}))
    since_ms, until_ms = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    if args.file:
        records = load_file(args.file)
    else:
        if not settings.kafka_bootstrap:
            raise UsageError("vitalstream audit: no broker: set VITALSTREAM_KAFKA_BOOTSTRAP or --bootstrap "
                             "(or read an export with --file)")
        from aiokafka.errors import KafkaError

        try:
            records = asyncio.run(audit.read_topic(settings, args.topic or settings.topic_audit))
        except (TimeoutError, KafkaError, OSError) as exc:
            raise UsageError(f"vitalstream audit: cannot read the audit topic from {settings.kafka_bootstrap}: "
                             f"{exc or type(exc).__name__}") from None
    if args.verify:
        result = audit.verify(records)
        if result.ok:
            print(f"audit chain intact: {result.records} records in {result.partitions} partitions"
                  f" ({result.duplicates} re-delivered duplicates skipped)")
            return 0
        for link in result.broken:
            print(f"audit chain BROKEN at partition {link['partition']} offset {link['offset']} "
                  f"seq {link['seq']} id {link['id']}: {link['reason']}")
        print(f"{len(result.broken)} partition(s) broken of {result.partitions}; nothing was repaired")
        return 1
    if args.alert:
        chosen = lineage(records, args.alert)
        if not chosen:
            print(f"vitalstream audit: no audit record of alert {args.alert}", file=sys.stderr)
            return 1
        if args.format == "text":
            print(render_lineage(chosen, args.alert))
        else:
            sys.stdout.write(render(chosen, args.format))
        return 0
    chosen = select(records, args.patient, args.user, args.ward, since_ms, until_ms)
    sys.stdout.write(render(chosen, args.format))
    return 0
