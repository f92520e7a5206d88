"""A straightforward reference of the feature engine's documented rules (docs/features.md):
a Python loop for the order-dependent artefact and late-sample rules, numpy for the window
statistics over the kept samples. Slow and obvious on purpose."""

from __future__ import annotations

import math

import numpy as np

from vitalstream.features import ArtefactRules, feature_names
from vitalstream.features.names import NEWS2_NUMERIC_INPUTS
from vitalstream.samples import NUMERIC_PARAMETERS

ACCEPTED, LATE, ARTEFACT = "accepted", "late", "artefact"


def classify(params, times_s, values, rules: ArtefactRules, late_tolerance_s: float) -> list[str]:
    """The fate of each sample, taken in arrival order."""
    newest = dict.fromkeys(range(len(NUMERIC_PARAMETERS)), -math.inf)
    last: dict[int, tuple[float, float]] = {}
    run: dict[int, tuple[float, float, int]] = {}
    fates = []
    for k, t, v in zip(params, times_s, values, strict=True):
        k = int(k)
        name = NUMERIC_PARAMETERS[k]
        if t < newest[k] - late_tolerance_s:
            fates.append(LATE)
            continue
        in_order = t >= newest[k]
        newest[k] = max(newest[k], t)
        low, high = rules.ranges[name]
        artefact = not (low <= v <= high)
        if not artefact and in_order:
            if name == "spo2" and k in last:
                last_t, last_v = last[k]
                fall = last_v - v
                if fall >= rules.spo2_dropout_min_drop_pct and \
                        fall > rules.spo2_dropout_max_fall_pct_per_s * (t - last_t):
                    artefact = True
            if name in rules.flat_line_parameters:
                run_v, run_start, run_n = run.get(k, (math.nan, -math.inf, 0))
                run_v, run_start, run_n = (run_v, run_start, run_n + 1) if v == run_v else (v, t, 1)
                run[k] = (run_v, run_start, run_n)
                if not artefact and run_n >= rules.flat_line_min_samples and \
                        t - run_start >= rules.flat_line_s:
                    artefact = True
        if artefact:
            fates.append(ARTEFACT)
            continue
        fates.append(ACCEPTED)
        if k not in last or t >= last[k][0]:
            last[k] = (t, v)
    return fates


def reference_features(params, times_s, values, now_s: float, windows_s, buckets_per_window: int,
                       rules: ArtefactRules, late_tolerance_s: float) -> np.ndarray:
    """The feature row of one patient at ``now_s`` after these samples (arrival order)."""
    params = np.asarray(params, dtype=np.int64)
    times_s = np.asarray(times_s, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    fates = np.array(classify(params, times_s, values, rules, late_tolerance_s) or [], dtype=object)
    kept = fates != LATE
    if kept.any():
        now_s = max(now_s, float(times_s[kept].max()))
    row: list[float] = []
    last_by_param = {}
    for k, name in enumerate(NUMERIC_PARAMETERS):
        mine = params == k
        accepted = mine & (fates == ACCEPTED)
        # stable sort by time: among equal times the later arrival is the last
        order = np.argsort(times_s[accepted], kind="stable")
        t_acc, v_acc = times_s[accepted][order], values[accepted][order]
        if len(t_acc):
            last_t, last_v = t_acc[-1], v_acc[-1]
            row += [last_v, now_s - last_t]
            last_by_param[name] = (last_t, last_v)
        else:
            row += [math.nan, math.nan]
        for window_s in windows_s:
            width = window_s / buckets_per_window
            lowest_bucket = math.floor(now_s / width) - buckets_per_window + 1
            in_window = np.floor(t_acc / width) >= lowest_bucket
            t, v = t_acc[in_window], v_acc[in_window]
            artefact_times = times_s[mine & (fates == ARTEFACT)]
            artefacts = int((np.floor(artefact_times / width) >= lowest_bucket).sum())
            n = len(v)
            coverage = len(np.unique(np.floor(t / width))) / buckets_per_window
            if n == 0:
                row += [0, coverage] + [math.nan] * 6 + [artefacts]
                continue
            std = float(np.std(v, ddof=1)) if n > 1 else math.nan
            tc = t - t.mean()
            sxx = float((tc * tc).sum())
            slope = float((tc * (v - v.mean())).sum() / sxx * 3600) if n > 1 and sxx > 0 else math.nan
            row += [n, coverage, float(v.mean()), std, float(v.min()), float(v.max()), slope,
                    float(v[-1] - v[0]), artefacts]
    fresh = {name: name in last_by_param and now_s - last_by_param[name][0] <= rules.fresh_s[name]
             for name in NUMERIC_PARAMETERS}
    if fresh["heart_rate"] and fresh["systolic_bp"]:
        row.append(last_by_param["heart_rate"][1] / last_by_param["systolic_bp"][1])
    else:
        row.append(math.nan)
    row += [float(fresh[name]) for name in NEWS2_NUMERIC_INPUTS]
    result = np.array(row, dtype=np.float64)
    assert len(result) == len(feature_names(windows_s))
    return result
