"""Training the deterioration risk model: split, fit, calibrate, choose the operating
points, and measure everything on patients the model never saw.

Two data sets, one set of trees (stacked rows): PhysioNet 2019 set A hours labelled by
`SepsisLabel`, and PhysioNet 2012 set A hours (1 h to 48 h of each stay) labelled by the
stay's in-hospital death, at a documented weight (``weight_2012``). The risk therefore
learns what precedes both outcomes: a patient getting worse, not one diagnosis's
bookkeeping. Each set is split by patient (stratified by outcome), seeded: 60 % fit the
trees, 20 % choose the tree count and calibrate, 20 % are held out and only measured.
Negative 2019 hours in the fitting part are subsampled (documented rate) to keep training
to minutes on two cores; calibration (Platt, on 2019 calibration patients) restores
probabilities of the 2019 label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from vitalstream.samples import NUMERIC_PARAMETERS
from vitalstream.scoring.model import FORMAT, assemble_inputs
from vitalstream.training.baseline import vitals_news2_oxygen
from vitalstream.training.evaluation import NEWS2_TRIGGERS
from vitalstream.training.metrics import auroc, logistic_fit
from vitalstream.training.physionet import Cohort
from vitalstream.training.utility import RowUtilities

MODEL_VERSION = "deterioration-vitals-2"

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
    negative_keep: float = 0.15  # fraction of negative 2019 fitting rows kept (all positives kept)
    max_iter: int = 200  # most trees grown; the count kept is chosen on calibration patients
    tree_count_step: int = 50  # tree counts tried: 50, 100, ... max_iter
    weight_2012: float = 0.3  # weight of each 2012 hour (in-hospital death) in the fit
    alert_budget: float = 0.25  # new alerts per patient-day at the budget operating point
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
    utilities = RowUtilities(labels.astype(int), offsets)
    best = (float(grid[0]), -np.inf)
    for threshold in grid:
        score = utilities.normalised(risk >= threshold)
        if score > best[1]:
            best = (float(threshold), float(score))
    return best


def new_alerts_per_patient_day(alerts: np.ndarray, offsets: np.ndarray) -> float:
    """New alerts (an alert hour whose previous hour in the stay had none, or a stay's
    first hour) per 24 hourly rows."""
    alerts = np.asarray(alerts, dtype=bool)
    if not len(alerts):
        return 0.0
    stay_start = np.zeros(len(alerts), dtype=bool)
    stay_start[offsets[:-1][np.diff(offsets) > 0]] = True
    previous = np.concatenate([[False], alerts[:-1]])
    return float((alerts & (stay_start | ~previous)).sum() / (len(alerts) / 24.0))


def threshold_for_burden(
    risk: np.ndarray, offsets: np.ndarray, alerts_per_patient_day: float
) -> float:
    """The lowest threshold whose new alerts per patient-day do not exceed the target."""
    for threshold in np.unique(np.quantile(risk, np.linspace(0.5, 0.9995, 400))):
        if new_alerts_per_patient_day(risk >= threshold, offsets) <= alerts_per_patient_day:
            return float(threshold)
    return float(risk.max())


class _Boosting(HistGradientBoostingClassifier):
    """The boosted trees, with bin edges from the unweighted quantiles of the fitting rows.

    Row weights (the 2012 hours' ``weight_2012``) still weigh every gradient; only the 255
    bin edges per input ignore them. scikit-learn 1.9 finds weighted edges with one Python
    call per edge, which cost about 40 s per fit on two cores here and made `vitalstream
    train` take 51 min; unweighted edges take a second. After fitting, the estimator is
    handed on as a plain `HistGradientBoostingClassifier` (the type the model file trusts).
    """

    def _bin_data(self, X: np.ndarray, sample_weight: Any, is_training_data: bool) -> Any:
        return super()._bin_data(X, None, is_training_data)


def _plain(estimator: HistGradientBoostingClassifier) -> HistGradientBoostingClassifier:
    estimator.__class__ = HistGradientBoostingClassifier
    return estimator


@dataclasses.dataclass(frozen=True)
class Fitted:
    """Trees, imputation reference, calibration and operating point from one fit."""

    estimator: HistGradientBoostingClassifier
    reference: np.ndarray
    platt: tuple[float, float]
    threshold: float
    calibration_utility: float
    calibration_auroc: float
    fit_rows: int
    tree_count_auroc: dict[int, float]  # calibration same-hour AUROC of each tree count tried
    budget_threshold: float = 0.0

    def margin(self, X: np.ndarray, impute_typical: bool = True) -> np.ndarray:
        if impute_typical:
            X = np.where(np.isnan(X), self.reference, X)
        return self.estimator.decision_function(X)

    def risk(self, X: np.ndarray, impute_typical: bool = True) -> np.ndarray:
        """Calibrated risk of assembled input rows, as `RiskModel.predict_proba` computes it."""
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * self.margin(X, impute_typical) + b)))


@dataclasses.dataclass(frozen=True)
class ExtraRows:
    """Rows of another data set stacked into the fit (2012: hours labelled by death)."""

    X: np.ndarray
    labels: np.ndarray
    weight: float


def fit_calibrated(
    cohort: Cohort,
    X: np.ndarray,
    fit_stays: np.ndarray,
    calibration_stays: np.ndarray,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    progress: bool = False,
    extra: ExtraRows | None = None,
) -> Fitted:
    """Fit the trees on ``fit_stays`` (and ``extra`` rows, if given); on
    ``calibration_stays`` choose the tree count (best same-hour AUROC), calibrate (Platt)
    and choose the utility-optimal and the alert-budget thresholds. With no fit stays
    (``extra`` only), the trees see only the extra rows."""
    labels = cohort.column("SepsisLabel").astype(int)
    all_fit_rows = rows_of(cohort, fit_stays) if len(fit_stays) else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(config.seed + 1)
    keep = (labels[all_fit_rows] == 1) | (rng.random(len(all_fit_rows)) < config.negative_keep)
    fit_rows = all_fit_rows[keep]
    if len(all_fit_rows):
        reference = typical_values(X[all_fit_rows], labels[all_fit_rows])
    else:
        assert extra is not None, "nothing to fit"
        reference = typical_values(extra.X, extra.labels)
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
    fit_w = np.ones(len(fit_rows))
    if extra is not None:
        fit_X = np.vstack([fit_X, inputs(extra.X)])
        fit_y = np.concatenate([fit_y, extra.labels.astype(int)])
        fit_w = np.concatenate([fit_w, np.full(len(extra.labels), extra.weight)])
        log(f"  and {len(extra.labels):,} rows of the second data set at weight {extra.weight}")
    cal_rows = rows_of(cohort, calibration_stays)
    cal_hours = cohort.column("ICULOS")[cal_rows]
    cal_X, cal_y = inputs(X[cal_rows]), labels[cal_rows]
    if len(np.unique(cal_y)) < 2:
        raise ValueError("the calibration patients need both septic and non-septic hours")
    # The tree count is chosen on whole patients the trees never saw (the calibration
    # group), not by sklearn's early stopping, whose split is by row and leaks patients.
    # Grown in stages with warm_start: the trees are the same as one fit of that size.
    estimator = _Boosting(warm_start=True, **params)
    tree_count_auroc: dict[int, float] = {}
    stages = range(config.tree_count_step, config.max_iter + 1, config.tree_count_step)
    for n_trees in _progress(stages, progress, "boosting"):
        estimator.set_params(max_iter=n_trees)
        estimator.fit(fit_X, fit_y, sample_weight=fit_w)
        tree_count_auroc[n_trees] = auroc(estimator.decision_function(cal_X), cal_y, cal_hours) or 0.0
    best = max(tree_count_auroc, key=lambda n: (tree_count_auroc[n], -n))
    log(f"tree count {best} (calibration same-hour AUROC {tree_count_auroc[best]:.4f}; "
        f"{config.max_iter}: {tree_count_auroc[max(tree_count_auroc)]:.4f})")
    if best != estimator.n_iter_:
        estimator = _Boosting(max_iter=best, **params).fit(fit_X, fit_y, sample_weight=fit_w)
    estimator.set_params(warm_start=False)
    estimator = _plain(estimator)

    margin = estimator.decision_function(cal_X)
    platt = logistic_fit(margin, cal_y)
    risk = 1.0 / (1.0 + np.exp(-(platt[0] * margin + platt[1])))
    calibration_auroc = float(roc_auc_score(cal_y, risk))
    cal_offsets = cohort.subset(calibration_stays).offsets
    threshold, utility = choose_threshold(risk, cal_y, cal_offsets)
    return Fitted(
        estimator=estimator,
        reference=reference,
        platt=platt,
        budget_threshold=threshold_for_burden(risk, cal_offsets, config.alert_budget),
        threshold=threshold,
        calibration_utility=utility,
        calibration_auroc=calibration_auroc,
        fit_rows=int(len(fit_rows)),
        tree_count_auroc=tree_count_auroc,
    )


def inputs_of(engine_features: np.ndarray, engine_names: list[str]) -> np.ndarray:
    """Feature-engine rows assembled as the model's input rows (as `RiskModel.input_row`)."""
    return assemble_inputs(engine_features, used_engine_columns(engine_names), engine_names)


def model_inputs(cohort: Cohort, engine_features: np.ndarray, engine_names: list[str]) -> np.ndarray:
    """Every cohort row assembled as the model's input row (as `RiskModel.input_row` does)."""
    return inputs_of(engine_features, engine_names)


def split_stays_by_outcome(outcome: np.ndarray, config: TrainConfig) -> Split:
    """Stay numbers of each part for stays with one binary outcome each (2012: death)."""
    rng = np.random.default_rng(config.seed + 2012)
    parts: list[list[np.ndarray]] = [[], [], []]
    for stays in (np.flatnonzero(outcome == 1), np.flatnonzero(outcome != 1)):
        shuffled = rng.permutation(stays)
        n_fit = int(round(len(shuffled) * config.fit_fraction))
        n_cal = int(round(len(shuffled) * config.calibration_fraction))
        parts[0].append(shuffled[:n_fit])
        parts[1].append(shuffled[n_fit:n_fit + n_cal])
        parts[2].append(shuffled[n_fit + n_cal:])
    fit, cal, test = (np.sort(np.concatenate(p)) for p in parts)
    return Split(fit, cal, test)


def train(
    cohort: Cohort,
    engine_features: np.ndarray,
    config: TrainConfig,
    engine_names: list[str],
    windows_s: tuple[int, ...],
    log: Callable[[str], None] = print,
    progress: bool = False,
    second: Any | None = None,
) -> tuple[dict[str, Any], Split, Split | None]:
    """Fit, calibrate and choose operating points; returns the artefact payload, the 2019
    split and the 2012 split (``second``: a `mortality2012.Set2012`, or None for 2019 only)."""
    X = model_inputs(cohort, engine_features, engine_names)
    split = split_patients(cohort, config)
    extra = split_2012 = None
    if second is not None:
        split_2012 = split_stays_by_outcome(second.died, config)
        rows = second.rows_of(split_2012.fit)
        extra = ExtraRows(inputs_of(second.features[rows], engine_names),
                          second.row_labels()[rows], config.weight_2012)
    fitted = fit_calibrated(cohort, X, split.fit, split.calibration, config, log, progress,
                            extra)
    estimator = fitted.estimator
    # The model at NEWS2's own alert burden (NEWS2 with oxygen points, >= 5 and >= 7, on
    # the same calibration patients): the comparison at equal workload.
    calibration = cohort.subset(split.calibration)
    cal_risk = fitted.risk(X[rows_of(cohort, split.calibration)], config.impute_typical)
    news2_burden = {trigger: new_alerts_per_patient_day(
        vitals_news2_oxygen(calibration) >= trigger, calibration.offsets)
        for trigger in NEWS2_TRIGGERS}
    at_news2 = {f"news2_{trigger}_burden": threshold_for_burden(cal_risk, calibration.offsets, b)
                for trigger, b in news2_burden.items()}
    log(f"calibration stays: AUROC {fitted.calibration_auroc:.3f}")
    log(f"utility-optimal threshold {fitted.threshold:.4f} "
        f"(calibration utility {fitted.calibration_utility:.3f}); "
        f"{config.alert_budget} alerts/patient-day: {fitted.budget_threshold:.4f}")
    budget_key = f"budget_{config.alert_budget}_alerts_per_patient_day"
    payload = {
        "format": FORMAT,
        "version": MODEL_VERSION,
        "engine_feature_names": list(engine_names),
        "engine_columns": used_engine_columns(engine_names),
        "derived_features": True,
        "windows_s": [int(w) for w in windows_s],
        "estimator": estimator,
        "impute_typical": bool(config.impute_typical),
        "reference": fitted.reference,
        "platt": np.asarray(fitted.platt, dtype=float),
        "threshold": fitted.threshold,
        "show_from": fitted.budget_threshold,
        "operating_points": {
            "utility_optimal": fitted.threshold,
            budget_key: fitted.budget_threshold,
            **at_news2,
        },
        "metadata": {
            "config": dataclasses.asdict(config),
            "fit_stays": int(len(split.fit)),
            "calibration_stays": int(len(split.calibration)),
            "test_stays": int(len(split.test)),
            "fit_stays_2012": int(len(split_2012.fit)) if split_2012 else 0,
            "fit_rows": fitted.fit_rows,
            "n_trees": int(estimator.n_iter_),
            "calibration_same_hour_auroc_by_tree_count": {str(k): v for k, v in
                                                          fitted.tree_count_auroc.items()},
            "calibration_utility": fitted.calibration_utility,
            "calibration_auroc": fitted.calibration_auroc,
            "news2_oxygen_alerts_per_patient_day": {f">={t}": b for t, b in news2_burden.items()},
        },
    }
    return payload, split, split_2012


def _imputer(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def impute(A: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(A), reference, A)

    return impute


def _progress(items: range, enabled: bool, desc: str) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=" stages", leave=False)
