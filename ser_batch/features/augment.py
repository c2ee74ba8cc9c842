"""Training-audio augmentations (pure: waveform in, waveform out; randomness only from a passed ``rng``).

Apply these to training clips only, after the split: ``augmented_copies`` turns one training clip
into labelled copies that look like telephone-channel audio or another voice (``voice_copies``:
vocal tract length, pitch or formants moved). Copies keep their source clip's path, so a split by
clip or speaker keeps them on the source's side (see ``ser_batch.model.split.copies_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from numpy.typing import NDArray

from ser_batch.config import FeatureConfig
from ser_batch.errors import AudioError, ConfigError

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


VTLP_BOUNDARY_HZ = 4800.0
"""Jaitly & Hinton's upper boundary of the linear part of the VTLP warp (their 16 kHz audio), Hz."""


def vtlp_warp(frequency_hz: NDArray[np.floating], alpha: float, sample_rate: int) -> NDArray[np.float64]:
    """Jaitly & Hinton's (2013) piecewise-linear VTLP warp of the frequency axis.

    ``f -> alpha * f`` up to ``F_hi * min(alpha, 1) / alpha``, then a straight line to the
    Nyquist frequency, which stays fixed, so no energy leaves the band. ``F_hi`` is
    ``VTLP_BOUNDARY_HZ``, capped at 0.8 times Nyquist for lower rates.

    Source: N. Jaitly and G. E. Hinton, "Vocal Tract Length Perturbation (VTLP) improves
    speech recognition", ICML 2013 Workshop on Deep Learning for Audio, Speech and Language, eq. 1.

    Args:
        frequency_hz: frequencies in Hz, any shape, in ``[0, sample_rate / 2]``.
        alpha: warp factor, in [0.8, 1.2]; 1 is the identity.
        sample_rate: Hz.

    Returns:
        the warped frequencies in Hz, same shape.

    >>> [round(float(f)) for f in vtlp_warp(np.array([0.0, 1000.0, 8000.0]), 1.1, 16_000)]
    [0, 1100, 8000]
    """
    if not 0.8 <= alpha <= 1.2:
        raise AudioError(f"VTLP factor {alpha} not in [0.8, 1.2]")
    nyquist = sample_rate / 2.0
    boundary = min(VTLP_BOUNDARY_HZ, 0.8 * nyquist) * min(alpha, 1.0) / alpha
    f = np.asarray(frequency_hz, dtype=np.float64)
    upper = nyquist - (nyquist - alpha * boundary) / (nyquist - boundary) * (nyquist - f)
    return np.where(f <= boundary, alpha * f, upper)


def vtlp(waveform: NDArray[np.float32], sample_rate: int, alpha: float) -> NDArray[np.float32]:
    """Vocal tract length perturbation of a waveform: every frequency ``f`` moves to ``vtlp_warp(f)``.

    Warps the short-time spectrum (64 ms Hann frames, 75 % overlap): output bin ``k`` takes the
    magnitude at ``vtlp_warp⁻¹(f_k)`` and a phase advanced at the warped instantaneous frequency
    of that source (a phase vocoder), then overlap-adds. Harmonics and formants move together
    (below ``F_hi``, F0 and formants both times ``alpha``); the duration is unchanged.

    Args:
        waveform: shape ``(n,)``, float32.
        sample_rate: Hz.
        alpha: warp factor in [0.8, 1.2] (Jaitly & Hinton draw it from [0.9, 1.1]).

    Returns:
        float32 array of shape ``(n,)`` at ``sample_rate``.

    Raises:
        AudioError: if ``alpha`` is outside [0.8, 1.2].

    Source: Jaitly & Hinton (2013), see ``vtlp_warp``; phase vocoder after Flanagan & Golden (1966).
    """
    import librosa

    n_fft = int(2 ** np.ceil(np.log2(0.064 * sample_rate)))
    hop = n_fft // 4
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    grid = np.linspace(0.0, sample_rate / 2.0, 4097)
    source_hz = np.interp(bins, vtlp_warp(grid, alpha, sample_rate), grid)  # the warp is increasing: invert it
    spectrum = librosa.stft(waveform.astype(np.float32), n_fft=n_fft, hop_length=hop, window="hann")
    magnitude, phase = np.abs(spectrum), np.angle(spectrum)
    expected = 2.0 * np.pi * hop * bins[:, None] / sample_rate
    deviation = np.diff(phase, axis=1, prepend=phase[:, :1]) - expected
    instantaneous_hz = bins[:, None] + (np.angle(np.exp(1j * deviation)) * sample_rate / (2.0 * np.pi * hop))
    position = source_hz * n_fft / sample_rate  # fractional source bin of each output bin
    low = np.clip(np.floor(position).astype(int), 0, bins.size - 2)
    weight = (position - low)[:, None]
    warped_magnitude = (1.0 - weight) * magnitude[low] + weight * magnitude[low + 1]
    nearest = np.clip(np.rint(position).astype(int), 0, bins.size - 1)
    warped_hz = vtlp_warp(np.clip(instantaneous_hz[nearest], 0.0, sample_rate / 2.0), alpha, sample_rate)
    advance = 2.0 * np.pi * hop * warped_hz / sample_rate
    warped_phase = phase[nearest, :1] + np.cumsum(
        np.concatenate([np.zeros_like(advance[:, :1]), advance[:, 1:]], axis=1), axis=1
    )
    out = librosa.istft(
        warped_magnitude * np.exp(1j * warped_phase), hop_length=hop, window="hann", length=waveform.size
    )
    return np.ascontiguousarray(out, dtype=np.float32)


WORLD_FRAME_MS = 5.0
"""Frame period of the WORLD analysis, ms (its default)."""

_PERIODIC = 0.001  # WORLD's aperiodicity floor (D4C's value for a fully periodic band)


def shift_voice(
    waveform: NDArray[np.float32], sample_rate: int, *, semitones: float = 0.0, formant_factor: float = 1.0
) -> NDArray[np.float32]:
    """Move the pitch and/or the formants of speech independently, keeping the tempo (WORLD vocoder).

    Analyses with WORLD (DIO + StoneMask F0, CheapTrick spectral envelope), multiplies F0 by
    ``2 ** (semitones / 12)``, stretches the envelope's frequency axis by ``formant_factor`` (a
    resonance at ``f`` moves to ``formant_factor * f``; beyond the last analysed bin the envelope
    is held), and resynthesises. The excitation follows the voicing decision (voiced frames
    periodic, unvoiced frames noise) rather than WORLD's D4C aperiodicity, whose output changed
    from call to call on the same input in pyworld 0.3.5 (measured; copies must be reproducible).
    A pitch shift alone keeps the vocal tract (formants); a formant shift alone keeps F0: a longer or
    shorter tract.

    Args:
        waveform: shape ``(n,)``, float32, speech or another quasi-periodic sound.
        sample_rate: Hz (8,000 or more).
        semitones: pitch shift, in [-12, 12].
        formant_factor: envelope frequency factor, in [0.7, 1.4]; 1 keeps the formants.

    Returns:
        float32 array of shape ``(n,)`` at ``sample_rate``, clipped to [-1, 1].

    Raises:
        AudioError: if a shift is out of range.
        ConfigError: if pyworld (the ``voices`` extra) is not installed.

    Source: M. Morise, F. Yokomori and K. Ozawa, "WORLD: a vocoder-based high-quality speech
    synthesis system for real-time applications", IEICE Trans. Inf. & Syst. E99-D(7), 2016
    (pyworld, MIT; WORLD, modified BSD).

    >>> tone = np.sin(2 * np.pi * 150 * np.arange(8000) / 8000).astype(np.float32) * 0.3
    >>> bool(np.array_equal(shift_voice(tone, 8000, semitones=1.0), shift_voice(tone, 8000, semitones=1.0)))
    True
    """
    if not -12.0 <= semitones <= 12.0:
        raise AudioError(f"pitch shift {semitones} semitones not in [-12, 12]")
    if not 0.7 <= formant_factor <= 1.4:
        raise AudioError(f"formant factor {formant_factor} not in [0.7, 1.4]")
    try:
        import pyworld  # here, not at import: an optional dependency that only these shifts use
    except ImportError:
        raise ConfigError("pitch and formant shifts need pyworld: pip install 'ser-batch[voices]'") from None

    x = waveform.astype(np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=WORLD_FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = np.where(f0[:, None] > 0.0, _PERIODIC, 1.0) * np.ones_like(envelope)
    if formant_factor != 1.0:
        source = np.arange(envelope.shape[1]) / formant_factor  # output bin k reads the input at k / factor
        envelope = np.stack([np.interp(source, np.arange(row.size), row) for row in envelope])
    out = pyworld.synthesize(
        f0 * 2.0 ** (semitones / 12.0),
        np.ascontiguousarray(envelope),
        np.ascontiguousarray(aperiodicity),
        sample_rate,
        WORLD_FRAME_MS,
    )
    fitted = np.zeros(waveform.size)
    fitted[: min(out.size, waveform.size)] = out[: waveform.size]
    return np.clip(fitted, -1.0, 1.0).astype(np.float32)


VOICE_KINDS: tuple[str, ...] = ("vtlp", "pitch", "formant")
"""The new-voice copies ``voice_copies`` can make, in their order."""


def voice_copies(
    waveform: NDArray[np.float32],
    sample_rate: int,
    rng: np.random.Generator,
    *,
    kinds: tuple[str, ...] = VOICE_KINDS,
    rate: int | None = None,
    telephone: bool = False,
) -> list[Copy]:
    """New voices out of one training clip: one copy per kind, each then re-levelled and noised.

    1. ``vtlp``: ``vtlp`` with ``alpha`` drawn from [0.9, 1.1] (Jaitly & Hinton's range).
    2. ``pitch``: ``shift_voice`` by -3..+3 semitones, formants kept.
    3. ``formant``: ``shift_voice`` with a formant factor of ``2 ** u``, ``u`` in [-0.2, 0.2]
       (0.87-1.15, about the adult male-female difference), F0 kept.

    Each then gets a gain of -6..+6 dB and white noise at 10-30 dB SNR,
    or, with ``telephone``, noise at 15-35 dB SNR and the telephone channel, as ``telephone`` does.
    Every kind draws from its own child of ``rng`` (``rng.spawn``), so a copy is the same
    whichever other kinds are asked for.

    Args:
        waveform: one training clip, shape ``(n,)``, float32, not silent.
        sample_rate: its rate in Hz.
        rng: seeded generator; the same seed gives the same copies.
        kinds: a subset of ``VOICE_KINDS``.
        rate: make the copies at this rate (Hz) when it is below ``sample_rate`` (the feature
            set's rate: WORLD costs about linearly in the rate); default ``sample_rate``.
        telephone: pass each copy through ``telephone_channel`` (named ``KIND-telephone``, at
            ``TELEPHONE_RATE``).

    Returns:
        the copies, in ``VOICE_KINDS`` order, at ``min(rate, sample_rate)`` (``TELEPHONE_RATE``
        with ``telephone``).

    Raises:
        AudioError: for an unknown kind.
    """
    unknown = set(kinds) - set(VOICE_KINDS)
    if unknown:
        raise AudioError(f"unknown voice copies {sorted(unknown)}; known: {list(VOICE_KINDS)}")
    children = dict(zip(VOICE_KINDS, rng.spawn(len(VOICE_KINDS)), strict=True))
    work_rate = min(rate or sample_rate, sample_rate)
    audio = waveform
    if work_rate != sample_rate:
        audio = np.ascontiguousarray(soxr.resample(waveform, sample_rate, work_rate, quality="HQ"), dtype=np.float32)
    copies = []
    for kind in (k for k in VOICE_KINDS if k in kinds):
        child = children[kind]
        if kind == "vtlp":
            voiced = vtlp(audio, work_rate, float(child.uniform(0.9, 1.1)))
        elif kind == "pitch":
            voiced = shift_voice(audio, work_rate, semitones=float(child.uniform(-3.0, 3.0)))
        else:
            voiced = shift_voice(audio, work_rate, formant_factor=float(2.0 ** child.uniform(-0.2, 0.2)))
        level = apply_gain(voiced, float(child.uniform(-6.0, 6.0)))
        if telephone:
            noisy = add_noise(level, float(child.uniform(15.0, 35.0)), child)
            copies.append(Copy(f"{kind}-telephone", telephone_channel(noisy, work_rate), TELEPHONE_RATE))
        else:
            noisy = add_noise(level, float(child.uniform(10.0, 30.0)), child)
            copies.append(Copy(kind, np.clip(noisy, -1.0, 1.0).astype(np.float32), work_rate))
    return copies


def augmented_copies(waveform: NDArray[np.float32], sample_rate: int, rng: np.random.Generator) -> list[Copy]:
    """The training-augmentation policy: two copies of one clip, a call and a new voice.

    1. ``telephone``: gain of -6..+6 dB, white noise at 15-35 dB SNR, then the telephone
       channel (returned at 8 kHz, as a call recording would be).
    2. ``vtlp``: ``voice_copies``' VTLP copy (warp factor 0.9-1.1, gain -6..+6 dB, white noise
       at 10-30 dB SNR), made at 8 kHz. It replaced a speed (0.9-1.1) + gain + noise copy: on
       grouped 5-fold CV it scored 0.612 against 0.577 (telephone 0.550 against 0.549; README
       "Voice variety").

    Args:
        waveform: one training clip, shape ``(n,)``, float32, not silent.
        sample_rate: its rate in Hz (above 6,800).
        rng: seeded generator; the same seed gives the same copies.

    Returns:
        the copies, in the order above, both at ``TELEPHONE_RATE``; resample each to the feature
        set's rate.
    """
    level = apply_gain(waveform, float(rng.uniform(-6.0, 6.0)))
    phone = telephone_channel(add_noise(level, float(rng.uniform(15.0, 35.0)), rng), sample_rate)
    voice = voice_copies(waveform, sample_rate, rng, kinds=("vtlp",), rate=TELEPHONE_RATE)
    return [Copy("telephone", phone, TELEPHONE_RATE), *voice]


def augment_by_default(config: FeatureConfig) -> bool:
    """Whether featurizing makes augmented copies unless told: yes, except for the recipe's ``seed268``.

    >>> from ser_batch.config import feature_config
    >>> augment_by_default(feature_config("stats8k")), augment_by_default(feature_config("seed268"))
    (True, False)
    """
    return config.kind != "seed"
