"""Which channel of a multi-channel call carries each stretch of speech, and which channels are copies (pure, no IO).

On a stereo call recording each party has a channel, but the other party leaks into it
(line echo, a handset's sidetone, a shared room) some 20-30 dB down and a few ms late.
An energy voice detector run on each channel alone finds that leak and counts it as the
channel's speech: speech time doubles and one party's turns are scored on the other's
channel. And some recorders copy one mono mix onto both channels. Here:

1. :func:`band_levels`: each channel's level in the speech band (300-3400 Hz, so DC, hum
   and rumble stay 16-30 dB below their own level) in frames of ``vad_frame_s`` every
   ``vad_hop_s``.
2. :func:`attributed_spans`: a channel's speech spans lose the frames that are leaks: where
   another channel, in speech there, is at least ``crosstalk_db`` louder in the speech band,
   both measured as mean power over ``_SMOOTH_S`` (half a second: syllables, the dips of two
   parties talking at once and echo delays average out; compared frame by frame, each
   syllable end, where the other channel still carries its echo, would go to the other
   channel). Pieces shorter than ``min_speech_s`` are dropped. The 10 dB default sits
   between leaks (20 dB or more down) and two parties talking at once (a few dB apart);
   on ``benchmarks/calls.py``'s calls 6 dB took up to 44% of a channel's speech where turns
   overlap and 15 dB counted a leak 10 dB down as speech. What it cannot do: a party talking more than
   ``crosstalk_db`` below the other at the same moment loses that stretch, and a leak less
   than ``crosstalk_db`` below its source still counts as speech.
3. :func:`duplicate_channels`: two channels whose speech-band loudness rises and falls
   together where either speaks (:func:`similar_levels`) and whose samples correlate above
   ``DUPLICATE_CORRELATION`` at a lag of at most ``_MAX_LAG_S`` over an excerpt
   (:func:`max_correlation`, gain and DC offset do not matter) are one signal: the later
   one is a copy of the earlier and is scored once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from ser_batch._typing import SampleReader, Span
from ser_batch.config import ScoreConfig
from ser_batch.errors import ConfigError

SPEECH_BAND_HZ = (300.0, 3400.0)
"""The telephone speech band whose level is compared between channels."""

DUPLICATE_CORRELATION = 0.99
"""Pearson correlation of two channels' samples (best small lag) above which one is a copy of the other."""

EXCERPT_S = 30.0
"""Seconds of two channels, from the first speech on either, that :func:`duplicate_channels` correlates."""

_SMOOTH_S = 0.5  # levels are compared as mean power over this long: syllables, dips and echo delays average out
_MAX_LAG_S = 0.01  # copies of one signal may be offset by up to 10 ms (resampling, recorder buffers)
_SIMILAR_CORRELATION = 0.9  # copies' frame amplitudes correlate near 1; two parties taking turns near or below 0
_MIN_SPEECH_FRAMES = 100  # at least 1 s of speech at the default 10 ms hop before two channels can be copies
_EMPHASIS = 0.95  # first-difference coefficient: -24 dB at 60 Hz, -2.5 dB at 1 kHz (at 8 kHz), undone in the band
_POWER_EPS = 1e-12  # -120 dB: keeps log10 finite on digital silence
_BLOCK_HOPS = 8192  # hops transformed per read (82 s at the default 10 ms): bounds memory (~10 MB of temporaries)


def frame_geometry(sample_rate: int, config: ScoreConfig) -> tuple[int, int]:
    """``(hop_length, hops_per_frame)`` of the frames levels are compared in at this rate.

    A frame is ``hops_per_frame`` consecutive hops of ``vad_hop_s`` (``vad_frame_s`` rounded
    to whole hops): the voice detector's frames, built from hop-long pieces so that each
    sample is transformed once.

    Raises:
        ConfigError: if ``sample_rate`` is not positive or a hop is shorter than 4 samples.

    >>> frame_geometry(8000, ScoreConfig())
    (80, 3)
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate {sample_rate} must be > 0")
    hop_length = round(config.vad_hop_s * sample_rate)
    if hop_length < 4:
        raise ConfigError(f"vad_hop_s {config.vad_hop_s} is {hop_length} samples at {sample_rate} Hz; need >= 4")
    return hop_length, max(1, round(config.vad_frame_s / config.vad_hop_s))


def frame_centres(n_frames: int, sample_rate: int, config: ScoreConfig) -> NDArray[np.float64]:
    """Centre of each :func:`band_levels` frame in seconds, shape ``(n_frames,)``.

    >>> frame_centres(3, 8000, ScoreConfig())
    array([0.015, 0.025, 0.035])
    """
    hop_length, hops_per_frame = frame_geometry(sample_rate, config)
    return (np.arange(n_frames) + hops_per_frame / 2) * hop_length / sample_rate


def band_levels(read: SampleReader, n_samples: int, sample_rate: int, config: ScoreConfig) -> NDArray[np.float32]:
    """Level of one channel in the speech band, frame by frame, read block by block.

    Each hop of samples is transformed once (a rectangular window, 100 Hz bins), after a first
    difference that keeps mains hum, rumble and DC from leaking into the band; frame ``i`` is the
    ``hops_per_frame`` hops from sample ``i * hop_length`` (:func:`frame_geometry`). A channel
    shorter than one frame is zero-padded to one. Costs about 0.03 ms per second of 8 kHz audio.

    Args:
        read: ``read(start, stop)`` returns samples ``[start, stop)`` of the channel, 1-D
            floating point in [-1, 1]; called with ``0 <= start < stop <= n_samples``.
        n_samples: the channel's length in samples, >= 0.
        sample_rate: samples per second, > 0.
        config: ``vad_frame_s`` and ``vad_hop_s``.

    Returns:
        Mean power of each frame's ``SPEECH_BAND_HZ`` content in dB re full scale (a full-scale
        1 kHz sine is -3 dB), float32, shape ``(n_frames,)``: ``0`` for an empty channel, else
        ``max(1, n_samples // hop_length - hops_per_frame + 1)``.

    Raises:
        ConfigError: as :func:`frame_geometry`.

    >>> t = np.arange(8000) / 8000
    >>> sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    >>> levels = band_levels(lambda a, b: sine[a:b], sine.size, 8000, ScoreConfig())
    >>> levels.shape, round(float(levels[50]), 1)
    ((98,), -3.0)
    """
    hop_length, hops_per_frame = frame_geometry(sample_rate, config)
    if n_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    n_hops = max(n_samples // hop_length, hops_per_frame)
    frequencies = np.fft.rfftfreq(hop_length, 1.0 / sample_rate)
    low, high = (
        np.searchsorted(frequencies, SPEECH_BAND_HZ[0]),
        np.searchsorted(frequencies, SPEECH_BAND_HZ[1], "right"),
    )
    # A first difference takes DC, hum and rumble down by 20-40 dB before the rectangular window
    # spreads them over every bin; dividing by its gain in the band undoes it there. One side of
    # the spectrum holds half of each bin's power (DC and Nyquist are outside the band).
    gain = np.abs(1.0 - _EMPHASIS * np.exp(-2j * np.pi * frequencies[low:high] / sample_rate)) ** 2
    weights = (2.0 / hop_length / gain).astype(np.float32)
    energy = np.zeros(n_hops + 1)  # cumulative band energy, Parseval-scaled to sums of squared samples
    previous = np.float32(0.0)  # the sample before the block, for its first difference
    for first in range(0, n_hops, _BLOCK_HOPS):
        stop = min(first + _BLOCK_HOPS, n_hops)
        samples = np.asarray(read(first * hop_length, min(n_samples, stop * hop_length)), dtype=np.float32)
        differenced = np.zeros((stop - first) * hop_length, np.float32)  # zero-padded past the channel's end
        differenced[0] = samples[0] - _EMPHASIS * previous
        np.subtract(samples[1:], np.float32(_EMPHASIS) * samples[:-1], out=differenced[1 : samples.size])
        previous = samples[-1]
        spectrum = scipy.fft.rfft(differenced.reshape(stop - first, hop_length), axis=1)[:, low:high]
        energy[first + 1 : stop + 1] = (spectrum.real**2 + spectrum.imag**2) @ weights
    np.cumsum(energy, out=energy)
    power = (energy[hops_per_frame:] - energy[:-hops_per_frame]) / (hops_per_frame * hop_length)
    levels: NDArray[np.float32] = (10.0 * np.log10(np.maximum(power, 0.0) + _POWER_EPS)).astype(np.float32)
    return levels


def attributed_spans(
    spans: Sequence[Sequence[Span]],
    levels: Sequence[NDArray[np.floating]],
    sample_rate: int,
    config: ScoreConfig,
) -> list[list[Span]]:
    """Each channel's speech spans without the stretches another channel carries (rule 2 of the module docstring).

    Args:
        spans: per channel, its ``(start_s, end_s)`` speech spans, sorted and non-overlapping
            (``scoring.segments.speech_spans``).
        levels: per channel, its :func:`band_levels` at ``sample_rate`` and ``config``;
            channels may differ in length by a few frames.
        sample_rate: the channels' rate in Hz, > 0.
        config: frame settings, ``crosstalk_db`` and ``min_speech_s``.

    Returns:
        Per channel, the spans that remain, sorted, each at least ``min_speech_s`` long
        (a single channel's spans are returned as they are).

    Raises:
        ConfigError: if ``spans`` and ``levels`` differ in length, or as :func:`frame_geometry`.

    >>> loud, leak = np.full(300, -20.0), np.full(300, -40.0)
    >>> attributed_spans([[(0.5, 2.5)], [(0.5, 2.5)]], [loud, leak], 8000, ScoreConfig())
    [[(0.5, 2.5)], []]
    """
    if len(spans) != len(levels):
        raise ConfigError(f"{len(spans)} channels of spans but {len(levels)} of levels")
    hop_length, _ = frame_geometry(sample_rate, config)
    if len(spans) < 2:
        return [list(channel) for channel in spans]
    n_frames = max(level.size for level in levels)
    centre_s = frame_centres(n_frames, sample_rate, config)
    speaking = [_frames_in(channel, centre_s) for channel in spans]
    padded = [
        np.pad(np.asarray(level, np.float64), (0, n_frames - level.size), constant_values=-np.inf) for level in levels
    ]
    # Syllable-scale power: a frame-by-frame comparison would hand each syllable end (where the
    # other channel still carries its echo) and each dip of a party talking over the other to the
    # other channel, and chop their speech into pieces too short to keep.
    width = max(1, round(_SMOOTH_S * sample_rate / hop_length))
    power = [_moving_mean(10.0 ** (level / 10.0), width) for level in padded]
    said = [np.where(active, level, 0.0) for active, level in zip(speaking, power, strict=True)]
    margin = 10.0 ** (config.crosstalk_db / 10.0)
    half_hop_s = hop_length / 2 / sample_rate
    result = []
    for channel, own in enumerate(power):
        others = np.max([level for index, level in enumerate(said) if index != channel], axis=0)
        carried_elsewhere = speaking[channel] & (others >= margin * own)
        taken = [
            (centre_s[first] - half_hop_s, centre_s[last] + half_hop_s) for first, last in _runs(carried_elsewhere)
        ]
        kept = _subtract(list(spans[channel]), taken)
        result.append([(start, end) for start, end in kept if end - start >= config.min_speech_s])
    return result


def _moving_mean(values: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Mean over the width values centred on each (fewer at the edges)."""
    # "full" and a slice, not "same": numpy's "same" returns the longer input's length.
    window, half = np.ones(width), width // 2
    total = np.convolve(values, window)[half : half + values.size]
    count = np.convolve(np.ones(values.size), window)[half : half + values.size]
    mean: NDArray[np.float64] = total / count
    return mean


def similar_levels(levels_a: NDArray[np.floating], levels_b: NDArray[np.floating], speaking: NDArray[np.bool_]) -> bool:
    """Whether two channels' speech-band loudness rises and falls together wherever either speaks.

    A cheap test run before :func:`max_correlation`: two parties on their own channels take
    turns, so one channel is loud where the other is quiet (leaks included), and their
    frame amplitudes correlate weakly or negatively; copies of one signal correlate near 1.

    Args:
        levels_a: :func:`band_levels` of one channel, shape ``(n_frames,)``.
        levels_b: those of the other; the shorter of the two is compared over its length.
        speaking: frames where either channel is in speech, shape ``(n_frames,)`` or longer.

    Returns:
        True when at least ``_MIN_SPEECH_FRAMES`` frames speak and the Pearson correlation of
        the two channels' frame amplitudes (``10 ** (level / 20)``) over them is at least
        ``_SIMILAR_CORRELATION``.

    >>> a = np.linspace(-60.0, -20.0, 200)
    >>> similar_levels(a, a - 6.0, np.ones(200, bool)), similar_levels(a, a[::-1], np.ones(200, bool))
    (True, False)
    """
    n = min(levels_a.size, levels_b.size)
    active = np.asarray(speaking[:n], dtype=bool)
    if np.count_nonzero(active) < _MIN_SPEECH_FRAMES:
        return False
    amplitude_a = 10.0 ** (np.asarray(levels_a[:n], np.float64)[active] / 20.0)
    amplitude_b = 10.0 ** (np.asarray(levels_b[:n], np.float64)[active] / 20.0)
    if np.ptp(amplitude_a) == 0.0 or np.ptp(amplitude_b) == 0.0:
        return False
    return bool(np.corrcoef(amplitude_a, amplitude_b)[0, 1] >= _SIMILAR_CORRELATION)


def max_correlation(a: NDArray[np.floating], b: NDArray[np.floating], max_lag: int) -> float:
    """Largest Pearson correlation of two equally long excerpts over lags ``-max_lag .. max_lag`` samples.

    Gains do not matter (the correlation is level-matched by construction); each excerpt's
    mean is removed first, so a DC offset on one channel does not either.

    Args:
        a: samples of one channel, shape ``(n,)``.
        b: samples of the other, shape ``(n,)``.
        max_lag: largest offset tried, in samples, >= 0.

    Returns:
        A value in [-1, 1]; 0.0 when either excerpt is constant.

    Raises:
        ConfigError: if the shapes differ or ``max_lag`` is negative.

    >>> x = np.sin(np.arange(4000) * 0.3) * np.hanning(4000)
    >>> round(max_correlation(x, 0.1 * np.roll(x, 7), 10), 3)
    1.0
    """
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 1 or max_lag < 0:
        raise ConfigError(f"need two 1-D excerpts of one shape ({x.shape}, {y.shape}) and max_lag {max_lag} >= 0")
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if norm == 0.0:
        return 0.0
    n_fft = scipy.fft.next_fast_len(x.size + max_lag)
    cross = scipy.fft.irfft(scipy.fft.rfft(x, n_fft) * np.conj(scipy.fft.rfft(y, n_fft)), n_fft)
    lags = np.concatenate((cross[: max_lag + 1], cross[n_fft - max_lag :]))  # lags 0..max_lag, then -max_lag..-1
    return float(np.max(lags) / norm)


def duplicate_channels(
    spans: Sequence[Sequence[Span]],
    levels: Sequence[NDArray[np.floating]],
    read_excerpt: Callable[[int, int, int], NDArray[np.floating]],
    n_samples: Sequence[int],
    sample_rate: int,
    config: ScoreConfig,
) -> dict[int, int]:
    """Which channels are copies of an earlier one (rule 3 of the module docstring).

    Args:
        spans: per channel, its speech spans (before :func:`attributed_spans`).
        levels: per channel, its :func:`band_levels`.
        read_excerpt: ``read_excerpt(channel, start, stop)`` returns samples ``[start, stop)`` of
            a channel; called only for pairs that pass :func:`similar_levels`, with
            ``0 <= start < stop``, ``stop - start <= EXCERPT_S * sample_rate`` and ``stop`` within
            both channels.
        n_samples: per channel, its length in samples.
        sample_rate: the channels' rate in Hz, > 0.
        config: frame settings.

    Returns:
        ``{copy: original}``: each channel that copies a lower-numbered channel which is itself
        no copy, mapped to that channel; empty when every channel is its own.

    Raises:
        ConfigError: as :func:`frame_geometry`.
    """
    n_frames = max((level.size for level in levels), default=0)
    centre_s = frame_centres(n_frames, sample_rate, config)
    speaking = [_frames_in(channel, centre_s) for channel in spans]
    copies: dict[int, int] = {}
    for channel in range(1, len(levels)):
        for original in range(channel):
            if original in copies or not similar_levels(
                levels[original], levels[channel], speaking[original] | speaking[channel]
            ):
                continue
            first_s = min(start for start, _ in [*spans[original][:1], *spans[channel][:1]])
            n_common, n_excerpt = min(n_samples[original], n_samples[channel]), round(EXCERPT_S * sample_rate)
            start = min(round(first_s * sample_rate), max(0, n_common - n_excerpt))
            stop = min(n_common, start + n_excerpt)
            if stop <= start:
                continue
            excerpt_a = np.asarray(read_excerpt(original, start, stop))
            excerpt_b = np.asarray(read_excerpt(channel, start, stop))
            lag = round(_MAX_LAG_S * sample_rate)
            if max_correlation(excerpt_a, excerpt_b, lag) > DUPLICATE_CORRELATION:
                copies[channel] = original
                break
    return copies


def _frames_in(spans: Sequence[Span], centre_s: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Frames whose centre lies in one of the sorted spans."""
    if not spans:
        return np.zeros(centre_s.size, dtype=bool)
    starts = np.array([start for start, _ in spans])
    ends = np.array([end for _, end in spans])
    index = np.searchsorted(starts, centre_s, side="right") - 1
    inside: NDArray[np.bool_] = (index >= 0) & (centre_s < ends[np.clip(index, 0, None)])
    return inside


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``(first, last)`` frame of each run of set values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist(), strict=True))


def _subtract(spans: list[Span], taken: list[Span]) -> list[Span]:
    """Sorted spans minus sorted, non-overlapping intervals."""
    result: list[Span] = []
    index = 0
    for start, end in spans:
        while index < len(taken) and taken[index][1] <= start:
            index += 1
        cursor, probe = start, index
        while probe < len(taken) and taken[probe][0] < end:
            if taken[probe][0] > cursor:
                result.append((cursor, taken[probe][0]))
            cursor = max(cursor, taken[probe][1])
            probe += 1
        if cursor < end:
            result.append((cursor, end))
    return result
