"""`vitalstream worker`: run the stream processor (Faust worker) against the configured broker."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path
from typing import Any

from vitalstream.settings import Settings

NAME = "worker"
HELP = "Run the monitoring worker: vitals.raw -> ingest -> monitor -> alerts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (else VITALSTREAM_KAFKA_BOOTSTRAP)")
    parser.add_argument("--web-port", type=int, help="port of /metrics, /health, /ready")
    parser.add_argument("--loglevel", default="warn", choices=("crit", "error", "warn", "info", "debug"))


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "bootstrap", None):
        overrides["kafka_bootstrap"] = args.bootstrap
    if getattr(args, "web_port", None):
        overrides["worker_web_port"] = args.web_port
    return Settings(**overrides)


def ready_line(settings: Settings, consumers: list[Any]) -> str:
    """The line printed once the worker is ready: where it reads and writes, how many
    partitions each topic has and how many this worker holds, where its web pages are."""
    held: dict[str, int] = {}
    total: dict[str, int] = {}
    for consumer in consumers:
        for tp in consumer.assignment():
            held[tp.topic] = held.get(tp.topic, 0) + 1
            total[tp.topic] = len(consumer.partitions_for_topic(tp.topic) or ())
    reads = ", ".join(f"{topic} ({held[topic]} of {total[topic]} partitions)" for topic in sorted(held))
    return (f"worker ready: broker {settings.kafka_bootstrap}; reading {reads}; writing "
            f"{settings.topic_vitals}, {settings.topic_alerts}, {settings.topic_bed_state}; web "
            f"http://{settings.worker_web_host}:{settings.worker_web_port} (/metrics /health /ready)")


def announce_when_ready(app: Any, settings: Settings) -> None:
    @app.task
    async def say_ready() -> None:
        while not app.vitalstream_is_ready():
            await asyncio.sleep(0.2)
        print(ready_line(settings, app.vitalstream_stage_consumers()), flush=True)


def run(args: argparse.Namespace) -> int:
    import faust

    from vitalstream.app import create_app
    from vitalstream.broker import port_in_use
    from vitalstream.cli import UsageError
    from vitalstream.kafka import ensure_topics
    from vitalstream.scoring.model import ModelFileError

    settings = settings_from(args)
    from vitalstream.oversight import OversightConfig, OversightConfigError

    try:
        OversightConfig.from_json(settings.escalation_chains, settings.snooze_max_s)
    except OversightConfigError as exc:
        raise UsageError(f"vitalstream worker: VITALSTREAM_ESCALATION_CHAINS / VITALSTREAM_SNOOZE_MAX_S: {exc}") from None
    if not settings.kafka_bootstrap:
        raise UsageError("vitalstream worker: no broker: set VITALSTREAM_KAFKA_BOOTSTRAP or --bootstrap "
                         "(or start one with `vitalstream broker`)")
    from vitalstream.ingest.codes import SiteCodeError, configure_site_codes
    from vitalstream.signing import Keyring, KeyringError

    try:  # before the broker: a worker without keys or with a bad code table must not start
        configure_site_codes(settings.site_code_table)
        keyring = Keyring.for_process(settings, "worker")
    except (SiteCodeError, KeyringError) as exc:
        raise UsageError(f"vitalstream worker: {exc}") from None
    if settings.model_path and not Path(settings.model_path).is_file():
        raise UsageError(f"vitalstream worker: no risk model file at {settings.model_path} "
                         "(VITALSTREAM_MODEL_PATH; unset it to use the shipped model)")
    taken = port_in_use(settings.worker_web_host, settings.worker_web_port)
    if taken:
        raise UsageError(f"vitalstream worker: web port: {taken}; choose another with --web-port "
                         "or VITALSTREAM_WORKER_WEB_PORT")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(ensure_topics(settings))
    from vitalstream.policy_settings import PolicySettingsError  # (a ShadowConfigError is one too)

    try:
        app = create_app(settings, keyring=keyring)
    except ModelFileError as exc:  # a model the operator named must load, or no worker
        raise UsageError(f"vitalstream worker: risk model {settings.model_path}: {exc}") from None
    except PolicySettingsError as exc:
        raise UsageError(f"vitalstream worker: {exc}") from None
    announce_when_ready(app, settings)
    # The worker is one asyncio thread. OpenMP threads inside a model call cost more to
    # wake than the small batches they score (about 90 ms against 7 ms measured here).
    # Limited after create_app: threadpoolctl only reaches libraries already loaded.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # The cyclic garbage collector, at its default thresholds, ran every 700 allocations and
    # walked every patient's state each time: a third of the monitor's time at 1,000
    # patients (bench/pipeline.py). Startup objects (modules, model, kernels) are frozen out
    # of its walks, and it runs every 50,000 allocations. vitalstream's per-patient state
    # holds no reference cycles, so nothing waits longer to be freed.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # redirect_stdouts=False: the ready and stopped lines stay plain lines on stdout.
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner turns with every log record, so it sets the root logger to
    # DEBUG: every debug call of aiokafka then built a record that no handler wanted
    # (8 % of the worker's time at 5,000 samples/s, py-spy). No spinner, no such records.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # Faust exits this way, after stopping on SIGINT or SIGTERM
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    else:
        status = 0
    print(f"worker stopped (status {status})", file=sys.stderr if status else sys.stdout, flush=True)
    return status
