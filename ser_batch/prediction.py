"""Scoring kernels for one recording channel (pure, no IO): window features, segment rows, call row.

A channel is scored at its own sample rate: ``ser_batch.segment`` finds speech windows
on it, each window is resampled on its own to the model's feature-set rate (as a
training clip was) and featurized, and the model's probabilities for the windows
become one row per segment and one summary row per channel. At the feature set's own
rate, ``stats`` sets featurize all windows from shared STFT frames (``ser_batch.windowing``).

Columns cover every emotion in ``EMOTIONS`` order (``prob_<emotion>``, ``share_<emotion>``);
a class the model does not have is None, so every model writes the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch.audio import resample
from ser_batch.config import EMOTIONS, FeatureConfig
from ser_batch.errors import SchemaError
from ser_batch.features import feature_names, feature_vector
from ser_batch.segment import Span
from ser_batch.summary import call_summary
from ser_batch.windowing import SampleWindow, supports_shared_frames, window_vectors


def window_features(
    waveform: NDArray[np.float32], sample_rate: int, windows: Sequence[Span], config: FeatureConfig
) -> NDArray[np.float32]:
    """Feature vectors of windows of one channel, each resampled to the feature set's rate.

    Args:
        waveform: mono samples at ``sample_rate``, shape ``(n_samples,)``, float32 in [-1, 1].
        sample_rate: rate of ``waveform`` in Hz, > 0.
        windows: ``(start_s, end_s)`` in seconds, within the waveform (as ``segment.windows`` gives).
        config: the model's feature set; its ``sample_rate`` and ``resample_quality`` apply.

    Returns:
        float32 array of shape ``(len(windows), len(feature_names(config)))``.

    Raises:
        AudioError: if a window breaks the featurizer's contract (too short, silent, not finite).

    >>> from ser_batch.config import feature_config
    >>> config = feature_config("seed268")
    >>> t = np.arange(8000 * 3, dtype=np.float32) / 8000
    >>> window_features(0.3 * np.sin(2 * np.pi * 200 * t), 8000, [(0.5, 2.0), (1.0, 3.0)], config).shape
    (2, 268)
    """
    return window_features_at(waveform, sample_rate, window_samples(windows, sample_rate), config)


def window_samples(windows: Sequence[Span], sample_rate: int) -> list[SampleWindow]:
    """``(start, stop)`` sample offsets of windows given in seconds.

    >>> window_samples([(0.5, 2.0)], 8000)
    [(4000, 16000)]
    """
    return [(round(start_s * sample_rate), round(end_s * sample_rate)) for start_s, end_s in windows]


def window_features_at(
    samples: NDArray[np.float32], sample_rate: int, windows: Sequence[SampleWindow], config: FeatureConfig
) -> NDArray[np.float32]:
    """``window_features`` of windows given as ``(start, stop)`` sample offsets into ``samples``.

    At the feature set's own rate, ``stats`` sets share STFT frames between overlapping windows
    (``ser_batch.windowing``; equal to ``feature_vector`` per window to float32 rounding).
    Otherwise each window is resampled on its own, as a training clip was, and featurized.

    Raises:
        AudioError: if a window breaks the featurizer's contract (too short, silent, not finite).
    """
    if sample_rate == config.sample_rate and supports_shared_frames(config):
        return window_vectors(np.ascontiguousarray(samples, dtype=np.float32), windows, config)
    matrix = np.empty((len(windows), len(feature_names(config))), dtype=np.float32)
    for row, (start, stop) in enumerate(windows):
        clip = np.ascontiguousarray(samples[start:stop], dtype=np.float32)
        clip = resample(clip, sample_rate, config.sample_rate, quality=config.resample_quality)
        matrix[row] = feature_vector(clip, config.sample_rate, config)
    return matrix


def segment_columns(windows: Sequence[Span], probabilities: ArrayLike, classes: tuple[str, ...]) -> dict[str, list[Any]]:
    """One row per window: times, top class, its probability and every class's probability.

    ``emotion`` is the class with the highest probability, ties to the first in ``classes``;
    ``confidence`` is that probability.

    Args:
        windows: ``(start_s, end_s)`` of each scored window, shape ``(n,)``.
        probabilities: shape ``(n, len(classes))``, columns in ``classes`` order.
        classes: the model's classes, each one of ``EMOTIONS``.

    Returns:
        Columns ``start_s``, ``end_s``, ``emotion``, ``confidence`` and ``prob_<emotion>``
        for every emotion in ``EMOTIONS`` (None for classes the model lacks).

    Raises:
        SchemaError: if the shapes disagree or a class is not one of ``EMOTIONS``.

    >>> columns = segment_columns([(0.0, 3.0)], [[0.2, 0.8]], ("angry", "sad"))
    >>> columns["emotion"], columns["confidence"], columns["prob_sad"], columns["prob_happy"]
    (['sad'], [0.8], [0.8], [None])
    """
    probs = _checked(windows, probabilities, classes)
    top = np.argmax(probs, axis=1)
    columns: dict[str, list[Any]] = {
        "start_s": [float(start) for start, _ in windows],
        "end_s": [float(end) for _, end in windows],
        "emotion": [classes[i] for i in top.tolist()],
        "confidence": probs[np.arange(len(windows)), top].tolist(),
    }
    for name in EMOTIONS:
        values = probs[:, classes.index(name)].tolist() if name in classes else [None] * len(windows)
        columns[f"prob_{name}"] = values
    return columns


def call_columns(windows: Sequence[Span], probabilities: ArrayLike, classes: tuple[str, ...]) -> dict[str, Any]:
    """A channel's summary row: speech time, shares per emotion, dominant emotion, peak anger.

    The rules are ``ser_batch.summary``'s: overlapping windows count once, each instant goes
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
    probs = _checked(windows, probabilities, classes)
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


def _checked(windows: Sequence[Span], probabilities: ArrayLike, classes: tuple[str, ...]) -> NDArray[np.float64]:
    unknown = [name for name in classes if name not in EMOTIONS]
    if unknown:
        raise SchemaError(f"model classes {unknown} are not in EMOTIONS {list(EMOTIONS)}")
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.size == 0:
        probs = probs.reshape(0, len(classes))
    if probs.shape != (len(windows), len(classes)):
        raise SchemaError(f"probabilities shape {probs.shape} != ({len(windows)}, {len(classes)}) (windows, classes)")
    return probs
