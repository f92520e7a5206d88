"""A simple responder model for the validation report: how the ward's alerts would be
acknowledged, escalated and answered, run through the real ``OversightDesk`` and the
ward's escalation chain, with simulated time (each alert's own device time).

The model (documented in docs/validation.md; every number is a ``ResponderModel`` field):

- the responder holding an alert acknowledges it with probability ``p_respond`` after an
  exponential delay of mean ``mean_ack_s[priority]``; otherwise (busy, away) never, and
  the desk calls the next responder of the chain when its time comes, who acknowledges
  after an exponential delay of mean ``mean_ack_s[priority]`` (and so on up the chain);
- the one who acknowledged answers after an exponential delay of mean ``mean_answer_s``;
- the answer is "acted" for a true alert (``physician_informed`` for high priority,
  ``observations_increased`` otherwise) and "no action" for the others
  (``expected_or_known``), from the report's verdicts.

Each alert draws from its own random stream (seeded by its event id), so the figures do
not depend on the order or number of other alerts. Alerts are simulated one by one (a
replacement of an alert is an alert of its own).

>>> figures = simulate([{"event_id": "a/raised", "alert_id": "a", "patient_id": "p", "ward": "4B",
...     "bed": "1", "kind": "clinical", "priority": "high", "device_time_ms": 0}], {"a/raised": "true"})
>>> figures["alerts"], sorted(figures["answers_by_reason"])
(1, ['physician_informed'])
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vitalstream.alerts.messages import PRIORITIES, Alert
from vitalstream.oversight.config import OversightConfig
from vitalstream.oversight.desk import OversightDesk


@dataclasses.dataclass(frozen=True)
class ResponderModel:
    p_respond: float = 0.8
    """Chance the responder holding an alert acknowledges it at all (else it escalates)."""
    mean_ack_s: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"high": 90.0, "medium": 240.0, "low": 600.0})
    """Mean delay to acknowledge, by priority (exponential)."""
    mean_answer_s: float = 300.0
    """Mean delay from acknowledgement to answer (exponential)."""


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median_s": None, "p90_s": None}
    array = np.asarray(values)
    return {"n": len(values), "median_s": round(float(np.median(array)), 1),
            "p90_s": round(float(np.quantile(array, 0.9)), 1)}


def simulate(alerts: Iterable[Mapping[str, Any]], verdicts: Mapping[str, str],
             config: OversightConfig | None = None, model: ResponderModel | None = None) -> dict[str, Any]:
    """The oversight figures of the report for these new clinical alerts (as on the topic)."""
    config = config or OversightConfig.default()
    model = model or ResponderModel()
    desk = OversightDesk(config)
    counted = 0
    for message in alerts:
        counted += 1
        key = str(message["event_id"])
        rng = random.Random(zlib.crc32(key.encode()))
        priority = str(message["priority"])
        t = int(message["device_time_ms"])
        alert = Alert(key, key, str(message.get("ward", "")), str(message.get("bed", "")), "clinical",
                      priority, "raised", "", t, {})
        desk.on_alerts([alert], t)
        tracked = desk.patients[key].alerts[key]
        acked_at: int | None = None
        # Each holder in turn: acknowledges (maybe) before the desk calls the next one.
        for _ in range(len(config.chain(alert.ward).steps)):
            held_from = tracked.since_ms
            responds = rng.random() < model.p_respond
            delay_ms = int(rng.expovariate(1.0 / model.mean_ack_s[priority]) * 1000)
            due_ms = desk.next_ms.get(key)
            if responds and (due_ms is None or held_from + delay_ms < due_ms):
                acked_at = held_from + delay_ms
                break
            if due_ms is None:  # nobody further to call: the last holder answers late
                acked_at = held_from + delay_ms * (1 if responds else 3)
                break
            desk.due(due_ms)
        assert acked_at is not None
        desk.on_alerts([dataclasses.replace(alert, status="acknowledged", payload={})], acked_at,
                       {"user_id": "simulated", "role": config.chain(alert.ward).steps[
                           min(tracked.step, len(config.chain(alert.ward).steps) - 1)].role, "name": "simulated"})
        answer_ms = acked_at + int(rng.expovariate(1.0 / model.mean_answer_s) * 1000)
        # Unanswered past its time, the desk calls the next responder before the answer comes.
        while (due := desk.next_ms.get(key)) is not None and due <= answer_ms:
            desk.due(due)
        true = verdicts.get(key) == "true"
        reason = ("physician_informed" if priority == "high" else "observations_increased") if true \
            else "expected_or_known"
        desk.control(key, {"type": "answer", "alert_id": key, "reason": reason, "at_ms": answer_ms},
                     {"user_id": "simulated", "role": "charge_nurse", "name": "simulated"}, answer_ms)
        desk.forget(key)
    counts, timings = desk.drain()
    by = {what: {p: [s for w, _, q, s in timings if w == what and q == p] for p in PRIORITIES}
          for what in ("ack", "answer")}
    escalations: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    for key_, count in counts.items():
        if key_[0] == "escalation":
            escalations[f"{key_[2]} ({key_[3]})"] += count
        elif key_[0] == "answer":
            answers[key_[3]] += count
    return {
        "alerts": counted,
        "time_to_acknowledge": {p: _quantiles(v) for p, v in by["ack"].items()},
        "time_to_answer": {p: _quantiles(v) for p, v in by["answer"].items()},
        "escalations_by_step": dict(sorted(escalations.items())),
        "answers_by_reason": dict(sorted(answers.items())),
        "model": {**dataclasses.asdict(model), "mean_ack_s": dict(model.mean_ack_s)},
        "chain": [step.role for step in config.chain("*").steps],
    }
