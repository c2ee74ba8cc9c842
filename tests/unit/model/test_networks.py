from __future__ import annotations

import subprocess
import sys
import typing

import numpy as np
import pytest

from ser_batch.config import MODELS, TrainConfig
from ser_batch.errors import ConfigError, SchemaError
from ser_batch.model.networks import MODEL_BUILDERS, SEED_MLP_L2, SEQUENCE_BUILDERS


def test_every_configurable_model_has_a_builder() -> None:
    names = typing.get_args(TrainConfig.model_fields["model"].annotation)
    assert set(names) == set(MODELS) == set(MODEL_BUILDERS) | set(SEQUENCE_BUILDERS)
    assert not set(MODEL_BUILDERS) & set(SEQUENCE_BUILDERS)


def test_importing_the_training_modules_does_not_load_tensorflow() -> None:
    code = (
        "import sys, ser_batch.model.fit, ser_batch.storage.model_dir, ser_batch.model.networks, ser_batch.model.split, ser_batch.model.metrics;"
        "loaded = [m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _training_data(n: int = 40, n_features: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(3.0, 2.0, (n, n_features)).astype(np.float32)


@pytest.mark.slow
def test_seed_mlp_has_the_recipe_layers_with_l2_on_the_last_four() -> None:
    from ser_batch.model.networks import build_model

    model = build_model(5, 6, TrainConfig(model="seed-mlp"), normalizer_data=_training_data())
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [128, 128, 64, 64, 64, 6]
    assert [layer.activation.__name__ for layer in dense] == ["relu"] * 5 + ["softmax"]
    factors = [getattr(layer.kernel_regularizer, "l2", None) for layer in dense]
    assert factors[:2] == [None, None]
    assert factors[2:] == pytest.approx([SEED_MLP_L2] * 4)
    assert model.loss == "sparse_categorical_crossentropy"
    assert model.optimizer.__class__.__name__ == "Adam"


@pytest.mark.slow
def test_normalisation_is_adapted_on_the_given_rows_inside_the_model() -> None:
    from ser_batch.model.networks import build_model

    data = _training_data()
    model = build_model(5, 3, TrainConfig(classes=("angry", "happy", "sad")), normalizer_data=data)
    normalize = model.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(normalize.mean), data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(normalize.variance), data.var(axis=0), rtol=1e-4)


@pytest.mark.slow
def test_same_seed_gives_the_same_initial_outputs() -> None:
    from ser_batch.model.networks import build_model, probabilities

    data = _training_data()
    first = probabilities(build_model(5, 6, TrainConfig(seed=3), normalizer_data=data), data)
    again = probabilities(build_model(5, 6, TrainConfig(seed=3), normalizer_data=data), data)
    other = probabilities(build_model(5, 6, TrainConfig(seed=4), normalizer_data=data), data)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.shape == (40, 6) and first.dtype == np.float32
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_probabilities_check_the_input_width_and_accept_no_rows() -> None:
    from ser_batch.model.networks import build_model, probabilities

    model = build_model(5, 6, TrainConfig(), normalizer_data=_training_data())
    assert probabilities(model, np.zeros((0, 5))).shape == (0, 6)
    with pytest.raises(SchemaError, match=r"expects \(n, 5\)"):
        probabilities(model, np.zeros((2, 4)))


def test_build_model_rejects_bad_normalizer_data_before_loading_tensorflow() -> None:
    from ser_batch.model.networks import build_model

    with pytest.raises(SchemaError, match=r"expected \(m >= 1, 5\)"):
        build_model(5, 6, TrainConfig(), normalizer_data=np.zeros((0, 5)))
    with pytest.raises(SchemaError, match="NaN"):
        build_model(2, 6, TrainConfig(), normalizer_data=np.array([[1.0, np.nan]]))
    with pytest.raises(ConfigError, match="n_classes 1"):
        build_model(2, 1, TrainConfig(), normalizer_data=np.zeros((3, 2)))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_predicts_and_round_trips_through_a_keras_file(name: str, tmp_path) -> None:
    import keras

    from ser_batch.model.networks import build_model, probabilities

    rng = np.random.default_rng(1)
    targets = np.repeat(np.arange(3), 16)
    frame_shape = (16, 8) if name in SEQUENCE_BUILDERS else None
    width = 16 * 8 if frame_shape else 5
    data = (rng.normal(0, 1, (48, width)) + targets[:, None] * 2.0).astype(np.float32)
    config = TrainConfig(model=name, classes=("angry", "happy", "sad"))
    model = build_model(width, 3, config, normalizer_data=data, frame_shape=frame_shape)
    model.fit(data, targets, epochs=1, batch_size=16, verbose=0)
    before = probabilities(model, data)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "model.keras")
    np.testing.assert_allclose(
        probabilities(keras.saving.load_model(tmp_path / "model.keras"), data), before, rtol=1e-5, atol=1e-6
    )


def test_sequence_and_pooled_models_refuse_the_other_kind_of_features() -> None:
    from ser_batch.model.networks import build_model

    with pytest.raises(ConfigError, match="needs a frames feature set"):
        build_model(128, 6, TrainConfig(model="crnn"), normalizer_data=np.zeros((3, 128)))
    with pytest.raises(ConfigError, match="needs a pooled feature set"):
        build_model(128, 6, TrainConfig(model="mlp"), normalizer_data=np.zeros((3, 128)), frame_shape=(16, 8))
    with pytest.raises(SchemaError, match="does not hold 100 features"):
        build_model(100, 6, TrainConfig(model="crnn"), normalizer_data=np.zeros((3, 100)), frame_shape=(16, 8))


@pytest.mark.slow
def test_crnn_normalises_each_band_over_training_frames_only() -> None:
    from ser_batch.model.networks import build_model

    rng = np.random.default_rng(2)
    frames = rng.normal(0, 1, (20, 16, 8)) * np.arange(1, 9) + 10.0 * np.arange(8)  # band b: mean 10 b, std b + 1
    model = build_model(128, 3, TrainConfig(model="crnn"), normalizer_data=frames.reshape(20, -1), frame_shape=(16, 8))
    normalizer = model.get_layer("normalize")
    np.testing.assert_allclose(np.ravel(normalizer.mean), frames.reshape(-1, 8).mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(np.ravel(normalizer.variance), frames.reshape(-1, 8).var(axis=0), rtol=1e-3)
