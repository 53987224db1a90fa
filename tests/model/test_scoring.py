"""Scores: AUC must equal the Mann-Whitney statistic, ties counting half."""
from __future__ import annotations

import numpy as np

from vessel_seg.pipeline.shared.scoring import (
    DICE_CANDIDATES,
    best_dice_threshold,
    dice_curve,
    roc_auc,
    threshold_metrics,
)


def brute_force_auc(s, y):
    pos, neg = s[y], s[~y]
    gt = (pos[:, None] > neg[None, :]).sum()
    eq = (pos[:, None] == neg[None, :]).sum()
    return (gt + 0.5 * eq) / (len(pos) * len(neg))


def test_auc_equals_the_probability_a_vessel_outscores_background():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    s = np.round(rng.random(500) + 0.5 * y, 1)     # many ties
    assert abs(roc_auc(s, y) - brute_force_auc(s, y)) < 1e-12


def test_auc_of_perfect_random_and_inverted_scores():
    y = np.array([0, 0, 1, 1], bool)
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert roc_auc(np.full(4, 0.5), y) == 0.5


def test_threshold_metrics_count_pixels():
    m = threshold_metrics(np.array([0.9, 0.9, 0.1, 0.1]), np.array([1, 0, 1, 0], bool), 0.5)
    assert m == {"dice": 0.5, "accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5}


def test_best_threshold_separates_separable_scores():
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7])
    y = np.array([0, 0, 0, 1, 1], bool)
    t = best_dice_threshold(s, y)
    assert 0.3 < t <= 0.6


def test_the_dice_curve_agrees_with_threshold_metrics_at_every_candidate_edges_included():
    rng = np.random.default_rng(3)
    y = rng.random(50000) < 0.12
    s = np.clip(0.45 * y + 0.6 * rng.random(50000), 0, 1).astype(np.float32)
    for i, t in enumerate(DICE_CANDIDATES):          # scores exactly on, and just below, each threshold
        s[2 * i] = np.float32(t)
        s[2 * i + 1] = np.nextafter(np.float32(t), np.float32(0))
    curve = dice_curve(s, y)
    assert curve == [threshold_metrics(s, y, t)["dice"] for t in DICE_CANDIDATES]
    best = best_dice_threshold(s, y)
    assert threshold_metrics(s, y, best)["dice"] == max(curve)
