"""FeatureEngine: windowed features of many patients, updated in batches.

>>> import numpy as np
>>> engine = FeatureEngine(windows_s=(300,), initial_patients=4)
>>> slot = engine.slot_for("bed-12")
>>> times_s = np.arange(0.0, 60.0, 1.0)
>>> slots, rows = engine.update(np.full(60, slot), np.zeros(60, dtype=np.int64),
...                             times_s, 80.0 + times_s / 60.0)
>>> row = dict(zip(engine.feature_names, rows[0]))
>>> float(row["heart_rate_count_5m"]), round(row["heart_rate_slope_per_h_5m"])
(60.0, 60)
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from vitalstream.features import kernels as K
from vitalstream.features.names import DEFAULT_WINDOWS_S, NEWS2_NUMERIC_INPUTS, feature_names
from vitalstream.features.rules import ArtefactRules
from vitalstream.samples import NUMERIC_PARAMETERS

DEFAULT_BUCKETS_PER_WINDOW = 30
DEFAULT_LATE_TOLERANCE_S = 300.0
_SNAPSHOT_MAGIC = b"VSF1"


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """The read-only arrays every kernel call takes, built once from the settings."""

    windows_s: tuple[float, ...]
    buckets_per_window: int
    cfg: np.ndarray
    limits: np.ndarray
    widths_s: np.ndarray
    fresh_idx: np.ndarray
    n_features: int

    @classmethod
    def build(cls, windows_s: Sequence[float], buckets_per_window: int,
              rules: ArtefactRules | None, late_tolerance_s: float) -> KernelConfig:
        names = feature_names(windows_s)  # validates the windows
        if buckets_per_window < 2:
            raise ValueError("buckets_per_window must be at least 2")
        if not late_tolerance_s >= 0:
            raise ValueError("late_tolerance_s must be >= 0")
        rules = rules or ArtefactRules()
        cfg = np.zeros(K.N_CFG, dtype=np.float64)
        cfg[K.CFG_LATE_TOL] = late_tolerance_s
        cfg[K.CFG_FLAT_S] = rules.flat_line_s
        cfg[K.CFG_FLAT_MIN_N] = rules.flat_line_min_samples
        cfg[K.CFG_DROP_MIN] = rules.spo2_dropout_min_drop_pct
        cfg[K.CFG_DROP_RATE] = rules.spo2_dropout_max_fall_pct_per_s
        cfg[K.CFG_HR] = NUMERIC_PARAMETERS.index("heart_rate")
        cfg[K.CFG_SBP] = NUMERIC_PARAMETERS.index("systolic_bp")
        windows = tuple(float(w) for w in windows_s)
        # the ring lap of a bucket must fit in int32: later times are rejected as invalid
        cfg[K.CFG_MAX_ABS_T] = min(windows) * (2**31 - 2)
        return cls(
            windows_s=windows,
            buckets_per_window=int(buckets_per_window),
            cfg=cfg,
            limits=rules.limits(),
            widths_s=np.array(windows, dtype=np.float64) / buckets_per_window,
            fresh_idx=np.array([NUMERIC_PARAMETERS.index(p) for p in NEWS2_NUMERIC_INPUTS],
                               dtype=np.int64),
            n_features=len(names),
        )


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on a cache-line boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class PatientState:
    """Preallocated state arrays for ``capacity`` patient slots (layout: see kernels).

    Capacity doubles when full, so admissions copy the existing patients only log2(n)
    times in all; unused slots are never touched (a slot is reset when it is admitted).
    """

    # The arrays a snapshot carries (the rest is scratch).
    PERSISTENT = ("buckets", "art", "pstate")

    def __init__(self, capacity: int, n_windows: int, buckets_per_window: int) -> None:
        self.n_windows = n_windows
        self.nb = buckets_per_window
        self.arrays = self._allocate(capacity)

    def _allocate(self, capacity: int) -> dict[str, np.ndarray]:
        n_params, n_windows = len(NUMERIC_PARAMETERS), self.n_windows
        nb = self.nb + 1  # the ring keeps the bucket that is leaving the window
        return {
            "buckets": _aligned_empty((capacity, n_params, n_windows, nb), K.BUCKET_DTYPE),
            "art": np.empty((capacity, n_params, n_windows, nb), dtype=np.int32),
            "pstate": _aligned_empty((capacity, n_params, K.pstate_width(n_windows)),
                                     np.dtype(np.float64)),
            "mark": np.zeros(capacity, dtype=np.int8),
        }

    @property
    def capacity(self) -> int:
        return self.arrays["buckets"].shape[0]

    def grow(self, capacity: int) -> None:
        new = self._allocate(capacity)
        n = self.capacity
        for name, array in self.arrays.items():
            new[name][:n] = array
        self.arrays = new

    def reset(self, slot: int) -> None:
        a = self.arrays
        K.reset_slot(a["buckets"], a["art"], a["pstate"], slot)

    def bytes_per_slot(self) -> int:
        return sum(array[0].nbytes for array in self.arrays.values())


class FeatureEngine:
    """Windowed features of every monitored patient, one jitted call per batch.

        engine = FeatureEngine()
        slots = np.array([engine.slot_for(pid) for pid in patient_ids])
        touched, rows = engine.update(slots, params, times_s, values)

    ``params`` are indices into ``vitalstream.samples.NUMERIC_PARAMETERS``; times are
    device time in seconds. Rows follow ``engine.feature_names``.
    """

    def __init__(self, windows_s: Sequence[float] = DEFAULT_WINDOWS_S,
                 initial_patients: int = 1024,
                 late_tolerance_s: float = DEFAULT_LATE_TOLERANCE_S,
                 buckets_per_window: int = DEFAULT_BUCKETS_PER_WINDOW,
                 rules: ArtefactRules | None = None) -> None:
        self.config = KernelConfig.build(windows_s, buckets_per_window, rules, late_tolerance_s)
        self.windows_s = self.config.windows_s
        self.late_tolerance_s = float(late_tolerance_s)
        self.feature_names: list[str] = feature_names(windows_s)
        self._state = PatientState(max(1, int(initial_patients)), len(self.windows_s),
                                   self.config.buckets_per_window)
        self._counters = np.zeros(K.N_COUNTERS, dtype=np.int64)
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._next_slot = 0

    # -- patients -------------------------------------------------------------------
    def slot_for(self, patient_id: str) -> int:
        """The patient's slot; admits the patient (fresh state) if new."""
        slot = self._slots.get(patient_id)
        if slot is not None:
            return slot
        if self._free:
            slot = self._free.pop()
        else:
            if self._next_slot == self._state.capacity:
                self._state.grow(2 * self._state.capacity)
            slot = self._next_slot
            self._next_slot += 1
        self._state.reset(slot)
        self._slots[patient_id] = slot
        return slot

    def discharge(self, patient_id: str) -> None:
        """Forget the patient; the slot is reused by the next admission."""
        slot = self._slots.pop(patient_id, None)
        if slot is not None:
            self._state.reset(slot)
            self._free.append(slot)

    @property
    def n_patients(self) -> int:
        return len(self._slots)

    @property
    def capacity(self) -> int:
        return self._state.capacity

    def bytes_per_patient(self) -> int:
        """State bytes one patient slot holds (all windows, all parameters)."""
        return self._state.bytes_per_slot()

    # -- samples and features -------------------------------------------------------
    def update(self, slots: np.ndarray, params: np.ndarray, times_s: np.ndarray,
               values: np.ndarray, now_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Add a batch of samples; returns (touched slots, their feature rows).

        ``now_s`` is the device time for ages and freshness; by default (and never less
        than) the newest sample time of each patient. Samples with a bad slot or
        parameter index, or a non-finite time, are counted in ``invalid``.
        """
        a = self._state.arrays
        c = self.config
        return K.update_batch(
            a["buckets"], a["art"], a["pstate"], self._counters, a["mark"], c.cfg, c.limits,
            c.widths_s, c.fresh_idx, c.n_features,
            np.ascontiguousarray(slots, dtype=np.int64),
            np.ascontiguousarray(params, dtype=np.int64),
            np.ascontiguousarray(times_s, dtype=np.float64),
            np.ascontiguousarray(values, dtype=np.float64),
            np.nan if now_s is None else float(now_s),
        )

    def add(self, slots: np.ndarray, params: np.ndarray, times_s: np.ndarray, values: np.ndarray) -> None:
        """``update`` without the feature rows: add a batch of samples only. ``features_of``
        then gives the rows ``update`` would have given, for the slots that need them."""
        a = self._state.arrays
        c = self.config
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        K.add_samples(a["buckets"], a["art"], a["pstate"], self._counters, c.cfg, c.limits, c.widths_s,
                      slots, np.ascontiguousarray(params, dtype=np.int64),
                      np.ascontiguousarray(times_s, dtype=np.float64),
                      np.ascontiguousarray(values, dtype=np.float64), 0, slots.shape[0])

    def features_of(self, slots: np.ndarray, now_s: float | None = None) -> np.ndarray:
        """Current feature rows of these slots, without new samples."""
        a = self._state.arrays
        c = self.config
        slots = np.ascontiguousarray(slots, dtype=np.int64)
        if slots.size and (slots.min() < 0 or slots.max() >= self._state.capacity):
            raise ValueError("slot out of range")
        return K.features_of_slots(
            a["buckets"], a["art"], a["pstate"], c.cfg, c.limits, c.widths_s, c.fresh_idx,
            c.n_features, slots,
            np.nan if now_s is None else float(now_s),
        )

    # -- counters (totals since start, for metrics) ---------------------------------
    @property
    def late_dropped(self) -> int:
        return int(self._counters[K.K_LATE])

    @property
    def artefacts(self) -> int:
        return int(self._counters[[K.K_RANGE, K.K_FLAT, K.K_DROPOUT]].sum())

    @property
    def artefact_counts(self) -> dict[str, int]:
        return {"out_of_range": int(self._counters[K.K_RANGE]),
                "flat_line": int(self._counters[K.K_FLAT]),
                "spo2_dropout": int(self._counters[K.K_DROPOUT])}

    @property
    def accepted(self) -> int:
        return int(self._counters[K.K_ACCEPTED])

    @property
    def invalid(self) -> int:
        return int(self._counters[K.K_INVALID])

    # -- persistence ----------------------------------------------------------------
    def _header(self) -> bytes:
        windows = np.array(self.windows_s, dtype=np.float64).tobytes()
        return struct.pack("<4sHH", _SNAPSHOT_MAGIC, len(self.windows_s),
                           self.config.buckets_per_window) + windows

    def snapshot(self, patient_id: str) -> bytes:
        """The patient's state as compact bytes (for the patients changelog)."""
        return self.pack(self.snapshot_body(patient_id))

    def snapshot_body(self, patient_id: str) -> bytes:
        """The patient's buffers as they are, uncompressed; ``pack`` makes the snapshot."""
        slot = self._slots[patient_id]
        a = self._state.arrays
        return b"".join(a[name][slot].tobytes() for name in PatientState.PERSISTENT)

    def pack(self, body: bytes) -> bytes:
        """``snapshot_body``'s bytes compressed, with the header ``restore`` checks. Reads
        no patient state, and zlib lets go of the GIL: a caller may pack many in a thread."""
        return self._header() + zlib.compress(body, 1)

    def restore(self, patient_id: str, data: bytes) -> None:
        """Replace the patient's state with a snapshot taken by an engine with the same
        windows; raises ValueError for a snapshot of another configuration."""
        header = self._header()
        if not data.startswith(header):
            raise ValueError("snapshot was taken with other windows or buckets")
        try:
            body = zlib.decompress(data[len(header):])
        except zlib.error as exc:
            raise ValueError(f"corrupt feature snapshot: {exc}") from None
        sizes = [self._state.arrays[name][0].nbytes for name in PatientState.PERSISTENT]
        if len(body) != sum(sizes):
            raise ValueError("corrupt feature snapshot: wrong length")
        slot = self.slot_for(patient_id)  # may grow the arrays: read them afterwards
        a = self._state.arrays
        offset = 0
        for name, size in zip(PatientState.PERSISTENT, sizes, strict=True):
            target = a[name][slot]
            target[...] = np.frombuffer(body, dtype=target.dtype, count=target.size,
                                        offset=offset).reshape(target.shape)
            offset += size
