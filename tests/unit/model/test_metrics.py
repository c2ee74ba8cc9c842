from __future__ import annotations

import math

import numpy as np
import pytest

from ser_batch.errors import SchemaError
from ser_batch.model.metrics import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    metric_summary,
    per_class_accuracy,
    per_corpus_accuracy,
)

# Hand-worked example: a is right 2 of 3 times, b 1 of 2, c 1 of 1.
Y_TRUE = ["a", "a", "a", "b", "b", "c"]
Y_PRED = ["a", "a", "b", "b", "c", "c"]
CORPUS = ["x", "x", "y", "y", "y", "x"]


def test_accuracy_counts_exact_matches() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)


def test_balanced_accuracy_is_the_mean_recall_of_the_true_classes() -> None:
    assert balanced_accuracy(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_balanced_accuracy_ignores_classes_only_predicted() -> None:
    assert balanced_accuracy(["a", "a"], ["a", "b"]) == pytest.approx(0.5)


def test_per_class_accuracy_is_recall_in_the_given_class_order() -> None:
    result = per_class_accuracy(Y_TRUE, Y_PRED, classes=["c", "b", "a", "d"])
    assert list(result) == ["c", "b", "a"]
    assert result == pytest.approx({"c": 1.0, "b": 0.5, "a": 2 / 3})


def test_per_corpus_accuracy_is_accuracy_within_each_corpus() -> None:
    assert per_corpus_accuracy(Y_TRUE, Y_PRED, CORPUS) == pytest.approx({"x": 1.0, "y": 1 / 3})


def test_confusion_matrix_rows_are_true_classes_in_the_given_order() -> None:
    assert confusion_matrix(Y_TRUE, Y_PRED, classes=["a", "b", "c"]).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    reordered = confusion_matrix(Y_TRUE, Y_PRED, classes=["c", "b", "a"])
    assert reordered.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]
    assert reordered.dtype == np.int64


def test_confusion_matrix_rejects_labels_outside_the_classes() -> None:
    with pytest.raises(SchemaError, match=r"\['z'\]"):
        confusion_matrix(["a", "z"], ["a", "a"], classes=["a", "b"])


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(SchemaError, match="2 rows but y_pred 3"):
        accuracy(["a", "b"], ["a", "b", "c"])


def test_empty_inputs_give_nan_and_a_summary_of_nones() -> None:
    assert math.isnan(accuracy([], [])) and math.isnan(balanced_accuracy([], []))
    summary = metric_summary([], [], [], classes=["a", "b"])
    assert summary == {"n": 0, "accuracy": None, "balanced_accuracy": None, "per_corpus": {}, "per_class": {}}


def test_metric_summary_collects_every_metric() -> None:
    summary = metric_summary(Y_TRUE, Y_PRED, CORPUS, classes=["a", "b", "c"])
    assert summary["n"] == 6
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["balanced_accuracy"] == pytest.approx(13 / 18)
    assert summary["per_corpus"] == pytest.approx({"x": 1.0, "y": 1 / 3})
    assert summary["per_class"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
