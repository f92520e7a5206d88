"""The monitor's compiled per-reading core: NEWS2, windows, the short path, bed states, risk due.

Per-patient state lives in arrays indexed by the monitor's slot of the patient (the
feature engine's way, ``vitalstream.features.kernels``); ``Monitor`` owns the arrays and
``PatientRecord`` reads them by name. One call, ``assess_batch``, takes a batch's readings
(already cut into waves) and, for every assessment (one per patient per wave):

- updates the latest value and time of each parameter, the SpO2 scale and newest time;
- scores NEWS2 from the values inside their windows (the tables of
  ``vitalstream.scoring.news2``), and which inputs are stale;
- decides the policy's short path (``quiet``): nothing open, pending or set for the patient
  (``active``, kept by Python from the policy's ``needs_attention``), a total below the
  patient's alert threshold and no single parameter scoring 3. A quiet assessment's
  memory (last seen and gap per parameter, last NEWS2, score history) is updated here, the
  policy's ``_remember``; from a patient's first assessment that is not quiet, the rest of
  the batch's assessments of that patient go to the Python policy whole;
- decides whether a bed state is due (the total, band or stale inputs changed, or the
  interval passed) and records what it shows: the one home of that rule;
- decides whether the risk is due (once per interval of device time at the patient's
  phase, ``vitalstream.monitor.due``) or carried, and whether a feature row is wanted.

``remember_risks`` then adds the risks of the quiet assessments to the risk history once
the model has scored them. Python runs only for the assessments these flag.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vitalstream.scoring import news2 as N

ABSENT = np.int64(-(2**62))
HISTORY = 24  # score_history entries kept (the policy's)
RISK_HISTORY = 16
RISK_STEP_MS = 5 * 60_000
# Windowed parameters, in the order of an assessment's observations: the NEWS2 inputs in
# chart order, then diastolic BP (shown beside them).
WINDOWED = (*N.COMPONENTS, "diastolic_bp")
N_WINDOWED = len(WINDOWED)
J_RR, J_SPO2, J_OXY, J_SBP, J_HR, J_ACVPU, J_TEMP, J_DBP = range(N_WINDOWED)
# Parameter codes of a row (``code_of``): a windowed index, or these.
P_SCALE, P_OTHER = -2, -1

# Flags of an assessment
F_UNQUIET, F_BED, F_SCORE, F_FEATURES, F_RISK = 1, 2, 4, 8, 16


def _table(bands: tuple[tuple[int, ...], tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(bands[0], dtype=np.int64), np.array(bands[1], dtype=np.int64)


RR_B, RR_S = _table(N.RESP_RATE_BANDS)
S1_B, S1_S = _table(N.SPO2_SCALE1_BANDS)
S2A_B, S2A_S = _table(N.SPO2_SCALE2_AIR_BANDS)
S2O_B, S2O_S = _table(N.SPO2_SCALE2_OXYGEN_BANDS)
SBP_B, SBP_S = _table(N.SYSTOLIC_BP_BANDS)
HR_B, HR_S = _table(N.HEART_RATE_BANDS)
T_B, T_S = _table(N.TEMPERATURE_TENTHS_BANDS)
HALF_MARGIN = N._HALF_MARGIN
OXYGEN_SCORE = N.OXYGEN_SCORE
ACVPU_SCORE = N.CONSCIOUSNESS_NOT_ALERT_SCORE
HIGH_TOTAL, MEDIUM_TOTAL = N.HIGH_TOTAL, N.MEDIUM_TOTAL


@njit(cache=True, inline="always")
def _round(value: float, scale: float) -> int:
    scaled = abs(value) * scale
    rounded = int(np.floor(scaled + 0.5 + HALF_MARGIN))
    return -rounded if value < 0 else rounded


@njit(cache=True, inline="always")
def _band(bounds: np.ndarray, scores: np.ndarray, rounded: int) -> int:
    for i in range(bounds.shape[0]):
        if rounded <= bounds[i]:
            return scores[i]
    return scores[bounds.shape[0]]


@njit(cache=True)
def news2_of(values: np.ndarray, present: np.ndarray, scale: int) -> tuple[int, int, int]:
    """(total, red score 0/1, band index into BANDS) of the present values (windowed order;
    consciousness as its ACVPU index, oxygen 0/1): ``vitalstream.scoring.news2.news2``."""
    total = 0
    red = 0
    oxygen = present[J_OXY] and values[J_OXY] != 0.0
    for j in range(7):
        if not present[j]:
            continue
        v = values[j]
        if j == J_RR:
            s = _band(RR_B, RR_S, _round(v, 1.0))
        elif j == J_SPO2:
            sat = _round(v, 1.0)
            if scale == 2:
                s = _band(S2O_B, S2O_S, sat) if oxygen else _band(S2A_B, S2A_S, sat)
            else:
                s = _band(S1_B, S1_S, sat)
        elif j == J_OXY:
            s = OXYGEN_SCORE if v != 0.0 else 0
        elif j == J_SBP:
            s = _band(SBP_B, SBP_S, _round(v, 1.0))
        elif j == J_HR:
            s = _band(HR_B, HR_S, _round(v, 1.0))
        elif j == J_ACVPU:
            s = 0 if v == 0.0 else ACVPU_SCORE
        else:
            s = _band(T_B, T_S, _round(v, 10.0))
        total += s
        if s == 3:
            red = 1
    band = 3 if total >= HIGH_TOTAL else 2 if total >= MEDIUM_TOTAL else 1 if red else 0
    return total, red, band


@njit(cache=True)
def waves_in_order(slots: np.ndarray, times: np.ndarray, resolution: int, last_moment: np.ndarray,
                   last_wave: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The wave of each row (the patient's k-th reading time is wave k), or an empty array
    if some patient's readings are not in time order (the caller then sorts). ``seen``,
    ``last_*``: scratch by slot (``seen`` all zero on entry and exit)."""
    n = slots.shape[0]
    wave = np.empty(n, dtype=np.int64)
    ok = True
    for i in range(n):
        s = slots[i]
        moment = times[i] // resolution
        if not seen[s]:
            seen[s] = 1
            w = 0
        elif moment == last_moment[s]:
            w = last_wave[s]
        elif moment > last_moment[s]:
            w = last_wave[s] + 1
        else:
            ok = False
            break
        last_moment[s] = moment
        last_wave[s] = w
        wave[i] = w
    for i in range(n):
        seen[slots[i]] = 0
    if not ok:
        return np.empty(0, dtype=np.int64)
    return wave


@njit(cache=True)
def assess_batch(
        # the batch, rows grouped by wave (wave_start[w]..wave_start[w+1]), in wave order
        slots, codes, values, times, artefact, numeric, wave_start,
        # per-slot monitor state
        lat_v, lat_t, newest, scale, unsaved_round,
        # per-slot policy memory
        seen, gap, news2_t, news2_total, state_t, hist_t, hist_s, hist_n, dirty,
        # per-slot decision inputs and bed/risk state
        active, below, shown_total, shown_band, shown_stale, shown_ms, risk_due, has_carry, phase,
        last_ref, model_on, stamp, fed, unquiet,
        # configuration
        window_ms, is_round, single_parameter_alerts, never_quiet, lookback_ms, bed_interval_ms,
        risk_interval_ms, with_model,
        # outputs, one per assessment (at most one per row)
        a_slot, a_time, a_total, a_red, a_band, a_stale, a_in, a_v, a_t, a_scale, a_flags,
        a_ref, a_wave):
    """Take the batch's readings in and assess each patient once per wave; returns the
    number of assessments written to the ``a_*`` outputs (see the module's docstring)."""
    m = 0
    n_waves = wave_start.shape[0] - 1
    present = np.zeros(N_WINDOWED, dtype=np.bool_)
    vals = np.zeros(N_WINDOWED, dtype=np.float64)
    for w in range(n_waves):
        first = m
        # 1. the wave's readings into the latest values, in arrival order
        for i in range(wave_start[w], wave_start[w + 1]):
            s = slots[i]
            if stamp[s] != w + 1:
                stamp[s] = w + 1
                a_slot[m] = s
                a_flags[m] = 0
                m += 1
            code = codes[i]
            t = times[i]
            if code == P_SCALE:
                scale[s] = int(values[i])
                continue
            if artefact[i] or code < 0:
                continue
            if lat_t[s, code] == ABSENT or t >= lat_t[s, code]:
                lat_v[s, code] = values[i]
                lat_t[s, code] = t
                if is_round[code]:
                    unsaved_round[s] = 1
            if t > newest[s]:
                newest[s] = t
            if numeric[i]:
                fed[s] = 1  # a reading for the feature engine in this wave
        # 2. one assessment per patient of the wave
        for k in range(first, m):
            s = a_slot[k]
            has_numeric = fed[s] != 0
            stamp[s] = 0
            fed[s] = 0
            now = newest[s]
            stale = 0
            inside = 0
            for j in range(N_WINDOWED):
                t = lat_t[s, j]
                a_v[k, j] = lat_v[s, j]
                a_t[k, j] = t
                if t == ABSENT:
                    present[j] = False
                elif now - t <= window_ms[j]:
                    present[j] = True
                    inside |= 1 << j
                else:
                    present[j] = False
                    stale |= 1 << j
                vals[j] = lat_v[s, j]
            total, red, band = news2_of(vals, present, scale[s])
            a_time[k] = now
            a_total[k] = total
            a_red[k] = red
            a_band[k] = band
            a_stale[k] = stale
            a_in[k] = inside
            a_scale[k] = scale[s]
            a_wave[k] = w
            flags = 0
            quiet = (not never_quiet and not unquiet[s] and not active[s] and total < below[s]
                     and not (single_parameter_alerts and red))
            if not quiet:
                unquiet[s] = 1
                flags |= F_UNQUIET
            else:
                # the policy's _remember, for an assessment of the short path
                dirty[s] = 1
                if now > state_t[s]:
                    state_t[s] = now
                for j in range(N_WINDOWED):
                    if inside & (1 << j):
                        t = lat_t[s, j]
                        if seen[s, j] == ABSENT:
                            seen[s, j] = t
                        elif t > seen[s, j]:
                            gap[s, j] = t - seen[s, j]
                            seen[s, j] = t
                news2_t[s] = now
                news2_total[s] = total
                n = hist_n[s]
                if n == 0 or hist_s[s, n - 1] != total:
                    if n == HISTORY:  # (the policy trims to 24 after appending)
                        for e in range(HISTORY - 1):
                            hist_t[s, e] = hist_t[s, e + 1]
                            hist_s[s, e] = hist_s[s, e + 1]
                        n -= 1
                    hist_t[s, n] = now
                    hist_s[s, n] = total
                    n += 1
                cutoff = now - lookback_ms
                drop = 0
                while n - drop > 1 and hist_t[s, drop + 1] <= cutoff:
                    drop += 1
                if drop:
                    for e in range(n - drop):
                        hist_t[s, e] = hist_t[s, e + drop]
                        hist_s[s, e] = hist_s[s, e + drop]
                    n -= drop
                if hist_t[s, 0] < cutoff:
                    hist_t[s, 0] = cutoff
                hist_n[s] = n
            # the bed state: shown when what it shows changed, or the interval passed
            if (total != shown_total[s] or band != shown_band[s] or stale != shown_stale[s]
                    or now - shown_ms[s] >= bed_interval_ms):
                shown_total[s], shown_band[s], shown_stale[s], shown_ms[s] = total, band, stale, now
                flags |= F_BED
            # the risk: chosen at most once per interval of device time, else carried
            a_ref[k] = -2  # no risk (no feature-engine reading in this wave)
            if has_numeric and with_model and model_on[s]:
                flags |= F_RISK
                if not has_carry[s] or now >= risk_due[s]:
                    if risk_interval_ms <= 0:
                        risk_due[s] = now
                    else:
                        p = phase[s] % risk_interval_ms
                        risk_due[s] = ((now + p) // risk_interval_ms + 1) * risk_interval_ms - p
                    has_carry[s] = 1
                    last_ref[s] = k
                    flags |= F_SCORE
                a_ref[k] = last_ref[s]  # -1: the risk carried from an earlier batch
            if has_numeric and (flags & (F_SCORE | F_UNQUIET | F_BED)):
                flags |= F_FEATURES
            a_flags[k] = flags
    return m


@njit(cache=True)
def remember_risks(a_slot, a_time, a_flags, a_risk, rh_t, rh_v, rh_n, horizon_ms):
    """The risk history of the quiet assessments with a risk (the policy's _remember)."""
    for k in range(a_slot.shape[0]):
        if a_flags[k] & F_UNQUIET or not (a_flags[k] & F_RISK) or np.isnan(a_risk[k]):
            continue
        s = a_slot[k]
        t = a_time[k]
        n = rh_n[s]
        if n == 0 or t - rh_t[s, n - 1] >= RISK_STEP_MS:
            if n == RISK_HISTORY:
                for e in range(RISK_HISTORY - 1):
                    rh_t[s, e] = rh_t[s, e + 1]
                    rh_v[s, e] = rh_v[s, e + 1]
                n -= 1
            rh_t[s, n] = t
            rh_v[s, n] = a_risk[k]
            n += 1
        horizon = t - horizon_ms
        drop = 0
        while n - drop > 1 and rh_t[s, drop] < horizon:
            drop += 1
        if drop:
            for e in range(n - drop):
                rh_t[s, e] = rh_t[s, e + drop]
                rh_v[s, e] = rh_v[s, e + drop]
            n -= drop
        rh_n[s] = n
