"""The compiled core: sample placement and feature rows, shared by every path.

The live batch kernel (`update_batch`) and the offline kernel (`features_at_sorted`) both
call `add_samples` and `write_features`, so training, replay and serving cannot compute a
feature differently. Hot loops contain no calls that take arrays: a numba call with array
arguments costs reference counting on each of them, which would dominate a sample's cost.

State of patient ``p``, parameter ``k``, window ``w`` (see docs/features.md):

- ``buckets[p, k, w, :]``: a ring of ``nb + 1`` buckets of ``width = window / nb``
  seconds of device time (one more than the window holds, so that the bucket leaving the
  window can be taken out of the cached merge). A bucket is one 64-byte record (one cache
  line): the lap of the ring it belongs to, the count, the Welford mean and M2 of the value
  and of the time, the time-value co-moment (for the least-squares slope), min, max and
  the first sample. Bucket ``idx = floor(t / width)`` lives in slot ``idx % (nb + 1)``.
- ``art[p, k, w, :]``: artefacts per bucket (read only if the stream ever had one).
- ``pstate[p, k, :]``: last accepted sample, newest time, flat-line run, artefact total,
  a changed-since-last-row flag, the cache key (current bucket) of each window, the last
  window features (reused while nothing changed), then per window the cached merge of the
  closed buckets (moved on by one bucket in O(1), merged afresh once a lap, when an
  extreme leaves, or when a late sample lands in a closed bucket).

A window is the current bucket and the ``nb - 1`` before it.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

BUCKET_DTYPE = np.dtype([
    ("lap", np.int32), ("n", np.int32), ("first_t", np.float32), ("min", np.float32),
    ("max", np.float32), ("first_v", np.float32), ("mean_v", np.float64),
    ("m2_v", np.float64), ("mean_t", np.float64), ("m2_t", np.float64), ("c_tv", np.float64),
])
assert BUCKET_DTYPE.itemsize == 64
EMPTY_LAP = np.int32(-(2**31))

# pstate of one (patient, parameter): scalars, the cache key of each window (beside them:
# every sample reads both), the parameter's last window features (reused while nothing
# changed), then each window's cache block
S_LAST_T, S_LAST_V, S_NEWEST_T, S_ART_TOTAL, S_RUN_V, S_RUN_START_T, S_RUN_N, S_DIRTY = range(8)
N_SCALARS = 8
C_N, C_MEAN_V, C_M2_V, C_MEAN_T, C_M2_T, C_C_TV, C_MIN, C_MAX, C_FIRST_T, C_FIRST_V, \
    C_NONEMPTY, C_ART, C_STEPS = range(13)
N_CACHE = 13
# counters
K_LATE, K_RANGE, K_FLAT, K_DROPOUT, K_ACCEPTED, K_INVALID = range(6)
N_COUNTERS = 6
# cfg
CFG_LATE_TOL, CFG_FLAT_S, CFG_FLAT_MIN_N, CFG_DROP_MIN, CFG_DROP_RATE, CFG_HR, CFG_SBP, \
    CFG_MAX_ABS_T = range(8)
N_CFG = 8
# limits columns
L_LOW, L_HIGH, L_FLAT, L_FRESH, L_DROPOUT = range(5)

# how far ahead in a batch to ask for the memory of the next samples and rows
PREFETCH_SAMPLES = 8
PREFETCH_ROWS = 2

N_PARAMETER_FEATURES = 2
N_WINDOW_FEATURES = 9


@intrinsic
def _prefetch(typingctx, array, flat_index):
    """Ask the CPU to start loading element ``flat_index`` of a C-contiguous array.

    The state of a thousand patients is far larger than the CPU caches; a sample or a row
    needs a few cache lines in unpredictable places. Asking for the next ones while working
    on this one overlaps their memory latency."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array_struct = context.make_array(array_type)(context, builder, args[0])
        itemsize = context.get_abi_sizeof(context.get_data_type(array_type.dtype))
        base = builder.bitcast(array_struct.data, ir.IntType(8).as_pointer())
        offset = builder.mul(args[1], context.get_constant(types.intp, itemsize))
        address = builder.gep(base, [offset])
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read, keep in all cache levels, data
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, types.intp), codegen


def pstate_width(n_windows: int) -> int:
    """Float64 cells of one (patient, parameter) block, padded to whole cache lines."""
    cells = N_SCALARS + n_windows * (1 + N_WINDOW_FEATURES + N_CACHE)
    return (cells + 7) // 8 * 8


def cache_key_cell(w: int) -> int:
    return N_SCALARS + w


@njit(cache=True, inline="always")
def _cache_block(w, n_windows):
    return N_SCALARS + n_windows * (1 + N_WINDOW_FEATURES) + w * N_CACHE


@njit(cache=True)
def reset_slot(buckets, art, pstate, p):
    """Forget everything about slot ``p`` (admission, discharge)."""
    for k in range(buckets.shape[1]):
        for w in range(buckets.shape[2]):
            for s in range(buckets.shape[3]):
                b = buckets[p, k, w, s]
                b.lap = EMPTY_LAP
                b.n = 0
                # The rest is never read while n is 0; zeroed so a snapshot carries no
                # earlier patient's values (arrays are allocated uninitialised).
                b.first_t = b.min = b.max = b.first_v = 0.0
                b.mean_v = b.m2_v = b.mean_t = b.m2_t = b.c_tv = 0.0
                art[p, k, w, s] = 0
        for c in range(pstate.shape[2]):
            pstate[p, k, c] = np.nan  # cache keys NaN: never valid
        pstate[p, k, S_LAST_T] = -np.inf
        pstate[p, k, S_NEWEST_T] = -np.inf
        pstate[p, k, S_RUN_START_T] = -np.inf
        pstate[p, k, S_RUN_N] = 0.0
        pstate[p, k, S_ART_TOTAL] = 0.0


@njit(cache=True, inline="always")
def _merge(na, mva, m2va, mta, m2ta, ca, nb_, mvb, m2vb, mtb, m2tb, cb):
    """Chan et al. pairwise merge of (count, mean, M2) of value and time and co-moment."""
    if nb_ == 0.0:
        return na, mva, m2va, mta, m2ta, ca
    if na == 0.0:
        return nb_, mvb, m2vb, mtb, m2tb, cb
    n = na + nb_
    dv = mvb - mva
    dt = mtb - mta
    weight = na * nb_ / n
    return (n, mva + dv * nb_ / n, m2va + m2vb + dv * dv * weight,
            mta + dt * nb_ / n, m2ta + m2tb + dt * dt * weight, ca + cb + dv * dt * weight)


@njit(cache=True, inline="always")
def _decimals4(x):
    """Min, max and first value are kept as float32: report them to 4 decimals, so that
    63.9 reads 63.9 and not 63.900001525878906, and a single sample changes by 0."""
    return math.floor(x * 1e4 + 0.5) / 1e4


@njit(cache=True)
def add_samples(buckets, art, pstate, counters, cfg, limits, widths, slots, params, times_s,
                values, begin, end):
    """Place samples ``begin:end`` in arrival order (the order the rules see them)."""
    ring = buckets.shape[3]
    n_slots = buckets.shape[0]
    n_params = buckets.shape[1]
    n_windows = widths.shape[0]
    late_tol = cfg[CFG_LATE_TOL]
    max_abs_t = cfg[CFG_MAX_ABS_T]
    n_cells = pstate.shape[2]
    for i in range(begin, end):
        ahead = i + PREFETCH_SAMPLES
        if ahead < end:
            pa = slots[ahead]
            ka = params[ahead]
            if 0 <= pa < n_slots and 0 <= ka < n_params:
                cell = (pa * n_params + ka) * n_cells
                _prefetch(pstate, cell)
                _prefetch(pstate, cell + 8)
        ahead = i + PREFETCH_SAMPLES // 2
        if ahead < end:
            pa = slots[ahead]
            ka = params[ahead]
            if 0 <= pa < n_slots and 0 <= ka < n_params:
                # the bucket the last row called current is most likely this sample's
                for w in range(n_windows):
                    key = pstate[pa, ka, N_SCALARS + w]
                    if key == key:
                        lap = math.floor(key / ring)
                        slot_a = np.int64(key - lap * ring)
                        _prefetch(buckets, ((pa * n_params + ka) * n_windows + w) * ring + slot_a)
        p = slots[i]
        k = params[i]
        t = times_s[i]
        v = values[i]
        if p < 0 or p >= n_slots or k < 0 or k >= n_params or not abs(t) < max_abs_t:
            counters[K_INVALID] += 1  # bad index, NaN time, or a time in ms by mistake
            continue
        newest = pstate[p, k, S_NEWEST_T]
        if t < newest - late_tol:
            counters[K_LATE] += 1
            continue
        pstate[p, k, S_DIRTY] = 1.0
        in_order = t >= newest
        if in_order:
            pstate[p, k, S_NEWEST_T] = t
        kind = -1
        if not (v >= limits[k, L_LOW] and v <= limits[k, L_HIGH]):  # NaN fails too
            kind = K_RANGE
        elif in_order:
            if limits[k, L_DROPOUT] > 0.0 and pstate[p, k, S_LAST_T] > -np.inf:
                fall = pstate[p, k, S_LAST_V] - v
                if fall >= cfg[CFG_DROP_MIN] and \
                        fall > cfg[CFG_DROP_RATE] * (t - pstate[p, k, S_LAST_T]):
                    kind = K_DROPOUT
            if limits[k, L_FLAT] > 0.0:
                if v == pstate[p, k, S_RUN_V]:
                    pstate[p, k, S_RUN_N] += 1.0
                else:
                    pstate[p, k, S_RUN_V] = v
                    pstate[p, k, S_RUN_START_T] = t
                    pstate[p, k, S_RUN_N] = 1.0
                if (kind < 0 and pstate[p, k, S_RUN_N] >= cfg[CFG_FLAT_MIN_N]
                        and t - pstate[p, k, S_RUN_START_T] >= cfg[CFG_FLAT_S]):
                    kind = K_FLAT
        for w in range(n_windows):
            width = widths[w]
            # float division: a 64-bit integer division costs several times more
            idx_f = math.floor(t / width)
            lap_f = math.floor(idx_f / ring)  # exact: both are whole numbers
            idx = np.int64(idx_f)
            lap = np.int64(lap_f)
            slot = np.int64(idx_f - lap_f * ring)
            b = buckets[p, k, w, slot]
            if b.lap != lap:
                if b.lap > lap:
                    continue  # the ring moved past this bucket: too old for this window
                b.lap = lap
                b.n = 0
                art[p, k, w, slot] = 0
            if idx_f < pstate[p, k, N_SCALARS + w]:
                pstate[p, k, N_SCALARS + w] = np.nan  # a late sample changed a closed bucket
            if kind >= 0:
                art[p, k, w, slot] += 1
                continue
            offset = t - idx * width
            n = b.n + 1
            b.n = n
            if n == 1:
                b.mean_v = v
                b.m2_v = 0.0
                b.mean_t = offset
                b.m2_t = 0.0
                b.c_tv = 0.0
                b.min = v
                b.max = v
                b.first_v = v
                b.first_t = offset
                continue
            inv_n = 1.0 / n
            dv = v - b.mean_v
            dt = offset - b.mean_t
            mean_v = b.mean_v + dv * inv_n
            mean_t = b.mean_t + dt * inv_n
            b.mean_v = mean_v
            b.mean_t = mean_t
            b.m2_v += dv * (v - mean_v)
            b.m2_t += dt * (offset - mean_t)
            b.c_tv += dt * (v - mean_v)
            if v < b.min:
                b.min = v
            if v > b.max:
                b.max = v
            if np.float32(offset) < b.first_t:
                b.first_v = v
                b.first_t = offset
        if kind >= 0:
            counters[kind] += 1
            pstate[p, k, S_ART_TOTAL] += 1.0
            continue
        counters[K_ACCEPTED] += 1
        if t >= pstate[p, k, S_LAST_T]:
            pstate[p, k, S_LAST_T] = t
            pstate[p, k, S_LAST_V] = v


@njit(cache=True)
def newest_time(pstate, p):
    newest = -np.inf
    for k in range(pstate.shape[1]):
        newest = max(newest, pstate[p, k, S_NEWEST_T])
    return newest


@njit(cache=True)
def _refresh_closed(buckets, art, pstate, p, k, w, cache, cur, width, has_art):
    """Merge the closed buckets cur-nb+1 .. cur-1 of one window into its cache."""
    ring = buckets.shape[3]
    nb = ring - 1
    n = 0.0
    mv = m2v = mt = m2t = c = 0.0
    lo = np.inf
    hi = -np.inf
    first_t = np.inf
    first_v = np.nan
    nonempty = 0.0
    n_art = 0.0
    oldest = cur - nb + 1
    lap = np.int64(math.floor(oldest / ring))
    slot = oldest - lap * ring
    for idx in range(oldest, cur):
        b = buckets[p, k, w, slot]
        if b.lap == lap:
            if has_art:
                n_art += art[p, k, w, slot]
            if b.n > 0:
                nonempty += 1.0
                start = idx * width
                n, mv, m2v, mt, m2t, c = _merge(n, mv, m2v, mt, m2t, c, float(b.n), b.mean_v,
                                                b.m2_v, start + b.mean_t, b.m2_t, b.c_tv)
                lo = min(lo, b.min)
                hi = max(hi, b.max)
                if start + b.first_t < first_t:
                    first_t = start + b.first_t
                    first_v = b.first_v
        slot += 1
        if slot == ring:
            slot = 0
            lap += 1
    pstate[p, k, cache + C_N] = n
    pstate[p, k, cache + C_MEAN_V] = mv
    pstate[p, k, cache + C_M2_V] = m2v
    pstate[p, k, cache + C_MEAN_T] = mt
    pstate[p, k, cache + C_M2_T] = m2t
    pstate[p, k, cache + C_C_TV] = c
    pstate[p, k, cache + C_MIN] = lo
    pstate[p, k, cache + C_MAX] = hi
    pstate[p, k, cache + C_FIRST_T] = first_t
    pstate[p, k, cache + C_FIRST_V] = first_v
    pstate[p, k, cache + C_NONEMPTY] = nonempty
    pstate[p, k, cache + C_ART] = n_art
    pstate[p, k, cache + C_STEPS] = 0.0


@njit(cache=True)
def _advance_closed(buckets, art, pstate, p, k, w, cache, cur, width, has_art):
    """Move the cache of the closed buckets on by one bucket: take in bucket cur-1, let
    bucket cur-nb go. False when that needs a full merge (the leaving bucket held the
    minimum or maximum); the caller then calls _refresh_closed."""
    ring = buckets.shape[3]
    nb = ring - 1
    n = pstate[p, k, cache + C_N]
    mv = pstate[p, k, cache + C_MEAN_V]
    m2v = pstate[p, k, cache + C_M2_V]
    mt = pstate[p, k, cache + C_MEAN_T]
    m2t = pstate[p, k, cache + C_M2_T]
    c = pstate[p, k, cache + C_C_TV]
    lo = pstate[p, k, cache + C_MIN]
    hi = pstate[p, k, cache + C_MAX]
    first_t = pstate[p, k, cache + C_FIRST_T]
    first_v = pstate[p, k, cache + C_FIRST_V]
    nonempty = pstate[p, k, cache + C_NONEMPTY]
    n_art = pstate[p, k, cache + C_ART]
    # the leaving bucket (the ring keeps one bucket more than the window for this)
    gone = cur - nb
    gone_lap = np.int64(math.floor(gone / ring))
    b = buckets[p, k, w, gone - gone_lap * ring]
    if b.lap == gone_lap:
        if has_art:
            n_art -= art[p, k, w, gone - gone_lap * ring]
        if b.n > 0:
            if b.min <= lo or b.max >= hi:
                return False
            nonempty -= 1.0
            nb_ = float(b.n)
            na = n - nb_
            if na <= 0.0:
                return False
            # Chan's merge run backwards
            mvb = b.mean_v
            mtb = b.mean_t + gone * width
            mva = mv + (mv - mvb) * nb_ / na
            mta = mt + (mt - mtb) * nb_ / na
            weight = na * nb_ / n
            m2v = max(m2v - b.m2_v - (mvb - mva) * (mvb - mva) * weight, 0.0)
            m2t = max(m2t - b.m2_t - (mtb - mta) * (mtb - mta) * weight, 0.0)
            c = c - b.c_tv - (mvb - mva) * (mtb - mta) * weight
            n, mv, mt = na, mva, mta
            # the first sample now is the first of the oldest bucket still holding one
            first_t = np.inf
            first_v = np.nan
            for idx in range(gone + 1, cur - 1):
                lap = np.int64(math.floor(idx / ring))
                nxt = buckets[p, k, w, idx - lap * ring]
                if nxt.lap == lap and nxt.n > 0:
                    first_t = idx * width + nxt.first_t
                    first_v = nxt.first_v
                    break
    # the bucket that has just closed
    idx = cur - 1
    lap = np.int64(math.floor(idx / ring))
    b = buckets[p, k, w, idx - lap * ring]
    if b.lap == lap:
        if has_art:
            n_art += art[p, k, w, idx - lap * ring]
        if b.n > 0:
            nonempty += 1.0
            start = idx * width
            n, mv, m2v, mt, m2t, c = _merge(n, mv, m2v, mt, m2t, c, float(b.n), b.mean_v,
                                            b.m2_v, start + b.mean_t, b.m2_t, b.c_tv)
            lo = min(lo, b.min)
            hi = max(hi, b.max)
            if start + b.first_t < first_t:
                first_t = start + b.first_t
                first_v = b.first_v
    pstate[p, k, cache + C_N] = n
    pstate[p, k, cache + C_MEAN_V] = mv
    pstate[p, k, cache + C_M2_V] = m2v
    pstate[p, k, cache + C_MEAN_T] = mt
    pstate[p, k, cache + C_M2_T] = m2t
    pstate[p, k, cache + C_C_TV] = c
    pstate[p, k, cache + C_MIN] = lo
    pstate[p, k, cache + C_MAX] = hi
    pstate[p, k, cache + C_FIRST_T] = first_t
    pstate[p, k, cache + C_FIRST_V] = first_v
    pstate[p, k, cache + C_NONEMPTY] = nonempty
    pstate[p, k, cache + C_ART] = n_art
    pstate[p, k, cache + C_STEPS] += 1.0
    return True


@njit(cache=True)
def write_features(out, row, buckets, art, pstate, cfg, limits, widths, fresh_idx, p, now,
                   cur_of_window):
    """Feature row ``out[row]`` of patient ``p`` at device time ``now`` (names.py order)."""
    if not math.isfinite(now):
        now = 0.0  # a slot that never saw a sample: empty windows, nothing fresh
    ring = buckets.shape[3]
    nb = ring - 1
    n_windows = widths.shape[0]
    outputs = N_SCALARS + n_windows
    for w in range(n_windows):  # the current bucket of each window, once per row
        cur_of_window[w] = math.floor(now / widths[w])
    col = 0
    for k in range(buckets.shape[1]):
        last_t = pstate[p, k, S_LAST_T]
        has_last = last_t > -np.inf
        last_v = pstate[p, k, S_LAST_V]
        out[row, col] = last_v if has_last else np.nan
        out[row, col + 1] = now - last_t if has_last else np.nan
        col += N_PARAMETER_FEATURES
        # No new sample and no window moved on to another bucket: last row's features hold.
        clean = pstate[p, k, S_DIRTY] == 0.0
        if clean:
            for w in range(n_windows):
                if not pstate[p, k, N_SCALARS + w] == cur_of_window[w]:
                    clean = False
                    break
        if clean:
            for j in range(n_windows * N_WINDOW_FEATURES):
                out[row, col + j] = pstate[p, k, outputs + j]
            col += n_windows * N_WINDOW_FEATURES
            continue
        pstate[p, k, S_DIRTY] = 0.0
        has_art = pstate[p, k, S_ART_TOTAL] > 0.0
        for w in range(n_windows):
            width = widths[w]
            cur_f = cur_of_window[w]
            cur = np.int64(cur_f)
            cur_lap = np.int64(math.floor(cur_f / ring))
            cur_slot = cur - cur_lap * ring
            cache = _cache_block(w, n_windows)
            key = pstate[p, k, N_SCALARS + w]
            if not key == cur_f:
                # Most often the window moved on by one bucket: update the cache in O(1);
                # a full merge once a lap bounds the rounding of the backward merges.
                if not (key == cur_f - 1.0 and pstate[p, k, cache + C_STEPS] < nb
                        and _advance_closed(buckets, art, pstate, p, k, w, cache, cur, width,
                                            has_art)):
                    _refresh_closed(buckets, art, pstate, p, k, w, cache, cur, width, has_art)
                pstate[p, k, N_SCALARS + w] = cur_f
            n = pstate[p, k, cache + C_N]
            mv = pstate[p, k, cache + C_MEAN_V]
            m2v = pstate[p, k, cache + C_M2_V]
            mt = pstate[p, k, cache + C_MEAN_T]
            m2t = pstate[p, k, cache + C_M2_T]
            c = pstate[p, k, cache + C_C_TV]
            lo = pstate[p, k, cache + C_MIN]
            hi = pstate[p, k, cache + C_MAX]
            first_t = pstate[p, k, cache + C_FIRST_T]
            first_v = pstate[p, k, cache + C_FIRST_V]
            nonempty = pstate[p, k, cache + C_NONEMPTY]
            n_art = pstate[p, k, cache + C_ART]
            b = buckets[p, k, w, cur_slot]
            if b.lap == cur_lap:
                if has_art:
                    n_art += art[p, k, w, cur_slot]
                if b.n > 0:
                    nonempty += 1.0
                    start = cur * width
                    n, mv, m2v, mt, m2t, c = _merge(n, mv, m2v, mt, m2t, c, float(b.n),
                                                    b.mean_v, b.m2_v, start + b.mean_t, b.m2_t,
                                                    b.c_tv)
                    lo = min(lo, b.min)
                    hi = max(hi, b.max)
                    if start + b.first_t < first_t:
                        first_v = b.first_v
            out[row, col] = n
            out[row, col + 1] = nonempty / nb
            if n > 0.0:
                out[row, col + 2] = mv
                out[row, col + 4] = _decimals4(lo)
                out[row, col + 5] = _decimals4(hi)
                out[row, col + 7] = _decimals4(last_v - first_v)
            else:
                out[row, col + 2] = np.nan
                out[row, col + 4] = np.nan
                out[row, col + 5] = np.nan
                out[row, col + 7] = np.nan
            if n > 1.0:
                out[row, col + 3] = math.sqrt(max(m2v, 0.0) / (n - 1.0))
                out[row, col + 6] = c / m2t * 3600.0 if m2t > 0.0 else np.nan
            else:
                out[row, col + 3] = np.nan
                out[row, col + 6] = np.nan
            out[row, col + 8] = n_art
            for j in range(N_WINDOW_FEATURES):
                pstate[p, k, outputs + w * N_WINDOW_FEATURES + j] = out[row, col + j]
            col += N_WINDOW_FEATURES
    hr = np.int64(cfg[CFG_HR])
    sbp = np.int64(cfg[CFG_SBP])
    if (now - pstate[p, hr, S_LAST_T] <= limits[hr, L_FRESH]
            and now - pstate[p, sbp, S_LAST_T] <= limits[sbp, L_FRESH]
            and pstate[p, sbp, S_LAST_V] > 0.0):
        out[row, col] = pstate[p, hr, S_LAST_V] / pstate[p, sbp, S_LAST_V]
    else:
        out[row, col] = np.nan
    col += 1
    for i in range(fresh_idx.shape[0]):
        k = fresh_idx[i]
        out[row, col + i] = 1.0 if now - pstate[p, k, S_LAST_T] <= limits[k, L_FRESH] else 0.0


@njit(cache=True, inline="always")
def _prefetch_pstate(pstate, p, n_windows):
    """Start loading what every row reads of patient ``p``: scalars, keys, last outputs."""
    n_params = pstate.shape[1]
    n_cells = pstate.shape[2]
    head = N_SCALARS + n_windows * (1 + N_WINDOW_FEATURES)
    for k in range(n_params):
        base = (p * n_params + k) * n_cells
        for cell in range(base, base + head, 8):
            _prefetch(pstate, cell)


@njit(cache=True, inline="always")
def _prefetch_changed(buckets, pstate, p):
    """For the parameters of patient ``p`` that changed (their scalars are loaded by
    now), start loading the window caches and current buckets write_features will read."""
    n_params = pstate.shape[1]
    n_cells = pstate.shape[2]
    n_windows = buckets.shape[2]
    ring = buckets.shape[3]
    head = N_SCALARS + n_windows * (1 + N_WINDOW_FEATURES)
    for k in range(n_params):
        if pstate[p, k, S_DIRTY] == 0.0:
            continue
        base = (p * n_params + k) * n_cells
        for cell in range(base + head, base + n_cells, 8):
            _prefetch(pstate, cell)
        for w in range(n_windows):
            key = pstate[p, k, N_SCALARS + w]
            if key == key:
                lap = math.floor(key / ring)
                slot = np.int64(key - lap * ring)
                _prefetch(buckets, ((p * n_params + k) * n_windows + w) * ring + slot)


@njit(cache=True)
def update_batch(buckets, art, pstate, counters, mark, cfg, limits, widths, fresh_idx,
                 n_features, slots, params, times_s, values, now_s):
    """Add a batch of samples; return the touched slots and their feature rows."""
    add_samples(buckets, art, pstate, counters, cfg, limits, widths, slots, params, times_s,
                values, 0, slots.shape[0])
    n_slots = buckets.shape[0]
    order = np.empty(slots.shape[0], dtype=np.int64)
    n_touched = 0
    for i in range(slots.shape[0]):
        p = slots[i]
        if 0 <= p < n_slots and mark[p] == 0 and math.isfinite(times_s[i]):
            mark[p] = 1
            order[n_touched] = p
            n_touched += 1
    features = np.empty((n_touched, n_features), dtype=np.float64)
    cur_of_window = np.empty(widths.shape[0])
    for j in range(n_touched):
        if j + 2 * PREFETCH_ROWS < n_touched:
            _prefetch_pstate(pstate, order[j + 2 * PREFETCH_ROWS], widths.shape[0])
        if j + PREFETCH_ROWS < n_touched:
            _prefetch_changed(buckets, pstate, order[j + PREFETCH_ROWS])
        p = order[j]
        mark[p] = 0
        now = newest_time(pstate, p)
        if now_s > now:
            now = now_s
        write_features(features, j, buckets, art, pstate, cfg, limits, widths, fresh_idx, p,
                       now, cur_of_window)
    return order[:n_touched].copy(), features


@njit(cache=True)
def features_of_slots(buckets, art, pstate, cfg, limits, widths, fresh_idx, n_features, slots,
                      now_s):
    features = np.empty((slots.shape[0], n_features), dtype=np.float64)
    cur_of_window = np.empty(widths.shape[0])
    n_rows = slots.shape[0]
    for j in range(n_rows):
        if j + 2 * PREFETCH_ROWS < n_rows:
            _prefetch_pstate(pstate, slots[j + 2 * PREFETCH_ROWS], widths.shape[0])
        if j + PREFETCH_ROWS < n_rows:
            _prefetch_changed(buckets, pstate, slots[j + PREFETCH_ROWS])
        p = slots[j]
        now = newest_time(pstate, p)
        if now_s > now:
            now = now_s
        write_features(features, j, buckets, art, pstate, cfg, limits, widths, fresh_idx, p,
                       now, cur_of_window)
    return features


@njit(cache=True)
def features_at_sorted(buckets, art, pstate, counters, cfg, limits, widths, fresh_idx,
                       s_patient, s_param, s_time, s_value, q_patient, q_time, q_row, out):
    """Offline replay through slot 0: samples and queries both sorted by (patient, time).

    Each query row sees exactly the samples of its patient with time <= query time."""
    n_samples = s_patient.shape[0]
    slot0 = np.zeros(n_samples, dtype=np.int64)
    cur_of_window = np.empty(widths.shape[0])
    i = 0
    current = np.int64(-1)
    first = True
    for j in range(q_patient.shape[0]):
        patient = q_patient[j]
        if first or patient != current:
            reset_slot(buckets, art, pstate, 0)
            current = patient
            first = False
            while i < n_samples and s_patient[i] < patient:
                i += 1
        begin = i
        while i < n_samples and s_patient[i] == patient and s_time[i] <= q_time[j]:
            i += 1
        if i > begin:
            add_samples(buckets, art, pstate, counters, cfg, limits, widths, slot0, s_param,
                        s_time, s_value, begin, i)
        write_features(out, q_row[j], buckets, art, pstate, cfg, limits, widths, fresh_idx, 0,
                       q_time[j], cur_of_window)
