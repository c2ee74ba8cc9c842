from __future__ import annotations

import numpy as np
import pytest
from scipy import signal
from signals_gen import SIGNALS

from ser_batch.errors import AudioError
from ser_batch.features.augment import (
    TELEPHONE_RATE,
    add_noise,
    apply_gain,
    augmented_copies,
    change_speed,
    mu_law,
    telephone_channel,
)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 35.0])
@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_add_noise_achieves_the_requested_snr(kind: str, snr_db: float) -> None:
    clean = SIGNALS[kind](1.0, 16_000)
    noisy = add_noise(clean, snr_db, np.random.default_rng(3))
    achieved = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert noisy.dtype == np.float32 and abs(achieved - snr_db) < 0.5


def test_add_noise_is_seeded_and_refuses_silence() -> None:
    clean = SIGNALS["sine"](0.5, 16_000)
    assert (
        add_noise(clean, 10, np.random.default_rng(1)).tobytes()
        == add_noise(clean, 10, np.random.default_rng(1)).tobytes()
    )
    with pytest.raises(AudioError, match="zero power"):
        add_noise(np.zeros(100, np.float32), 10, np.random.default_rng(1))


def test_gain_scales_in_decibels() -> None:
    clean = SIGNALS["sine"](0.5, 16_000) * 0.1
    louder = apply_gain(clean, 6.0)
    assert abs(20 * np.log10(np.abs(louder).max() / np.abs(clean).max()) - 6.0) < 0.01


def test_speed_changes_duration_and_pitch() -> None:
    tone = SIGNALS["sine"](1.0, 16_000)  # 220 Hz
    fast = change_speed(tone, 1.1)
    assert abs(fast.size - 16_000 / 1.1) <= 2
    spectrum = np.abs(np.fft.rfft(fast))
    assert abs(np.argmax(spectrum) * 16_000 / fast.size - 242.0) < 3.0


def _band_energy(waveform: np.ndarray, rate: int) -> tuple[float, float, float]:
    freqs, power = signal.welch(waveform, fs=rate, nperseg=1024)
    below, inside, above = freqs < 200, (freqs > 400) & (freqs < 3200), freqs > 3600
    return float(power[below].mean()), float(power[inside].mean()), float(power[above].mean())  # per Hz


@pytest.mark.parametrize("rate", [16_000, 22_050, 48_000])
def test_telephone_channel_band_limits_and_returns_8k(rate: int) -> None:
    noise = np.random.default_rng(0).normal(0, 0.1, rate * 2).astype(np.float32)
    phone = telephone_channel(noise, rate)
    assert phone.dtype == np.float32 and abs(phone.size - 2 * TELEPHONE_RATE) <= 2
    before_below, before_inside, _ = _band_energy(noise, rate)
    below, inside, above = _band_energy(phone, TELEPHONE_RATE)
    # white noise in: out-of-band power density must end >= 25 dB below the pass band's
    assert 10 * np.log10(below / inside) < -25 and 10 * np.log10(above / inside) < -25
    assert abs(10 * np.log10(inside / before_inside)) < 1.5  # the pass band passes


def test_mu_law_has_256_levels_and_small_error() -> None:
    x = np.linspace(-1, 1, 10_001)
    y = mu_law(x)
    assert np.unique(y).size <= 256 and np.abs(y - x).max() < 0.025  # half of the top mu-law step


def test_augmented_copies_are_seeded_and_finite() -> None:
    clean = SIGNALS["chirp"](1.0, 22_050)
    first = augmented_copies(clean, 22_050, np.random.default_rng(7))
    again = augmented_copies(clean, 22_050, np.random.default_rng(7))
    assert [c.name for c in first] == [c.name for c in again]
    assert all(a.waveform.tobytes() == b.waveform.tobytes() for a, b in zip(first, again, strict=True))
    assert first[0].sample_rate == TELEPHONE_RATE and first[1].sample_rate == 22_050
    assert all(np.isfinite(c.waveform).all() and c.waveform.dtype == np.float32 for c in first)
