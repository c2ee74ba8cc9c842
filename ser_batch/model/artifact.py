"""A trained model with what it was trained on, and the one way to get its probabilities (pure + TF).

``ser_batch.storage.model_dir`` saves and loads it; training, evaluation and scoring all
predict through ``Artifact.probabilities``, so voice normalisation is applied the same way
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch._typing import Voices
from ser_batch.model.networks import probabilities
from ser_batch.model.voice import VoicePrior, normalise_voices
from ser_batch.schema import ModelIdentity

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Artifact:
    """A loaded model directory: the Keras model and what it was trained on."""

    model: keras.Model
    metadata: dict[str, Any]
    identity: ModelIdentity
    voice_prior: VoicePrior | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's classes, in the order of its probability columns."""
        return self.identity.classes

    @property
    def feature_set(self) -> str:
        """Name of the feature set the model was trained on."""
        return self.identity.feature_set

    @property
    def fingerprint(self) -> str:
        """Fingerprint of that feature set."""
        return self.identity.fingerprint

    def probabilities(self, features: ArrayLike, *, voices: Voices | None = None) -> NDArray[np.float32]:
        """Class probabilities for raw feature vectors of the model's feature set.

        Args:
            features: shape ``(n, n_features)``.
            voices: the voice (speaker, call channel) of each row, shape ``(n,)``, for a model
                trained with voice normalisation; None treats every row as a voice of its own,
                which leans on the training population's statistics. Ignored otherwise.

        Returns:
            float32 array of shape ``(n, len(classes))``, columns in ``classes`` order.

        Raises:
            SchemaError: if ``features`` does not have the model's width, or ``voices`` its length.
        """
        matrix = np.asarray(features, dtype=np.float32)
        if self.voice_prior is not None and matrix.ndim == 2 and matrix.shape[0]:
            matrix = normalise_voices(matrix, range(matrix.shape[0]) if voices is None else voices, self.voice_prior)
        return probabilities(self.model, matrix)
