"""Devices that read a patient's latent physiology: how often, with what noise, and with
which artefacts.

- bedside monitor: HR, SpO2, RR every ``period_s`` (60 s on a ward, 1 s possible) and
  NIBP on a 30-minute cycle;
- wearable patch: HR and RR every minute, noisier, more motion and dropouts; some patients
  also wear a wrist oximeter (SpO2 every minute);
- manual spot checks (every patient): the full NEWS2 set with consciousness, oxygen and
  SpO2 scale, every 4 h, more often as NEWS2 rises (RCP escalation of observations).

Artefacts of continuous devices: motion (HR/RR spikes, false desaturation), probe off
(one implausible SpO2 then nothing), dropouts (no data from the device) and flat lines
(a stuck RR). Some motion and all probe-off readings carry ``artefact=True`` (the
device's own signal-quality flag); flat lines and the rest are not flagged, as in life.

Rows are columnar: (time_ms, parameter index, value, source index, artefact) arrays.
Consciousness is its ACVPU index, ``on_oxygen`` 0/1, ``spo2_scale`` 1/2.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulators.physiology import CHANNEL_INDEX
from vitalstream.samples import PARAM_INDEX
from vitalstream.scoring.news2 import news2

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

# Measurement noise (one standard deviation) of a device reading on top of physiology.
MONITOR_NOISE = {"heart_rate": 1.5, "resp_rate": 1.2, "spo2": 0.6}
PATCH_NOISE = {"heart_rate": 2.0, "resp_rate": 2.0, "spo2": 0.9}
NIBP_NOISE = {"systolic_bp": 5.0, "diastolic_bp": 4.0}
SPOT_NOISE = {"heart_rate": 2.0, "resp_rate": 1.2, "spo2": 0.8, "systolic_bp": 5.0,
              "diastolic_bp": 4.0, "temperature": 0.15}
NIBP_INTERVAL_MS = 30 * MINUTE_MS

# Artefact episodes per device-day and their duration range in minutes.
ARTEFACT_RATES_PER_DAY = {
    "monitor": {"motion": 4.0, "probe_off": 3.0, "dropout": 0.5, "flatline": 0.5},
    "patch": {"motion": 8.0, "dropout": 1.5, "flatline": 0.3},
    "oximeter": {"motion": 6.0, "probe_off": 4.0, "dropout": 1.5},
}
ARTEFACT_MINUTES = {"motion": (1, 4), "probe_off": (2, 20), "dropout": (5, 60), "flatline": (10, 45)}
MOTION_FLAGGED_FRACTION = 0.5

# Oxygen is started when a spot-check SpO2 is below the patient's target, and lifts SpO2.
OXYGEN_START_BELOW = {1: 92.0, 2: 88.0}
OXYGEN_LIFT_PCT = 4.0


@dataclasses.dataclass(frozen=True, slots=True)
class Intervals:
    """Non-overlapping [start, end) episodes with one row of numbers each."""

    starts: np.ndarray
    ends: np.ndarray
    extra: np.ndarray  # shape (n, k): per-episode numbers (offsets, flags, stuck value)

    def locate(self, times_ms: np.ndarray) -> np.ndarray:
        """Index of the episode each time falls in, -1 outside all."""
        if self.starts.size == 0:
            return np.full(times_ms.size, -1)
        index = np.searchsorted(self.starts, times_ms, side="right") - 1
        inside = (index >= 0) & (times_ms < self.ends[np.maximum(index, 0)])
        return np.where(inside, index, -1)


def draw_intervals(rng: np.random.Generator, start_ms: int, end_ms: int, per_day: float,
                   minutes: tuple[int, int], extra_columns: int = 0) -> Intervals:
    count = rng.poisson(per_day * (end_ms - start_ms) / DAY_MS)
    starts = np.sort(rng.integers(start_ms, max(end_ms, start_ms + 1), count))
    ends = starts + rng.integers(minutes[0], minutes[1] + 1, count) * MINUTE_MS
    if count > 1:  # keep episodes apart so each time belongs to at most one
        ends[:-1] = np.minimum(ends[:-1], starts[1:])
    return Intervals(starts, ends, rng.random((count, extra_columns)))


@dataclasses.dataclass(frozen=True, slots=True)
class ContinuousDevice:
    """A device reporting a few parameters on a fixed period, with its artefact episodes."""

    source: str
    kind: str  # monitor, patch or oximeter
    parameters: tuple[str, ...]
    period_ms: int
    phase_ms: int
    noise: dict[str, float]
    motion: Intervals
    probe_off: Intervals
    dropout: Intervals
    flatline: Intervals


def draw_continuous(rng: np.random.Generator, kind: str, source: str, start_ms: int,
                    end_ms: int, period_s: float) -> ContinuousDevice:
    parameters = {"monitor": ("heart_rate", "spo2", "resp_rate"),
                  "patch": ("heart_rate", "resp_rate"), "oximeter": ("spo2",)}[kind]
    rates = ARTEFACT_RATES_PER_DAY[kind]
    period_ms = int(period_s * 1000)

    def episodes(name: str, columns: int) -> Intervals:
        return draw_intervals(rng, start_ms, end_ms, rates.get(name, 0.0), ARTEFACT_MINUTES[name], columns)

    return ContinuousDevice(
        source=source, kind=kind, parameters=parameters, period_ms=period_ms,
        phase_ms=int(rng.integers(0, period_ms)),
        noise=MONITOR_NOISE if kind == "monitor" else PATCH_NOISE,
        motion=episodes("motion", 4), probe_off=episodes("probe_off", 1),
        dropout=episodes("dropout", 0), flatline=episodes("flatline", 0),
    )


def continuous_rows(device: ContinuousDevice, grid_ms: np.ndarray, latent: np.ndarray,
                    hr_noise: np.ndarray, t0_ms: int, t1_ms: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The device's readings in [t0_ms, t1_ms): (time_ms, param, value, artefact)."""
    first = t0_ms + (device.phase_ms - t0_ms) % device.period_ms
    times = np.arange(first, t1_ms, device.period_ms, dtype=np.int64)
    times = times[device.dropout.locate(times) < 0]
    motion_at = device.motion.locate(times)
    moving = motion_at >= 0
    motion = device.motion.extra[np.maximum(motion_at, 0)] if device.motion.extra.size else np.zeros((times.size, 4))
    out_t, out_p, out_v, out_a = [], [], [], []
    for name in device.parameters:
        channel = CHANNEL_INDEX[name]
        values = np.interp(times, grid_ms, latent[channel])
        sd = device.noise[name] * (np.interp(times, grid_ms, hr_noise) if name == "heart_rate" else 1.0)
        values = values + rng.normal(0.0, 1.0, times.size) * sd
        flagged = np.zeros(times.size, dtype=bool)
        keep = np.ones(times.size, dtype=bool)
        # Motion: tachycardia-looking HR, erratic RR, and a false desaturation.
        if name == "heart_rate":
            values = np.where(moving, values + 20 + 25 * motion[:, 0], values)
        elif name == "resp_rate":
            values = np.where(moving, values - 6 + 18 * motion[:, 1], values)
            stuck_at = device.flatline.locate(times)
            stuck = stuck_at >= 0
            if stuck.any():
                # A stuck impedance channel repeats the value it had when it stuck.
                first_value = np.interp(device.flatline.starts, grid_ms, latent[channel]).round()
                values = np.where(stuck, first_value[np.maximum(stuck_at, 0)], values)
        elif name == "spo2":
            values = np.where(moving, values - 2 - 10 * motion[:, 2], values)
            off_at = device.probe_off.locate(times)
            off = off_at >= 0
            if off.any():
                # The first reading after the probe slips is garbage; then the device is silent.
                first_off = off & np.r_[True, off_at[1:] != off_at[:-1]]
                values = np.where(first_off, 55 + 25 * rng.random(times.size), values)
                flagged |= first_off
                keep &= ~off | first_off
        flagged |= moving & (motion[:, 3] < MOTION_FLAGGED_FRACTION)
        values = quantise(name, values)
        out_t.append(times[keep])
        out_p.append(np.full(int(keep.sum()), PARAM_INDEX[name], dtype=np.int8))
        out_v.append(values[keep])
        out_a.append(flagged[keep])
    return np.concatenate(out_t), np.concatenate(out_p), np.concatenate(out_v), np.concatenate(out_a)


def quantise(name: str, values: np.ndarray) -> np.ndarray:
    """Devices report whole numbers (temperature to 0.1 degC), within their display range."""
    if name == "temperature":
        return np.round(np.clip(values, 30.0, 43.0), 1)
    if name == "spo2":
        return np.clip(np.round(values), 40, 100)
    return np.maximum(np.round(values), 0.0)


def nibp_rows(rng: np.random.Generator, grid_ms: np.ndarray, latent: np.ndarray, start_ms: int,
              end_ms: int, period_ms: int = NIBP_INTERVAL_MS) -> tuple[np.ndarray, ...]:
    times = np.arange(start_ms + int(rng.integers(0, period_ms)), end_ms, period_ms, dtype=np.int64)
    out_t, out_p, out_v = [], [], []
    for name in ("systolic_bp", "diastolic_bp"):
        values = np.interp(times, grid_ms, latent[CHANNEL_INDEX[name]]) + rng.normal(0, NIBP_NOISE[name], times.size)
        out_t.append(times)
        out_p.append(np.full(times.size, PARAM_INDEX[name], dtype=np.int8))
        out_v.append(quantise(name, values))
    return np.concatenate(out_t), np.concatenate(out_p), np.concatenate(out_v), np.zeros(2 * times.size, dtype=bool)


def next_check_after_ms(total: int, any_three: bool) -> int:
    """RCP minimum observation frequency: 4-hourly when low, hourly for medium or a single
    red score, half-hourly (continuous in principle) when high."""
    if total >= 7:
        return 30 * MINUTE_MS
    if total >= 5 or any_three:
        return HOUR_MS
    return 4 * HOUR_MS


def spot_checks(rng: np.random.Generator, grid_ms: np.ndarray, latent: np.ndarray,
                consciousness: np.ndarray, on_oxygen: np.ndarray, hr_noise: np.ndarray,
                spo2_scale: int, start_ms: int, end_ms: int) -> tuple[np.ndarray, ...]:
    """Nurse observation rounds with escalation. Modifies ``latent`` and ``on_oxygen`` in
    place when a low SpO2 makes the nurse start oxygen (the lift applies from then on)."""
    names = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "diastolic_bp", "temperature")
    rows_t, rows_p, rows_v = [], [], []
    t = start_ms + int(rng.integers(0, 4 * HOUR_MS))
    spo2 = CHANNEL_INDEX["spo2"]
    while t < end_ms:
        i = min(int(np.searchsorted(grid_ms, t)), grid_ms.size - 1)
        reading: dict[str, float | str | bool | int] = {}
        for name in names:
            sd = SPOT_NOISE[name] * (hr_noise[i] if name == "heart_rate" else 1.0)
            reading[name] = float(quantise(name, np.array([latent[CHANNEL_INDEX[name], i] + rng.normal(0, sd)]))[0])
        reading["consciousness"] = "ACVPU"[int(consciousness[i])]
        reading["on_oxygen"] = bool(on_oxygen[i])
        reading["spo2_scale"] = spo2_scale
        for name, value in reading.items():
            rows_t.append(t)
            rows_p.append(PARAM_INDEX[name])
            rows_v.append("ACVPU".index(value) if name == "consciousness" else float(value))
        score = news2(reading)
        if not on_oxygen[i] and float(reading["spo2"]) < OXYGEN_START_BELOW[spo2_scale]:
            ramp = np.clip((grid_ms[i:] - grid_ms[i]) / (10 * MINUTE_MS), 0.0, 1.0)
            latent[spo2, i:] = np.minimum(latent[spo2, i:] + OXYGEN_LIFT_PCT * ramp, 100.0)
            on_oxygen[i:] = True
        any_three = any(component == 3 for component in score.components.values())
        step = next_check_after_ms(score.total, any_three)
        t += step + int(rng.integers(-step // 8, step // 8 + 1))
    times = np.array(rows_t, dtype=np.int64)
    return (times, np.array(rows_p, dtype=np.int8), np.array(rows_v, dtype=float),
            np.zeros(times.size, dtype=bool))
