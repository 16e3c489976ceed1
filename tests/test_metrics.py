"""Metrics against hand-computed values."""

import numpy as np
import pytest

from mobilecls.evaluation.metrics import classification_metrics, top_k_accuracy


def test_macro_precision_recall_f1_and_confusion_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    scores = np.eye(3)[predicted]
    m = classification_metrics(labels, scores, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    precision = [1 / 2, 2 / 3, 1 / 1]
    recall = [1 / 2, 2 / 2, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert m["precision"] == pytest.approx(np.mean(precision))
    assert m["recall"] == pytest.approx(np.mean(recall))
    assert m["f1"] == pytest.approx(np.mean(f1))


def test_top_k():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    assert top_k_accuracy(np.array([2, 2]), scores, 1) == 0.0
    assert top_k_accuracy(np.array([2, 2]), scores, 2) == 0.5
    assert top_k_accuracy(np.array([2, 2]), scores, 5) == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"scores must have shape \(2, 3\)"):
        classification_metrics([0, 1], np.zeros((2, 4)), ["a", "b", "c"])
