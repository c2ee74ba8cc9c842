from __future__ import annotations

import librosa
import numpy as np
import pytest

from signals_gen import SIGNALS
from ser_batch.config import feature_config
from ser_batch.errors import AudioError
from ser_batch.features import feature_names, feature_vector

SEED = feature_config("seed268")


def recipe_vector(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    # The original recipe, verbatim: three separate STFTs and librosa's defaults.
    stft = np.abs(librosa.stft(waveform))
    mfccs = np.mean(librosa.feature.mfcc(y=waveform, sr=sample_rate, n_mfcc=128).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sample_rate).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=waveform, sr=sample_rate).T, axis=0)
    return np.hstack([mfccs, chroma, mel])


@pytest.mark.parametrize("kind", sorted(SIGNALS))
@pytest.mark.parametrize("duration_s", [0.1, 1.3])
def test_seed268_equals_the_recipe(kind: str, duration_s: float) -> None:
    waveform = SIGNALS[kind](duration_s, SEED.sample_rate)
    np.testing.assert_allclose(feature_vector(waveform, SEED.sample_rate, SEED), recipe_vector(waveform, SEED.sample_rate), rtol=1e-5, atol=1e-6)


def test_seed268_equals_the_recipe_on_real_clips(ser_dev) -> None:
    clips = sorted(ser_dev.glob("*/**/*.flac"))[::400]
    for path in clips:
        waveform, sample_rate = librosa.load(path)  # the recipe's own loader
        np.testing.assert_allclose(feature_vector(waveform, sample_rate, SEED), recipe_vector(waveform, sample_rate), rtol=1e-5, atol=1e-6)
    assert len(clips) >= 6


@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_vector_contract_shape_dtype_finite_repeatable(kind: str) -> None:
    waveform = SIGNALS[kind](0.8, SEED.sample_rate)
    first = feature_vector(waveform, SEED.sample_rate, SEED)
    assert first.shape == (len(feature_names(SEED)),) == (268,)
    assert first.dtype == np.float32
    assert np.isfinite(first).all()
    assert first.tobytes() == feature_vector(waveform.copy(), SEED.sample_rate, SEED).tobytes()


def test_clipped_input_stays_finite() -> None:
    waveform = np.clip(SIGNALS["sine"](0.5, SEED.sample_rate) * 50, -1, 1).astype(np.float32)
    assert np.isfinite(feature_vector(waveform, SEED.sample_rate, SEED)).all()


def test_feature_names_are_unique_and_ordered() -> None:
    names = feature_names(SEED)
    assert len(set(names)) == len(names)
    assert names[:2] == ["mfcc_001_mean", "mfcc_002_mean"] and names[-1] == "mel_128_mean"


@pytest.mark.parametrize(
    ("waveform", "sample_rate", "match"),
    [
        (np.full(4096, np.nan, np.float32), 22_050, "NaN or Inf"),
        (np.r_[np.ones(4095, np.float32) * 0.1, np.float32(np.inf)], 22_050, "NaN or Inf"),
        (np.zeros(4096, np.int16), 22_050, "dtype int16 != float32"),
        (np.zeros(0, np.float32), 22_050, "too short: 0 samples"),
        (np.full(100, 0.1, np.float32), 22_050, "too short: 100 samples < 2048"),
        (np.full(4096, 0.1, np.float32), 16_000, "sample_rate 16000 != 22050"),
        (np.full((4096, 2), 0.1, np.float32), 22_050, "expected 1-D mono"),
        (np.zeros(4096, np.float32), 22_050, "silent"),
    ],
)
def test_contract_violations_raise_audio_error(waveform: np.ndarray, sample_rate: int, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        feature_vector(waveform, sample_rate, SEED)
