from __future__ import annotations

import math

import numpy as np
import pytest

from ser_batch.errors import SchemaError
from ser_batch.model.metrics import (
    accuracy,
    balanced_accuracy,
    confusion_matrix,
    detection_summary,
    expected_calibration_error,
    metric_summary,
    per_class_accuracy,
    per_corpus_accuracy,
    roc_auc,
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


def test_ece_is_zero_when_each_bins_accuracy_equals_its_confidence() -> None:
    # 10 rows at confidence 0.8 of which 8 are right, 4 rows at 0.5 of which 2 are right
    probs = [[0.8, 0.2]] * 10 + [[0.5, 0.5]] * 4
    truth = ["a"] * 8 + ["b"] * 2 + ["a", "a", "b", "b"]
    assert expected_calibration_error(truth, probs, classes=["a", "b"]) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_sampled_calibrated_predictions_is_near_zero(rng: np.random.Generator) -> None:
    logits = rng.normal(0.0, 2.0, (50_000, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = (probs.cumsum(axis=1) > rng.random((50_000, 1))).argmax(axis=1)
    assert expected_calibration_error(truth, probs, classes=range(4)) < 0.01


def test_ece_of_an_over_confident_model_is_the_weighted_gap_of_its_bins() -> None:
    # bin (14/15, 1]: 6 rows at 0.95, 3 right -> gap 0.45; bin (0.6, 0.6667]: 4 rows at 0.65, all right -> gap 0.35
    probs = [[0.95, 0.05, 0.0]] * 6 + [[0.1, 0.65, 0.25]] * 4
    truth = ["a", "a", "a", "c", "c", "b"] + ["b"] * 4
    expected = 6 / 10 * 0.45 + 4 / 10 * 0.35
    assert expected_calibration_error(truth, probs, classes=["a", "b", "c"]) == pytest.approx(expected)


def test_ece_puts_a_confidence_on_a_bin_edge_in_the_lower_bin() -> None:
    # 0.6 = 9/15 ends bin 9; 0.6 and 0.62 would share bin 10 if edges went up: then the gaps would cancel
    probs = [[0.6, 0.4], [0.62, 0.38]]
    assert expected_calibration_error(["a", "b"], probs, classes=["a", "b"]) == pytest.approx((0.4 + 0.62) / 2)


def test_ece_refuses_probabilities_of_another_shape() -> None:
    with pytest.raises(SchemaError, match="shape"):
        expected_calibration_error(["a", "b"], [[1.0, 0.0]], classes=["a", "b"])


def test_ece_of_no_rows_is_nan() -> None:
    assert math.isnan(expected_calibration_error([], np.zeros((0, 2)), classes=["a", "b"]))


def test_roc_auc_counts_pairs_ranked_right_and_ties_as_half() -> None:
    # pairs (pos, neg): (0.9, 0.5) right, (0.9, 0.1) right, (0.5, 0.5) tie, (0.5, 0.1) right
    assert roc_auc([True, True, False, False], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(3.5 / 4)


def test_roc_auc_is_one_for_a_perfect_ranking_and_zero_for_a_reversed_one() -> None:
    assert roc_auc([False, False, True], [0.1, 0.2, 0.3]) == 1.0
    assert roc_auc([True, False, False], [0.1, 0.2, 0.3]) == 0.0


def test_roc_auc_without_one_of_the_classes_is_nan() -> None:
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_detection_summary_counts_the_top_class_against_the_rest() -> None:
    classes = ["angry", "sad", "happy"]
    probs = [
        [0.5, 0.3, 0.2],  # angry, detected
        [0.4, 0.5, 0.1],  # angry, missed (p(angry) 0.4)
        [0.2, 0.7, 0.1],  # angry, missed
        [0.6, 0.2, 0.2],  # sad, false alarm
        [0.3, 0.6, 0.1],  # happy
    ]
    truth = ["angry", "angry", "angry", "sad", "happy"]
    summary = detection_summary(truth, probs, classes=classes, positive="angry")
    assert summary["n_positive"] == 3
    assert summary["n_detected"] == 2
    assert summary["precision"] == pytest.approx(1 / 2)
    assert summary["recall"] == pytest.approx(1 / 3)
    # p(angry) of positives 0.5, 0.4, 0.2 against negatives 0.6, 0.3: above in 2 of 6 pairs
    assert summary["roc_auc"] == pytest.approx(2 / 6)


def test_detection_summary_without_detections_has_no_precision() -> None:
    summary = detection_summary(["angry", "sad"], [[0.1, 0.9], [0.2, 0.8]], classes=["angry", "sad"], positive="angry")
    assert summary["precision"] is None
    assert summary["recall"] == 0.0


def test_detection_summary_refuses_a_class_the_model_lacks() -> None:
    with pytest.raises(SchemaError, match="not among"):
        detection_summary(["sad"], [[1.0]], classes=["sad"], positive="angry")
