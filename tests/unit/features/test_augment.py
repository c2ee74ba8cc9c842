from __future__ import annotations

import numpy as np
import pytest
from scipy import signal
from signals_gen import SIGNALS

from ser_batch.errors import AudioError
from ser_batch.features.augment import (
    TELEPHONE_RATE,
    VOICE_KINDS,
    add_noise,
    apply_gain,
    augmented_copies,
    change_speed,
    mu_law,
    shift_voice,
    telephone_channel,
    voice_copies,
    vtlp,
    vtlp_warp,
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
    assert [(c.name, c.sample_rate) for c in first] == [("telephone", TELEPHONE_RATE), ("vtlp", TELEPHONE_RATE)]
    assert all(np.isfinite(c.waveform).all() and c.waveform.dtype == np.float32 for c in first)


def _peak_hz(waveform: np.ndarray, rate: int, low: float = 0.0, high: float = np.inf) -> float:
    """Frequency of the largest FFT peak in [low, high] Hz (Hann window, 8x zero padding: 0.125 Hz a bin on 1 s)."""
    n = 8 * waveform.size
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.size), n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(spectrum[band])])


def _vowel(f0: float, formant_hz: float, rate: int) -> np.ndarray:
    """A synthetic vowel: a pulse train at ``f0`` through a resonator at ``formant_hz`` (100 Hz wide), 1 s."""
    pulses = np.zeros(rate)
    pulses[:: round(rate / f0)] = 1.0
    b, a = signal.iirpeak(formant_hz, formant_hz / 100.0, fs=rate)
    vowel = signal.lfilter(b, a, pulses)
    return (0.5 * vowel / np.abs(vowel).max()).astype(np.float32)


def _envelope_peak_hz(waveform: np.ndarray, rate: int) -> float:
    """Peak of the 12th-order LPC envelope, Hz."""
    import librosa

    a = librosa.lpc(waveform.astype(np.float64), order=12)
    freqs, response = signal.freqz(1.0, a, worN=4096, fs=rate)
    return float(freqs[np.argmax(np.abs(response))])


@pytest.mark.parametrize(("alpha", "low_hz", "high_hz"), [(0.9, 1000.0, 7000.0), (1.1, 1000.0, 7000.0)])
def test_vtlp_moves_a_sinusoid_to_the_warped_frequency(alpha: float, low_hz: float, high_hz: float) -> None:
    rate = 16_000
    t = np.arange(rate) / rate
    for f in (low_hz, high_hz):  # one on the linear part (f * alpha), one above the boundary
        tone = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
        warped = vtlp(tone, rate, alpha)
        expected = float(vtlp_warp(np.array([f]), alpha, rate)[0])
        assert warped.shape == tone.shape and warped.dtype == np.float32
        assert abs(_peak_hz(warped[2000:-2000], rate) - expected) < 3.0, (f, expected)
    assert abs(float(vtlp_warp(np.array([1000.0]), alpha, rate)[0]) - 1000.0 * alpha) < 1e-9
    with pytest.raises(AudioError, match="VTLP factor"):
        vtlp(tone, rate, 1.5)


def test_pitch_shift_moves_f0_by_two_semitones_and_keeps_the_duration() -> None:
    rate, f0 = 16_000, 150.0
    t = np.arange(rate) / rate
    harmonic = (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)
    shifted = shift_voice(harmonic, rate, semitones=2.0)
    assert shifted.shape == harmonic.shape and shifted.dtype == np.float32
    assert abs(_peak_hz(shifted[2000:-2000], rate, 50.0, 400.0) / (f0 * 2 ** (2 / 12)) - 1.0) < 0.005  # 168.4 Hz


@pytest.mark.parametrize("factor", [0.85, 1.2])
def test_formant_shift_moves_the_resonance_and_keeps_f0(factor: float) -> None:
    rate = 16_000
    vowel = _vowel(120.0, 1000.0, rate)
    assert abs(_envelope_peak_hz(vowel[2000:-2000], rate) - 1000.0) < 30.0  # the test's own yardstick
    shifted = shift_voice(vowel, rate, formant_factor=factor)
    assert shifted.shape == vowel.shape
    assert abs(_envelope_peak_hz(shifted[2000:-2000], rate) / (1000.0 * factor) - 1.0) < 0.03
    assert abs(_peak_hz(shifted[2000:-2000], rate, 60.0, 200.0) - rate / round(rate / 120.0)) < 1.0  # F0 stays


def test_shift_voice_refuses_shifts_out_of_range() -> None:
    tone = SIGNALS["sine"](0.5, 16_000)
    with pytest.raises(AudioError, match="semitones"):
        shift_voice(tone, 16_000, semitones=13.0)
    with pytest.raises(AudioError, match="formant factor"):
        shift_voice(tone, 16_000, formant_factor=2.0)


def test_voice_copies_are_seeded_independent_of_the_other_kinds_and_at_the_asked_rate() -> None:
    clean = _vowel(140.0, 800.0, 22_050)
    every = voice_copies(clean, 22_050, np.random.default_rng(5), rate=8_000)
    assert [c.name for c in every] == list(VOICE_KINDS) and {c.sample_rate for c in every} == {8_000}
    (formant,) = voice_copies(clean, 22_050, np.random.default_rng(5), kinds=("formant",), rate=8_000)
    assert formant.waveform.tobytes() == every[2].waveform.tobytes()
    assert all(np.isfinite(c.waveform).all() and c.waveform.dtype == np.float32 for c in every)
    (phone,) = voice_copies(clean, 22_050, np.random.default_rng(5), kinds=("vtlp",), rate=16_000, telephone=True)
    assert (phone.name, phone.sample_rate) == ("vtlp-telephone", TELEPHONE_RATE)
    assert abs(phone.waveform.size - clean.size * TELEPHONE_RATE / 22_050) <= 2
    with pytest.raises(AudioError, match="unknown voice copies"):
        voice_copies(clean, 22_050, np.random.default_rng(5), kinds=("robot",))
