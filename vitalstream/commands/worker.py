"""`vitalstream worker`: run the stream processor (Faust worker) against the configured broker."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging

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


def run(args: argparse.Namespace) -> int:
    import faust

    from vitalstream.app import create_app
    from vitalstream.cli import UsageError
    from vitalstream.kafka import ensure_topics

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
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(ensure_topics(settings))
    from vitalstream.governance.shadow import ShadowConfigError

    try:
        app = create_app(settings, keyring=keyring)
    except ShadowConfigError as exc:
        raise UsageError(f"vitalstream worker: {exc}") from None
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
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    # Faust's terminal spinner turns with every log record, so it sets the root logger to
    # DEBUG: every debug call of aiokafka then built a record that no handler wanted
    # (8 % of the worker's time at 5,000 samples/s, py-spy). No spinner, no such records.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
