"""Classification metrics: accuracy, balanced accuracy, per-class, per-corpus, confusion, calibration, detection (pure).

Labels may be any hashable values (class names in practice). Class order always comes
from the caller (the model's classes, in ``EMOTIONS`` order), never from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch.config import ANGRY
from ser_batch.errors import SchemaError


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of rows whose prediction equals the truth.

    Args:
        y_true: true labels, shape ``(n,)``.
        y_pred: predicted labels, shape ``(n,)``.

    Returns:
        accuracy in [0, 1]; NaN when ``n == 0``.

    Raises:
        SchemaError: if the shapes differ.

    >>> accuracy(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    0.75
    """
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(true == pred)) if true.size else float("nan")


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean per-class recall over the classes present in ``y_true``.

    Args:
        y_true: true labels, shape ``(n,)``.
        y_pred: predicted labels, shape ``(n,)``.

    Returns:
        balanced accuracy in [0, 1]; NaN when ``n == 0``.

    Raises:
        SchemaError: if the shapes differ.

    >>> balanced_accuracy(["a", "a", "a", "b"], ["a", "a", "a", "a"])
    0.5
    """
    true, pred = _pair(y_true, y_pred)
    if not true.size:
        return float("nan")
    return float(np.mean([np.mean(pred[true == label] == label) for label in _present(true)]))


def per_class_accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, classes: Sequence[Any]) -> dict[Any, float]:
    """Recall of each class present in ``y_true``, keyed in ``classes`` order.

    Args:
        y_true: true labels, shape ``(n,)``, each one of ``classes``.
        y_pred: predicted labels, shape ``(n,)``.
        classes: the class order of the result.

    Returns:
        ``{class: recall}`` for the classes that occur in ``y_true``.

    Raises:
        SchemaError: if the shapes differ or ``y_true`` has a label outside ``classes``.

    >>> per_class_accuracy(["a", "a", "b", "c"], ["a", "b", "b", "a"], classes=["c", "b", "a"])
    {'c': 0.0, 'b': 1.0, 'a': 0.5}
    """
    true, pred = _pair(y_true, y_pred)
    _check_known(true, classes)
    return {label: float(np.mean(pred[true == label] == label)) for label in classes if np.any(true == label)}


def per_corpus_accuracy(y_true: ArrayLike, y_pred: ArrayLike, corpus: ArrayLike) -> dict[str, float]:
    """Accuracy within each corpus, keyed by corpus name in sorted order.

    Args:
        y_true: true labels, shape ``(n,)``.
        y_pred: predicted labels, shape ``(n,)``.
        corpus: corpus name per row, shape ``(n,)``.

    Returns:
        ``{corpus: accuracy}`` for the corpora that occur.

    Raises:
        SchemaError: if the shapes differ.

    >>> per_corpus_accuracy(["a", "b", "a"], ["a", "a", "a"], ["tess", "crema", "crema"])
    {'crema': 0.5, 'tess': 1.0}
    """
    true, pred = _pair(y_true, y_pred)
    corpora = np.asarray(corpus, dtype=object).reshape(-1)
    if corpora.shape != true.shape:
        raise SchemaError(f"corpus has {corpora.size} rows; labels have {true.size}")
    return {str(name): float(np.mean(true[corpora == name] == pred[corpora == name])) for name in _present(corpora)}


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, *, classes: Sequence[Any]) -> NDArray[np.int64]:
    """Counts of (true, predicted) pairs; rows are true classes, columns predictions.

    Args:
        y_true: true labels, shape ``(n,)``, each one of ``classes``.
        y_pred: predicted labels, shape ``(n,)``, each one of ``classes``.
        classes: row and column order, length ``k``.

    Returns:
        int64 array of shape ``(k, k)`` whose entries sum to ``n``.

    Raises:
        SchemaError: if the shapes differ or a label is outside ``classes``.

    >>> confusion_matrix(["a", "a", "b"], ["a", "b", "b"], classes=["a", "b"]).tolist()
    [[1, 1], [0, 1]]
    """
    true, pred = _pair(y_true, y_pred)
    _check_known(true, classes)
    _check_known(pred, classes)
    index = {label: i for i, label in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, ([index[v] for v in true.tolist()], [index[v] for v in pred.tolist()]), 1)
    return matrix


def metric_summary(
    y_true: ArrayLike, y_pred: ArrayLike, corpus: ArrayLike, *, classes: Sequence[str]
) -> dict[str, Any]:
    """The report stored per split part: JSON-ready, with None instead of NaN for an empty part.

    Args:
        y_true: true class names, shape ``(n,)``.
        y_pred: predicted class names, shape ``(n,)``.
        corpus: corpus name per row, shape ``(n,)``.
        classes: class order of ``per_class``.

    Returns:
        ``{"n", "accuracy", "balanced_accuracy", "per_corpus", "per_class"}``.

    Raises:
        SchemaError: as the metrics above.

    >>> summary = metric_summary(["a", "b"], ["a", "a"], ["tess", "tess"], classes=["a", "b"])
    >>> summary["accuracy"], summary["balanced_accuracy"], summary["per_class"]
    (0.5, 0.5, {'a': 1.0, 'b': 0.0})
    >>> metric_summary([], [], [], classes=["a", "b"])["accuracy"] is None
    True
    """
    n = len(np.asarray(y_true, dtype=object).reshape(-1))
    return {
        "n": n,
        "accuracy": accuracy(y_true, y_pred) if n else None,
        "balanced_accuracy": balanced_accuracy(y_true, y_pred) if n else None,
        "per_corpus": per_corpus_accuracy(y_true, y_pred, corpus),
        "per_class": per_class_accuracy(y_true, y_pred, classes=classes),
    }


ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 15)."""


def expected_calibration_error(
    y_true: ArrayLike, probabilities: ArrayLike, *, classes: Sequence[Any], n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error (ECE) of the top-class confidence.

    Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017, eq. 3
    (after Naeini et al. 2015): rows are put in ``n_bins`` equal-width bins ``((m-1)/M, m/M]`` by
    their top-class probability (confidence), and

        ECE = sum over bins m of |B_m| / n * |accuracy(B_m) - mean confidence(B_m)|

    where accuracy(B_m) is the share of the bin's rows whose top class is the true one. 0 means
    the confidence is the accuracy; a model right 60% of the time at confidence 0.9 scores 0.3.
    Ties in the top class go to the first column, as ``argmax`` does.

    Args:
        y_true: true labels, shape ``(n,)``, each one of ``classes``.
        probabilities: shape ``(n, len(classes))``, columns in ``classes`` order.
        classes: the column order.
        n_bins: number of bins ``M``.

    Returns:
        ECE in [0, 1]; NaN when ``n == 0``.

    Raises:
        SchemaError: if the shapes disagree or a label is outside ``classes``.

    >>> expected_calibration_error(["a", "a", "b", "b"], [[0.9, 0.1]] * 4, classes=["a", "b"])
    0.4
    """
    true = np.asarray(y_true, dtype=object).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (true.size, len(classes)):
        raise SchemaError(f"probabilities have shape {probs.shape}; expected ({true.size}, {len(classes)})")
    _check_known(true, classes)
    if not true.size:
        return float("nan")
    index = {label: i for i, label in enumerate(classes)}
    top = probs.argmax(axis=1)
    confidence = probs[np.arange(true.size), top]
    correct = top == np.array([index[v] for v in true.tolist()])
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = 0.0
    for m in np.unique(bins):
        inside = bins == m
        gap += inside.sum() * abs(float(correct[inside].mean()) - float(confidence[inside].mean()))
    return float(gap / true.size)


def roc_auc(is_positive: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative.

    Computed as the Mann-Whitney U statistic over average ranks, so tied scores count one half
    (Hanley and McNeil, Radiology 1982).

    Args:
        is_positive: bool per row, shape ``(n,)``.
        scores: the score of each row (e.g. p(angry)), shape ``(n,)``.

    Returns:
        AUC in [0, 1]; NaN when either class is absent.

    Raises:
        SchemaError: if the shapes differ.

    >>> roc_auc([True, False, True, False], [0.9, 0.8, 0.7, 0.1])
    0.75
    """
    from scipy.stats import rankdata

    positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if positive.shape != values.shape:
        raise SchemaError(f"is_positive has {positive.size} rows but scores {values.size}")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(values)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection_summary(
    y_true: ArrayLike, probabilities: ArrayLike, *, classes: Sequence[str], positive: str
) -> dict[str, Any]:
    """One class against the rest, at the default decision (the top class): precision, recall, ROC AUC.

    A row is detected when ``positive`` is its top class; the AUC ranks rows by the probability of
    ``positive`` instead, so it shows what another threshold could reach.

    Args:
        y_true: true class names, shape ``(n,)``.
        probabilities: shape ``(n, len(classes))``, columns in ``classes`` order.
        classes: the column order; must hold ``positive``.
        positive: the class to detect, e.g. ``"angry"``.

    Returns:
        ``{"class", "n_positive", "n_detected", "precision", "recall", "roc_auc"}``; a ratio without
        rows to divide by is None.

    Raises:
        SchemaError: if the shapes disagree or ``positive`` is not among ``classes``.

    >>> summary = detection_summary(["a", "b", "b"], [[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]], classes=["a", "b"],
    ...                             positive="a")
    >>> summary["precision"], summary["recall"], summary["roc_auc"]
    (0.5, 1.0, 1.0)
    """
    true = np.asarray(y_true, dtype=object).reshape(-1)
    probs = np.asarray(probabilities, dtype=np.float64)
    if positive not in classes:
        raise SchemaError(f"class {positive!r} is not among {list(classes)}")
    if probs.ndim != 2 or probs.shape != (true.size, len(classes)):
        raise SchemaError(f"probabilities have shape {probs.shape}; expected ({true.size}, {len(classes)})")
    column = list(classes).index(positive)
    actual = true == positive
    detected = probs.argmax(axis=1) == column if true.size else np.zeros(0, dtype=bool)
    hits = int((actual & detected).sum())
    auc = roc_auc(actual, probs[:, column]) if true.size else float("nan")
    return {
        "class": positive,
        "n_positive": int(actual.sum()),
        "n_detected": int(detected.sum()),
        "precision": hits / int(detected.sum()) if detected.any() else None,
        "recall": hits / int(actual.sum()) if actual.any() else None,
        "roc_auc": None if np.isnan(auc) else auc,
    }


def confidence_summary(
    y_true: ArrayLike, probabilities: ArrayLike, uncalibrated: ArrayLike, *, classes: Sequence[str]
) -> dict[str, Any]:
    """How far the probabilities can be trusted, JSON-ready: calibration error and angry detection.

    Args:
        y_true: true class names, shape ``(n,)``.
        probabilities: the calibrated probabilities users get, shape ``(n, len(classes))``.
        uncalibrated: the network's own probabilities of the same rows, same shape.
        classes: the column order.

    Returns:
        ``{"ece", "ece_uncalibrated", "angry"}``: ``expected_calibration_error`` of each (None
        for no rows) and ``detection_summary`` of 'angry' on the calibrated ones (None when the
        model has no 'angry').

    Raises:
        SchemaError: as the metrics above.

    >>> summary = confidence_summary(["a", "b"], [[0.6, 0.4], [0.4, 0.6]], [[0.9, 0.1], [0.1, 0.9]],
    ...                              classes=["a", "b"])
    >>> round(summary["ece"], 3), round(summary["ece_uncalibrated"], 3), summary["angry"]
    (0.4, 0.1, None)
    """
    n = len(np.asarray(y_true, dtype=object).reshape(-1))
    calibrated = expected_calibration_error(y_true, probabilities, classes=classes)
    raw = expected_calibration_error(y_true, uncalibrated, classes=classes)
    return {
        "ece": calibrated if n else None,
        "ece_uncalibrated": raw if n else None,
        "angry": detection_summary(y_true, probabilities, classes=classes, positive=ANGRY)
        if ANGRY in classes
        else None,
    }


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    true = np.asarray(y_true, dtype=object).reshape(-1)
    pred = np.asarray(y_pred, dtype=object).reshape(-1)
    if true.shape != pred.shape:
        raise SchemaError(f"y_true has {true.size} rows but y_pred {pred.size}; expected equal lengths")
    return true, pred


def _present(values: NDArray[Any]) -> list[Any]:
    return sorted(set(values.tolist()))


def _check_known(values: NDArray[Any], classes: Sequence[Any]) -> None:
    unknown = set(values.tolist()) - set(classes)
    if unknown:
        raise SchemaError(f"labels {sorted(map(str, unknown))} are not among classes {list(classes)}")
