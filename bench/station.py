"""Alert fan-out of one station service process to many station connections.

Starts the embedded broker and `vitalstream station` (a child process), opens N SSE
connections spread over the wards, publishes alerts to the alerts topic, and measures for
every connection the time from just before the alert was produced to Kafka until the
connection has read it (broker hop + service + socket + client parse). The baseline is the
same run with one connection, measured first in the same run. The clients run in this
process, on the same machine, so their own CPU time is included (a conservative figure).

    python bench/station.py --connections 500
Last line of standard output: one JSON object (connections, fanout_p99_ms, ...).
"""

from __future__ import annotations

import argparse
import asyncio
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
            data = frame[frame.index(b"data: ") + 6:]
            message = orjson.loads(data)
            if message.get("type") == "alert":
                latencies.append(received_s - message["alert"]["payload"]["bench_sent_s"])


async def measure(url: str, settings: Settings, connections: int, wards: list[str], alerts: int,
                  interval_s: float) -> dict[str, float]:
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
        await out.start()
        expected = 0
        per_ward = {w: sum(1 for i in range(connections) if wards[i % len(wards)] == w) for w in wards}
        try:
            for k in range(alerts):
                ward = wards[k % len(wards)]
                alert = {"alert_id": f"al-bench-{connections}-{k}", "event_id": f"al-bench-{connections}-{k}/raised",
                         "patient_id": f"p-bench-{k}", "ward": ward, "bed": str(k % 30 + 1),
                         "kind": "clinical", "priority": "high", "status": "raised",
                         "summary": f"Bed {k % 30 + 1}, Ward {ward}: NEWS2 8 (high).",
                         "device_time_ms": int(time.time() * 1000), "replaces": None,
                         "payload": {"bench_sent_s": time.time()}}
                await out.send_and_wait(settings.topic_alerts, key=ward.encode(), value=orjson.dumps(alert))
                expected += per_ward[ward]
                await asyncio.sleep(interval_s)
        finally:
            await out.stop()
        deadline = time.monotonic() + 30
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    values_ms = np.asarray(latencies) * 1000.0
    return {"deliveries": int(len(values_ms)), "expected": expected,
            "p50_ms": float(np.percentile(values_ms, 50)), "p99_ms": float(np.percentile(values_ms, 99)),
            "max_ms": float(values_ms.max())}


async def run(args: argparse.Namespace, bootstrap: str, logs: Path) -> dict[str, object]:
    settings = Settings(kafka_bootstrap=bootstrap)
    await ensure_topics(settings)
    wards = [f"W{n}" for n in range(args.wards)]
    tokens = {token_for(w): [w] for w in wards}
    with StationProcess(bootstrap, tokens, log_path=logs / "station.log") as station:
        baseline = await measure(
            station.url, settings, 1, wards[:1], args.alerts // 2, args.interval_s)
        print(f"baseline 1 connection: p50 {baseline['p50_ms']:.1f} ms, p99 {baseline['p99_ms']:.1f} ms", flush=True)
        loaded = await measure(station.url, settings, args.connections, wards, args.alerts, args.interval_s)
        print(f"{args.connections} connections over {args.wards} wards: {loaded['deliveries']}/{loaded['expected']} "
              f"deliveries, p50 {loaded['p50_ms']:.1f} ms, p99 {loaded['p99_ms']:.1f} ms, max {loaded['max_ms']:.1f} ms",
              flush=True)
    return {"connections": args.connections, "wards": args.wards, "alerts": args.alerts,
            "deliveries": loaded["deliveries"], "expected_deliveries": loaded["expected"],
            "fanout_p50_ms": round(loaded["p50_ms"], 2), "fanout_p99_ms": round(loaded["p99_ms"], 2),
            "fanout_max_ms": round(loaded["max_ms"], 2),
            "baseline_connections": 1, "baseline_p99_ms": round(baseline["p99_ms"], 2),
            "p99_ratio_vs_baseline": round(loaded["p99_ms"] / max(baseline["p99_ms"], 1e-9), 2),
            "target_p99_ms": 200, "meets_target": loaded["p99_ms"] <= 200 and loaded["deliveries"] == loaded["expected"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--wards", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=60, help="alerts published (spread over the wards)")
    parser.add_argument("--interval-s", type=float, default=0.05, help="pause between alerts")
    args = parser.parse_args()
    if args.connections < 1 or args.wards < 1 or args.alerts < 2:
        print("bench/station.py: --connections, --wards must be >= 1 and --alerts >= 2", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "tansu.log") as broker:
        result = asyncio.run(run(args, broker.bootstrap, Path(tmp)))
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
