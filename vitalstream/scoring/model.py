"""The runtime sepsis risk model: calibrated hourly risk from windowed vital-sign features.

The artefact is a skops file (``models/sepsis_risk.skops``): skops rebuilds only the types
it is told to trust, so loading a file that came from elsewhere cannot run code the way
a pickle can. Beside it, ``sepsis_risk.skops.sha256`` (``sha256sum`` format) holds the
file's checksum; ``load`` refuses a file whose bytes do not match.

Explanations are per-factor perturbation: for each factor (all features of one vital
sign, or age, sex, time monitored) the risk is recomputed with that factor's features set
to their typical value in training (median of non-septic hours); the factor's weight is
how much lower the risk would then be. Deterministic, model-agnostic, and it says what
the model leans on, not what causes the patient's state.

>>> model = RiskModel.load()
>>> row = model.input_row(np.full(model.n_engine_features, np.nan), 70.0, True, 5.0)
>>> 0.0 <= float(model.predict_proba(row[None, :])[0]) <= 1.0
True
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numba
import numpy as np
import orjson

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL = MODELS_DIR / "sepsis_risk.skops"
FORMAT = "vitalstream-risk-model/2"

# Demographic and clock inputs the monitor passes to `RiskModel.input_row`. Model format 2
# reads none of them: the risk is a function of the vitals' windows alone (model card:
# time since admission ranked hours, not patients, and did not carry to other wards).
CONTEXT_FEATURES: tuple[str, ...] = ("age_years", "sex_male", "hours_monitored")

# The only object types the artefact may contain besides plain containers and arrays.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

FACTOR_LABELS: dict[str, str] = {
    "heart_rate": "heart rate",
    "resp_rate": "respiratory rate",
    "spo2": "SpO2",
    "systolic_bp": "systolic blood pressure",
    "diastolic_bp": "diastolic blood pressure",
    "temperature": "temperature",
    "shock_index": "shock index (heart rate / systolic pressure)",
    "pulse_pressure": "pulse pressure",
    "map_estimate": "mean arterial pressure",
    "news2_vitals_total": "NEWS2 (vitals)",
}
# Factors an alert may name: what a nurse can check at the bedside. Anything else (a
# feature that is not one of these) is never named.
BEDSIDE_FACTORS: frozenset[str] = frozenset({
    "heart rate", "respiratory rate", "SpO2", "systolic blood pressure",
    "diastolic blood pressure", "temperature", "shock index (heart rate / systolic pressure)",
    "pulse pressure", "mean arterial pressure", "NEWS2 (vitals)",
})


@numba.njit(cache=True, nogil=True)
def _forest_margin(X, feature, threshold, missing_left, left, right, is_leaf, value, roots,
                   baseline):  # pragma: no cover - compiled
    """Sum of leaf values over all trees per row, plus the baseline (log-odds)."""
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        total = baseline
        for root in roots:
            node = root
            while not is_leaf[node]:
                x = X[i, feature[node]]
                if np.isnan(x):
                    go_left = missing_left[node]
                else:
                    go_left = x <= threshold[node]
                node = left[node] if go_left else right[node]
            total += value[node]
        out[i] = total
    return out


class _Forest:
    """The boosted trees as flat arrays, walked by one compiled loop: sklearn's predict
    calls Python once per tree, which costs tens of ms for a batch; this costs ~1 ms."""

    ARRAYS = ("feature", "threshold", "missing_left", "left", "right", "is_leaf", "value")

    def __init__(self, arrays: tuple[np.ndarray, ...], roots: np.ndarray, baseline: float) -> None:
        self.arrays = arrays
        self.roots = roots
        self.baseline = baseline

    @classmethod
    def from_estimator(cls, estimator: Any) -> _Forest:
        features, thresholds, missing, lefts, rights, leaves, values, roots = ([] for _ in range(8))
        offset = 0
        for stage in estimator._predictors:
            nodes = stage[0].nodes
            if nodes["is_categorical"].any():
                raise ModelFileError("categorical splits are not supported")
            roots.append(offset)
            features.append(nodes["feature_idx"].astype(np.int64))
            thresholds.append(nodes["num_threshold"].astype(np.float64))
            missing.append(nodes["missing_go_to_left"].astype(np.bool_))
            lefts.append(nodes["left"].astype(np.int64) + offset)
            rights.append(nodes["right"].astype(np.int64) + offset)
            leaves.append(nodes["is_leaf"].astype(np.bool_))
            values.append(nodes["value"].astype(np.float64))
            offset += len(nodes)
        return cls(tuple(np.concatenate(a) for a in (features, thresholds, missing, lefts, rights, leaves, values)),
                   np.asarray(roots, dtype=np.int64), float(np.ravel(estimator._baseline_prediction)[0]))

    def margin(self, X: np.ndarray) -> np.ndarray:
        return _forest_margin(np.ascontiguousarray(X, dtype=np.float64), *self.arrays,
                             self.roots, self.baseline)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.margin(X)))


class ModelFileError(Exception):
    """The model file is missing, altered, or not a vitalstream risk model."""


def factor_of(feature_name: str) -> str:
    """The human-readable factor a feature belongs to (its vital sign, or the context input)."""
    if feature_name.startswith("news2_") and feature_name != "news2_vitals_total":
        feature_name = feature_name.removeprefix("news2_")  # a parameter's NEWS2 score
    for key in sorted(FACTOR_LABELS, key=len, reverse=True):  # longest name first
        if feature_name == key or feature_name.startswith(key + "_"):
            return FACTOR_LABELS[key]
    return feature_name.replace("_", " ")


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: str | os.PathLike[str]) -> Path:
    return Path(str(path) + ".sha256")


def write_checksum(path: str | os.PathLike[str]) -> str:
    """Write ``<path>.sha256`` in ``sha256sum`` format; returns the hex digest."""
    digest = sha256_of(path)
    checksum_path(path).write_text(f"{digest}  {Path(path).name}\n")
    return digest


# Every member of a written model file carries this time, so its bytes do not depend on
# when it was written.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def canonical_skops(data: bytes) -> bytes:
    """A skops archive rewritten so the same payload always gives the same bytes.

    skops names each array's member after the array's memory address (``id``), records
    those addresses as ``__id__`` and stamps every member with the current time; loading
    uses the names and ids only to find members and to share repeated objects. Here they
    are renumbered in the order the schema first mentions them, members are written in
    name order with a fixed time, and the loaded payload is unchanged (tested)."""
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        members = {name: archive.read(name) for name in archive.namelist() if name != "schema.json"}
    files: dict[str, str] = {}
    ids: dict[Any, int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "__id__":
                    node[key] = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and isinstance(value, str) and value in members:
                    suffix = Path(value).suffix
                    node[key] = files.setdefault(value, f"{len(files):06d}{suffix}")
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    if set(files) != set(members):
        raise ModelFileError("the skops archive has members its schema does not name")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        renamed = {new: members[old] for old, new in files.items()}
        for name in sorted(renamed):
            archive.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), renamed[name])
        archive.writestr(zipfile.ZipInfo("schema.json", date_time=_ZIP_TIME),
                         json.dumps(schema, indent=2))
    return out.getvalue()


def write_model(payload: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """Write a model payload as a skops file in canonical form (`canonical_skops`: the
    same trees and numbers give the same bytes) and its ``.sha256``; returns the digest."""
    import skops.io

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(canonical_skops(skops.io.dumps(payload)))
    return write_checksum(path)


# Vitals-only NEWS2 bands, vectorised (chart rounding as `vitalstream.scoring.news2`,
# a test holds them equal): parameter -> (decimal places, upper band edges, scores).
NEWS2_BANDS: dict[str, tuple[int, tuple[float, ...], tuple[int, ...]]] = {
    "resp_rate": (0, (8, 11, 20, 24), (3, 1, 0, 2, 3)),
    "spo2": (0, (91, 93, 95), (3, 2, 1, 0)),
    "systolic_bp": (0, (90, 100, 110, 219), (3, 2, 1, 0, 3)),
    "heart_rate": (0, (40, 50, 90, 110, 130), (3, 1, 0, 1, 2, 3)),
    "temperature": (1, (350, 360, 380, 390), (3, 1, 0, 1, 2)),
}
TREND_PARAMETERS: tuple[str, ...] = (
    "heart_rate", "resp_rate", "spo2", "systolic_bp", "diastolic_bp", "temperature",
)
# Inputs derived from one feature-engine row, in this order, after the engine's columns:
# NEWS2 vitals-only parameter scores of the last values and their sum; pulse pressure and
# the usual MAP estimate; each vital's last value minus its 6 h mean (where the patient is
# against their own recent hours); each vital's 2 h slope minus its 6 h slope
# (acceleration). Training and serving compute them with the same function.
DERIVED_FEATURES: tuple[str, ...] = (
    *(f"news2_{p}" for p in NEWS2_BANDS), "news2_vitals_total",
    "pulse_pressure", "map_estimate",
    *(f"{p}_vs_6h_mean" for p in TREND_PARAMETERS),
    *(f"{p}_acceleration" for p in TREND_PARAMETERS),
)


def news2_band_scores(parameter: str, values: np.ndarray) -> np.ndarray:
    """NEWS2 score of each value of one parameter (SpO2 scale 1); NaN where missing."""
    places, edges, scores = NEWS2_BANDS[parameter]
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        rounded = np.floor(np.abs(values) * 10**places + 0.5 + 1e-9) * np.sign(values)
    index = np.searchsorted(np.asarray(edges, dtype=float), np.nan_to_num(rounded), side="left")
    return np.where(np.isnan(values), np.nan, np.asarray(scores, dtype=float)[index])


def derived_inputs(features: np.ndarray, engine_names: list[str]) -> np.ndarray:
    """DERIVED_FEATURES of 2-D feature-engine rows (one row per row)."""
    index = {name: i for i, name in enumerate(engine_names)}

    def column(name: str) -> np.ndarray:
        return features[:, index[name]]

    news = [news2_band_scores(p, column(f"{p}_last")) for p in NEWS2_BANDS]
    with np.errstate(all="ignore"):
        total = np.nansum(np.column_stack(news), axis=1)
        sbp, dbp = column("systolic_bp_last"), column("diastolic_bp_last")
        out = [*news, total, sbp - dbp, (sbp + 2.0 * dbp) / 3.0]
        out += [column(f"{p}_last") - column(f"{p}_mean_6h") for p in TREND_PARAMETERS]
        out += [column(f"{p}_slope_per_h_2h") - column(f"{p}_slope_per_h_6h")
                for p in TREND_PARAMETERS]
    return np.column_stack(out)


def assemble_inputs(
    features: np.ndarray,
    engine_columns: np.ndarray,
    engine_names: list[str] | None = None,
) -> np.ndarray:
    """The model's used engine columns, then (when ``engine_names`` is given) the
    DERIVED_FEATURES; 1-D ``features`` give one row, 2-D one row per row."""
    features = np.asarray(features, dtype=float)
    rows = features[None, :] if features.ndim == 1 else features
    parts = [rows[:, engine_columns]]
    if engine_names is not None:
        parts.append(derived_inputs(rows, engine_names))
    out = np.hstack(parts)
    return out[0] if features.ndim == 1 else out


# Test hook, never set in production: the test suite starts dozens of workers, and loading
# the model in its child process (importing scikit-learn and skops) was most of each start.
# With this variable naming a folder, a successful child's export is kept there under the
# SHA-256 of the model file's bytes and of its checksum file's, and read back for the same
# bytes; any other bytes (a changed model, a wrong checksum) go to the child as before.
TEST_CACHE_ENV = "VITALSTREAM_TEST_MODEL_CACHE"


def _test_cache_file(path: str | os.PathLike[str] | None) -> Path | None:
    folder = os.environ.get(TEST_CACHE_ENV)
    if not folder:
        return None
    model_path = Path(path) if path else DEFAULT_MODEL
    try:
        key = hashlib.sha256(model_path.read_bytes() + b"\0" + checksum_path(model_path).read_bytes())
    except OSError:  # missing files: the child says which
        return None
    return Path(folder) / f"{key.hexdigest()}.npz"


class RiskModel:
    """Calibrated probability that an hour is within 6 h of sepsis onset or after it
    (the PhysioNet 2019 SepsisLabel), from the feature engine's features plus age, sex and
    time since monitoring started."""

    def __init__(self, payload: dict[str, Any], checksum: str) -> None:
        if payload.get("format") != FORMAT:
            raise ModelFileError(f"not a {FORMAT} file")
        self._estimator = payload.get("estimator")  # None when loaded with load_isolated
        self._forest = payload["forest"] if "forest" in payload else _Forest.from_estimator(self._estimator)
        self._payload = {k: v for k, v in payload.items() if k != "estimator"}
        self.engine_feature_names: list[str] = list(payload["engine_feature_names"])
        self._engine_columns = np.asarray(payload["engine_columns"], dtype=np.int64)
        self._derived = bool(payload.get("derived_features", True))
        self.feature_names: list[str] = [
            *(self.engine_feature_names[c] for c in self._engine_columns),
            *(DERIVED_FEATURES if self._derived else ()),
        ]
        self.factors: list[str] = [factor_of(name) for name in self.feature_names]
        self.threshold: float = float(payload["threshold"])
        self.operating_points: dict[str, float] = dict(payload.get("operating_points", {}))
        self.windows_s: tuple[int, ...] = tuple(int(w) for w in payload["windows_s"])
        self.checksum = checksum
        self.version: str = f"{payload['version']}+{checksum[:10]}"
        self.metadata: dict[str, Any] = dict(payload.get("metadata", {}))
        # Platt calibration of the trees' log-odds: risk = 1 / (1 + exp(-(a * margin + b))).
        # Two numbers, monotone (the ranking is the trees'), and refitted at a new site by
        # `recalibrated` from its own silent-mode weeks.
        platt = np.asarray(payload["platt"], dtype=float)
        self.platt: tuple[float, float] = (float(platt[0]), float(platt[1]))
        # Risk from which the risk is shown with its factors (the alert-budget threshold).
        self.show_from: float = float(payload.get("show_from", self.threshold))
        self._reference = np.asarray(payload["reference"], dtype=float)
        # Missing inputs read as typical, so the model cannot learn one hospital's charting
        # habits from which values are absent.
        self._impute_typical = bool(payload.get("impute_typical", False))
        self._factor_columns: dict[str, np.ndarray] = {}
        for column, factor in enumerate(self.factors):
            self._factor_columns.setdefault(factor, np.zeros(0, dtype=np.int64))
            self._factor_columns[factor] = np.append(self._factor_columns[factor], column)

    @property
    def n_engine_features(self) -> int:
        """Width of the feature engine's rows this model takes (all of `feature_names(windows_s)`)."""
        return len(self.engine_feature_names)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> RiskModel:
        """Load a model file after checking its ``.sha256``; None loads the shipped model."""
        import skops.io

        model_path = Path(path) if path else DEFAULT_MODEL
        if not model_path.is_file():
            raise ModelFileError(f"no model file at {model_path}")
        sums = checksum_path(model_path)
        if not sums.is_file():
            raise ModelFileError(f"no checksum file {sums.name} beside {model_path}")
        expected = sums.read_text().split()[0].lower() if sums.read_text().split() else ""
        actual = sha256_of(model_path)
        if actual != expected:
            raise ModelFileError(
                f"checksum mismatch for {model_path}: file has {actual[:12]}..., "
                f"{sums.name} expects {expected[:12]}...; refusing to load"
            )
        try:
            untrusted = skops.io.get_untrusted_types(file=model_path)
            unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
            if unexpected:
                raise ModelFileError(f"{model_path} contains untrusted types: {unexpected}")
            payload = skops.io.load(model_path, trusted=list(TRUSTED_TYPES))
        except ModelFileError:
            raise
        except Exception as exc:  # a damaged or foreign file: say so in one line
            raise ModelFileError(f"{model_path} is not a readable skops model: {exc}") from exc
        if not isinstance(payload, dict):
            raise ModelFileError(f"{model_path} is not a vitalstream risk model")
        return cls(payload, actual)

    @classmethod
    def load_isolated(cls, path: str | os.PathLike[str] | None = None) -> RiskModel:
        """``load`` in a child process, which hands back the trees as plain arrays: the
        process that scores never imports scikit-learn and skops (about 130 MB resident,
        measured here) and gets the same model (tested). Raises ModelFileError as ``load``."""
        cached = _test_cache_file(path)
        if cached is not None and cached.is_file():
            return cls.from_export(cached.read_bytes())
        child = subprocess.run([sys.executable, "-m", "vitalstream.scoring.model", str(path or "")],
                               capture_output=True, timeout=300, check=False)
        if child.returncode != 0:
            lines = child.stderr.decode(errors="replace").strip().splitlines()
            raise ModelFileError(lines[-1].removeprefix("ModelFileError: ") if lines
                                 else f"loading the model failed (exit {child.returncode})")
        model = cls.from_export(child.stdout)
        if cached is not None:
            scratch = cached.with_name(f"{cached.name}.{os.getpid()}.part")
            scratch.write_bytes(child.stdout)
            scratch.replace(cached)  # whole or not at all: workers may start side by side
        return model

    def export(self) -> bytes:
        """The model as arrays and JSON, without pickles or scikit-learn objects."""
        scalars = {k: v for k, v in self._payload.items() if k != "forest" and not isinstance(v, np.ndarray)}
        scalars.update(checksum=self.checksum, baseline=self._forest.baseline)
        arrays = {f"forest_{name}": a for name, a in zip(_Forest.ARRAYS, self._forest.arrays, strict=True)}
        arrays.update({k: np.asarray(v) for k, v in self._payload.items() if isinstance(v, np.ndarray)})
        buffer = io.BytesIO()
        np.savez(buffer, forest_roots=self._forest.roots, **arrays,
                 scalars=np.frombuffer(orjson.dumps(scalars, default=str,
                                                    option=orjson.OPT_SERIALIZE_NUMPY), dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_export(cls, data: bytes) -> RiskModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        scalars = orjson.loads(arrays.pop("scalars").tobytes())
        checksum, baseline = scalars.pop("checksum"), float(scalars.pop("baseline"))
        forest = _Forest(tuple(arrays.pop(f"forest_{name}") for name in _Forest.ARRAYS),
                         arrays.pop("forest_roots"), baseline)
        return cls({**scalars, **arrays, "forest": forest}, checksum)

    def input_row(
        self,
        features: np.ndarray,
        age_years: float | np.ndarray | None,
        sex_male: bool | np.ndarray | None,
        hours_monitored: float | np.ndarray,
    ) -> np.ndarray:
        """Model inputs from feature-engine rows (computed with ``self.windows_s``): one row
        for 1-D ``features``, one per row for 2-D. Age, sex and hours monitored are taken
        for the monitor's call and not read (see CONTEXT_FEATURES). Training assembles its
        rows with the same function."""
        features = np.asarray(features, dtype=float)
        if features.shape[-1] != self.n_engine_features:
            raise ValueError(f"expected feature-engine rows of {self.n_engine_features} "
                             f"values (windows {self.windows_s}), got {features.shape}")
        return assemble_inputs(features, self._engine_columns,
                               self.engine_feature_names if self._derived else None)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """The trees' log-odds (uncalibrated; trained on subsampled negatives)."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got {X.shape}")
        if not len(X):
            return np.zeros(0)
        if self._impute_typical:
            X = np.where(np.isnan(X), self._reference, X)
        return self._forest.margin(X)

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated model probability (trained on subsampled negatives)."""
        return 1.0 / (1.0 + np.exp(-self.margin(X)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated risk per row, 0-1."""
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * self.margin(X) + b)))

    def recalibrated(self, platt: tuple[float, float],
                     operating_points: dict[str, float] | None = None) -> dict[str, Any]:
        """This model's payload with new Platt numbers (a local recalibration) and, if
        given, the operating points chosen again at the site (the threshold becomes its
        ``utility_optimal``, the risk is shown from its ``budget_...``): the same trees,
        inputs and ranking; write it with `write_model` (a new checksum) to use it."""
        if self._estimator is None:
            raise ModelFileError("recalibration needs the model loaded with load, not load_isolated")
        payload = {**self._payload, "estimator": self._estimator,
                   "platt": np.asarray(platt, dtype=float)}
        if operating_points:
            payload["operating_points"] = dict(operating_points)
            payload["threshold"] = float(operating_points.get("utility_optimal", self.threshold))
            budget = [v for k, v in operating_points.items() if k.startswith("budget")]
            payload["show_from"] = float(budget[0]) if budget else self.show_from
        return payload

    def factor_effects(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Per factor, each row's risk minus its risk with that factor's inputs set to their
        typical value (positive: the factor raises this row's risk)."""
        X = np.asarray(X, dtype=float)
        names = list(self._factor_columns)
        stacked = np.repeat(X[None, :, :], len(names) + 1, axis=0)
        for i, name in enumerate(names, start=1):
            columns = self._factor_columns[name]
            stacked[i][:, columns] = self._reference[columns]
        risk = self.predict_proba(stacked.reshape(-1, X.shape[1])).reshape(len(names) + 1, -1)
        return {name: risk[0] - risk[i] for i, name in enumerate(names, start=1)}

    def explain(self, x: np.ndarray, top: int = 3) -> list[tuple[str, float]]:
        """The bedside factors that raise this row's risk most: (factor, risk minus the risk
        with that factor at its typical value), largest first; only factors that raise it,
        only factors a clinician can check (BEDSIDE_FACTORS), and nothing at all below
        ``show_from``, where the risk carries little information (the model card)."""
        x = np.asarray(x, float)
        if float(self.predict_proba(x[None, :])[0]) < self.show_from:
            return []
        effects = {name: float(delta[0]) for name, delta in self.factor_effects(x[None, :]).items()
                   if name in BEDSIDE_FACTORS}
        order = sorted(effects, key=lambda name: (-effects[name], name))
        return [(name, effects[name]) for name in order[:top] if effects[name] > 0]


if __name__ == "__main__":  # the child of load_isolated: the model's arrays on stdout
    try:
        sys.stdout.buffer.write(RiskModel.load(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None).export())
    except ModelFileError as exc:
        print(f"ModelFileError: {exc}", file=sys.stderr)
        sys.exit(2)
