"""Pseudo-external check: train on one ICU type of set A, measure on the other.

A random patient split tests new patients of the same wards. The model will be judged on
another hospital, whose case mix, sepsis rate and length of stay differ. Set A's closest
stand-in is its two ICU types: medical (``Unit1``) and surgical (``Unit2``) stays differ in
age, sepsis rate (about 11 % against 4 % of stays) and how sepsis arises. Each direction
fits, calibrates and chooses its threshold on one unit only (the same recipe as
`vitalstream.training.fit.train`, patient-grouped, with the calibration share of the
main split) and is measured, with vitals-only NEWS2 on the same rows, on every stay of
the other unit. Stays with neither unit recorded (about half of set A) take no part.

The unit is read only to make this split; it is never a model input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from vitalstream.training.baseline import vitals_news2
from vitalstream.training.evaluation import evaluate_scores
from vitalstream.training.fit import TrainConfig, fit_calibrated, model_inputs, split_patients
from vitalstream.training.physionet import COL, Cohort

UNITS: tuple[tuple[str, str], ...] = (("medical ICU", "Unit1"), ("surgical ICU", "Unit2"))


def unit_of_stays(cohort: Cohort) -> dict[str, np.ndarray]:
    """Stay numbers of each ICU type, from the stay's first row (a stay keeps its unit)."""
    first = cohort.offsets[:-1][np.diff(cohort.offsets) > 0]
    nonempty = np.flatnonzero(np.diff(cohort.offsets) > 0)
    return {name: nonempty[cohort.values[first, COL[column]] == 1] for name, column in UNITS}


def unit_transfer(
    cohort: Cohort,
    engine_features: np.ndarray,
    config: TrainConfig,
    engine_names: list[str],
    log: Callable[[str], None] = print,
    min_stays: int = 200,
) -> dict[str, Any] | None:
    """Model and NEWS2 figures of each direction (trained on one unit, measured on the
    other), plus the same with hours monitored held constant; None when either unit has
    fewer than ``min_stays`` stays (the shipped sample, for instance)."""
    units = unit_of_stays(cohort)
    if min(len(stays) for stays in units.values()) < min_stays:
        return None
    X = model_inputs(cohort, engine_features, engine_names)
    without_hours = X.copy()
    without_hours[:, -1] = 0.0
    # The main split's calibration share of the non-held-out stays (20 of 80 %).
    share = config.calibration_fraction / (config.fit_fraction + config.calibration_fraction)
    inner = dataclasses.replace(config, fit_fraction=1.0 - share, calibration_fraction=share)
    result: dict[str, Any] = {}
    (first_unit, _), (second_unit, _) = UNITS
    for train_unit, test_unit in ((first_unit, second_unit), (second_unit, first_unit)):
        train_stays, test_stays = units[train_unit], units[test_unit]
        part = split_patients(cohort.subset(train_stays), inner)
        fit_stays, cal_stays = train_stays[part.fit], train_stays[part.calibration]
        cal_stays = np.sort(np.concatenate([cal_stays, train_stays[part.test]]))
        test = cohort.subset(test_stays)
        test_rows = np.concatenate([np.arange(cohort.offsets[i], cohort.offsets[i + 1])
                                    for i in test_stays])
        quiet: Callable[[str], None] = lambda _message: None  # noqa: E731
        fitted = fit_calibrated(cohort, X, fit_stays, cal_stays, config, quiet)
        risk = fitted.risk(X[test_rows], config.impute_typical)
        metrics = evaluate_scores(test, risk, fitted.threshold, vitals_news2(test))
        ablation = fit_calibrated(cohort, without_hours, fit_stays, cal_stays, config, quiet)
        labels = test.column("SepsisLabel")
        metrics["auroc_without_hours_monitored"] = float(roc_auc_score(
            labels, ablation.risk(without_hours[test_rows], config.impute_typical)))
        metrics["trained_on"] = {"unit": train_unit, "stays": int(len(train_stays)),
                                 "n_trees": int(fitted.estimator.n_iter_)}
        key = f"{train_unit} -> {test_unit}"
        result[key] = metrics
        log(f"{key}: model AUROC {metrics['model']['auroc']:.3f} (without hours monitored "
            f"{metrics['auroc_without_hours_monitored']:.3f}), NEWS2 {metrics['news2']['auroc']:.3f}, "
            f"utility {metrics['model']['utility']:.3f}")
    return result
