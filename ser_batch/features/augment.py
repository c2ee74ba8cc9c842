"""Training-audio augmentations (pure: waveform in, waveform out; randomness only from a passed ``rng``).

Apply these to training clips only, after the split: ``augmented_copies`` turns one
training clip into labelled copies that look like noisy, re-levelled, sped-up or
telephone-channel audio. Copies keep their source clip's path, so a split by clip or
speaker keeps them on the source's side (see ``ser_batch.model.split.copies_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from numpy.typing import NDArray

from ser_batch.config import FeatureConfig
from ser_batch.errors import AudioError

TELEPHONE_RATE = 8_000
"""Sample rate of the telephone channel (G.711 narrowband), Hz."""

TELEPHONE_BAND_HZ: tuple[float, float] = (300.0, 3400.0)
"""Pass band of the telephone channel, Hz."""

_MU = 255.0  # G.711 mu-law


@dataclass(frozen=True)
class Copy:
    """One augmented copy: a short description of the transforms and the audio at ``sample_rate``."""

    name: str
    waveform: NDArray[np.float32]
    sample_rate: int


def add_noise(waveform: NDArray[np.float32], snr_db: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """Add white Gaussian noise at exactly ``snr_db`` relative to the waveform's mean power.

    Args:
        waveform: shape ``(n,)``, float32, not all zeros.
        snr_db: signal-to-noise ratio in dB (signal power / noise power).
        rng: the only source of randomness.

    Returns:
        float32 array of shape ``(n,)``; not clipped, so the SNR is exact.

    Raises:
        AudioError: if the waveform has no power.

    >>> y = np.sin(np.arange(8000, dtype=np.float32) / 5)
    >>> noisy = add_noise(y, 10.0, np.random.default_rng(0))
    >>> round(float(10 * np.log10(np.mean(y**2) / np.mean((noisy - y) ** 2))), 3)
    10.0
    """
    power = float(np.mean(np.square(waveform, dtype=np.float64)))
    if power <= 0.0:
        raise AudioError("cannot add noise at an SNR to a waveform with zero power")
    noise = rng.standard_normal(waveform.size)
    noise *= np.sqrt(power / 10.0 ** (snr_db / 10.0) / np.mean(noise**2))
    return (waveform + noise).astype(np.float32)


def apply_gain(waveform: NDArray[np.float32], gain_db: float) -> NDArray[np.float32]:
    """Scale by ``gain_db`` decibels (amplitude factor ``10 ** (gain_db / 20)``), clipping to [-1, 1].

    >>> [round(float(v), 3) for v in apply_gain(np.array([0.1, -0.6], np.float32), 6.0)]
    [0.2, -1.0]
    """
    return np.clip(waveform * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


def change_speed(waveform: NDArray[np.float32], factor: float) -> NDArray[np.float32]:
    """Play ``factor`` times faster (duration / factor, pitch * factor), as Kaldi's speed perturbation.

    Args:
        waveform: shape ``(n,)``, float32.
        factor: speed factor in (0.5, 2); 1.1 is 10 % faster and higher.

    Returns:
        float32 array of about ``n / factor`` samples at the same nominal rate.

    >>> change_speed(np.zeros(1100, np.float32), 1.1).size
    1000
    """
    if not 0.5 < factor < 2.0:
        raise AudioError(f"speed factor {factor} not in (0.5, 2)")
    out = soxr.resample(waveform, 1000.0 * factor, 1000.0, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def telephone_channel(waveform: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
    """Pass audio through a narrowband telephone line: 300-3400 Hz, 8 kHz, 8-bit mu-law.

    Band-limits with a 12th-order elliptic band-pass (0.5 dB ripple, 60 dB stop band,
    applied forwards and backwards for zero phase), resamples to
    ``TELEPHONE_RATE`` and quantises with G.711 mu-law (256 levels).

    Args:
        waveform: shape ``(n,)``, float32 in [-1, 1].
        sample_rate: rate of ``waveform`` in Hz, above 6,800.

    Returns:
        float32 waveform at ``TELEPHONE_RATE``; resample it to a feature set's rate as a
        decoder would an 8 kHz call recording.

    >>> telephone_channel(np.zeros(16000, np.float32), 16000).shape
    (8000,)
    """
    low, high = TELEPHONE_BAND_HZ
    if sample_rate <= 2 * high:
        raise AudioError(f"sample_rate {sample_rate} too low for a {high:.0f} Hz telephone band")
    from scipy import signal  # here, not at import: 0.7 s that the flow process (which imports this module) never uses

    # elliptic: steep edges (a Butterworth of this order leaves 3.6-4 kHz only ~15 dB down)
    sos = signal.ellip(6, 0.5, 60.0, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    band = signal.sosfiltfilt(sos, waveform.astype(np.float64))
    narrow = soxr.resample(band, sample_rate, TELEPHONE_RATE, quality="HQ") if sample_rate != TELEPHONE_RATE else band
    return mu_law(np.clip(narrow, -1.0, 1.0)).astype(np.float32)


def mu_law(waveform: NDArray[np.floating], *, levels: int = 256) -> NDArray[np.float64]:
    """Quantise with mu-law companding to ``levels`` codes and expand back (G.711 mu-law for 256).

    >>> float(mu_law(np.array([0.5]))[0]) - 0.5 < 0.01
    True
    """
    x = np.clip(np.asarray(waveform, dtype=np.float64), -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(_MU * np.abs(x)) / np.log1p(_MU)
    codes = np.round((compressed + 1.0) / 2.0 * (levels - 1))
    expanded = codes / (levels - 1) * 2.0 - 1.0
    return np.sign(expanded) * np.expm1(np.abs(expanded) * np.log1p(_MU)) / _MU


def augmented_copies(waveform: NDArray[np.float32], sample_rate: int, rng: np.random.Generator) -> list[Copy]:
    """The training-augmentation policy: two copies of one clip that look like calls.

    1. ``telephone``: gain of -6..+6 dB, white noise at 15-35 dB SNR, then the telephone
       channel (returned at 8 kHz, as a call recording would be).
    2. ``speed-noise``: speed 0.9-1.1, gain -6..+6 dB, white noise at 10-30 dB SNR, at the
       input rate.

    Args:
        waveform: one training clip, shape ``(n,)``, float32, not silent.
        sample_rate: its rate in Hz (above 6,800).
        rng: seeded generator; the same seed gives the same copies.

    Returns:
        the copies, in the order above; resample each to the feature set's rate.
    """
    level = apply_gain(waveform, float(rng.uniform(-6.0, 6.0)))
    phone = telephone_channel(add_noise(level, float(rng.uniform(15.0, 35.0)), rng), sample_rate)
    factor = float(rng.uniform(0.9, 1.1))
    fast = apply_gain(change_speed(waveform, factor), float(rng.uniform(-6.0, 6.0)))
    noisy = add_noise(fast, float(rng.uniform(10.0, 30.0)), rng)
    return [
        Copy("telephone", phone, TELEPHONE_RATE),
        Copy("speed-noise", np.clip(noisy, -1.0, 1.0).astype(np.float32), sample_rate),
    ]


def augment_by_default(config: FeatureConfig) -> bool:
    """Whether featurizing makes augmented copies unless told: yes, except for the recipe's ``seed268``.

    >>> from ser_batch.config import feature_config
    >>> augment_by_default(feature_config("stats8k")), augment_by_default(feature_config("seed268"))
    (True, False)
    """
    return config.kind != "seed"
