"""The alert policy: when a patient's scores become an alert, and when they do not.

Pure: no I/O and no clock. Time is the device time carried by each Assessment (or the
``now_ms``/``at_ms`` argument), so the same samples give the same alerts live, in replay
and in the tests. One ``PatientAlertState`` per patient holds everything the policy
remembers; it is small and bounded, and round-trips through ``to_dict``/``from_dict``.

Clinical alert, one episode per patient (docs/alerts.md has the charge nurse's version):

- Condition and priority (IEC 60601-1-8): NEWS2 >= 7 is high, 5-6 medium; a single
  parameter scoring 3 is low; the model risk raises the priority given by
  ``risk_thresholds``. Per-patient settings may move the NEWS2 thresholds and accept a
  baseline range for a parameter.
- Persistence: a condition raises only after it has held for ``persistence_s[priority]``
  of device time and the reading that weighs most in it has been measured again (one odd
  reading cannot raise). Without a new reading it raises after ``unconfirmed_after_s``.
- One episode, no repeats: while an alert is open, the same or a lower condition never
  alerts again. A new alert (new id, ``replaces`` the old one) comes only when the
  priority rises (escalated), or, while acknowledged, when NEWS2 rises by
  ``worse_points`` (escalated), or when an acknowledgement expires while the condition
  still holds (reraised).
- Hysteresis: an alert resolves when NEWS2 has stayed at or below
  ``news2_medium - resolve_margin`` (3), with no single parameter scoring 3 and the risk
  below its lowest threshold minus ``resolve_risk_margin``, for ``resolve_after_s``.

Technical alerts are separate, per parameter: no data for longer than the stale timeout
of the patient's device type, sensor off, and runs of artefact readings. They resolve
when a fresh reading of the parameter arrives.

>>> from vitalstream.scoring.news2 import news2
>>> policy = AlertPolicy()
>>> state = policy.new_state()
>>> def at(t_s, rr):
...     obs = {"resp_rate": (rr, t_s * 1000), "spo2": (97.0, 0), "on_oxygen": (False, 0),
...            "systolic_bp": (120.0, 0), "heart_rate": (80.0, 0), "consciousness": ("A", 0),
...            "temperature": (37.0, 0)}
...     values = {k: v for k, (v, _) in obs.items()}
...     return Assessment("p1", "4B", "12", t_s * 1000, news2(values), obs, {})
>>> policy.assess(state, at(0, 26))     # RR 26 scores 3: not yet, one reading
[]
>>> [a.status for a in policy.assess(state, at(360, 27))]   # measured again 6 min later
['raised']
>>> policy.assess(state, at(420, 27))   # same condition: no repeat
[]
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from vitalstream.alerts.composer import (
    MAX_SUMMARY_CHARS,
    UNITS,
    clock_time,
    compose_summary,
    show_number,
    show_value,
)
from vitalstream.alerts.identity import alert_id
from vitalstream.alerts.messages import PRIORITIES, PRIORITY_RANK, Alert, Assessment
from vitalstream.alerts.settings import PatientSettings, SettingsError, apply_settings
from vitalstream.samples import PARAMETERS as PARAMETER_ORDER
from vitalstream.scoring.news2 import COMPONENTS, News2, news2

PAYLOAD_SCHEMA = 1
# Technical events that alert only as a run (one alone is noise): flagged artefacts, and
# readings a device reported without a value.
RUN_KINDS = ("artefact", "no_value")
_MIN = 60_000
_RISK_STEP_MS = 5 * _MIN  # the risk history keeps a point at most this often


def _by_priority(high: float, medium: float, low: float) -> dict[str, float]:
    return {"high": high, "medium": medium, "low": low}


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Ward-wide policy settings; every duration is seconds of device time."""

    news2_medium: int = 5
    """NEWS2 total that raises a medium alert (RCP: urgent response)."""
    news2_high: int = 7
    """NEWS2 total that raises a high alert (RCP: emergency response)."""
    single_parameter_alerts: bool = True
    """A single parameter scoring 3 raises a low alert (RCP: urgent ward review)."""
    risk_thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Model risk at or above which the condition has this priority (priority -> risk).
    Empty: the risk is shown but raises nothing. Set it from the model card's operating
    point, e.g. ``{"medium": model.threshold}``; probabilities are not comparable across models."""
    persistence_s: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: _by_priority(high=60, medium=120, low=300))
    """How long a condition must hold before it raises, by priority."""
    unconfirmed_after_s: float = 900
    """Raise after this long even when the weightiest reading was not measured again."""
    streaming_gap_s: float = 600
    """Readings of a parameter closer than this come from a device (persistence applies);
    further apart they are spot checks taken by hand, which raise at once."""
    resolve_after_s: float = 1800
    """How long the patient must stay clear before an alert resolves."""
    resolve_margin: int = 2
    """Clear means NEWS2 <= news2_medium - resolve_margin (3 by default)."""
    resolve_risk_margin: float = 0.05
    """Clear means risk below the lowest risk threshold minus this."""
    worse_points: int = 2
    """While acknowledged, a NEWS2 rise of this many points alerts again."""
    ack_expiry_s: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: _by_priority(high=1800, medium=3600, low=14400))
    """How long an acknowledgement silences a still-present condition, by priority."""
    stale_after_s: Mapping[str, Mapping[str, float]] = dataclasses.field(
        default_factory=lambda: {
            "bedside": {"heart_rate": 300, "resp_rate": 300, "spo2": 300},
            "wearable": {"heart_rate": 900, "resp_rate": 900, "spo2": 900},
            "spot_check": {},
        })
    """No data for longer than this raises a technical alert, by device type and parameter,
    for a parameter that was streaming (its last two readings closer than this)."""
    artefact_run: int = 3
    """This many artefact readings of one parameter ..."""
    artefact_window_s: float = 300
    """... within this window raise a technical alert."""
    technical_priority: str = "low"
    """Priority of technical alerts; no data becomes medium while a medium/high alert is open."""
    trend_min_change: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"resp_rate": 3, "spo2": 2, "heart_rate": 10, "systolic_bp": 10,
                                 "diastolic_bp": 10, "temperature": 0.5})
    """Smallest change a summary mentions as a trend."""
    trend_max_window_s: float = 7200
    """Longest feature window a summary's trend is taken from."""
    score_lookback_s: float = 6 * 3600
    """How far back "up from" looks for the patient's lower NEWS2."""
    risk_trend_s: float = 3600
    """Risk is "rising"/"falling" against its value this long ago ..."""
    risk_trend_min: float = 0.05
    """... when it moved at least this much."""
    max_summary_chars: int = MAX_SUMMARY_CHARS
    display_tz: str = "UTC"
    """Time zone of the HH:MM times in summaries."""
    audit_max: int = 20
    """Audit entries kept in each patient's state (the alerts topic keeps them all)."""

    def thresholds(self) -> dict[str, Any]:
        """The settings an alert payload records (what the decision was made with)."""
        return {
            "news2_medium": self.news2_medium, "news2_high": self.news2_high,
            "single_parameter_alerts": self.single_parameter_alerts,
            "risk_thresholds": dict(self.risk_thresholds),
            "persistence_s": dict(self.persistence_s),
            "unconfirmed_after_s": self.unconfirmed_after_s,
            "resolve_after_s": self.resolve_after_s,
            "resolve_news2_max": self.news2_medium - self.resolve_margin,
            "worse_points": self.worse_points, "ack_expiry_s": dict(self.ack_expiry_s),
        }


@dataclasses.dataclass(slots=True)
class OpenAlert:
    """An alert that is raised, escalated or acknowledged (not resolved)."""

    alert_id: str
    condition: str
    kind: str
    priority: str
    status: str
    started_ms: int
    raised_ms: int
    parameter: str = ""
    replaces: str | None = None
    ack_by: str | None = None
    ack_ms: int | None = None
    ack_actor: dict[str, str] | None = None
    ack_expires_ms: int | None = None
    ack_total: int | None = None
    news2_total: int | None = None
    since_ms: int | None = None
    count: int = 0
    source: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class PatientAlertState:
    """What the policy remembers of one patient: bounded, JSON-able."""

    patient_id: str = ""
    ward: str = ""
    bed: str = ""
    time_ms: int = 0
    clinical: OpenAlert | None = None
    technical: dict[str, OpenAlert] = dataclasses.field(default_factory=dict)
    # condition ("low", "medium", "high", "worse") -> {"since_ms", "trigger": {param: ms}, "spot"}
    pending: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    level: str | None = None
    clear_since_ms: int | None = None
    last_seen: dict[str, int] = dataclasses.field(default_factory=dict)
    # parameter -> ms between its last two readings: a parameter streams when it is short.
    last_gap: dict[str, int] = dataclasses.field(default_factory=dict)
    last_news2: tuple[int, int] | None = None
    score_history: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    risk_history: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    # "<kind>:<parameter>" of a run kind -> (first ms, count, last ms) within the window
    artefacts: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=dict)
    settings: PatientSettings = dataclasses.field(default_factory=PatientSettings)
    audit: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def open_alerts(self) -> list[OpenAlert]:
        return ([self.clinical] if self.clinical else []) + list(self.technical.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id, "ward": self.ward, "bed": self.bed,
            "time_ms": self.time_ms,
            "clinical": self.clinical.to_dict() if self.clinical else None,
            "technical": {k: v.to_dict() for k, v in self.technical.items()},
            "pending": {k: {**v, "trigger": dict(v["trigger"])} for k, v in self.pending.items()},
            "level": self.level, "clear_since_ms": self.clear_since_ms,
            "last_seen": dict(self.last_seen), "last_gap": dict(self.last_gap),
            "last_news2": list(self.last_news2) if self.last_news2 else None,
            "score_history": [list(e) for e in self.score_history],
            "risk_history": [list(e) for e in self.risk_history],
            "artefacts": {k: list(v) for k, v in self.artefacts.items()},
            "settings": self.settings.to_dict(),
            "audit": [dict(e) for e in self.audit],
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PatientAlertState:
        clinical = record.get("clinical")
        last_news2 = record.get("last_news2")
        return cls(
            patient_id=record.get("patient_id", ""), ward=record.get("ward", ""),
            bed=record.get("bed", ""), time_ms=record.get("time_ms", 0),
            clinical=OpenAlert(**clinical) if clinical else None,
            technical={k: OpenAlert(**v) for k, v in record.get("technical", {}).items()},
            pending={k: {**v, "trigger": dict(v["trigger"])} for k, v in record.get("pending", {}).items()},
            level=record.get("level"), clear_since_ms=record.get("clear_since_ms"),
            last_seen=dict(record.get("last_seen", {})),
            last_gap=dict(record.get("last_gap", {})),
            last_news2=(int(last_news2[0]), int(last_news2[1])) if last_news2 else None,
            score_history=[(int(t), int(s)) for t, s in record.get("score_history", ())],
            risk_history=[(int(t), float(r)) for t, r in record.get("risk_history", ())],
            artefacts={k: (int(a), int(b), int(c)) for k, (a, b, c)
                       in record.get("artefacts", {}).items()},
            settings=PatientSettings.from_dict(record.get("settings", {})),
            audit=[dict(e) for e in record.get("audit", ())],
        )


_TREND_FEATURE = re.compile(
    r"^(?P<param>[a-z0-9_]+?)_(?P<what>delta|change|slope_per_h)_(?P<n>\d+)(?P<unit>h|m|min)$")


# Share of a window that readings must cover before a change over it is stated.
MIN_TREND_COVERAGE = 0.75


def find_trends(features: Mapping[str, float], min_change: Mapping[str, float],
                max_window_s: float = 7200) -> dict[str, dict[str, Any]]:
    """Per parameter, the change a summary can state, from the feature engine's
    ``<param>_change_<N>h|m`` / ``_delta_`` (measured: last value minus the first in the
    window) or, where no change feature exists, ``<param>_slope_per_h_<N>h|m`` times the
    window. A window counts only when readings cover most of it (``<param>_coverage_<N>``
    >= ``MIN_TREND_COVERAGE`` where the engine reports coverage): "up 24 in 2 h" must not
    be a slope of 30 minutes of data stretched over 2 hours. The longest such window up to
    ``max_window_s`` wins; changes smaller than ``min_change`` are not trends."""
    best: dict[str, tuple[tuple[float, int], dict[str, Any]]] = {}
    for name in sorted(features):
        match = _TREND_FEATURE.match(name)
        if not match or match["param"] not in min_change:
            continue
        value = features[name]
        if value is None or not math.isfinite(value):
            continue
        window_h = int(match["n"]) / (1 if match["unit"] == "h" else 60)
        if window_h <= 0 or window_h * 3600 > max_window_s:
            continue
        coverage = features.get(f"{match['param']}_coverage_{match['n']}{match['unit']}")
        if coverage is not None and math.isfinite(coverage) and coverage < MIN_TREND_COVERAGE:
            continue
        slope = match["what"] == "slope_per_h"
        change = value * window_h if slope else value
        parameter = match["param"]
        places = 1 if parameter == "temperature" else 0
        change_shown = show_number(abs(change), places)
        if float(change_shown) < min_change[parameter]:
            continue
        rank = (window_h, 0 if slope else 1)
        if parameter in best and best[parameter][0] >= rank:
            continue
        window_shown = f"{match['n']} {'h' if match['unit'] == 'h' else 'min'}"
        best[parameter] = (rank, {
            "feature": name, "feature_value": value, "change": change,
            "change_shown": change_shown, "window_shown": window_shown,
            "window_h": window_h, "unit": UNITS.get(parameter, "").strip(),
        })
    return {parameter: entry for parameter, (_, entry) in best.items()}


class AlertPolicy:
    """The per-patient alert policy; one instance serves every patient of a worker.

        policy = AlertPolicy(PolicyConfig())
        state = policy.new_state()
        alerts = policy.assess(state, assessment)      # publish these
        policy.drain_events()                          # counts for metrics

    ``events`` counts what the policy decided, by (event, kind, priority), with event one
    of raised, escalated, reraised, suppressed, acknowledged, resolved. Suppressed counts
    conditions that started and did not alert: blips that did not persist, and repeats
    of a condition inside an open or acknowledged episode.
    """

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.events: Counter[tuple[str, str, str]] = Counter()
        # Read at every assessment: worked out once (the config is frozen).
        self._lookback_ms = int(self.config.score_lookback_s * 1000)
        self._risk_horizon_ms = int(self.config.risk_trend_s * 1000) + 10 * _MIN
        self._quiet_below = min(self.config.news2_medium, self.config.news2_high)

    def new_state(self) -> PatientAlertState:
        return PatientAlertState()

    def drain_events(self) -> Counter[tuple[str, str, str]]:
        """The counts since the last drain, and reset them."""
        events, self.events = self.events, Counter()
        return events

    # -- helpers -----------------------------------------------------------------------
    def _time(self, time_ms: int) -> dict[str, Any]:
        return {"ms": int(time_ms), "shown": clock_time(time_ms, self.config.display_tz)}

    def _audit(self, state: PatientAlertState, entry: dict[str, Any]) -> None:
        state.audit.append(entry)
        del state.audit[: -self.config.audit_max]

    def _thresholds(self, state: PatientAlertState) -> tuple[int, int]:
        settings = state.settings
        return (settings.news2_medium or self.config.news2_medium,
                settings.news2_high or self.config.news2_high)

    def _score(self, state: PatientAlertState, assessment: Assessment) -> News2:
        """NEWS2 on the SpO2 scale a clinician set for this patient, if any."""
        scale = state.settings.spo2_scale
        if scale is None or scale == assessment.spo2_scale:
            return assessment.news2
        values = {name: value for name, (value, _) in assessment.observations.items()}
        values["spo2_scale"] = scale
        return news2(values)

    def _reasons(self, state: PatientAlertState, assessment: Assessment,
                 score: News2) -> list[dict[str, Any]]:
        medium, high = self._thresholds(state)
        reasons: list[dict[str, Any]] = []
        if score.total >= high:
            reasons.append({"rule": "news2", "priority": "high", "news2": score.total, "threshold": high})
        elif score.total >= medium:
            reasons.append({"rule": "news2", "priority": "medium", "news2": score.total,
                            "threshold": medium})
        if self.config.single_parameter_alerts:
            for parameter, component in score.components.items():
                if component != 3:
                    continue
                value = assessment.observations.get(parameter, (None, 0))[0]
                accepted = state.settings.accepted_ranges.get(parameter)
                if accepted and value is not None and accepted[0] <= float(value) <= accepted[1]:
                    continue
                reasons.append({"rule": "single_parameter", "priority": "low",
                                "parameter": parameter, "score": 3})
        if assessment.risk is not None:
            for priority in reversed(PRIORITIES):
                threshold = self.config.risk_thresholds.get(priority)
                if threshold is not None and assessment.risk >= threshold:
                    reasons.append({"rule": "risk", "priority": priority,
                                    "risk": assessment.risk, "threshold": threshold})
                    break
        return reasons

    def _is_clear(self, state: PatientAlertState, assessment: Assessment, score: News2) -> bool:
        medium, _ = self._thresholds(state)
        if score.total > medium - self.config.resolve_margin:
            return False
        if self.config.single_parameter_alerts and score.red_score:
            return False
        if assessment.risk is not None and self.config.risk_thresholds:
            lowest = min(self.config.risk_thresholds.values())
            if assessment.risk >= lowest - self.config.resolve_risk_margin:
                return False
        return True

    def _pending(self, state: PatientAlertState, assessment: Assessment, score: News2,
                 reasons: list[dict[str, Any]]) -> dict[str, Any]:
        """A condition that has just started: the readings that weigh most in it, with
        their times (one of them must be measured again before it raises), and whether
        they are all spot checks (taken by hand, not streaming: they raise at once)."""
        singles = [r["parameter"] for r in reasons if r["rule"] == "single_parameter"]
        if singles:
            names = singles
        elif any(r["rule"] == "news2" for r in reasons):
            top = max((c for c in score.components.values() if c), default=0)
            names = [p for p, c in score.components.items() if c and c == top]
        else:
            names = []  # a risk from windowed features is already smoothed over time
        trigger = {p: int(assessment.observations[p][1]) for p in names
                   if p in assessment.observations}
        streaming_ms = self.config.streaming_gap_s * 1000
        # A first reading (no gap known yet) waits like a device reading would.
        spot = bool(trigger) and all(state.last_gap.get(p, 0) > streaming_ms for p in trigger)
        return {"since_ms": assessment.time_ms, "trigger": trigger, "spot": spot}

    def _confirmed(self, pending: dict[str, Any], priority: str, assessment: Assessment) -> bool:
        if pending.get("spot"):
            return True  # a nurse's own observation round is a deliberate measurement
        held_ms = assessment.time_ms - pending["since_ms"]
        if held_ms < self.config.persistence_s[priority] * 1000:
            return False
        if held_ms >= self.config.unconfirmed_after_s * 1000 or not pending["trigger"]:
            return True
        return any(assessment.observations.get(p, (None, -1))[1] > t
                   for p, t in pending["trigger"].items())

    def _remember(self, state: PatientAlertState, assessment: Assessment, score: News2) -> None:
        t = assessment.time_ms
        state.patient_id = assessment.patient_id or state.patient_id
        state.ward, state.bed = assessment.ward or state.ward, assessment.bed or state.bed
        if t > state.time_ms:
            state.time_ms = t
        last_seen, last_gap = state.last_seen, state.last_gap
        observations, changed = assessment.observations, assessment.changed
        # Only a value that changed since the previous assessment can have a newer time.
        for parameter in observations if changed is None else changed:
            item = observations.get(parameter)
            if item is None:
                continue
            seen_ms = int(item[1])
            previous_ms = last_seen.get(parameter)
            if previous_ms is None:
                last_seen[parameter] = seen_ms
            elif seen_ms > previous_ms:
                last_gap[parameter] = seen_ms - previous_ms
                last_seen[parameter] = seen_ms
        total = score.total
        state.last_news2 = (t, total)
        history = state.score_history
        if not history or history[-1][1] != total:
            history.append((t, total))
        cutoff = t - self._lookback_ms
        # The entry in force at the cutoff stays, clamped to it: it still says what was true then.
        while len(history) > 1 and history[1][0] <= cutoff:
            history.pop(0)
        if history[0][0] < cutoff:
            history[0] = (cutoff, history[0][1])
        if len(history) > 24:
            del history[:-24]
        if assessment.risk is not None:
            risks = state.risk_history
            if not risks or t - risks[-1][0] >= _RISK_STEP_MS:
                risks.append((t, float(assessment.risk)))
            horizon = t - self._risk_horizon_ms
            while len(risks) > 1 and risks[0][0] < horizon:
                risks.pop(0)
            if len(risks) > 16:
                del risks[:-16]

    # -- payloads ----------------------------------------------------------------------
    def _base_payload(self, state: PatientAlertState, alert: OpenAlert, status: str,
                      time_ms: int) -> dict[str, Any]:
        return {
            "schema": PAYLOAD_SCHEMA, "alert_id": alert.alert_id, "kind": alert.kind,
            "condition": alert.condition, "priority": alert.priority, "status": status,
            "patient": {"patient_id": state.patient_id, "ward": state.ward, "bed": state.bed},
            "time_zone": self.config.display_tz,
            "time": self._time(time_ms),
            "episode_start": self._time(alert.started_ms),
            "replaces": alert.replaces,
            "ack": self._ack_payload(alert),
            "settings": state.settings.to_dict(),
        }

    def _ack_payload(self, alert: OpenAlert) -> dict[str, Any] | None:
        if alert.ack_ms is None:
            return None
        return {"by": alert.ack_by, "actor": alert.ack_actor, "ms": alert.ack_ms,
                "shown": clock_time(alert.ack_ms, self.config.display_tz),
                "expires_ms": alert.ack_expires_ms,
                "expires": clock_time(alert.ack_expires_ms or alert.ack_ms, self.config.display_tz),
                "news2_at_ack": alert.ack_total}

    def _clinical_payload(self, state: PatientAlertState, alert: OpenAlert, status: str,
                          assessment: Assessment, score: News2,
                          reasons: list[dict[str, Any]], replaces_reason: str | None) -> dict[str, Any]:
        payload = self._base_payload(state, alert, status, assessment.time_ms)
        observations = {}
        for parameter, (value, seen_ms) in sorted(assessment.observations.items()):
            observations[parameter] = {
                "value": value, "shown": show_value(parameter, value),
                "unit": UNITS.get(parameter, "").strip() or None, "ms": int(seen_ms),
                "time_shown": clock_time(seen_ms, self.config.display_tz)
                if assessment.time_ms - seen_ms >= 10 * _MIN else None,
                "score": score.components.get(parameter),
            }
        previous = None
        lower = [entry for entry in state.score_history if entry[1] < score.total]
        if lower:
            low = min(entry[1] for entry in lower)
            time_ms = max(entry[0] for entry in lower if entry[1] == low)
            previous = {"total": low, "ms": time_ms,
                        "shown": clock_time(time_ms, self.config.display_tz)}
        stale = [{"parameter": p, "last_ms": state.last_seen[p],
                  "last": clock_time(state.last_seen[p], self.config.display_tz)}
                 for p in sorted(assessment.stale) if p in state.last_seen and p in COMPONENTS]
        stale_names = {s["parameter"] for s in stale}
        missing = [p for p in COMPONENTS if score.components.get(p) is None
                   and p not in stale_names and not (p == "on_oxygen" and "spo2" not in observations)]
        payload.update({
            "news2": {**score.to_dict(), "spo2_scale": state.settings.spo2_scale or assessment.spo2_scale,
                      "previous": previous},
            "observations": observations,
            "stale": stale, "missing": missing,
            "trends": {p: t for p, t in find_trends(assessment.features, self.config.trend_min_change,
                                                      self.config.trend_max_window_s).items()
                       if p in observations and score.components.get(p)},
            "risk": self._risk_payload(state, assessment),
            # NaN (not enough data in a window) is not JSON: null says the same.
            "features": {name: (float(v) if v is not None and math.isfinite(v) else None)
                         for name, v in assessment.features.items()},
            "reasons": reasons,
            "thresholds": {**self.config.thresholds(),
                           "news2_medium": self._thresholds(state)[0],
                           "news2_high": self._thresholds(state)[1]},
            "replaces_reason": replaces_reason,
            "last_data": self._time(assessment.time_ms),
        })
        return payload

    def _risk_payload(self, state: PatientAlertState, assessment: Assessment) -> dict[str, Any] | None:
        if assessment.risk is None:
            return None
        then = assessment.time_ms - int(self.config.risk_trend_s * 1000)
        earlier = [entry for entry in state.risk_history if entry[0] <= then]
        previous = earlier[-1] if earlier else None
        trend = None
        if previous is not None:
            change = assessment.risk - previous[1]
            trend = ("rising" if change >= self.config.risk_trend_min else
                     "falling" if change <= -self.config.risk_trend_min else "steady")
        return {
            "value": assessment.risk, "shown": f"{assessment.risk:.2f}",
            "ms": assessment.risk_ms if assessment.risk_ms is not None else assessment.time_ms,
            "model_version": assessment.model_version, "trend": trend,
            "previous": {"value": previous[1], "ms": previous[0]} if previous else None,
            "factors": [[str(name), float(weight)] for name, weight in assessment.factors()],
            "thresholds": dict(self.config.risk_thresholds),
        }

    def _emit(self, state: PatientAlertState, alert: OpenAlert, status: str,
              payload: dict[str, Any], device_time_ms: int) -> Alert:
        summary = compose_summary(payload, self.config.max_summary_chars)
        self.events[(status, alert.kind, alert.priority)] += 1
        return Alert(alert_id=alert.alert_id, patient_id=state.patient_id, ward=state.ward,
                     bed=state.bed, kind=alert.kind, priority=alert.priority, status=status,
                     summary=summary, device_time_ms=int(device_time_ms), payload=payload,
                     replaces=alert.replaces)

    # -- clinical ----------------------------------------------------------------------
    def needs_attention(self, state: PatientAlertState) -> bool:
        """Whether anything is open, pending or set for the patient: then every assessment
        takes the full path. The monitor's compiled core reads this (per patient, as a flag)
        and ``quiet_below``; it decides the short path of each reading from them."""
        return bool(state.clinical is not None or state.level is not None or state.pending
                    or state.technical or state.settings.spo2_scale is not None)

    def quiet_below(self, state: PatientAlertState) -> int:
        """The NEWS2 total below which a patient needing no attention stays quiet."""
        settings = state.settings
        if settings.news2_medium is None and settings.news2_high is None:
            return self._quiet_below
        return min(settings.news2_medium or self.config.news2_medium,
                   settings.news2_high or self.config.news2_high)

    def quiet(self, state: PatientAlertState, news2: News2) -> bool:
        """A quiet patient staying quiet: nothing open, pending or set for the patient, and
        a NEWS2 that gives no reason. With no risk (or no risk thresholds), ``assess`` then
        only updates what it remembers, and raises nothing (``remember_quiet`` does that
        alone). The monitor decides this in its compiled core from ``needs_attention`` and
        ``quiet_below``; the shadow policy asks it here."""
        return (not self.needs_attention(state) and news2.total < self.quiet_below(state)
                and not (self.config.single_parameter_alerts and news2.red_score))

    def remember_quiet(self, state: PatientAlertState, assessment: Assessment) -> list[Alert]:
        """``assess`` of an assessment ``quiet`` is true of, with no risk thresholds set:
        remember it, raise nothing."""
        self._remember(state, assessment, assessment.news2)
        return []

    def assess(self, state: PatientAlertState, assessment: Assessment) -> list[Alert]:
        """Update one patient's state with a new assessment; the alerts to publish."""
        config = self.config
        t = assessment.time_ms
        score = self._score(state, assessment)
        reasons = self._reasons(state, assessment, score)
        self._remember(state, assessment, score)
        out = self._resolve_technical(state, assessment)
        if not reasons and state.clinical is None and state.level is None and not state.pending:
            return out  # a quiet patient staying quiet: what follows would change nothing
        level = max((r["priority"] for r in reasons), key=PRIORITY_RANK.__getitem__, default=None)
        rank = PRIORITY_RANK[level] if level else 0
        previous_rank = PRIORITY_RANK[state.level] if state.level else 0
        state.level = level
        current = state.clinical

        for priority in PRIORITIES:
            if PRIORITY_RANK[priority] <= rank:
                state.pending.setdefault(priority, self._pending(state, assessment, score, reasons))
            elif priority in state.pending:
                del state.pending[priority]
                if current is None or PRIORITY_RANK[priority] > PRIORITY_RANK[current.priority]:
                    self.events[("suppressed", "clinical", priority)] += 1  # a blip that did not last
        if current is not None and rank > previous_rank and rank <= PRIORITY_RANK[current.priority]:
            self.events[("suppressed", "clinical", level or "low")] += 1  # repeat inside an episode

        worse = (current is not None and current.status == "acknowledged"
                 and current.ack_total is not None
                 and score.total >= current.ack_total + config.worse_points)
        if worse:
            state.pending.setdefault("worse", self._pending(state, assessment, score, reasons))
        else:
            state.pending.pop("worse", None)

        confirmed = [p for p in PRIORITIES if p in state.pending
                     and self._confirmed(state.pending[p], p, assessment)]
        top = confirmed[-1] if confirmed else None

        if current is None:
            if top is not None:
                opened = OpenAlert(alert_id=alert_id(state.patient_id, "clinical", top, t),
                                   condition="clinical", kind="clinical", priority=top,
                                   status="raised", started_ms=t, raised_ms=t, news2_total=score.total)
                state.clinical, state.clear_since_ms = opened, None
                out.append(self._emit(state, opened, "raised", self._clinical_payload(
                    state, opened, "raised", assessment, score, reasons, None), t))
            return out

        if top is not None and PRIORITY_RANK[top] > PRIORITY_RANK[current.priority]:
            out.append(self._replace(state, current, top, "escalated", "escalation",
                                     assessment, score, reasons))
            return out
        if worse and self._confirmed(state.pending["worse"], current.priority, assessment):
            out.append(self._replace(state, current, current.priority, "escalated", "worse",
                                     assessment, score, reasons))
            return out
        if (current.status == "acknowledged" and current.ack_expires_ms is not None
                and t >= current.ack_expires_ms and level is not None):
            out.append(self._replace(state, current, level, "reraised", "ack_expired",
                                     assessment, score, reasons))
            return out

        if self._is_clear(state, assessment, score):
            if state.clear_since_ms is None:
                state.clear_since_ms = t
            elif t - state.clear_since_ms >= config.resolve_after_s * 1000:
                payload = self._clinical_payload(state, current, "resolved", assessment, score,
                                                 reasons, None)
                payload["resolution"] = {"clear_since_ms": state.clear_since_ms,
                                         "clear_since": clock_time(state.clear_since_ms, config.display_tz),
                                         "resolve_after_s": config.resolve_after_s}
                out.append(self._emit(state, current, "resolved", payload, t))
                state.clinical, state.clear_since_ms = None, None
                state.pending.clear()
        else:
            state.clear_since_ms = None
        return out

    def _replace(self, state: PatientAlertState, current: OpenAlert, priority: str, status: str,
                 why: str, assessment: Assessment, score: News2,
                 reasons: list[dict[str, Any]]) -> Alert:
        t = assessment.time_ms
        new = OpenAlert(alert_id=alert_id(state.patient_id, f"clinical:{why}", priority, t),
                        condition="clinical", kind="clinical", priority=priority, status=status,
                        started_ms=current.started_ms, raised_ms=t, replaces=current.alert_id,
                        news2_total=score.total)
        payload = self._clinical_payload(state, new, status, assessment, score, reasons, why)
        if why == "ack_expired":
            payload["ack"] = self._ack_payload(current)
        state.clinical, state.clear_since_ms = new, None
        state.pending.pop("worse", None)
        return self._emit(state, new, status, payload, t)

    # -- acknowledgement and settings --------------------------------------------------
    def acknowledge(self, state: PatientAlertState, alert_id: str, by: str, at_ms: int,
                    actor: Mapping[str, str] | None = None) -> list[Alert]:
        """A nurse acknowledged ``alert_id`` at ``at_ms``: silence it until it expires or
        the patient gets worse. Unknown, replaced or resolved ids change nothing (audited);
        a redelivered acknowledgement publishes nothing new. ``actor`` is the signed-in
        user ({user_id, role, name}); ``by`` their display name."""
        by = by.strip() or "unnamed"
        target = next((a for a in state.open_alerts() if a.alert_id == alert_id), None)
        entry: dict[str, Any] = {"action": "acknowledge", "alert_id": alert_id, "by": by, "at_ms": int(at_ms)}
        if actor is not None:
            entry["actor"] = dict(actor)
        if target is None:
            self._audit(state, {**entry, "outcome": "not open (replaced, resolved or unknown)"})
            return []
        if target.status == "acknowledged" and target.ack_by == by and target.ack_ms == at_ms:
            return []
        target.status = "acknowledged"
        target.ack_by, target.ack_ms = by, int(at_ms)
        target.ack_actor = dict(actor) if actor is not None else None
        target.ack_expires_ms = int(at_ms + self.config.ack_expiry_s[target.priority] * 1000)
        target.ack_total = state.last_news2[1] if state.last_news2 else None
        state.pending.pop("worse", None)
        self._audit(state, {**entry, "outcome": "acknowledged", "priority": target.priority,
                            "expires_ms": target.ack_expires_ms})
        payload = self._base_payload(state, target, "acknowledged", at_ms)
        payload["news2"] = ({"total": state.last_news2[1], "ms": state.last_news2[0]}
                            if state.last_news2 else {"total": None})
        if target.kind == "technical":
            payload.update({"technical": target.condition.split(":")[0], "parameter": target.parameter})
        payload["audit"] = [dict(e) for e in state.audit]
        return [self._emit(state, target, "acknowledged", payload, at_ms)]

    def configure(self, state: PatientAlertState, record: Mapping[str, Any]) -> PatientSettings:
        """Apply a clinician's settings record (see vitalstream.alerts.settings) and audit
        who changed what, when and why; raises SettingsError and changes nothing if invalid."""
        try:
            state.settings = apply_settings(state.settings, record)
        except SettingsError as exc:
            actor = record.get("actor") if isinstance(record, Mapping) else None
            self._audit(state, {"action": "settings",
                                "by": str(actor.get("name", "")) if isinstance(actor, Mapping) else "",
                                "outcome": f"rejected: {exc}"})
            raise
        changes = {k: record[k] for k in record if k in state.settings.to_dict()
                   and k not in ("set_by", "set_at_ms", "reason", "set_by_actor")}
        self._audit(state, {"action": "settings", "by": state.settings.set_by,
                            "actor": state.settings.set_by_actor,
                            "at_ms": state.settings.set_at_ms, "reason": state.settings.reason,
                            "changes": changes, "outcome": "applied"})
        return state.settings

    # -- technical ---------------------------------------------------------------------
    def _technical_priority(self, state: PatientAlertState, technical: str) -> str:
        if (technical == "no_data" and state.clinical is not None
                and PRIORITY_RANK[state.clinical.priority] >= PRIORITY_RANK["medium"]):
            return "medium"  # the score that raised an open alert can no longer be followed
        return self.config.technical_priority

    def _technical_payload(self, state: PatientAlertState, alert: OpenAlert, status: str,
                           time_ms: int) -> dict[str, Any]:
        payload = self._base_payload(state, alert, status, time_ms)
        since = alert.since_ms if alert.since_ms is not None else alert.started_ms
        payload.update({
            "technical": alert.condition.split(":")[0], "parameter": alert.parameter,
            "parameters": alert.parameter.split(","),
            "since": self._time(since),
            "duration_min": max(0, (time_ms - since) // _MIN),
            "count": alert.count, "source": alert.source, "detail": alert.detail,
            "stale_after_s": {p: self.config.stale_after_s.get(state.settings.device_type, {}).get(p)
                              for p in alert.parameter.split(",")},
            "device_type": state.settings.device_type,
            "last_news2": ({"total": state.last_news2[1], "ms": state.last_news2[0],
                            "shown": clock_time(state.last_news2[0], self.config.display_tz)}
                           if state.last_news2 else None),
        })
        return payload

    def _open_technical(self, state: PatientAlertState, technical: str, parameter: str,
                        time_ms: int, since_ms: int, **details: Any) -> Alert:
        condition = f"{technical}:{parameter}"
        priority = self._technical_priority(state, technical)
        opened = OpenAlert(alert_id=alert_id(state.patient_id, condition, priority, since_ms),
                           condition=condition, kind="technical", priority=priority,
                           status="raised", started_ms=since_ms, raised_ms=time_ms,
                           parameter=parameter, since_ms=since_ms, **details)
        state.technical[condition] = opened
        return self._emit(state, opened, "raised",
                          self._technical_payload(state, opened, "raised", time_ms), time_ms)

    def _resolve_technical(self, state: PatientAlertState, assessment: Assessment) -> list[Alert]:
        out = []
        for condition, alert in list(state.technical.items()):
            after_ms = alert.since_ms or 0
            if condition in state.artefacts:
                after_ms = state.artefacts[condition][2]
            seen = [assessment.observations.get(p, (None, -1))[1] for p in alert.parameter.split(",")]
            if min(seen) <= after_ms:
                continue
            again_ms = int(min(seen))
            payload = self._technical_payload(state, alert, "resolved", again_ms)
            payload["resolution"] = {"data_again_ms": again_ms}
            out.append(self._emit(state, alert, "resolved", payload, again_ms))
            del state.technical[condition]
            state.artefacts.pop(condition, None)
        return out

    def check_stale(self, state: PatientAlertState, now_ms: int) -> list[Alert]:
        """No-data technical alerts at device-time ``now_ms`` (called by a timer), and
        technical alerts whose acknowledgement expired while still true."""
        out: list[Alert] = []
        limits = self.config.stale_after_s.get(state.settings.device_type, {})
        covered = {p for a in state.technical.values() if a.condition.startswith("no_data:")
                   for p in a.parameter.split(",")}
        # Parameters that go quiet together (one device) make one alert, not one each.
        # Only a parameter that was streaming (its last two readings closer than the
        # timeout) can stop: a spot check every 4 h is not a device that went quiet.
        silent = [p for p in PARAMETER_ORDER if p in state.last_seen and p not in covered
                  and limits.get(p) is not None
                  and state.last_gap.get(p, math.inf) <= limits[p] * 1000
                  and now_ms - state.last_seen[p] > limits[p] * 1000]
        if silent:
            since_ms = min(state.last_seen[p] for p in silent)
            out.append(self._open_technical(state, "no_data", ",".join(silent), now_ms, since_ms))
        for condition, current in list(state.technical.items()):
            if (current.status == "acknowledged" and current.ack_expires_ms is not None
                    and now_ms >= current.ack_expires_ms):
                renewed = dataclasses.replace(
                    current, alert_id=alert_id(state.patient_id, condition + ":ack_expired",
                                               current.priority, now_ms),
                    status="reraised", raised_ms=now_ms, replaces=current.alert_id)
                payload = self._technical_payload(state, renewed, "reraised", now_ms)
                state.technical[condition] = dataclasses.replace(
                    renewed, ack_by=None, ack_ms=None, ack_expires_ms=None, ack_actor=None)
                out.append(self._emit(state, renewed, "reraised", payload, now_ms))
        return out

    def technical(self, state: PatientAlertState, event: Mapping[str, Any]) -> list[Alert]:
        """A technical event from ingest: ``{"kind", "patient_id", "ward", "bed",
        "parameter", "device_time_ms", "source", "detail"}``. ``sensor_off`` raises at once
        (the device already waited before reporting it); ``artefact`` and ``no_value``
        raise after ``artefact_run`` of them within ``artefact_window_s``; ``no_data`` from a gateway
        is the same alert as a stale check's; ``sensor_on`` changes nothing (the next
        reading resolves). Other kinds raise a low technical alert carrying the detail."""
        kind = str(event.get("kind", "")) or "technical"
        parameter = str(event.get("parameter", "") or "device")
        time_ms = int(event.get("device_time_ms", state.time_ms) or state.time_ms)
        state.patient_id = state.patient_id or str(event.get("patient_id", ""))
        state.ward = state.ward or str(event.get("ward", ""))
        state.bed = state.bed or str(event.get("bed", ""))
        source, detail = str(event.get("source", ""))[:64], str(event.get("detail", ""))[:120]
        if kind == "sensor_on":
            return []
        condition = f"{kind}:{parameter}"
        if condition in state.technical:
            if kind in RUN_KINDS:
                state.technical[condition].count += 1
                first_ms, count, last_ms = state.artefacts.get(condition, (time_ms, 0, time_ms))
                state.artefacts[condition] = (first_ms, count + 1, max(time_ms, last_ms))
            return []
        if kind in RUN_KINDS:
            first_ms, count, _ = state.artefacts.get(condition, (time_ms, 0, time_ms))
            if time_ms - first_ms > self.config.artefact_window_s * 1000:
                first_ms, count = time_ms, 0
            count += 1
            state.artefacts[condition] = (first_ms, count, time_ms)
            if count < self.config.artefact_run:
                return []
            return [self._open_technical(state, kind, parameter, time_ms, first_ms, count=count,
                                         source=source, detail=detail)]
        if kind == "no_data":
            since_ms = state.last_seen.get(parameter, time_ms)
            return [self._open_technical(state, kind, parameter, time_ms, since_ms,
                                         source=source, detail=detail)]
        return [self._open_technical(state, kind, parameter, time_ms, time_ms,
                                     source=source, detail=detail)]
