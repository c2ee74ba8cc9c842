"""Feature vectors from waveforms (pure: no IO, no state, no randomness)."""

from __future__ import annotations

import librosa
import numpy as np
from numpy.typing import NDArray

from ser_batch.config import FeatureConfig
from ser_batch.errors import AudioError


def feature_names(config: FeatureConfig) -> list[str]:
    """Column names of ``feature_vector``'s output, in order.

    >>> from ser_batch.config import feature_config
    >>> names = feature_names(feature_config("seed268"))
    >>> len(names), names[0], names[128], names[140]
    (268, 'mfcc_001_mean', 'chroma_01_mean', 'mel_001_mean')
    """
    return (
        [f"mfcc_{i:03d}_mean" for i in range(1, config.n_mfcc + 1)]
        + [f"chroma_{i:02d}_mean" for i in range(1, config.n_chroma + 1)]
        + [f"mel_{i:03d}_mean" for i in range(1, config.n_mels + 1)]
    )


def validate_waveform(waveform: NDArray[np.float32], sample_rate: int, config: FeatureConfig) -> None:
    """Check the featurizer's input contract.

    Raises:
        AudioError: naming the first broken rule (dtype, shape, rate, length, finiteness, silence).
    """
    if not isinstance(waveform, np.ndarray) or waveform.dtype != np.float32:
        raise AudioError(f"waveform dtype {getattr(waveform, 'dtype', type(waveform))} != float32")
    if waveform.ndim != 1:
        raise AudioError(f"waveform has shape {waveform.shape}; expected 1-D mono")
    if sample_rate != config.sample_rate:
        raise AudioError(f"sample_rate {sample_rate} != {config.sample_rate} (config)")
    if waveform.size < config.min_samples:
        raise AudioError(
            f"too short: {waveform.size} samples < {config.min_samples} (one {config.n_fft}-sample frame)"
        )
    if not np.isfinite(waveform).all():
        raise AudioError("waveform contains NaN or Inf samples")
    if float(np.max(np.abs(waveform))) <= config.silence_peak:
        raise AudioError(f"silent: peak |x| <= {config.silence_peak}")


def feature_vector(waveform: NDArray[np.float32], sample_rate: int, config: FeatureConfig) -> NDArray[np.float32]:
    """Compute one clip's feature vector.

    For ``seed268`` this equals the original recipe (mean over frames of
    ``mfcc(y, n_mfcc=128)``, ``chroma_stft(S=|stft(y)|)`` and
    ``melspectrogram(y)``) to float32 rounding, but from one shared STFT instead of three.

    Args:
        waveform: mono samples in [-1, 1], shape ``(n,)``, float32, ``n >= config.min_samples``.
        sample_rate: rate of ``waveform`` in Hz; must equal ``config.sample_rate``.
        config: the feature set.

    Returns:
        float32 array of shape ``(len(feature_names(config)),)``.

    Raises:
        AudioError: if the waveform breaks the contract in ``validate_waveform``.

    >>> from ser_batch.config import feature_config
    >>> config = feature_config("seed268")
    >>> t = np.arange(config.sample_rate, dtype=np.float32) / config.sample_rate
    >>> vector = feature_vector(0.5 * np.sin(2 * np.pi * 440 * t), config.sample_rate, config)
    >>> vector.shape, vector.dtype
    ((268,), dtype('float32'))
    """
    validate_waveform(waveform, sample_rate, config)
    magnitude = np.abs(librosa.stft(waveform, n_fft=config.n_fft, hop_length=config.hop_length))
    mel_power = librosa.feature.melspectrogram(
        S=magnitude**2, sr=sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels
    )
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel_power), sr=sample_rate, n_mfcc=config.n_mfcc)
    chroma = librosa.feature.chroma_stft(
        S=magnitude, sr=sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, n_chroma=config.n_chroma
    )
    return np.concatenate([mfcc.mean(axis=1), chroma.mean(axis=1), mel_power.mean(axis=1)]).astype(np.float32)
