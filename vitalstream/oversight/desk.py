"""The oversight desk: who holds each open alert, who is called next and when, what was
answered, what is snoozed, and the patient's care goals. Pure: no Kafka, no clock (every
method takes ``now_ms``, wall time).

It works on alert transitions (what the alert policy published), control messages
(answers, snoozes, dispositions, goals, census) and a timer, never on readings. Its
state per patient is small and JSON-able; the worker keeps it in the patient's
changelog row, so a restart loses no escalation timer, snooze or goal.

    desk = OversightDesk(OversightConfig.default())
    desk.on_alerts(alerts, now_ms)                 # annotates them; starts the timers
    events = desk.due(now_ms)                      # escalations and snoozes that ended
    events = desk.control(patient_id, record, actor, now_ms)   # or raises Refused

>>> from vitalstream.alerts import Alert
>>> from vitalstream.oversight.config import OversightConfig
>>> desk = OversightDesk(OversightConfig.from_json(
...     '{"*": {"steps": [{"role": "bedside_nurse"}, {"role": "charge_nurse", "after_s": 60}]}}'))
>>> raised = Alert("al-1", "p1", "4B", "12", "clinical", "high", "raised", "Bed 12: NEWS2 8.", 0, {})
>>> desk.on_alerts([raised], now_ms=1_000)
>>> raised.payload["oversight"]["holder"]
'bedside_nurse'
>>> [(e.status, e.payload["oversight"]["holder"]) for e in desk.due(61_000)]
[('called', 'charge_nurse')]
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from vitalstream.alerts.identity import alert_id as make_alert_id
from vitalstream.alerts.messages import PRIORITY_RANK, Alert
from vitalstream.oversight.answers import REASON_TEXT, Refused, check_answer
from vitalstream.oversight.config import CLINICAL_ROLES, GOAL_ROLES, OversightConfig

# Statuses the desk publishes on the alerts topic. Open: the alert stays on the board.
OPEN_STATUSES = frozenset({"called", "answered", "snoozed", "snooze_ended", "transferred"})
CLOSING_STATUSES = frozenset({"transferred_out", "discharged"})
GOAL_STATUSES = frozenset({"goal_set", "goal_ended"})
STATUSES = OPEN_STATUSES | CLOSING_STATUSES | GOAL_STATUSES
# What the desk takes from the policy: an alert opens, is acknowledged, or closes.
_OPENING = frozenset({"raised", "escalated", "reraised"})
GOALS: tuple[str, ...] = ("comfort_care", "do_not_escalate")
DISPOSITIONS: tuple[str, ...] = ("delivered", "seen", "accepted", "declined")
HISTORY_MAX = 40
MAX_REASON_CHARS = 120
ROLE_TEXT = {"bedside_nurse": "bedside nurse", "charge_nurse": "charge nurse",
             "rapid_response": "rapid-response team", "physician": "physician"}


def actor_view(actor: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The actor shape ``{"user_id", "role", "name"}`` with strings only, or None."""
    if not actor:
        return None
    return {k: str(actor.get(k) or "")[:80] for k in ("user_id", "role", "name")}


def check_actor(actor: Mapping[str, Any] | None, roles: Iterable[str] = CLINICAL_ROLES) -> dict[str, str]:
    """The actor if their role may do this; else ``Refused("role")``."""
    view = actor_view(actor)
    if view is None or not view["user_id"]:
        raise Refused("no_actor")
    if view["role"] not in set(roles):
        raise Refused("role")
    return view


@dataclasses.dataclass(slots=True)
class Tracked:
    """One open alert as the desk follows it (times are wall ms)."""

    alert_id: str
    kind: str
    priority: str
    ward: str
    bed: str
    summary: str
    device_time_ms: int
    opened_ms: int
    step: int = 0
    since_ms: int = 0  # start of the current wait (for an acknowledgement or an answer)
    waiting: str = "ack"  # "ack", "answer" or "none"
    acknowledged: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None
    snooze: dict[str, Any] | None = None
    events: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class PatientOversight:
    patient_id: str
    alerts: dict[str, Tracked] = dataclasses.field(default_factory=dict)
    goals: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"patient_id": self.patient_id,
                "alerts": {k: dataclasses.asdict(v) for k, v in self.alerts.items()},
                "goals": {k: dict(v) for k, v in self.goals.items()}}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PatientOversight:
        return cls(patient_id=str(record["patient_id"]),
                   alerts={k: Tracked(**v) for k, v in record.get("alerts", {}).items()},
                   goals={k: dict(v) for k, v in record.get("goals", {}).items()})

    def empty(self) -> bool:
        return not self.alerts and not self.goals


class OversightDesk:
    """The oversight state of the patients of one worker (see the module docstring).

    ``counts`` gathers what metrics report, keyed by a tuple whose first item names it:
    ``("escalation", ward, role, reason)``, ``("answer", ward, priority, reason)``,
    ``("refused", reason)``; ``timings`` holds ``(what, ward, priority, seconds)`` with
    what ``ack`` or ``answer``. No patient or user id goes in either."""

    def __init__(self, config: OversightConfig) -> None:
        self.config = config
        self.patients: dict[str, PatientOversight] = {}
        self.next_ms: dict[str, int] = {}  # patient -> wall time of their next timer, if any
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.timings: list[tuple[str, str, str, float]] = []

    # -- state -------------------------------------------------------------------------
    def export(self, patient_id: str) -> dict[str, Any] | None:
        state = self.patients.get(patient_id)
        return state.to_dict() if state is not None else None

    def restore(self, record: Mapping[str, Any]) -> None:
        state = PatientOversight.from_dict(record)
        if not state.empty():
            self.patients[state.patient_id] = state
            self._schedule(state)

    def forget(self, patient_id: str) -> None:
        self.patients.pop(patient_id, None)
        self.next_ms.pop(patient_id, None)

    def drain(self) -> tuple[Counter[tuple[str, ...]], list[tuple[str, str, str, float]]]:
        counts, timings = self.counts, self.timings
        self.counts, self.timings = Counter(), []
        return counts, timings

    def _state(self, patient_id: str) -> PatientOversight:
        state = self.patients.get(patient_id)
        if state is None:
            state = self.patients[patient_id] = PatientOversight(patient_id)
        return state

    # -- alert transitions ---------------------------------------------------------------
    def on_alerts(self, alerts: Iterable[Alert], now_ms: int,
                  actor: Mapping[str, Any] | None = None) -> None:
        """Follow what the policy published: an alert that opens is held by the chain's
        first responder (a replacement keeps the step it replaces), an acknowledgement
        (by ``actor``) starts the wait for an answer, a resolved alert is forgotten.
        Each alert's payload gains ``oversight``: who holds it, since when, who is next."""
        for alert in alerts:
            if alert.status in STATUSES:
                continue
            state = self._state(alert.patient_id)
            tracked = state.alerts.get(alert.alert_id)
            if alert.status in _OPENING:
                before = state.alerts.pop(alert.replaces, None) if alert.replaces else None
                if tracked is None:
                    tracked = Tracked(alert.alert_id, alert.kind, alert.priority, alert.ward, alert.bed,
                                      alert.summary, alert.device_time_ms, now_ms, since_ms=now_ms)
                    if before is not None:
                        tracked.step, tracked.history = before.step, before.history
                        tracked.opened_ms, tracked.snooze = before.opened_ms, None
                    state.alerts[alert.alert_id] = tracked
                    self._note(tracked, now_ms, alert.status, role=self._holder(tracked))
                    self._apply_goals(state, tracked)
            elif alert.status == "acknowledged" and tracked is not None:
                if tracked.acknowledged is None:
                    by = actor_view(actor) or {"user_id": "", "role": "", "name": str(
                        (alert.payload.get("ack") or {}).get("by") or "")}
                    tracked.acknowledged = {**by, "at_ms": now_ms}
                    self.timings.append(("ack", tracked.ward, tracked.priority,
                                         (now_ms - tracked.opened_ms) / 1000.0))
                    tracked.waiting, tracked.since_ms = "answer", now_ms
                    self._apply_goals(state, tracked)
                    self._note(tracked, now_ms, "acknowledged", actor=by)
            elif alert.status == "resolved":
                if tracked is not None:
                    self._note(tracked, now_ms, "resolved")
                state.alerts.pop(alert.alert_id, None)
            if alert.alert_id in state.alerts:
                alert.payload["oversight"] = self.view(state, state.alerts[alert.alert_id], now_ms)
            self._settle(state)

    # -- timer ----------------------------------------------------------------------------
    def due(self, now_ms: int) -> list[Alert]:
        """Escalations, snoozes that ended and goals that expired, as of ``now_ms``."""
        out: list[Alert] = []
        for patient_id in [p for p, at in self.next_ms.items() if at <= now_ms]:
            state = self.patients.get(patient_id)
            if state is None:
                self.next_ms.pop(patient_id, None)
                continue
            for kind, goal in list(state.goals.items()):
                if goal["until_ms"] <= now_ms:
                    out.append(self._end_goal(state, kind, "review_due", None, now_ms))
            for tracked in list(state.alerts.values()):
                out.extend(self._advance(state, tracked, now_ms))
            self._settle(state)
        return out

    def _advance(self, state: PatientOversight, tracked: Tracked, now_ms: int) -> list[Alert]:
        if tracked.snooze is not None:
            if now_ms < tracked.snooze["until_ms"]:
                return []
            tracked.snooze, tracked.since_ms = None, now_ms  # the wait starts again
            self._note(tracked, now_ms, "snooze_ended")
            return [self._event(state, tracked, "snooze_ended", now_ms,
                                f"Snooze ended; held by the {ROLE_TEXT[self._holder(tracked)]}.")]
        due_ms = self._due_ms(state, tracked)
        if due_ms is None or now_ms < due_ms:
            return []
        reason = "no_acknowledgement" if tracked.waiting == "ack" else "unanswered"
        return [self._call_next(state, tracked, reason, now_ms)]

    def _call_next(self, state: PatientOversight, tracked: Tracked, reason: str, now_ms: int) -> Alert:
        tracked.step += 1
        tracked.since_ms = now_ms
        role = self._holder(tracked)
        self.counts[("escalation", tracked.ward, role, reason)] += 1
        self._note(tracked, now_ms, "called", role=role, reason=reason)
        why = {"no_acknowledgement": "no acknowledgement", "unanswered": "acknowledged but not answered",
               "declined": "declined"}[reason]
        return self._event(state, tracked, "called", now_ms, f"Called the {ROLE_TEXT[role]}: {why}.")

    def _max_step(self, state: PatientOversight, tracked: Tracked) -> int:
        steps = self.config.chain(tracked.ward).steps
        last = len(steps) - 1
        if "comfort_care" in state.goals:
            return 0 if tracked.kind == "clinical" else last
        if "do_not_escalate" in state.goals:
            for index, step in enumerate(steps):
                if step.role == "rapid_response":
                    return max(0, index - 1)
        return last

    def _due_ms(self, state: PatientOversight, tracked: Tracked) -> int | None:
        """Wall time the next responder is called, if anyone is."""
        if tracked.snooze is not None:
            return int(tracked.snooze["until_ms"])
        chain = self.config.chain(tracked.ward)
        following = tracked.step + 1
        if following > self._max_step(state, tracked):
            return None
        if tracked.waiting == "ack":
            after = chain.steps[following].after_ms(tracked.priority)
        elif tracked.waiting == "answer":
            after = chain.answer_within_ms(tracked.priority)
            # An unanswered alert goes only to whom it would go unacknowledged.
            if chain.steps[following].after_ms(tracked.priority) is None:
                return None
        else:
            return None
        return None if after is None else tracked.since_ms + after

    def _holder(self, tracked: Tracked) -> str:
        steps = self.config.chain(tracked.ward).steps
        return steps[min(tracked.step, len(steps) - 1)].role

    def _apply_goals(self, state: PatientOversight, tracked: Tracked) -> None:
        # On comfort care an acknowledged clinical alert needs no answer.
        if "comfort_care" in state.goals and tracked.kind == "clinical" and tracked.waiting == "answer":
            tracked.waiting = "none"

    def _settle(self, state: PatientOversight) -> None:
        if state.empty():
            self.forget(state.patient_id)
            return
        self._schedule(state)

    def _schedule(self, state: PatientOversight) -> None:
        times = [t for t in (self._due_ms(state, a) for a in state.alerts.values()) if t is not None]
        times += [int(g["until_ms"]) for g in state.goals.values()]
        if times:
            self.next_ms[state.patient_id] = min(times)
        else:
            self.next_ms.pop(state.patient_id, None)

    # -- control messages ---------------------------------------------------------------
    def control(self, patient_id: str, record: Mapping[str, Any], actor: Mapping[str, Any] | None,
                now_ms: int) -> list[Alert]:
        """Apply one control message from a station: ``{"type": "answer" | "snooze" |
        "disposition" | "goal" | "goal_end", ...}``. Raises ``Refused`` (reason code,
        counted) and changes nothing for an unknown type or reason, a role that may not,
        an alert not open, a time outside the window, or a snooze too long."""
        try:
            out = self._control(patient_id, record, actor, now_ms)
        except Refused as exc:
            self.counts[("refused", str(exc))] += 1
            raise
        state = self.patients.get(patient_id)
        if state is not None:
            self._settle(state)
        return out

    def _control(self, patient_id: str, record: Mapping[str, Any], actor: Mapping[str, Any] | None,
                 now_ms: int) -> list[Alert]:
        kind = record.get("type")
        if kind not in ("answer", "snooze", "disposition", "goal", "goal_end"):
            raise Refused("unknown_type")
        at_ms = record.get("at_ms", now_ms)
        if isinstance(at_ms, bool) or not isinstance(at_ms, int) or abs(now_ms - at_ms) > self.config.control_window_s * 1000:
            raise Refused("stale_or_future")
        # From here the message's own time: applied again after a crash (its state row not yet
        # written), it makes the same snooze end and the same event ids.
        now_ms = at_ms
        if kind in ("goal", "goal_end"):
            by = check_actor(actor, GOAL_ROLES)
            state = self._state(patient_id)
            if kind == "goal_end":
                goal = str(record.get("goal"))
                if goal not in state.goals:
                    raise Refused("no_such_goal")
                return [self._end_goal(state, goal, "ended", by, now_ms)]
            return [self._set_goal(state, record, by, now_ms)]
        by = check_actor(actor)
        state = self.patients.get(patient_id)
        tracked = state.alerts.get(str(record.get("alert_id"))) if state is not None else None
        if state is None or tracked is None:
            raise Refused("not_open")
        if kind == "answer":
            return [self._answer(state, tracked, record, by, now_ms)]
        if kind == "snooze":
            return [self._snooze(state, tracked, record, by, now_ms)]
        return self._disposition(state, tracked, record, by, now_ms)

    def _answer(self, state: PatientOversight, tracked: Tracked, record: Mapping[str, Any],
                by: dict[str, str], now_ms: int) -> Alert:
        reason, acted, text = check_answer(record)
        if tracked.acknowledged is None:
            raise Refused("not_acknowledged")
        if tracked.answer is not None:
            raise Refused("already_answered")
        tracked.answer = {"reason": reason, "acted": acted, "text": text, **by, "at_ms": now_ms}
        tracked.waiting = "none"
        self.counts[("answer", tracked.ward, tracked.priority, reason)] += 1
        self.timings.append(("answer", tracked.ward, tracked.priority, (now_ms - tracked.opened_ms) / 1000.0))
        self._note(tracked, now_ms, "answered", actor=by, reason=reason)
        words = REASON_TEXT[reason] + (f" ({text})" if text else "")
        return self._event(state, tracked, "answered", now_ms,
                           f"{'Acted' if acted else 'No action'}: {words}. {by['name'] or by['user_id']}.")

    def _snooze(self, state: PatientOversight, tracked: Tracked, record: Mapping[str, Any],
                by: dict[str, str], now_ms: int) -> Alert:
        duration_s = record.get("duration_s")
        reason = " ".join(str(record.get("reason") or "").split())[:MAX_REASON_CHARS]
        if isinstance(duration_s, bool) or not isinstance(duration_s, int | float) or duration_s <= 0:
            raise Refused("bad_duration")
        if duration_s > self.config.snooze_max_s[tracked.priority]:
            raise Refused("snooze_too_long")
        if not reason:
            raise Refused("snooze_needs_reason")
        until_ms = now_ms + int(duration_s * 1000)
        tracked.snooze = {"until_ms": until_ms, "reason": reason, **by, "at_ms": now_ms}
        self._note(tracked, now_ms, "snoozed", actor=by, reason=reason)
        return self._event(state, tracked, "snoozed", now_ms,
                           f"Snoozed {int(duration_s // 60)} min by {by['name'] or by['user_id']}: {reason}.")

    def _disposition(self, state: PatientOversight, tracked: Tracked, record: Mapping[str, Any],
                     by: dict[str, str], now_ms: int) -> list[Alert]:
        disposition = record.get("disposition")
        if disposition not in DISPOSITIONS or disposition == "accepted":
            # Accepting is acknowledging: it goes through the acknowledgement, one way.
            raise Refused("unknown_disposition")
        self._note(tracked, now_ms, str(disposition), actor=by)
        if disposition != "declined":
            return []
        if tracked.acknowledged is not None:
            raise Refused("already_acknowledged")
        if tracked.step + 1 > self._max_step(state, tracked):
            return []  # nobody further to call: it stays with its holder (history says so)
        return [self._call_next(state, tracked, "declined", now_ms)]

    def _set_goal(self, state: PatientOversight, record: Mapping[str, Any], by: dict[str, str],
                  now_ms: int) -> Alert:
        goal = record.get("goal")
        if goal not in GOALS:
            raise Refused("unknown_goal")
        duration_s = record.get("duration_s", self.config.goal_max_s)
        if (isinstance(duration_s, bool) or not isinstance(duration_s, int | float)
                or not 0 < duration_s <= self.config.goal_max_s):
            raise Refused("bad_duration")
        reason = " ".join(str(record.get("reason") or "").split())[:MAX_REASON_CHARS]
        if not reason:
            raise Refused("goal_needs_reason")
        # Where the board shows it: the station's bed, else the bed of an open alert.
        ward, bed = str(record.get("ward") or ""), str(record.get("bed") or "")
        if not (ward and bed) and state.alerts:
            ward, bed = next((t.ward, t.bed) for t in state.alerts.values())
        state.goals[str(goal)] = {"goal": goal, "reason": reason, **by, "at_ms": now_ms,
                                  "until_ms": now_ms + int(duration_s * 1000), "ward": ward, "bed": bed}
        for tracked in state.alerts.values():
            self._apply_goals(state, tracked)
        return self._goal_event(state, str(goal), "goal_set", now_ms)

    def _end_goal(self, state: PatientOversight, goal: str, why: str, by: dict[str, str] | None,
                  now_ms: int) -> Alert:
        event = self._goal_event(state, goal, "goal_ended", now_ms, why=why, by=by)
        del state.goals[goal]
        for tracked in state.alerts.values():
            if tracked.acknowledged is not None and tracked.answer is None and tracked.waiting == "none":
                tracked.waiting, tracked.since_ms = "answer", now_ms
        return event

    def _goal_event(self, state: PatientOversight, goal: str, status: str, now_ms: int,
                    why: str = "", by: dict[str, str] | None = None) -> Alert:
        body = state.goals[goal]
        words = goal.replace("_", " ")
        if status == "goal_set":
            summary = f"Care goal: {words} until review, set by {body['name'] or body['user_id']}: {body['reason']}."
        else:
            ended = {"review_due": "review due", "discharged": "patient discharged"}.get(
                why, f"ended by {(by or {}).get('name') or (by or {}).get('user_id')}")
            summary = f"Care goal ended ({ended}): {words}."
        goal_id = make_alert_id(state.patient_id, f"goal:{goal}", "low", int(body["at_ms"]))
        payload = {"goal": {**body, "ended": why or None, "ended_by": by}, "clock": "wall",
                   "time": {"ms": now_ms}}
        return Alert(goal_id, state.patient_id, str(body["ward"]), str(body["bed"]), "care_goal", "low",
                     status, summary, now_ms, payload)

    # -- census ---------------------------------------------------------------------------
    def transfer(self, patient_id: str, ward: str, bed: str, now_ms: int) -> list[Alert]:
        """The patient moved: each open alert leaves the old ward's board
        (``transferred_out``) and appears on the new one (``transferred``), with its holder
        and history; the new ward's chain applies from its current step."""
        state = self.patients.get(patient_id)
        if state is None:
            return []
        out = []
        for tracked in state.alerts.values():
            old_ward, old_bed = tracked.ward, tracked.bed
            if (old_ward, old_bed) == (ward, bed):
                continue
            self._note(tracked, now_ms, "transferred", reason=f"{old_ward}/{old_bed} -> {ward}/{bed}")
            out.append(self._event(state, tracked, "transferred_out", now_ms,
                                   f"Moved to Bed {bed}, Ward {ward}."))
            tracked.ward, tracked.bed = ward, bed
            tracked.step = min(tracked.step, len(self.config.chain(ward).steps) - 1)
            tracked.since_ms = now_ms
            out.append(self._event(state, tracked, "transferred", now_ms,
                                   f"Moved here from Bed {old_bed}, Ward {old_ward}. {tracked.summary}"))
        for goal in state.goals.values():
            goal["ward"], goal["bed"] = ward, bed
        self._settle(state)
        return out

    def discharge(self, patient_id: str, now_ms: int) -> list[Alert]:
        """The patient left: their open alerts close (``discharged``) and goals end."""
        state = self.patients.get(patient_id)
        if state is None:
            return []
        out = []
        for tracked in state.alerts.values():
            self._note(tracked, now_ms, "discharged")
            out.append(self._event(state, tracked, "discharged", now_ms, "Patient discharged: alert closed."))
        for goal in list(state.goals):
            out.append(self._end_goal(state, goal, "discharged", None, now_ms))
        self.forget(patient_id)
        return out

    # -- rendering ------------------------------------------------------------------------
    def _note(self, tracked: Tracked, now_ms: int, event: str, role: str = "",
              actor: Mapping[str, Any] | None = None, reason: str = "") -> None:
        entry: dict[str, Any] = {"at_ms": now_ms, "event": event}
        if role:
            entry["role"] = role
        if actor:
            entry.update(user_id=actor.get("user_id", ""), user_role=actor.get("role", ""),
                         name=actor.get("name", ""))
        if reason:
            entry["reason"] = reason
        tracked.history.append(entry)
        del tracked.history[:-HISTORY_MAX]

    def view(self, state: PatientOversight, tracked: Tracked, now_ms: int) -> dict[str, Any]:
        """What a board shows of an alert's oversight (``payload["oversight"]``)."""
        due_ms = self._due_ms(state, tracked)
        steps = self.config.chain(tracked.ward).steps
        following = tracked.step + 1
        return {
            "clock": "wall", "step": tracked.step, "holder": self._holder(tracked),
            "held_since_ms": tracked.since_ms, "opened_ms": tracked.opened_ms,
            "waiting": "snooze" if tracked.snooze else tracked.waiting,
            "next": ({"role": steps[following].role, "at_ms": due_ms}
                     if due_ms is not None and tracked.snooze is None and following < len(steps) else None),
            "acknowledged": tracked.acknowledged, "answer": tracked.answer, "snooze": tracked.snooze,
            "goals": sorted(state.goals), "history": [dict(e) for e in tracked.history],
            "as_of_ms": now_ms,
        }

    def _event(self, state: PatientOversight, tracked: Tracked, status: str, now_ms: int,
               summary: str) -> Alert:
        tracked.events += 1
        payload = {"oversight": self.view(state, tracked, now_ms), "raised_summary": tracked.summary,
                   "time": {"ms": now_ms}, "clock": "wall", "condition": tracked.kind}
        prefix = f"Bed {tracked.bed}, Ward {tracked.ward}: "
        return Alert(tracked.alert_id, state.patient_id, tracked.ward, tracked.bed, tracked.kind,
                     tracked.priority, status, prefix + summary, tracked.device_time_ms, payload,
                     event=str(tracked.events))


def attention_order(alert: Mapping[str, Any]) -> tuple[int, int, int]:
    """Board order: waiting for an acknowledgement first, then for an answer, then the rest
    (snoozed last); within each, highest priority, then oldest."""
    oversight = alert.get("oversight") or (alert.get("payload") or {}).get("oversight") or {}
    waiting = oversight.get("waiting", "ack" if alert.get("status") != "acknowledged" else "answer")
    group = {"ack": 0, "answer": 1, "none": 2, "snooze": 3}.get(waiting, 2)
    return (group, -PRIORITY_RANK.get(str(alert.get("priority")), 0),
            int(oversight.get("opened_ms") or alert.get("device_time_ms") or 0))
