"""Find speech in a long call channel and cut it into scoring windows (pure, no IO).

The voice-activity detector needs no model, so it runs the same on 8 kHz telephone audio and on
16 kHz or faster recordings (its input is already high-passed at decoding: ``ser_batch.features.highpass``):

1. Frames of ``vad_frame_s`` every ``vad_hop_s`` get their power in the telephone band (300-3400 Hz)
   and over the whole spectrum, in dBFS (Hann-windowed FFT, Parseval-scaled).
2. Each level's noise floor is its 10th percentile, capped at ``vad_noise_cap_dbfs``. A frame is loud
   when its band level is ``vad_threshold_db`` above the band's floor and above ``vad_floor_dbfs``; or
   when its whole level is (low voices' nasals and /u/, whose energy lies under 300 Hz) and its band
   level still rises 3 dB above the band's floor and lies within 20 dB of its whole level (rumble
   below 200 Hz and hum leave the band at its floor, ~40 dB under their own level).
3. A loud frame is dropped as a steady sound when, within the band, its magnitude spectrum has a
   cosine similarity above ``vad_max_steadiness`` with the frame 0.1 s before or after (held notes of
   hold music; speech moves within 0.1 s), or when it is a tone: more than ``vad_max_tonality`` of its
   band power lies within 1.5 Hann main lobes of its two strongest peaks and its spectrum has a
   similarity above 0.99 with the frame 0.05 s away (dial, ringback, busy tones, and DTMF digits of
   0.1 s). A majority vote over ±20 ms smooths these decisions. A loud frame holding more than half
   its energy within 2.5 ms is a click. Frames within one frame length of a steady sound or a click
   are dropped too (their onsets and ends).
4. With ``vad_mode`` set, a frame must also be speech to WebRTC's VAD (``webrtcvad``) at that
   aggressiveness, run on the channel resampled to 8 kHz in 30 ms frames.
5. Runs of speech frames become spans; pauses shorter than ``min_gap_s`` are bridged, then spans
   shorter than ``min_speech_s`` are dropped.

What it rejects, measured by ``benchmarks/vad.py`` (real ser-dev speech against synthetic non-speech,
8 kHz; see the README): digital silence, steady line noise, hiss, hum, rumble, pure and dual tones,
DTMF, clicks and synthetic hold music. What it does not reject: broadband noise bursts (a door, a
cough, wind), background talk or TV, and music less steady than held notes (with vocals, vibrato or
drums); they are scored like speech. Levels are absolute, so a very quiet speaker (under about
-55 dBFS in the band, or under ``vad_threshold_db`` above the line noise) is missed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft
import soxr
import webrtcvad
from numpy.typing import NDArray

from ser_batch._typing import SampleReader, Span
from ser_batch.config import ScoreConfig
from ser_batch.errors import AudioError, ConfigError

"""``read(start, stop)``: samples ``[start, stop)`` of one channel."""

_NOISE_PERCENTILE = 10.0
_POWER_EPS = 1e-12  # -120 dBFS: keeps log10 finite on digital silence
_PEAK_RADIUS_LOBES = 1.5  # a peak's reach, in Hann main-lobe half-widths (±2 / frame_s Hz)
_TONE_LAG_S = 0.05  # a tone's spectrum is compared with the frames this far before and after (DTMF digits last 0.1 s)
_TONE_SIMILARITY = 0.99  # cosine of magnitude spectra; voiced speech as pure as a tone moves below it within 0.05 s
_CLICK_S = 0.0025  # a click's energy lies within this: a frame holding more than _CLICK_SHARE of its energy in
_CLICK_SHARE = 0.5  # one such sub-block is a click (a speech frame spreads its energy over ~12 of them)
_MUSIC_LAG_S = 0.1  # any loud frame's spectrum is compared with the frames this far before and after
_BAND_HZ = (300.0, 3400.0)  # the telephone band: levels ignore rumble, hum's fundamental and hiss above it
# A frame loud only over the whole spectrum (a low voice's nasal or /u/) counts if its band level rises this
# far above the band's noise floor and lies at most _MAX_BAND_DEFICIT_DB below its whole level (rumble: ~40 dB).
_BAND_MARGIN_DB = 3.0
_MAX_BAND_DEFICIT_DB = 20.0
_VOICE_RATE = 8000  # WebRTC's VAD models 8 kHz audio (it downsamples 16-48 kHz itself)
_VOICE_FRAME = 240  # samples of one WebRTC decision: 30 ms at 8 kHz (it takes 10, 20 or 30 ms)
_BLOCK_FRAMES = 1024  # VAD frames per read (10 s at 10 ms): bounds memory (~10 MB of temporaries) at any length


def speech_spans(waveform: NDArray[np.floating], sample_rate: int, config: ScoreConfig) -> list[Span]:
    """Find the stretches of speech in one mono channel.

    Args:
        waveform: mono samples, shape ``(n_samples,)``, floating point in [-1, 1]
            (levels are dBFS, so integer PCM must be scaled first).
        sample_rate: samples per second, > 0 (8000 for telephone audio).
        config: the ``vad_*``, ``min_speech_s`` and ``min_gap_s`` settings.

    Returns:
        ``(start_s, end_s)`` spans in seconds, sorted, non-overlapping, each at least
        ``config.min_speech_s`` long and within ``[0, n_samples / sample_rate]``.

    Raises:
        AudioError: if the waveform is not 1-D floating point or holds NaN/inf.
        ConfigError: if ``sample_rate`` is not positive or a VAD frame is shorter
            than 4 samples at this rate.

    >>> sr = 8000
    >>> t = np.arange(3 * sr) / sr
    >>> x = np.where((t >= 1.0) & (t < 2.0), 0.1 * np.random.default_rng(0).standard_normal(t.size), 0.0)
    >>> [(round(a, 1), round(b, 1)) for a, b in speech_spans(x.astype(np.float32), sr, ScoreConfig())]
    [(1.0, 2.0)]
    """
    samples = _checked_waveform(waveform)
    return streamed_speech_spans(lambda start, stop: samples[start:stop], samples.size, sample_rate, config)


def streamed_speech_spans(read: SampleReader, n_samples: int, sample_rate: int, config: ScoreConfig) -> list[Span]:
    """:func:`speech_spans` of a channel read block by block: the same spans, in bounded memory.

    The channel is read twice, in blocks of ``_BLOCK_FRAMES`` VAD frames: once for frame
    levels (the noise floor is a percentile over the whole channel), then around the loud
    frames for the tone test. Besides one block of samples, memory holds about 40 bytes per
    VAD frame (4 KB per second of audio at the default 10 ms hop), whatever the sample rate.

    Args:
        read: ``read(start, stop)`` returns samples ``[start, stop)`` of the channel, 1-D floating
            point in [-1, 1]; it is only called with ``0 <= start < stop <= n_samples``.
        n_samples: the channel's length in samples, >= 0.
        sample_rate: samples per second, > 0.
        config: the ``vad_*``, ``min_speech_s`` and ``min_gap_s`` settings.

    Returns:
        As :func:`speech_spans`.

    Raises:
        AudioError: if a block is not 1-D floating point or holds NaN/inf.
        ConfigError: as :func:`speech_spans`.

    >>> x = np.zeros(8000, dtype=np.float32)
    >>> streamed_speech_spans(lambda start, stop: x[start:stop], x.size, 8000, ScoreConfig())
    []
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate {sample_rate} must be > 0")
    frame_length = round(config.vad_frame_s * sample_rate)
    hop_length = max(1, round(config.vad_hop_s * sample_rate))
    if frame_length < 4:
        raise ConfigError(f"vad_frame_s {config.vad_frame_s} is {frame_length} samples at {sample_rate} Hz; need >= 4")
    duration_s = n_samples / sample_rate
    if n_samples == 0:
        return []
    if n_samples < frame_length:
        short = np.pad(_checked_waveform(read(0, n_samples)), (0, frame_length - n_samples))
        read, n_samples = (lambda start, stop: short[start:stop]), frame_length
    frames = _Frames(read, frame_length, hop_length, 1 + (n_samples - frame_length) // hop_length)
    lags = _Lags(*(max(1, round(lag_s * sample_rate / hop_length)) for lag_s in (_TONE_LAG_S, _MUSIC_LAG_S)))
    active = _active_frames(frames, lags, config, sample_rate)
    spans = _runs_to_spans(active, frame_length, hop_length, sample_rate, duration_s)
    spans = _bridge_gaps(spans, config.min_gap_s)
    return [(start, end) for start, end in spans if end - start >= config.min_speech_s]


def windows(
    spans: list[Span],
    *,
    window_s: float,
    hop_s: float,
    min_window_s: float,
    duration_s: float,
) -> list[Span]:
    """Cut speech spans into scoring windows that start ``hop_s`` apart, none closer.

    Windows of ``window_s`` start every ``hop_s`` from a span's start; the last one runs on
    to the span's end instead of leaving its tail unscored or starting a near-duplicate
    window (a 3.02 s turn was two windows 0.02 s apart), so it is from ``window_s`` to
    just under ``window_s + hop_s`` long. A span shorter than ``window_s`` is one window
    of its own length, or none if it is shorter than ``min_window_s``. Every window
    starts and ends inside its span, and together they cover it.

    Args:
        spans: ``(start_s, end_s)`` speech spans in seconds, non-overlapping (as
            :func:`speech_spans` returns); parts beyond ``[0, duration_s]`` are cut off.
        window_s: window length in seconds, > 0.
        hop_s: start-to-start step in seconds, in ``(0, window_s]``.
        min_window_s: shortest window in seconds, in ``(0, window_s]``.
        duration_s: length of the recording in seconds, >= 0.

    Returns:
        ``(start_s, end_s)`` windows sorted by start; they overlap when ``hop_s < window_s``
        but never leave their span or the file.

    Raises:
        ConfigError: if the lengths break the bounds above or a span ends before it starts.

    >>> windows([(0.0, 3.02), (4.0, 11.2), (12.0, 12.5)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=13.0)
    [(0.0, 3.02), (4.0, 7.0), (5.5, 8.5), (7.0, 11.2)]
    """
    if not (window_s > 0 and 0 < hop_s <= window_s and 0 < min_window_s <= window_s and duration_s >= 0):
        raise ConfigError(
            f"need 0 < hop_s {hop_s} <= window_s {window_s}, 0 < min_window_s {min_window_s} <= window_s, "
            f"duration_s {duration_s} >= 0"
        )
    result: list[Span] = []
    for raw_start, raw_end in sorted(spans):
        if raw_end < raw_start:
            raise ConfigError(f"span ({raw_start}, {raw_end}) ends before it starts")
        start, end = max(0.0, float(raw_start)), min(float(duration_s), float(raw_end))
        length = end - start
        if length < min_window_s:
            continue
        # 1e-9: a span of exactly window_s + k * hop_s gets k + 1 windows, the last not stretched by rounding.
        n_windows = max(1, math.floor((length - window_s) / hop_s + 1e-9) + 1)
        result.extend((start + k * hop_s, start + k * hop_s + window_s) for k in range(n_windows - 1))
        result.append((start + (n_windows - 1) * hop_s, end))
    return result


def speech_windows(read: SampleReader, n_samples: int, sample_rate: int, config: ScoreConfig) -> list[Span]:
    """Find speech in one channel and cut it into scoring windows: :func:`streamed_speech_spans` then :func:`windows`.

    Args:
        read: ``read(start, stop)`` returns samples ``[start, stop)`` of the channel (as
            :func:`streamed_speech_spans` takes it).
        n_samples: the channel's length in samples, >= 0.
        sample_rate: samples per second, > 0.
        config: VAD and window settings.

    Returns:
        ``(start_s, end_s)`` windows in seconds, sorted by start, within the channel.

    Raises:
        AudioError: as :func:`streamed_speech_spans`.
        ConfigError: as :func:`streamed_speech_spans`.

    >>> x = np.zeros(8000, dtype=np.float32)
    >>> speech_windows(lambda start, stop: x[start:stop], x.size, 8000, ScoreConfig())
    []
    """
    spans = streamed_speech_spans(read, n_samples, sample_rate, config)
    return windows(
        spans,
        window_s=config.window_s,
        hop_s=config.hop_s,
        min_window_s=config.min_window_s,
        duration_s=n_samples / sample_rate,
    )


def _checked_waveform(waveform: NDArray[np.floating]) -> NDArray[np.float32]:
    samples = np.asarray(waveform)
    if samples.ndim != 1:
        raise AudioError(f"waveform has shape {samples.shape}; expected 1-D mono")
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"waveform dtype {samples.dtype} is not floating point; scale PCM to [-1, 1] first")
    if not np.all(np.isfinite(samples)):
        raise AudioError("waveform holds NaN or inf")
    return samples.astype(np.float32, copy=False)


class _Lags(NamedTuple):
    """The steadiness tests' lags, in VAD frames."""

    tone: int
    music: int


class _Frames:
    """The VAD frames of a channel, read a block at a time (frames never straddle two reads)."""

    def __init__(self, read: SampleReader, frame_length: int, hop_length: int, n_frames: int) -> None:
        self.read, self.frame_length, self.hop_length, self.n_frames = read, frame_length, hop_length, n_frames

    def samples(self, first: int, stop: int) -> NDArray[np.float32]:
        """The samples under frames ``first .. stop - 1``."""
        return _checked_waveform(self.read(first * self.hop_length, (stop - 1) * self.hop_length + self.frame_length))

    def view(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        """The frames of ``samples`` (from :meth:`samples`) as a strided view, shape ``(n, frame_length)``."""
        return np.lib.stride_tricks.sliding_window_view(samples, self.frame_length)[:: self.hop_length]

    def block(self, first: int, stop: int) -> NDArray[np.float32]:
        """Frames ``first .. stop - 1`` as a strided view, shape ``(stop - first, frame_length)``."""
        return self.view(self.samples(first, stop))


class _BandPower:
    """Hann-windowed frame power within the telephone band (``_BAND_HZ``), in dBFS."""

    def __init__(self, frame_length: int, sample_rate: int) -> None:
        self.n_fft = scipy.fft.next_fast_len(frame_length, real=True)  # 240 at 8 kHz: no zero-padded copy
        self.window = np.hanning(frame_length).astype(np.float32)
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        self.bins = slice(int(np.searchsorted(freqs, _BAND_HZ[0])), int(np.searchsorted(freqs, _BAND_HZ[1], "right")))
        # Parseval: the mean square of the band-passed frame, for a window of this energy
        self.scale = 2.0 / (self.n_fft * float(np.sum(self.window.astype(np.float64) ** 2)))

    def level_db(self, frames: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(band, full)``: each frame's level in the band and over the whole spectrum (dBFS)."""
        padding = {"n": self.n_fft} if self.n_fft != frames.shape[1] else {}  # scipy copies whenever n is given
        spectrum = scipy.fft.rfft(frames * self.window, axis=1, **padding)  # float32: 2x numpy's
        power = spectrum.real**2 + spectrum.imag**2
        band = power[:, self.bins].sum(axis=1, dtype=np.float64) * self.scale
        full = power.sum(axis=1, dtype=np.float64) * self.scale
        return 10.0 * np.log10(band + _POWER_EPS), 10.0 * np.log10(full + _POWER_EPS)


class _VoiceDetector:
    """WebRTC's voice-activity detector (a GMM over six sub-bands of 8 kHz audio) fed a channel in order.

    Any rate is first resampled to 8 kHz (soxr, streamed), the telephone band WebRTC models.
    """

    def __init__(self, sample_rate: int, mode: int) -> None:
        self.vad = webrtcvad.Vad(mode)
        self.stream = (
            None if sample_rate == _VOICE_RATE else soxr.ResampleStream(sample_rate, _VOICE_RATE, 1, quality="LQ")
        )
        self.pending = np.zeros(0, dtype=np.int16)
        self.decisions: list[bool] = []

    def feed(self, samples: NDArray[np.float32]) -> None:
        if self.stream is not None:
            samples = self.stream.resample_chunk(samples)
        self._classify(samples)

    def decisions_at(self, times_s: NDArray[np.float64]) -> NDArray[np.bool_]:
        """The decision of the frame holding each time (s); times past the last whole frame take the last one."""
        if self.stream is not None:
            self._classify(self.stream.resample_chunk(np.zeros(0, np.float32), last=True))
        if not self.decisions:
            return np.zeros(times_s.size, dtype=bool)
        index = np.minimum((times_s * _VOICE_RATE / _VOICE_FRAME).astype(np.int64), len(self.decisions) - 1)
        return np.asarray(self.decisions, dtype=bool)[index]

    def _classify(self, samples: NDArray[np.float32]) -> None:
        pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
        pcm = np.concatenate([self.pending, pcm])
        n_whole = pcm.size // _VOICE_FRAME * _VOICE_FRAME
        data, rate = pcm[:n_whole].tobytes(), _VOICE_RATE
        step = 2 * _VOICE_FRAME
        self.decisions.extend(self.vad.is_speech(data[i : i + step], rate) for i in range(0, len(data), step))
        self.pending = pcm[n_whole:]


def _active_frames(frames: _Frames, lags: _Lags, config: ScoreConfig, sample_rate: int) -> NDArray[np.bool_]:
    n_frames = frames.n_frames
    level_db, full_db = np.empty(n_frames), np.empty(n_frames)
    voice = _VoiceDetector(sample_rate, config.vad_mode) if config.vad_mode is not None else None
    band = _BandPower(frames.frame_length, sample_rate)
    for begin in range(0, n_frames, _BLOCK_FRAMES):
        stop = min(begin + _BLOCK_FRAMES, n_frames)
        samples = frames.samples(begin, stop)
        level_db[begin:stop], full_db[begin:stop] = band.level_db(frames.view(samples))
        if voice is not None:  # consecutive blocks overlap by frame_length - hop_length samples: feed each once
            voice.feed(samples if stop == n_frames else samples[: (stop - begin) * frames.hop_length])
    band_noise_db = float(np.percentile(level_db, _NOISE_PERCENTILE))
    threshold_db = max(min(band_noise_db, config.vad_noise_cap_dbfs) + config.vad_threshold_db, config.vad_floor_dbfs)
    full_noise_db = min(float(np.percentile(full_db, _NOISE_PERCENTILE)), config.vad_noise_cap_dbfs)
    full_threshold_db = max(full_noise_db + config.vad_threshold_db, config.vad_floor_dbfs)
    # Loud in the band; or loud over the whole spectrum with a fair share in the band: low voices' nasals and
    # vowels whose energy lies below 300 Hz, but not rumble or hum, which leave the band near its noise floor.
    low = (full_db > full_threshold_db) & (level_db > band_noise_db + _BAND_MARGIN_DB)
    active = (level_db > threshold_db) | (low & (level_db > full_db - _MAX_BAND_DEFICIT_DB))
    del level_db, full_db
    if voice is not None:
        centres_s = (np.arange(n_frames) * frames.hop_length + frames.frame_length / 2) / sample_rate
        active &= voice.decisions_at(centres_s)
    is_steady, is_click = np.zeros(n_frames, dtype=bool), np.zeros(n_frames, dtype=bool)
    click_length = round(_CLICK_S * sample_rate)
    for begin in range(0, n_frames, _BLOCK_FRAMES):
        stop = min(begin + _BLOCK_FRAMES, n_frames)
        loud = np.flatnonzero(active[begin:stop]) + begin
        if loud.size == 0:
            continue
        # The tests compare a frame with the frames lags.music before and after: read those too.
        first, last = max(0, begin - lags.music), min(n_frames, stop + lags.music)
        block = frames.block(first, last)
        is_click[loud] = _impulsive(block[loud - first], click_length)
        if config.vad_max_tonality < 1.0 or config.vad_max_steadiness < 1.0:
            is_steady[loud] = _steady_frames(block, loud - first, lags, config, sample_rate)
    # Majority vote over ±lags.tone/2 frames: beats and noise make single frames of a tone
    # miss the test, which bridging would then grow into a whole "speech" span.
    width = 2 * (lags.tone // 2) + 1
    rejected = (_centred_count(is_steady, width) > width / 2) | is_click
    # Frames half over a tone's onset or end are not pure, nor those beside a click; without this their
    # clicks at both ends of a short beep are bridged into one span.
    reach = 2 * math.ceil(frames.frame_length / frames.hop_length) + 1
    active &= _centred_count(rejected, reach) == 0
    return active


def _centred_count(mask: NDArray[np.bool_], width: int) -> NDArray[np.int64]:
    """How many of the width (odd) frames centred on each frame are set."""
    full = np.convolve(mask.astype(np.int64), np.ones(width, dtype=np.int64))
    return full[width // 2 : width // 2 + mask.size]


def _steady_frames(
    frames: NDArray[np.float32], index: NDArray[np.intp], lags: _Lags, config: ScoreConfig, sample_rate: int
) -> NDArray[np.bool_]:
    """Which frames[index] are steady sounds: near-pure spectra lags.tone on, or any spectrum lags.music on."""
    frame_length = frames.shape[1]
    n_fft = scipy.fft.next_fast_len(frame_length, real=True)
    # A Hann main lobe is ±2 / frame_s Hz wide, i.e. ±2 * n_fft / frame_length bins.
    radius = math.ceil(_PEAK_RADIUS_LOBES * 2.0 * n_fft / frame_length)
    window = np.hanning(frame_length)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = slice(int(np.searchsorted(freqs, _BAND_HZ[0])), int(np.searchsorted(freqs, _BAND_HZ[1], "right")))
    # The spectra of the loud frames and of their neighbours at both lags, each computed once.
    n_frames = frames.shape[0]
    wanted = np.unique(
        np.concatenate([index + offset for offset in (0, -lags.tone, lags.tone, -lags.music, lags.music)])
    )
    wanted = wanted[(wanted >= 0) & (wanted < n_frames)]
    spectra = _magnitude(frames[wanted], n_fft, window, band)
    row_of = np.full(n_frames, -1)
    row_of[wanted] = np.arange(wanted.size)
    magnitude = spectra[row_of[index]]

    def similar(rows: NDArray[np.intp], lag: int, threshold: float) -> NDArray[np.bool_]:
        steady = np.zeros(rows.size, dtype=bool)
        for neighbour in (index[rows] - lag, index[rows] + lag):
            inside = (neighbour >= 0) & (neighbour < n_frames)
            other = spectra[row_of[np.clip(neighbour, 0, n_frames - 1)]]
            steady |= inside & (np.einsum("ij,ij->i", magnitude[rows], other) > threshold)
        return steady

    power = magnitude**2
    is_steady = np.zeros(index.size, dtype=bool)
    if config.vad_max_tonality < 1.0:
        tonal = np.flatnonzero(_tonality(power, radius) > config.vad_max_tonality)
        is_steady[tonal] = similar(tonal, lags.tone, _TONE_SIMILARITY)
    if config.vad_max_steadiness < 1.0:
        rest = np.flatnonzero(~is_steady)
        is_steady[rest] = similar(rest, lags.music, config.vad_max_steadiness)
    return is_steady


def _impulsive(frames: NDArray[np.float32], sub_length: int) -> NDArray[np.bool_]:
    """Which frames hold more than ``_CLICK_SHARE`` of their energy in one sub-block of ``sub_length`` samples."""
    n_sub = frames.shape[1] // max(sub_length, 1)
    if n_sub < 4:
        return np.zeros(frames.shape[0], dtype=bool)
    energy = (
        np.square(frames[:, : n_sub * sub_length], dtype=np.float64).reshape(frames.shape[0], n_sub, -1).sum(axis=2)
    )
    share: NDArray[np.bool_] = energy.max(axis=1) > _CLICK_SHARE * (energy.sum(axis=1) + _POWER_EPS)
    return share


def _magnitude(
    frames: NDArray[np.float32], n_fft: int, window: NDArray[np.float64], band: slice
) -> NDArray[np.float64]:
    """Hann-windowed magnitude spectra within ``band`` (bins), scaled to unit L2 norm, one row per frame."""
    # Only the telephone band: the same test at any rate (above it, 16-48 kHz speech looks steadier)
    # n only when padding: scipy copies the input to "fix" its shape whenever n is given
    padding = {"n": n_fft} if n_fft != frames.shape[1] else {}
    spectrum = scipy.fft.rfft(frames * window.astype(np.float32), axis=1, **padding)[:, band]
    magnitude = np.abs(spectrum).astype(np.float64)
    # Scaling by the norm leaves the tonality ratio unchanged and makes the dot product a cosine.
    unit: NDArray[np.float64] = magnitude / (np.linalg.norm(magnitude, axis=1, keepdims=True) + _POWER_EPS)
    return unit


def _tonality(power: NDArray[np.float64], radius: int) -> NDArray[np.float64]:
    """Share of each row's power within radius bins of its two strongest peaks, in [0, 1]."""
    bins = np.arange(power.shape[1])
    near = np.zeros(power.shape, dtype=bool)
    remaining = power.copy()
    for _ in range(2):
        peak = np.argmax(remaining, axis=1)[:, None]
        near |= (bins >= peak - radius) & (bins <= peak + radius)
        np.copyto(remaining, 0.0, where=near)
    captured = (power * near).sum(axis=1)
    share: NDArray[np.float64] = captured / (power.sum(axis=1) + _POWER_EPS)
    return share


def _runs_to_spans(
    active: NDArray[np.bool_], frame_length: int, hop_length: int, sample_rate: int, duration_s: float
) -> list[Span]:
    # A run of frames covers the hop_length around each frame centre; runs touching
    # the first or last frame extend to the file's edge.
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    half_hop = hop_length / 2
    spans: list[Span] = []
    for first, last in zip(starts.tolist(), stops.tolist(), strict=True):
        start = 0.0 if first == 0 else (first * hop_length + frame_length / 2 - half_hop) / sample_rate
        end = duration_s if last == active.size - 1 else (last * hop_length + frame_length / 2 + half_hop) / sample_rate
        spans.append((max(0.0, start), min(duration_s, end)))
    return spans


def _bridge_gaps(spans: list[Span], min_gap_s: float) -> list[Span]:
    merged: list[Span] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < min_gap_s:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
