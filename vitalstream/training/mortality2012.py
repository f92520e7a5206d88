"""The second data set: in-hospital death from the first 48 h of the PhysioNet/CinC 2012
challenge (set A), as training rows (stacked with 2019, see `fit`) and as a check.

Each stay's charted vitals become canonical samples at their real, irregular times
(heart rate; respiration rate; invasive or non-invasive systolic and diastolic pressure;
temperature; the set has no pulse oximetry, and SaO2 is a blood gas, so SpO2 is absent).
The model scores every hour from 1 h to 48 h; a stay's score is its highest hourly risk.
Vitals-only NEWS2 is scored the same way from the engine's last values, without and with
2 points for supplemental oxygen (the last FiO2 charted so far above 0.21).

Silva I, Moody G, Scott DJ, Celi LA, Mark RG. Predicting In-Hospital Mortality of ICU
Patients: the PhysioNet/Computing in Cardiology Challenge 2012. Comput Cardiol 2012;39:245-248.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from vitalstream.features import DEFAULT_WINDOWS_S, feature_names, features_at
from vitalstream.samples import PARAM_INDEX
from vitalstream.scoring.model import RiskModel
from vitalstream.training.baseline import SCORED, score_values
from vitalstream.training.evaluation import AGE_BANDS
from vitalstream.training.metrics import (
    BOOTSTRAP_RESAMPLES,
    RankedRows,
    stay_weights,
    with_interval,
)

ARCHIVE = "physionet2012_set-a.tar.gz"
PARAMETERS_2012: dict[str, str] = {
    "HR": "heart_rate",
    "RespRate": "resp_rate",
    "SysABP": "systolic_bp",
    "NISysABP": "systolic_bp",
    "DiasABP": "diastolic_bp",
    "NIDiasABP": "diastolic_bp",
    "Temp": "temperature",
}
# NEWS2 parameter of each challenge-2019 column scored by the baseline.
NEWS2_LAST: dict[str, str] = {"Resp": "resp_rate", "O2Sat": "spo2", "SBP": "systolic_bp",
                              "HR": "heart_rate", "Temp": "temperature"}


def read_set_a_2012(archive: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Stays (record id, age, sex, samples, FiO2 charting) and in-hospital death by record id."""
    stays: list[dict[str, Any]] = []
    deaths: dict[int, int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            text = handle.read().decode("ascii", "replace")
            name = Path(member.name).name
            if name.startswith("Outcomes"):
                for line in text.splitlines()[1:]:
                    cells = line.split(",")
                    deaths[int(cells[0])] = int(cells[-1])
                continue
            if not name.endswith(".txt"):
                continue
            stay: dict[str, Any] = {"age": np.nan, "sex": np.nan, "samples": [], "fio2": []}
            for line in text.splitlines()[1:]:
                time_text, parameter, value_text = line.split(",")
                value = float(value_text)
                if parameter == "RecordID":
                    stay["record"] = int(value)
                elif parameter == "Age":
                    stay["age"] = value if value >= 0 else np.nan
                elif parameter == "Gender":
                    stay["sex"] = value if value in (0.0, 1.0) else np.nan
                elif parameter in PARAMETERS_2012 and value > 0:
                    hours, minutes = time_text.split(":")
                    seconds = int(hours) * 3600 + int(minutes) * 60
                    stay["samples"].append((PARAM_INDEX[PARAMETERS_2012[parameter]], seconds, value))
                elif parameter == "FiO2" and value > 0:
                    hours, minutes = time_text.split(":")
                    stay["fio2"].append((int(hours) * 3600 + int(minutes) * 60, value))
            if "record" in stay:
                stays.append(stay)
    return stays, deaths


HOURS = np.arange(1, 49, dtype=float)  # each stay is scored at 1 h, 2 h, ... 48 h


@dataclasses.dataclass(frozen=True)
class Set2012:
    """2012 set A as hourly feature-engine rows: stay ``i`` owns rows 48 i .. 48 i + 47."""

    records: np.ndarray
    died: np.ndarray  # per stay
    age: np.ndarray
    sex: np.ndarray
    features: np.ndarray  # engine rows, len(HOURS) per stay
    news2: np.ndarray  # vitals-only NEWS2 per row, no oxygen points
    on_oxygen: np.ndarray  # per row: the last FiO2 charted so far was above 0.21

    @property
    def n_stays(self) -> int:
        return len(self.died)

    def rows_of(self, stays: np.ndarray) -> np.ndarray:
        stays = np.asarray(stays, dtype=np.int64)
        return (stays[:, None] * len(HOURS) + np.arange(len(HOURS))[None, :]).ravel()

    def row_labels(self) -> np.ndarray:
        return np.repeat(self.died, len(HOURS)).astype(float)


def load_2012(data_dir: str | os.PathLike[str],
              windows_s: tuple[int, ...] = DEFAULT_WINDOWS_S) -> Set2012 | None:
    """The 2012 set A rows, or None when the archive is not in ``data_dir``."""
    archive = Path(data_dir) / ARCHIVE
    if not archive.is_file():
        return None
    stays, deaths = read_set_a_2012(archive)
    stays = [s for s in stays if s["record"] in deaths]
    patient, param, time_s, value = [], [], [], []
    for i, stay in enumerate(stays):
        for p, t, v in stay["samples"]:
            patient.append(i)
            param.append(p)
            time_s.append(t)
            value.append(v)
    q_patient = np.repeat(np.arange(len(stays)), len(HOURS))
    q_hours = np.tile(HOURS, len(stays))
    features = features_at(np.array(patient, dtype=np.int64), np.array(param, dtype=np.int64),
                           np.array(time_s, dtype=float), np.array(value, dtype=float),
                           q_patient, q_hours * 3600.0, windows_s=windows_s)
    names = feature_names(windows_s)
    news2 = np.zeros(len(q_hours))
    for column, score in SCORED:
        news2 += score_values(features[:, names.index(f"{NEWS2_LAST[column]}_last")], score)
    on_oxygen = np.zeros(len(q_hours), dtype=bool)
    for i, stay in enumerate(stays):
        if stay["fio2"]:
            times = np.array([t for t, _ in stay["fio2"]], dtype=float)
            fio2 = np.array([v for _, v in stay["fio2"]], dtype=float)
            fio2 = np.where(fio2 > 1.0, fio2 / 100.0, fio2)  # a few are charted in %
            order = np.argsort(times, kind="stable")
            last = np.searchsorted(times[order], HOURS * 3600.0, side="right") - 1
            on_oxygen[i * len(HOURS):(i + 1) * len(HOURS)] = (last >= 0) & (
                fio2[order][np.maximum(last, 0)] > 0.21)
    return Set2012(
        records=np.array([s["record"] for s in stays]),
        died=np.array([deaths[s["record"]] for s in stays]),
        age=np.array([s["age"] for s in stays]), sex=np.array([s["sex"] for s in stays]),
        features=features, news2=news2, on_oxygen=on_oxygen,
    )


def death_figures(data: Set2012, stays: np.ndarray, row_risk: np.ndarray,
                  draws: int = BOOTSTRAP_RESAMPLES, seed: int = 20190) -> dict[str, Any]:
    """AUROC for in-hospital death of the highest score over the first 48 h (model, NEWS2
    without and with oxygen points), with bootstrap intervals by stay, on ``stays``;
    ``row_risk`` holds the model's risk of ``data.rows_of(stays)``."""
    rows = data.rows_of(stays)
    died = data.died[stays].astype(float)
    scores = {
        "model": row_risk.reshape(len(stays), -1).max(axis=1),
        "news2": data.news2[rows].reshape(len(stays), -1).max(axis=1),
        "news2_oxygen": (data.news2[rows] + 2.0 * data.on_oxygen[rows]).reshape(
            len(stays), -1).max(axis=1),
    }
    weights = stay_weights(len(stays), draws, seed)
    out: dict[str, Any] = {"stays": int(len(stays)), "deaths": int(died.sum())}
    for name, score in scores.items():
        ranked = RankedRows(score, died)
        out[f"{name}_auroc"] = with_interval(ranked.auroc, len(stays), weights)
    age = data.age[stays]
    out["subgroups"] = {}
    for label, lo, hi in AGE_BANDS:
        chosen = (age >= lo) & (age < hi)
        out["subgroups"][label] = _group(scores["model"], died, chosen, weights)
    for label, value in (("female", 0.0), ("male", 1.0)):
        out["subgroups"][label] = _group(scores["model"], died, data.sex[stays] == value, weights)
    return out


def _group(score: np.ndarray, died: np.ndarray, chosen: np.ndarray,
           weights: np.ndarray) -> dict[str, Any]:
    ranked = RankedRows(score[chosen], died[chosen])
    return {"stays": int(chosen.sum()), "deaths": int(died[chosen].sum()),
            "auroc": with_interval(ranked.auroc, int(chosen.sum()), weights[:, chosen])}


def mortality_check(model: RiskModel, data_dir: str | os.PathLike[str],
                    stays: np.ndarray | None = None) -> dict[str, Any] | None:
    """`death_figures` of the model on the 2012 stays ``stays`` (default: all); None when
    the 2012 archive is not in ``data_dir``."""
    data = load_2012(data_dir, model.windows_s)
    if data is None:
        return None
    chosen = np.arange(data.n_stays) if stays is None else np.asarray(stays)
    rows = data.rows_of(chosen)
    risk = model.predict_proba(model.input_row(data.features[rows], None, None, 0.0))
    return death_figures(data, chosen, risk)
