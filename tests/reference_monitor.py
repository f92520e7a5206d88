"""The test oracle: the monitor's per-reading path in Python, as it was before the
compiled core (vitalstream.monitor_kernel). Not a production path: tests/test_core_oracle.py
holds ``vitalstream.monitor.Monitor`` to the alerts, bed states and state this gives.

The per-patient monitor: the pure core between canonical samples and alerts.

No Kafka, no asyncio, no clock: the Faust app hands it batches of samples and control
records, and publishes what it returns. The same class runs in the worker, in replay
and in the tests.

For each batch it updates the latest value of every parameter, hands the numeric samples
to the feature engine in one call, scores NEWS2 from the latest value of each parameter
within its window, scores the risk model for the patients the batch touched, and asks
the alert policy what to publish.

NEWS2 windows: continuously monitored parameters (HR, RR, SpO2, diastolic BP) count
when measured within ``news2_window_s`` (30 min) of the patient's newest sample; the
parameters a ward charts at observation rounds (temperature, systolic BP, consciousness,
oxygen) count within ``round_window_s`` (4.5 h), so a 4-hourly round still makes a full
score. Every value keeps its own time, and alerts print it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import operator
import types
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vitalstream.alerts import Alert, AlertPolicy, Assessment, PatientAlertState
from vitalstream.samples import NUMERIC_PARAMETERS, PARAM_INDEX, SAMPLE_FIELDS, Sample, sample_row
from vitalstream.scoring.news2 import COMPONENTS, news2_cached

ROUND_PARAMETERS = frozenset({"temperature", "systolic_bp", "consciousness", "on_oxygen"})
# Device times an alert can show (1970 to the end of year 9999). Ingest refuses implausible
# times; one that slips through must not stop the batch it is in, for every patient in it.
SHOWABLE_TIME_MS = (0, 253_402_300_799_999)
NEWS2_INPUTS = COMPONENTS  # resp_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature
_N_COMPONENTS = len(COMPONENTS)
_COMPONENT_INDEX = {name: i for i, name in enumerate(COMPONENTS)}


def due(patient_id: str, last_ms: int, now_ms: int, interval_ms: int) -> bool:
    """Whether a periodic task (a feature snapshot, a risk) is due again: once each time
    device time crosses the patient's own boundary, every ``interval_ms`` at a phase drawn
    from the patient id. Patients admitted together do not all come due in the same batch
    (1,000 snapshots at once were an 80 ms stall), and it depends on times only, not on
    how readings were batched. At most one interval (plus a reading gap) apart."""
    if interval_ms <= 0 or last_ms < 0:
        return True
    phase = _phase(patient_id) % interval_ms
    return (now_ms + phase) // interval_ms != (last_ms + phase) // interval_ms


def next_due(patient_id: str, last_ms: int, interval_ms: int) -> int:
    """The device time from which ``due(patient_id, last_ms, now_ms, interval_ms)`` is
    true, for ``now_ms >= last_ms``: one comparison per check instead of ``due``'s work."""
    if interval_ms <= 0:
        return last_ms
    phase = _phase(patient_id) % interval_ms
    return ((last_ms + phase) // interval_ms + 1) * interval_ms - phase


@functools.lru_cache(maxsize=65536)
def _phase(patient_id: str) -> int:
    return zlib.crc32(patient_id.encode())


# A sample row's fields (``vitalstream.samples.SAMPLE_FIELDS``), as the vitals topic carries them.
R_PATIENT, R_TIME = SAMPLE_FIELDS.index("patient_id"), SAMPLE_FIELDS.index("device_time_ms")
_TIME_OF = operator.itemgetter(R_TIME)
_NUMERIC_INDEX = {name: PARAM_INDEX[name] for name in NUMERIC_PARAMETERS}
_SCORE = object()  # an assessment whose risk the model computes (``_process_wave``)
_NO_FEATURES: Mapping[str, float] = types.MappingProxyType({})  # an assessment's, until a row is wanted


class FeatureRow(Mapping[str, float]):
    """One patient's feature vector read by name, without building a dict of hundreds of
    entries per assessment: most assessments raise nothing and read none of them."""

    __slots__ = ("_index", "_row")

    def __init__(self, index: dict[str, int], row: np.ndarray) -> None:
        self._index = index
        self._row = row

    def __getitem__(self, name: str) -> float:
        return float(self._row[self._index[name]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def row(self) -> np.ndarray:
        return self._row


@dataclasses.dataclass(slots=True)
class PatientRecord:
    """What the monitor remembers of one patient besides the feature engine's buffers."""

    patient_id: str
    ward: str
    bed: str
    first_seen_ms: int
    newest_ms: int
    latest: dict[str, tuple[Any, int]]
    spo2_scale: int
    alert_state: PatientAlertState
    age_years: float | None = None
    sex_male: bool | None = None
    engine_saved_ms: int = -(2**62)
    bed_state_shown: tuple[Any, ...] = ()
    saved_ms: int = -(2**62)
    unsaved_round: bool = False  # a round-charted value arrived since the last save
    risk_due_ms: int = -(2**62)  # device time from which the next risk is due (``next_due``)
    risk_carry: tuple[Any, ...] | None = None  # (risk, its time, model version, explain) of that one
    bed_state_ms: int = -(2**62)
    # For ``Monitor.assess``: the NEWS2 inputs in chart order, and the device time until
    # which every value in ``latest`` stays inside its window (not kept: recomputed).
    news2_values: list[Any] = dataclasses.field(default_factory=lambda: [None] * _N_COMPONENTS)
    in_window_until_ms: int = -(2**62)
    # Parameters whose latest value changed since the last assessment, and whether that
    # list is exact (not after a restore, or a batch whose assessments were not all assessed).
    changed: list[str] = dataclasses.field(default_factory=list)
    changed_exact: bool = False
    # The (shown, device time) of the last bed state an assessment since the last
    # ``bed_states`` is expected to publish, if any (not kept): see ``_expects_bed_state``.
    bed_state_expected: tuple[tuple[Any, ...], int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.for_orjson(), "latest": {k: [v, t] for k, (v, t) in self.latest.items()},
                "alert_state": self.alert_state.to_dict()}

    def for_orjson(self) -> dict[str, Any]:
        """``to_dict`` as orjson serialises it, without building it: orjson writes the
        policy's dataclasses and the tuples of ``latest`` as ``to_dict`` has them (tested),
        in a sixth of the time. Read-only: it shares the record's own objects."""
        return {
            "patient_id": self.patient_id, "ward": self.ward, "bed": self.bed,
            "first_seen_ms": self.first_seen_ms, "newest_ms": self.newest_ms,
            "latest": self.latest, "spo2_scale": self.spo2_scale, "alert_state": self.alert_state,
            "age_years": self.age_years, "sex_male": self.sex_male,
        }


@dataclasses.dataclass(slots=True)
class MonitorResult:
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    assessments: list[Assessment] = dataclasses.field(default_factory=list)
    touched: list[str] = dataclasses.field(default_factory=list)
    samples: int = 0
    # Patients whose assessments the policy failed on (a fault in vitalstream), with the
    # error's name: their other assessments of the batch are skipped, nobody else's.
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


class ReferenceMonitor:
    """Per-patient state and scoring for the patients of one worker.

        monitor = Monitor(AlertPolicy())
        result = monitor.process(samples)   # -> alerts to publish
    """

    def __init__(self, policy: AlertPolicy, engine: Any | None = None, model: Any | None = None,
                 news2_window_s: float = 1800.0, round_window_s: float = 16200.0,
                 resolution_s: float = 1.0, snapshot_interval_s: float = 60.0,
                 risk_interval_s: float = 60.0, bed_state_interval_s: float = 60.0) -> None:
        self.policy = policy
        self.engine = engine
        self.model = model
        self.news2_window_ms = int(news2_window_s * 1000)
        self.round_window_ms = int(round_window_s * 1000)
        self.resolution_ms = max(1, int(resolution_s * 1000))
        self.snapshot_interval_ms = int(snapshot_interval_s * 1000)
        self.risk_interval_ms = int(risk_interval_s * 1000)
        self.bed_state_interval_ms = int(bed_state_interval_s * 1000)
        self.patients: dict[str, PatientRecord] = {}
        # The kill switch (vitalstream.governance.killswitch): (model off by default, wards
        # that differ from the default). A ward with the model off is scored NEWS2-only.
        self.model_off: tuple[bool, frozenset[str]] = (False, frozenset())
        # Shadow mode: called with the (assessment, record) pairs the model scored and
        # their input rows, so a candidate model scores the same rows (governance/shadow.py).
        self.on_risk: Callable[[Any, Any], None] | None = None
        self.dropped_bad_time = 0  # samples and technical events outside SHOWABLE_TIME_MS
        # Each NEWS2 input (and diastolic BP, shown beside them) with the window it counts in.
        self._windows = tuple((p, self.round_window_ms if p in ROUND_PARAMETERS else self.news2_window_ms)
                              for p in (*NEWS2_INPUTS, "diastolic_bp"))
        self._window_of = dict(self._windows)
        self._feature_index: dict[str, int] = (
            {name: i for i, name in enumerate(engine.feature_names)} if engine is not None else {})

    # -- state -------------------------------------------------------------------------
    def record_for(self, sample: Sample) -> PatientRecord:
        return self.patients.get(sample.patient_id) or self._admit(
            sample.patient_id, sample.ward, sample.bed, sample.device_time_ms)

    def _admit(self, patient_id: str, ward: str, bed: str, time_ms: int) -> PatientRecord:
        record = self.patients[patient_id] = PatientRecord(
            patient_id=patient_id, ward=ward, bed=bed, first_seen_ms=time_ms, newest_ms=time_ms,
            latest={}, spo2_scale=1, alert_state=self.policy.new_state(),
        )
        return record

    def export(self, patient_id: str, engine: bool = True) -> dict[str, Any]:
        """One patient's state as a JSON-able dict (for the patients changelog).

        With ``engine``, it includes a snapshot of the feature engine's buffers (base64).
        The worker passes ``engine=False`` and saves the buffers apart, with
        ``snapshot_due``: they are most of the bytes and change the features little in a
        minute, so they are written at most once per ``snapshot_interval_ms`` of device
        time. A restarted worker then lacks at most that much feature history; NEWS2
        inputs and alert state are always current."""
        state = self.patients[patient_id].to_dict()
        if engine and self.engine is not None:
            state["engine"] = base64.b64encode(self._snapshot(patient_id)).decode()
        return state

    def snapshot_due(self, patient_id: str) -> bytes | None:
        """The feature engine's buffers of the patient, uncompressed, if a snapshot is
        due; ``pack_snapshot`` of them is the snapshot ``restore_engine`` takes."""
        record = self.patients[patient_id]
        if self.engine is None or not due(patient_id, record.engine_saved_ms, record.newest_ms,
                                          self.snapshot_interval_ms):
            return None
        record.engine_saved_ms = record.newest_ms
        # A patient known so far only from settings or a technical event has no buffers
        # yet: give them their (empty) ones rather than fail the whole batch's save.
        self.engine.slot_for(patient_id)
        return self.engine.snapshot_body(patient_id)

    def pack_snapshot(self, body: bytes) -> bytes:
        """Compress ``snapshot_due``'s bytes; safe to call from another thread."""
        assert self.engine is not None
        return self.engine.pack(body)

    def _snapshot(self, patient_id: str) -> bytes:
        assert self.engine is not None
        self.engine.slot_for(patient_id)  # (as in snapshot_due)
        return self.engine.snapshot(patient_id)

    def restore(self, state: dict[str, Any]) -> None:
        """Recreate a patient from ``export``'s dict (a restarted worker)."""
        record = PatientRecord(
            patient_id=state["patient_id"], ward=state["ward"], bed=state["bed"],
            first_seen_ms=state["first_seen_ms"], newest_ms=state["newest_ms"],
            latest={k: (v, t) for k, (v, t) in state["latest"].items()},
            spo2_scale=state["spo2_scale"],
            alert_state=PatientAlertState.from_dict(state["alert_state"]),
            age_years=state.get("age_years"), sex_male=state.get("sex_male"),
            engine_saved_ms=state["newest_ms"],
        )
        self.patients[record.patient_id] = record
        if state.get("engine"):
            self.restore_engine(record.patient_id, base64.b64decode(state["engine"]))

    def restore_engine(self, patient_id: str, snapshot: bytes) -> None:
        """Put back a patient's feature buffers from ``snapshot_due``'s bytes."""
        if self.engine is not None and patient_id in self.patients:
            self.engine.restore(patient_id, snapshot)

    def discharge(self, patient_id: str) -> None:
        self.patients.pop(patient_id, None)
        if self.engine is not None:
            self.engine.discharge(patient_id)

    # -- scoring -----------------------------------------------------------------------
    def process(self, samples: Sequence[Sample]) -> MonitorResult:
        """Take one batch of samples (any patients, any order) and return what to publish;
        ``process_rows`` of their rows."""
        return self.process_rows([sample_row(s) for s in samples])

    def process_rows(self, rows: Sequence[Sequence[Any]]) -> MonitorResult:
        """Take one batch of sample rows (``SAMPLE_FIELDS`` order, as the vitals topic
        carries them) and return what to publish.

        The batch is cut into waves by device time: wave k holds each patient's k-th
        reading time (to ``resolution_ms``). Each wave is one call into the feature engine
        and one assessment per patient in it, so a patient is assessed at every reading
        time whether the readings arrived in one batch (a fast replay) or many (live): the
        alerts do not depend on how the broker happened to batch them. The risk model
        then scores the rows of all waves in one call, and the policy sees the
        assessments in time order.

        An assessment gets its feature row only if something may read it: the risk model,
        an alert's payload (the policy may leave its short path) or a bed state
        (``_expects_bed_state``). Most assessments of a quiet ward need none, and the rows
        (234 features) were most of the feature engine's time.

        Whether the policy's short path applies (``AlertPolicy.quiet``) is decided once per
        assessment, as it is made. That is exact while the patient's assessments of the
        batch stay on the short path (which changes nothing ``quiet`` reads); from the first
        that may not, each later one of the batch goes through ``AlertPolicy.assess`` whole.
        """
        result = MonitorResult(samples=len(rows))
        rows = self._showable(rows)
        touched: dict[str, None] = {}
        unquiet: set[str] = set()  # patients the policy may take off its short path in this batch
        pending: list[tuple[Assessment, PatientRecord, Any, bool]] = []
        try:
            for wave in self._waves(rows):
                pending.extend(self._process_wave(wave, touched, unquiet))
            self._score_risk(pending)
        except BaseException:
            # These assessments never reach the policy: the next ones are not relative to them.
            for patient_id in touched:
                record = self.patients.get(patient_id)
                if record is not None:
                    record.changed_exact = False
                    record.bed_state_expected = None  # (bed_states will not see these assessments)
                    if record.risk_carry is not None and len(record.risk_carry) == 1:
                        record.risk_carry = None  # chosen, never scored: the next assessment scores it
            raise
        assess, remember = self.policy.assess, self.policy.remember_quiet
        failed = result.failed
        assessments, alerts = result.assessments, result.alerts
        for assessment, record, _, quiet in pending:
            if failed and assessment.patient_id in failed:
                continue
            try:
                raised = remember(record.alert_state, assessment) if quiet else \
                    assess(record.alert_state, assessment)
            except Exception as exc:  # a fault in the policy must not silence the other patients
                failed[assessment.patient_id] = type(exc).__name__
                record.changed_exact = False  # its later assessments of the batch are skipped
                continue
            assessments.append(assessment)
            if raised:
                alerts.extend(raised)
        result.touched = list(touched)
        return result

    def _showable(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        low, high = SHOWABLE_TIME_MS
        if not rows or (low <= min(map(_TIME_OF, rows)) and max(map(_TIME_OF, rows)) <= high):
            return rows
        kept = [r for r in rows if low <= r[R_TIME] <= high]
        self.dropped_bad_time += len(rows) - len(kept)
        return kept

    def _waves(self, rows: Sequence[Sequence[Any]]) -> list[list[Sequence[Any]]]:
        """The batch's waves: wave k holds each patient's readings of their k-th reading
        time. One pass while each patient's readings come in time order (as they do, on
        the patient's partition); otherwise ``_waves_sorted``. The same readings go to the
        same waves either way, each patient's in arrival order (a test checks this)."""
        resolution = self.resolution_ms
        seen: dict[str, tuple[int, int]] = {}  # patient -> (their latest reading time, its wave)
        waves: list[list[Sequence[Any]]] = []
        for row in rows:
            patient_id = row[R_PATIENT]
            moment = row[R_TIME] // resolution
            last = seen.get(patient_id)
            if last is None:
                wave = 0
            elif moment == last[0]:
                wave = last[1]
            elif moment > last[0]:
                wave = last[1] + 1
            else:
                return self._waves_sorted(rows)
            seen[patient_id] = (moment, wave)
            if wave == len(waves):
                waves.append([row])
            else:
                waves[wave].append(row)
        return waves

    def _waves_sorted(self, rows: Sequence[Sequence[Any]]) -> list[list[Sequence[Any]]]:
        resolution = self.resolution_ms
        by_patient: dict[str, dict[int, list[Sequence[Any]]]] = {}
        for row in rows:
            times = by_patient.get(row[R_PATIENT])
            if times is None:
                times = by_patient[row[R_PATIENT]] = {}
            moment = row[R_TIME] // resolution
            readings = times.get(moment)
            if readings is None:
                times[moment] = [row]
            else:
                readings.append(row)
        readings = [[times[t] for t in sorted(times)] for times in by_patient.values()]
        depth = max((len(r) for r in readings), default=0)
        return [[row for r in readings if k < len(r) for row in r[k]] for k in range(depth)]

    def _process_wave(self, rows: list[Sequence[Any]], touched_in_batch: dict[str, None],
                      unquiet: set[str]) -> list[tuple[Assessment, PatientRecord, Any, bool]]:
        """One wave: take its readings in, assess each patient once, and choose whose risk
        is computed. Returns (assessment, record, risk source, quiet) per patient; the risk
        source is ``None`` with no feature data in the wave (no risk), ``_SCORE`` to
        compute, else the carried one; ``quiet`` says the policy's short path applies."""
        touched: dict[str, PatientRecord] = {}
        numeric: dict[str, int] = {}  # patients with feature-engine readings: their slots
        patients, engine, window_of = self.patients, self.engine, self._window_of
        slots: list[int] = []
        params: list[int] = []
        times: list[int] = []
        values: list[float] = []
        for row in rows:
            # Unpacked whole (SAMPLE_FIELDS order, as a test checks): faster than indexing.
            patient_id, ward, bed, parameter, value, _, time_ms, _, _, _, artefact = row
            record = patients.get(patient_id)
            if record is None:
                record = self._admit(patient_id, ward, bed, time_ms)
            touched[patient_id] = record
            if ward:
                record.ward, record.bed = ward, bed
            if parameter == "spo2_scale":
                record.spo2_scale = int(value)
                continue
            if artefact or parameter not in window_of:  # (ingest passes no other parameter)
                continue
            current = record.latest.get(parameter)
            if current is None or time_ms >= current[1]:
                record.latest[parameter] = (value, time_ms)
                record.changed.append(parameter)
                if parameter in ROUND_PARAMETERS:
                    record.unsaved_round = True
                component = _COMPONENT_INDEX.get(parameter)
                if component is not None:
                    record.news2_values[component] = value
                until_ms = time_ms + window_of[parameter]
                if until_ms < record.in_window_until_ms:
                    record.in_window_until_ms = until_ms
            if time_ms > record.newest_ms:
                record.newest_ms = time_ms
            if engine is not None:
                index = _NUMERIC_INDEX.get(parameter)
                if index is not None:
                    slot = numeric.get(patient_id)
                    if slot is None:
                        slot = numeric[patient_id] = engine.slot_for(patient_id)
                    slots.append(slot)
                    params.append(index)
                    times.append(time_ms)
                    values.append(value)
        touched_in_batch.update(dict.fromkeys(touched))
        if slots:
            assert engine is not None
            engine.add(np.array(slots, dtype=np.int64), np.array(params, dtype=np.int64),
                       np.array(times, dtype=np.float64) / 1000.0, np.array(values, dtype=np.float64))
        assess, expects_bed_state, model = self.assess, self._expects_bed_state, self.model
        off_default, off_wards = self.model_off
        if off_default and not off_wards:
            model = None
        is_quiet = self.policy.quiet
        risk_alerts = bool(self.policy.config.risk_thresholds)  # then risk may raise: never quiet
        interval_ms = self.risk_interval_ms
        out: list[tuple[Assessment, PatientRecord, Any, bool]] = []
        wanted_slots: list[int] = []
        wanting: list[Assessment] = []
        for patient_id, record in touched.items():
            assessment = assess(record)
            slot = numeric.get(patient_id)
            source: Any = None
            if slot is not None and model is not None and not (
                    off_wards and (record.ward in off_wards) != off_default):
                # Chosen in wave order, as the assessments are made: at most once per
                # interval of device time, whatever the batching (``due``).
                # (a patient's assessment times never go back: newest_ms only grows)
                if record.risk_carry is None or assessment.time_ms >= record.risk_due_ms:
                    record.risk_due_ms = next_due(patient_id, assessment.time_ms, interval_ms)
                    record.risk_carry = (assessment,)
                    source = _SCORE
                else:
                    source = record.risk_carry
            quiet = not risk_alerts and patient_id not in unquiet and is_quiet(record.alert_state, assessment.news2)
            if not quiet:
                unquiet.add(patient_id)  # its later assessments of the batch too: the policy's state moves on
            bed_state = expects_bed_state(record, assessment)  # (asked of each: it keeps in step)
            if slot is not None and (source is _SCORE or not quiet or bed_state):
                wanted_slots.append(slot)
                wanting.append(assessment)
            out.append((assessment, record, source, quiet))
        if wanting:
            assert engine is not None
            index = self._feature_index
            rows_of = engine.features_of(np.array(wanted_slots, dtype=np.int64))
            for assessment, feature_row in zip(wanting, rows_of, strict=True):
                assessment.features = FeatureRow(index, feature_row)
        return out

    def _expects_bed_state(self, record: PatientRecord, assessment: Assessment) -> bool:
        """Whether ``bed_states``, called with the batch's assessments in order (as the
        stage does), will publish a bed state of this one: its own test, against the bed
        state it will have published by then. Asked of every assessment, in order."""
        shown = self._bed_state_shown(assessment, *(record.bed_state_expected
                                                    or (record.bed_state_shown, record.bed_state_ms)))
        if shown is None:
            return False
        record.bed_state_expected = (shown, assessment.time_ms)
        return True

    def _bed_state_shown(self, assessment: Assessment, shown_before: tuple[Any, ...],
                         shown_ms: int) -> tuple[Any, ...] | None:
        """What a bed state of this assessment shows (NEWS2 total, band, stale inputs), if
        it is published after one that showed ``shown_before`` at ``shown_ms``: when that
        changed, or ``bed_state_interval_ms`` of device time passed. Else None."""
        shown = (assessment.news2.total, assessment.news2.band, tuple(assessment.stale))
        if shown == shown_before and assessment.time_ms - shown_ms < self.bed_state_interval_ms:
            return None
        return shown

    def _score_risk(self, pending: list[tuple[Assessment, PatientRecord, Any, bool]]) -> None:
        """Fill in the model's risk of the assessments chosen in ``_process_wave``, in one
        call; the assessments in between carry the last one computed, with its time."""
        if self.model is None:
            return
        chosen = [(assessment, record) for assessment, record, source, _ in pending if source is _SCORE]
        if chosen:
            rows = self.model.input_row(
                np.vstack([a.features.row for a, _ in chosen]),
                np.array([np.nan if r.age_years is None else r.age_years for _, r in chosen]),
                np.array([np.nan if r.sex_male is None else float(r.sex_male) for _, r in chosen]),
                np.array([(a.time_ms - r.first_seen_ms) / 3.6e6 for a, r in chosen]),
            )
            probabilities = self.model.predict_proba(rows)
            if self.on_risk is not None:
                self.on_risk(chosen, rows)
            for (assessment, record), row, probability in zip(chosen, rows, probabilities, strict=True):
                assessment.risk, assessment.risk_ms = float(probability), assessment.time_ms
                assessment.model_version = self.model.version
                # Factors cost several model calls: found only if an alert shows them.
                assessment.explain = functools.partial(self.model.explain, row)
                if record.risk_carry and record.risk_carry[0] is assessment:
                    record.risk_carry = (assessment.risk, assessment.risk_ms, assessment.model_version,
                                         assessment.explain)
        for assessment, _, source, _ in pending:
            if source is None or source is _SCORE:
                continue
            if len(source) == 1:  # computed in this batch: read it off that assessment
                first = source[0]
                source = (first.risk, first.risk_ms, first.model_version, first.explain)
            assessment.risk, assessment.risk_ms, assessment.model_version, assessment.explain = source

    def assess(self, record: PatientRecord) -> Assessment:
        """The patient's assessment at their newest reading time; its feature row, if
        wanted, is filled in by ``_process_wave``."""
        now_ms = record.newest_ms
        latest = record.latest
        if now_ms <= record.in_window_until_ms:
            # Every value is inside its window (the common case): nothing to leave out.
            observations = dict(latest)
            stale: list[str] = []
            key = (record.spo2_scale, *record.news2_values)
        else:
            observations = {}
            stale = []
            values: list[Any] = []
            until_ms = 2**62
            for parameter, window_ms in self._windows:
                item = latest.get(parameter)
                if item is not None and now_ms - item[1] <= window_ms:
                    observations[parameter] = item
                    values.append(item[0])
                    until_ms = min(until_ms, item[1] + window_ms)
                else:
                    if item is not None:
                        stale.append(parameter)
                    values.append(None)
            record.news2_values = values[:_N_COMPONENTS]
            # With a value out of its window, the next assessment checks every window again.
            record.in_window_until_ms = -(2**62) if stale else until_ms
            key = (record.spo2_scale, *record.news2_values)
        changed = record.changed if record.changed_exact else None
        record.changed, record.changed_exact = [], True  # (a new list: the assessment keeps this one)
        # Positional, in the field order of Assessment: keywords took twice as long (0.6 µs
        # of an assessment's 1.3). Names: patient_id, ward, bed, time_ms, news2,
        # observations, features, risk, risk_ms, model_version, risk_factors, stale,
        # spo2_scale, explain, changed.
        return Assessment(record.patient_id, record.ward, record.bed, now_ms,
                          news2_cached(observations, record.spo2_scale, key), observations,
                          _NO_FEATURES, None, None, None, (), stale, record.spo2_scale, None, changed)

    # -- bed state for the ward board ----------------------------------------------------
    def bed_states(self, assessments: Sequence[Assessment]) -> list[dict[str, Any]]:
        """Bed states for nursing stations: NEWS2 with its components, values with their
        times, 2 h trends, risk and stale inputs. At most one per patient per
        ``bed_state_interval_ms`` of device time, and one for every change of the NEWS2
        total, band or stale inputs."""
        states = []
        # Every assessment, in time order: a NEWS2 that rose and fell inside one batch (a
        # fast replay) still reaches the board and the validation report.
        for assessment in assessments:
            patient_id = assessment.patient_id
            record = self.patients.get(patient_id)
            if record is None:
                continue
            record.bed_state_expected = None
            shown = self._bed_state_shown(assessment, record.bed_state_shown, record.bed_state_ms)
            if shown is None:
                continue
            record.bed_state_shown, record.bed_state_ms = shown, assessment.time_ms
            trends = {}
            for parameter in NUMERIC_PARAMETERS:
                slope = assessment.features.get(f"{parameter}_slope_per_h_2h") if assessment.features else None
                if slope is not None and np.isfinite(slope):
                    trends[parameter] = round(float(slope), 2)
            states.append({
                "patient_id": patient_id, "ward": assessment.ward, "bed": assessment.bed,
                "time_ms": assessment.time_ms, "news2": assessment.news2.to_dict(),
                "observations": {k: {"value": v, "time_ms": t} for k, (v, t) in assessment.observations.items()},
                "trends_per_h": trends, "risk": assessment.risk, "model_version": assessment.model_version,
                "risk_shown": bool(assessment.risk is not None and self.model is not None
                                   and assessment.risk >= self.model.show_from),
                "stale": list(assessment.stale), "spo2_scale": assessment.spo2_scale,
            })
        return states

    # -- control -----------------------------------------------------------------------
    def acknowledge(self, patient_id: str, alert_id: str, by: str, at_ms: int,
                    actor: dict[str, str] | None = None) -> list[Alert]:
        record = self.patients.get(patient_id)
        if record is None:
            return []
        return self.policy.acknowledge(record.alert_state, alert_id, by, at_ms, actor)

    def configure(self, patient_id: str, record: dict[str, Any], ward: str = "", bed: str = "") -> None:
        """Apply a clinician's per-patient settings record (audited by the policy).

        Settings may arrive before the patient's first reading (set at admission), so an
        unknown patient is created. Raises ``SettingsError`` for an invalid record."""
        patient = self.patients.get(patient_id)
        if patient is None:
            patient = self.record_for(Sample(patient_id=patient_id, ward=ward, bed=bed,
                                             parameter="spo2_scale", value=1, unit="scale",
                                             device_time_ms=int(record.get("set_at_ms", 0)),
                                             source="settings", ingest_time_ms=0))
        settings = self.policy.configure(patient.alert_state, record)
        if settings.spo2_scale:
            patient.spo2_scale = int(settings.spo2_scale)

    def technical(self, events: Iterable[dict[str, Any]]) -> list[Alert]:
        alerts: list[Alert] = []
        for event in events:
            time_ms = event.get("device_time_ms", 0)
            if not isinstance(time_ms, int) or not SHOWABLE_TIME_MS[0] <= time_ms <= SHOWABLE_TIME_MS[1]:
                self.dropped_bad_time += 1
                continue
            record = self.patients.get(str(event.get("patient_id", "")))
            if record is None:
                # A probe can fall off before the first reading arrives: still report it.
                record = self.record_for(Sample(
                    patient_id=str(event.get("patient_id", "")), ward=str(event.get("ward", "")),
                    bed=str(event.get("bed", "")), parameter="spo2_scale", value=1, unit="scale",
                    device_time_ms=int(event.get("device_time_ms", 0)), source="technical",
                    ingest_time_ms=0))
            alerts.extend(self.policy.technical(record.alert_state, event))
        return alerts

    def check_stale(self, now_ms: int | Callable[[str], int]) -> list[Alert]:
        """Technical "no data" alerts as of device time ``now_ms``, one number or per
        patient (the worker keeps a clock per partition)."""
        alerts: list[Alert] = []
        for patient_id, record in self.patients.items():
            now = now_ms(patient_id) if callable(now_ms) else now_ms
            alerts.extend(self.policy.check_stale(record.alert_state, now))
        return alerts

    def stale_patients(self) -> int:
        return sum(1 for r in self.patients.values()
                   if any(r.newest_ms - t > (self.round_window_ms if p in ROUND_PARAMETERS
                                              else self.news2_window_ms)
                          for p, (_, t) in r.latest.items()))
