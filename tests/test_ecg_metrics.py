"""ECG scores: the Challenge 2021 metric against a hand computation, macro F1, AUROC, age MAE,
and the class table (26 scored classes, equivalence pairs, the weights matrix)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeper.errors import UnknownNameError
from sweeper.tasks.ecg.classes import (
    CLASS_SETS,
    SCORED,
    SYNTHETIC_CLASSES,
    WEIGHTS,
    class_set,
    label_vector,
    weights_for,
)
from sweeper.tasks.ecg.metrics import (
    age_mae,
    auroc,
    challenge_score,
    class_f1,
    macro_auroc,
    macro_f1,
    modified_confusion,
)


def test_challenge_metric_equals_a_hand_computed_value() -> None:
    classes = ["AF", "NSR", "SB"]
    # Weights from weights.csv: AF-NSR 0.25, AF-SB 0.3, NSR-SB 0.45.
    assert weights_for(classes).tolist() == [[1, 0.25, 0.3], [0.25, 1, 0.45], [0.3, 0.45, 1]]
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # AF, NSR, SB
    outputs = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 1]])  # AF, SB, NSR+SB
    # Record 1: {AF} vs {AF}: n=1, A[AF,AF] += 1.
    # Record 2: {NSR} vs {SB}: n=2, A[NSR,SB] += 1/2.
    # Record 3: {SB} vs {NSR,SB}: n=2, A[SB,NSR] += 1/2 and A[SB,SB] += 1/2.
    observed = 1 * 1.0 + 0.5 * 0.45 + 0.5 * 0.45 + 0.5 * 1.0  # = 1.95
    perfect = 3.0
    # Always NSR: {AF} vs {NSR}: n=2, 0.5*0.25; {NSR} vs {NSR}: 1; {SB} vs {NSR}: n=2, 0.5*0.45.
    inactive = 0.5 * 0.25 + 1.0 + 0.5 * 0.45  # = 1.35
    expected = (observed - inactive) / (perfect - inactive)  # = 0.6 / 1.65
    assert expected == pytest.approx(0.36363636, abs=1e-8)
    assert challenge_score(labels, outputs, classes) == pytest.approx(expected, abs=1e-12)
    confusion = modified_confusion(labels, outputs)
    assert confusion.tolist() == [[1, 0, 0], [0, 0, 0.5], [0, 0.5, 0.5]]


@pytest.mark.parametrize("class_names", ["scored26", "synthetic9"])
def test_always_normal_scores_zero_and_perfect_scores_one(class_names: str) -> None:
    classes = list(CLASS_SETS[class_names])
    rng = np.random.default_rng(0)
    labels = (rng.random((200, len(classes))) < 0.2).astype(np.uint8)
    normal = np.zeros_like(labels)
    normal[:, classes.index("NSR")] = 1
    assert challenge_score(labels, labels, classes) == pytest.approx(1.0, abs=1e-12)
    assert challenge_score(labels, normal, classes) == pytest.approx(0.0, abs=1e-12)
    # Predicting nothing at all earns less than the normal class alone on these labels.
    assert challenge_score(labels, np.zeros_like(labels), classes) < 0


def test_challenge_metric_needs_the_normal_class() -> None:
    with pytest.raises(ValueError, match="NSR"):
        challenge_score(np.eye(2), np.eye(2), ["AF", "SB"])


def test_macro_f1_by_hand_and_the_present_only_variant() -> None:
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    outputs = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 0]])
    # Class 0: TP 1, FN 1 -> 2/3. Class 1: TP 1, FP 1 -> 2/3. Class 2: absent, never predicted.
    assert np.allclose(class_f1(labels, outputs)[:2], [2 / 3, 2 / 3])
    assert math.isnan(class_f1(labels, outputs)[2])
    assert macro_f1(labels, outputs) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert macro_f1(labels, outputs, present_only=True) == pytest.approx(2 / 3)
    # A class absent from the target but predicted scores 0 in both variants' sums.
    assert macro_f1(labels, np.ones_like(outputs), present_only=True) == pytest.approx(
        (2 / 3 + 2 / 5) / 2
    )


def test_auroc_and_age_mae() -> None:
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))
    labels = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    scores = np.array([[0.1, 0.2], [0.9, 0.1], [0.2, 0.3], [0.8, 0.4]])
    assert macro_auroc(labels, scores) == pytest.approx(1.0)  # the one-class column is skipped
    ages = np.array([50.0, np.nan, 70.0, -1.0])
    assert age_mae(ages, np.array([55.0, 0.0, 60.0, 0.0])) == pytest.approx(7.5)
    assert math.isnan(age_mae(np.array([np.nan]), np.array([1.0])))


def test_the_26_classes_and_their_weights() -> None:
    assert len(SCORED) == 26 and WEIGHTS.shape == (26, 26)
    assert np.array_equal(WEIGHTS, WEIGHTS.T) and np.all(np.diag(WEIGHTS) == 1.0)
    assert WEIGHTS.min() == 0.15 and WEIGHTS[WEIGHTS < 1].max() == 0.5
    names = [c.abbreviation for c in SCORED]
    pairs = [c.codes for c in SCORED if len(c.codes) == 2]
    assert pairs == [
        ("733534002", "164909002"),
        ("713427006", "59118001"),
        ("284470004", "63593006"),
        ("427172004", "17338001"),
    ]
    # Spot checks against weights.csv: AF-AFL 0.5, IAVB-Brady 0.5, NSR-QAb 0.15.
    assert WEIGHTS[names.index("AF"), names.index("AFL")] == 0.5
    assert WEIGHTS[names.index("IAVB"), names.index("Brady")] == 0.5
    assert WEIGHTS[names.index("NSR"), names.index("QAb")] == 0.15
    assert set(SYNTHETIC_CLASSES) <= set(names)
    with pytest.raises(UnknownNameError, match="choose one of: scored26, synthetic9"):
        class_set("all")


def test_label_vector_merges_equivalent_codes_and_ignores_unscored_ones() -> None:
    classes = class_set("synthetic9")
    rbbb = classes.index("CRBBB|RBBB")
    for code in ("59118001", "713427006"):
        vector = label_vector([code, "999999999"], classes)
        assert vector.tolist() == [1 if k == rbbb else 0 for k in range(len(classes))]
    assert label_vector(["251120003"], classes).sum() == 0  # unscored: all-zero, kept
