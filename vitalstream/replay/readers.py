"""Readers of recorded vital signs -> a `Recording` of canonical samples.

- NDJSON: one canonical sample (or a ``{"samples": [...]}`` gateway message) per line.
- CSV: long (``patient_id, parameter, value, device_time_ms`` and optional ``ward, bed,
  source``) or wide (``patient_id, device_time_ms`` and one column per parameter).
- PhysioNet/CinC 2019 (``.psv``, one ICU stay a file, one row an hour with ``ICULOS``):
  a folder, a single file, or the challenge's ``.tar.gz``.
- PhysioNet/CinC 2012 set A (``RECORDID.txt``, long ``Time,Parameter,Value`` with
  ``HH:MM`` since ICU admission): a folder or the ``.tar.gz``.

Recorded times become device times from a fixed start epoch, so every replay of the same
files gives the same samples. Source data: physionet.org/content/challenge-2019 and
physionet.org/content/challenge-2012 (cite Reyna 2020; Silva 2012; Goldberger 2000).
"""

from __future__ import annotations

import csv
import io
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from vitalstream.replay.recording import Recording, RecordingBuilder
from vitalstream.samples import PARAM_INDEX, SampleError, sample_from_dict

# 2026-03-15 00:00 UTC, as the simulator: recorded hour 0 of every stay starts here.
RECORDING_START_MS = 1_773_532_800_000
HOUR_MS = 3_600_000

PHYSIONET_2019_COLUMNS = {"HR": "heart_rate", "O2Sat": "spo2", "Temp": "temperature",
                          "SBP": "systolic_bp", "DBP": "diastolic_bp", "Resp": "resp_rate"}
PHYSIONET_2012_PARAMETERS = {"HR": "heart_rate", "RespRate": "resp_rate", "Temp": "temperature",
                             "NISysABP": "systolic_bp", "NIDiasABP": "diastolic_bp",
                             "SysABP": "systolic_bp", "DiasABP": "diastolic_bp"}
PHYSIONET_2012_UNITS = {1: "CCU", 2: "CSRU", 3: "MICU", 4: "SICU"}
AIR_FIO2 = 0.21


class SourceError(ValueError):
    """A source that cannot be read; the message says why and what to do."""


def gcs_to_acvpu(gcs: float) -> str:
    """Glasgow Coma Scale -> ACVPU, approximately (Kelly 2004: A ~ 15, V ~ 13, P ~ 8,
    U ~ 3): 15 alert, 14 (verbal 'confused') new confusion, 9-13 voice, 6-8 pain, 3-5
    unresponsive. Sedated ICU patients score low here as they do on a NEWS2 chart."""
    if gcs >= 15:
        return "A"
    if gcs >= 14:
        return "C"
    if gcs >= 9:
        return "V"
    if gcs >= 6:
        return "P"
    return "U"


def read_ndjson(path: Path, builder: RecordingBuilder | None = None) -> Recording:
    builder = builder or RecordingBuilder()
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                document = orjson.loads(line)
                records = document.get("samples", [document]) if isinstance(document, dict) else document
                if not isinstance(records, list):
                    raise SampleError("expected a sample object, a list, or {\"samples\": [...]}")
                for record in records:
                    builder.add_sample(sample_from_dict(record))
            except (orjson.JSONDecodeError, SampleError) as exc:
                raise SourceError(f"{path}:{number}: {exc}") from exc
    return builder.build()


def _csv_value(parameter: str, text: str) -> float | str | bool:
    if parameter == "consciousness":
        return text.strip().upper()
    if parameter == "on_oxygen":
        return text.strip().lower() in ("1", "true", "yes", "o2")
    return float(text)


def read_csv(path: Path) -> Recording:
    builder = RecordingBuilder()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not {"patient_id", "device_time_ms"} <= columns:
            raise SourceError(f"{path}: CSV needs columns patient_id and device_time_ms "
                              f"(and parameter,value or one column per parameter); has {sorted(columns)}")
        long = {"parameter", "value"} <= columns
        wide = [name for name in PARAM_INDEX if name in columns]
        if not long and not wide:
            raise SourceError(f"{path}: no parameter,value columns and no parameter-named columns")
        for number, row in enumerate(reader, start=2):
            try:
                pairs = [(row["parameter"], row["value"])] if long else [(p, row[p]) for p in wide]
                for parameter, text in pairs:
                    if text is None or not text.strip() or text.strip().lower() == "nan":
                        continue
                    record = {"patient_id": row["patient_id"], "ward": row.get("ward") or "",
                              "bed": row.get("bed") or "", "source": row.get("source") or path.name,
                              "parameter": parameter, "value": _csv_value(parameter, text),
                              "device_time_ms": int(float(row["device_time_ms"]))}
                    builder.add_sample(sample_from_dict(record))
            except (ValueError, KeyError) as exc:
                raise SourceError(f"{path}:{number}: {exc}") from exc
    return builder.build()


def _physionet_2019_stay(name: str, text: IO[str], builder: RecordingBuilder, start_ms: int) -> None:
    header = text.readline().strip().split("|")
    try:
        hours = header.index("ICULOS")
    except ValueError as exc:
        raise SourceError(f"{name}: not a PhysioNet 2019 .psv (no ICULOS column)") from exc
    wanted = [(header.index(column), parameter, f"PhysioNet2019:{column}")
              for column, parameter in PHYSIONET_2019_COLUMNS.items() if column in header]
    unit1 = header.index("Unit1") if "Unit1" in header else None
    unit2 = header.index("Unit2") if "Unit2" in header else None
    patient_id = Path(name).stem
    ward = "ICU"
    for line in text:
        fields = line.rstrip("\n").split("|")
        if len(fields) != len(header):
            continue
        if ward == "ICU":
            if unit1 is not None and fields[unit1] == "1":
                ward = "MICU"
            elif unit2 is not None and fields[unit2] == "1":
                ward = "SICU"
        time_ms = start_ms + int(float(fields[hours]) * HOUR_MS)
        for index, parameter, code in wanted:
            value = float(fields[index])
            if not math.isnan(value):
                builder.add(patient_id, ward, "", parameter, value, time_ms, "physionet2019", code)


def _physionet_2012_stay(name: str, text: IO[str], builder: RecordingBuilder, start_ms: int) -> None:
    header = text.readline().strip()
    if header != "Time,Parameter,Value":
        raise SourceError(f"{name}: not a PhysioNet 2012 record (header {header!r})")
    rows = [parts for parts in (line.strip().split(",") for line in text) if len(parts) == 3]
    # The 00:00 descriptors are sorted in among the first measurements: read them first.
    patient_id, ward = Path(name).stem, "ICU"
    for _clock, parameter, text_value in rows:
        if parameter == "RecordID":
            patient_id = str(int(float(text_value)))
        elif parameter == "ICUType":
            ward = PHYSIONET_2012_UNITS.get(int(float(text_value)), "ICU")
    for clock, parameter, text_value in rows:
        if parameter in ("RecordID", "ICUType"):
            continue
        value = float(text_value)
        hours, minutes = clock.split(":")
        time_ms = start_ms + (int(hours) * 60 + int(minutes)) * 60_000
        code = f"PhysioNet2012:{parameter}"
        if parameter in PHYSIONET_2012_PARAMETERS:
            if value >= 0:  # -1 marks a missing value
                builder.add(patient_id, ward, "", PHYSIONET_2012_PARAMETERS[parameter], value,
                            time_ms, "physionet2012", code)
        elif parameter == "GCS" and value >= 3:
            builder.add(patient_id, ward, "", "consciousness", gcs_to_acvpu(value), time_ms,
                        "physionet2012", code)
        elif parameter == "FiO2" and value > 0:
            # Charted as a fraction (0.21-1.0); a few sites chart percent.
            fraction = value / 100 if value > 1 else value
            builder.add(patient_id, ward, "", "on_oxygen", fraction > AIR_FIO2 + 1e-9, time_ms,
                        "physionet2012", code)
        elif parameter == "MechVent" and value == 1:
            builder.add(patient_id, ward, "", "on_oxygen", True, time_ms, "physionet2012", code)


def _members(path: Path, suffix: str) -> Iterator[tuple[str, IO[str]]]:
    """(name, text) of the files ending in ``suffix`` in a folder, a tar.gz, or the file itself."""
    if path.is_dir():
        files = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        for file in files:
            with open(file, encoding="utf-8") as handle:
                yield file.name, handle
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(suffix):
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        yield member.name, io.TextIOWrapper(extracted, encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as handle:
            yield path.name, handle


def read_physionet2019(path: Path, start_ms: int = RECORDING_START_MS, max_stays: int | None = None) -> Recording:
    builder = RecordingBuilder()
    stays = 0
    for name, text in _members(path, ".psv"):
        if max_stays is not None and stays >= max_stays:
            break
        try:
            _physionet_2019_stay(name, text, builder, start_ms)
        except ValueError as exc:
            raise SourceError(f"{name}: {exc}") from exc
        stays += 1
    if not stays:
        raise SourceError(f"{path}: no PhysioNet 2019 .psv files")
    return builder.build()


def read_physionet2012(path: Path, start_ms: int = RECORDING_START_MS, max_stays: int | None = None) -> Recording:
    builder = RecordingBuilder()
    stays = 0
    for name, text in _members(path, ".txt"):
        if Path(name).name.startswith("Outcomes"):
            continue
        if max_stays is not None and stays >= max_stays:
            break
        try:
            _physionet_2012_stay(name, text, builder, start_ms)
        except ValueError as exc:
            raise SourceError(f"{name}: {exc}") from exc
        stays += 1
    if not stays:
        raise SourceError(f"{path}: no PhysioNet 2012 record files")
    return builder.build()


def sniff_kind(path: Path) -> str:
    """ndjson, csv, physionet2019 or physionet2012, from the name and a first look."""
    name = path.name.lower()
    if path.is_dir():
        if next(path.rglob("*.psv"), None) is not None:
            return "physionet2019"
        if next((p for p in path.rglob("*.txt") if not p.name.startswith("Outcomes")), None) is not None:
            return "physionet2012"
        raise SourceError(f"{path}: a folder without .psv (PhysioNet 2019) or .txt (PhysioNet 2012) files")
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            for member in archive:
                if member.name.endswith(".psv"):
                    return "physionet2019"
                if member.name.endswith(".txt") and "Outcomes" not in member.name:
                    return "physionet2012"
        raise SourceError(f"{path}: an archive without PhysioNet 2019 or 2012 files")
    if name.endswith(".psv"):
        return "physionet2019"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".ndjson", ".jsonl", ".json")):
        return "ndjson"
    raise SourceError(f"{path}: unknown kind of file (expected .ndjson, .jsonl, .csv, .psv, "
                      "a PhysioNet folder or .tar.gz)")


def read_path(path: Path, start_ms: int = RECORDING_START_MS, max_stays: int | None = None) -> Recording:
    """Read any supported file or folder; raises FileNotFoundError or SourceError."""
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    kind = sniff_kind(path)
    if kind == "ndjson":
        return read_ndjson(path)
    if kind == "csv":
        return read_csv(path)
    if kind == "physionet2019":
        return read_physionet2019(path, start_ms, max_stays)
    return read_physionet2012(path, start_ms, max_stays)


__all__ = ["RECORDING_START_MS", "SourceError", "gcs_to_acvpu", "read_csv", "read_ndjson",
           "read_path", "read_physionet2012", "read_physionet2019", "sniff_kind"]
