"""A trained model with what it was trained on, and the one way to get its probabilities (pure + TF).

``ser_batch.storage.model_dir`` saves and loads it; training, evaluation and scoring all
predict through ``Artifact.probabilities``, so voice normalisation and calibration (the
temperature ``train --calibrate`` fits on the validation part, ``ser_batch.model.calibration``)
are applied the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch._typing import Voices
from ser_batch.config import FeatureConfig, stored_feature_config
from ser_batch.model.calibration import calibrated_probabilities
from ser_batch.model.networks import probabilities
from ser_batch.model.voice import VoicePrior, normalise_voices
from ser_batch.schema import ModelIdentity

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Artifact:
    """A loaded model directory: the Keras model, what it was trained on, and its calibration temperature.

    ``temperature`` is 1.0 (no calibration) for a model trained without ``--calibrate`` or before
    calibration existed.
    """

    model: keras.Model
    metadata: dict[str, Any]
    identity: ModelIdentity
    voice_prior: VoicePrior | None = None
    temperature: float = 1.0

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's classes, in the order of its probability columns."""
        return self.identity.classes

    @property
    def feature_set(self) -> str:
        """Name of the feature set the model was trained on."""
        return self.identity.feature_set

    @property
    def features(self) -> FeatureConfig:
        """The feature set's settings, as the model directory stored them (an encoder set's file and hash included)."""
        return stored_feature_config(self.feature_set, self.metadata.get("feature_config") or {})

    @property
    def fingerprint(self) -> str:
        """Fingerprint of that feature set."""
        return self.identity.fingerprint

    def probabilities(
        self, features: ArrayLike, *, voices: Voices | None = None, calibrated: bool = True
    ) -> NDArray[np.float32]:
        """Class probabilities for raw feature vectors of the model's feature set.

        Args:
            features: shape ``(n, n_features)``.
            voices: the voice (speaker, call channel) of each row, shape ``(n,)``, for a model
                trained with voice normalisation; None treats every row as a voice of its own,
                which leans on the training population's statistics. Ignored otherwise.
            calibrated: scale by the model's ``temperature`` (what scoring reports); False gives the
                network's own output, for measuring the calibration (``calibrate`` then turns it into
                the calibrated one without a second forward pass).

        Returns:
            float32 array of shape ``(n, len(classes))``, columns in ``classes`` order; the top
            class of each row is the same calibrated or not.

        Raises:
            SchemaError: if ``features`` does not have the model's width, or ``voices`` its length.
        """
        matrix = np.asarray(features, dtype=np.float32)
        if self.voice_prior is not None and matrix.ndim == 2 and matrix.shape[0]:
            matrix = normalise_voices(matrix, range(matrix.shape[0]) if voices is None else voices, self.voice_prior)
        raw = probabilities(self.model, matrix)
        return self.calibrate(raw) if calibrated else raw

    def calibrate(self, raw: ArrayLike) -> NDArray[np.float32]:
        """The calibrated form of ``probabilities(..., calibrated=False)``: same shape, same top classes."""
        return calibrated_probabilities(raw, self.temperature)
