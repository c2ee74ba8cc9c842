from __future__ import annotations

import librosa
import numpy as np
import pytest
from signals_gen import SIGNALS

from ser_batch.features.tuning import tuning_estimate


@pytest.mark.parametrize("sample_rate", [8_000, 16_000, 22_050, 44_100])
@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_equals_librosa_estimate_tuning(kind: str, sample_rate: int) -> None:
    magnitude = np.abs(librosa.stft(SIGNALS[kind](1.0, sample_rate)))
    expected = librosa.estimate_tuning(S=magnitude, sr=sample_rate, n_fft=2048)
    assert tuning_estimate(magnitude, sample_rate=sample_rate, n_fft=2048) == expected


@pytest.mark.parametrize("cents", [-40, -13, 0, 21, 45])
def test_detuned_tones_give_librosa_value(cents: int) -> None:
    t = np.arange(22_050) / 22_050
    frequency = 440 * 2 ** (cents / 1200)
    tone = sum(np.sin(2 * np.pi * k * frequency * t) / k for k in range(1, 6)).astype(np.float32) * 0.2
    magnitude = np.abs(librosa.stft(tone))
    assert tuning_estimate(magnitude, sample_rate=22_050, n_fft=2048) == librosa.estimate_tuning(S=magnitude, sr=22_050)


def test_silence_gives_librosa_value() -> None:
    magnitude = np.zeros((1025, 10), np.float32)
    with pytest.warns(UserWarning, match="empty frequency set"):
        expected = librosa.estimate_tuning(S=magnitude, sr=22_050)
    assert tuning_estimate(magnitude, sample_rate=22_050, n_fft=2048) == expected == 0.0


def test_equals_librosa_on_real_clips(ser_dev) -> None:
    for path in sorted(ser_dev.glob("*/**/*.flac"))[::60]:
        waveform, sample_rate = librosa.load(path)
        magnitude = np.abs(librosa.stft(waveform))
        assert tuning_estimate(magnitude, sample_rate=sample_rate, n_fft=2048) == librosa.estimate_tuning(
            S=magnitude, sr=sample_rate
        ), path


@pytest.mark.parametrize("resolution", [0.01, 0.02, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pitch_tuning_equals_librosa(rng, resolution: float, dtype: type) -> None:
    from ser_batch.features.tuning import pitch_tuning

    for n in (1, 7, 500, 5000):
        frequencies = (27.5 * 2 ** rng.uniform(0, 8, n)).astype(dtype)
        frequencies[:: max(1, n // 5)] *= 2 ** (rng.uniform(-0.5, 0.5) / 12)
        assert pitch_tuning(frequencies, resolution=resolution) == librosa.pitch_tuning(
            frequencies, resolution=resolution
        )
    with pytest.warns(UserWarning, match="empty frequency set"):
        assert pitch_tuning(np.zeros(3, dtype)) == librosa.pitch_tuning(np.zeros(3, dtype)) == 0.0
