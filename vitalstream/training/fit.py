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
    max_iter: int = 400  # most trees grown; the count kept is chosen on calibration patients
    tree_count_step: int = 25  # tree counts tried: 25, 50, ... max_iter
    learning_rate: float = 0.1
    max_leaf_nodes: int = 7
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


@dataclasses.dataclass(frozen=True)
class Fitted:
    """Trees, imputation reference, calibration and operating point from one fit."""

    estimator: HistGradientBoostingClassifier
    reference: np.ndarray
    calibration_x: np.ndarray
    calibration_y: np.ndarray
    threshold: float
    calibration_utility: float
    calibration_auroc: float
    fit_rows: int
    tree_count_auroc: dict[int, float]  # calibration AUROC of each tree count tried

    def risk(self, X: np.ndarray, impute_typical: bool = True) -> np.ndarray:
        """Calibrated risk of assembled input rows, as `RiskModel.predict_proba` computes it."""
        if impute_typical:
            X = np.where(np.isnan(X), self.reference, X)
        raw = self.estimator.predict_proba(X)[:, 1]
        return np.interp(raw, self.calibration_x, self.calibration_y)


def fit_calibrated(
    cohort: Cohort,
    X: np.ndarray,
    fit_stays: np.ndarray,
    calibration_stays: np.ndarray,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> Fitted:
    """Fit the trees on ``fit_stays``; on ``calibration_stays`` choose the tree count (best
    AUROC), calibrate (isotonic) and choose the utility-optimal threshold."""
    labels = cohort.column("SepsisLabel").astype(int)
    all_fit_rows = rows_of(cohort, fit_stays)
    rng = np.random.default_rng(config.seed + 1)
    keep = (labels[all_fit_rows] == 1) | (rng.random(len(all_fit_rows)) < config.negative_keep)
    fit_rows = all_fit_rows[keep]
    reference = typical_values(X[all_fit_rows], labels[all_fit_rows])
    inputs = _imputer(reference) if config.impute_typical else (lambda A: A)
    log(f"fitting on {len(fit_rows):,} rows of {len(fit_stays):,} stays "
        f"({int(labels[fit_rows].sum()):,} positive hours)")
    params = {
        "learning_rate": config.learning_rate,
        "max_leaf_nodes": config.max_leaf_nodes,
        "min_samples_leaf": config.min_samples_leaf,
        "l2_regularization": config.l2_regularization,
        "early_stopping": False,  # its internal split is by row, which leaks patients
        "random_state": config.seed,
    }
    fit_X, fit_y = inputs(X[fit_rows]), labels[fit_rows]
    cal_rows = rows_of(cohort, calibration_stays)
    cal_X, cal_y = inputs(X[cal_rows]), labels[cal_rows]
    if len(np.unique(cal_y)) < 2:
        raise ValueError("the calibration patients need both septic and non-septic hours")
    # The tree count is chosen on whole patients the trees never saw (the calibration
    # group), not by sklearn's early stopping, whose split is by row and leaks patients.
    # Grown in stages with warm_start: the trees are the same as one fit of that size.
    estimator = HistGradientBoostingClassifier(warm_start=True, **params)
    tree_count_auroc: dict[int, float] = {}
    stages = range(config.tree_count_step, config.max_iter + 1, config.tree_count_step)
    for n_trees in _progress(stages, progress, "boosting"):
        estimator.set_params(max_iter=n_trees)
        estimator.fit(fit_X, fit_y)
        tree_count_auroc[n_trees] = float(roc_auc_score(cal_y, estimator.predict_proba(cal_X)[:, 1]))
    best = max(tree_count_auroc, key=lambda n: (tree_count_auroc[n], -n))
    log(f"tree count {best} (calibration AUROC {tree_count_auroc[best]:.4f}; "
        f"{config.max_iter}: {tree_count_auroc[max(tree_count_auroc)]:.4f})")
    if best != estimator.n_iter_:
        estimator = HistGradientBoostingClassifier(max_iter=best, **params).fit(fit_X, fit_y)
    estimator.set_params(warm_start=False)

    raw = estimator.predict_proba(cal_X)[:, 1]
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    isotonic.fit(raw, cal_y)
    risk = np.interp(raw, isotonic.X_thresholds_, isotonic.y_thresholds_)
    calibration_auroc = float(roc_auc_score(cal_y, risk))
    threshold, utility = choose_threshold(risk, cal_y, cohort.subset(calibration_stays).offsets)
    return Fitted(
        estimator=estimator,
        reference=reference,
        calibration_x=np.asarray(isotonic.X_thresholds_, dtype=float),
        calibration_y=np.asarray(isotonic.y_thresholds_, dtype=float),
        threshold=threshold,
        calibration_utility=utility,
        calibration_auroc=calibration_auroc,
        fit_rows=int(len(fit_rows)),
        tree_count_auroc=tree_count_auroc,
    )


def model_inputs(cohort: Cohort, engine_features: np.ndarray, engine_names: list[str]) -> np.ndarray:
    """Every cohort row assembled as the model's input row (as `RiskModel.input_row` does)."""
    return assemble_inputs(engine_features, used_engine_columns(engine_names),
                           cohort.column("Age"), cohort.column("Gender"),
                           cohort.column("ICULOS") - 1.0)


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
    X = model_inputs(cohort, engine_features, engine_names)
    split = split_patients(cohort, config)
    fitted = fit_calibrated(cohort, X, split.fit, split.calibration, config, log, progress)
    estimator = fitted.estimator
    cal_rows = rows_of(cohort, split.calibration)
    log(f"calibration stays: AUROC {fitted.calibration_auroc:.3f}")
    log(f"utility-optimal threshold {fitted.threshold:.4f} "
        f"(calibration utility {fitted.calibration_utility:.3f})")

    # How much of the ranking rests on time since monitoring started alone: the same trees
    # (same count) refitted with that input held constant, measured on the calibration patients.
    without_hours = X.copy()
    without_hours[:, -1] = 0.0
    fit_rows = rows_of(cohort, split.fit)
    rng = np.random.default_rng(config.seed + 1)
    keep = (labels[fit_rows] == 1) | (rng.random(len(fit_rows)) < config.negative_keep)
    inputs = _imputer(fitted.reference) if config.impute_typical else (lambda A: A)
    ablation = HistGradientBoostingClassifier(**{**estimator.get_params(), "warm_start": False})
    ablation.fit(inputs(without_hours[fit_rows[keep]]), labels[fit_rows[keep]])
    ablation_auroc = float(roc_auc_score(
        labels[cal_rows], ablation.predict_proba(inputs(without_hours[cal_rows]))[:, 1]))
    log(f"ablation without hours monitored: calibration AUROC {ablation_auroc:.3f}")

    calibration_cohort = cohort.subset(split.calibration)
    risk = fitted.risk(X[cal_rows], config.impute_typical)
    low_burden = threshold_for_burden(risk, calibration_cohort.offsets, 0.25)
    payload = {
        "format": FORMAT,
        "version": MODEL_VERSION,
        "engine_feature_names": list(engine_names),
        "engine_columns": used_engine_columns(engine_names),
        "windows_s": [int(w) for w in windows_s],
        "estimator": estimator,
        "impute_typical": bool(config.impute_typical),
        "reference": fitted.reference,
        "calibration_x": fitted.calibration_x,
        "calibration_y": fitted.calibration_y,
        "threshold": fitted.threshold,
        "operating_points": {
            "utility_optimal": fitted.threshold,
            "low_burden_0.25_alerts_per_patient_day": low_burden,
        },
        "metadata": {
            "config": dataclasses.asdict(config),
            "fit_stays": int(len(split.fit)),
            "calibration_stays": int(len(split.calibration)),
            "test_stays": int(len(split.test)),
            "fit_rows": fitted.fit_rows,
            "n_trees": int(estimator.n_iter_),
            "calibration_auroc_by_tree_count": {str(k): v for k, v in
                                                fitted.tree_count_auroc.items()},
            "calibration_utility": fitted.calibration_utility,
            "calibration_auroc": fitted.calibration_auroc,
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

    return tqdm(items, desc=desc, unit=" stages", leave=False)
