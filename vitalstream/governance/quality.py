"""Live quality monitoring: what a safety committee watches after go-live, as Prometheus
figures, aggregated and never per patient.

- alert burden: new clinical alerts per ward (``vitalstream_ward_alerts_total``) over the
  ward's monitored patients (``vitalstream_ward_patients``): alerts per patient-day;
- the same by age band and sex (``vitalstream_group_*``), for a bias audit;
- answers by reason code, marked ``no_action`` or ``action`` (the false-alarm share),
  and the share above which the rule fires (``vitalstream_false_alarm_share_limit``);
- data quality per parameter: samples and artefacts (counters), and the share of the
  monitored patients whose value is missing or stale (gauges);
- drift: PSI of the risk and of the vitals against the training reference (``drift.py``).

Counting happens at the batch's end (``observe``, a few C-level counts) and on a census
of the patients every ``census_interval_s`` (wall time), never in the per-reading loop.
"""

from __future__ import annotations

import logging
import operator
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from vitalstream.governance.drift import VARIABLES, DriftMonitor, load_reference
from vitalstream.samples import NUMERIC_PARAMETERS, R_ARTEFACT, R_PARAMETER

log = logging.getLogger("vitalstream.governance")

WARD_ALERTS = PromCounter("vitalstream_ward_alerts", "New clinical alerts (raised, escalated, reraised) by ward",
                          ["ward", "priority"])
WARD_PATIENTS = Gauge("vitalstream_ward_patients", "Patients with data in the last 30 min, by ward", ["ward"])
GROUP_ALERTS = PromCounter("vitalstream_group_alerts", "New clinical alerts by age band and sex", ["age_band", "sex"])
GROUP_PATIENTS = Gauge("vitalstream_group_patients", "Patients with data in the last 30 min by age band and sex",
                       ["age_band", "sex"])
ANSWERS = PromCounter("vitalstream_answers", "Answers to alerts by reason code; action: no_action or action",
                      ["code", "action"])
FALSE_ALARM_LIMIT = Gauge("vitalstream_false_alarm_share_limit",
                          "Share of no-action answers above which VitalstreamFalseAlarmShareHigh fires (a setting)")
PARAMETER_SAMPLES = PromCounter("vitalstream_parameter_samples", "Samples scored, by parameter", ["parameter"])
PARAMETER_ARTEFACTS = PromCounter("vitalstream_parameter_artefacts", "Samples flagged as artefact, by parameter",
                                  ["parameter"])
PARAMETER_MISSING = Gauge("vitalstream_parameter_missing_ratio",
                          "Share of monitored patients never measured for this parameter", ["parameter"])
PARAMETER_STALE = Gauge("vitalstream_parameter_stale_ratio",
                        "Share of monitored patients whose latest value is older than its NEWS2 window", ["parameter"])
DRIFT_PSI = Gauge("vitalstream_drift_psi", "Population stability index against the training reference "
                  "(NaN until enough observations)", ["variable"])
DRIFT_OBSERVATIONS = Gauge("vitalstream_drift_observations", "Values in the PSI window", ["variable"])

NEW_ALERT_STATUSES = frozenset({"raised", "escalated", "reraised"})
AGE_BANDS = ((18, 45, "18-44"), (45, 65, "45-64"), (65, 80, "65-79"), (80, 200, "80+"))
MAX_WARDS = 500  # ward labels beyond this many go to "other" (a bounded label set)
MAX_CODES = 40
_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PARAMETER, _ARTEFACT = operator.itemgetter(R_PARAMETER), operator.itemgetter(R_ARTEFACT)
for _name in NUMERIC_PARAMETERS:
    PARAMETER_SAMPLES.labels(_name)
    PARAMETER_ARTEFACTS.labels(_name)
WATCHED = (*NUMERIC_PARAMETERS, "consciousness")


def age_band(age_years: float | None) -> str:
    if age_years is None or age_years != age_years:
        return "unknown"
    return next((label for low, high, label in AGE_BANDS if low <= age_years < high), "under_18")


def sex_label(sex_male: bool | None) -> str:
    return "unknown" if sex_male is None else ("male" if sex_male else "female")


class LiveQuality:
    def __init__(self, settings: Any, model_path: str | None = None) -> None:
        self.census_interval_s = settings.drift_census_interval_s
        self.no_action = frozenset(c.strip() for c in settings.no_action_answer_codes.split(",") if c.strip())
        for code in self.no_action:
            ANSWERS.labels(code, "no_action")
        FALSE_ALARM_LIMIT.set(settings.false_alarm_share_limit)
        self.wards: set[str] = set()
        self.codes: set[str] = set()
        self.groups: set[tuple[str, str]] = set()
        self._census_s = 0.0
        self.drift: DriftMonitor | None = None
        path = settings.drift_reference_path or default_reference_path(model_path)
        try:
            references = {k: v for k, v in load_reference(path).items() if k in VARIABLES}
            self.drift = DriftMonitor(references, settings.drift_window_censuses, settings.drift_min_observations)
            for name in references:
                DRIFT_PSI.labels(name).set(float("nan"))
        except ValueError as exc:
            log.warning("drift monitoring off: %s", exc)

    def _ward(self, ward: str) -> str:
        if ward in self.wards or len(self.wards) < MAX_WARDS:
            self.wards.add(ward)
            return ward
        return "other"

    def observe(self, samples: list[Any]) -> None:
        """A settled batch's samples: counts per parameter and of artefacts."""
        for parameter, n in Counter(map(_PARAMETER, samples)).items():
            PARAMETER_SAMPLES.labels(parameter).inc(n)
        for parameter, n in Counter(map(_PARAMETER, filter(_ARTEFACT, samples))).items():
            PARAMETER_ARTEFACTS.labels(parameter).inc(n)

    def on_alerts(self, alerts: Iterable[Any], patients: Mapping[str, Any]) -> None:
        for alert in alerts:
            if alert.kind != "clinical" or alert.status not in NEW_ALERT_STATUSES:
                continue
            WARD_ALERTS.labels(self._ward(alert.ward), alert.priority).inc()
            record = patients.get(alert.patient_id)
            GROUP_ALERTS.labels(age_band(getattr(record, "age_years", None)),
                                sex_label(getattr(record, "sex_male", None))).inc()

    def on_answer(self, code: Any) -> None:
        code = str(code)
        if not _CODE.fullmatch(code) or (code not in self.codes and len(self.codes) >= MAX_CODES):
            code = "unlisted"
        self.codes.add(code)
        ANSWERS.labels(code, "no_action" if code in self.no_action else "action").inc()

    def census(self, monitor: Any, force: bool = False) -> bool:
        """Every ``census_interval_s``: patients by ward and group, missing and stale
        inputs, and one drift observation per patient with data in the last 30 min
        of device time (the newest patient's)."""
        now_s = time.monotonic()
        if not force and now_s - self._census_s < self.census_interval_s:
            return False
        self._census_s = now_s
        records = list(monitor.patients.values())
        newest_ms = max((r.newest_ms for r in records), default=0)
        window_ms = monitor.news2_window_ms
        current = [r for r in records if newest_ms - r.newest_ms <= window_ms]
        by_ward = Counter(self._ward(r.ward) for r in current)
        for ward in self.wards | set(by_ward):
            WARD_PATIENTS.labels(ward).set(by_ward.get(ward, 0))
        by_group = Counter((age_band(r.age_years), sex_label(r.sex_male)) for r in current)
        self.groups |= set(by_group)
        for band, sex in self.groups:
            GROUP_PATIENTS.labels(band, sex).set(by_group.get((band, sex), 0))
        n = len(current) or 1
        values: dict[str, list[float]] = {name: [] for name in VARIABLES}
        for parameter in WATCHED:
            limit_ms = monitor._window_of.get(parameter, window_ms)
            missing = stale = 0
            for record in current:
                item = record.latest.get(parameter)
                if item is None:
                    missing += 1
                elif record.newest_ms - item[1] > limit_ms:
                    stale += 1
                elif parameter in values:
                    values[parameter].append(float(item[0]))
            PARAMETER_MISSING.labels(parameter).set(missing / n if current else 0.0)
            PARAMETER_STALE.labels(parameter).set(stale / n if current else 0.0)
        for record in current:
            carry = record.risk_carry
            if carry is not None and len(carry) == 4 and isinstance(carry[0], float):
                values["risk"].append(carry[0])
        if self.drift is not None:
            self.drift.add(values)
            for name, value in self.drift.psi().items():
                DRIFT_PSI.labels(name).set(value)
                DRIFT_OBSERVATIONS.labels(name).set(self.drift.observations(name))
        return True


def default_reference_path(model_path: str | None) -> str:
    """``<model file without .skops>_reference.json``, beside the model."""
    from pathlib import Path

    if model_path:
        path = Path(model_path)
    else:
        path = Path(__file__).resolve().parents[2] / "models" / "sepsis_risk.skops"
    return str(path.with_name(path.stem + "_reference.json"))
