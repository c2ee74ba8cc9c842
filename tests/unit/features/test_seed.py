from __future__ import annotations

import librosa
import numpy as np
import pytest
from recipe_reference import recipe_vector
from signals_gen import SIGNALS

from ser_batch.config import feature_config
from ser_batch.features.extract import feature_vector
from ser_batch.features.seed import seed_filters, seed_vector, stft_magnitude

SEED = feature_config("seed268")


@pytest.mark.parametrize("n_samples", [2048, 2049, 2559, 2560, 22_050, 33_333])
@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_stft_magnitude_is_librosa_bit_for_bit(kind: str, n_samples: int) -> None:
    waveform = SIGNALS[kind](n_samples / SEED.sample_rate + 1e-9, SEED.sample_rate)[:n_samples]
    assert waveform.size == n_samples
    expected = np.abs(librosa.stft(waveform, n_fft=SEED.n_fft, hop_length=SEED.hop_length))
    actual = stft_magnitude(waveform, SEED.n_fft, SEED.hop_length, seed_filters(SEED).window)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == np.float32
    assert np.array_equal(actual, expected)


@pytest.mark.parametrize("kind", sorted(SIGNALS))
@pytest.mark.parametrize("duration_s", [0.1, 0.37, 1.3, 4.2])
def test_seed_vector_equals_the_recipe(kind: str, duration_s: float) -> None:
    waveform = SIGNALS[kind](duration_s, SEED.sample_rate)
    actual = seed_vector(waveform, seed_filters(SEED))
    np.testing.assert_allclose(actual, recipe_vector(waveform, SEED.sample_rate), rtol=1e-5, atol=1e-6)


def test_seed_vector_mel_part_is_the_recipe_bit_for_bit() -> None:
    waveform = SIGNALS["chirp"](1.3, SEED.sample_rate) + SIGNALS["noise"](1.3, SEED.sample_rate)
    expected = np.mean(librosa.feature.melspectrogram(y=waveform, sr=SEED.sample_rate).T, axis=0)
    mel = seed_vector(waveform, seed_filters(SEED))[-SEED.n_mels :]
    np.testing.assert_allclose(mel, expected, rtol=1e-6, atol=0)


def test_seed_vector_equals_the_recipe_on_real_clips(ser_dev) -> None:
    clips = sorted(ser_dev.glob("*/**/*.flac"))[::40]
    filters = seed_filters(SEED)
    for path in clips:
        waveform, sample_rate = librosa.load(path)  # the recipe's own loader
        np.testing.assert_allclose(
            seed_vector(waveform, filters),
            recipe_vector(waveform, sample_rate),
            rtol=1e-5,
            atol=1e-6,
            err_msg=str(path),
        )
    assert len(clips) >= 60


def test_vectors_do_not_depend_on_what_was_featurized_before() -> None:
    waveforms = [SIGNALS[kind](duration_s, SEED.sample_rate) for kind in sorted(SIGNALS) for duration_s in (0.4, 1.1)]
    seed_filters.cache_clear()
    forwards = [feature_vector(waveform, SEED.sample_rate, SEED).tobytes() for waveform in waveforms]
    seed_filters.cache_clear()
    backwards = [feature_vector(waveform, SEED.sample_rate, SEED).tobytes() for waveform in waveforms[::-1]]
    assert forwards == backwards[::-1]
    assert forwards == [seed_vector(waveform, seed_filters(SEED)).tobytes() for waveform in waveforms]
