"""Classification metrics: accuracy, balanced accuracy, per-class, per-corpus, confusion (pure).

Labels may be any hashable values (class names in practice). Class order always comes
from the caller (the model's classes, in ``EMOTIONS`` order), never from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

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
