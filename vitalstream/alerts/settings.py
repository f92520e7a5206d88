"""Per-patient alert settings, set by a clinician and audited (who, when, why).

A settings record arrives on a control topic or through the API as a JSON object:

    {"patient_id": "p1", "set_by": "dr-ahmed", "set_at_ms": 1773569700000,
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

>>> s = apply_settings(PatientSettings(), {"set_by": "dr-a", "set_at_ms": 5, "spo2_scale": 2})
>>> s.spo2_scale, s.set_by
(2, 'dr-a')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vitalstream.samples import NUMERIC_PARAMETERS

DEVICE_TYPES: tuple[str, ...] = ("bedside", "wearable", "spot_check")
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
    set_by: str | None = None
    set_at_ms: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        # Written with every saved patient state: plain fields, not dataclasses.asdict.
        return {"spo2_scale": self.spo2_scale, "news2_medium": self.news2_medium,
                "news2_high": self.news2_high,
                "accepted_ranges": {k: [lo, hi] for k, (lo, hi) in self.accepted_ranges.items()},
                "device_type": self.device_type, "set_by": self.set_by, "set_at_ms": self.set_at_ms,
                "reason": self.reason}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PatientSettings:
        settings = cls(**{k: v for k, v in record.items() if k != "accepted_ranges"})
        settings.accepted_ranges = {k: (float(lo), float(hi))
                                    for k, (lo, hi) in record.get("accepted_ranges", {}).items()}
        return settings


def _threshold(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
        raise SettingsError(f"{key} must be a whole NEWS2 total from 1 to 20, got {value!r}")
    return value


def apply_settings(current: PatientSettings, record: Mapping[str, Any]) -> PatientSettings:
    """The settings after ``record``; raises SettingsError and leaves ``current`` as is."""
    if not isinstance(record, Mapping):
        raise SettingsError("settings must be a JSON object")
    set_by = record.get("set_by")
    if not isinstance(set_by, str) or not set_by.strip():
        raise SettingsError("set_by (who changed the settings) is required")
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
        new.news2_medium = _threshold(record["news2_medium"], "news2_medium")
    if "news2_high" in record:
        new.news2_high = _threshold(record["news2_high"], "news2_high")
    medium, high = new.news2_medium or 5, new.news2_high or 7
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
            new.accepted_ranges[parameter] = (low, high)
    if "device_type" in record:
        device_type = record["device_type"] or "bedside"
        if device_type not in DEVICE_TYPES:
            raise SettingsError(f"device_type must be one of {', '.join(DEVICE_TYPES)}")
        new.device_type = device_type
    new.set_by = set_by.strip()
    new.set_at_ms = set_at_ms
    new.reason = str(record.get("reason", ""))[:200]
    return new
