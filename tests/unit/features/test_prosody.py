"""Prosody and voice-quality descriptors against signals whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from ser_batch.config import feature_config
from ser_batch.features.extract import feature_names, feature_vector
from ser_batch.features.prosody import PROSODY_NAMES, spectral_balance

PROSODY = feature_config("stats8k-prosody")
RATE = PROSODY.sample_rate


def described(waveform: np.ndarray) -> dict[str, float]:
    vector = feature_vector(waveform.astype(np.float32), RATE, PROSODY)
    return dict(zip(feature_names(PROSODY), vector.tolist(), strict=True))


def pulse_train(periods_s: np.ndarray, amplitudes: np.ndarray, formant_hz: float = 600.0) -> np.ndarray:
    """Damped-resonance pulses at exact (fractional-sample) times: every pulse peaks at onset + the same delay."""
    onsets = 0.02 + np.concatenate([[0.0], np.cumsum(periods_s[:-1])])
    t = np.arange(int((onsets[-1] + 0.05) * RATE)) / RATE
    out = np.zeros_like(t)
    for onset, amplitude in zip(onsets, amplitudes, strict=True):
        lag = t - onset
        live = (lag >= 0.0) & (lag < 0.008)
        out[live] += amplitude * np.exp(-np.pi * 250.0 * lag[live]) * np.sin(2 * np.pi * formant_hz * lag[live])
    return 0.5 * out / np.abs(out).max()


def test_jitter_and_shimmer_of_a_pulse_train_match_praats_definitions() -> None:
    rng = np.random.default_rng(3)
    periods = (1 / 125.0) * (1.0 + 0.009 * rng.standard_normal(250))  # ~1% local jitter
    amplitudes = 1.0 + 0.05 * rng.standard_normal(250)  # ~5.6% local shimmer
    jitter = np.abs(np.diff(periods)).mean() / periods.mean()
    shimmer = np.abs(np.diff(amplitudes)).mean() / amplitudes.mean()
    values = described(pulse_train(periods, amplitudes))
    assert values["jitter_local"] == pytest.approx(jitter, abs=0.002)
    assert values["shimmer_local"] == pytest.approx(shimmer, abs=0.006)
    steady = described(pulse_train(np.full(250, 1 / 125.0), np.ones(250)))
    assert steady["jitter_local"] < 0.002 and steady["shimmer_local"] < 0.005


@pytest.mark.parametrize("hnr_db", [0.0, 10.0, 20.0])
def test_harmonics_to_noise_ratio_of_harmonics_plus_white_noise(hnr_db: float) -> None:
    rng = np.random.default_rng(5)
    t = np.arange(RATE * 2) / RATE
    k = np.arange(1, 27)  # 150 Hz harmonics below 4 kHz
    harmonics = (np.sin(2 * np.pi * 150.0 * k[:, None] * t + rng.uniform(0, 2 * np.pi, (26, 1))) / k[:, None]).sum(0)
    noise = rng.standard_normal(t.size) * np.sqrt(harmonics.var() / 10 ** (hnr_db / 10))
    signal = harmonics + noise
    assert described(0.3 * signal / np.abs(signal).max())["hnr_db_mean"] == pytest.approx(hnr_db, abs=2.0)


def test_f0_glide_percentiles_range_and_rise_slope_in_semitones() -> None:
    f0 = 120.0 * 1.5 ** (np.arange(RATE) / RATE)  # 120 -> 180 Hz over 1 s, straight in semitones
    rise = 12 * np.log2(1.5)  # 7.02 semitones/s
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    signal = sum(np.sin(k * phase) / k for k in range(1, 8))
    values = described(0.3 * signal)
    start = 12 * np.log2(120.0 / 55.0)
    assert values["f0_st_rise_slope"] == pytest.approx(rise, rel=0.1)
    assert values["f0_st_fall_slope"] == 0.0
    assert values["f0_st_p20"] == pytest.approx(start + 0.2 * rise, abs=0.3)
    assert values["f0_st_p80"] == pytest.approx(start + 0.8 * rise, abs=0.3)
    assert values["f0_st_range"] == pytest.approx(0.9 * rise, abs=0.5)
    assert values["voiced_run_mean_s"] == pytest.approx(1.0, abs=0.1)
    assert values["voiced_runs_per_s"] == pytest.approx(1.0, abs=0.1)


def test_voiced_runs_and_pauses_of_syllables() -> None:
    t = np.arange(int(0.2 * RATE)) / RATE
    syllable = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 6)) * np.hanning(t.size) ** 0.2
    gap = np.zeros(int(0.3 * RATE))
    signal = np.concatenate([syllable, gap, syllable, gap, syllable])  # 3 x 0.2 s voiced, 2 x 0.3 s pauses
    values = described(0.3 * signal / np.abs(signal).max())
    assert values["voiced_run_mean_s"] == pytest.approx(0.2, abs=0.04)
    assert values["unvoiced_run_mean_s"] == pytest.approx(0.3, abs=0.04)
    assert values["voiced_runs_per_s"] == pytest.approx(3 / 1.2, rel=0.1)
    assert values["loudness_peaks_per_s"] == pytest.approx(3 / 1.2, rel=0.1)


def test_formants_of_a_vowel_from_resonators() -> None:
    excitation = np.zeros(RATE)
    excitation[:: RATE // 110] = 1.0  # 110 Hz pulses
    signal = excitation
    for centre, bandwidth in ((700.0, 80.0), (1220.0, 90.0), (2600.0, 120.0)):  # /a/-like (Peterson & Barney)
        radius = np.exp(-np.pi * bandwidth / RATE)
        signal = scipy.signal.lfilter([1.0], [1.0, -2 * radius * np.cos(2 * np.pi * centre / RATE), radius**2], signal)
    values = described(0.3 * signal / np.abs(signal).max())
    assert values["f1_hz_mean"] == pytest.approx(700.0, rel=0.1)
    assert values["f2_hz_mean"] == pytest.approx(1220.0, rel=0.1)
    assert values["f3_hz_mean"] == pytest.approx(2600.0, rel=0.1)


def test_spectral_slopes_alpha_ratio_and_hammarberg_of_a_known_tilt() -> None:
    rng = np.random.default_rng(7)
    n_fft = PROSODY.n_fft
    freqs = np.fft.rfftfreq(n_fft, 1 / RATE)
    tilt_db = -12.0 * freqs / 1000.0  # -12 dB/kHz everywhere
    spectra = 10 ** (tilt_db[:, None] / 10) * rng.exponential(size=(freqs.size, 400))  # noise periodograms
    rows = spectral_balance(spectra, RATE, n_fft).mean(axis=1)
    assert rows[0] == pytest.approx(-12.0, rel=0.1)
    assert rows[1] == pytest.approx(-12.0, rel=0.1)
    envelope = 10 ** (tilt_db / 10)
    alpha = 10 * np.log10(envelope[(freqs >= 50) & (freqs < 1000)].sum() / envelope[freqs >= 1000].sum())
    harmonic_rows = spectral_balance(envelope[:, None], RATE, n_fft)[:, 0]
    assert harmonic_rows[2] == pytest.approx(alpha, abs=0.01)
    assert harmonic_rows[3] == pytest.approx(12.0 * 2.0, abs=0.01)  # 0 Hz peak minus 2 kHz peak


def test_loudness_follows_stevens_power_law() -> None:
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 200.0 * t) + 0.5 * np.sin(2 * np.pi * 400.0 * t)
    signal = np.concatenate([tone, tone * 10 ** (-10 / 20)])  # second half 10 dB down
    values = described(0.3 * signal)
    assert values["loudness_p80"] / values["loudness_p20"] == pytest.approx(10 ** (10 * 0.3 / 10), rel=0.05)


@pytest.mark.parametrize(
    "waveform",
    [
        np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1,  # unvoiced only
        np.sin(2 * np.pi * 150.0 * np.arange(PROSODY.n_fft) / RATE).astype(np.float32) * 0.3,  # one frame
        np.r_[np.zeros(RATE, np.float32), np.full(600, 0.2, np.float32)],  # near-silence then a step
        np.sign(np.sin(2 * np.pi * 90.0 * np.arange(RATE) / RATE)).astype(np.float32),  # full-scale square wave
    ],
    ids=["noise", "one-frame", "silence-then-step", "square"],
)
def test_degenerate_clips_give_finite_values(waveform: np.ndarray) -> None:
    vector = feature_vector(waveform, RATE, PROSODY)
    assert vector.shape == (len(feature_names(PROSODY)),) and np.isfinite(vector).all()


def test_extends_stats8k_column_for_column() -> None:
    base = feature_config("stats8k")
    assert feature_names(PROSODY) == feature_names(base) + list(PROSODY_NAMES)
    assert PROSODY.fingerprint() != base.fingerprint()
    rng = np.random.default_rng(1)
    t = np.arange(RATE) / RATE
    signal = (0.3 * np.sin(2 * np.pi * 180.0 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    np.testing.assert_array_equal(
        feature_vector(signal, RATE, PROSODY)[: len(feature_names(base))], feature_vector(signal, RATE, base)
    )


def test_ill_conditioned_lpc_leaves_formants_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def ill_conditioned(*args: object, **kwargs: object) -> None:
        raise FloatingPointError("numerical error, input ill-conditioned?")

    monkeypatch.setattr("ser_batch.features.prosody.librosa.lpc", ill_conditioned)
    t = np.arange(RATE) / RATE
    values = described(0.3 * np.sin(2 * np.pi * 150.0 * t) + 0.1 * np.sin(2 * np.pi * 300.0 * t))
    assert values["f1_hz_mean"] == values["f3_hz_std"] == 0.0 and values["hnr_db_mean"] > 10.0
