"""Individual baselines, circadian rhythm and slow physiological drift (pure numpy).

A patient's latent physiology is sampled on a one-minute grid: baseline + circadian
swing + a slow Ornstein-Uhlenbeck drift. Devices then read it with their own noise and
artefacts (`simulators.devices`) and archetypes bend it towards an event
(`simulators.archetypes`).

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> baseline = draw_baseline(rng, "copd", age_years=71, sex="F")
>>> baseline.spo2_scale, 86 <= baseline.spo2_pct <= 93
(2, True)
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import lfilter

GRID_S = 60
# Latent numeric channels, in this order in every latent array.
CHANNELS: tuple[str, ...] = ("heart_rate", "resp_rate", "spo2", "systolic_bp", "diastolic_bp",
                             "temperature")
CHANNEL_INDEX = {name: i for i, name in enumerate(CHANNELS)}

# Peak-to-mean circadian swing (healthy adults: HR and BP lowest around 04:00, highest in
# the late afternoon; core temperature follows about 0.3 degC).
CIRCADIAN_AMPLITUDE = {"heart_rate": 5.0, "resp_rate": 0.8, "spo2": 0.3, "systolic_bp": 6.0,
                       "diastolic_bp": 4.0, "temperature": 0.3}
CIRCADIAN_PEAK_HOUR = 17.0
# Slow drift: standard deviation and correlation time (hours).
DRIFT_SD = {"heart_rate": 4.0, "resp_rate": 1.0, "spo2": 0.6, "systolic_bp": 6.0,
            "diastolic_bp": 4.0, "temperature": 0.12}
DRIFT_TAU_H = 1.5

# Stable profiles and how often a ward patient has them; the chronic ones score NEWS2
# points all the time, which is what makes a fixed threshold noisy.
PROFILES: dict[str, float] = {
    "typical": 0.78,
    "copd": 0.09,          # SpO2 scale 2, target 88-92 %, RR high-normal, some on home oxygen
    "athlete": 0.0,        # resting HR 42-51; young adults only (see draw_profile)
    "hypertensive": 0.05,  # SBP 155-190
    "frail_low_bp": 0.04,  # SBP 98-112
}


@dataclasses.dataclass(frozen=True, slots=True)
class Baseline:
    """A patient's own normal at rest, midday, without illness."""

    profile: str
    heart_rate_per_min: float
    resp_rate_per_min: float
    spo2_pct: float
    systolic_bp_mmhg: float
    diastolic_bp_mmhg: float
    temperature_c: float
    spo2_scale: int = 1
    on_oxygen: bool = False

    def channel_values(self) -> np.ndarray:
        return np.array([self.heart_rate_per_min, self.resp_rate_per_min, self.spo2_pct,
                         self.systolic_bp_mmhg, self.diastolic_bp_mmhg, self.temperature_c])

    def to_dict(self) -> dict[str, float | int | bool | str]:
        return dataclasses.asdict(self)


def draw_profile(rng: np.random.Generator, age_years: int) -> str:
    names = list(PROFILES)
    weights = np.array([PROFILES[name] for name in names])
    # Athletes' resting bradycardia belongs to the young adults of a ward (about a third of them).
    weights[names.index("athlete")] = 0.35 if age_years <= 50 else 0.0
    if age_years < 50:
        weights[names.index("copd")] = 0.0
    return str(rng.choice(names, p=weights / weights.sum()))


def draw_baseline(rng: np.random.Generator, profile: str, age_years: int, sex: str) -> Baseline:
    """Individual resting values for a profile; clipped so a 'typical' patient scores 0."""
    hr = float(np.clip(rng.normal(76 if sex == "F" else 72, 8), 58, 90))
    rr = float(np.clip(rng.normal(15.5, 1.6), 12.5, 19))
    spo2 = float(np.clip(rng.normal(97.0, 1.0), 95.5, 99.5))
    sbp = float(np.clip(rng.normal(122 + 0.35 * (age_years - 50), 12), 112, 165))
    temp = float(np.clip(rng.normal(36.8, 0.2), 36.3, 37.3))
    scale, oxygen = 1, False
    if profile == "copd":
        spo2 = float(np.clip(rng.normal(90.0, 1.3), 87.5, 92.5))
        rr = float(np.clip(rng.normal(19.5, 1.5), 17, 22))
        hr = float(np.clip(rng.normal(86, 6), 75, 98))
        scale, oxygen = 2, bool(rng.random() < 0.3)
    elif profile == "athlete":
        hr = float(rng.uniform(42, 51))
        rr = float(np.clip(rng.normal(13.5, 1.0), 12, 16))
        sbp = float(rng.uniform(112, 128))
    elif profile == "hypertensive":
        sbp = float(rng.uniform(155, 190))
    elif profile == "frail_low_bp":
        sbp = float(rng.uniform(100, 112))
        hr = float(np.clip(rng.normal(80, 6), 65, 92))
    dbp = float(sbp * rng.uniform(0.55, 0.65))
    return Baseline(profile, hr, rr, spo2, sbp, dbp, temp, scale, oxygen)


def circadian(hour_of_day: np.ndarray) -> np.ndarray:
    """Unit circadian wave: +1 at the late-afternoon peak, -1 twelve hours later."""
    return np.cos(2 * np.pi * (hour_of_day - CIRCADIAN_PEAK_HOUR) / 24.0)


def ou_drift(rng: np.random.Generator, n: int, step_s: float, tau_s: float, sd: float) -> np.ndarray:
    """A stationary Ornstein-Uhlenbeck path (AR(1) on the grid), started in equilibrium."""
    phi = np.exp(-step_s / tau_s)
    shocks = rng.normal(0.0, sd * np.sqrt(1 - phi * phi), n)
    shocks[0] = rng.normal(0.0, sd)
    return lfilter([1.0], [1.0, -phi], shocks)


def latent_physiology(rng: np.random.Generator, baseline: Baseline, grid_ms: np.ndarray) -> np.ndarray:
    """Latent values on the grid, shape (len(CHANNELS), len(grid_ms)), before any illness."""
    hour_of_day = (grid_ms / 3_600_000.0) % 24.0
    wave = circadian(hour_of_day)
    values = np.empty((len(CHANNELS), grid_ms.size))
    base = baseline.channel_values()
    for i, name in enumerate(CHANNELS):
        drift = ou_drift(rng, grid_ms.size, GRID_S, DRIFT_TAU_H * 3600, DRIFT_SD[name])
        values[i] = base[i] + CIRCADIAN_AMPLITUDE[name] * wave + drift
    # Drift is shared between systolic and diastolic pressure (they move together).
    sbp, dbp = CHANNEL_INDEX["systolic_bp"], CHANNEL_INDEX["diastolic_bp"]
    values[dbp] = base[dbp] + CIRCADIAN_AMPLITUDE["diastolic_bp"] * wave + 0.6 * (values[sbp] - base[sbp] - CIRCADIAN_AMPLITUDE["systolic_bp"] * wave)
    return values


def physiological_limits(values: np.ndarray) -> np.ndarray:
    """Clip latent values to what a living ward patient can show (SpO2 <= 100 % etc.)."""
    lows = np.array([25.0, 4.0, 60.0, 50.0, 25.0, 33.0])[:, None]
    highs = np.array([200.0, 50.0, 100.0, 240.0, 140.0, 42.0])[:, None]
    return np.clip(values, lows, highs)
