"""Who is called for an alert, and when: escalation chains per ward, as data.

A chain is a list of steps. The first step's responder holds an alert when it is raised;
each later step is called when the one before it has held the alert for its ``after_s``
(seconds of wall time, by the alert's priority) without an acknowledgement, at once when
the holder declines it, and when an acknowledged alert is still unanswered after
``answer_within_s``. A priority without a time for a step is never escalated to it (a low
alert does not call the rapid-response team).

The JSON the settings carry (``VITALSTREAM_ESCALATION_CHAINS``)::

    {"*":  {"steps": [{"role": "bedside_nurse"},
                      {"role": "charge_nurse",   "after_s": {"high": 120, "medium": 300, "low": 900}},
                      {"role": "rapid_response", "after_s": {"high": 300, "medium": 600}}],
            "answer_within_s": {"high": 900, "medium": 1800, "low": 3600}},
     "ICU": {...}}

``"*"`` is the chain of every ward not named. An empty text means the default chain below.

>>> config = OversightConfig.from_json('{"*": {"steps": [{"role": "bedside_nurse"}, '
...     '{"role": "charge_nurse", "after_s": {"high": 5}}]}}')
>>> config.chain("4B").steps[1].after_ms("high"), config.chain("4B").steps[1].after_ms("low")
(5000, None)
>>> OversightConfig.from_json('{"*": {"steps": [{"role": "porter"}]}}')
Traceback (most recent call last):
...
vitalstream.oversight.config.OversightConfigError: escalation chain '*' step 1: unknown role 'porter' (one of bedside_nurse, charge_nurse, rapid_response, physician)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import orjson

from vitalstream.alerts.messages import PRIORITIES

# The roles of the actor shape (vitalstream/auth): those who answer alerts, and the admin.
CLINICAL_ROLES: tuple[str, ...] = ("bedside_nurse", "charge_nurse", "rapid_response", "physician")
ROLES: tuple[str, ...] = (*CLINICAL_ROLES, "admin")
# Care goals change who is called: only a physician may set them.
GOAL_ROLES: frozenset[str] = frozenset({"physician"})


class OversightConfigError(ValueError):
    """An escalation configuration that cannot be used; one readable line."""


def _by_priority(where: str, value: Any, required: bool = False) -> dict[str, float]:
    if value is None and not required:
        return {}
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = {p: value for p in PRIORITIES}
    if not isinstance(value, Mapping):
        raise OversightConfigError(f"{where}: expected seconds or {{priority: seconds}}")
    out: dict[str, float] = {}
    for priority, seconds in value.items():
        if priority not in PRIORITIES:
            raise OversightConfigError(f"{where}: unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not math.isfinite(seconds) or seconds <= 0):
            raise OversightConfigError(f"{where}: {priority} must be a positive number of seconds")
        out[priority] = float(seconds)
    return out


@dataclasses.dataclass(frozen=True)
class Step:
    role: str
    after_s: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def after_ms(self, priority: str) -> int | None:
        seconds = self.after_s.get(priority)
        return None if seconds is None else int(seconds * 1000)


@dataclasses.dataclass(frozen=True)
class Chain:
    steps: tuple[Step, ...]
    answer_within_s: Mapping[str, float]

    def answer_within_ms(self, priority: str) -> int | None:
        seconds = self.answer_within_s.get(priority)
        return None if seconds is None else int(seconds * 1000)


DEFAULT_CHAINS: dict[str, Any] = {"*": {
    "steps": [{"role": "bedside_nurse"},
              {"role": "charge_nurse", "after_s": {"high": 120, "medium": 300, "low": 900}},
              {"role": "rapid_response", "after_s": {"high": 300, "medium": 600}}],
    "answer_within_s": {"high": 900, "medium": 1800, "low": 3600},
}}
DEFAULT_SNOOZE_MAX_S: dict[str, float] = {"high": 300, "medium": 1800, "low": 3600}
# A care goal lasts at most this long before it ends by itself and must be set again.
DEFAULT_GOAL_MAX_S = 7 * 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class OversightConfig:
    """Escalation chains by ward, and the longest snooze and care goal allowed."""

    chains: Mapping[str, Chain]
    snooze_max_s: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SNOOZE_MAX_S))
    goal_max_s: float = DEFAULT_GOAL_MAX_S
    # A control message (answer, snooze, goal) stamped further from the worker's clock than
    # this is refused as a replay (or a clock that cannot be trusted).
    control_window_s: float = 600.0

    def chain(self, ward: str) -> Chain:
        return self.chains.get(ward) or self.chains["*"]

    @classmethod
    def default(cls) -> OversightConfig:
        return cls.from_mapping(DEFAULT_CHAINS)

    @classmethod
    def from_json(cls, chains: str | bytes, snooze_max: str | bytes = "") -> OversightConfig:
        try:
            document = orjson.loads(chains) if chains else DEFAULT_CHAINS
            snooze = orjson.loads(snooze_max) if snooze_max else DEFAULT_SNOOZE_MAX_S
        except orjson.JSONDecodeError as exc:
            raise OversightConfigError(f"escalation settings are not valid JSON ({exc})") from None
        return cls.from_mapping(document, snooze)

    @classmethod
    def from_mapping(cls, document: Any, snooze_max: Any = None) -> OversightConfig:
        if not isinstance(document, Mapping) or "*" not in document:
            raise OversightConfigError('escalation chains must be a JSON object with a "*" chain '
                                       "(every ward not named)")
        chains = {str(ward): _chain(str(ward), body) for ward, body in document.items()}
        snooze = _by_priority("snooze maximum", DEFAULT_SNOOZE_MAX_S if snooze_max is None else snooze_max,
                              required=True)
        for priority in PRIORITIES:
            if priority not in snooze:
                raise OversightConfigError(f"snooze maximum: no time for {priority} alerts")
        return cls(chains=chains, snooze_max_s=snooze)


def _chain(ward: str, body: Any) -> Chain:
    where = f"escalation chain {ward!r}"
    if not isinstance(body, Mapping) or not isinstance(body.get("steps"), list) or not body["steps"]:
        raise OversightConfigError(f"{where}: expected {{\"steps\": [...]}} with at least one step")
    steps = []
    for number, step in enumerate(body["steps"], start=1):
        at = f"{where} step {number}"
        if not isinstance(step, Mapping) or step.get("role") not in CLINICAL_ROLES:
            role = step.get("role") if isinstance(step, Mapping) else step
            raise OversightConfigError(f"{at}: unknown role {role!r} (one of {', '.join(CLINICAL_ROLES)})")
        after = _by_priority(at, step.get("after_s"))
        if number == 1 and after:
            raise OversightConfigError(f"{at}: the first responder holds the alert from its start (no after_s)")
        if number > 1 and not after:
            raise OversightConfigError(f"{at}: after_s is needed (seconds before this responder is called)")
        steps.append(Step(role=str(step["role"]), after_s=after))
    return Chain(steps=tuple(steps), answer_within_s=_by_priority(f"{where} answer_within_s",
                                                                  body.get("answer_within_s")))
