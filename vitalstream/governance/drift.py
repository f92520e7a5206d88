"""Drift of the model's risk and of its inputs against the training reference, as the
population stability index (PSI).

The reference is the distribution of each variable in the model's training data, cut
into bins at its deciles; it is stored beside the model (``models/<model>_reference.json``)
and made by ``reference_from_values``. Live values fall into the same bins, and

    PSI = sum over bins of (live share - reference share) * ln(live share / reference share)

with each share floored at ``FLOOR`` (an empty bin would otherwise be infinite). Below
0.1 is read as no shift, 0.1-0.25 a moderate one, above 0.25 a major one.

>>> reference = reference_from_values(np.arange(1000.0), bins=10)
>>> round(psi(reference, counts(reference, np.arange(1000.0))), 6)
0.0
>>> psi(reference, counts(reference, np.arange(500.0, 1500.0))) > 0.25
True
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

FLOOR = 1e-4
SCHEMA = 1
# The variables watched: the model's risk and the vitals its features are made of.
VARIABLES: tuple[str, ...] = ("risk", "heart_rate", "resp_rate", "spo2", "systolic_bp", "temperature")


@dataclasses.dataclass(frozen=True)
class Reference:
    """Inner bin edges (len B-1) and the reference share of each of the B bins."""

    edges: tuple[float, ...]
    expected: tuple[float, ...]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "expected": list(self.expected), "n": self.n}


def reference_from_values(values: np.ndarray, bins: int = 10) -> Reference:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < bins:
        raise ValueError(f"{values.size} values cannot make {bins} bins")
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1) / values.size
    return Reference(tuple(float(e) for e in edges), tuple(float(s) for s in shares), int(values.size))


def counts(reference: Reference, values: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return np.bincount(np.searchsorted(np.asarray(reference.edges), values, side="right"),
                       minlength=len(reference.expected))


def psi(reference: Reference, live_counts: np.ndarray) -> float:
    total = float(np.sum(live_counts))
    if total <= 0:
        return float("nan")
    live = np.maximum(np.asarray(live_counts, dtype=np.float64) / total, FLOOR)
    expected = np.maximum(np.asarray(reference.expected), FLOOR)
    return float(np.sum((live - expected) * np.log(live / expected)))


def write_reference(path: str | Path, samples: Mapping[str, np.ndarray], source: str,
                    model_version: str | None = None, bins: int = 10) -> dict[str, Any]:
    document = {"schema": SCHEMA, "source": source, "model_version": model_version,
                "variables": {name: reference_from_values(values, bins).to_dict()
                              for name, values in samples.items()}}
    Path(path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return document


def load_reference(path: str | Path) -> dict[str, Reference]:
    """The references of a file written by ``write_reference``; ValueError if unusable."""
    try:
        document = orjson.loads(Path(path).read_bytes())
        return {name: Reference(tuple(v["edges"]), tuple(v["expected"]), int(v["n"]))
                for name, v in document["variables"].items()}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"drift reference {path}: {type(exc).__name__}") from None


class DriftMonitor:
    """PSI over the last ``window`` censuses of the monitored population.

    ``add({variable: values})`` takes one census (each patient's current value);
    ``psi()`` is each variable's PSI over the window, NaN until ``min_observations``."""

    def __init__(self, references: Mapping[str, Reference], window: int = 30, min_observations: int = 200) -> None:
        self.references = dict(references)
        self.min_observations = min_observations
        self.windows: dict[str, deque[np.ndarray]] = {name: deque(maxlen=window) for name in self.references}

    def add(self, census: Mapping[str, Sequence[float]]) -> None:
        for name, reference in self.references.items():
            self.windows[name].append(counts(reference, census.get(name, ())))

    def observations(self, name: str) -> int:
        return int(sum(int(c.sum()) for c in self.windows[name]))

    def psi(self) -> dict[str, float]:
        out = {}
        for name, reference in self.references.items():
            window = self.windows[name]
            total = np.sum(window, axis=0) if window else np.zeros(len(reference.expected))
            out[name] = psi(reference, total) if total.sum() >= self.min_observations else float("nan")
        return out


def training_reference(model_path: str | None, data_dir: str | None, out: str | Path,
                       stays: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The reference of the shipped model from its training data: PhysioNet 2019 set A,
    the stays not held out (``models/sepsis_risk_holdout.txt``), ``stays`` of them drawn
    at random; the risk as the model computes it on each hourly row, and the charted vitals."""
    from vitalstream.scoring.model import RiskModel
    from vitalstream.training.dataset import cohort_risk
    from vitalstream.training.physionet import load_set_a

    model = RiskModel.load(model_path) if model_path else RiskModel.load()
    cohort = load_set_a(data_dir)
    holdout_file = Path(__file__).resolve().parents[2] / "models" / "sepsis_risk_holdout.txt"
    held_out = set(holdout_file.read_text().split()) if holdout_file.exists() else set()
    training = [i for i, name in enumerate(cohort.names) if Path(name).stem not in held_out]
    chosen = np.sort(np.random.default_rng(seed).choice(training, size=min(stays, len(training)), replace=False))
    subset = cohort.subset(chosen)
    columns = {"heart_rate": "HR", "resp_rate": "Resp", "spo2": "O2Sat", "systolic_bp": "SBP", "temperature": "Temp"}
    samples = {"risk": cohort_risk(model, subset)}
    samples.update({name: subset.column(column) for name, column in columns.items()})
    return write_reference(out, samples, model_version=model.version, source=(
        f"PhysioNet 2019 set A, {len(chosen)} training stays (not held out), hourly rows, seed {seed}"))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the drift reference of the shipped model.")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--data-dir", help="folder of the PhysioNet archives")
    parser.add_argument("--stays", type=int, default=2000)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "models" / "sepsis_risk_reference.json"))
    arguments = parser.parse_args()
    written = training_reference(arguments.model, arguments.data_dir, arguments.out, arguments.stays)
    print(f"{arguments.out}: {written['source']}")
