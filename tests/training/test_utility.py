"""The 2019 challenge's utility score, against hand-computed stays and a literal port of
the challenge's per-hour loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vitalstream.training.utility import best_predictions, normalised_utility, stay_utility


def challenge_loop(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The official scorer's compute_prediction_utility, written out hour by hour."""
    dt_early, dt_optimal, dt_late = -12, -6, 3
    max_u_tp, min_u_fn, u_fp, u_tn = 1.0, -2.0, -0.05, 0.0
    if np.any(labels):
        is_septic, t_sepsis = True, int(np.argmax(labels)) - dt_optimal
    else:
        is_septic, t_sepsis = False, float("inf")
    m_1 = max_u_tp / (dt_optimal - dt_early)
    b_1 = -m_1 * dt_early
    m_2 = -max_u_tp / (dt_late - dt_optimal)
    b_2 = -m_2 * dt_late
    m_3 = min_u_fn / (dt_late - dt_optimal)
    b_3 = -m_3 * dt_optimal
    total = 0.0
    for t in range(len(labels)):
        if t > t_sepsis + dt_late:
            continue
        if is_septic and predictions[t]:
            total += max(m_1 * (t - t_sepsis) + b_1, u_fp) if t <= t_sepsis + dt_optimal \
                else m_2 * (t - t_sepsis) + b_2
        elif not is_septic and predictions[t]:
            total += u_fp
        elif is_septic and not predictions[t]:
            total += 0.0 if t <= t_sepsis + dt_optimal else m_3 * (t - t_sepsis) + b_3
        else:
            total += u_tn
    return total


def test_false_alarm_hours_on_a_stay_that_never_becomes_septic_cost_005_each():
    assert stay_utility(np.zeros(10), np.r_[np.zeros(7), np.ones(3)]) == pytest.approx(-0.15)


def test_alert_exactly_six_hours_before_onset_earns_the_full_point():
    # First label at hour 10 means onset (t_sepsis) at hour 16; hour 10 is the optimum.
    labels = np.r_[np.zeros(10), np.ones(10)]
    predictions = np.zeros(20)
    predictions[10] = 1
    assert stay_utility(labels, predictions) == pytest.approx(1.0 + missed_after(10, 16))


def missed_after(first_label: int, onset: int) -> float:
    """Utility lost by staying silent from the optimum + 1 h to onset + 3 h (hand-computed:
    -2/9 per hour past the optimum)."""
    return sum(-2.0 / 9.0 * (t - (onset - 6)) for t in range(first_label + 1, onset + 4))


def test_alert_more_than_twelve_hours_early_counts_as_a_false_alarm():
    labels = np.r_[np.zeros(20), np.ones(5)]  # onset at hour 26
    predictions = np.zeros(25)
    predictions[0] = 1  # 26 h before onset: below the early ramp, floored at -0.05
    silent = stay_utility(labels, np.zeros(25))
    assert stay_utility(labels, predictions) - silent == pytest.approx(-0.05)


def test_missing_the_whole_window_costs_the_challenge_penalty():
    # Septic from hour 0: onset at hour 6; silent hours 1..9 cost -2/9 * 1..9 = -10.
    labels = np.ones(12)
    assert stay_utility(labels, np.zeros(12)) == pytest.approx(-10.0)


def test_hours_later_than_three_after_onset_count_nothing():
    labels = np.r_[np.zeros(4), np.ones(20)]  # onset hour 10, counting stops after hour 13
    late = np.zeros(24)
    late[14:] = 1
    assert stay_utility(labels, late) == stay_utility(labels, np.zeros(24))


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_utility_equals_the_challenge_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    labels = np.zeros(n)
    if rng.random() < 0.7:
        labels[int(rng.integers(0, n)):] = 1
    predictions = (rng.random(n) < rng.random()).astype(int)
    assert stay_utility(labels, predictions) == pytest.approx(challenge_loop(labels, predictions))


def test_best_predictions_score_one_and_silence_scores_zero():
    stays = [np.r_[np.zeros(30), np.ones(10)], np.zeros(50), np.r_[np.zeros(3), np.ones(8)]]
    assert normalised_utility(stays, [best_predictions(s) for s in stays]) == pytest.approx(1.0)
    assert normalised_utility(stays, [np.zeros(len(s)) for s in stays]) == pytest.approx(0.0)
    always = normalised_utility(stays, [np.ones(len(s)) for s in stays])
    assert always < 1.0


def test_best_predictions_window_runs_from_twelve_before_to_three_after_onset():
    labels = np.r_[np.zeros(20), np.ones(10)]  # onset hour 26
    assert np.flatnonzero(best_predictions(labels)).tolist() == list(range(14, 30))


def test_no_septic_stay_leaves_the_ratio_undefined():
    assert math.isnan(normalised_utility([np.zeros(5)], [np.zeros(5)]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_utilities_give_the_challenge_loops_normalised_utility(seed):
    from vitalstream.training.utility import RowUtilities

    rng = np.random.default_rng(seed)
    stays = []
    for _ in range(30):
        n = int(rng.integers(5, 60))
        labels = np.zeros(n, dtype=int)
        if rng.random() < 0.4:
            labels[int(rng.integers(0, n)):] = 1
        stays.append(labels)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in stays])])
    utilities = RowUtilities(np.concatenate(stays), offsets)
    for _ in range(5):
        alerts = [rng.random(len(s)) < 0.3 for s in stays]
        assert utilities.normalised(np.concatenate(alerts)) == pytest.approx(
            normalised_utility(stays, alerts), abs=1e-12)
