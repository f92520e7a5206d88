"""A burst: the gateways send 10x their steady rate for 60 s (a ward's backlog after a
network blip, a new ward switched on). The worker absorbs it, the lag drains after it,
and every sample sent is scored: none is dropped."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from faults.faultkit import Background, cohort_workload, metric_or_zero, send

from vitalstream.broker import EmbeddedBroker
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.broker]

STEADY_PER_S = 15.0  # messages a second: about 900 beds reporting once a minute
BURST_FACTOR = 10
BURST_S = 60.0
STEADY_S = 5.0
RECOVERY_LIMIT_S = 60.0


@pytest.mark.timeout(240)
def test_ten_times_the_steady_rate_for_60_s_is_absorbed_and_no_sample_is_dropped(
        broker: EmbeddedBroker, settings: Settings, tmp_path: Path, artifacts_dir: Path) -> None:
    n_steady = int(STEADY_PER_S * STEADY_S)
    n_burst = int(STEADY_PER_S * BURST_FACTOR * BURST_S)
    ward = cohort_workload(n_patients=120, hours=3.0, seed=5, deteriorating_fraction=0.1,
                           max_messages=2 * n_steady + n_burst)
    before, burst, after = (ward.messages[:n_steady], ward.messages[n_steady:n_steady + n_burst],
                            ward.messages[n_steady + n_burst:])
    assert len(burst) == n_burst and len(after) == n_steady

    async def gateway() -> float:
        await send(settings, before, rate_per_s=STEADY_PER_S)
        started = time.monotonic()
        await send(settings, burst, rate_per_s=STEADY_PER_S * BURST_FACTOR)
        burst_s = time.monotonic() - started
        await send(settings, after, rate_per_s=STEADY_PER_S)
        return burst_s

    with WorkerProcess(broker.bootstrap, log_path=tmp_path / "worker.log") as worker:
        trace: list[tuple[float, float, float]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                trace.append((time.monotonic(), metric_or_zero(worker, "vitalstream_messages_in_total"),
                              metric_or_zero(worker, "vitalstream_samples_processed_total")))
                time.sleep(1.0)

        watcher = threading.Thread(target=watch, daemon=True)
        started = time.monotonic()
        watcher.start()
        sender = Background(gateway())
        burst_s = sender.join(BURST_S + 2 * STEADY_S + 60)
        sent_at = time.monotonic()
        caught_up = False
        while time.monotonic() - sent_at < RECOVERY_LIMIT_S:
            if worker.metric("vitalstream_samples_processed_total") >= ward.samples:
                caught_up = True
                break
            time.sleep(0.5)
        recovery_s = time.monotonic() - sent_at
        time.sleep(1.0)
        done.set()
        watcher.join(5)
        # The worker's own lag gauges agree: nothing left behind on either input topic.
        lag_text = worker.scrape()
        lags = {topic: worker.metric(f'vitalstream_consumer_lag_messages{{topic="{topic}"}}')
                for topic in ("vitals.raw", "vitals")}
        samples_in = worker.metric("vitalstream_samples_in_total")
        processed = worker.metric("vitalstream_samples_processed_total")
        messages_in = worker.metric("vitalstream_messages_in_total")
        dead = worker.metric("vitalstream_messages_deadlettered_total")

    # Lag as the gateway sees it: sent by the schedule so far, minus read by ingest.
    def sent_by(t: float) -> float:
        s = t - started
        if s < STEADY_S:
            return s * STEADY_PER_S
        if s < STEADY_S + burst_s:
            return n_steady + (s - STEADY_S) * STEADY_PER_S * BURST_FACTOR
        return min(len(ward.messages), n_steady + n_burst + (s - STEADY_S - burst_s) * STEADY_PER_S)

    max_lag = max((sent_by(t) - read for t, read, _ in trace), default=0.0)
    (artifacts_dir / "burst_trace.csv").write_text(
        "t_s,messages_read,samples_scored\n"
        + "".join(f"{t - started:.1f},{read:.0f},{scored:.0f}\n" for t, read, scored in trace))
    print(f"burst: {len(ward.messages)} messages, {ward.samples} samples; burst {n_burst} messages "
          f"in {burst_s:.1f} s ({n_burst / burst_s:.0f}/s); max ingest lag {max_lag:.0f} messages; "
          f"all scored {recovery_s:.1f} s after the last send")
    assert burst_s <= BURST_S * 1.5, "the test could not produce the burst rate"
    assert caught_up, f"lag did not recover within {RECOVERY_LIMIT_S} s: {processed} of {ward.samples}"
    assert messages_in == len(ward.messages) and dead == 0
    assert all(f'vitalstream_consumer_lag_messages{{topic="{t}"}}' in lag_text for t in lags), \
        "the worker does not export its consumer lag"
    assert lags == {"vitals.raw": 0, "vitals": 0}, (lags, [line for line in lag_text.splitlines()
                                                         if line.startswith("vitalstream_consumer_lag")])
    assert samples_in == ward.samples, "ingest dropped samples"
    # At-least-once: a sample may be scored twice after a rebalance, never zero times.
    assert processed >= ward.samples
