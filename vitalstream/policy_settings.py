"""The ward alert policy as a setting: ``VITALSTREAM_POLICY`` (``Settings.policy``) is JSON
of `PolicyConfig` fields to change, checked here against the bounds below before any
worker or shadow runs with it.

What each field means is declared once, on `PolicyConfig` (vitalstream/alerts/policy.py);
the bounds are declared here; `deploy/CONFIG.md` lists both (``reference_rows``).

>>> policy_config('{"news2_medium": 4}').news2_medium
4
>>> policy_config('{"persistence_s": {"high": 30}}').persistence_s["medium"]
120
>>> policy_config('{"news2_high": 30}')
Traceback (most recent call last):
...
vitalstream.policy_settings.PolicySettingsError: policy field news2_high must be between 1 and 20, got 30
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import zoneinfo
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from vitalstream.alerts.messages import PRIORITIES
from vitalstream.alerts.policy import PolicyConfig
from vitalstream.samples import PARAMETERS


class PolicySettingsError(ValueError):
    """A policy configuration that cannot run; the message is one readable line."""


class Bound(NamedTuple):
    """The values a field (or each value of a mapping field) may take, and the keys of a
    mapping field. ``None`` keys: a nested mapping (device type -> parameter -> seconds)."""

    low: float
    high: float
    keys: tuple[str, ...] | None = ()


_BY_PRIORITY = tuple(PRIORITIES)
_DEVICE_TYPES = ("bedside", "wearable", "spot_check")
_DAY_S = 86_400.0
# NEWS2 totals run from 0 to 20 (RCP 2017); a threshold of 0 would alert on everyone.
POLICY_BOUNDS: dict[str, Bound] = {
    "news2_medium": Bound(1, 20),
    "news2_high": Bound(1, 20),
    "single_parameter_alerts": Bound(0, 1),
    "risk_thresholds": Bound(0.0, 1.0, _BY_PRIORITY),
    "persistence_s": Bound(0, 3600, _BY_PRIORITY),
    "unconfirmed_after_s": Bound(0, 7200),
    "streaming_gap_s": Bound(10, 3600),
    "resolve_after_s": Bound(0, _DAY_S),
    "resolve_margin": Bound(0, 10),
    "resolve_risk_margin": Bound(0.0, 0.5),
    "worse_points": Bound(1, 20),
    "ack_expiry_s": Bound(60, _DAY_S, _BY_PRIORITY),
    "stale_after_s": Bound(10, _DAY_S, None),
    "artefact_run": Bound(1, 100),
    "artefact_window_s": Bound(10, 3600),
    "technical_priority": Bound(0, 0, _BY_PRIORITY),
    "trend_min_change": Bound(0, 1000, PARAMETERS),
    "trend_max_window_s": Bound(60, _DAY_S),
    "score_lookback_s": Bound(0, 7 * _DAY_S),
    "risk_trend_s": Bound(60, _DAY_S),
    "risk_trend_min": Bound(0.0, 1.0),
    "max_summary_chars": Bound(80, 2000),
    "display_tz": Bound(0, 0),
    "audit_max": Bound(1, 1000),
}
# Fields PolicyConfig declares without a docstring of their own.
_MEANING_HERE = {"max_summary_chars": "Longest alert summary, in characters (longer ones are cut)."}


def _number(name: str, value: Any, bound: Bound, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise PolicySettingsError(f"policy field {name} must be {'an integer' if integer else 'a number'}, "
                                  f"got {value!r}")
    if not bound.low <= value <= bound.high:
        raise PolicySettingsError(f"policy field {name} must be between {bound.low:g} and {bound.high:g}, "
                                  f"got {value!r}")
    return value


def _mapping(name: str, value: Any, current: Mapping[str, Any], bound: Bound) -> dict[str, Any]:
    """A mapping field: the given keys replace the current values, the others stay."""
    if not isinstance(value, Mapping):
        raise PolicySettingsError(f"policy field {name} must be an object like {dict(current)!r}")
    keys = _DEVICE_TYPES if bound.keys is None else bound.keys
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise PolicySettingsError(f"policy field {name}: unknown key(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(keys)})")
    merged = dict(current)
    for key, item in value.items():
        if bound.keys is None:  # device type -> parameter -> seconds
            merged[key] = _mapping(f"{name}.{key}", item, current.get(key, {}), Bound(bound.low, bound.high,
                                                                                    PARAMETERS))
        else:
            merged[key] = _number(f"{name}.{key}", item, bound, False)
    return merged


def policy_config(overrides: Any, base: PolicyConfig | None = None) -> PolicyConfig:
    """``base`` (the default PolicyConfig) with ``overrides`` (a JSON text or a mapping of
    field -> value) applied and checked; PolicySettingsError with one reason if unusable."""
    base = base or PolicyConfig()
    if overrides in (None, ""):
        return base
    if isinstance(overrides, str | bytes):
        try:
            overrides = orjson.loads(overrides)
        except orjson.JSONDecodeError:
            raise PolicySettingsError("policy configuration is not JSON") from None
    if not isinstance(overrides, Mapping):
        raise PolicySettingsError("policy configuration must be a JSON object of PolicyConfig fields")
    unknown = sorted(set(overrides) - set(POLICY_BOUNDS))
    if unknown:
        raise PolicySettingsError(f"unknown policy field(s): {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        current, bound = getattr(base, name), POLICY_BOUNDS[name]
        if isinstance(current, Mapping):
            changes[name] = _mapping(name, value, current, bound)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise PolicySettingsError(f"policy field {name} must be like {current!r}")
            changes[name] = value
        elif isinstance(current, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PolicySettingsError(f"policy field {name} must be like {current!r}")
            changes[name] = _number(name, value, bound, isinstance(current, int))
        elif name == "technical_priority":
            if value not in _BY_PRIORITY:
                raise PolicySettingsError(f"policy field {name} must be one of {', '.join(_BY_PRIORITY)}")
            changes[name] = value
        elif name == "display_tz":
            try:
                zoneinfo.ZoneInfo(str(value))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise PolicySettingsError(f"policy field {name}: unknown time zone {value!r}") from None
            changes[name] = str(value)
    config = dataclasses.replace(base, **changes)
    if config.news2_medium > config.news2_high:
        raise PolicySettingsError("news2_medium must not be above news2_high")
    if config.resolve_margin >= config.news2_medium:
        raise PolicySettingsError("resolve_margin must be below news2_medium (clear is NEWS2 <= "
                                  "news2_medium - resolve_margin)")
    return config


def _field_docs() -> dict[str, str]:
    """PolicyConfig's attribute docstrings, as declared (the one description of each field)."""
    tree = ast.parse(inspect.getsource(PolicyConfig))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for statement, after in zip(body, body[1:], strict=False):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[statement.target.id] = " ".join(after.value.value.split())
    return docs


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(field, default, allowed values, meaning) of every PolicyConfig field, for CONFIG.md."""
    docs, defaults = _field_docs(), PolicyConfig()
    rows = []
    for field in dataclasses.fields(PolicyConfig):
        bound, default = POLICY_BOUNDS[field.name], getattr(defaults, field.name)
        if field.name == "technical_priority":
            allowed = " or ".join(_BY_PRIORITY)
        elif field.name == "display_tz":
            allowed = "an IANA time zone"
        elif isinstance(default, bool):
            allowed = "true or false"
        elif bound.keys is None:
            allowed = f"{{{'/'.join(_DEVICE_TYPES)}: {{parameter: {bound.low:g}..{bound.high:g}}}}}"
        elif bound.keys:
            allowed = f"{{{'/'.join(bound.keys) if len(bound.keys) <= 3 else 'parameter'}: " \
                      f"{bound.low:g}..{bound.high:g}}}"
        else:
            allowed = f"{bound.low:g}..{bound.high:g}"
        shown = orjson.dumps(default).decode() if isinstance(default, Mapping | bool) else str(default)
        rows.append((field.name, shown, allowed, docs.get(field.name) or _MEANING_HERE.get(field.name, "")))
    return rows
