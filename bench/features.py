"""Benchmark of the feature engine against the pandas way of computing the same features.

    python bench/features.py            # 1,000 patients, 6 parameters, 10 million samples
    python bench/features.py --quick    # about 30 s

One workload (irregular ~1 Hz streams per patient and parameter, slightly out of order,
a few probe-off artefacts) is measured in the same run by
  (a) the engine: batches in arrival order, a feature row for every patient each batch
      touches (what the monitor does);
  (b) pandas: groupby(patient, parameter).rolling(time window) for the same per-window
      statistics, on a prefix of the workload (its rate is per sample, so a prefix is a
      fair sample of it). Pandas produces a row per sample, the engine a row per touched
      patient per batch: each does what it would do in production.
Also: a batch-size sweep (dispatch overhead), JIT compile time in a fresh process with an
empty cache and with the on-disk cache (what a restarted worker pays), and state bytes per
patient with 10,000 patients. The last line of standard output is one JSON object.

Rates are per second of this process's CPU time: both sides are single-threaded, so that
is time on one core, and it does not count the time other processes on a shared machine
held the CPU (wall-clock rates there move by tens of percent from run to run). Each
measurement is repeated (engine 3 times, pandas twice) and the fastest run counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from vitalstream.features import DEFAULT_WINDOWS_S, FeatureEngine, feature_names, features_at
from vitalstream.features.rules import PHYSIOLOGIC_RANGES
from vitalstream.samples import NUMERIC_PARAMETERS

TYPICAL = np.array([80.0, 18.0, 96.0, 120.0, 70.0, 37.0])
EPOCH_S = 1_773_569_700.0
SWEEP = (1, 10, 100, 1_000, 10_000)
PSV_VITALS = {"HR": 0, "Resp": 1, "O2Sat": 2, "SBP": 3, "DBP": 4, "Temp": 5}


def workload(n_patients: int, n_samples: int, seed: int = 0):
    """Irregular ~1 Hz streams of every patient and parameter, in arrival order."""
    rng = np.random.default_rng(seed)
    n_streams = n_patients * len(NUMERIC_PARAMETERS)
    per_stream = -(-n_samples // n_streams)
    gaps = rng.uniform(0.5, 1.5, (n_streams, per_stream))
    gaps[rng.random(gaps.shape) < 0.001] = 120.0  # the odd gap: probe off, patient walking
    times_s = (EPOCH_S + rng.uniform(0, 1, (n_streams, 1)) + np.cumsum(gaps, axis=1)).ravel()
    stream = np.repeat(np.arange(n_streams), per_stream)
    patients = stream // len(NUMERIC_PARAMETERS)
    params = stream % len(NUMERIC_PARAMETERS)
    # a random walk per stream around the parameter's typical value
    walk = np.cumsum(rng.normal(0.0, 0.002, (n_streams, per_stream)), axis=1).ravel()
    values = np.round(TYPICAL[params] * (1.0 + walk + rng.normal(0.0, 0.01, len(walk))), 1)
    spo2 = params == NUMERIC_PARAMETERS.index("spo2")
    values[spo2] = np.minimum(values[spo2], 100.0)
    values[rng.random(len(values)) < 0.0005] = 0.0  # probe off / lead off
    arrival = np.argsort(times_s + rng.exponential(0.5, len(times_s)), kind="stable")[:n_samples]
    return patients[arrival], params[arrival], times_s[arrival], values[arrival]


def run_engine(patients, params, times_s, values, n_patients: int, batch_size: int):
    engine = FeatureEngine(initial_patients=n_patients)
    slot_of = np.array([engine.slot_for(f"patient-{i}") for i in range(n_patients)])
    slots = slot_of[patients]
    rows = 0
    start = time.process_time()
    for begin in range(0, len(slots), batch_size):
        end = begin + batch_size
        touched, _ = engine.update(slots[begin:end], params[begin:end], times_s[begin:end],
                                   values[begin:end])
        rows += len(touched)
    seconds = time.process_time() - start
    return seconds, rows, engine


def run_pandas(patients, params, times_s, values, windows_s=DEFAULT_WINDOWS_S) -> float:
    """The same per-window features with pandas time-window rolling; returns CPU seconds."""
    import pandas as pd

    start = time.process_time()
    low = np.array([PHYSIOLOGIC_RANGES[p][0] for p in NUMERIC_PARAMETERS])[params]
    high = np.array([PHYSIOLOGIC_RANGES[p][1] for p in NUMERIC_PARAMETERS])[params]
    artefact = (values < low) | (values > high)
    df = pd.DataFrame({"patient": patients, "param": params,
                       "time": pd.to_datetime(times_s, unit="s"), "t": times_s - EPOCH_S,
                       "value": np.where(artefact, np.nan, values),
                       "artefact": artefact.astype(np.float64)})
    df = df.sort_values(["patient", "param", "time"], kind="stable").reset_index(drop=True)
    df["tv"] = df["t"] * df["value"]
    df["tt"] = df["t"] * df["t"]
    df["t_kept"] = df["t"].where(df["value"].notna())
    out = {}
    grouped = df.groupby(["patient", "param"], sort=False)
    out["last"] = grouped["value"].ffill()
    out["age_s"] = df["t"] - grouped["t_kept"].ffill()
    for window_s in windows_s:
        roll = grouped.rolling(f"{window_s}s", on="time")
        label = f"{window_s}s"
        value = roll["value"]
        out[f"count_{label}"] = n = value.count()
        out[f"mean_{label}"] = value.mean()
        out[f"std_{label}"] = value.std()
        out[f"min_{label}"] = value.min()
        out[f"max_{label}"] = value.max()
        out[f"change_{label}"] = out["last"].to_numpy() - value.first().to_numpy()
        sum_t, sum_v = roll["t_kept"].sum(), value.sum()
        sum_tv, sum_tt = roll["tv"].sum(), roll["tt"].sum()
        out[f"slope_per_h_{label}"] = 3600 * (n * sum_tv - sum_t * sum_v) / (n * sum_tt - sum_t**2)
        bucket = (df["t"] // (window_s / 30)).astype(np.int64)
        first_in_bucket = (bucket != grouped["t"].shift().floordiv(window_s / 30)).astype(float)
        df["first_in_bucket"] = first_in_bucket
        out[f"coverage_{label}"] = grouped.rolling(f"{window_s}s", on="time")[
            "first_in_bucket"].sum() / 30
        out[f"artefacts_{label}"] = roll["artefact"].sum()
    # cross-parameter: shock index from each patient's latest HR and SBP at every row
    by_patient = df.sort_values(["patient", "time"], kind="stable")
    hr = by_patient["value"].where(by_patient["param"] == 0).groupby(by_patient["patient"]).ffill()
    sbp = by_patient["value"].where(by_patient["param"] == 3).groupby(by_patient["patient"]).ffill()
    out["shock_index"] = hr / sbp
    return time.process_time() - start


def compile_seconds() -> tuple[float, float]:
    """warm_up() in a fresh process: with an empty numba cache, then with that cache."""
    code = "import vitalstream.features as f; print(f.warm_up())"
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        results = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, check=True)
            results.append(float(done.stdout.strip().splitlines()[-1]))
    return results[0], results[1]


def bytes_per_patient(n_patients: int) -> float:
    engine = FeatureEngine(initial_patients=n_patients)
    for i in range(n_patients):
        engine.slot_for(f"patient-{i}")
    return engine.bytes_per_patient() * engine.capacity / engine.n_patients


def physionet_2019(path: Path):
    """Vitals of PhysioNet 2019 set A as long arrays (one row per hour and present vital)."""
    patients, params, times_s, values, q_patients, q_times = [], [], [], [], [], []
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".psv")]
        for index, member in enumerate(members):
            lines = tar.extractfile(member).read().decode().splitlines()
            header = lines[0].split("|")
            table = np.array([line.split("|") for line in lines[1:]], dtype=np.float64)
            hour_s = table[:, header.index("ICULOS")] * 3600.0
            q_patients.append(np.full(len(hour_s), index))
            q_times.append(hour_s)
            for name, k in PSV_VITALS.items():
                column = table[:, header.index(name)]
                present = ~np.isnan(column)
                patients.append(np.full(present.sum(), index))
                params.append(np.full(present.sum(), k))
                times_s.append(hour_s[present])
                values.append(column[present])
    cat = np.concatenate
    return (cat(patients), cat(params), cat(times_s), cat(values), cat(q_patients), cat(q_times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller workload, about 30 s")
    parser.add_argument("--patients", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--baseline-samples", type=int, default=None,
                        help="prefix of the workload the pandas reference computes")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each engine measurement (pandas: 2); the fastest counts")
    parser.add_argument("--physionet", type=Path, default=None,
                        help="physionet2019_training_setA.tar.gz: also time features_at on it")
    args = parser.parse_args(argv)
    n_patients = args.patients or (300 if args.quick else 1_000)
    n_samples = args.samples or (1_500_000 if args.quick else 10_000_000)
    n_baseline = min(n_samples, args.baseline_samples or (100_000 if args.quick else 500_000))
    if args.physionet is not None and not args.physionet.is_file():
        print(f"features bench: no such file: {args.physionet} (get it from physionet.org, "
              "challenge 2019)", file=sys.stderr)
        return 2

    compile_s, cached_load_s = compile_seconds()
    print(f"JIT compile {compile_s:.2f} s in a fresh process; {cached_load_s:.2f} s from the cache")

    patients, params, times_s, values = workload(n_patients, n_samples)
    run_engine(patients[:20_000], params[:20_000], times_s[:20_000], values[:20_000],
               n_patients, args.batch_size)  # load the kernels in this process
    seconds, rows, engine = min(
        (run_engine(patients, params, times_s, values, n_patients, args.batch_size)
         for _ in range(args.repeat)), key=lambda run: run[0])
    engine_rate = n_samples / seconds
    print(f"engine: {n_samples:,} samples of {n_patients:,} patients in {seconds:.2f} s = "
          f"{engine_rate / 1e6:.2f} M samples/s, {rows:,} feature rows of "
          f"{len(feature_names())} features (batch {args.batch_size:,}); "
          f"late dropped {engine.late_dropped}, artefacts {engine.artefacts}")

    sweep = {}
    sweep_cap = 300_000 if args.quick else 2_000_000
    for batch_size in SWEEP:
        n = min(n_samples, sweep_cap, 5_000 * batch_size)
        s = min(run_engine(patients[:n], params[:n], times_s[:n], values[:n], n_patients,
                           batch_size)[0] for _ in range(args.repeat))
        sweep[batch_size] = n / s
        print(f"  batch {batch_size:>6,}: {n / s / 1e6:6.2f} M samples/s, "
              f"{s / -(-n // batch_size) * 1e6:8.1f} us per call ({n:,} samples)")

    baseline_s = min(run_pandas(patients[:n_baseline], params[:n_baseline],
                                times_s[:n_baseline], values[:n_baseline]) for _ in range(2))
    baseline_rate = n_baseline / baseline_s
    print(f"pandas groupby-rolling: {n_baseline:,} samples in {baseline_s:.2f} s = "
          f"{baseline_rate / 1e6:.3f} M samples/s")

    per_patient = bytes_per_patient(10_000)
    print(f"state: {per_patient:,.0f} bytes per patient at 10,000 patients "
          f"({per_patient / 1024:.1f} KiB; windows {DEFAULT_WINDOWS_S} s)")

    result = {
        "engine_samples_per_s": round(engine_rate),
        "baseline_samples_per_s": round(baseline_rate),
        "ratio": round(engine_rate / baseline_rate, 1),
        "bytes_per_patient": round(per_patient),
        "compile_s": round(compile_s, 2),
        "cached_load_s": round(cached_load_s, 2),
        "batch_size": args.batch_size,
        "sweep_samples_per_s": {str(k): round(v) for k, v in sweep.items()},
        "sweep_ratio": {str(k): round(v / baseline_rate, 1) for k, v in sweep.items()},
        "n_samples": n_samples,
        "n_patients": n_patients,
        "baseline_samples": n_baseline,
        "repeat": args.repeat,
        "n_features": len(feature_names()),
    }
    if args.physionet is not None:
        data = physionet_2019(args.physionet)
        start = time.perf_counter()
        table = features_at(*data)
        result["physionet_features_at_s"] = round(time.perf_counter() - start, 2)
        result["physionet_rows"] = int(table.shape[0])
        print(f"PhysioNet 2019 set A: {table.shape[0]:,} hourly rows, {len(data[0]):,} vitals, "
              f"features_at {result['physionet_features_at_s']} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
