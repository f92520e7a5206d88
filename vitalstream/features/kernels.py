"""The compiled core: per-sample state update and per-patient feature row.

Both the live batch kernel (`update_batch`) and the offline kernel (`features_at_sorted`)
call the same two functions, `_add_sample` and `_write_features`, so training, replay and
serving cannot compute a feature differently.

State of one patient ``p`` and parameter ``k``, for each window ``w``: a ring of ``nb``
buckets, each ``width = window / nb`` seconds of device time, holding the count, Welford
mean and M2 of the value, the mean and M2 of the time, the time-value co-moment (for the
least-squares slope), min, max and the first sample. A window is the current bucket and
the ``nb - 1`` before it. The merge of the closed buckets is cached per window and
recomputed only when the current bucket moves on or a late sample lands in a closed one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EMPTY = -(2**62)  # bucket index of a ring slot that holds nothing

# bucket float64 fields
B_MEAN_V, B_M2_V, B_MEAN_T, B_M2_T, B_C_TV, B_FIRST_T = 0, 1, 2, 3, 4, 5
N_BF = 6
# bucket float32 fields (values as monitors report them: 7 significant digits suffice)
B_MIN, B_MAX, B_FIRST_V = 0, 1, 2
N_BS = 3
# bucket int32 fields
B_N, B_ART = 0, 1
N_BI = 2
# per patient and parameter float64 scalars
S_LAST_T, S_LAST_V, S_NEWEST_T, S_RUN_V, S_RUN_START_T, S_RUN_N = 0, 1, 2, 3, 4, 5
N_SC = 6
# cached merge of the closed buckets of a window
C_N, C_MEAN_V, C_M2_V, C_MEAN_T, C_M2_T, C_C_TV, C_MIN, C_MAX, C_FIRST_T, C_FIRST_V, \
    C_NONEMPTY, C_ART = range(12)
N_CF = 12
# counters
K_LATE, K_RANGE, K_FLAT, K_DROPOUT, K_ACCEPTED, K_INVALID = range(6)
N_COUNTERS = 6
# cfg
CFG_LATE_TOL, CFG_FLAT_S, CFG_FLAT_MIN_N, CFG_DROP_MIN, CFG_DROP_RATE, CFG_HR, CFG_SBP = range(7)
N_CFG = 7
# limits columns
L_LOW, L_HIGH, L_FLAT, L_FRESH, L_DROPOUT = range(5)

N_PARAMETER_FEATURES = 2
N_WINDOW_FEATURES = 9


@njit(cache=True)
def reset_slot(bidx, bf, bs, bi, sc, ckey, p):
    """Forget everything about slot ``p`` (admission or discharge)."""
    bidx[p] = EMPTY
    bf[p] = 0.0
    bs[p] = 0.0
    bi[p] = 0
    sc[p] = 0.0
    for k in range(sc.shape[1]):
        sc[p, k, S_LAST_T] = -np.inf
        sc[p, k, S_NEWEST_T] = -np.inf
        sc[p, k, S_RUN_START_T] = -np.inf
        sc[p, k, S_RUN_V] = np.nan
    ckey[p] = EMPTY


@njit(cache=True, inline="always")
def _bucket_slot(bidx, bf, bs, bi, p, k, w, idx, nb):
    """The ring slot of bucket ``idx``, starting a fresh bucket if the ring moved on;
    -1 when the ring has already moved past ``idx`` (too old for this window)."""
    slot = idx % nb
    held = bidx[p, k, w, slot]
    if held == idx:
        return slot
    if held > idx:
        return -1
    bidx[p, k, w, slot] = idx
    for f in range(N_BF):
        bf[p, k, w, slot, f] = 0.0
    for f in range(N_BS):
        bs[p, k, w, slot, f] = 0.0
    bi[p, k, w, slot, B_N] = 0
    bi[p, k, w, slot, B_ART] = 0
    return slot


@njit(cache=True)
def _add_sample(bidx, bf, bs, bi, sc, ckey, counters, cfg, limits, widths, nb, p, k, t, v):
    """Place one sample; False when it was dropped (no usable time, or too late)."""
    if not math.isfinite(t):
        counters[K_INVALID] += 1
        return False
    newest = sc[p, k, S_NEWEST_T]
    if t < newest - cfg[CFG_LATE_TOL]:
        counters[K_LATE] += 1
        return False
    in_order = t >= newest
    if in_order:
        sc[p, k, S_NEWEST_T] = t
    kind = -1
    if not (v >= limits[k, L_LOW] and v <= limits[k, L_HIGH]):  # also catches NaN
        kind = K_RANGE
    elif in_order:
        if limits[k, L_DROPOUT] > 0.0 and sc[p, k, S_LAST_T] > -np.inf:
            fall = sc[p, k, S_LAST_V] - v
            if fall >= cfg[CFG_DROP_MIN] and fall > cfg[CFG_DROP_RATE] * (t - sc[p, k, S_LAST_T]):
                kind = K_DROPOUT
        if limits[k, L_FLAT] > 0.0:
            if v == sc[p, k, S_RUN_V]:
                sc[p, k, S_RUN_N] += 1.0
            else:
                sc[p, k, S_RUN_V] = v
                sc[p, k, S_RUN_START_T] = t
                sc[p, k, S_RUN_N] = 1.0
            if (kind < 0 and sc[p, k, S_RUN_N] >= cfg[CFG_FLAT_MIN_N]
                    and t - sc[p, k, S_RUN_START_T] >= cfg[CFG_FLAT_S]):
                kind = K_FLAT
    for w in range(widths.shape[0]):
        idx = np.int64(math.floor(t / widths[w]))
        slot = _bucket_slot(bidx, bf, bs, bi, p, k, w, idx, nb)
        if slot < 0:
            continue
        if idx < ckey[p, k, w]:
            ckey[p, k, w] = EMPTY  # a late sample changed a closed bucket
        if kind >= 0:
            bi[p, k, w, slot, B_ART] += 1
            continue
        n = bi[p, k, w, slot, B_N] + 1
        bi[p, k, w, slot, B_N] = n
        offset = t - idx * widths[w]
        dv = v - bf[p, k, w, slot, B_MEAN_V]
        dt = offset - bf[p, k, w, slot, B_MEAN_T]
        mean_v = bf[p, k, w, slot, B_MEAN_V] + dv / n
        mean_t = bf[p, k, w, slot, B_MEAN_T] + dt / n
        bf[p, k, w, slot, B_MEAN_V] = mean_v
        bf[p, k, w, slot, B_MEAN_T] = mean_t
        bf[p, k, w, slot, B_M2_V] += dv * (v - mean_v)
        bf[p, k, w, slot, B_M2_T] += dt * (offset - mean_t)
        bf[p, k, w, slot, B_C_TV] += dt * (v - mean_v)
        if n == 1:
            bs[p, k, w, slot, B_MIN] = v
            bs[p, k, w, slot, B_MAX] = v
            bs[p, k, w, slot, B_FIRST_V] = v
            bf[p, k, w, slot, B_FIRST_T] = offset
        else:
            if v < bs[p, k, w, slot, B_MIN]:
                bs[p, k, w, slot, B_MIN] = v
            if v > bs[p, k, w, slot, B_MAX]:
                bs[p, k, w, slot, B_MAX] = v
            if offset < bf[p, k, w, slot, B_FIRST_T]:
                bs[p, k, w, slot, B_FIRST_V] = v
                bf[p, k, w, slot, B_FIRST_T] = offset
    if kind >= 0:
        counters[kind] += 1
        return True
    counters[K_ACCEPTED] += 1
    if t >= sc[p, k, S_LAST_T]:
        sc[p, k, S_LAST_T] = t
        sc[p, k, S_LAST_V] = v
    return True


@njit(cache=True, inline="always")
def _merge(na, mva, m2va, mta, m2ta, ca, nb_, mvb, m2vb, mtb, m2tb, cb):
    """Chan et al. pairwise merge of (count, mean, M2) of value and time and co-moment."""
    if nb_ == 0:
        return na, mva, m2va, mta, m2ta, ca
    if na == 0:
        return nb_, mvb, m2vb, mtb, m2tb, cb
    n = na + nb_
    dv = mvb - mva
    dt = mtb - mta
    weight = na * nb_ / n
    return (n, mva + dv * nb_ / n, m2va + m2vb + dv * dv * weight,
            mta + dt * nb_ / n, m2ta + m2tb + dt * dt * weight, ca + cb + dv * dt * weight)


@njit(cache=True)
def _refresh_cache(bidx, bf, bs, bi, ckey, cache, widths, nb, p, k, w, cur):
    """Merge the closed buckets cur-nb+1 .. cur-1 of one window into the cache."""
    n = 0.0
    mv = m2v = mt = m2t = c = 0.0
    lo = np.inf
    hi = -np.inf
    first_t = np.inf
    first_v = np.nan
    nonempty = 0.0
    art = 0.0
    width = widths[w]
    for b in range(cur - nb + 1, cur):
        slot = b % nb
        if bidx[p, k, w, slot] != b:
            continue
        art += bi[p, k, w, slot, B_ART]
        nb_ = float(bi[p, k, w, slot, B_N])
        if nb_ == 0.0:
            continue
        nonempty += 1.0
        start = b * width
        n, mv, m2v, mt, m2t, c = _merge(
            n, mv, m2v, mt, m2t, c, nb_, bf[p, k, w, slot, B_MEAN_V], bf[p, k, w, slot, B_M2_V],
            start + bf[p, k, w, slot, B_MEAN_T], bf[p, k, w, slot, B_M2_T],
            bf[p, k, w, slot, B_C_TV])
        lo = min(lo, bs[p, k, w, slot, B_MIN])
        hi = max(hi, bs[p, k, w, slot, B_MAX])
        if start + bf[p, k, w, slot, B_FIRST_T] < first_t:
            first_t = start + bf[p, k, w, slot, B_FIRST_T]
            first_v = bs[p, k, w, slot, B_FIRST_V]
    cache[p, k, w, C_N] = n
    cache[p, k, w, C_MEAN_V] = mv
    cache[p, k, w, C_M2_V] = m2v
    cache[p, k, w, C_MEAN_T] = mt
    cache[p, k, w, C_M2_T] = m2t
    cache[p, k, w, C_C_TV] = c
    cache[p, k, w, C_MIN] = lo
    cache[p, k, w, C_MAX] = hi
    cache[p, k, w, C_FIRST_T] = first_t
    cache[p, k, w, C_FIRST_V] = first_v
    cache[p, k, w, C_NONEMPTY] = nonempty
    cache[p, k, w, C_ART] = art
    ckey[p, k, w] = cur


@njit(cache=True)
def newest_time(sc, p):
    newest = -np.inf
    for k in range(sc.shape[1]):
        newest = max(newest, sc[p, k, S_NEWEST_T])
    return newest


@njit(cache=True)
def _write_features(out, bidx, bf, bs, bi, sc, ckey, cache, cfg, limits, widths, nb,
                    fresh_idx, p, now):
    """The feature row of patient ``p`` at device time ``now`` (see names.feature_names)."""
    if not math.isfinite(now):
        now = 0.0  # a slot that never saw a sample: empty windows, nothing fresh
    col = 0
    n_windows = widths.shape[0]
    for k in range(sc.shape[1]):
        last_t = sc[p, k, S_LAST_T]
        has_last = last_t > -np.inf
        last_v = sc[p, k, S_LAST_V]
        out[col] = last_v if has_last else np.nan
        out[col + 1] = now - last_t if has_last else np.nan
        col += N_PARAMETER_FEATURES
        for w in range(n_windows):
            width = widths[w]
            cur = np.int64(math.floor(now / width))
            if ckey[p, k, w] != cur:
                _refresh_cache(bidx, bf, bs, bi, ckey, cache, widths, nb, p, k, w, cur)
            n = cache[p, k, w, C_N]
            mv = cache[p, k, w, C_MEAN_V]
            m2v = cache[p, k, w, C_M2_V]
            mt = cache[p, k, w, C_MEAN_T]
            m2t = cache[p, k, w, C_M2_T]
            c = cache[p, k, w, C_C_TV]
            lo = cache[p, k, w, C_MIN]
            hi = cache[p, k, w, C_MAX]
            first_t = cache[p, k, w, C_FIRST_T]
            first_v = cache[p, k, w, C_FIRST_V]
            nonempty = cache[p, k, w, C_NONEMPTY]
            art = cache[p, k, w, C_ART]
            slot = cur % nb
            if bidx[p, k, w, slot] == cur:
                art += bi[p, k, w, slot, B_ART]
                nb_ = float(bi[p, k, w, slot, B_N])
                if nb_ > 0.0:
                    nonempty += 1.0
                    start = cur * width
                    n, mv, m2v, mt, m2t, c = _merge(
                        n, mv, m2v, mt, m2t, c, nb_, bf[p, k, w, slot, B_MEAN_V],
                        bf[p, k, w, slot, B_M2_V], start + bf[p, k, w, slot, B_MEAN_T],
                        bf[p, k, w, slot, B_M2_T], bf[p, k, w, slot, B_C_TV])
                    lo = min(lo, bs[p, k, w, slot, B_MIN])
                    hi = max(hi, bs[p, k, w, slot, B_MAX])
                    if start + bf[p, k, w, slot, B_FIRST_T] < first_t:
                        first_v = bs[p, k, w, slot, B_FIRST_V]
            out[col] = n
            out[col + 1] = nonempty / nb
            if n > 0.0:
                out[col + 2] = mv
                out[col + 4] = lo
                out[col + 5] = hi
                out[col + 7] = last_v - first_v
            else:
                out[col + 2] = np.nan
                out[col + 4] = np.nan
                out[col + 5] = np.nan
                out[col + 7] = np.nan
            if n > 1.0:
                out[col + 3] = math.sqrt(max(m2v, 0.0) / (n - 1.0))
                out[col + 6] = c / m2t * 3600.0 if m2t > 0.0 else np.nan
            else:
                out[col + 3] = np.nan
                out[col + 6] = np.nan
            out[col + 8] = art
            col += N_WINDOW_FEATURES
    hr = np.int64(cfg[CFG_HR])
    sbp = np.int64(cfg[CFG_SBP])
    hr_age = now - sc[p, hr, S_LAST_T]
    sbp_age = now - sc[p, sbp, S_LAST_T]
    if (hr_age <= limits[hr, L_FRESH] and sbp_age <= limits[sbp, L_FRESH]
            and sc[p, sbp, S_LAST_V] > 0.0):
        out[col] = sc[p, hr, S_LAST_V] / sc[p, sbp, S_LAST_V]
    else:
        out[col] = np.nan
    col += 1
    for i in range(fresh_idx.shape[0]):
        k = fresh_idx[i]
        out[col + i] = 1.0 if now - sc[p, k, S_LAST_T] <= limits[k, L_FRESH] else 0.0


@njit(cache=True)
def update_batch(bidx, bf, bs, bi, sc, ckey, cache, counters, mark, cfg, limits, widths, nb,
                 fresh_idx, n_features, slots, params, times_s, values, now_s):
    """Add a batch of samples; return the touched slots and their feature rows."""
    n_slots = bidx.shape[0]
    n_params = bidx.shape[1]
    order = np.empty(slots.shape[0], dtype=np.int64)
    n_touched = 0
    for i in range(slots.shape[0]):
        p = slots[i]
        k = params[i]
        if p < 0 or p >= n_slots or k < 0 or k >= n_params:
            counters[K_INVALID] += 1
            continue
        _add_sample(bidx, bf, bs, bi, sc, ckey, counters, cfg, limits, widths, nb, p, k,
                    times_s[i], values[i])
        if mark[p] == 0 and math.isfinite(times_s[i]):
            mark[p] = 1
            order[n_touched] = p
            n_touched += 1
    features = np.empty((n_touched, n_features), dtype=np.float64)
    for j in range(n_touched):
        p = order[j]
        mark[p] = 0
        now = newest_time(sc, p)
        if now_s > now:
            now = now_s
        _write_features(features[j], bidx, bf, bs, bi, sc, ckey, cache, cfg, limits, widths,
                        nb, fresh_idx, p, now)
    return order[:n_touched].copy(), features


@njit(cache=True)
def features_of_slots(bidx, bf, bs, bi, sc, ckey, cache, cfg, limits, widths, nb, fresh_idx,
                      n_features, slots, now_s):
    features = np.empty((slots.shape[0], n_features), dtype=np.float64)
    for j in range(slots.shape[0]):
        p = slots[j]
        now = newest_time(sc, p)
        if now_s > now:
            now = now_s
        _write_features(features[j], bidx, bf, bs, bi, sc, ckey, cache, cfg, limits, widths,
                        nb, fresh_idx, p, now)
    return features


@njit(cache=True)
def features_at_sorted(bidx, bf, bs, bi, sc, ckey, cache, counters, cfg, limits, widths, nb,
                       fresh_idx, s_patient, s_param, s_time, s_value, q_patient, q_time,
                       q_row, out):
    """Offline replay through slot 0: samples and queries both sorted by (patient, time).

    Each query row sees exactly the samples of its patient with time <= query time."""
    i = 0
    n_samples = s_patient.shape[0]
    current = np.int64(-1)
    first = True
    for j in range(q_patient.shape[0]):
        patient = q_patient[j]
        if first or patient != current:
            reset_slot(bidx, bf, bs, bi, sc, ckey, 0)
            current = patient
            first = False
            while i < n_samples and s_patient[i] < patient:
                i += 1
        while i < n_samples and s_patient[i] == patient and s_time[i] <= q_time[j]:
            k = s_param[i]
            if 0 <= k < bidx.shape[1]:
                _add_sample(bidx, bf, bs, bi, sc, ckey, counters, cfg, limits, widths, nb, 0,
                            k, s_time[i], s_value[i])
            else:
                counters[K_INVALID] += 1
            i += 1
        _write_features(out[q_row[j]], bidx, bf, bs, bi, sc, ckey, cache, cfg, limits, widths,
                        nb, fresh_idx, 0, q_time[j])
