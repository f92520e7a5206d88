"""The per-patient monitor: the pure core between canonical samples and alerts.

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
import itertools
import operator
import types
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vitalstream import monitor_kernel as K
from vitalstream.alerts import Alert, AlertPolicy, Assessment, PatientAlertState
from vitalstream.samples import (
    ACVPU,
    NUMERIC_PARAMETERS,
    PARAM_INDEX,
    R_TIME,
    Sample,
    sample_row,
)
from vitalstream.scoring.news2 import COMPONENTS, news2_cached

ROUND_PARAMETERS = frozenset({"temperature", "systolic_bp", "consciousness", "on_oxygen"})
# Device times an alert can show (1970 to the end of year 9999). Ingest refuses implausible
# times; one that slips through must not stop the batch it is in, for every patient in it.
SHOWABLE_TIME_MS = (0, 253_402_300_799_999)
NEWS2_INPUTS = COMPONENTS  # resp_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature


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
_TIME_OF = operator.itemgetter(R_TIME)
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


_WINDOWED = K.WINDOWED
_CODE_OF = {**{name: j for j, name in enumerate(_WINDOWED)}, "spo2_scale": K.P_SCALE}
_NUMERIC_CODES = np.array([name in NUMERIC_PARAMETERS for name in _WINDOWED], dtype=np.bool_)
_ENGINE_INDEX = np.array([PARAM_INDEX[name] if name in NUMERIC_PARAMETERS else -1 for name in _WINDOWED],
                         dtype=np.int64)
_ACVPU_CODE = {letter: float(i) for i, letter in enumerate(ACVPU)}
_BANDS = ("low", "low-medium", "medium", "high")
_ABSENT = int(K.ABSENT)


def _encode(value: Any) -> float:
    """A row's value as the core's arrays keep it: consciousness as its ACVPU index."""
    if isinstance(value, str):
        return _ACVPU_CODE[value]
    return float(value)


def _decode(j: int, value: float) -> Any:
    name = _WINDOWED[j]
    if name == "consciousness":
        return ACVPU[int(value)]
    if name == "on_oxygen":
        return bool(value != 0.0)
    return float(value)


class PatientState:
    """The per-patient arrays of the compiled core, by the monitor's slot of the patient
    (see ``vitalstream.monitor_kernel``). Capacity doubles when full."""

    SHAPES: dict[str, tuple[tuple[int, ...], Any, Any]] = {
        # monitor state
        "lat_v": ((K.N_WINDOWED,), np.float64, 0.0), "lat_t": ((K.N_WINDOWED,), np.int64, _ABSENT),
        "newest": ((), np.int64, 0), "scale": ((), np.int64, 1), "unsaved_round": ((), np.int8, 0),
        # the policy's memory of quiet assessments
        "seen": ((K.N_WINDOWED,), np.int64, _ABSENT), "gap": ((K.N_WINDOWED,), np.int64, _ABSENT),
        "news2_t": ((), np.int64, _ABSENT), "news2_total": ((), np.int64, 0), "state_t": ((), np.int64, 0),
        "hist_t": ((K.HISTORY,), np.int64, 0), "hist_s": ((K.HISTORY,), np.int64, 0), "hist_n": ((), np.int64, 0),
        "rh_t": ((K.RISK_HISTORY,), np.int64, 0), "rh_v": ((K.RISK_HISTORY,), np.float64, 0.0),
        "rh_n": ((), np.int64, 0), "dirty": ((), np.int8, 0),
        # decisions
        "active": ((), np.int8, 0), "below": ((), np.int64, 0),
        "shown_total": ((), np.int64, -1), "shown_band": ((), np.int64, -1), "shown_stale": ((), np.int64, -1),
        "shown_ms": ((), np.int64, _ABSENT), "risk_due": ((), np.int64, _ABSENT), "has_carry": ((), np.int8, 0),
        "carry_risk": ((), np.float64, np.nan), "phase": ((), np.int64, 0), "last_ref": ((), np.int64, -1),
        "model_on": ((), np.int8, 1), "eslot": ((), np.int64, -1),
        # scratch (zero between batches)
        "stamp": ((), np.int64, 0), "fed": ((), np.int8, 0), "unquiet": ((), np.int8, 0),
        "w_moment": ((), np.int64, 0), "w_wave": ((), np.int64, 0), "w_seen": ((), np.int8, 0),
    }

    def __init__(self, capacity: int = 1024) -> None:
        self.a: dict[str, np.ndarray] = {name: np.empty((capacity, *shape), dtype=dtype)
                                         for name, (shape, dtype, _) in self.SHAPES.items()}
        self.free: list[int] = []
        self.next = 0

    @property
    def capacity(self) -> int:
        return self.a["newest"].shape[0]

    def take(self) -> int:
        if self.free:
            slot = self.free.pop()
        else:
            if self.next == self.capacity:
                grown = {}
                for name, array in self.a.items():
                    grown[name] = np.empty((2 * self.capacity, *array.shape[1:]), dtype=array.dtype)
                    grown[name][:self.capacity] = array
                self.a = grown
            slot = self.next
            self.next += 1
        for name, (_, _, initial) in self.SHAPES.items():
            self.a[name][slot] = initial
        return slot

    def give_back(self, slot: int) -> None:
        self.free.append(slot)


class PatientRecord:
    """What the monitor remembers of one patient: Python fields, and the core's arrays
    (``PatientState``) read by name. ``alert_state`` is the policy's state, its memory of
    the quiet assessments brought in from the arrays when Python reads it."""

    __slots__ = ("patient_id", "_ward", "_bed", "first_seen_ms", "age_years", "sex_male", "engine_saved_ms",
                 "saved_ms", "risk_carry", "slot", "_state", "_alert_state", "_monitor")

    def __init__(self, monitor: Monitor, slot: int, patient_id: str, ward: str, bed: str,
                 first_seen_ms: int, alert_state: PatientAlertState) -> None:
        self._monitor, self.slot = monitor, slot
        self._state = monitor._state
        self.patient_id, self.first_seen_ms = patient_id, first_seen_ms
        self._ward, self._bed = ward, bed
        monitor._placed[patient_id] = (ward, bed)
        self.age_years: float | None = None
        self.sex_male: bool | None = None
        self.engine_saved_ms = -(2**62)
        self.saved_ms = -(2**62)
        self.risk_carry: tuple[Any, ...] | None = None  # (risk, its time, model version, explain)
        self._alert_state = alert_state

    @property
    def ward(self) -> str:
        return self._ward

    @ward.setter
    def ward(self, ward: str) -> None:
        self._ward = ward
        self._monitor._placed[self.patient_id] = (ward, self._bed)

    @property
    def bed(self) -> str:
        return self._bed

    @bed.setter
    def bed(self, bed: str) -> None:
        self._bed = bed
        self._monitor._placed[self.patient_id] = (self._ward, bed)

    def _get(self, name: str) -> Any:
        return self._state.a[name][self.slot]

    @property
    def newest_ms(self) -> int:
        return int(self._get("newest"))

    @newest_ms.setter
    def newest_ms(self, value: int) -> None:
        self._state.a["newest"][self.slot] = value

    @property
    def spo2_scale(self) -> int:
        return int(self._get("scale"))

    @spo2_scale.setter
    def spo2_scale(self, value: int) -> None:
        self._state.a["scale"][self.slot] = int(value)

    @property
    def unsaved_round(self) -> bool:
        """A round-charted value arrived since the last save."""
        return bool(self._get("unsaved_round"))

    @unsaved_round.setter
    def unsaved_round(self, value: bool) -> None:
        self._state.a["unsaved_round"][self.slot] = bool(value)

    @property
    def latest(self) -> dict[str, tuple[Any, int]]:
        """The latest value of each parameter with its device time (a new dict)."""
        a, slot = self._state.a, self.slot
        values, times = a["lat_v"][slot], a["lat_t"][slot]
        return {_WINDOWED[j]: (_decode(j, values[j]), int(times[j]))
                for j in range(K.N_WINDOWED) if times[j] != _ABSENT}

    @property
    def bed_state_shown(self) -> tuple[Any, ...]:
        a, slot = self._state.a, self.slot
        if a["shown_total"][slot] < 0:
            return ()
        return (int(a["shown_total"][slot]), _BANDS[a["shown_band"][slot]],
                tuple(_WINDOWED[j] for j in range(K.N_WINDOWED) if a["shown_stale"][slot] >> j & 1))

    @bed_state_shown.setter
    def bed_state_shown(self, value: tuple[Any, ...]) -> None:
        if value:
            raise ValueError("a bed state is shown by the monitor; only () (show the next) can be set")
        self._state.a["shown_total"][self.slot] = -1

    @property
    def alert_state(self) -> PatientAlertState:
        if self._state.a["dirty"][self.slot]:
            self._monitor._pull(self)
        return self._alert_state

    @alert_state.setter
    def alert_state(self, state: PatientAlertState) -> None:
        self._alert_state = state
        self._monitor._push(self)

    def to_dict(self) -> dict[str, Any]:
        return {**self.for_orjson(), "latest": {k: [v, t] for k, (v, t) in self.latest.items()},
                "alert_state": self.alert_state.to_dict()}

    def for_orjson(self) -> dict[str, Any]:
        """``to_dict`` as orjson serialises it, without building it: orjson writes the
        policy's dataclasses and the tuples of ``latest`` as ``to_dict`` has them (tested)."""
        return {
            "patient_id": self.patient_id, "ward": self.ward, "bed": self.bed,
            "first_seen_ms": self.first_seen_ms, "newest_ms": self.newest_ms,
            "latest": self.latest, "spo2_scale": self.spo2_scale, "alert_state": self.alert_state,
            "age_years": self.age_years, "sex_male": self.sex_male,
        }


@dataclasses.dataclass(slots=True)
class MonitorResult:
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    assessments: Sequence[Assessment] = dataclasses.field(default_factory=list)
    touched: list[str] = dataclasses.field(default_factory=list)
    samples: int = 0
    # Patients whose assessments the policy failed on (a fault in vitalstream), with the
    # error's name: their other assessments of the batch are skipped, nobody else's.
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


class _RecordsOf:
    """The record of each assessment of a batch, by its index."""

    __slots__ = ("_slots", "_by_slot")

    def __init__(self, slots: np.ndarray, by_slot: dict[int, PatientRecord]) -> None:
        self._slots, self._by_slot = slots, by_slot

    def __getitem__(self, k: int) -> PatientRecord:
        return self._by_slot[int(self._slots[k])]


class Assessments(Sequence[Assessment]):
    """A batch's assessments in time order, made into ``Assessment`` objects only when read:
    most of a quiet ward's are never read (the core decided them). ``bed_states`` reads
    the ones the core flagged without making the others."""

    def __init__(self, monitor: Monitor, out: dict[str, np.ndarray], records: _RecordsOf,
                 made: dict[int, Assessment], keep: np.ndarray) -> None:
        self._monitor, self._out, self._records, self._made = monitor, out, records, made
        self._index = np.flatnonzero(keep)

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self._at(int(k)) for k in self._index[i]]
        return self._at(int(self._index[i]))

    def __iter__(self) -> Iterator[Assessment]:
        for k in self._index:
            yield self._at(int(k))

    def _at(self, k: int) -> Assessment:
        found = self._made.get(k)
        if found is None:
            found = self._made[k] = self._monitor._make(self._out, k, self._records[k])
        return found

    def flagged(self, flag: int) -> Iterator[Assessment]:
        flags = self._out["a_flags"][self._index]
        for k in self._index[(flags & flag) != 0]:
            yield self._at(int(k))


class Monitor:
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
        self._state = PatientState()
        self._by_slot: dict[int, PatientRecord] = {}
        self._slot_of: dict[str, int] = {}
        self._placed: dict[str, tuple[str, str]] = {}
        self._sorted_waves = False  # (the last batch's readings were out of time order)  # patient -> (ward, bed), as the records have them
        # The kill switch (vitalstream.governance.killswitch): (model off by default, wards
        # that differ from the default). A ward with the model off is scored NEWS2-only.
        self._model_off: tuple[bool, frozenset[str]] = (False, frozenset())
        # Shadow mode: called with the (assessment, record) pairs the model scored and
        # their input rows, so a candidate model scores the same rows (governance/shadow.py).
        self.on_risk: Callable[[Any, Any], None] | None = None
        self.dropped_bad_time = 0  # samples and technical events outside SHOWABLE_TIME_MS
        # Each NEWS2 input (and diastolic BP, shown beside them) with the window it counts in.
        self._windows = tuple((p, self.round_window_ms if p in ROUND_PARAMETERS else self.news2_window_ms)
                              for p in _WINDOWED)
        self._window_of = dict(self._windows)
        self._window_ms = np.array([w for _, w in self._windows], dtype=np.int64)
        self._is_round = np.array([p in ROUND_PARAMETERS for p in _WINDOWED], dtype=np.bool_)
        self._feature_index: dict[str, int] = (
            {name: i for i, name in enumerate(engine.feature_names)} if engine is not None else {})

    # -- the kill switch -----------------------------------------------------------------
    @property
    def model_off(self) -> tuple[bool, frozenset[str]]:
        return self._model_off

    @model_off.setter
    def model_off(self, value: tuple[bool, frozenset[str]]) -> None:
        self._model_off = value
        for record in self.patients.values():
            self._set_model_on(record)

    def _set_model_on(self, record: PatientRecord) -> None:
        off_default, off_wards = self._model_off
        on = not (off_default and not off_wards) and not (off_wards and (record.ward in off_wards) != off_default)
        self._state.a["model_on"][record.slot] = on

    # -- state -------------------------------------------------------------------------
    def record_for(self, sample: Sample) -> PatientRecord:
        return self.patients.get(sample.patient_id) or self._admit(
            sample.patient_id, sample.ward, sample.bed, sample.device_time_ms)

    def _admit(self, patient_id: str, ward: str, bed: str, time_ms: int) -> PatientRecord:
        slot = self._state.take()
        record = self.patients[patient_id] = self._by_slot[slot] = PatientRecord(
            self, slot, patient_id, ward, bed, time_ms, self.policy.new_state())
        self._slot_of[patient_id] = slot
        a = self._state.a
        a["newest"][slot] = time_ms
        a["phase"][slot] = _phase(patient_id)
        a["below"][slot] = self.policy.quiet_below(record._alert_state)
        self._set_model_on(record)
        return record

    def _pull(self, record: PatientRecord) -> None:
        """The policy's memory of the quiet assessments, from the arrays into its state."""
        a, slot, state = self._state.a, record.slot, record._alert_state
        a["dirty"][slot] = 0
        state.patient_id = record.patient_id or state.patient_id
        state.ward, state.bed = record.ward or state.ward, record.bed or state.bed
        state.time_ms = int(a["state_t"][slot])
        seen, gap = a["seen"][slot], a["gap"][slot]
        for j, name in enumerate(_WINDOWED):
            if seen[j] != _ABSENT:
                state.last_seen[name] = int(seen[j])
            if gap[j] != _ABSENT:
                state.last_gap[name] = int(gap[j])
        if a["news2_t"][slot] != _ABSENT:
            state.last_news2 = (int(a["news2_t"][slot]), int(a["news2_total"][slot]))
        n = int(a["hist_n"][slot])
        state.score_history = list(zip(a["hist_t"][slot, :n].tolist(), a["hist_s"][slot, :n].tolist(), strict=True))
        n = int(a["rh_n"][slot])
        state.risk_history = list(zip(a["rh_t"][slot, :n].tolist(), a["rh_v"][slot, :n].tolist(), strict=True))

    def _push(self, record: PatientRecord) -> None:
        """The policy's state into the arrays: its memory, and what the core decides from."""
        a, slot, state = self._state.a, record.slot, record._alert_state
        a["dirty"][slot] = 0
        a["state_t"][slot] = state.time_ms
        for j, name in enumerate(_WINDOWED):
            a["seen"][slot, j] = state.last_seen.get(name, _ABSENT)
            a["gap"][slot, j] = state.last_gap.get(name, _ABSENT)
        if state.last_news2 is None:
            a["news2_t"][slot] = _ABSENT
        else:
            a["news2_t"][slot], a["news2_total"][slot] = state.last_news2
        history = state.score_history[-K.HISTORY:]
        a["hist_n"][slot] = len(history)
        for e, (t, total) in enumerate(history):
            a["hist_t"][slot, e], a["hist_s"][slot, e] = t, total
        risks = state.risk_history[-K.RISK_HISTORY:]
        a["rh_n"][slot] = len(risks)
        for e, (t, risk) in enumerate(risks):
            a["rh_t"][slot, e], a["rh_v"][slot, e] = t, risk
        self._attention(record)

    def _attention(self, record: PatientRecord) -> None:
        """What the core decides the short path from (after Python changed the state)."""
        state, a = record._alert_state, self._state.a
        a["active"][record.slot] = self.policy.needs_attention(state)
        a["below"][record.slot] = self.policy.quiet_below(state)

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
        self._engine_slot(record)
        return self.engine.snapshot_body(patient_id)

    def _engine_slot(self, record: PatientRecord) -> int:
        assert self.engine is not None
        slot = self._state.a["eslot"][record.slot] = self.engine.slot_for(record.patient_id)
        return int(slot)

    def pack_snapshot(self, body: bytes) -> bytes:
        """Compress ``snapshot_due``'s bytes; safe to call from another thread."""
        assert self.engine is not None
        return self.engine.pack(body)

    def _snapshot(self, patient_id: str) -> bytes:
        assert self.engine is not None
        self._engine_slot(self.patients[patient_id])  # (as in snapshot_due)
        return self.engine.snapshot(patient_id)

    def restore(self, state: dict[str, Any]) -> None:
        """Recreate a patient from ``export``'s dict (a restarted worker)."""
        self._forget(state["patient_id"])  # (a restore replaces the record, not the feature buffers)
        record = self._admit(state["patient_id"], state["ward"], state["bed"], state["first_seen_ms"])
        a, slot = self._state.a, record.slot
        for name, (value, time_ms) in state["latest"].items():
            j = _CODE_OF.get(name)
            if j is not None and j >= 0:
                a["lat_v"][slot, j], a["lat_t"][slot, j] = _encode(value), time_ms
        record.newest_ms = state["newest_ms"]
        record.spo2_scale = state["spo2_scale"]
        record.age_years, record.sex_male = state.get("age_years"), state.get("sex_male")
        record.engine_saved_ms = state["newest_ms"]
        record.alert_state = PatientAlertState.from_dict(state["alert_state"])
        if state.get("engine"):
            self.restore_engine(record.patient_id, base64.b64decode(state["engine"]))

    def restore_engine(self, patient_id: str, snapshot: bytes) -> None:
        """Put back a patient's feature buffers from ``snapshot_due``'s bytes."""
        if self.engine is not None and patient_id in self.patients:
            self.engine.restore(patient_id, snapshot)
            self._engine_slot(self.patients[patient_id])

    def discharge(self, patient_id: str) -> None:
        self._forget(patient_id)
        if self.engine is not None:
            self.engine.discharge(patient_id)

    def _forget(self, patient_id: str) -> None:
        """The patient's record and slot of the core (not the feature engine's buffers)."""
        record = self.patients.pop(patient_id, None)
        if record is not None:
            self._by_slot.pop(record.slot, None)
            self._slot_of.pop(patient_id, None)
            self._placed.pop(patient_id, None)
            self._state.give_back(record.slot)

    # -- scoring -----------------------------------------------------------------------
    def process(self, samples: Sequence[Sample]) -> MonitorResult:
        """Take one batch of samples (any patients, any order) and return what to publish;
        ``process_rows`` of their rows."""
        return self.process_rows([sample_row(s) for s in samples])

    def process_rows(self, rows: Sequence[Sequence[Any]]) -> MonitorResult:
        """Take one batch of sample rows (``SAMPLE_FIELDS`` order, as the vitals topic
        carries them) and return what to publish.

        The batch is cut into waves by device time: wave k holds each patient's k-th
        reading time (to ``resolution_ms``). Each wave is one assessment per patient in
        it, so a patient is assessed at every reading time whether the readings arrived
        in one batch (a fast replay) or many (live): the alerts do not depend on how the
        broker happened to batch them.

        One call into the compiled core (``monitor_kernel.assess_batch``) takes every
        reading in and decides every assessment: its NEWS2 and stale inputs, whether the
        policy's short path applies (then it also updates the policy's memory), whether a
        bed state is due, whether the risk is due, and whether a feature row is wanted.
        Then per wave the feature engine takes the wave's readings and gives the wanted
        rows, the risk model scores the due rows in one call, and the Python policy runs
        for the assessments that are not quiet only, in time order.
        """
        result = MonitorResult(samples=len(rows))
        rows = self._showable(rows)
        if not rows:
            return result
        (pids, wards, beds, params, values, _, times, _, _, _, artefacts) = zip(*rows, strict=True)
        patients = self.patients
        new = set(pids).difference(patients)
        admitted = list(new)
        if new:
            for i, patient_id in enumerate(pids):  # (in arrival order: the first row admits)
                if patient_id in new:
                    new.discard(patient_id)
                    self._admit(patient_id, wards[i], beds[i], times[i])
                    if not new:
                        break
        # The ward and bed of the patient's last reading that names them (transfers).
        placed = dict(zip(pids, zip(wards, beds, strict=True), strict=True)) if all(wards) else \
            {pid: (ward, bed) for pid, ward, bed in zip(pids, wards, beds, strict=True) if ward}
        for patient_id, (ward, bed) in placed.items() - self._placed.items():
            record = patients[patient_id]
            record.ward, record.bed = ward, bed
            self._set_model_on(record)
        n = len(rows)
        a = self._state.a
        slots = np.fromiter(map(self._slot_of.__getitem__, pids), dtype=np.int64, count=n)
        codes = np.fromiter(map(_CODE_OF.get, params, itertools.repeat(K.P_OTHER)), dtype=np.int64, count=n)
        try:
            vals = np.array(values, dtype=np.float64)
        except (ValueError, TypeError):
            vals = np.fromiter(map(_encode, values), dtype=np.float64, count=n)
        stamps = np.array(times, dtype=np.int64)
        art = np.array(artefacts, dtype=np.bool_)
        engine = self.engine
        numeric = np.zeros(n, dtype=np.bool_)
        if engine is not None:
            windowed = codes >= 0
            numeric[windowed] = _NUMERIC_CODES[codes[windowed]]
            numeric &= ~art
            lacking = numeric & (a["eslot"][slots] < 0)
            if lacking.any():
                for k in np.unique(slots[lacking]):
                    self._engine_slot(self._by_slot[int(k)])
        order, wave = self._wave_order(pids, slots, stamps)
        if self._sorted_waves:
            # Readings out of time order: taken again in wave order (then in order), so that
            # a patient is admitted, placed and assessed as its readings are taken in.
            for patient_id in admitted:
                self._forget(patient_id)
            again = self.process_rows([rows[i] for i in order.tolist()])
            again.samples = result.samples
            return again
        wave = wave[order]
        n_waves = int(wave[-1]) + 1
        wave_start = np.searchsorted(wave, np.arange(n_waves + 1))
        slots, codes, vals, stamps, art, numeric = (x[order] for x in (slots, codes, vals, stamps, art, numeric))
        out = {name: np.empty(n, dtype=np.int64) for name in (
            "a_slot", "a_time", "a_total", "a_red", "a_band", "a_stale", "a_in", "a_scale", "a_flags",
            "a_ref", "a_wave")}
        out["a_v"] = np.empty((n, K.N_WINDOWED), dtype=np.float64)
        out["a_t"] = np.empty((n, K.N_WINDOWED), dtype=np.int64)
        config = self.policy.config
        model = self.model
        with_model = model is not None
        m = K.assess_batch(
            slots, codes, vals, stamps, art, numeric, wave_start,
            a["lat_v"], a["lat_t"], a["newest"], a["scale"], a["unsaved_round"],
            a["seen"], a["gap"], a["news2_t"], a["news2_total"], a["state_t"], a["hist_t"], a["hist_s"],
            a["hist_n"], a["dirty"],
            a["active"], a["below"], a["shown_total"], a["shown_band"], a["shown_stale"], a["shown_ms"],
            a["risk_due"], a["has_carry"], a["phase"], a["last_ref"], a["model_on"], a["stamp"], a["fed"],
            a["unquiet"],
            self._window_ms, self._is_round, bool(config.single_parameter_alerts), bool(config.risk_thresholds),
            int(self.policy._lookback_ms), self.bed_state_interval_ms, self.risk_interval_ms, with_model,
            out["a_slot"], out["a_time"], out["a_total"], out["a_red"], out["a_band"], out["a_stale"],
            out["a_in"], out["a_v"], out["a_t"], out["a_scale"], out["a_flags"], out["a_ref"], out["a_wave"])
        out: dict[str, Any] = {name: array[:m] for name, array in out.items()}
        a_slot, a_flags = out["a_slot"], out["a_flags"]
        a["unquiet"][a_slot] = 0
        a["last_ref"][a_slot] = -1  # (an index into this batch's assessments)
        by_slot = self._by_slot
        arecords = _RecordsOf(a_slot, dict(by_slot))
        made: dict[int, Assessment] = {}
        out["risk"] = {}  # k -> the risk scored, and slot -> the carry before the batch (``_make``)
        try:
            self._features(out, arecords, made, slots, codes, vals, stamps, numeric, wave_start)
            risks = self._score_risk(out, arecords, made)
        except BaseException:
            # Chosen, never scored: the next assessment of these patients scores it.
            scored = a_slot[(a_flags & K.F_SCORE) != 0]
            a["has_carry"][scored] = 0
            raise
        if with_model:
            K.remember_risks(a_slot, out["a_time"], a_flags, risks, a["rh_t"], a["rh_v"], a["rh_n"],
                             int(self.policy._risk_horizon_ms))
        keep = np.ones(m, dtype=np.bool_)
        failed = result.failed
        alerts = result.alerts
        assess = self.policy.assess
        for k in np.flatnonzero(a_flags & K.F_UNQUIET).tolist():
            record = arecords[k]
            patient_id = record.patient_id
            if failed and patient_id in failed:
                keep[k] = False
                continue
            assessment = made.get(k)
            if assessment is None:
                assessment = made[k] = self._make(out, k, record)
            try:
                raised = assess(record.alert_state, assessment)
            except Exception as exc:  # a fault in the policy must not silence the other patients
                failed[patient_id] = type(exc).__name__
                keep[k] = False
                continue
            finally:
                self._push(record)
            if raised:
                alerts.extend(raised)
        if failed:  # a patient the policy failed on loses the batch's assessments
            keep &= ~np.isin(a_slot, [self.patients[p].slot for p in failed if p in self.patients])
        result.assessments = Assessments(self, out, arecords, made, keep)
        result.touched = list(dict.fromkeys(pids))
        return result

    def _showable(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        low, high = SHOWABLE_TIME_MS
        if not rows or (low <= min(map(_TIME_OF, rows)) and max(map(_TIME_OF, rows)) <= high):
            return rows
        kept = [r for r in rows if low <= r[R_TIME] <= high]
        self.dropped_bad_time += len(rows) - len(kept)
        return kept

    def _wave_order(self, pids: Sequence[str], slots: np.ndarray, times: np.ndarray,
                    sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The batch's waves: (the order of the rows that groups them by wave, the wave of
        each row as given). One compiled pass while each patient's readings come in time
        order (as they do, on the patient's partition); otherwise ``_waves_sorted``. The
        same readings go to the same waves either way, each patient's in arrival order (a
        test checks this)."""
        a = self._state.a
        self._sorted_waves = False
        if not sort:
            wave = K.waves_in_order(slots, times, self.resolution_ms, a["w_moment"], a["w_wave"], a["w_seen"])
            if wave.shape[0] == slots.shape[0]:
                return np.argsort(wave, kind="stable"), wave
        self._sorted_waves = True
        return self._waves_sorted(pids, times)

    def _waves_sorted(self, pids: Sequence[str], times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A batch some patient's readings of which are out of time order: each patient's
        k-th reading time is wave k, and a wave holds its patients' readings patient by
        patient (in the order they first appear), each in arrival order. Returns (the
        order of the rows, wave of each row as given)."""
        resolution = self.resolution_ms
        by_patient: dict[str, dict[int, list[int]]] = {}
        for i, patient_id in enumerate(pids):
            moments = by_patient.setdefault(patient_id, {})
            moments.setdefault(int(times[i]) // resolution, []).append(i)
        wave = np.empty(len(pids), dtype=np.int64)
        readings = [[moments[t] for t in sorted(moments)] for moments in by_patient.values()]
        order = []
        depth = max((len(r) for r in readings), default=0)
        for k in range(depth):
            for r in readings:
                if k < len(r):
                    for i in r[k]:
                        wave[i] = k
                        order.append(i)
        return np.array(order, dtype=np.int64), wave

    def _make(self, out: dict[str, np.ndarray], k: int, record: PatientRecord) -> Assessment:
        """The ``Assessment`` of the core's assessment ``k``."""
        inside, stale_bits = int(out["a_in"][k]), int(out["a_stale"][k])
        values, times = out["a_v"][k].tolist(), out["a_t"][k].tolist()
        observations = {}
        stale = []
        for j, name in enumerate(_WINDOWED):
            if inside >> j & 1:
                observations[name] = (_decode(j, values[j]), times[j])
            elif stale_bits >> j & 1:
                stale.append(name)
        scale = int(out["a_scale"][k])
        key = (scale, *[observations[name][0] if name in observations else None for name in COMPONENTS])
        flags = int(out["a_flags"][k])
        assessment = Assessment(record.patient_id, record.ward, record.bed, int(out["a_time"][k]),
                                news2_cached(observations, scale, key), observations,
                                _NO_FEATURES, None, None, None, (), stale, scale, None, None,
                                bool(flags & K.F_BED))
        ref = int(out["a_ref"][k])
        if ref != -2:
            risk = out["risk"]
            carry = risk.get(("before", record.slot), record.risk_carry) if ref == -1 else risk.get(ref)
            if carry is not None:
                assessment.risk, assessment.risk_ms, assessment.model_version, assessment.explain = carry
        return assessment

    def _features(self, out: dict[str, np.ndarray], arecords: _RecordsOf, made: dict[int, Assessment],
                  slots: np.ndarray, codes: np.ndarray, vals: np.ndarray, stamps: np.ndarray,
                  numeric: np.ndarray, wave_start: np.ndarray) -> None:
        """Per wave: the wave's readings into the feature engine, then the feature rows
        of the assessments that want one (the risk, an alert's payload, a bed state)."""
        engine = self.engine
        if engine is None:
            return
        a = self._state.a
        a_flags, a_wave = out["a_flags"], out["a_wave"]
        wanted = np.flatnonzero(a_flags & K.F_FEATURES)
        if not wanted.size and not numeric.any():
            return
        wave_of_wanted = a_wave[wanted]
        index = self._feature_index
        for w in range(wave_start.shape[0] - 1):
            lo, hi = wave_start[w], wave_start[w + 1]
            fed = numeric[lo:hi]
            if fed.any():
                engine.add(a["eslot"][slots[lo:hi][fed]], _ENGINE_INDEX[codes[lo:hi][fed]],
                           stamps[lo:hi][fed] / 1000.0, vals[lo:hi][fed])
            these = wanted[wave_of_wanted == w]
            if these.size:
                rows_of = engine.features_of(a["eslot"][out["a_slot"][these]])
                for k, feature_row in zip(these.tolist(), rows_of, strict=True):
                    assessment = made[k] = self._make(out, k, arecords[k])
                    assessment.features = FeatureRow(index, feature_row)

    def _score_risk(self, out: dict[str, np.ndarray], arecords: _RecordsOf,
                    made: dict[int, Assessment]) -> np.ndarray:
        """The model's risk of the assessments the core chose, in one call; the others
        carry the last one computed, with its time. Returns each assessment's risk (NaN: none)."""
        m = out["a_slot"].shape[0]
        risks = np.full(m, np.nan)
        scored = out["risk"]
        if self.model is None:
            return risks
        a_flags, a_ref, a_slot = out["a_flags"], out["a_ref"], out["a_slot"]
        chosen_k = np.flatnonzero(a_flags & K.F_SCORE).tolist()
        with_risk = (a_flags & K.F_RISK) != 0
        carried = with_risk & (a_ref == -1)
        a = self._state.a
        risks[carried] = a["carry_risk"][a_slot[carried]]  # (as before the batch)
        before = {}
        if chosen_k:
            chosen = [(made[k], arecords[k]) for k in chosen_k]
            rows = self.model.input_row(
                np.vstack([a.features.row for a, _ in chosen]),
                np.array([np.nan if r.age_years is None else r.age_years for _, r in chosen]),
                np.array([np.nan if r.sex_male is None else float(r.sex_male) for _, r in chosen]),
                np.array([(a.time_ms - r.first_seen_ms) / 3.6e6 for a, r in chosen]),
            )
            probabilities = self.model.predict_proba(rows)
            if self.on_risk is not None:
                self.on_risk(chosen, rows)
            for k, (assessment, record), row, probability in zip(chosen_k, chosen, rows, probabilities,
                                                                 strict=True):
                carry = (float(probability), assessment.time_ms, self.model.version,
                         functools.partial(self.model.explain, row))
                assessment.risk, assessment.risk_ms, assessment.model_version, assessment.explain = carry
                scored[k] = carry
                before[record.slot] = carry
            probability_of = np.full(m, np.nan)
            probability_of[chosen_k] = [scored[k][0] for k in chosen_k]
            fresh = with_risk & (a_ref >= 0)
            risks[fresh] = probability_of[a_ref[fresh]]
            # The assessments already made (features wanted) carry theirs now.
            for k, assessment in made.items():
                if assessment.risk is None and a_ref[k] >= 0:
                    carry = scored[int(a_ref[k])]
                    assessment.risk, assessment.risk_ms, assessment.model_version, assessment.explain = carry
            for slot, carry in before.items():
                record = self._by_slot[slot]
                scored[("before", slot)] = record.risk_carry
                record.risk_carry = carry
                a["carry_risk"][slot] = carry[0]
        return risks

    # -- bed state for the ward board ----------------------------------------------------
    def bed_states(self, assessments: Sequence[Assessment]) -> list[dict[str, Any]]:
        """Bed states for nursing stations: NEWS2 with its components, values with their
        times, 2 h trends, risk and stale inputs. The compiled core decides which
        assessments show one (``Assessment.bed_state``): at most one per patient per
        ``bed_state_interval_ms`` of device time, and one for every change of the NEWS2
        total, band or stale inputs, each in time order: a NEWS2 that rose and fell inside
        one batch (a fast replay) still reaches the board and the validation report."""
        states = []
        due = assessments.flagged(K.F_BED) if isinstance(assessments, Assessments) else \
            (a for a in assessments if a.bed_state)
        for assessment in due:
            patient_id = assessment.patient_id
            if patient_id not in self.patients:
                continue
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
                # The board prints the risk only from the model's alert-budget threshold up
                # (`RiskModel.show_from`): below it the risk is near the base rate and tells
                # a nurse nothing (models/MODEL_CARD.md).
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
        alerts = self.policy.acknowledge(record.alert_state, alert_id, by, at_ms, actor)
        self._attention(record)
        return alerts

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
        try:
            settings = self.policy.configure(patient.alert_state, record)
        finally:
            self._attention(patient)
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
            self._attention(record)
        return alerts

    def check_stale(self, now_ms: int | Callable[[str], int]) -> list[Alert]:
        """Technical "no data" alerts as of device time ``now_ms``, one number or per
        patient (the worker keeps a clock per partition)."""
        alerts: list[Alert] = []
        for patient_id, record in self.patients.items():
            now = now_ms(patient_id) if callable(now_ms) else now_ms
            raised = self.policy.check_stale(record.alert_state, now)
            if raised:
                alerts.extend(raised)
                self._attention(record)
        return alerts

    def stale_patients(self) -> int:
        a = self._state.a
        slots = np.fromiter((r.slot for r in self.patients.values()), dtype=np.int64, count=len(self.patients))
        if not slots.size:
            return 0
        times = a["lat_t"][slots]
        late = (times != _ABSENT) & (a["newest"][slots][:, None] - times > self._window_ms[None, :])
        return int(late.any(axis=1).sum())
