"""Scores of a multi-label ECG classifier: macro F1, the Challenge 2021 metric, AUROC, age MAE.

Pure functions of numpy arrays: `labels` and `outputs` are ``(records, classes)`` 0/1 arrays,
`scores` the matching probabilities. Definitions follow ``evaluation-2021/evaluate_model.py``
(the Challenge metric) and scikit-learn (macro F1 with ``zero_division=0``, rank AUROC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sweeper.tasks.ecg.classes import NORMAL, weights_for

Array = npt.NDArray[np.generic]


def class_f1(labels: Array, outputs: Array) -> npt.NDArray[np.float64]:
    """Per-class F1 = 2TP / (2TP + FP + FN); NaN for a class neither present nor predicted."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(outputs, dtype=bool)
    tp = (y & p).sum(axis=0).astype(np.float64)
    fp = (~y & p).sum(axis=0)
    fn = (y & ~p).sum(axis=0)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def macro_f1(labels: Array, outputs: Array, *, present_only: bool = False) -> float:
    """Macro F1 over the classes.

    Args:
        labels: true 0/1 labels, ``(records, classes)``.
        outputs: predicted 0/1 labels, same shape.
        present_only: average only over the classes with at least one positive label (the
            variant that does not charge a model for classes the target domain lacks); NaN
            when no class is present.

    Returns:
        With ``present_only=False``, scikit-learn's ``f1_score(average="macro",
        zero_division=0)``: an undefined class (absent and never predicted) counts as 0.
    """
    f1 = np.nan_to_num(class_f1(labels, outputs), nan=0.0)
    if present_only:
        present = np.asarray(labels, dtype=bool).any(axis=0)
        return float(f1[present].mean()) if present.any() else math.nan
    return float(f1.mean()) if f1.size else math.nan


def modified_confusion(labels: Array, outputs: Array) -> npt.NDArray[np.float64]:
    """The Challenge's multi-label confusion matrix A.

    For each record, with n = max(1, |labels OR outputs|), every (true class j, predicted class
    k) pair adds 1/n to ``A[j, k]``.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(outputs, dtype=np.float64)
    n = np.maximum(1.0, np.logical_or(y > 0, p > 0).sum(axis=1))
    confusion: npt.NDArray[np.float64] = y.T @ (p / n[:, None])
    return confusion


def challenge_score(labels: Array, outputs: Array, classes: Sequence[str]) -> float:
    """The normalised Challenge 2021 metric.

    ``s = sum(W * A)`` for the observed outputs, for perfect outputs (outputs = labels) and for
    the inactive classifier (the normal class alone for every record); the score is
    ``(s_obs - s_inactive) / (s_true - s_inactive)``, or 0 when that denominator is 0. The
    perfect classifier scores 1, the always-normal one 0.

    Args:
        labels: true 0/1 labels, ``(records, len(classes))``.
        outputs: predicted 0/1 labels, same shape.
        classes: the class abbreviations of the columns; must include ``NSR``.

    Raises:
        ValueError: `classes` lacks the normal class.
    """
    names = list(classes)
    if NORMAL not in names:
        raise ValueError(f"the Challenge metric needs the normal class {NORMAL} among the classes")
    weights = weights_for(names)
    y = np.asarray(labels, dtype=bool)
    inactive = np.zeros_like(y)
    inactive[:, names.index(NORMAL)] = True
    observed = float(np.sum(weights * modified_confusion(y, outputs)))
    correct = float(np.sum(weights * modified_confusion(y, y)))
    baseline = float(np.sum(weights * modified_confusion(y, inactive)))
    if correct == baseline:
        return 0.0
    return (observed - baseline) / (correct - baseline)


def auroc(labels: Array, scores: Array) -> float:
    """Area under the ROC curve of one class (Mann-Whitney, ties counted half); NaN if one-class."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(s)  # ties get their average rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(labels: Array, scores: Array) -> float:
    """Mean AUROC over the classes that have both positive and negative labels; NaN if none."""
    y = np.asarray(labels)
    s = np.asarray(scores)
    values = [auroc(y[:, k], s[:, k]) for k in range(y.shape[1])]
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def age_mae(ages: Array, predicted: Array) -> float:
    """Mean absolute error (years) over the records with a known age (finite, >= 0); NaN if none."""
    a = np.asarray(ages, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    known = np.isfinite(a) & (a >= 0)
    return float(np.abs(p[known] - a[known]).mean()) if known.any() else math.nan
