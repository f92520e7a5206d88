"""A second check of the same risk: in-hospital death from the first 48 h of the
PhysioNet/CinC 2012 challenge (set A), with the sepsis model unchanged.

Each stay's charted vitals become canonical samples at their real, irregular times
(heart rate; respiration rate; invasive or non-invasive systolic and diastolic pressure;
temperature; the set has no pulse oximetry, and SaO2 is a blood gas, so SpO2 is absent).
The model scores every hour from 1 h to 48 h; a stay's score is its highest hourly risk.
Vitals-only NEWS2 is scored the same way from the engine's last values.

Silva I, Moody G, Scott DJ, Celi LA, Mark RG. Predicting In-Hospital Mortality of ICU
Patients: the PhysioNet/Computing in Cardiology Challenge 2012. Comput Cardiol 2012;39:245-248.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from vitalstream.features import feature_names, features_at
from vitalstream.samples import PARAM_INDEX
from vitalstream.scoring.model import RiskModel
from vitalstream.training.baseline import SCORED, score_values

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
    """Stays (record id, age, sex, samples) and in-hospital death by record id."""
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
            stay: dict[str, Any] = {"age": np.nan, "sex": np.nan, "samples": []}
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
            if "record" in stay:
                stays.append(stay)
    return stays, deaths


def mortality_check(model: RiskModel, data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """AUROC for in-hospital death of the model's and NEWS2's highest hourly score in the
    first 48 h; None when the 2012 archive is not in ``data_dir``."""
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
    hours = np.arange(1, 49, dtype=float)
    q_patient = np.repeat(np.arange(len(stays)), len(hours))
    q_hours = np.tile(hours, len(stays))
    features = features_at(np.array(patient, dtype=np.int64), np.array(param, dtype=np.int64),
                           np.array(time_s, dtype=float), np.array(value, dtype=float),
                           q_patient, q_hours * 3600.0, windows_s=model.windows_s)
    age = np.array([s["age"] for s in stays])[q_patient]
    sex = np.array([s["sex"] for s in stays])[q_patient]
    risk = model.predict_proba(model.input_row(features, age, sex, q_hours))
    names = feature_names(model.windows_s)
    news2 = np.zeros(len(q_hours))
    for column, score in SCORED:
        news2 += score_values(features[:, names.index(f"{NEWS2_LAST[column]}_last")], score)
    died = np.array([deaths[s["record"]] for s in stays])
    max_risk = risk.reshape(len(stays), -1).max(axis=1)
    max_news2 = news2.reshape(len(stays), -1).max(axis=1)
    return {
        "stays": len(stays),
        "deaths": int(died.sum()),
        "model_max_risk_auroc": float(roc_auc_score(died, max_risk)),
        "news2_max_auroc": float(roc_auc_score(died, max_news2)),
    }
