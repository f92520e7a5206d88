"""Per-patient alert settings, set by a clinician and audited (who, when, why).

A settings record arrives on a control topic (signed by the station that checked who sent
it) as a JSON object; ``actor`` is the signed-in user, never a typed name:

    {"patient_id": "p1", "set_at_ms": 1773569700000,
     "actor": {"user_id": "u-7f3a", "role": "physician", "name": "Dr Ahmed"},
     "reason": "known COPD, hypercapnic", "spo2_scale": 2}

Only the keys present change; ``null`` returns a key to the default. What can change:

- ``spo2_scale`` 1 or 2: NEWS2 SpO2 scale 2 is for hypercapnic respiratory failure only,
  and is a clinician's decision (RCP 2017).
- ``news2_medium`` / ``news2_high``: the NEWS2 totals that raise a medium / high alert
  for this patient (default 5 / 7), for a known baseline. The score itself is never
  changed: alerts still print the real NEWS2.
- ``accepted_ranges``: {parameter: [low, high]}, a clinician-accepted range for a known
  baseline (e.g. chronic AF, heart rate 40-135): a value inside it does not raise the
  single-parameter alert, though it still counts in the total.
- ``device_type``: which stale-data timeouts apply (``bedside``, ``wearable``,
  ``spot_check``; see PolicyConfig.stale_after_s).

Bounds (a forged or mistyped record must not silence a patient; ``docs/station.md``):

- ``news2_medium`` from 3 to 7 and ``news2_high`` from 5 to 9, medium below high: a
  threshold above 9 would let a patient reach an emergency score unalerted.
- an accepted range lies within ``MAX_ACCEPTED_RANGES`` of its parameter (the widest
  baseline a clinician may accept, itself inside what a monitor can measure plausibly).

A change that loosens alerting (``loosens``: a threshold above the ward default, an
accepted range, SpO2 scale 2, a device type with longer stale timeouts) needs the
``physician`` role; returning a key to the default or tightening needs any clinical role.
The station checks this for the signed-in user and the worker again from the signed actor.

>>> dr = {"user_id": "u-1", "role": "physician", "name": "Dr A"}
>>> s = apply_settings(PatientSettings(), {"actor": dr, "set_at_ms": 5, "spo2_scale": 2})
>>> s.spo2_scale, s.set_by
(2, 'Dr A')
>>> loosens({"news2_high": 9, "spo2_scale": 1})
['news2_high']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vitalstream.auth.roles import ActorError, actor_from, may
from vitalstream.samples import NUMERIC_PARAMETERS

DEVICE_TYPES: tuple[str, ...] = ("bedside", "wearable", "spot_check")
# Ward defaults (AlertPolicy) and the bounds a per-patient threshold may take.
DEFAULT_MEDIUM, DEFAULT_HIGH = 5, 7
MEDIUM_BOUNDS, HIGH_BOUNDS = (3, 7), (5, 9)
# The widest range a clinician may accept as a patient's baseline, per parameter: beyond
# it a value is an emergency whatever the baseline (HR 30/min, SBP 70 mmHg, SpO2 80 %).
MAX_ACCEPTED_RANGES: dict[str, tuple[float, float]] = {
    "heart_rate": (30.0, 150.0),
    "resp_rate": (6.0, 30.0),
    "spo2": (80.0, 100.0),
    "systolic_bp": (70.0, 230.0),
    "diastolic_bp": (30.0, 130.0),
    "temperature": (34.0, 40.0),
}
LOOSENING_ROLE = "physician"
SETTING_KEYS: tuple[str, ...] = ("spo2_scale", "news2_medium", "news2_high", "accepted_ranges",
                                 "device_type")


class SettingsError(ValueError):
    """A settings record that cannot be applied; the message is the reason."""


@dataclasses.dataclass(slots=True)
class PatientSettings:
    """None means the ward default."""

    spo2_scale: int | None = None
    news2_medium: int | None = None
    news2_high: int | None = None
    accepted_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    device_type: str = "bedside"
    set_by: str | None = None  # the actor's display name (older records: a typed name)
    set_at_ms: int | None = None
    reason: str = ""
    set_by_actor: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        # Written with every saved patient state: plain fields, not dataclasses.asdict.
        return {"spo2_scale": self.spo2_scale, "news2_medium": self.news2_medium,
                "news2_high": self.news2_high,
                "accepted_ranges": {k: [lo, hi] for k, (lo, hi) in self.accepted_ranges.items()},
                "device_type": self.device_type, "set_by": self.set_by, "set_at_ms": self.set_at_ms,
                "reason": self.reason, "set_by_actor": self.set_by_actor}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PatientSettings:
        settings = cls(**{k: v for k, v in record.items() if k != "accepted_ranges"})
        settings.accepted_ranges = {k: (float(lo), float(hi))
                                    for k, (lo, hi) in record.get("accepted_ranges", {}).items()}
        return settings


def _threshold(value: Any, key: str, bounds: tuple[int, int]) -> int | None:
    if value is None:
        return None
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(f"{key} must be a whole NEWS2 total from {low} to {high}, got {value!r}")
    return value


def actor_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The signed-in user a control record names (``vitalstream.auth.roles.actor_from``);
    raises SettingsError."""
    try:
        return actor_from(record)
    except ActorError as exc:
        raise SettingsError(str(exc)) from None


def loosens(record: Mapping[str, Any]) -> list[str]:
    """The keys of ``record`` that would make the patient alert less than the ward default
    (these need the ``physician`` role). Judged from the record alone, so the station and
    the worker decide the same way without knowing the patient's current settings."""
    keys = []
    for key, default in (("news2_medium", DEFAULT_MEDIUM), ("news2_high", DEFAULT_HIGH)):
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > default:
            keys.append(key)
    ranges = record.get("accepted_ranges")
    if isinstance(ranges, Mapping) and any(bounds is not None for bounds in ranges.values()):
        keys.append("accepted_ranges")
    if record.get("spo2_scale") == 2:
        keys.append("spo2_scale")
    if record.get("device_type") not in (None, "bedside"):
        keys.append("device_type")  # longer stale-data timeouts
    return keys


def check_role(record: Mapping[str, Any], role: str) -> None:
    """Raise SettingsError if ``role`` may not make this change."""
    if not may(role, "settings"):
        raise SettingsError(f"role {role!r} may not change a patient's alert settings")
    loose = loosens(record)
    if loose and role != LOOSENING_ROLE:
        raise SettingsError(f"loosening {', '.join(loose)} needs the {LOOSENING_ROLE} role")


def apply_settings(current: PatientSettings, record: Mapping[str, Any]) -> PatientSettings:
    """The settings after ``record``; raises SettingsError and leaves ``current`` as is."""
    if not isinstance(record, Mapping):
        raise SettingsError("settings must be a JSON object")
    actor = actor_of(record)
    check_role(record, actor["role"])
    set_at_ms = record.get("set_at_ms")
    if isinstance(set_at_ms, bool) or not isinstance(set_at_ms, int):
        raise SettingsError("set_at_ms (when, epoch milliseconds) is required")
    if not any(key in record for key in SETTING_KEYS):
        raise SettingsError(f"nothing to change: expected one of {', '.join(SETTING_KEYS)}")
    new = dataclasses.replace(current, accepted_ranges=dict(current.accepted_ranges))
    if "spo2_scale" in record:
        scale = record["spo2_scale"]
        if scale is not None and (isinstance(scale, bool) or scale not in (1, 2)):
            raise SettingsError(f"spo2_scale must be 1 or 2, got {scale!r}")
        new.spo2_scale = scale
    if "news2_medium" in record:
        new.news2_medium = _threshold(record["news2_medium"], "news2_medium", MEDIUM_BOUNDS)
    if "news2_high" in record:
        new.news2_high = _threshold(record["news2_high"], "news2_high", HIGH_BOUNDS)
    medium, high = new.news2_medium or DEFAULT_MEDIUM, new.news2_high or DEFAULT_HIGH
    if medium >= high:
        raise SettingsError(f"news2_medium ({medium}) must be below news2_high ({high})")
    if "accepted_ranges" in record:
        ranges = record["accepted_ranges"] or {}
        if not isinstance(ranges, Mapping):
            raise SettingsError("accepted_ranges must be an object {parameter: [low, high]}")
        for parameter, bounds in ranges.items():
            if parameter not in NUMERIC_PARAMETERS:
                raise SettingsError(f"accepted_ranges: unknown numeric parameter {parameter!r}")
            if bounds is None:
                new.accepted_ranges.pop(parameter, None)
                continue
            try:
                low, high = (float(b) for b in bounds)
            except (TypeError, ValueError):
                raise SettingsError(f"accepted_ranges.{parameter} must be [low, high]") from None
            if not low < high:
                raise SettingsError(f"accepted_ranges.{parameter}: low must be below high")
            widest = MAX_ACCEPTED_RANGES[parameter]
            if not (widest[0] <= low and high <= widest[1]):
                raise SettingsError(f"accepted_ranges.{parameter} must lie within "
                                    f"{widest[0]:g}-{widest[1]:g}, got {low:g}-{high:g}")
            new.accepted_ranges[parameter] = (low, high)
    if "device_type" in record:
        device_type = record["device_type"] or "bedside"
        if device_type not in DEVICE_TYPES:
            raise SettingsError(f"device_type must be one of {', '.join(DEVICE_TYPES)}")
        new.device_type = device_type
    new.set_by, new.set_by_actor = actor["name"], actor
    new.set_at_ms = set_at_ms
    new.reason = str(record.get("reason", ""))[:200]
    return new
