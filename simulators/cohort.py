"""A seeded, reproducible ward cohort: patients, their devices, their labelled events, and
all their samples merged in device-time order.

>>> cohort = generate_cohort(4, hours=2, seed=3, deteriorating_fraction=0.5)
>>> len(cohort.patients), len(cohort.events())
(4, 2)
>>> samples = list(cohort.samples())
>>> all(a.device_time_ms <= b.device_time_ms for a, b in zip(samples, samples[1:]))
True

The same seed gives the same cohort; patient ``i`` depends only on (seed, i), so adding
patients does not change the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from simulators.archetypes import ARCHETYPES, STABLE, Course, apply_course, draw_course
from simulators.devices import (
    HOUR_MS,
    MINUTE_MS,
    ContinuousDevice,
    continuous_rows,
    draw_continuous,
    nibp_rows,
    spot_checks,
)
from simulators.physiology import (
    GRID_S,
    Baseline,
    draw_baseline,
    draw_profile,
    latent_physiology,
    physiological_limits,
)
from vitalstream.samples import ACVPU, CANONICAL_UNITS, PARAM_INDEX, PARAMETERS, Sample

# 2026-03-15 00:00:00 UTC: a fixed default so that simulated device times are reproducible.
DEFAULT_START_MS = 1_773_532_800_000
# After the event the rapid-response team is at the bedside; the patient leaves the ward
# (ICU) this long after it, and their data stop.
POST_EVENT_MS = 30 * MINUTE_MS
# Events fall in this part of the window, so lead times before them can be measured.
EVENT_WINDOW = (0.30, 0.95)
DEVICE_MIX = {"monitor": 0.35, "patch": 0.45, "spot": 0.20}
WEARABLE_OXIMETER_FRACTION = 0.6
CHUNK_MS = HOUR_MS

_CONSCIOUSNESS = PARAM_INDEX["consciousness"]
_ON_OXYGEN = PARAM_INDEX["on_oxygen"]
_SPO2_SCALE = PARAM_INDEX["spo2_scale"]


@dataclasses.dataclass(slots=True)
class SimPatient:
    """One simulated patient with the labels validation needs. ``onset_ms`` and
    ``event_ms`` are None for stable patients; ``end_ms`` is when their data stop."""

    patient_id: str
    ward: str
    bed: str
    age_years: int
    sex: str
    profile: str
    baseline: Baseline
    spo2_scale: int
    devices: tuple[str, ...]
    archetype: str
    onset_ms: int | None
    event_ms: int | None
    start_ms: int
    end_ms: int
    severity: float | None = None
    _model: _PatientModel | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def deteriorating(self) -> bool:
        return self.archetype != STABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id, "ward": self.ward, "bed": self.bed,
            "age_years": self.age_years, "sex": self.sex, "profile": self.profile,
            "baseline": self.baseline.to_dict(), "spo2_scale": self.spo2_scale,
            "devices": list(self.devices), "archetype": self.archetype,
            "onset_ms": self.onset_ms, "event_ms": self.event_ms,
            "start_ms": self.start_ms, "end_ms": self.end_ms, "severity": self.severity,
        }


@dataclasses.dataclass(slots=True)
class _PatientModel:
    """What is needed to produce a patient's samples chunk by chunk."""

    grid_ms: np.ndarray
    latent: np.ndarray
    hr_noise: np.ndarray
    continuous: list[ContinuousDevice]
    eager: tuple[np.ndarray, ...]  # spot checks and NIBP: few rows, made up front
    eager_sources: np.ndarray


@dataclasses.dataclass(slots=True)
class Rows:
    """Columnar samples: one entry per sample, in device-time order."""

    time_ms: np.ndarray
    patient: np.ndarray
    parameter: np.ndarray
    value: np.ndarray
    source: np.ndarray
    artefact: np.ndarray

    def __len__(self) -> int:
        return int(self.time_ms.size)


class Cohort:
    """Simulated patients; samples are produced lazily, one time chunk at a time."""

    def __init__(self, patients: list[SimPatient], sources: list[str], start_ms: int,
                 end_ms: int, seed: int, chunk_ms: int = CHUNK_MS) -> None:
        self.patients = patients
        self.sources = sources
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.seed = seed
        self.chunk_ms = chunk_ms
        self._source_index = {name: i for i, name in enumerate(sources)}

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / HOUR_MS

    @property
    def patient_days(self) -> float:
        """Observed time on the ward: deteriorating patients leave after their event."""
        return sum(p.end_ms - p.start_ms for p in self.patients) / (24 * HOUR_MS)

    def events(self) -> list[dict[str, Any]]:
        return [{"patient_id": p.patient_id, "ward": p.ward, "bed": p.bed, "archetype": p.archetype,
                 "onset_ms": p.onset_ms, "event_ms": p.event_ms}
                for p in self.patients if p.deteriorating]

    def to_dict(self) -> dict[str, Any]:
        """The labels for validation (JSON-ready)."""
        return {"seed": self.seed, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "hours": self.hours, "patient_days": self.patient_days,
                "patients": [p.to_dict() for p in self.patients], "events": self.events()}

    def chunk_rows(self, t0_ms: int, t1_ms: int) -> Rows:
        """All patients' samples with t0_ms <= device time < t1_ms, sorted by
        (time, patient, source, parameter) so one device report is contiguous."""
        parts: list[tuple[np.ndarray, ...]] = []
        chunk = (t0_ms - self.start_ms) // self.chunk_ms
        for index, patient in enumerate(self.patients):
            model = patient._model
            assert model is not None
            lo, hi = max(t0_ms, patient.start_ms), min(t1_ms, patient.end_ms)
            if lo >= hi:
                continue
            rng = np.random.default_rng([self.seed, index, int(chunk), 1])
            times, params, values, artefact = model.eager
            sel = (times >= lo) & (times < hi)
            parts.append((times[sel], np.full(int(sel.sum()), index, dtype=np.int32), params[sel],
                          values[sel], model.eager_sources[sel], artefact[sel]))
            for device in model.continuous:
                t, p, v, a = continuous_rows(device, model.grid_ms, model.latent, model.hr_noise, lo, hi, rng)
                parts.append((t, np.full(t.size, index, dtype=np.int32), p, v,
                              np.full(t.size, self._source_index[device.source], dtype=np.int32), a))
        if not parts:
            empty = np.zeros(0)
            return Rows(empty.astype(np.int64), empty.astype(np.int32), empty.astype(np.int8),
                        empty, empty.astype(np.int32), empty.astype(bool))
        columns = [np.concatenate([part[k] for part in parts]) for k in range(6)]
        order = np.lexsort((columns[2], columns[4], columns[1], columns[0]))
        return Rows(*(column[order] for column in columns))

    def rows(self) -> Iterator[Rows]:
        """Columnar samples in device-time order, one chunk (an hour by default) at a time."""
        for t0 in range(self.start_ms, self.end_ms, self.chunk_ms):
            rows = self.chunk_rows(t0, min(t0 + self.chunk_ms, self.end_ms))
            if len(rows):
                yield rows

    def to_samples(self, rows: Rows) -> list[Sample]:
        samples = []
        names = [p.patient_id for p in self.patients]
        wards = [p.ward for p in self.patients]
        beds = [p.bed for p in self.patients]
        for t, i, k, v, s, a in zip(rows.time_ms.tolist(), rows.patient.tolist(), rows.parameter.tolist(),
                                    rows.value.tolist(), rows.source.tolist(), rows.artefact.tolist(),
                                    strict=True):
            name = PARAMETERS[k]
            if k == _CONSCIOUSNESS:
                value: float | str | bool = ACVPU[int(v)]
            elif k == _ON_OXYGEN:
                value = bool(v)
            elif k == _SPO2_SCALE:
                value = int(v)
            else:
                value = v
            samples.append(Sample(patient_id=names[i], ward=wards[i], bed=beds[i], parameter=name,
                                  value=value, unit=CANONICAL_UNITS[name], device_time_ms=t,
                                  source=self.sources[s], ingest_time_ms=0, artefact=a))
        return samples

    def samples(self) -> Iterator[Sample]:
        """Every patient's samples merged in device-time order (a generator, chunked)."""
        for rows in self.rows():
            yield from self.to_samples(rows)

    def reports(self) -> Iterator[list[Sample]]:
        """Samples grouped as devices send them: one list per (patient, source, time)."""
        for rows in self.rows():
            samples = self.to_samples(rows)
            keys = np.stack([rows.time_ms, rows.patient.astype(np.int64), rows.source.astype(np.int64)])
            cuts = np.flatnonzero(np.any(keys[:, 1:] != keys[:, :-1], axis=0)) + 1
            bounds = [0, *cuts.tolist(), len(samples)]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                yield samples[a:b]


def _assign_devices(rng: np.random.Generator, mix: dict[str, float]) -> str:
    names = list(mix)
    weights = np.array([mix[name] for name in names], dtype=float)
    return str(rng.choice(names, p=weights / weights.sum()))


def generate_cohort(n_patients: int, hours: float, seed: int = 0,
                    deteriorating_fraction: float = 0.125, start_ms: int = DEFAULT_START_MS,
                    wards: tuple[str, ...] = ("4B", "5A"), monitor_period_s: float = 60.0,
                    device_mix: dict[str, float] | None = None,
                    archetypes: tuple[str, ...] = ARCHETYPES,
                    baseline_shift: dict[str, float] | None = None) -> Cohort:
    """Make a cohort. Exactly ``round(n_patients * deteriorating_fraction)`` patients
    deteriorate, archetypes taken in turn; each has its event inside the window.

    ``baseline_shift`` moves every patient's own normal by these amounts (``Baseline``
    field -> change, e.g. ``{"heart_rate_per_min": 25}``): a population unlike the one a
    model was trained on, for drift monitoring (docs/governance.md)."""
    if n_patients < 1 or hours <= 0:
        raise ValueError("a cohort needs at least one patient and a positive duration")
    if not 0.0 <= deteriorating_fraction <= 1.0:
        raise ValueError("deteriorating_fraction must be between 0 and 1")
    unknown = set(archetypes) - set(ARCHETYPES)
    if unknown or not archetypes:
        raise ValueError(f"unknown archetypes: {sorted(unknown)}; choose from {ARCHETYPES}")
    mix = device_mix or DEVICE_MIX
    end_ms = start_ms + int(hours * HOUR_MS)
    grid_ms = np.arange(start_ms, end_ms + GRID_S * 1000, GRID_S * 1000, dtype=np.int64)
    cohort_rng = np.random.default_rng([seed, 0xC0])
    n_deteriorating = round(n_patients * deteriorating_fraction)
    chosen = cohort_rng.choice(n_patients, size=n_deteriorating, replace=False)
    first = int(cohort_rng.integers(0, len(archetypes)))
    archetype_of = {int(index): archetypes[(first + k) % len(archetypes)] for k, index in enumerate(sorted(chosen))}

    sources: list[str] = []
    patients: list[SimPatient] = []
    for index in range(n_patients):
        rng = np.random.default_rng([seed, index])
        ward = wards[index % len(wards)]
        bed = str(index // len(wards) + 1)
        age = int(np.clip(rng.normal(66, 16), 18, 98))
        sex = "F" if rng.random() < 0.5 else "M"
        profile = draw_profile(rng, age)
        baseline = draw_baseline(rng, profile, age, sex)
        if baseline_shift:
            baseline = dataclasses.replace(baseline, **{name: getattr(baseline, name) + change
                                                        for name, change in baseline_shift.items()})
        latent = latent_physiology(rng, baseline, grid_ms)
        archetype = archetype_of.get(index, STABLE)
        course: Course | None = None
        consciousness = np.zeros(grid_ms.size, dtype=np.int8)
        hr_noise = np.ones(grid_ms.size)
        patient_end = end_ms
        if archetype != STABLE:
            event_ms = start_ms + int(rng.uniform(*EVENT_WINDOW) * (end_ms - start_ms))
            course = draw_course(rng, archetype, event_ms, earliest_onset_ms=start_ms)
            consciousness, hr_noise = apply_course(latent, grid_ms, course)
            patient_end = min(end_ms, event_ms + POST_EVENT_MS)
        latent = physiological_limits(latent)
        on_oxygen = np.full(grid_ms.size, baseline.on_oxygen)

        kind = _assign_devices(rng, mix)
        continuous: list[ContinuousDevice] = []
        if kind == "monitor":
            continuous.append(draw_continuous(rng, "monitor", f"mon-{ward}-{bed}", start_ms, patient_end, monitor_period_s))
        elif kind == "patch":
            continuous.append(draw_continuous(rng, "patch", f"patch-{seed:x}{index:04x}", start_ms, patient_end, 60.0))
            if rng.random() < WEARABLE_OXIMETER_FRACTION:
                continuous.append(draw_continuous(rng, "oximeter", f"oxi-{seed:x}{index:04x}", start_ms, patient_end, 60.0))
        spot = spot_checks(rng, grid_ms, latent, consciousness, on_oxygen, hr_noise,
                           baseline.spo2_scale, start_ms, patient_end)
        spot_source = f"obs-{ward}"
        eager_parts = [spot]
        eager_source_names = [spot_source]
        if kind == "monitor":
            eager_parts.append(nibp_rows(rng, grid_ms, latent, start_ms, patient_end))
            eager_source_names.append(f"mon-{ward}-{bed}")
        for name in (*eager_source_names, *(d.source for d in continuous)):
            if name not in sources:
                sources.append(name)
        eager = tuple(np.concatenate([part[k] for part in eager_parts]) for k in range(4))
        eager_sources = np.concatenate([np.full(part[0].size, sources.index(name), dtype=np.int32)
                                        for part, name in zip(eager_parts, eager_source_names, strict=True)])
        model = _PatientModel(grid_ms, latent, hr_noise, continuous, eager, eager_sources)
        devices = (*(d.kind for d in continuous), *(["nibp"] if kind == "monitor" else []), "spot")
        patients.append(SimPatient(
            patient_id=f"sim-{seed}-{index:04d}", ward=ward, bed=bed, age_years=age, sex=sex,
            profile=profile, baseline=baseline, spo2_scale=baseline.spo2_scale, devices=devices,
            archetype=archetype, onset_ms=course.onset_ms if course else None,
            event_ms=course.event_ms if course else None, start_ms=start_ms, end_ms=patient_end,
            severity=course.severity if course else None, _model=model,
        ))
    return Cohort(patients, sources, start_ms, end_ms, seed)
