"""Segmentation scores (numpy only): ROC AUC with exact tie handling, and threshold metrics."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve; ties in ``scores`` count half (trapezoid over unique thresholds)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.nonzero(np.diff(s))[0]
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx].astype(np.float64)
    fps = idx + 1 - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0))


def threshold_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Dict[str, float]:
    """Dice, accuracy, sensitivity and specificity of ``scores >= threshold``."""
    p = np.asarray(scores).ravel() >= threshold
    y = np.asarray(labels, dtype=bool).ravel()
    tp = float(np.sum(p & y))
    fp = float(np.sum(p & ~y))
    fn = float(np.sum(~p & y))
    tn = float(np.sum(~p & ~y))
    return {
        "dice": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1.0),
        "sensitivity": tp / max(tp + fn, 1.0),
        "specificity": tn / max(tn + fp, 1.0),
    }


def best_dice_threshold(scores: np.ndarray, labels: np.ndarray,
                        candidates: Sequence[float] = tuple(np.round(np.arange(0.20, 0.81, 0.01), 2))) -> float:
    """The threshold among ``candidates`` with the highest Dice (for choosing it on validation data)."""
    s = np.asarray(scores).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    best_t, best_d = 0.5, -1.0
    for t in candidates:
        d = threshold_metrics(s, y, float(t))["dice"]
        if d > best_d:
            best_t, best_d = float(t), d
    return best_t
