"""A recording: many patients' samples held as columns, replayed in device-time order.

Holding columns (time, patient, parameter, value, source, code) instead of Sample objects
lets a whole PhysioNet training set (a few million samples) sit in tens of megabytes;
Sample objects are made one device report at a time as they are replayed.

>>> from vitalstream.samples import Sample
>>> a = Sample("p1", "4B", "1", "heart_rate", 80.0, "/min", 2000, "m1", 0)
>>> b = Sample("p2", "4B", "2", "consciousness", "V", "ACVPU", 1000, "obs", 0)
>>> [[s.patient_id for s in report] for report in Recording.from_samples([a, b]).reports()]
[['p2'], ['p1']]
"""

from __future__ import annotations

import dataclasses
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

from vitalstream.ingest.normalise import plausibility
from vitalstream.samples import ACVPU, CANONICAL_UNITS, PARAM_INDEX, PARAMETERS, Sample

_CONSCIOUSNESS = PARAM_INDEX["consciousness"]
_ON_OXYGEN = PARAM_INDEX["on_oxygen"]
_SPO2_SCALE = PARAM_INDEX["spo2_scale"]


def encode_value(parameter: str, value: float | str | bool) -> float:
    """A canonical value as a number: ACVPU index, 0/1 for oxygen, the scale itself."""
    if parameter == "consciousness":
        return float(ACVPU.index(str(value)))
    return float(value)


def decode_value(parameter_index: int, number: float) -> float | str | bool:
    if parameter_index == _CONSCIOUSNESS:
        return ACVPU[int(number)]
    if parameter_index == _ON_OXYGEN:
        return bool(number)
    if parameter_index == _SPO2_SCALE:
        return int(number)
    return number


class _Interner:
    """Strings to small integers, first come first numbered."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        number = self.index.get(name)
        if number is None:
            number = self.index[name] = len(self.names)
            self.names.append(name)
        return number


@dataclasses.dataclass(slots=True)
class RecordingBuilder:
    """Collects samples row by row (readers use it) and freezes them into a Recording.
    A numeric value outside its parameter's possible range (`ingest.normalise.PLAUSIBILITY`,
    the table every way in applies) is left out and counted in ``refused`` by parameter:
    ingest would dead-letter it as ``implausible_value``, and training must not learn it."""

    patients: _Interner = dataclasses.field(default_factory=_Interner)
    sources: _Interner = dataclasses.field(default_factory=_Interner)
    codes: _Interner = dataclasses.field(default_factory=_Interner)
    places: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # Typed arrays, not lists: a few million rows stay a few bytes each while reading.
    time_ms: array = dataclasses.field(default_factory=lambda: array("q"))
    patient: array = dataclasses.field(default_factory=lambda: array("i"))
    parameter: array = dataclasses.field(default_factory=lambda: array("b"))
    value: array = dataclasses.field(default_factory=lambda: array("d"))
    source: array = dataclasses.field(default_factory=lambda: array("i"))
    code: array = dataclasses.field(default_factory=lambda: array("i"))
    artefact: array = dataclasses.field(default_factory=lambda: array("b"))
    refused: Counter[str] = dataclasses.field(default_factory=Counter)

    def add(self, patient_id: str, ward: str, bed: str, parameter: str, value: float | str | bool,
            device_time_ms: int, source: str, source_code: str = "", artefact: bool = False) -> None:
        if (isinstance(value, int | float) and not isinstance(value, bool)
                and plausibility(parameter, float(value)) == "impossible"):
            self.refused[parameter] += 1
            return
        number = self.patients(patient_id)
        self.places.setdefault(number, (ward, bed))
        self.time_ms.append(device_time_ms)
        self.patient.append(number)
        self.parameter.append(PARAM_INDEX[parameter])
        self.value.append(encode_value(parameter, value))
        self.source.append(self.sources(source))
        self.code.append(self.codes(source_code))
        self.artefact.append(artefact)

    def add_sample(self, sample: Sample) -> None:
        self.add(sample.patient_id, sample.ward, sample.bed, sample.parameter, sample.value,
                 sample.device_time_ms, sample.source, sample.source_code, sample.artefact)

    def build(self) -> Recording:
        n = len(self.patients.names)
        return Recording(
            patient_ids=list(self.patients.names),
            wards=[self.places[i][0] for i in range(n)], beds=[self.places[i][1] for i in range(n)],
            sources=list(self.sources.names), codes=list(self.codes.names),
            time_ms=np.frombuffer(self.time_ms, dtype=np.int64).copy(),
            patient=np.frombuffer(self.patient, dtype=np.int32).copy(),
            parameter=np.frombuffer(self.parameter, dtype=np.int8).copy(),
            value=np.frombuffer(self.value, dtype=np.float64).copy(),
            source=np.frombuffer(self.source, dtype=np.int32).copy(),
            code=np.frombuffer(self.code, dtype=np.int32).copy(),
            artefact=np.frombuffer(self.artefact, dtype=np.int8).astype(bool),
            refused=dict(self.refused),
        )


@dataclasses.dataclass(slots=True)
class Recording:
    """Samples of many patients as columns; ``reports()`` replays them in time order."""

    patient_ids: list[str]
    wards: list[str]
    beds: list[str]
    sources: list[str]
    codes: list[str]
    time_ms: np.ndarray
    patient: np.ndarray
    parameter: np.ndarray
    value: np.ndarray
    source: np.ndarray
    code: np.ndarray
    artefact: np.ndarray
    refused: dict[str, int] = dataclasses.field(default_factory=dict)  # implausible values left out

    def __len__(self) -> int:
        return int(self.time_ms.size)

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> Recording:
        builder = RecordingBuilder()
        for sample in samples:
            builder.add_sample(sample)
        return builder.build()

    def _order(self) -> np.ndarray:
        # Stable, so samples of one report keep the order they were read in.
        return np.lexsort((self.source, self.patient, self.time_ms))

    def reports(self, chunk: int = 50_000) -> Iterator[list[Sample]]:
        """One list per (device time, patient, source): what a gateway sends as one message."""
        order = self._order()
        start = 0
        while start < order.size:
            # Extend the chunk to the end of its last report: one report, one message.
            end = min(start + chunk, order.size)
            while end < order.size and self._same_report(order[end - 1], order[end]):
                end += 1
            yield from self._reports_of(order[start:end])
            start = end

    def _same_report(self, i: int, j: int) -> bool:
        return bool(self.time_ms[i] == self.time_ms[j] and self.patient[i] == self.patient[j]
                    and self.source[i] == self.source[j])

    def _reports_of(self, rows: np.ndarray) -> Iterator[list[Sample]]:
        report: list[Sample] = []
        last: tuple[int, int, int] | None = None
        columns = zip(self.time_ms[rows].tolist(), self.patient[rows].tolist(), self.parameter[rows].tolist(),
                      self.value[rows].tolist(), self.source[rows].tolist(), self.code[rows].tolist(),
                      self.artefact[rows].tolist(), strict=True)
        for t, p, k, v, s, c, a in columns:
            if (t, p, s) != last and report:
                yield report
                report = []
            last = (t, p, s)
            name = PARAMETERS[k]
            report.append(Sample(
                patient_id=self.patient_ids[p], ward=self.wards[p], bed=self.beds[p], parameter=name,
                value=decode_value(k, v), unit=CANONICAL_UNITS[name], device_time_ms=t,
                source=self.sources[s], ingest_time_ms=0, source_code=self.codes[c], artefact=a))
        if report:
            yield report

    def samples(self) -> Iterator[Sample]:
        for report in self.reports():
            yield from report
