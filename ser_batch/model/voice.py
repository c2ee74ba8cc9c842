"""Per-voice feature normalisation: adapt to each speaker with their own unlabelled audio (pure).

Emotion is a departure from a speaker's usual voice, but a pooled feature vector mixes
the two: a deep voice and a sad one both lower the spectrum. Z-scoring every vector with
the statistics of its own voice (a speaker's clips in training, a call channel's windows
when scoring) removes most of the speaker and the channel and keeps the departure.

Few clips give noisy statistics, and a call may be mostly one emotion, so each voice's
mean and variance are shrunk towards the training population's by ``prior_weight``
pseudo-clips (MAP adaptation, as in speaker-adaptive CMVN): one clip alone is normalised
almost only by the population, a long call almost only by itself.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ser_batch._typing import Voices
from ser_batch.errors import SchemaError

_MIN_STD = 1e-3  # a constant feature (e.g. 0 for an unvoiced clip's pitch) must not divide by zero


@dataclass(frozen=True)
class VoicePrior:
    """The training population's voice statistics: average per-voice mean and variance of each feature."""

    mean: NDArray[np.float64]
    variance: NDArray[np.float64]
    weight: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (stored in a model's metadata)."""
        return {"mean": self.mean.tolist(), "variance": self.variance.tolist(), "weight": self.weight}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> VoicePrior:
        """Inverse of ``as_dict``."""
        weight = data["weight"]
        if not isinstance(weight, int | float):
            raise SchemaError(f"voice prior weight {weight!r} is not a number")
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["variance"], np.float64), float(weight))


def voice_prior(features: NDArray[np.float32], voices: Voices, *, weight: float) -> VoicePrior:
    """Average the per-voice means and variances of training features.

    Args:
        features: shape ``(n, d)``, finite.
        voices: the voice of each row (e.g. corpus + speaker), length ``n``.
        weight: pseudo-clips of the prior in every voice's statistics, ``>= 0``.

    Returns:
        the prior; every voice counts once, however many clips it has.

    Raises:
        SchemaError: if the shapes disagree or there are no rows.

    >>> prior = voice_prior(np.array([[0.0], [2.0], [10.0]], np.float32), ["a", "a", "b"], weight=5.0)
    >>> prior.mean.tolist(), prior.variance.tolist()
    ([5.5], [0.5])
    """
    matrix, codes = _checked(features, voices)
    means, variances = [], []
    for code in range(codes.max() + 1):
        rows = matrix[codes == code]
        means.append(rows.mean(axis=0))
        variances.append(rows.var(axis=0))
    return VoicePrior(np.mean(means, axis=0), np.mean(variances, axis=0), float(weight))


def normalise_voices(features: NDArray[np.float32], voices: Voices, prior: VoicePrior) -> NDArray[np.float32]:
    """Z-score each row with its voice's statistics, shrunk towards ``prior``.

    A voice with ``n`` rows uses ``(n * own + w * prior) / (n + w)`` for both mean and
    variance (``w = prior.weight``).

    Args:
        features: shape ``(n, d)``, finite.
        voices: the voice of each row, length ``n``; rows of one voice need not be adjacent.
        prior: population statistics of the same ``d`` features.

    Returns:
        float32 array of shape ``(n, d)``.

    Raises:
        SchemaError: if the shapes disagree.

    >>> prior = VoicePrior(np.zeros(1), np.ones(1), weight=0.0)
    >>> normalise_voices(np.array([[1.0], [3.0]], np.float32), ["a", "a"], prior).ravel().tolist()
    [-1.0, 1.0]
    """
    matrix, codes = _checked(features, voices)
    if matrix.shape[1] != prior.mean.size:
        raise SchemaError(f"features have {matrix.shape[1]} values per row; the voice prior has {prior.mean.size}")
    out = np.empty(matrix.shape, np.float32)
    for code in range(codes.max() + 1):
        rows = codes == code
        block, n = matrix[rows], float(rows.sum())
        mean = (n * block.mean(axis=0) + prior.weight * prior.mean) / (n + prior.weight)
        # the voice's spread around the shrunk mean, plus the prior's
        spread = (n * ((block - mean) ** 2).mean(axis=0) + prior.weight * prior.variance) / (n + prior.weight)
        out[rows] = (block - mean) / np.sqrt(np.maximum(spread, _MIN_STD**2))
    return out


def _checked(features: NDArray[np.float32], voices: Voices) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    matrix = np.asarray(features, np.float64)
    labels = list(voices)
    if matrix.ndim != 2 or matrix.shape[0] != len(labels) or matrix.shape[0] == 0:
        raise SchemaError(f"features of shape {matrix.shape} and {len(labels)} voices: need (n >= 1, d) and n voices")
    index: dict[Hashable, int] = {}
    codes = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)
    return matrix, codes
