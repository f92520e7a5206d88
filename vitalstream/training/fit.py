"""Training the sepsis risk model on PhysioNet 2019 set A: split, fit, calibrate, choose
the operating point, and measure everything on patients the model never saw.

Split by patient (stratified by whether the stay becomes septic), seeded:
60 % fit the trees, 20 % calibrate the probabilities and choose the threshold, 20 % are
held out and only measured. Negatives in the fitting part are subsampled (documented
rate) to keep training to a few minutes on two cores; calibration on the untouched
calibration patients restores true probabilities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from vitalstream.samples import NUMERIC_PARAMETERS
from vitalstream.scoring.model import FORMAT, assemble_inputs
from vitalstream.training.physionet import Cohort
from vitalstream.training.utility import normalised_utility

MODEL_VERSION = "sepsis-vitals-1"

# Engine features the model uses: what the values were and how they moved over the 2 h
# and 6 h windows. Left out: counts, coverage, sample age, artefact counts and freshness
# flags, which measure how often a hospital charts rather than the patient and differ most
# between hospitals; and the 5 min and 30 min windows, which at hourly charting hold at
# most the current hour's value (a copy of `last`) yet live would see minute-level data the
# model never saw.
USED_STATISTICS: tuple[str, ...] = ("mean", "std", "min", "max", "slope_per_h", "change")
USED_WINDOWS: tuple[str, ...] = ("2h", "6h")
USED_NAMES: tuple[str, ...] = ("shock_index",)


def used_engine_columns(engine_names: list[str]) -> np.ndarray:
    """Indices of the engine features the model is trained on (see USED_STATISTICS)."""
    wanted = set(USED_NAMES)
    wanted |= {f"{p}_last" for p in NUMERIC_PARAMETERS}
    wanted |= {f"{p}_{s}_{w}" for p in NUMERIC_PARAMETERS for s in USED_STATISTICS
               for w in USED_WINDOWS}
    return np.array([i for i, name in enumerate(engine_names) if name in wanted], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seed: int = 20190
    fit_fraction: float = 0.6
    calibration_fraction: float = 0.2
    negative_keep: float = 0.3  # fraction of negative fitting rows kept (all positives kept)
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 500
    l2_regularization: float = 1.0
    impute_typical: bool = True  # missing inputs take the typical (median negative) value


@dataclasses.dataclass(frozen=True)
class Split:
    fit: np.ndarray
    calibration: np.ndarray
    test: np.ndarray


def split_patients(cohort: Cohort, config: TrainConfig) -> Split:
    """Stay numbers of each part; septic and non-septic stays are split separately."""
    rng = np.random.default_rng(config.seed)
    labels = cohort.column("SepsisLabel")
    septic = np.array([labels[a:b].any() for a, b in zip(cohort.offsets[:-1], cohort.offsets[1:],
                                                          strict=True)])
    parts: list[list[np.ndarray]] = [[], [], []]
    for stays in (np.flatnonzero(septic), np.flatnonzero(~septic)):
        shuffled = rng.permutation(stays)
        n_fit = int(round(len(shuffled) * config.fit_fraction))
        n_cal = int(round(len(shuffled) * config.calibration_fraction))
        parts[0].append(shuffled[:n_fit])
        parts[1].append(shuffled[n_fit:n_fit + n_cal])
        parts[2].append(shuffled[n_fit + n_cal:])
    fit, cal, test = (np.sort(np.concatenate(p)) for p in parts)
    return Split(fit, cal, test)


def rows_of(cohort: Cohort, stays: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(cohort.offsets[i], cohort.offsets[i + 1]) for i in stays])


def typical_values(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Median of each input over non-septic hours: the explanation's and imputation's
    reference. An input never observed there gets 0."""
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = np.nanmedian(X[labels == 0], axis=0)
    return np.where(np.isnan(reference), 0.0, reference)


def choose_threshold(
    risk: np.ndarray, labels: np.ndarray, offsets: np.ndarray, candidates: int = 60
) -> tuple[float, float]:
    """The risk threshold with the best normalised utility on these stays, and that utility."""
    grid = np.unique(np.quantile(risk, np.linspace(0.70, 0.995, candidates)))
    stay_labels = np.split(labels.astype(int), offsets[1:-1])
    best = (float(grid[0]), -np.inf)
    for threshold in grid:
        alerts = np.split((risk >= threshold).astype(int), offsets[1:-1])
        score = normalised_utility(stay_labels, alerts)
        if score > best[1]:
            best = (float(threshold), float(score))
    return best


def threshold_for_burden(
    risk: np.ndarray, offsets: np.ndarray, alerts_per_patient_day: float
) -> float:
    """The lowest threshold whose new alerts per patient-day do not exceed the target."""
    stay_start = np.zeros(len(risk), dtype=bool)
    stay_start[offsets[:-1][np.diff(offsets) > 0]] = True
    patient_days = len(risk) / 24.0
    for threshold in np.unique(np.quantile(risk, np.linspace(0.5, 0.9995, 400))):
        alerts = risk >= threshold
        previous = np.concatenate([[False], alerts[:-1]])
        if (alerts & (stay_start | ~previous)).sum() / patient_days <= alerts_per_patient_day:
            return float(threshold)
    return float(risk.max())


def train(
    cohort: Cohort,
    engine_features: np.ndarray,
    config: TrainConfig,
    engine_names: list[str],
    windows_s: tuple[int, ...],
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> tuple[dict[str, Any], Split]:
    """Fit, calibrate and choose operating points; returns the artefact payload and the split."""
    labels = cohort.column("SepsisLabel").astype(int)
    columns = used_engine_columns(engine_names)
    X = assemble_inputs(engine_features, columns, cohort.column("Age"), cohort.column("Gender"),
                        cohort.column("ICULOS") - 1.0)
    split = split_patients(cohort, config)
    fit_rows = rows_of(cohort, split.fit)
    rng = np.random.default_rng(config.seed + 1)
    keep = (labels[fit_rows] == 1) | (rng.random(len(fit_rows)) < config.negative_keep)
    fit_rows = fit_rows[keep]
    reference = typical_values(X[rows_of(cohort, split.fit)], labels[rows_of(cohort, split.fit)])
    inputs = _imputer(reference) if config.impute_typical else (lambda A: A)
    log(f"fitting on {len(fit_rows):,} rows of {len(split.fit):,} stays "
        f"({int(labels[fit_rows].sum()):,} positive hours)")
    estimator = HistGradientBoostingClassifier(
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        min_samples_leaf=config.min_samples_leaf,
        l2_regularization=config.l2_regularization,
        early_stopping=False,  # its internal split is by row, which leaks patients
        random_state=config.seed,
    )
    fit_X, fit_y = inputs(X[fit_rows]), labels[fit_rows]
    # Grown in stages with warm_start only to show progress: the trees are the same as one fit.
    stages = range(50, config.max_iter + 50, 50)
    for max_iter in _progress(stages, progress, "boosting"):
        estimator.set_params(max_iter=min(max_iter, config.max_iter), warm_start=True)
        estimator.fit(fit_X, fit_y)
    estimator.set_params(warm_start=False)

    # How much of the ranking rests on time since monitoring started alone: the same trees
    # refitted with that input held constant, measured on the calibration patients.
    without_hours = fit_X.copy()
    without_hours[:, -1] = 0.0
    ablation = HistGradientBoostingClassifier(**{**estimator.get_params(), "warm_start": False})
    ablation.fit(without_hours, fit_y)
    cal_X = inputs(X[rows_of(cohort, split.calibration)])
    cal_X[:, -1] = 0.0
    ablation_auroc = float(roc_auc_score(labels[rows_of(cohort, split.calibration)],
                                         ablation.predict_proba(cal_X)[:, 1]))
    log(f"ablation without hours monitored: calibration AUROC {ablation_auroc:.3f}")

    calibration_cohort = cohort.subset(split.calibration)
    cal_rows = rows_of(cohort, split.calibration)
    raw = estimator.predict_proba(inputs(X[cal_rows]))[:, 1]
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    isotonic.fit(raw, labels[cal_rows])
    risk = np.interp(raw, isotonic.X_thresholds_, isotonic.y_thresholds_)
    log(f"calibration stays: AUROC {roc_auc_score(labels[cal_rows], risk):.3f}")
    threshold, utility = choose_threshold(risk, labels[cal_rows], calibration_cohort.offsets)
    log(f"utility-optimal threshold {threshold:.4f} (calibration utility {utility:.3f})")
    low_burden = threshold_for_burden(risk, calibration_cohort.offsets, 0.25)
    payload = {
        "format": FORMAT,
        "version": MODEL_VERSION,
        "engine_feature_names": list(engine_names),
        "engine_columns": columns,
        "windows_s": [int(w) for w in windows_s],
        "estimator": estimator,
        "impute_typical": bool(config.impute_typical),
        "reference": reference,
        "calibration_x": np.asarray(isotonic.X_thresholds_, dtype=float),
        "calibration_y": np.asarray(isotonic.y_thresholds_, dtype=float),
        "threshold": threshold,
        "operating_points": {
            "utility_optimal": threshold,
            "low_burden_0.25_alerts_per_patient_day": low_burden,
        },
        "metadata": {
            "config": dataclasses.asdict(config),
            "fit_stays": int(len(split.fit)),
            "calibration_stays": int(len(split.calibration)),
            "test_stays": int(len(split.test)),
            "fit_rows": int(len(fit_rows)),
            "calibration_utility": utility,
            "calibration_auroc": float(roc_auc_score(labels[cal_rows], risk)),
            "calibration_auroc_without_hours_monitored": ablation_auroc,
        },
    }
    return payload, split


def _imputer(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def impute(A: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(A), reference, A)

    return impute


def _progress(items: range, enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=" x50 trees", leave=False)
