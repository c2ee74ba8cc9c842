"""Keras classifiers by name, with training-row normalisation inside the model.

TensorFlow/Keras is imported inside the functions, so importing this module is cheap
and never starts TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch.config import TrainConfig
from ser_batch.errors import ConfigError, SchemaError

if TYPE_CHECKING:
    import keras

ModelBuilder = Callable[[int, int, "keras.layers.Layer"], "keras.Model"]
"""``(n_features, n_classes, adapted_normalizer) -> compiled model`` with softmax outputs."""

SEED_MLP_L2 = 0.01
"""L2 factor of the seed MLP's last four layers (Keras' ``"l2"`` default, as the recipe used)."""


def build_model(
    n_features: int,
    n_classes: int,
    config: TrainConfig,
    *,
    normalizer_data: ArrayLike,
    frame_shape: tuple[int, int] | None = None,
) -> keras.Model:
    """Build and compile the model ``config.model`` names, normalising inputs inside it.

    The first layer is a ``keras.layers.Normalization`` adapted on ``normalizer_data``
    (training rows only), so the saved model takes raw feature vectors. Seeds Python,
    NumPy and TensorFlow with ``config.seed`` before creating weights. Sequence models
    (``crnn``) reshape the flat vector to ``frame_shape`` and normalise each band.

    Args:
        n_features: width of a feature vector.
        n_classes: number of output classes, at least 2.
        config: training settings; ``model`` and ``seed`` are used here.
        normalizer_data: training features, shape ``(m, n_features)``, ``m >= 1``, finite.
        frame_shape: ``(n_frames, n_bands)`` of a ``frames`` feature set; required by
            ``crnn``, refused by the pooled-statistics models.

    Returns:
        a compiled Keras model mapping ``(batch, n_features)`` float32 to class
        probabilities of shape ``(batch, n_classes)``.

    Raises:
        ConfigError: if the model name has no builder, the sizes are invalid, or the model
            and the feature set's kind (frames or pooled vectors) do not go together.
        SchemaError: if ``normalizer_data`` has the wrong shape or non-finite values.
    """
    if config.model not in MODEL_BUILDERS and config.model not in SEQUENCE_BUILDERS:
        raise ConfigError(
            f"unknown model {config.model!r}; known: {', '.join(sorted({*MODEL_BUILDERS, *SEQUENCE_BUILDERS}))}"
        )
    if n_features < 1 or n_classes < 2:
        raise ConfigError(f"n_features {n_features} must be >= 1 and n_classes {n_classes} >= 2")
    if (config.model in SEQUENCE_BUILDERS) != (frame_shape is not None):
        needs = (
            "a frames feature set (e.g. frames8k)"
            if config.model in SEQUENCE_BUILDERS
            else "a pooled feature set, not frames"
        )
        raise ConfigError(f"model {config.model!r} needs {needs}")
    if frame_shape is not None and frame_shape[0] * frame_shape[1] != n_features:
        raise SchemaError(f"frame_shape {frame_shape} does not hold {n_features} features")
    data = np.asarray(normalizer_data, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] != n_features:
        raise SchemaError(f"normalizer_data has shape {data.shape}; expected (m >= 1, {n_features})")
    if not np.isfinite(data).all():
        raise SchemaError("normalizer_data contains NaN or Inf")
    import keras

    keras.utils.set_random_seed(config.seed)
    normalizer = keras.layers.Normalization(axis=-1, name="normalize")
    if frame_shape is None:
        normalizer.adapt(data)
        return MODEL_BUILDERS[config.model](n_features, n_classes, normalizer)
    normalizer.adapt(data.reshape(-1, *frame_shape))  # per band, over every training frame
    return SEQUENCE_BUILDERS[config.model](frame_shape, n_classes, normalizer)


def probabilities(model: keras.Model, features: ArrayLike, *, batch_size: int = 8192) -> NDArray[np.float32]:
    """Class probabilities of a model for raw feature vectors.

    Calls the model directly (``training=False``) instead of ``Model.predict``: predict
    sets up a data pipeline costing ~120 ms per call, more than featurizing a minute of
    speech, where a direct call on one recording's windows takes ~10 ms.

    Args:
        model: a model from ``build_model`` (or loaded from its saved file).
        features: shape ``(n, n_features)``; converted to float32.
        batch_size: rows per forward pass (bounds the activations' memory).

    Returns:
        float32 array of shape ``(n, n_classes)``; rows sum to 1.

    Raises:
        SchemaError: if ``features`` is not 2-D with the model's input width.
    """
    matrix = np.asarray(features, dtype=np.float32)
    n_features, n_classes = int(model.input_shape[-1]), int(model.output_shape[-1])
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise SchemaError(f"features have shape {matrix.shape}; the model expects (n, {n_features})")
    if matrix.shape[0] == 0:
        return np.zeros((0, n_classes), dtype=np.float32)
    parts = [
        np.asarray(model(matrix[i : i + batch_size], training=False)) for i in range(0, matrix.shape[0], batch_size)
    ]
    return np.concatenate(parts).astype(np.float32, copy=False)


def _seed_mlp(n_features: int, n_classes: int, normalizer: Any) -> keras.Model:
    # The original recipe: Dense 128, 128, 64, 64, 64, n_classes; L2 on the last four; Adam.
    import keras
    from keras import layers, regularizers

    inputs = keras.Input(shape=(n_features,), name="features")
    hidden = normalizer(inputs)
    hidden = layers.Dense(128, activation="relu", name="dense_1")(hidden)
    hidden = layers.Dense(128, activation="relu", name="dense_2")(hidden)
    for i in (3, 4, 5):
        hidden = layers.Dense(
            64, activation="relu", kernel_regularizer=regularizers.L2(SEED_MLP_L2), name=f"dense_{i}"
        )(hidden)
    outputs = layers.Dense(
        n_classes, activation="softmax", kernel_regularizer=regularizers.L2(SEED_MLP_L2), name="probabilities"
    )(hidden)
    model = keras.Model(inputs, outputs, name="seed_mlp")
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


MLP_L2 = 1e-4
"""L2 factor of the regularised MLP's hidden layers."""

MLP_DROPOUT = 0.4
"""Dropout rate after each hidden layer of the regularised MLP."""

MLP_INPUT_NOISE = 0.1
"""Std of the Gaussian noise added to normalised inputs while training (0 at inference)."""


def _mlp_branch(hidden: Any, widths: tuple[int, ...], prefix: str) -> Any:
    from keras import layers, regularizers

    for i, width in enumerate(widths, 1):
        hidden = layers.Dense(width, kernel_regularizer=regularizers.L2(MLP_L2), name=f"{prefix}dense_{i}")(hidden)
        hidden = layers.BatchNormalization(name=f"{prefix}batchnorm_{i}")(hidden)
        hidden = layers.Activation("relu", name=f"{prefix}relu_{i}")(hidden)
        hidden = layers.Dropout(MLP_DROPOUT, name=f"{prefix}dropout_{i}")(hidden)
    return hidden


def _compile(model: keras.Model) -> keras.Model:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _mlp(n_features: int, n_classes: int, normalizer: Any) -> keras.Model:
    # Regularised MLP for pooled statistics: input noise, Dense 256-128 with batchnorm, dropout, L2.
    import keras
    from keras import layers

    inputs = keras.Input(shape=(n_features,), name="features")
    hidden = layers.GaussianNoise(MLP_INPUT_NOISE, name="input_noise")(normalizer(inputs))
    hidden = _mlp_branch(hidden, (256, 128), "")
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(hidden)
    return _compile(keras.Model(inputs, outputs, name="mlp"))


def _mlp_ensemble(n_features: int, n_classes: int, normalizer: Any, n_members: int = 5) -> keras.Model:
    # Five independently initialised MLPs averaged in probability space, trained jointly as one model.
    import keras
    from keras import layers

    inputs = keras.Input(shape=(n_features,), name="features")
    normalised = normalizer(inputs)
    members = []
    for m in range(1, n_members + 1):
        hidden = layers.GaussianNoise(MLP_INPUT_NOISE, name=f"m{m}_input_noise")(normalised)
        hidden = _mlp_branch(hidden, (256, 128), f"m{m}_")
        members.append(layers.Dense(n_classes, activation="softmax", name=f"m{m}_probabilities")(hidden))
    outputs = layers.Average(name="probabilities")(members)
    return _compile(keras.Model(inputs, outputs, name="mlp_ensemble"))


def _logistic(n_features: int, n_classes: int, normalizer: Any) -> keras.Model:
    # Multinomial logistic regression: the linear floor every non-linear model must beat.
    import keras
    from keras import layers, regularizers

    inputs = keras.Input(shape=(n_features,), name="features")
    hidden = layers.Dropout(0.2, name="input_dropout")(normalizer(inputs))
    outputs = layers.Dense(
        n_classes, activation="softmax", kernel_regularizer=regularizers.L2(1e-3), name="probabilities"
    )(hidden)
    return _compile(keras.Model(inputs, outputs, name="logistic"))


CRNN_FILTERS: tuple[int, ...] = (16, 32, 64)
"""Channels of the CRNN's 3x3 convolution blocks; each block halves time and bands."""

CRNN_GRU_UNITS = 32
"""Units per direction of the CRNN's bidirectional GRU over the pooled frames."""


def _crnn(frame_shape: tuple[int, int], n_classes: int, normalizer: Any) -> keras.Model:
    # Small CRNN on log-mel frames: conv blocks learn local time-frequency patterns, a
    # bidirectional GRU their order, and mean pooling over time makes it length-free.
    import keras
    from keras import layers, regularizers

    n_frames, n_bands = frame_shape
    inputs = keras.Input(shape=(n_frames * n_bands,), name="features")
    hidden = normalizer(layers.Reshape(frame_shape, name="frames")(inputs))
    hidden = layers.GaussianNoise(MLP_INPUT_NOISE, name="input_noise")(hidden)
    hidden = layers.Reshape((n_frames, n_bands, 1), name="image")(hidden)
    for i, filters in enumerate(CRNN_FILTERS, 1):
        hidden = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_regularizer=regularizers.L2(MLP_L2), name=f"conv_{i}"
        )(hidden)
        hidden = layers.BatchNormalization(name=f"batchnorm_{i}")(hidden)
        hidden = layers.Activation("relu", name=f"relu_{i}")(hidden)
        hidden = layers.MaxPooling2D(2, name=f"pool_{i}")(hidden)
        hidden = layers.SpatialDropout2D(0.1, name=f"dropout_{i}")(hidden)
    steps, bands, channels = hidden.shape[1], hidden.shape[2], hidden.shape[3]
    hidden = layers.Reshape((steps, bands * channels), name="sequence")(hidden)
    hidden = layers.Bidirectional(layers.GRU(CRNN_GRU_UNITS, return_sequences=True), name="gru")(hidden)
    hidden = layers.GlobalAveragePooling1D(name="mean_over_time")(hidden)
    hidden = layers.Dropout(MLP_DROPOUT, name="dropout")(hidden)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(hidden)
    return _compile(keras.Model(inputs, outputs, name="crnn"))


MODEL_BUILDERS: dict[str, ModelBuilder] = {
    "seed-mlp": _seed_mlp,
    "mlp": _mlp,
    "mlp-ensemble": _mlp_ensemble,
    "logistic": _logistic,
}
"""Every model of pooled feature vectors by ``TrainConfig.model`` name; add an entry (and the name) for a new one."""

SequenceBuilder = Callable[[tuple[int, int], int, "keras.layers.Layer"], "keras.Model"]
"""``(frame_shape, n_classes, adapted_normalizer) -> compiled model`` for ``frames`` feature sets."""

SEQUENCE_BUILDERS: dict[str, SequenceBuilder] = {"crnn": _crnn}
"""Every model of ``frames`` feature sets by name."""
