"""End-to-end benchmark through the real broker: the pipeline against a bare consumer.

    python bench/pipeline.py            # full run
    python bench/pipeline.py --quick    # under 3 minutes, same JSON keys
    python bench/pipeline.py --quick --only-gateways  # the ceiling, keyed JSON, HL7 and FHIR only

Starts the embedded broker, one worker process and a load generator, and measures in one
run (this machine is noisy, so every figure has its baseline beside it):
- the ceiling: a bare aiokafka consumer draining N one-sample messages;
- saturation of the full pipeline (ingest, features, scores, alert policy) with one sample
  per message keyed by patient (``pipeline_samples_per_s``, as a gateway sends them), the
  same unkeyed, and gateway-sized messages (10 samples), each on patients already monitored;
- the same saturation with the gateways' formats as the front doors put them on vitals.raw:
  HL7 v2 PCD-01 reports of 10 OBX (``pipeline_samples_per_s_hl7``) and FHIR Bundles of 10
  Observations (``pipeline_samples_per_s_fhir``), keyed by patient, with the format header;
- latency from device time to sample scored (worker histogram, and a real Prometheus
  server's histogram_quantile over the same run) and to alert on the alerts topic, at fixed
  offered loads;
- catch-up after a broker outage: the backlog of a 1,000-bed hospital at 1 Hz (6,000
  samples/s) over 30 minutes (``--quick``: 2 minutes, said in the output), drained by the
  worker and by a bare consumer reading the same messages (``catchup_drain_s``,
  ``catchup_bare_drain_s``, ``catchup_ratio``);
- resident memory of the worker with 1,000 and 10,000 monitored patients.
The last line of standard output is one JSON object. The worker's log is kept where
BENCH_WORKER_LOG points, if set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import orjson
from aiokafka import TopicPartition

from vitalstream.broker import EmbeddedBroker, free_port, wait_for_port
from vitalstream.kafka import consumer, ensure_topics, producer
from vitalstream.metrics import LATENCY_BUCKETS_S
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

PARAMS = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature")
NORMAL = {"heart_rate": 75.0, "resp_rate": 16.0, "spo2": 97.0, "systolic_bp": 125.0, "temperature": 36.9}
# A patient in this state scores NEWS2 >= 7 (high): the alerts measured for latency.
DETERIORATING = {"heart_rate": 128.0, "resp_rate": 27.0, "spo2": 90.0, "systolic_bp": 95.0, "temperature": 38.9}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sample(patient: int, parameter: str, value: float, t_ms: int, prefix: str = "b") -> dict:
    # Each phase has its own patients (prefix): a patient's device time never jumps
    # between phases, which would be a gap in the data and raise technical alerts.
    return {"patient_id": f"{prefix}{patient:06d}", "ward": f"W{patient % 20:02d}", "bed": str(patient),
            "parameter": parameter, "value": value, "device_time_ms": t_ms, "source": "bench"}


def messages(n_samples: int, per_message: int, n_patients: int, t0_ms: int,
             deteriorating_every: int = 0, prefix: str = "b") -> list[bytes]:
    """n_samples readings of n_patients at 1 Hz device time, per_message to a message."""
    out, batch = [], []
    for i in range(n_samples):
        patient = i % n_patients
        second = i // n_patients
        parameter = PARAMS[(i // n_patients) % len(PARAMS)] if per_message == 1 else PARAMS[i % len(PARAMS)]
        base = DETERIORATING if deteriorating_every and patient % deteriorating_every == 0 else NORMAL
        batch.append(sample(patient, parameter, base[parameter] + (second % 3) * 0.5, t0_ms + second * 1000, prefix))
        if len(batch) == per_message:
            out.append(orjson.dumps(batch if per_message > 1 else batch[0]))
            batch = []
    if batch:
        out.append(orjson.dumps(batch))
    return out


async def produce(settings: Settings, topic: str, payloads: list[bytes], keys: list[bytes] | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> float:
    gateway = producer(settings, linger_ms=5, acks=1)
    await gateway.start()
    started = time.perf_counter()
    try:
        futures = [await gateway.send(topic, payload, key=keys[i] if keys else None, headers=headers)
                   for i, payload in enumerate(payloads)]
        await gateway.flush()
        await asyncio.gather(*futures)
    finally:
        await gateway.stop()
    return time.perf_counter() - started


async def bare_consumer_rate(settings: Settings, topic: str, n_messages: int) -> float:
    """Messages/s of a bare aiokafka consumer decoding each JSON message (the ceiling)."""
    source = consumer(settings, topic, max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=20)
    await source.start()
    seen = 0
    started = None
    try:
        while seen < n_messages:
            batch = await source.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                if started is None:
                    started = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
    finally:
        await source.stop()
    return n_messages / (time.perf_counter() - (started or time.perf_counter()))


def wait_processed(worker: WorkerProcess, target: float, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done = worker.metric("vitalstream_samples_processed_total")
        except OSError:  # (a timeout too) a saturated worker on a busy machine answers late: ask again
            continue
        if done >= target:
            return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"worker processed {worker.metric('vitalstream_samples_processed_total')} of {target}")


def saturation(settings: Settings, worker: WorkerProcess, n_samples: int, per_message: int,
               n_patients: int, already: float, prefix: str, keyed: bool) -> float:
    """Samples/s: preload the topic while the worker is stopped (SIGSTOP), then time the drain.

    As in the latency phases, the patients are already monitored: their history is sent
    and scored first, so the drain does not time the admission of 1,000 new patients."""
    t0_ms = int(time.time() * 1000) - 3_600_000
    history = asyncio.run(send_history(settings, n_patients, prefix, end_ms=t0_ms))
    already += history
    wait_processed(worker, already, 120)
    payloads = messages(n_samples, per_message, n_patients, t0_ms, prefix=prefix)
    # Keyed: one reading a message, keyed by patient as a gateway keys it (and as the
    # latency phases are). Unkeyed, a patient's readings are spread over the partitions of
    # vitals.raw and reach the monitor out of time order, which it must sort; a message of
    # ten holds ten patients' readings and has no one key.
    keys = [orjson.loads(payload)["patient_id"].encode() for payload in payloads] if keyed else None
    os.kill(worker.process.pid, 19)  # SIGSTOP: the backlog builds up untouched
    try:
        asyncio.run(produce(settings, settings.topic_raw, payloads, keys))
    finally:
        os.kill(worker.process.pid, 18)  # SIGCONT
    started = time.perf_counter()
    finished = wait_processed(worker, already + n_samples, 600)
    return n_samples / (finished - started)


def gateway_messages(fmt: str, n_samples: int, n_patients: int, t0_ms: int, prefix: str) -> tuple[list[bytes], list[bytes]]:
    """n_samples readings of n_patients at 1 Hz device time as the simulator's gateway
    messages of ten readings of one patient (two seconds of five vital signs): HL7 v2
    PCD-01 ORU^R01 reports or FHIR collection Bundles. Returns the payloads and their keys."""
    from simulators.formats import to_message
    from vitalstream.samples import CANONICAL_UNITS, Sample

    payloads, keys = [], []
    for number in range(n_samples // 10):
        patient, round_number = number % n_patients, number // n_patients
        readings = []
        for second in (2 * round_number, 2 * round_number + 1):
            for parameter in PARAMS:
                record = sample(patient, parameter, NORMAL[parameter] + (second % 3) * 0.5, t0_ms + second * 1000, prefix)
                readings.append(Sample(record["patient_id"], record["ward"], record["bed"], parameter, record["value"],
                                       CANONICAL_UNITS[parameter], record["device_time_ms"], record["source"], 0))
        payloads.append(to_message(readings, fmt, control_id=str(number)))
        keys.append(readings[0].patient_id.encode())
    return payloads, keys


def gateway_saturation(settings: Settings, worker: WorkerProcess, fmt: str, n_samples: int, n_patients: int,
                       already: float, prefix: str) -> float:
    """Samples/s of the whole pipeline fed by a front door: as `saturation`, with the
    gateway's messages (ten readings each) keyed by patient and with the format header the
    door writes, so ingest reads them as HL7 v2 or FHIR."""
    t0_ms = int(time.time() * 1000) - 3_600_000
    history = asyncio.run(send_history(settings, n_patients, prefix, end_ms=t0_ms))
    already += history
    wait_processed(worker, already, 120)
    payloads, keys = gateway_messages(fmt, n_samples, n_patients, t0_ms, prefix)
    headers = [("vitalstream-format", fmt.encode()), ("vitalstream-door", b"bench")]
    os.kill(worker.process.pid, 19)  # SIGSTOP
    try:
        asyncio.run(produce(settings, settings.topic_raw, payloads, keys, headers))
    finally:
        os.kill(worker.process.pid, 18)  # SIGCONT
    started = time.perf_counter()
    finished = wait_processed(worker, already + 10 * len(payloads), 600)
    return 10 * len(payloads) / (finished - started)


# A bedside monitor's six numeric parameters: 1,000 beds at 1 Hz make 6,000 samples/s.
CATCHUP_PARAMS = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "diastolic_bp", "temperature")
CATCHUP_VALUES = {**NORMAL, "diastolic_bp": 75.0}
CATCHUP_DETERIORATING = {**DETERIORATING, "diastolic_bp": 60.0}


async def produce_backlog(settings: Settings, n_patients: int, outage_s: int, t0_ms: int,
                          prefix: str) -> tuple[int, int, dict[int, tuple[int, int]], float]:
    """What the gateways send during an outage: each bed's six readings of each second as
    one message keyed by patient, device time from ``t0_ms`` on for ``outage_s`` seconds.
    Made and sent one minute of device time at a time (the whole backlog is about 1.5 GB
    of JSON). Returns messages, samples, partition -> (first, last offset) and seconds."""
    gateway = producer(settings, linger_ms=5, acks=1)
    await gateway.start()
    n_messages = n_samples = 0
    spans: dict[int, tuple[int, int]] = {}
    started = time.perf_counter()
    try:
        for minute in range(0, outage_s, 60):
            futures = []
            for second in range(minute, min(minute + 60, outage_s)):
                t_ms = t0_ms + second * 1000
                wobble = (second % 3) * 0.5
                for patient in range(n_patients):
                    patient_id = f"{prefix}{patient:06d}"
                    base = CATCHUP_DETERIORATING if patient % 50 == 0 else CATCHUP_VALUES
                    body = [{"patient_id": patient_id, "ward": f"W{patient % 20:02d}", "bed": str(patient),
                             "parameter": parameter, "value": base[parameter] + wobble,
                             "device_time_ms": t_ms, "source": "bench"} for parameter in CATCHUP_PARAMS]
                    futures.append(await gateway.send(settings.topic_raw, orjson.dumps(body),
                                                      key=patient_id.encode()))
                    n_samples += len(body)
            for meta in await asyncio.gather(*futures):
                first, last = spans.get(meta.partition, (meta.offset, meta.offset))
                spans[meta.partition] = (min(first, meta.offset), max(last, meta.offset))
            n_messages += len(futures)
    finally:
        await gateway.stop()
    return n_messages, n_samples, spans, time.perf_counter() - started


async def bare_drain_s(settings: Settings, topic: str, spans: dict[int, tuple[int, int]]) -> float:
    """Seconds a bare aiokafka consumer takes to read and decode the backlog's messages
    (offsets ``spans``, partition -> (first, last)), from its first fetched record."""
    source = consumer(settings, max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=20)
    await source.start()
    tps = {TopicPartition(topic, p): span for p, span in spans.items()}
    source.assign(list(tps))
    for tp, (first, _) in tps.items():
        source.seek(tp, first)
    wanted = sum(last - first + 1 for first, last in spans.values())
    seen, started = 0, None
    try:
        while seen < wanted:
            for tp, records in (await source.getmany(*tps, timeout_ms=200, max_records=10_000)).items():
                if started is None:
                    started = time.perf_counter()
                last = tps[tp][1]
                for record in records:
                    if record.offset <= last:
                        orjson.loads(record.value)
                        seen += 1
    finally:
        await source.stop()
    return time.perf_counter() - (started or time.perf_counter())


def catchup(settings: Settings, worker: WorkerProcess, outage_s: int, n_patients: int,
            already: float, prefix: str) -> dict[str, object]:
    """The backlog of a broker outage, drained. The hospital's patients are monitored
    before it (55 s of history each); then the worker is frozen (SIGSTOP: it neither reads
    nor heartbeats, as when it cannot reach the broker) while the gateways' readings of
    ``outage_s`` seconds of device time pile up on vitals.raw; a bare consumer reads the
    same messages; then the worker goes on (SIGCONT) and the drain is timed until every
    backlog sample is scored. The worker's group membership has expired by then, so the
    drain includes its rejoining the group and restoring its patients' state, as after a
    real outage."""
    t0_ms = int(time.time() * 1000) - outage_s * 1000 - 60_000
    history = asyncio.run(send_history(settings, n_patients, prefix, end_ms=t0_ms))
    already += history
    wait_processed(worker, already, 120)
    os.kill(worker.process.pid, 19)  # SIGSTOP
    try:
        n_messages, n_samples, spans, produce_s = asyncio.run(
            produce_backlog(settings, n_patients, outage_s, t0_ms, prefix))
        log(f"  backlog: {n_messages:,} messages, {n_samples:,} samples, produced in {produce_s:.0f} s")
        bare_s = asyncio.run(bare_drain_s(settings, settings.topic_raw, spans))
        log(f"  bare consumer drained it in {bare_s:.1f} s")
    finally:
        os.kill(worker.process.pid, 18)  # SIGCONT
    started = time.perf_counter()
    first_s = None
    deadline = time.monotonic() + 3600
    done = already
    while time.monotonic() < deadline:
        try:
            done = worker.metric("vitalstream_samples_processed_total")
        except OSError:  # (a timeout too) the web page shares the loop with a large batch: ask again
            continue
        if first_s is None and done > already:
            first_s = time.perf_counter() - started
        if done >= already + n_samples:
            break
        time.sleep(0.1)
    else:
        raise TimeoutError(f"catch-up: worker processed {done - already:.0f} of {n_samples} backlog samples")
    drain_s = time.perf_counter() - started
    return {"catchup_outage_s": outage_s, "catchup_samples": n_samples, "catchup_messages": n_messages,
            "catchup_drain_s": round(drain_s, 1), "catchup_first_sample_s": round(first_s or drain_s, 1),
            "catchup_samples_per_s": round(n_samples / drain_s),
            "catchup_bare_drain_s": round(bare_s, 2), "catchup_ratio": round(bare_s / drain_s, 3),
            "catchup_goal_s": 120}


def histogram_counts(text: str, name: str) -> np.ndarray:
    counts = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            counts.append(float(line.rsplit(" ", 1)[1]))
    return np.array(counts)


def quantile_from_counts(cumulative: np.ndarray, q: float) -> float:
    bounds = [*LATENCY_BUCKETS_S, float("inf")]
    total = cumulative[-1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower, lower_count = bound, count
    return lower


async def send_history(settings: Settings, n_patients: int, prefix: str, end_ms: int | None = None) -> int:
    """The phase measures a hospital whose patients are already monitored: each gets 55 s
    of back-dated history first (sent, and scored, before the measurement starts), so the
    phase does not time the admission of 1,000 patients in its first second. Readings are
    keyed by patient, as a gateway does, so a patient's readings stay in order across the
    partitions of vitals.raw (unkeyed, a deteriorating patient's condition could start up
    to one history step late, and its alert come after the phase). The policy
    raises a high alert once the condition has held for 60 s and is measured again: 55 s
    of deteriorating history is not long enough to raise anything, long enough that the
    phase's own readings do."""
    gateway = producer(settings, linger_ms=5, acks=1)
    await gateway.start()
    history_ms = int(time.time() * 1000) if end_ms is None else end_ms
    count = 0
    try:
        for back_s in range(55, 0, -10):
            for patient in range(n_patients):
                for parameter in PARAMS:
                    base = DETERIORATING if patient % 50 == 0 else NORMAL
                    reading = sample(patient, parameter, base[parameter], history_ms - back_s * 1000, prefix)
                    await gateway.send(settings.topic_raw, orjson.dumps(reading), key=reading["patient_id"].encode())
                    count += 1
        await gateway.flush()
    finally:
        await gateway.stop()
    return count


async def offered_load(settings: Settings, rate: float, seconds: float, n_patients: int,
                       alert_latencies: list[float], prefix: str) -> int:
    """Send readings stamped with the current time at a fixed rate; collect the latency of
    the clinical alerts that the phase's own readings trigger."""
    phase_start_ms = int(time.time() * 1000)
    gateway = producer(settings, linger_ms=1, acks=1)
    alerts = consumer(settings, settings.topic_alerts, from_beginning=False, fetch_max_wait_ms=20)
    await gateway.start()
    await alerts.start()
    while not alerts.assignment():
        await alerts.getmany(timeout_ms=50)
    for tp in alerts.assignment():
        await alerts.seek_to_end(tp)
        await alerts.position(tp)  # resolved now: an alert raised by the first reading is not missed

    async def listen() -> None:
        async for message in alerts:
            alert = orjson.loads(message.value)
            # Technical alerts of earlier phases' patients (their data stopped) are not ours.
            if (alert.get("kind") == "clinical" and alert.get("patient_id", "").startswith(prefix)
                    and alert["device_time_ms"] >= phase_start_ms):
                alert_latencies.append(time.time() - alert["device_time_ms"] / 1000.0)

    listener = asyncio.create_task(listen())
    sent = 0
    started = time.perf_counter()
    tick = 0.01
    try:
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) - sent
            now_ms = int(time.time() * 1000)
            for _ in range(max(due, 0)):
                patient = sent % n_patients
                parameter = PARAMS[(sent // n_patients) % len(PARAMS)]
                base = DETERIORATING if patient % 50 == 0 else NORMAL
                reading = sample(patient, parameter, base[parameter], now_ms, prefix)
                await gateway.send(settings.topic_raw, orjson.dumps(reading), key=reading["patient_id"].encode())
                sent += 1
            await asyncio.sleep(tick)
        await gateway.flush()
        await asyncio.sleep(2.0)  # let the last alerts arrive
    finally:
        listener.cancel()
        await gateway.stop()
        await alerts.stop()
    return sent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Prometheus:
    """Debian's prometheus server scraping the worker every second, on loopback."""

    def __init__(self, target: str, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.target = target
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus | None:
        binary = shutil.which("prometheus")
        if binary is None:
            log("prometheus not installed (make system-deps): skipping the server comparison")
            return None
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: vitalstream\n    static_configs: [{{targets: ['{self.target}']}}]\n")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_for_port("127.0.0.1", self.port, 30):
            self.stop()
            return None
        return self

    def query(self, expression: str, at_s: float) -> float:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expression, "time": f"{at_s:.3f}"})
        with urllib.request.urlopen(url, timeout=10) as response:
            result = json.loads(response.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else float("nan")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def run_catchup(settings: Settings, worker: WorkerProcess, outage_s: int, quick: bool,
                result: dict[str, object]) -> None:
    log(f"catch-up after a broker outage of {outage_s // 60} min at 6,000 samples/s (1,000 beds at 1 Hz)"
        + (" -- --quick: a shorter outage than the 30 min of the goal" if quick else ""))
    done = worker.metric("vitalstream_samples_processed_total")
    figures = catchup(settings, worker, outage_s, 1000, done, prefix="c-")
    if quick:
        figures["catchup_note"] = f"--quick: {outage_s // 60} min outage, not the goal's 30 min"
    result.update(figures)
    log(f"  drained in {figures['catchup_drain_s']} s (goal: under 120 s for 30 min), bare consumer "
        f"{figures['catchup_bare_drain_s']} s, ratio {figures['catchup_ratio']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller workloads, under 3 minutes (the catch-up outage: 2 minutes, not 30)")
    parser.add_argument("--only-catchup", action="store_true", help="the catch-up phase alone (after the warm-up)")
    parser.add_argument("--only-gateways", action="store_true",
                        help="only the bare consumer, keyed saturation and the HL7 and FHIR phases")
    args = parser.parse_args()
    quick = args.quick
    outage_s = 120 if quick else 1800
    n_saturation = 60_000 if quick else 300_000
    load_seconds = 8.0 if quick else 30.0
    loads = (1_000, 5_000, 20_000)
    result: dict[str, object] = {"quick": quick}
    with tempfile.TemporaryDirectory(prefix="vitalstream-bench-") as scratch, \
            EmbeddedBroker(log_path=Path(scratch) / "broker.log") as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=4)
        asyncio.run(ensure_topics(settings, extra=("bench.bare",)))

        log(f"bare consumer: {n_saturation:,} one-sample messages")
        bare_payloads = messages(n_saturation, 1, 1000, int(time.time() * 1000))
        asyncio.run(produce(settings, "bench.bare", bare_payloads))
        bare = asyncio.run(bare_consumer_rate(settings, "bench.bare", len(bare_payloads)))
        result["bare_consumer_samples_per_s"] = round(bare)
        log(f"  {bare:,.0f} messages/s")

        # A long session timeout: the worker is frozen (SIGSTOP) while each backlog is loaded.
        worker = WorkerProcess(broker.bootstrap, log_path=Path(os.environ.get("BENCH_WORKER_LOG", Path(scratch) / "worker.log")),
                               state_dir=str(Path(scratch) / "state"),
                               env={"VITALSTREAM_KAFKA_SESSION_TIMEOUT_S": "30"}).start()
        prometheus = Prometheus(f"127.0.0.1:{worker.web_port}", Path(scratch)).start()
        try:
            # Warm up: the first batch loads the model and the numba kernels.
            asyncio.run(produce(settings, settings.topic_raw,
                                messages(2_000, 1, 1000, int(time.time() * 1000) - 7_200_000, prefix="w")))
            wait_processed(worker, 2_000, 120)
            result["rss_mb_1000_patients"] = round(rss_mb(worker.process.pid), 1)
            if args.only_catchup:
                run_catchup(settings, worker, outage_s, quick, result)
                print(json.dumps(result))
                return 0

            phases = ((1, True, "pipeline_samples_per_s"), (1, False, "pipeline_samples_per_s_unkeyed"),
                      (10, False, "pipeline_samples_per_s_10_per_message"))
            for per_message, keyed, key in phases[:1] if args.only_gateways else phases:
                done = worker.metric("vitalstream_samples_processed_total")
                log(f"pipeline saturation, {per_message} sample(s) per message, "
                    f"{'keyed by patient' if keyed else 'unkeyed'}: {n_saturation:,} samples")
                rate = saturation(settings, worker, n_saturation, per_message, 1000, done,
                                  prefix=f"s{per_message}{'k' if keyed else 'u'}-", keyed=keyed)
                result[key] = round(rate)
                log(f"  {rate:,.0f} samples/s")
            result["ratio"] = round(result["pipeline_samples_per_s"] / bare, 3)
            for fmt in ("hl7", "fhir"):
                done = worker.metric("vitalstream_samples_processed_total")
                log(f"pipeline saturation, {fmt} messages of 10 readings as the front door publishes them, "
                    f"keyed by patient: {n_saturation:,} samples")
                rate = gateway_saturation(settings, worker, fmt, n_saturation, 1000, done, prefix=f"g{fmt}-")
                result[f"pipeline_samples_per_s_{fmt}"] = round(rate)
                result[f"ratio_{fmt}"] = round(rate / bare, 3)
                log(f"  {rate:,.0f} samples/s, {rate / bare:.1%} of the bare consumer")
            if args.only_gateways:
                return finish(result)

            latency: dict[str, dict[str, float]] = {}
            for rate in loads:
                done = worker.metric("vitalstream_samples_processed_total")
                history = asyncio.run(send_history(settings, 1000, f"l{rate}-"))
                wait_processed(worker, done + history, 120)
                # A gap, so the server's window holds this phase alone. Before the first,
                # one stale check (every 10 s) more: the history moved the stream clocks to
                # now, so the saturation phases' patients, silent since an hour of device
                # time, get their "no data" alerts then, not during the measurement.
                time.sleep(3.0 if rate != loads[0] else 13.0)
                before = histogram_counts(worker.scrape(), "vitalstream_sample_latency_seconds")
                alert_latencies: list[float] = []
                log(f"offered load {rate:,} samples/s for {load_seconds:.0f} s")
                started_s = time.time()
                sent = asyncio.run(offered_load(settings, rate, load_seconds, 1000, alert_latencies,
                                                prefix=f"l{rate}-"))
                after = histogram_counts(worker.scrape(), "vitalstream_sample_latency_seconds")
                window = after - before
                figures = {
                    "offered_samples_per_s": rate, "sent": sent,
                    "achieved_samples_per_s": round(sent / load_seconds),
                    **{f"sample_p{q}_ms": round(float(1000 * quantile_from_counts(window, q / 100)), 2)
                       for q in (50, 95, 99)},
                    "alerts": len(alert_latencies),
                }
                if alert_latencies:
                    values = np.array(alert_latencies) * 1000
                    figures.update({f"alert_p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)})
                    figures["alert_max_ms"] = round(float(values.max()), 1)
                if prometheus is not None:
                    ended_s = time.time()
                    time.sleep(2.5)  # one more scrape after the phase
                    span = max(2, round(ended_s - started_s + 1))
                    figures["prometheus_sample_p99_ms"] = round(1000 * prometheus.query(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(increase(vitalstream_sample_latency_seconds_bucket[{span}s])))", ended_s + 1), 2)
                latency[str(rate)] = figures
                log(f"  {figures}")
            result["latency"] = latency
            result["p99_ms_at_5000"] = latency["5000"]["sample_p99_ms"]
            result["alert_p99_ms_at_5000"] = latency["5000"].get("alert_p99_ms")
            if prometheus is not None:
                result["prometheus_p99_ms_at_5000"] = latency["5000"]["prometheus_sample_p99_ms"]

            run_catchup(settings, worker, outage_s, quick, result)

            monitored = worker.metric("vitalstream_patients_monitored")
            extra = max(0, 10_000 - int(monitored))
            log(f"memory: {int(monitored):,} monitored patients, adding {extra:,} to reach 10,000")
            done = worker.metric("vitalstream_samples_processed_total")
            asyncio.run(produce(settings, settings.topic_raw,
                                messages(extra * 5, 5, extra, int(time.time() * 1000), prefix="m")))
            wait_processed(worker, done + extra * 5, 300)
            result["patients_monitored_at_rss"] = int(worker.metric("vitalstream_patients_monitored"))
            result["rss_mb_10000_patients"] = round(rss_mb(worker.process.pid), 1)
            # And once the burst that admitted them is over (the worker hands freed heap
            # back every 10 s): what a worker monitoring them keeps.
            time.sleep(12.0)
            result["rss_mb_10000_patients_settled"] = round(rss_mb(worker.process.pid), 1)
            log(f"  {result['rss_mb_10000_patients']} MB at once, {result['rss_mb_10000_patients_settled']} MB 12 s later")
        finally:
            if prometheus is not None:
                prometheus.stop()
            worker.stop()
    return finish(result)


def finish(result: dict[str, object]) -> int:
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    from vitalstream.process import stop_on_sigterm

    stop_on_sigterm()  # SIGTERM stops the broker and worker this run started, as Ctrl-C does
    sys.exit(main())
