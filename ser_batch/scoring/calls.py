"""Summarise one recording channel's segment predictions into call figures (pure, no IO).

Rules, applied to the scored windows of one channel:

- ``speech_s`` is the length of the union of the windows: overlapping windows count once.
- Every instant of speech goes to one emotion. Where several windows cover it, their
  probability vectors are averaged (unweighted); the instant goes to the class with
  the highest (average) probability, ties to the class that comes first in
  ``class_names``. ``shares`` is each class's time over ``speech_s``; the shares sum
  to 1 when there is speech and are all 0.0 when there is none.
- ``dominant_emotion`` is the class with the largest share, ties to the first in
  ``class_names``; None when there is no speech.
- ``peak_angry_s`` is the start of the window with the highest probability of the
  class named ``"angry"``, ties to the earliest window; None (with
  ``peak_angry_probability``) when there are no windows or no such class.
- The **trend** compares the first and the last quarter of the channel's speech time (the union
  of its windows, pauses left out): ``share_angry_first`` and ``share_angry_last`` are the angry
  shares of each quarter by the rules above (windows cut at the quarter's edge).
  ``trend`` is ``rising`` when the last quarter's angry share exceeds the first's by at least
  ``TREND_CHANGE``, ``falling`` when it is lower by at least that, else ``steady``; all three
  are None below ``TREND_MIN_SPEECH_S`` of speech or for a model without ``"angry"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch._typing import Span
from ser_batch.config import ANGRY, DEFAULT_MIN_CONFIDENCE, EMOTIONS
from ser_batch.errors import SchemaError

TREND_CHANGE = 0.15
"""Change in the angry share, last quarter of speech minus first, that makes a ``trend`` rising or falling."""

TREND_MIN_SPEECH_S = 12.0
"""Speech a channel needs for a ``trend``: each quarter then holds at least one default 3 s window."""

TRENDS: tuple[str, ...] = ("rising", "falling", "steady")
"""Values of the calls table's ``trend`` column."""

_TIE_TOLERANCE = 1e-9  # probabilities or shares this close count as equal, so fp noise never breaks a tie


@dataclass(frozen=True)
class CallSummary:
    """Figures for one recording channel.

    Attributes:
        speech_s: seconds covered by at least one window.
        n_segments: number of windows scored.
        shares: class name -> share of ``speech_s`` in [0, 1], in class order.
        dominant_emotion: the class with the largest share, or None without speech.
        peak_angry_s: start (s) of the angriest window, or None.
        peak_angry_probability: that window's probability of ``"angry"``, or None.
    """

    speech_s: float
    n_segments: int
    shares: dict[str, float]
    dominant_emotion: str | None
    peak_angry_s: float | None
    peak_angry_probability: float | None


def call_summary(
    start_s: ArrayLike,
    end_s: ArrayLike,
    probabilities: ArrayLike,
    class_names: tuple[str, ...],
) -> CallSummary:
    """Summarise one channel's window predictions (rules in the module docstring).

    Args:
        start_s: window starts in seconds, shape ``(n_segments,)``, any order.
        end_s: window ends in seconds, shape ``(n_segments,)``, each >= its start.
        probabilities: class probabilities, shape ``(n_segments, n_classes)``,
            columns in ``class_names`` order.
        class_names: the model's classes, in its output order, unique.

    Returns:
        The channel's :class:`CallSummary`.

    Raises:
        SchemaError: if the shapes disagree, a value is not finite, a window ends
            before it starts, or a class name repeats.

    >>> s = call_summary([0.0, 2.0], [3.0, 5.0], [[0.9, 0.1], [0.3, 0.7]], ("angry", "sad"))
    >>> s.speech_s, s.shares, s.dominant_emotion, s.peak_angry_s
    (5.0, {'angry': 0.6, 'sad': 0.4}, 'angry', 0.0)
    """
    starts, ends, probs = _checked(start_s, end_s, probabilities, class_names)
    order = np.lexsort((ends, starts))
    starts, ends, probs = starts[order], ends[order], probs[order]
    class_time = _time_per_class(starts, ends, probs)
    speech_s = float(class_time.sum())
    shares = class_time / speech_s if speech_s > 0 else np.zeros(len(class_names))
    dominant = None
    if speech_s > 0:
        dominant = class_names[_first_max(shares[None, :], _TIE_TOLERANCE)[0]]
    peak_s: float | None = None
    peak_p: float | None = None
    if starts.size and ANGRY in class_names:
        angry = probs[:, class_names.index(ANGRY)]
        best = int(np.flatnonzero(angry >= angry.max() - _TIE_TOLERANCE)[0])
        peak_s, peak_p = float(starts[best]), float(angry[best])
    return CallSummary(
        speech_s=speech_s,
        n_segments=int(starts.size),
        shares={name: float(share) for name, share in zip(class_names, shares, strict=True)},
        dominant_emotion=dominant,
        peak_angry_s=peak_s,
        peak_angry_probability=peak_p,
    )


def _checked(
    start_s: ArrayLike, end_s: ArrayLike, probabilities: ArrayLike, class_names: tuple[str, ...]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    starts = np.asarray(start_s, dtype=np.float64)
    ends = np.asarray(end_s, dtype=np.float64)
    probs = np.asarray(probabilities, dtype=np.float64)
    n_classes = len(class_names)
    if n_classes == 0 or len(set(class_names)) != n_classes:
        raise SchemaError(f"class_names {class_names!r} must be non-empty and unique")
    if starts.ndim != 1 or ends.shape != starts.shape:
        raise SchemaError(f"start_s shape {starts.shape} and end_s shape {ends.shape} must be equal and 1-D")
    if starts.size == 0:
        probs = probs.reshape(0, n_classes)
    if probs.shape != (starts.size, n_classes):
        raise SchemaError(f"probabilities shape {probs.shape} != ({starts.size}, {n_classes}) (segments, classes)")
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(ends)) and np.all(np.isfinite(probs))):
        raise SchemaError("start_s, end_s and probabilities must be finite")
    if np.any(ends < starts):
        first = int(np.flatnonzero(ends < starts)[0])
        raise SchemaError(f"segment {first} ends at {ends[first]} before it starts at {starts[first]}")
    return starts, ends, probs


def _time_per_class(
    starts: NDArray[np.float64], ends: NDArray[np.float64], probs: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Seconds of speech won by each class, from the elementary intervals between window edges."""
    n_classes = probs.shape[1]
    edges = np.unique(np.concatenate((starts, ends)))
    if edges.size < 2:
        return np.zeros(n_classes)
    # Sweep: add a window's probabilities where it starts, remove them where it ends.
    first = np.searchsorted(edges, starts)
    stop = np.searchsorted(edges, ends)
    count = np.zeros(edges.size, dtype=np.int64)
    np.add.at(count, first, 1)
    np.add.at(count, stop, -1)
    total = np.zeros((edges.size, n_classes))
    np.add.at(total, first, probs)
    np.subtract.at(total, stop, probs)
    count, total = np.cumsum(count)[:-1], np.cumsum(total, axis=0)[:-1]
    covered = count > 0
    lengths = np.diff(edges)[covered]
    mean = total[covered] / count[covered, None]
    winner = _first_max(mean, _TIE_TOLERANCE)
    return np.bincount(winner, weights=lengths, minlength=n_classes).astype(np.float64)


def _first_max(values: NDArray[np.float64], tolerance: float) -> NDArray[np.intp]:
    """Column of each row's maximum; among values within tolerance of it, the first."""
    first: NDArray[np.intp] = np.argmax(values >= values.max(axis=1, keepdims=True) - tolerance, axis=1)
    return first


def segment_columns(
    windows: Sequence[Span],
    probabilities: ArrayLike,
    classes: tuple[str, ...],
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> dict[str, list[Any]]:
    """One row per window: times, top class, its probability, whether that is too low, every class's probability.

    ``emotion`` is the class with the highest probability, ties to the first in ``classes``;
    ``confidence`` is that probability; ``uncertain`` is ``confidence < min_confidence``.

    Args:
        windows: ``(start_s, end_s)`` of each scored window, shape ``(n,)``.
        probabilities: calibrated (``Artifact.probabilities``), shape ``(n, len(classes))``,
            columns in ``classes`` order.
        classes: the model's classes, each one of ``EMOTIONS``.
        min_confidence: the confidence a window's top class needs not to be ``uncertain``, in [0, 1].

    Returns:
        Columns ``start_s``, ``end_s``, ``emotion``, ``confidence``, ``uncertain`` and
        ``prob_<emotion>`` for every emotion in ``EMOTIONS`` (None for classes the model lacks).

    Raises:
        SchemaError: if the shapes disagree or a class is not one of ``EMOTIONS``.

    >>> columns = segment_columns([(0.0, 3.0)], [[0.2, 0.8]], ("angry", "sad"))
    >>> columns["emotion"], columns["confidence"], columns["uncertain"], columns["prob_sad"], columns["prob_happy"]
    (['sad'], [0.8], [False], [0.8], [None])
    """
    probs = _checked_columns(windows, probabilities, classes)
    top = np.argmax(probs, axis=1)
    confidence = probs[np.arange(len(windows)), top]
    columns: dict[str, list[Any]] = {
        "start_s": [float(start) for start, _ in windows],
        "end_s": [float(end) for _, end in windows],
        "emotion": [classes[i] for i in top.tolist()],
        "confidence": confidence.tolist(),
        "uncertain": (confidence < min_confidence).tolist(),
    }
    for name in EMOTIONS:
        values = probs[:, classes.index(name)].tolist() if name in classes else [None] * len(windows)
        columns[f"prob_{name}"] = values
    return columns


def call_columns(windows: Sequence[Span], probabilities: ArrayLike, classes: tuple[str, ...]) -> dict[str, Any]:
    """A channel's summary row: speech time, shares per emotion, dominant emotion, peak anger.

    The rules are ``ser_batch.scoring.calls``'s: overlapping windows count once, each instant goes
    to the top class of the averaged probabilities, the dominant emotion has the largest
    share (ties to the first class), and ``peak_angry_s`` starts the angriest window.

    Args:
        windows: ``(start_s, end_s)`` of each scored window; empty for a channel without speech.
        probabilities: shape ``(n, len(classes))``.
        classes: the model's classes, each one of ``EMOTIONS``.

    Returns:
        ``speech_s``, ``n_segments``, ``share_<emotion>`` for every emotion in ``EMOTIONS``
        (0.0 for the model's classes without speech, None for classes it lacks),
        ``dominant_emotion``, ``peak_angry_s`` and ``peak_angry_probability``.

    Raises:
        SchemaError: if the shapes disagree or a class is not one of ``EMOTIONS``.

    >>> row = call_columns([], np.zeros((0, 2)), ("angry", "sad"))
    >>> row["n_segments"], row["share_angry"], row["share_happy"], row["dominant_emotion"]
    (0, 0.0, None, None)
    """
    probs = _checked_columns(windows, probabilities, classes)
    starts = [start for start, _ in windows]
    ends = [end for _, end in windows]
    summary = call_summary(starts, ends, probs, classes)
    row: dict[str, Any] = {"speech_s": summary.speech_s, "n_segments": summary.n_segments}
    row.update({f"share_{name}": summary.shares.get(name) for name in EMOTIONS})
    row.update(
        dominant_emotion=summary.dominant_emotion,
        peak_angry_s=summary.peak_angry_s,
        peak_angry_probability=summary.peak_angry_probability,
    )
    return row


def trend_columns(windows: Sequence[Span], probabilities: ArrayLike, classes: tuple[str, ...]) -> dict[str, Any]:
    """A channel's anger over its first and last quarter of speech, and its ``trend`` (module docstring).

    Args:
        windows: ``(start_s, end_s)`` of each scored window; empty for a channel without speech.
        probabilities: shape ``(n, len(classes))``.
        classes: the model's classes, each one of ``EMOTIONS``.

    Returns:
        ``share_angry_first`` and ``share_angry_last`` in [0, 1] and ``trend`` (one of ``TRENDS``),
        each None below ``TREND_MIN_SPEECH_S`` of speech or without an ``"angry"`` class.

    Raises:
        SchemaError: if the shapes disagree or a class is not one of ``EMOTIONS``.

    >>> windows = [(float(t), float(t + 3)) for t in range(0, 16, 3)]
    >>> probs = [[0.2, 0.8]] * 3 + [[0.9, 0.1]] * 3
    >>> trend_columns(windows, probs, ("angry", "sad"))
    {'share_angry_first': 0.0, 'share_angry_last': 1.0, 'trend': 'rising'}
    """
    probs = _checked_columns(windows, probabilities, classes)
    row: dict[str, Any] = {"share_angry_first": None, "share_angry_last": None, "trend": None}
    covered = span_union(windows)
    total = sum(end - start for start, end in covered)
    if ANGRY not in classes or total < TREND_MIN_SPEECH_S:
        return row
    first_end, last_start = _speech_instant(covered, total / 4), _speech_instant(covered, 3 * total / 4)
    for key, low, high in (("share_angry_first", -np.inf, first_end), ("share_angry_last", last_start, np.inf)):
        cut = [(max(start, low), min(end, high)) for start, end in windows]
        kept = [index for index, (start, end) in enumerate(cut) if end > start]
        summary = call_summary([cut[i][0] for i in kept], [cut[i][1] for i in kept], probs[kept], classes)
        row[key] = summary.shares[ANGRY]
    change = row["share_angry_last"] - row["share_angry_first"]
    threshold = TREND_CHANGE - _TIE_TOLERANCE  # 0.35 - 0.2 is 0.1499999... in floating point, and rising
    row["trend"] = "rising" if change >= threshold else "falling" if change <= -threshold else "steady"
    return row


def span_union(spans: Iterable[Span]) -> list[Span]:
    """The union of ``(start_s, end_s)`` spans as sorted, disjoint spans (touching spans join).

    >>> span_union([(6.0, 9.0), (0.0, 3.0), (1.5, 4.5), (4.5, 5.0)])
    [(0.0, 5.0), (6.0, 9.0)]
    """
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((float(start), float(end)))
    return merged


def _speech_instant(covered: Sequence[Span], speech_s: float) -> float:
    """The time at which ``speech_s`` seconds of the sorted, disjoint ``covered`` spans have passed."""
    for start, end in covered:
        if speech_s <= end - start:
            return start + speech_s
        speech_s -= end - start
    return covered[-1][1]


def _checked_columns(
    windows: Sequence[Span], probabilities: ArrayLike, classes: tuple[str, ...]
) -> NDArray[np.float64]:
    unknown = [name for name in classes if name not in EMOTIONS]
    if unknown:
        raise SchemaError(f"model classes {unknown} are not in EMOTIONS {list(EMOTIONS)}")
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.size == 0:
        probs = probs.reshape(0, len(classes))
    if probs.shape != (len(windows), len(classes)):
        raise SchemaError(f"probabilities shape {probs.shape} != ({len(windows)}, {len(classes)}) (windows, classes)")
    return probs
