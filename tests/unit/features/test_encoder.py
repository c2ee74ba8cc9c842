"""Encoder feature sets: pooling, chunking and the model contract, on tiny ONNX models built here."""

from __future__ import annotations

import numpy as np
import pytest
from encoder_gen import FRAME, frame_encoder, passthrough, reference_frames, weights
from onnx import TensorProto

from ser_batch.config import EncoderFeatureConfig, encoder_set_name
from ser_batch.errors import AudioError, ConfigError
from ser_batch.features import OnnxEncoder, encoder_chunks, feature_names, feature_vector

RATE = 16_000
SHA = "ab" * 32


def config(n_dims: int = 8, **settings) -> EncoderFeatureConfig:
    return EncoderFeatureConfig(name=encoder_set_name(SHA), model_uri="/m.onnx", sha256=SHA, n_dims=n_dims, **settings)


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * noise).astype(np.float32)


@pytest.mark.parametrize("rank", [2, 3])
def test_the_vector_is_the_mean_then_the_std_over_time_of_the_models_frames(rank) -> None:
    weight = weights(8)
    encoder = OnnxEncoder(frame_encoder(weight, linear=True, rank=rank), "/m.onnx", sample_rate=RATE)
    waveform = clip(2.4)

    vector = feature_vector(waveform, RATE, config(), encoder=encoder)

    frames = reference_frames(waveform, weight, linear=True)  # 120 frames of 20 ms
    assert encoder.n_dims == 8 and encoder.output_name == "frames"
    assert vector.dtype == np.float32 and vector.shape == (16,) == (len(feature_names(config())),)
    np.testing.assert_allclose(vector, np.concatenate([frames.mean(axis=0), frames.std(axis=0)]), rtol=1e-4, atol=1e-6)
    assert feature_names(config())[::8] == ["enc_mean_0000", "enc_std_0000"]


def test_a_long_clip_is_encoded_in_near_equal_chunks_and_all_their_frames_pooled() -> None:
    weight = weights(4, seed=1)
    encoder = OnnxEncoder(frame_encoder(weight), "/m.onnx", sample_rate=RATE)
    settings = config(4, chunk_s=1.0)
    waveform = clip(2.5)

    vector = feature_vector(waveform, RATE, settings, encoder=encoder)

    chunks = encoder_chunks(waveform.size, settings)
    assert [b - a for a, b in chunks] == [13_333, 13_334, 13_333]
    frames = np.concatenate([reference_frames(waveform[a:b], weight) for a, b in chunks])
    assert frames.shape == (3 * (13_333 // FRAME), 4)
    np.testing.assert_allclose(vector, np.concatenate([frames.mean(axis=0), frames.std(axis=0)]), rtol=1e-4, atol=1e-6)
    whole = reference_frames(waveform, weight)  # one chunk would cut other frames
    assert not np.allclose(vector[:4], whole.mean(axis=0), rtol=1e-6, atol=1e-7)


def test_an_encoder_set_without_its_loaded_model_or_with_too_short_a_clip_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs its encoder"):
        feature_vector(clip(1.0), RATE, config())
    encoder = OnnxEncoder(frame_encoder(weights(8)), "/m.onnx", sample_rate=RATE)
    with pytest.raises(AudioError, match="too short: 399 samples < 400"):
        feature_vector(clip(1.0)[:399], RATE, config(), encoder=encoder)
    with pytest.raises(AudioError, match="the encoder returned no frames"):  # 300 samples: no whole 320-sample frame
        feature_vector(clip(1.0)[:300], RATE, config(min_input_samples=300), encoder=encoder)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (b"not a model at all", "not a readable ONNX model"),
        (passthrough(inputs=[("x", TensorProto.INT64, [1, "n"])]), "input 'x' is tensor(int64) of rank 2"),
        (passthrough(inputs=[("x", TensorProto.FLOAT, [1, 1, "n"])]), "input 'x' is tensor(float) of rank 3"),
        (
            passthrough(inputs=[("x", TensorProto.FLOAT, [1, "n"]), ("mask", TensorProto.FLOAT, [1, "n"])]),
            "the model has 2 inputs",
        ),
        (frame_encoder(weights(8), rank=4), "output 'frames' has shape (1, 1, 50, 8); expected (1, T, D) or (T, D)"),
    ],
)
def test_a_model_that_breaks_the_contract_is_refused_in_one_line_naming_the_file(model, message) -> None:
    with pytest.raises(ConfigError) as error:
        OnnxEncoder(model, "/models/bad.onnx", sample_rate=RATE)
    text = str(error.value)
    assert text.startswith("/models/bad.onnx: ") and message in text and "\n" not in text


def test_an_output_is_chosen_by_name_and_an_unknown_one_refused() -> None:
    model = frame_encoder(weights(8))
    assert OnnxEncoder(model, "/m.onnx", sample_rate=RATE, output="frames").output_name == "frames"
    with pytest.raises(ConfigError, match=r"/m.onnx: no output 'hidden_6'; the model's outputs are \['frames'\]"):
        OnnxEncoder(model, "/m.onnx", sample_rate=RATE, output="hidden_6")
