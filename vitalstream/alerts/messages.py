"""What goes into the alert policy (an Assessment) and what comes out (an Alert).

>>> from vitalstream.scoring.news2 import news2
>>> a = Assessment(patient_id="p1", ward="4B", bed="12", time_ms=0,
...                news2=news2({"resp_rate": 18}), observations={"resp_rate": (18.0, 0)},
...                features={})
>>> a.news2.total, a.stale
(0, [])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vitalstream.scoring.news2 import News2

PRIORITIES: tuple[str, ...] = ("low", "medium", "high")
PRIORITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(PRIORITIES, start=1)}


@dataclasses.dataclass(slots=True)
class Assessment:
    """One patient's scores after a batch that touched them; built by the monitor.

    ``observations`` maps each canonical parameter to its latest value within the NEWS2
    window and that value's own device time (ms). ``stale`` lists parameters that were
    measured before but not within the window, so the score left them out.
    """

    patient_id: str
    ward: str
    bed: str
    time_ms: int
    news2: News2
    observations: dict[str, tuple[Any, int]]
    features: Mapping[str, float]
    risk: float | None = None
    risk_ms: int | None = None  # device time the risk was computed at (it may be carried)
    model_version: str | None = None
    risk_factors: Sequence[tuple[str, float]] = ()
    stale: list[str] = dataclasses.field(default_factory=list)
    spo2_scale: int = 1
    # Finding the factors costs several model calls: the monitor leaves how to find them
    # here, and they are found only for an assessment that becomes an alert.
    explain: Callable[[], list[tuple[str, float]]] | None = None
    # The parameters whose latest value changed since the patient's previous assessment,
    # when the monitor knows it exactly (else None): the policy then updates what it
    # remembers of those only.
    changed: Sequence[str] | None = None
    # Whether the monitor publishes a bed state of this assessment (its compiled core
    # decides that as it makes the assessment: ``Monitor.bed_states`` shows these).
    bed_state: bool = False

    def factors(self) -> Sequence[tuple[str, float]]:
        if not self.risk_factors and self.explain is not None:
            self.risk_factors, self.explain = self.explain(), None
        return self.risk_factors


@dataclasses.dataclass(slots=True)
class Alert:
    """One message on the ``alerts`` topic.

    ``alert_id`` names one condition of one patient (an episode at one priority); its
    status changes (raised -> acknowledged -> resolved) keep the id, so ``event_id``
    (id and status) is what a subscriber uses to drop a redelivered message. A new alert
    for the same patient (escalation, acknowledgement expired) has a new id and names
    the one it replaces.
    """

    alert_id: str
    patient_id: str
    ward: str
    bed: str
    kind: str
    priority: str
    status: str
    summary: str
    device_time_ms: int
    payload: dict[str, Any]
    replaces: str | None = None
    # Set on the events a status can have more than once (oversight: each escalation
    # step, snooze, transfer): it tells them apart in the event id.
    event: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.alert_id}/{self.status}" + (f".{self.event}" if self.event else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "event_id": self.event_id,
            "patient_id": self.patient_id,
            "ward": self.ward,
            "bed": self.bed,
            "kind": self.kind,
            "priority": self.priority,
            "status": self.status,
            "summary": self.summary,
            "device_time_ms": self.device_time_ms,
            "replaces": self.replaces,
            "payload": self.payload,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Alert:
        return cls(**{field.name: record[field.name] for field in dataclasses.fields(cls)
                      if field.name in record})
