"""Alert fan-out of one station service process to many station connections.

Starts the embedded broker and `vitalstream station` (a child process), opens N SSE
connections, publishes alerts to the alerts topic, and measures for every connection the
time from just before the alert was produced to Kafka until the connection has read it
(broker hop + service + socket + client parse). Two layouts, each with its own fresh
connections, against the same service:

- single ward: all N connections follow ONE ward, so every alert goes to all N (the
  worst case for fan-out);
- spread: the N connections spread over --wards wards (as in a hospital).

The baseline is one connection, measured first in the same run. The clients run in this
process, on the same machine, so their own CPU time is included (a conservative figure).

    python bench/station.py --connections 500            # both layouts
    python bench/station.py --layout single              # only all-on-one-ward
Last line of standard output: one JSON object: connections, fanout_p99_ms (the worse of
the layouts run), meets_target, and per layout single_ward / spread {p50, p99, ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import ensure_topics, producer
from vitalstream.settings import Settings
from vitalstream.signing import Keyring, run_keys


def token_for(ward: str) -> str:
    return f"bench-station-token-ward-{ward}"


async def listen(url: str, ward: str, latencies: list[float], ready: asyncio.Event,
                 opened: list[int], session: aiohttp.ClientSession) -> None:
    async with session.get(f"{url}/api/stream", headers={"Authorization": f"Bearer {token_for(ward)}"}) as response:
        if response.status != 200:
            raise RuntimeError(f"stream refused: {response.status}")
        await response.content.readuntil(b"\n\n")  # retry: line
        await response.content.readuntil(b"\n\n")  # snapshot
        opened[0] += 1
        if opened[0] == opened[1]:
            ready.set()
        while True:
            frame = await response.content.readuntil(b"\n\n")
            received_s = time.time()
            start = frame.find(b"data: ")
            if start < 0:  # a keep-alive comment
                continue
            data = frame[start + 6:]
            message = orjson.loads(data)
            if message.get("type") == "alert":
                latencies.append(received_s - message["alert"]["payload"]["bench_sent_s"])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, settings: Settings, connections: int, wards: list[str], alerts: int,
                  interval_s: float, label: str, service_pid: int) -> dict[str, float]:
    latencies: list[float] = []
    ready = asyncio.Event()
    opened = [0, connections]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(listen(url, wards[i % len(wards)], latencies, ready, opened, session))
                 for i in range(connections)]
        await asyncio.wait_for(ready.wait(), 120)
        out = producer(settings, linger_ms=0)
        worker_keys = Keyring.from_json(run_keys()).for_service("worker")
        await out.start()
        service_cpu_s, client_cpu_s = cpu_s(service_pid), time.process_time()
        expected = 0
        per_ward = {w: sum(1 for i in range(connections) if wards[i % len(wards)] == w) for w in wards}
        try:
            for k in range(alerts):
                ward = wards[k % len(wards)]
                alert_id = f"al-bench-{label}-{connections}-{k}"  # unique per layout: not a redelivery
                alert = {"alert_id": alert_id, "event_id": f"{alert_id}/raised",
                         "patient_id": f"p-bench-{k}", "ward": ward, "bed": str(k % 30 + 1),
                         "kind": "clinical", "priority": "high", "status": "raised",
                         "summary": f"Bed {k % 30 + 1}, Ward {ward}: NEWS2 8 (high).",
                         "device_time_ms": int(time.time() * 1000), "replaces": None,
                         "payload": {"bench_sent_s": time.time()}}
                key, value = ward.encode(), orjson.dumps(alert)  # signed as the worker signs alerts
                await out.send_and_wait(settings.topic_alerts, key=key, value=value,
                                        headers=worker_keys.sign(settings.topic_alerts, key, value))
                expected += per_ward[ward]
                await asyncio.sleep(interval_s)
        finally:
            await out.stop()
        deadline = time.monotonic() + 30
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        service_cpu_s, client_cpu_s = cpu_s(service_pid) - service_cpu_s, time.process_time() - client_cpu_s
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    values_ms = np.asarray(latencies) * 1000.0
    return {"deliveries": int(len(values_ms)), "expected": expected,
            "service_cpu_ms_per_alert": service_cpu_s * 1000.0 / alerts,
            "client_cpu_ms_per_alert": client_cpu_s * 1000.0 / alerts,
            "p50_ms": float(np.percentile(values_ms, 50)), "p99_ms": float(np.percentile(values_ms, 99)),
            "max_ms": float(values_ms.max())}


TARGET_P99_MS = 200


def summary(measured: dict[str, float], connections: int, wards: int, alerts: int) -> dict[str, object]:
    return {"connections": connections, "wards": wards, "alerts": alerts,
            "deliveries": measured["deliveries"], "expected_deliveries": measured["expected"],
            "p50_ms": round(measured["p50_ms"], 2), "p99_ms": round(measured["p99_ms"], 2),
            "max_ms": round(measured["max_ms"], 2),
            # CPU of the service process (and of the benchmark's clients, incl. the
            # producer) from the first alert until the last delivery or the 30 s wait ends.
            "service_cpu_ms_per_alert": round(measured["service_cpu_ms_per_alert"], 2),
            "client_cpu_ms_per_alert": round(measured["client_cpu_ms_per_alert"], 2),
            "meets_target": measured["p99_ms"] <= TARGET_P99_MS and measured["deliveries"] == measured["expected"]}


async def run(args: argparse.Namespace, bootstrap: str, logs: Path) -> dict[str, object]:
    settings = Settings(kafka_bootstrap=bootstrap)
    await ensure_topics(settings)
    wards = [f"W{n}" for n in range(max(args.wards, 1))]
    tokens = {token_for(w): [w] for w in wards}
    layouts: dict[str, dict[str, object]] = {}
    with StationProcess(bootstrap, tokens, log_path=logs / "station.log") as station:
        assert station.process is not None
        pid = station.process.pid
        baseline = await measure(
            station.url, settings, 1, wards[:1], args.alerts // 2, args.interval_s, "baseline",
            pid)
        print(f"baseline 1 connection: p50 {baseline['p50_ms']:.1f} ms, p99 {baseline['p99_ms']:.1f} ms", flush=True)
        plan = {"single_ward": (wards[:1], args.single_alerts), "spread": (wards, args.alerts)}
        for name, (layout_wards, alerts) in plan.items():
            if args.layout not in ("both", name.split("_")[0]):
                continue
            loaded = await measure(station.url, settings, args.connections, layout_wards, alerts,
                                   args.interval_s, name, pid)
            layouts[name] = summary(loaded, args.connections, len(layout_wards), alerts)
            print(f"{name}: {args.connections} connections over {len(layout_wards)} ward(s), {alerts} alerts: "
                  f"{loaded['deliveries']}/{loaded['expected']} deliveries, p50 {loaded['p50_ms']:.1f} ms, "
                  f"p99 {loaded['p99_ms']:.1f} ms, max {loaded['max_ms']:.1f} ms; service CPU "
                  f"{loaded['service_cpu_ms_per_alert']:.1f} ms/alert, clients "
                  f"{loaded['client_cpu_ms_per_alert']:.1f} ms/alert", flush=True)
    worst = max(layouts.values(), key=lambda layout: layout["p99_ms"])  # type: ignore[arg-type,return-value]
    return {"connections": args.connections, "layouts_run": list(layouts),
            "fanout_p50_ms": worst["p50_ms"], "fanout_p99_ms": worst["p99_ms"], "fanout_max_ms": worst["max_ms"],
            "worst_layout": next(name for name, layout in layouts.items() if layout is worst),
            "baseline_connections": 1, "baseline_p99_ms": round(baseline["p99_ms"], 2),
            "p99_ratio_vs_baseline": round(float(worst["p99_ms"]) / max(baseline["p99_ms"], 1e-9), 2),  # type: ignore[arg-type]
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": all(layout["meets_target"] for layout in layouts.values()),
            **layouts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--layout", choices=("both", "single", "spread"), default="both",
                        help="all connections on one ward, spread over --wards, or both (default)")
    parser.add_argument("--wards", type=int, default=10, help="wards of the spread layout")
    parser.add_argument("--alerts", type=int, default=60, help="alerts of the spread layout (over its wards)")
    parser.add_argument("--single-alerts", type=int, default=40, help="alerts of the single-ward layout")
    parser.add_argument("--interval-s", type=float, default=0.05, help="pause between alerts")
    args = parser.parse_args()
    if args.connections < 1 or args.wards < 1 or args.alerts < 2 or args.single_alerts < 1:
        print("bench/station.py: --connections, --wards, --single-alerts must be >= 1 and --alerts >= 2",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "tansu.log") as broker:
        result = asyncio.run(run(args, broker.bootstrap, Path(tmp)))
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    from vitalstream.process import stop_on_sigterm

    stop_on_sigterm()  # SIGTERM stops the broker and worker this run started, as Ctrl-C does
    sys.exit(main())
