"""Feature vectors from waveforms (pure: no IO, no state, no randomness)."""

from __future__ import annotations

import librosa
import numpy as np
from numpy.typing import NDArray

from ser_batch.config import (
    EncoderFeatureConfig,
    FeatureConfig,
    FramesFeatureConfig,
    ProsodyFeatureConfig,
    StatsFeatureConfig,
)
from ser_batch.errors import AudioError, ConfigError
from ser_batch.features.encoder import FrameEncoder, encoder_chunks, encoder_names, encoder_vector
from ser_batch.features.prosody import PROSODY_NAMES, prosody_vector
from ser_batch.features.seed import seed_filters, seed_vector


def feature_names(config: FeatureConfig) -> list[str]:
    """Column names of ``feature_vector``'s output, in order.

    >>> from ser_batch.config import feature_config
    >>> names = feature_names(feature_config("seed268"))
    >>> len(names), names[0], names[128], names[140]
    (268, 'mfcc_001_mean', 'chroma_01_mean', 'mel_001_mean')
    """
    if isinstance(config, StatsFeatureConfig):
        return _stats_names(config)
    if isinstance(config, EncoderFeatureConfig):
        return encoder_names(config)
    if isinstance(config, FramesFeatureConfig):
        return [f"logmel_{m:02d}_t{t:03d}" for t in range(config.n_frames) for m in range(1, config.n_mels + 1)]
    return (
        [f"mfcc_{i:03d}_mean" for i in range(1, config.n_mfcc + 1)]
        + [f"chroma_{i:02d}_mean" for i in range(1, config.n_chroma + 1)]
        + [f"mel_{i:03d}_mean" for i in range(1, config.n_mels + 1)]
    )


def feature_bytes(n_samples: int, config: FeatureConfig) -> int:
    """Upper bound of the memory ``feature_vector`` allocates for ``n_samples`` samples at ``config.sample_rate`` (bytes).

    Its temporaries are a few spectrogram-sized arrays: measured 4.3 (``seed268``), 6.9
    (``stats`` sets) and 1.5 (``frames8k``) times the complex64 STFT's size; the bound is 7 times.
    An encoder set's activations depend on the model: estimated at ``ENCODER_BYTES_PER_SAMPLE`` per
    sample of its longest chunk, plus the clip's frames (``n_dims`` float32 every 10 ms).

    >>> from ser_batch.config import feature_config
    >>> feature_bytes(10 * 60 * 8_000, feature_config("stats8k")) // 2**20  # 10 minutes at 8 kHz
    823
    """
    if isinstance(config, EncoderFeatureConfig):
        chunk = max((stop - start for start, stop in encoder_chunks(n_samples, config)), default=0)
        frames = 4 * config.n_dims * (1 + 100 * n_samples // config.sample_rate)
        return ENCODER_BYTES_PER_SAMPLE * chunk + frames
    n_frames = 1 + n_samples // config.hop_length
    return 7 * 8 * n_frames * (config.n_fft // 2 + 1)


ENCODER_BYTES_PER_SAMPLE = 1024
"""Activations of an encoder per input sample of one chunk (bytes), an estimate from WavLM-base's architecture
(not measured here): its first convolution alone holds 512 float32 channels every 5 samples (~410 bytes a
sample); 20 s chunks at 16 kHz then bound a clip's encoder memory near 330 MB."""


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
            f"too short: {waveform.size} samples < {config.min_samples} (one {config.min_samples}-sample frame)"
        )
    if not np.isfinite(waveform).all():
        raise AudioError("waveform contains NaN or Inf samples")
    if float(np.max(np.abs(waveform))) <= config.silence_peak:
        raise AudioError(f"silent: peak |x| <= {config.silence_peak}")


def feature_vector(
    waveform: NDArray[np.float32], sample_rate: int, config: FeatureConfig, *, encoder: FrameEncoder | None = None
) -> NDArray[np.float32]:
    """Compute one clip's feature vector.

    For ``stats`` sets (``stats16k``, ``stats8k``) see ``_stats_vector``: one Hann STFT
    gives log-mel, MFCC (+ delta spreads), spectral contrast and shape, frame energy and
    an autocorrelation pitch; leading/trailing frames more than ``trim_db`` below the
    loudest are trimmed and the spectrum is normalised to unit mean power, so the vector
    does not depend on gain.

    For ``frames`` sets (``frames8k``) it is ``logmel_frames`` flattened frame by frame.

    For encoder (``onnx``) sets it is ``ser_batch.features.encoder.encoder_vector``: the mean and
    std over time of the model's frame embeddings; ``encoder`` is that model, loaded by
    ``ser_batch.storage.load_encoder``.

    For ``seed268`` this equals the original recipe (mean over frames of
    ``mfcc(y, n_mfcc=128)``, ``chroma_stft(S=|stft(y)|)`` and
    ``melspectrogram(y)``) to float32 rounding, but from one shared STFT instead of three
    (see ``ser_batch.features.seed``; its filter banks are built once per process).

    Args:
        waveform: mono samples in [-1, 1], shape ``(n,)``, float32, ``n >= config.min_samples``.
        sample_rate: rate of ``waveform`` in Hz; must equal ``config.sample_rate``.
        config: the feature set.
        encoder: the loaded model of an encoder set; unused by other sets.

    Returns:
        float32 array of shape ``(len(feature_names(config)),)``.

    Raises:
        AudioError: if the waveform breaks the contract in ``validate_waveform``.
        ConfigError: for an encoder set without its ``encoder``.

    >>> from ser_batch.config import feature_config
    >>> config = feature_config("seed268")
    >>> t = np.arange(config.sample_rate, dtype=np.float32) / config.sample_rate
    >>> vector = feature_vector(0.5 * np.sin(2 * np.pi * 440 * t), config.sample_rate, config)
    >>> vector.shape, vector.dtype
    ((268,), dtype('float32'))
    """
    validate_waveform(waveform, sample_rate, config)
    if isinstance(config, StatsFeatureConfig):
        return _stats_vector(waveform, sample_rate, config)
    if isinstance(config, EncoderFeatureConfig):
        if encoder is None:
            raise ConfigError(
                f"feature set {config.name!r} needs its encoder ({config.model_uri}): storage.load_encoder"
            )
        return encoder_vector(waveform, config, encoder)
    if isinstance(config, FramesFeatureConfig):
        return logmel_frames(waveform, sample_rate, config).reshape(-1)
    return seed_vector(waveform, seed_filters(config))


LAZY_MODULES: tuple[str, ...] = (
    "scipy.signal",
    "librosa.filters",
    "librosa.util.utils",
    "librosa.feature",
    "ser_batch.jobs.featurize",
)
"""What ``feature_vector`` and its batch driver import on first use (librosa loads lazily, with numba
kernels): a process that forks workers can import these once for all of them."""


def warm_up(config: FeatureConfig, *, encoder: FrameEncoder | None = None) -> None:
    """Featurize one synthetic clip so that a fresh process pays its one-off costs now.

    librosa imports its submodules lazily and numba loads its cached kernels on first use
    (2-4 s in a new Dask worker); ``seed268`` also builds its filter banks. Call it once per
    worker before the first shard (the CLI does, while the Prefect API starts). An encoder set
    needs its ``encoder`` (``feature_vector``).

    >>> from ser_batch.config import feature_config
    >>> warm_up(feature_config("stats8k"))
    """
    t = np.arange(config.sample_rate, dtype=np.float32) / config.sample_rate
    feature_vector(
        (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), config.sample_rate, config, encoder=encoder
    )


STAT_SUFFIXES: tuple[str, ...] = ("mean", "std", "p10", "p50", "p90")
"""Statistics pooled over frames for the ``stats`` feature sets' full-statistics groups."""

_SHAPE_FRAMES: tuple[str, ...] = ("zcr", "rms_db", "centroid", "rolloff", "flatness")
_PITCH_NAMES: tuple[str, ...] = (
    "f0_st_mean",
    "f0_st_std",
    "f0_st_p10",
    "f0_st_p50",
    "f0_st_p90",
    "f0_st_delta_abs_mean",
    "voiced_fraction",
    "voicing_strength_mean",
)
_F0_REF_HZ = 55.0  # semitones are counted from A1
_OCTAVE_COST = 0.05  # per octave of lag; Praat's default is 0.01, for a 40 ms window
_AMIN = 1e-10  # librosa.power_to_db's floor: keeps silent frames finite


def _stats_names(config: StatsFeatureConfig) -> list[str]:
    full = [f"mfcc_{i:02d}" for i in range(1, config.n_mfcc + 1)] + list(_SHAPE_FRAMES)
    names = [f"logmel_{i:02d}_{s}" for i in range(1, config.n_mels + 1) for s in ("mean", "std")]
    names += [f"{base}_{s}" for base in full for s in STAT_SUFFIXES]
    names += [f"mfcc_{i:02d}_d{order}_std" for order in (1, 2) for i in range(1, config.n_mfcc + 1)]
    names += [f"contrast_{i}_{s}" for i in range(1, config.n_contrast_bands + 2) for s in ("mean", "std")]
    names += list(_PITCH_NAMES)
    return names + list(PROSODY_NAMES) if isinstance(config, ProsodyFeatureConfig) else names


def spectral_frames(
    magnitude: NDArray[np.float32], sample_rate: int, config: StatsFeatureConfig
) -> dict[str, NDArray[np.float32]]:
    """Per-frame log-mel, MFCC and spectral contrast from one magnitude STFT.

    Equal to ``librosa.feature.melspectrogram`` / ``mfcc`` / ``spectral_contrast`` called
    on the waveform with the same ``n_fft``, ``hop_length``, ``fmin`` and ``fmax``.

    Args:
        magnitude: ``|stft|``, shape ``(1 + n_fft // 2, n_frames)``.
        sample_rate: rate in Hz.
        config: a ``stats`` feature set.

    Returns:
        ``mel`` power ``(n_mels, t)``, ``logmel`` dB ``(n_mels, t)``, ``mfcc`` ``(n_mfcc, t)``
        and ``contrast`` ``(n_contrast_bands + 1, t)``.
    """
    mel = librosa.feature.melspectrogram(
        S=magnitude**2,
        sr=sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    )
    logmel = librosa.power_to_db(mel, ref=1.0, amin=_AMIN, top_db=80.0)
    mfcc = librosa.feature.mfcc(S=logmel, sr=sample_rate, n_mfcc=config.n_mfcc)
    contrast = librosa.feature.spectral_contrast(
        S=magnitude,
        sr=sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        fmin=config.contrast_fmin,
        n_bands=config.n_contrast_bands,
    )
    return {"mel": mel, "logmel": logmel, "mfcc": mfcc, "contrast": contrast}


def autocorrelation_pitch(
    power: NDArray[np.floating], sample_rate: int, config: StatsFeatureConfig
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-frame f0 and periodicity from a power STFT (Wiener-Khinchin, Boersma's window correction).

    Args:
        power: ``|stft|**2`` of Hann-windowed frames, shape ``(1 + n_fft // 2, t)``.
        sample_rate: rate in Hz.
        config: a ``stats`` feature set (``n_fft``, ``f0_min``, ``f0_max``).

    Returns:
        ``(f0_hz, strength)``, each shape ``(t,)``: the best lag's frequency and its
        normalised autocorrelation in [0, 1] (near 1 for strongly periodic frames).
    """
    acf = np.fft.irfft(power.astype(np.float64), n=config.n_fft, axis=0)
    window_power = np.abs(np.fft.rfft(librosa.filters.get_window("hann", config.n_fft, fftbins=True))) ** 2
    window_acf = np.fft.irfft(window_power, n=config.n_fft)
    low = max(2, int(np.floor(sample_rate / config.f0_max)))
    high = min(config.n_fft // 2 - 1, int(np.ceil(sample_rate / config.f0_min)))
    # normalised by energy and by the window's own autocorrelation, which tapers with lag
    ratio = (acf[low - 1 : high + 2] / np.maximum(acf[:1], _AMIN)) / (
        window_acf[low - 1 : high + 2, None] / window_acf[0]
    )
    ratio = np.where(acf[:1] > _AMIN, ratio, 0.0)
    # Praat's octave cost: among near-equal peaks at multiples of the period, prefer the shortest lag
    lags = np.arange(low - 1, high + 2, dtype=np.float64)
    best = np.argmax(ratio[1:-1] - _OCTAVE_COST * np.log2(lags[1:-1, None] / low), axis=0) + 1
    columns = np.arange(ratio.shape[1])
    left, centre, right = ratio[best - 1, columns], ratio[best, columns], ratio[best + 1, columns]
    curvature = left - 2.0 * centre + right
    shift = np.where(curvature < 0.0, 0.5 * (left - right) / np.where(curvature < 0.0, curvature, -1.0), 0.0)
    lag = (best + low - 1) + np.clip(shift, -0.5, 0.5)
    return sample_rate / lag, np.clip(centre, 0.0, 1.0)


def _pool(frames: NDArray[np.float64], full: bool) -> NDArray[np.float64]:
    if not full:
        return np.stack([frames.mean(axis=1), frames.std(axis=1)], axis=1).reshape(-1)
    p10, p50, p90 = np.percentile(frames, [10.0, 50.0, 90.0], axis=1)
    return np.stack([frames.mean(axis=1), frames.std(axis=1), p10, p50, p90], axis=1).reshape(-1)


def _kept_frames(rms_db: NDArray[np.floating], trim_db: float) -> slice:
    loud = np.flatnonzero(rms_db >= rms_db.max() - trim_db)
    return slice(int(loud[0]), int(loud[-1]) + 1)


def _pitch_stats(f0: NDArray[np.floating], strength: NDArray[np.floating], voiced: NDArray[np.bool_]) -> list[float]:
    if voiced.sum() < 2:  # unvoiced clip: neutral values rather than NaN
        return [0.0] * 6 + [float(voiced.mean()), float(strength.mean())]
    semitones = 12.0 * np.log2(f0[voiced] / _F0_REF_HZ)
    p10, p50, p90 = np.percentile(semitones, [10.0, 50.0, 90.0])
    steps = np.abs(np.diff(12.0 * np.log2(f0 / _F0_REF_HZ)))[voiced[1:] & voiced[:-1]]
    jump = float(steps.mean()) if steps.size else 0.0
    return [
        float(semitones.mean()),
        float(semitones.std()),
        p10,
        p50,
        p90,
        jump,
        float(voiced.mean()),
        float(strength.mean()),
    ]


def _stats_vector(waveform: NDArray[np.float32], sample_rate: int, config: StatsFeatureConfig) -> NDArray[np.float32]:
    magnitude = np.abs(
        librosa.stft(waveform, n_fft=config.n_fft, hop_length=config.hop_length, window="hann", center=True)
    )
    if config.band_limited:
        freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=config.n_fft)
        magnitude[(freqs < config.fmin) | (freqs > config.fmax)] = 0.0
    power = magnitude.astype(np.float64) ** 2
    rms_db = 10.0 * np.log10(np.maximum(librosa.feature.rms(S=magnitude, frame_length=config.n_fft)[0], _AMIN) ** 2)
    kept = _kept_frames(rms_db, config.trim_db)
    magnitude, power, rms_db = magnitude[:, kept], power[:, kept], rms_db[kept]
    # level normalisation: features must not depend on microphone gain
    scale = float(np.sqrt(max(power.mean(), _AMIN)))
    frames = spectral_frames((magnitude / scale).astype(np.float32), sample_rate, config)
    if config.band_limited:  # Rice's formula: crossings per sample of the band-limited signal
        freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=config.n_fft)[:, None]
        zcr = (
            2.0 * np.sqrt((freqs**2 * power).sum(axis=0) / np.maximum(power.sum(axis=0), _AMIN))[None, :] / sample_rate
        )
    else:
        zcr = librosa.feature.zero_crossing_rate(
            waveform, frame_length=config.n_fft, hop_length=config.hop_length, center=True
        )[:, kept]
    shape = np.vstack(
        [
            zcr,
            (rms_db - rms_db.max())[None, :],
            librosa.feature.spectral_centroid(S=magnitude, sr=sample_rate, n_fft=config.n_fft) / (sample_rate / 2),
            librosa.feature.spectral_rolloff(S=magnitude, sr=sample_rate, n_fft=config.n_fft) / (sample_rate / 2),
            librosa.feature.spectral_flatness(S=magnitude, amin=_AMIN),
        ]
    )
    mfcc = frames["mfcc"].astype(np.float64)
    deltas = [librosa.feature.delta(mfcc, width=9, order=order, mode="nearest").std(axis=1) for order in (1, 2)]
    f0, strength = autocorrelation_pitch(power, sample_rate, config)
    voiced = (strength >= config.voicing_threshold) & (rms_db >= rms_db.max() - 30.0)
    vector = pooled_stats_vector(frames["logmel"], mfcc, shape, deltas, frames["contrast"], f0, strength, voiced)
    if not isinstance(config, ProsodyFeatureConfig):
        return vector
    extra = prosody_vector(waveform, power, frames["mel"], f0, voiced, int(kept.start), config)
    return np.concatenate([vector, extra.astype(np.float32)])


def pooled_stats_vector(
    logmel: NDArray[np.floating],
    mfcc: NDArray[np.floating],
    shape: NDArray[np.floating],
    deltas: list[NDArray[np.float64]],
    contrast: NDArray[np.floating],
    f0: NDArray[np.float64],
    strength: NDArray[np.float64],
    voiced: NDArray[np.bool_],
) -> NDArray[np.float32]:
    """Pool a ``stats`` set's frame matrices (columns are frames) into its feature vector.

    The last step of ``feature_vector`` for ``stats`` sets, public so that
    ``ser_batch.features.windows`` can pool frames it shares between overlapping windows.

    Args:
        logmel: ``(n_mels, t)``, dB.
        mfcc: ``(n_mfcc, t)``.
        shape: ``(5, t)``: zcr, relative energy dB, centroid, rolloff, flatness.
        deltas: the std over frames of the first and second MFCC deltas, ``(n_mfcc,)`` each.
        contrast: ``(n_contrast_bands + 1, t)``, dB.
        f0: ``(t,)``, Hz.
        strength: ``(t,)``, voicing strength in [0, 1].
        voiced: ``(t,)``, bool.

    Returns:
        float32 array of shape ``(len(feature_names(config)),)``, NaN and inf replaced by 0.

    >>> t = 3
    >>> pooled_stats_vector(np.zeros((2, t)), np.zeros((1, t)), np.zeros((5, t)), [np.zeros(1)] * 2,
    ...                     np.zeros((2, t)), np.full(t, 100.0), np.ones(t), np.ones(t, bool)).shape
    (48,)
    """
    parts = [
        _pool(logmel.astype(np.float64), full=False),
        _pool(np.vstack([mfcc, shape]), full=True),
        *deltas,
        _pool(contrast.astype(np.float64), full=False),
        np.asarray(_pitch_stats(f0, strength, voiced)),
    ]
    return np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def logmel_frames(waveform: NDArray[np.float32], sample_rate: int, config: FramesFeatureConfig) -> NDArray[np.float32]:
    """Log-mel frames of a clip, silence-trimmed, level-normalised and fitted to ``config.n_frames``.

    The mel spectrogram equals ``librosa.feature.melspectrogram`` of the waveform (Hann,
    centred frames) on the kept frames, scaled to unit mean power, in dB with
    ``power_to_db(ref=1.0, top_db=80)``. Longer clips keep their centre ``n_frames``
    frames; shorter ones are repeated (never zero-padded) to fill them.

    Args:
        waveform: mono samples, shape ``(n,)``, float32, already validated.
        sample_rate: rate in Hz, ``config.sample_rate``.
        config: a ``frames`` feature set.

    Returns:
        float32 array of shape ``config.frame_shape`` = ``(n_frames, n_mels)``.

    >>> from ser_batch.config import feature_config
    >>> config = feature_config("frames8k")
    >>> t = np.arange(config.sample_rate, dtype=np.float32) / config.sample_rate
    >>> logmel_frames(0.5 * np.sin(2 * np.pi * 440 * t), config.sample_rate, config).shape
    (150, 40)
    """
    power = (
        np.abs(librosa.stft(waveform, n_fft=config.n_fft, hop_length=config.hop_length, window="hann", center=True))
        ** 2
    )
    rms_db = 10.0 * np.log10(np.maximum(power.mean(axis=0) * 2.0 / config.n_fft, _AMIN))
    power = power[:, _kept_frames(rms_db, config.trim_db)]
    power = power / max(float(power.mean()), _AMIN)  # level normalisation: no dependence on gain
    mel = librosa.feature.melspectrogram(
        S=power,
        sr=sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    )
    logmel = librosa.power_to_db(mel, ref=1.0, amin=_AMIN, top_db=80.0).T
    n_kept = logmel.shape[0]
    if n_kept >= config.n_frames:
        start = (n_kept - config.n_frames) // 2
        return np.ascontiguousarray(logmel[start : start + config.n_frames], dtype=np.float32)
    return np.resize(logmel, (config.n_frames, config.n_mels)).astype(np.float32)  # repeats whole frames
