"""In-process cost of the monitor's per-reading path: µs per sample of
``Monitor.process_rows`` (and ``bed_states``, as the worker calls it) on quiet-ward
batches keyed by patient, one reading a sample, as ``bench/pipeline.py`` sends them.

    PYTHONPATH=$PWD python bench/monitor_core.py [--patients 1000] [--batches 60]

Prints one JSON line: ``monitor_us_per_sample`` (wall time, median over batches), its
minimum, and ``cpu_us_per_sample`` (process CPU time, median: steadier on a shared machine),
then the same of the baseline measured in the same run on the same batches: the Python
per-reading path the compiled core replaced, kept as the tests' oracle
(``tests/reference_monitor.py``), and ``cpu_ratio`` = baseline CPU / core CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from vitalstream.alerts import AlertPolicy
from vitalstream.features import FeatureEngine
from vitalstream.monitor import Monitor
from vitalstream.samples import SAMPLE_FIELDS

PARAMS = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature")
NORMAL = {"heart_rate": 75.0, "resp_rate": 16.0, "spo2": 97.0, "systolic_bp": 125.0, "temperature": 36.9}


def rows(n_patients: int, second: int, t0_ms: int) -> list[tuple]:
    """One reading of each patient at this second (the parameters take turns)."""
    parameter = PARAMS[second % len(PARAMS)]
    out = []
    for patient in range(n_patients):
        record = {"patient_id": f"q{patient:06d}", "ward": f"W{patient % 20:02d}", "bed": str(patient),
                  "parameter": parameter, "value": NORMAL[parameter] + (second % 3) * 0.5, "unit": "",
                  "device_time_ms": t0_ms + second * 1000, "source": "bench", "ingest_time_ms": 0,
                  "source_code": "", "artefact": False}
        out.append(tuple(record[f] for f in SAMPLE_FIELDS))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--seconds-per-batch", type=int, default=2)
    parser.add_argument("--model", action="store_true", help="with the risk model (scikit-learn)")
    args = parser.parse_args()
    model = None
    if args.model:
        from vitalstream.scoring.model import RiskModel
        model = RiskModel.load(None)
    figures = measure(Monitor(AlertPolicy(), engine=FeatureEngine(), model=model), args)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from reference_monitor import ReferenceMonitor

    baseline = measure(ReferenceMonitor(AlertPolicy(), engine=FeatureEngine(), model=model), args)
    print(json.dumps({**figures, "patients": args.patients, "batch": args.patients * args.seconds_per_batch,
                      "model": args.model,
                      "baseline_us_per_sample": baseline["monitor_us_per_sample"],
                      "baseline_cpu_us_per_sample": baseline["cpu_us_per_sample"],
                      "baseline_alerts": baseline["alerts"],
                      "cpu_ratio": round(baseline["cpu_us_per_sample"] / figures["cpu_us_per_sample"], 1)}))
    return 0


def measure(monitor: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Median µs per sample (wall and CPU) of ``monitor`` on the quiet ward's batches."""
    t0 = 1_773_569_700_000
    second = 0
    for _ in range(20):  # warm up: every patient has every parameter, the kernels are compiled
        for _ in range(args.seconds_per_batch):
            monitor.bed_states(monitor.process_rows(rows(args.patients, second, t0)).assessments)
            second += 1
    per_sample, cpu, alerts = [], [], 0
    for _ in range(args.batches):
        batch = []
        for _ in range(args.seconds_per_batch):
            batch += rows(args.patients, second, t0)
            second += 1
        start, start_cpu = time.perf_counter(), time.process_time()
        result = monitor.process_rows(batch)
        monitor.bed_states(result.assessments)
        per_sample.append((time.perf_counter() - start) / len(batch) * 1e6)
        cpu.append((time.process_time() - start_cpu) / len(batch) * 1e6)
        alerts += len(result.alerts)
    return {"monitor_us_per_sample": round(statistics.median(per_sample), 2), "min": round(min(per_sample), 2),
            "cpu_us_per_sample": round(statistics.median(cpu), 2), "alerts": alerts}


if __name__ == "__main__":
    sys.exit(main())
