"""Pseudo-external checks: train on one ICU type of set A, measure on the other; train on
one data set (2019 sepsis, 2012 death), measure on the other.

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

from vitalstream.training.baseline import vitals_news2, vitals_news2_oxygen
from vitalstream.training.evaluation import evaluate_scores, ranking_intervals
from vitalstream.training.fit import (
    ExtraRows,
    Split,
    TrainConfig,
    fit_calibrated,
    inputs_of,
    model_inputs,
    rows_of,
    split_patients,
)
from vitalstream.training.metrics import calibration_line, stay_weights
from vitalstream.training.mortality2012 import Set2012, death_figures
from vitalstream.training.physionet import COL, Cohort

UNITS: tuple[tuple[str, str], ...] = (("medical ICU", "Unit1"), ("surgical ICU", "Unit2"))


def unit_of_stays(cohort: Cohort) -> dict[str, np.ndarray]:
    """Stay numbers of each ICU type, from the stay's first row (a stay keeps its unit)."""
    first = cohort.offsets[:-1][np.diff(cohort.offsets) > 0]
    nonempty = np.flatnonzero(np.diff(cohort.offsets) > 0)
    return {name: nonempty[cohort.values[first, COL[column]] == 1] for name, column in UNITS}


def _direction_figures(test: Cohort, risk: np.ndarray, fitted: Any,
                       draws: int) -> dict[str, Any]:
    metrics = evaluate_scores(test, risk, fitted.threshold, vitals_news2(test))
    weights = stay_weights(test.n_stays, draws, 20190)
    metrics["intervals"] = {
        "model": ranking_intervals(test, risk, weights),
        "news2": ranking_intervals(test, vitals_news2(test), weights),
        "news2_oxygen": ranking_intervals(test, vitals_news2_oxygen(test), weights),
    }
    metrics["calibration_line"] = calibration_line(test.column("SepsisLabel"), risk)
    return metrics


def unit_transfer(
    cohort: Cohort,
    engine_features: np.ndarray,
    config: TrainConfig,
    engine_names: list[str],
    log: Callable[[str], None] = print,
    min_stays: int = 200,
    draws: int = 100,
) -> dict[str, Any] | None:
    """Model and NEWS2 figures of each direction (trained on one unit, measured on the
    other; 2019 rows only); None when either unit has fewer than ``min_stays`` stays (the
    shipped sample, for instance)."""
    units = unit_of_stays(cohort)
    if min(len(stays) for stays in units.values()) < min_stays:
        return None
    X = model_inputs(cohort, engine_features, engine_names)
    # The main split's calibration share of the non-held-out stays (20 of 80 %).
    share = config.calibration_fraction / (config.fit_fraction + config.calibration_fraction)
    inner = dataclasses.replace(config, fit_fraction=1.0 - share, calibration_fraction=share)
    result: dict[str, Any] = {}
    (first_unit, _), (second_unit, _) = UNITS
    quiet: Callable[[str], None] = lambda _message: None  # noqa: E731
    for train_unit, test_unit in ((first_unit, second_unit), (second_unit, first_unit)):
        train_stays, test_stays = units[train_unit], units[test_unit]
        part = split_patients(cohort.subset(train_stays), inner)
        fit_stays, cal_stays = train_stays[part.fit], train_stays[part.calibration]
        cal_stays = np.sort(np.concatenate([cal_stays, train_stays[part.test]]))
        test = cohort.subset(test_stays)
        test_rows = rows_of(cohort, test_stays)
        fitted = fit_calibrated(cohort, X, fit_stays, cal_stays, config, quiet)
        metrics = _direction_figures(test, fitted.risk(X[test_rows], config.impute_typical),
                                     fitted, draws)
        metrics["trained_on"] = {"unit": train_unit, "stays": int(len(train_stays)),
                                 "n_trees": int(fitted.estimator.n_iter_)}
        key = f"{train_unit} -> {test_unit}"
        result[key] = metrics
        i = metrics["intervals"]
        log(f"{key}: same-hour AUROC model {i['model']['same_hour_auroc']['value']:.3f}, NEWS2 "
            f"{i['news2']['same_hour_auroc']['value']:.3f}; AUROC {metrics['model']['auroc']:.3f}")
    return result


def dataset_transfer(
    cohort: Cohort,
    engine_features: np.ndarray,
    second: Set2012,
    config: TrainConfig,
    engine_names: list[str],
    split_2019: Split,
    split_2012: Split,
    log: Callable[[str], None] = print,
    draws: int = 100,
) -> dict[str, Any]:
    """Trained on 2019 set A only, measured on every 2012 stay (death); and trained on
    2012 set A only (death; calibrated and thresholded on 2019 calibration patients, the
    only sepsis labels), measured on the 2019 held-out stays (sepsis)."""
    X = model_inputs(cohort, engine_features, engine_names)
    X2 = inputs_of(second.features, engine_names)
    quiet: Callable[[str], None] = lambda _message: None  # noqa: E731
    only_2019 = fit_calibrated(cohort, X, split_2019.fit, split_2019.calibration, config, quiet)
    all_2012 = np.arange(second.n_stays)
    death = death_figures(second, all_2012, only_2019.risk(X2, config.impute_typical), draws)
    rows = second.rows_of(split_2012.fit)
    only_2012 = fit_calibrated(cohort, X, np.zeros(0, dtype=np.int64), split_2019.calibration,
                               config, quiet, extra=ExtraRows(X2[rows], second.row_labels()[rows],
                                                              1.0))
    test = cohort.subset(split_2019.test)
    sepsis = _direction_figures(test, only_2012.risk(X[rows_of(cohort, split_2019.test)],
                                                     config.impute_typical), only_2012, draws)
    log(f"2019 -> 2012 death: model {death['model_auroc']['value']:.3f}, NEWS2 "
        f"{death['news2_auroc']['value']:.3f}; 2012 -> 2019 sepsis same-hour: model "
        f"{sepsis['intervals']['model']['same_hour_auroc']['value']:.3f}, NEWS2 "
        f"{sepsis['intervals']['news2']['same_hour_auroc']['value']:.3f}")
    return {"2019 -> 2012 (death)": death, "2012 -> 2019 (sepsis)": sepsis}


def pseudo_external(
    cohort: Cohort,
    engine_features: np.ndarray,
    second: Set2012 | None,
    config: TrainConfig,
    engine_names: list[str],
    split_2019: Split,
    split_2012: Split | None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every pseudo-external check the data allow: ``unit_transfer`` and, with the 2012
    set, ``dataset_transfer`` (the keys `vitalstream train` and `evaluate` report)."""
    out: dict[str, Any] = {"unit_transfer": unit_transfer(cohort, engine_features, config,
                                                          engine_names, log)}
    if second is not None and split_2012 is not None:
        out["dataset_transfer"] = dataset_transfer(cohort, engine_features, second, config,
                                                   engine_names, split_2019, split_2012, log)
    return out
