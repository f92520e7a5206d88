"""Deterioration archetypes: how physiology moves from onset to the clinical event.

Each archetype bends the latent physiology by an amount that grows with the progress
``p`` (0 at onset, 1 at the event: rapid-response call or ICU transfer) and stays at 1
afterwards. Shapes follow the clinical picture:

- sepsis: HR and RR up early, temperature up (or down in a quarter), BP falls late.
- respiratory failure: RR up, SpO2 down until oxygen is started, HR up.
- haemorrhage: HR up, BP down (late and steep), narrow pulse pressure.
- opioid-induced respiratory depression: RR and SpO2 down, consciousness falls.
- new atrial fibrillation with rapid rate: HR jumps at onset, irregular; BP drifts down.

>>> import numpy as np
>>> p = progress(np.array([0, 5, 10, 20]) * 3_600_000, onset_ms=0, event_ms=10 * 3_600_000)
>>> p.tolist()
[0.0, 0.5, 1.0, 1.0]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulators.physiology import CHANNEL_INDEX

ARCHETYPES: tuple[str, ...] = ("sepsis", "respiratory_failure", "haemorrhage",
                               "opioid_respiratory_depression", "af_rapid")
STABLE = "stable"

# Hours from physiological onset to the event (uniform range). Sepsis and respiratory
# failure brew for most of a day; bleeding and opioid narcosis are quicker.
ONSET_TO_EVENT_H: dict[str, tuple[float, float]] = {
    "sepsis": (10.0, 24.0),
    "respiratory_failure": (8.0, 20.0),
    "haemorrhage": (5.0, 12.0),
    "opioid_respiratory_depression": (5.0, 10.0),
    "af_rapid": (5.0, 12.0),
}

# ACVPU codes in the latent consciousness array.
ALERT, CONFUSED, VOICE, PAIN = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True, slots=True)
class Course:
    """One patient's deterioration: archetype, timing and individual severity."""

    archetype: str
    onset_ms: int
    event_ms: int
    severity: float
    hypothermic: bool = False
    confusion_at: float = 2.0  # progress at which new confusion appears (> 1: never)
    voice_at: float = 2.0      # progress at which the patient responds to voice only


def draw_course(rng: np.random.Generator, archetype: str, event_ms: int, earliest_onset_ms: int) -> Course:
    low_h, high_h = ONSET_TO_EVENT_H[archetype]
    onset_ms = max(earliest_onset_ms, event_ms - int(rng.uniform(low_h, high_h) * 3_600_000))
    severity = float(rng.uniform(0.85, 1.2))
    confusion_at, voice_at = 2.0, 2.0
    if archetype == "sepsis" and rng.random() < 0.6:
        confusion_at = float(rng.uniform(0.7, 0.95))
    elif archetype == "haemorrhage" and rng.random() < 0.5:
        confusion_at = float(rng.uniform(0.8, 0.95))
    elif archetype == "respiratory_failure" and rng.random() < 0.3:
        confusion_at = float(rng.uniform(0.85, 0.98))
    elif archetype == "opioid_respiratory_depression":
        voice_at = float(rng.uniform(0.45, 0.75))
    return Course(archetype, onset_ms, event_ms, severity,
                  hypothermic=archetype == "sepsis" and rng.random() < 0.25,
                  confusion_at=confusion_at, voice_at=voice_at)


def progress(times_ms: np.ndarray, onset_ms: int, event_ms: int) -> np.ndarray:
    """0 before onset, rising linearly to 1 at the event, 1 afterwards."""
    span = max(event_ms - onset_ms, 1)
    return np.clip((times_ms - onset_ms) / span, 0.0, 1.0)


def _late(p: np.ndarray, start: float, power: float = 1.5) -> np.ndarray:
    """A change that only begins at progress ``start`` (e.g. BP falling late in sepsis)."""
    return np.clip((p - start) / (1.0 - start), 0.0, 1.0) ** power


def apply_course(latent: np.ndarray, grid_ms: np.ndarray, course: Course) -> tuple[np.ndarray, np.ndarray]:
    """Bend ``latent`` (modified in place) along the course.

    Returns the latent consciousness (ACVPU code per grid point) and the per-point
    multiplier of heart-rate measurement noise (irregular rhythm in AF)."""
    p = progress(grid_ms, course.onset_ms, course.event_ms)
    s = course.severity
    hr, rr, spo2 = CHANNEL_INDEX["heart_rate"], CHANNEL_INDEX["resp_rate"], CHANNEL_INDEX["spo2"]
    sbp, dbp, temp = CHANNEL_INDEX["systolic_bp"], CHANNEL_INDEX["diastolic_bp"], CHANNEL_INDEX["temperature"]
    hr_noise = np.ones(grid_ms.size)
    name = course.archetype
    if name == "sepsis":
        curve = p ** 1.2
        latent[hr] += 42 * s * curve
        latent[rr] += 12 * s * curve
        latent[temp] += (-1.9 if course.hypothermic else 2.3) * s * curve
        latent[spo2] -= 4 * s * curve
        latent[sbp] -= 42 * s * _late(p, 0.5)
        latent[dbp] -= 24 * s * _late(p, 0.5)
    elif name == "respiratory_failure":
        latent[rr] += 15 * s * p ** 1.1
        latent[spo2] -= 11 * s * p ** 1.3
        latent[hr] += 24 * s * p
        latent[temp] += 0.4 * p
        latent[sbp] += 6 * p
    elif name == "haemorrhage":
        latent[hr] += 48 * s * p ** 1.1
        latent[sbp] -= 50 * s * _late(p, 0.25, 1.6)
        latent[dbp] -= 22 * s * _late(p, 0.25, 1.6)
        latent[rr] += 8 * s * p
        latent[spo2] -= 2 * s * p
        latent[temp] -= 0.4 * p
    elif name == "opioid_respiratory_depression":
        latent[rr] -= 9.5 * s * p ** 0.9
        latent[spo2] -= 10 * s * p ** 1.2
        latent[hr] -= 10 * s * p
        latent[sbp] -= 14 * s * p
        latent[dbp] -= 8 * s * p
    elif name == "af_rapid":
        # The rhythm changes within ~20 minutes; the haemodynamic cost accumulates.
        jump = np.clip((grid_ms - course.onset_ms) / 1_200_000, 0.0, 1.0)
        latent[hr] = latent[hr] * (1 - jump) + (128 + 22 * s) * jump + 0.3 * (latent[hr] - latent[hr].mean()) * jump
        hr_noise = 1.0 + 5.0 * jump
        latent[sbp] -= 32 * s * p ** 1.3
        latent[dbp] -= 16 * s * p ** 1.3
        latent[rr] += 7 * s * p
        latent[spo2] -= 2.5 * s * p
    else:
        raise ValueError(f"unknown archetype {name!r}")
    consciousness = np.full(grid_ms.size, ALERT, dtype=np.int8)
    consciousness[p >= course.confusion_at] = CONFUSED
    if name == "opioid_respiratory_depression":
        consciousness[p >= course.voice_at] = VOICE
        consciousness[p >= min(1.0, course.voice_at + 0.35)] = PAIN
    return consciousness, hr_noise
