"""The thin layer to the broker for everything that is not the Faust app: topic creation,
producers and consumers for the CLI, the gateways, replay, the demo and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
)

from vitalstream.settings import Settings

log = logging.getLogger(__name__)


def changelog_topic(settings: Settings) -> str:
    """The monitor's per-patient state, keyed by patient, partitioned as ``vitals``."""
    return f"{settings.app_id}-patients-changelog"


def topic_names(settings: Settings) -> list[str]:
    return [settings.topic_raw, settings.topic_vitals, settings.topic_deadletter,
            settings.topic_alerts, settings.topic_acks, settings.topic_patient_settings,
            settings.topic_bed_state, changelog_topic(settings),
            settings.topic_oversight, settings.topic_census,
            settings.topic_audit, settings.topic_audit_intake, settings.topic_control,
            settings.topic_alerts_shadow, settings.topic_demographics]


class BrokerUnreachable(Exception):
    """The broker did not answer within ``kafka_connect_timeout_s``: a command prints this
    one line and exits 2 (`vitalstream.cli`)."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap, self.reason = bootstrap, reason
        super().__init__(f"cannot reach the broker at {bootstrap} ({reason}); is it running? "
                         "see `vitalstream broker`")


@contextlib.contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    """aiokafka logs every failed connection attempt at ERROR ("Unable connect to node"):
    dozens of lines a minute while the broker is away. Until a command has reached the
    broker once, its own one-line error says it better."""
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    addresses = []
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        addresses.append((host.strip("[]") or "localhost", int(port) if port.isdigit() else 9092))
    return addresses


def _tcp_reason(host: str, port: int, timeout_s: float) -> str | None:
    """Why a TCP connection to host:port fails, or None when it opens."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"unknown host {host}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


async def _kafka_reason(settings: Settings, timeout_s: float) -> str | None:
    """Why a Kafka metadata request fails, or None when the broker answers."""
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap,
                            request_timeout_ms=max(1000, int(timeout_s * 1000)),
                            **settings.kafka_client_kwargs())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return None
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except (TimeoutError, KafkaError, OSError) as exc:
        return f"a port is open but no Kafka broker answered ({type(exc).__name__})"
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def wait_for_broker(settings: Settings, timeout_s: float | None = None) -> None:
    """Return once the broker answers a metadata request; retry quietly until
    ``timeout_s`` (default ``settings.kafka_connect_timeout_s``), then raise
    BrokerUnreachable with the last reason (refused, unknown host, TLS, not Kafka)."""
    timeout_s = settings.kafka_connect_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    loop = asyncio.get_running_loop()
    with quiet_kafka_logs():
        while True:
            attempt_s = min(2.0, max(0.2, deadline - time.monotonic()))
            reasons = [await loop.run_in_executor(None, _tcp_reason, host, port, attempt_s)
                       for host, port in _addresses(settings.kafka_bootstrap)]
            if any(reason is None for reason in reasons):
                reason = await _kafka_reason(settings, attempt_s)
                if reason is None:
                    return
            else:
                reason = reasons[0] or ""
            if time.monotonic() >= deadline:
                raise BrokerUnreachable(settings.kafka_bootstrap, reason)
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


# Only the latest row of a patient is needed: the broker may compact the rest away.
CHANGELOG_CONFIG = {"cleanup.policy": "compact"}
# The audit trail is kept whole: never compacted, never expired (deploy/AUDIT_TOPIC.md).
AUDIT_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


async def ensure_topics(settings: Settings, extra: tuple[str, ...] = (), timeout_s: float = 30.0) -> None:
    """Create vitalstream's topics (idempotent), retrying while the broker starts.
    Raises BrokerUnreachable when no broker answers at all (within ``timeout_s`` or
    ``settings.kafka_connect_timeout_s``, whichever is shorter)."""
    await wait_for_broker(settings, min(timeout_s, settings.kafka_connect_timeout_s))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                    **settings.kafka_client_kwargs())
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            configs = {changelog_topic(settings): CHANGELOG_CONFIG, settings.topic_audit: AUDIT_CONFIG}
            wanted = [NewTopic(name, settings.topic_partitions, 1, topic_configs=configs.get(name))
                      for name in (*topic_names(settings), *extra) if name not in existing]
            if wanted:
                try:
                    await admin.create_topics(wanted)
                except TopicAlreadyExistsError:
                    pass
            return
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.debug("broker not ready yet: %s", exc)
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


# How long a stage's fetch may wait at the broker for data. Apache Kafka and Redpanda
# answer a waiting fetch as soon as data arrives, so there this only sets how often an idle
# stage asks; the embedded broker (tansu 0.6) holds a fetch for the whole wait even when
# data arrives (measured: a one-message round trip took up to the wait), so on it every
# hop of the pipeline costs up to this much latency.
FETCH_MAX_WAIT_MS = 5


async def fetch(source: AIOKafkaConsumer, max_records: int, stage: str) -> dict:
    """One ``getmany`` of a stage's loop; an empty batch (after a short pause) when the
    broker is away, so the loop goes on and the client reconnects."""
    try:
        return await source.getmany(timeout_ms=200, max_records=max_records)
    except KafkaError as exc:
        log.warning("%s: fetch failed (%s); retrying", stage, type(exc).__name__)
        await asyncio.sleep(0.5)
        return {}


# Settled offsets are committed at most this often while batches keep coming.
COMMIT_INTERVAL_S = 0.2


class PendingCommits:
    """A stage's settled offsets (partition -> next offset) not yet committed. A commit is
    a round trip: made at most every ``COMMIT_INTERVAL_S`` under load, at once when the
    stage has settled everything (idle, a rebalance, a timer, stopping). Offsets of
    partitions the stage no longer owns are dropped (their new owner reads them again);
    offsets not committed because the broker was away go with the next commit, unless
    newer ones came by then."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.offsets: dict = {}
        self._committed_s = 0.0

    def __bool__(self) -> bool:
        return bool(self.offsets)

    def add(self, offsets: dict) -> None:
        self.offsets.update(offsets)

    async def commit(self, source: AIOKafkaConsumer, everything: bool) -> None:
        if self.offsets and (everything or time.monotonic() - self._committed_s >= COMMIT_INTERVAL_S):
            offsets, self.offsets = self.offsets, {}
            self._committed_s = time.monotonic()
            self.offsets = {**await commit_owned(source, offsets, self.stage), **self.offsets}


async def commit_owned(source: AIOKafkaConsumer, offsets: dict, stage: str) -> dict:
    """Commit a stage's ``offsets`` (partition -> next offset) of the partitions it still
    owns: one that moved away would fail the whole commit, and its new owner reads it
    again from the last commit (at least once). Returns the offsets to commit again
    later: all of them when the broker was away, else none."""
    owned = source.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if not offsets:
        return {}
    try:
        await source.commit(offsets)
    except (CommitFailedError, IllegalStateError) as exc:  # the partitions moved meanwhile
        log.warning("%s: commit refused after a rebalance (%s)", stage, type(exc).__name__)
    except KafkaError as exc:
        log.warning("%s: commit failed (%s)", stage, type(exc).__name__)
        return offsets
    return {}


def consumer_lag(source: AIOKafkaConsumer, positions: dict) -> int:
    """Messages between the positions a stage has processed to (partition -> next offset)
    and the end of its assigned partitions, as of the last fetch."""
    behind = 0
    for tp in source.assignment():
        high, position = source.highwater(tp), positions.get(tp)
        if high is not None and position is not None:
            behind += max(0, high - position)
    return behind


def stage_producer(settings: Settings) -> AIOKafkaProducer:
    """A busy stage's producer: every write acknowledged by all replicas (the outbox
    commits on that), sent at once (``linger_ms=0``: the stage hands over whole batches),
    record batches up to 1 MB and requests up to 8 MB."""
    return producer(settings, linger_ms=0, max_batch_size=1 << 20, max_request_size=8 << 20)


def stage_consumer(settings: Settings, group: str, max_partition_fetch_bytes: int) -> AIOKafkaConsumer:
    """A busy stage's consumer in the group ``<app_id>-<group>``: offsets committed by the
    stage's outbox only, fetches answered after at most ``FETCH_MAX_WAIT_MS``, and the
    group's timeouts from the settings. Subscribed by the caller, after ``start``."""
    return consumer(
        settings, group_id=f"{settings.app_id}-{group}", enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_partition_fetch_bytes=max_partition_fetch_bytes,
        session_timeout_ms=int(settings.kafka_session_timeout_s * 1000),
        rebalance_timeout_ms=int(settings.kafka_rebalance_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, settings.kafka_session_timeout_s / 4) * 1000))


def producer(settings: Settings, **kwargs: object) -> AIOKafkaProducer:
    options: dict[str, object] = {"linger_ms": 5, "max_batch_size": 1 << 20, "acks": "all"}
    options.update(kwargs)
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                            **settings.kafka_client_kwargs(), **options)


def consumer(settings: Settings, *topics: str, group_id: str | None = None,
             from_beginning: bool = True, **kwargs: object) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.kafka_bootstrap, group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **settings.kafka_client_kwargs(), **kwargs,
    )
