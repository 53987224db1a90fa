"""Segmentation scores (numpy only): ROC AUC with exact tie handling, and threshold metrics."""
from __future__ import annotations

from typing import Dict, List, Sequence

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


#: The thresholds a best-Dice choice looks at.
DICE_CANDIDATES = tuple(float(t) for t in np.round(np.arange(0.20, 0.81, 0.01), 2))


def dice_curve(scores: np.ndarray, labels: np.ndarray, candidates: Sequence[float] = DICE_CANDIDATES) -> List[float]:
    """Dice of ``scores >= t`` for each (ascending) candidate t, in one pass over the pixels."""
    s = np.asarray(scores).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    # compared in the scores' own precision, as ``threshold_metrics`` compares them
    c = np.asarray(candidates, dtype=s.dtype if s.dtype.kind == "f" else np.float64)
    if c.size == 0:
        return []
    if np.any(np.diff(c) <= 0):
        raise ValueError("candidates must be ascending")
    # bucket k: scores >= c[k-1] and < c[k]; scores >= c[j] are the buckets above j
    bucket = np.searchsorted(c, s, side="right")
    pos = np.bincount(bucket[y], minlength=c.size + 1)
    neg = np.bincount(bucket[~y], minlength=c.size + 1)
    tp = np.cumsum(pos[::-1])[::-1][1:]           # positives with score >= c[j]
    fp = np.cumsum(neg[::-1])[::-1][1:]
    fn = float(np.count_nonzero(y)) - tp
    return [float(2 * a / max(2 * a + b + d, 1.0)) for a, b, d in zip(tp, fp, fn)]


def best_dice_threshold(scores: np.ndarray, labels: np.ndarray,
                        candidates: Sequence[float] = DICE_CANDIDATES) -> float:
    """The threshold among ``candidates`` with the highest Dice (for choosing it on validation data)."""
    cands = [float(t) for t in candidates]
    ascending = sorted(set(cands))
    dice = dict(zip(ascending, dice_curve(scores, labels, ascending)))
    best_t, best_d = 0.5, -1.0
    for t in cands:                                # the first best in the caller's order, as before
        if dice[t] > best_d:
            best_t, best_d = t, dice[t]
    return best_t
