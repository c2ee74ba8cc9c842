"""How a call went, per channel: talk time, turns, silence, interruptions, overlap, latency, loudness, pace (pure, no IO).

Everything is computed from each channel's attributed speech spans (``scoring.crosstalk.attributed_spans``:
the speech a channel carries itself, not the other party's leak) and, for loudness and pace, its samples
and speech-band levels. Definitions (seconds unless said):

- ``talk_s``: the length of the channel's speech spans; ``talk_share`` is ``talk_s / duration_s``
  (of the whole call; the channels' shares sum to more than 1 where they overlap).
- A **turn** is the channel's speech with pauses shorter than ``TURN_GAP_S`` bridged, whether or not
  the other party spoke in the pause: ``n_turns``, ``mean_turn_s``, ``longest_turn_s``.
- ``silence_s``: time in the call where no channel speaks, the lead-in and tail included (the same
  on every channel's row); ``longest_silence_s``: the longest pause between two stretches of speech
  on any channel (lead-in and tail excluded: ringing and hang-up are not dead air).
- An **interruption** is a turn that starts while another channel is mid-turn (that turn started
  before and ends after it) and lasts more than ``INTERRUPTION_MIN_S``: a short backchannel
  ("mm", "yes") is not one. ``n_interruptions_made`` counts this channel's such turns;
  ``n_interruptions_suffered`` counts other channels' such turns that start inside this channel's turns.
- ``overlap_s``: time this channel speaks while another also does.
- ``response_latency_s``: the median gap between the end of another channel's turn and the start of
  this channel's next turn, over this channel's turns that take the floor from another channel (the
  other spoke last and has stopped); null when no turn does. Turns that start in the other's speech
  are interruptions or overlaps, not latencies.
- ``loudness_lufs``: integrated loudness of the channel's speech samples, concatenated, after
  ITU-R BS.1770-4 (K-weighting through ``pyloudnorm``'s filters, 400 ms blocks every 100 ms, the
  -70 LUFS absolute and -10 LU relative gates), in LUFS; null below ``MIN_LOUDNESS_S`` of speech (one
  gating block).
  The recording's own gain counts: it measures what was recorded, not how loud the person was.
- ``speech_rate``: syllable nuclei per second of speech, counted as peaks of the speech-band
  (300-3400 Hz) level of ``scoring.crosstalk.band_levels`` smoothed over ``_SMOOTH_S``, inside speech,
  at least ``PEAK_PROMINENCE_DB`` above the dips around them and at least ``_MIN_PEAK_DISTANCE_S``
  apart (after de Jong & Wempe 2009, without their voicing test). It is a pace proxy (articulation
  rate, pauses excluded), not a count of syllables or words: syllables that do not dip between
  them merge, bursts of noise, laughter and clicks count, and it was not checked against
  transcripts. Compare it across calls of one line and language, not as an absolute. Null below
  ``MIN_RATE_S`` of speech.

A channel alone (a mono recording, or a stereo one whose other channel copies it,
``scoring.crosstalk.duplicate_channels``) carries every party: its turns are stretches of the mix, and
the interruption, overlap and latency columns are null (nobody to interrupt: the figures need one party per
channel). A stereo call with one silent channel has 0 interruptions and overlap and null latency.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.signal
from numpy.typing import NDArray
from pyloudnorm import IIRfilter

from ser_batch._typing import SampleReader, Span
from ser_batch.config import ScoreConfig
from ser_batch.scoring.calls import span_union
from ser_batch.scoring.crosstalk import frame_centres, frame_geometry

TURN_GAP_S = 1.0
"""Pauses shorter than this inside one channel's speech do not end its turn."""

INTERRUPTION_MIN_S = 1.0
"""A turn started during another channel's turn interrupts it only if it lasts longer than this."""

MIN_LOUDNESS_S = 0.4
"""Speech needed for ``loudness_lufs``: one BS.1770 gating block."""

MIN_RATE_S = 1.0
"""Speech needed for ``speech_rate``."""

PEAK_PROMINENCE_DB = 3.0
"""A syllable nucleus stands at least this far above the level dips on either side of it."""

CONVERSATION_COLUMNS: tuple[str, ...] = (
    "talk_s",
    "talk_share",
    "n_turns",
    "mean_turn_s",
    "longest_turn_s",
    "silence_s",
    "longest_silence_s",
    "n_interruptions_made",
    "n_interruptions_suffered",
    "overlap_s",
    "response_latency_s",
)
"""The columns :func:`conversation_columns` returns, in calls-table order."""

_SMOOTH_S = 0.05  # the level is averaged over 50 ms: a 30 ms frame's pitch ripple is not a syllable
_MIN_PEAK_DISTANCE_S = 0.1  # at most 10 nuclei a second, faster than anyone speaks
_BLOCK_S, _BLOCK_STEP_S = 0.4, 0.1  # BS.1770-4 gating blocks: 400 ms, 75 % overlap
_ABSOLUTE_GATE_LUFS, _RELATIVE_GATE_LU = -70.0, -10.0
_CHUNK_S = 10.0  # speech filtered at a time for loudness: bounds memory at any length
_LOUDNESS_OFFSET = -0.691  # BS.1770-4 eq. 2: a 1 kHz sine at 0 dBFS peak reads -3.01 LUFS


def speech_turns(spans: Sequence[Span], *, max_gap_s: float = TURN_GAP_S) -> list[Span]:
    """A channel's turns: its speech spans with pauses shorter than ``max_gap_s`` bridged.

    Args:
        spans: ``(start_s, end_s)`` speech spans in seconds, any order, possibly overlapping.
        max_gap_s: shorter pauses are bridged, >= 0.

    Returns:
        The turns, sorted, separated by at least ``max_gap_s``.

    >>> speech_turns([(0.0, 1.0), (1.5, 3.0), (5.0, 6.0)])
    [(0.0, 3.0), (5.0, 6.0)]
    """
    turns: list[Span] = []
    for start, end in sorted(spans):
        if turns and start - turns[-1][1] < max_gap_s:
            turns[-1] = (turns[-1][0], max(end, turns[-1][1]))
        else:
            turns.append((float(start), float(end)))
    return turns


def conversation_columns(channels: Sequence[Sequence[Span]], duration_s: float) -> list[dict[str, Any]]:
    """Turn-taking figures of each channel of one call (definitions in the module docstring).

    Args:
        channels: per channel of its own (copies left out), its attributed speech spans
            ``(start_s, end_s)`` in seconds; parts outside ``[0, duration_s]`` are cut off.
        duration_s: the call's length in seconds, >= 0.

    Returns:
        One dict per channel, in order, with the keys ``CONVERSATION_COLUMNS``: seconds as
        float, counts as int; turn figures None without turns, and the interruption, overlap
        and latency figures None for a lone channel.

    >>> agent, customer = [(0.0, 4.0), (8.0, 10.0)], [(3.0, 6.0)]
    >>> a, c = conversation_columns([agent, customer], 12.0)
    >>> a["n_interruptions_suffered"], c["n_interruptions_made"], a["overlap_s"], a["response_latency_s"]
    (1, 1, 1.0, 2.0)
    >>> a["silence_s"], a["longest_silence_s"], round(a["talk_share"], 3)
    (4.0, 2.0, 0.5)
    """
    duration_s = max(0.0, float(duration_s))
    speech = [
        span_union([(max(0.0, s), min(duration_s, e)) for s, e in spans if min(duration_s, e) > max(0.0, s)])
        for spans in channels
    ]
    turns = [speech_turns(spans) for spans in speech]
    everyone = span_union([span for spans in speech for span in spans])
    pauses = [b[0] - a[1] for a, b in zip(everyone, everyone[1:], strict=False)]
    call = {
        "silence_s": duration_s - _length(everyone),
        "longest_silence_s": max(pauses) if pauses else None,
    }
    alone = len(channels) < 2
    made, suffered = _interruptions(turns)
    rows = []
    for channel, (spans, own_turns) in enumerate(zip(speech, turns, strict=True)):
        talk_s = _length(spans)
        lengths = [end - start for start, end in own_turns]
        others = span_union([span for index, other in enumerate(speech) if index != channel for span in other])
        latencies = _latencies(own_turns, [other for index, other in enumerate(turns) if index != channel])
        rows.append(
            {
                "talk_s": talk_s,
                "talk_share": talk_s / duration_s if duration_s > 0 else None,
                "n_turns": len(own_turns),
                "mean_turn_s": float(np.mean(lengths)) if lengths else None,
                "longest_turn_s": max(lengths) if lengths else None,
                **call,
                "n_interruptions_made": None if alone else made[channel],
                "n_interruptions_suffered": None if alone else suffered[channel],
                "overlap_s": None if alone else _length(_intersection(spans, others)),
                "response_latency_s": None if alone or not latencies else float(np.median(latencies)),
            }
        )
    return rows


def _interruptions(turns: Sequence[Sequence[Span]]) -> tuple[list[int], list[int]]:
    """Per channel, interruptions made and suffered (module docstring)."""
    made, suffered = [0] * len(turns), [0] * len(turns)
    for channel, own in enumerate(turns):
        for start, end in own:
            if end - start <= INTERRUPTION_MIN_S:
                continue
            victims = [other for other, theirs in enumerate(turns) if other != channel and _mid_turn(theirs, start)]
            made[channel] += bool(victims)
            for other in victims:
                suffered[other] += 1
    return made, suffered


def _latencies(own: Sequence[Span], others: Sequence[Sequence[Span]]) -> list[float]:
    """Gaps before each own turn that takes the floor from another channel (module docstring)."""
    gaps = []
    last_own_end = -np.inf
    ends = [[end for _, end in theirs] for theirs in others]
    for start, end in own:
        if not any(_mid_turn(theirs, start) for theirs in others):
            # Each channel's turns are sorted and disjoint: its last turn ending by `start` is found by bisection.
            ended = [their_ends[i - 1] for their_ends in ends if (i := bisect.bisect_right(their_ends, start))]
            if ended and max(ended) > last_own_end:
                gaps.append(start - max(ended))
        last_own_end = end
    return gaps


def _mid_turn(turns: Sequence[Span], t: float) -> bool:
    """Whether ``t`` falls strictly inside one of the sorted, disjoint ``turns``."""
    index = bisect.bisect_left(turns, (t, -np.inf)) - 1  # the last turn starting before t
    return index >= 0 and turns[index][1] > t


def _intersection(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Overlap of two sorted, disjoint span lists."""
    result, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if end > start:
            result.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def _length(spans: Sequence[Span]) -> float:
    return float(sum(end - start for start, end in spans))


def speech_loudness(read: SampleReader, spans: Sequence[Span], sample_rate: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770-4) of a channel's speech samples, concatenated.

    The K-weighting filters are ``pyloudnorm``'s (``IIRfilter``, the constants of its
    ``Meter``), designed at ``sample_rate`` and run (as second-order sections) over the speech
    ``_CHUNK_S`` at a time with their state carried, so memory does not grow with the speech's length; the gating is
    BS.1770-4's on 400 ms blocks every 100 ms, vectorised (``pyloudnorm.Meter.integrated_loudness``
    loops over blocks in Python: 0.6 ms per second of 8 kHz audio, a third of the scorer's budget).
    At rates that are a multiple of 10 Hz it equals ``Meter(sample_rate).integrated_loudness`` of
    the concatenated speech.

    Args:
        read: ``read(start, stop)`` returns samples ``[start, stop)`` of the channel, 1-D float in [-1, 1].
        spans: the channel's speech spans in seconds, sorted, disjoint, within the channel.
        sample_rate: samples per second, > 0.

    Returns:
        Loudness in LUFS, None below ``MIN_LOUDNESS_S`` of speech or when every block is
        below the absolute gate (digital silence).

    >>> t = np.arange(8000) / 8000
    >>> tone = 0.1 * np.sin(2 * np.pi * 1000 * t)  # -23 LUFS by the standard's calibration
    >>> round(speech_loudness(lambda a, b: tone[a:b], [(0.0, 1.0)], 8000), 1)
    -23.2
    """
    step = max(1, round(_BLOCK_STEP_S * sample_rate))
    steps_per_block = round(_BLOCK_S / _BLOCK_STEP_S)
    stages = (
        IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    )
    # The two biquads as second-order sections: one sosfilt pass costs half of two lfilter passes.
    sections = np.array([np.concatenate((stage.passband_gain * stage.b, stage.a)) / stage.a[0] for stage in stages])
    state = np.zeros((len(stages), 2))
    energies: list[NDArray[np.float64]] = []  # per step of 100 ms of concatenated speech
    carry = np.zeros(0)
    n_samples = 0
    chunk = max(step, round(_CHUNK_S * sample_rate) // step * step)
    for start, end in spans:
        first, stop = round(start * sample_rate), round(end * sample_rate)
        for a in range(first, stop, chunk):
            samples = np.asarray(read(a, min(stop, a + chunk)), dtype=np.float64)
            n_samples += samples.size
            samples, state = scipy.signal.sosfilt(sections, samples, zi=state)
            samples = np.concatenate((carry, samples))
            n_full = samples.size // step
            energies.append(np.sum(np.square(samples[: n_full * step]).reshape(n_full, step), axis=1))
            carry = samples[n_full * step :]
    if n_samples < round(_BLOCK_S * sample_rate):
        return None
    per_step = np.concatenate([*energies, [np.sum(carry**2)]])
    n_blocks = int(np.round((n_samples / sample_rate - _BLOCK_S) / _BLOCK_STEP_S)) + 1
    cumulative = np.concatenate(([0.0], np.cumsum(per_step)))
    first_step = np.arange(n_blocks)
    last_step = np.minimum(first_step + steps_per_block, per_step.size)
    power = (cumulative[last_step] - cumulative[first_step]) / (steps_per_block * step)
    with np.errstate(divide="ignore"):
        loudness = _LOUDNESS_OFFSET + 10.0 * np.log10(power)
    gated = power[loudness >= _ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return None
    relative = _LOUDNESS_OFFSET + 10.0 * np.log10(gated.mean()) + _RELATIVE_GATE_LU
    kept = power[(loudness > relative) & (loudness > _ABSOLUTE_GATE_LUFS)]
    return float(_LOUDNESS_OFFSET + 10.0 * np.log10(kept.mean()))


def speech_rate(
    levels: NDArray[np.floating], spans: Sequence[Span], sample_rate: int, config: ScoreConfig
) -> float | None:
    """Syllable nuclei per second of speech: peaks of the speech-band level inside speech (module docstring).

    Args:
        levels: the channel's ``scoring.crosstalk.band_levels`` at ``sample_rate`` and ``config``, in dB,
            shape ``(n_frames,)``.
        spans: the channel's speech spans in seconds, sorted and disjoint.
        sample_rate: the channel's rate in Hz, > 0.
        config: ``vad_frame_s`` and ``vad_hop_s`` (the levels' frames).

    Returns:
        Nuclei per second of speech (``1/s``), None below ``MIN_RATE_S`` of speech.

    Raises:
        ConfigError: as ``scoring.crosstalk.frame_geometry``.

    >>> from ser_batch.scoring.crosstalk import band_levels
    >>> t = np.arange(4 * 8000) / 8000
    >>> voice = (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 500 * t)
    >>> levels = band_levels(lambda a, b: voice[a:b], voice.size, 8000, ScoreConfig())
    >>> speech_rate(levels, [(0.0, 4.0)], 8000, ScoreConfig())
    4.0
    """
    talk_s = _length(spans)
    if talk_s < MIN_RATE_S or levels.size == 0:
        return None
    hop_length, _ = frame_geometry(sample_rate, config)
    frames_per_s = sample_rate / hop_length
    width = max(1, round(_SMOOTH_S * frames_per_s))
    power = 10.0 ** (np.asarray(levels, np.float64) / 10.0)
    # "full" and a slice, not "same": numpy's "same" returns the longer input's length.
    smooth = 10.0 * np.log10(np.convolve(power, np.ones(width) / width)[width // 2 : width // 2 + power.size])
    peaks, _ = scipy.signal.find_peaks(
        smooth, prominence=PEAK_PROMINENCE_DB, distance=max(1, round(_MIN_PEAK_DISTANCE_S * frames_per_s))
    )
    centres = frame_centres(levels.size, sample_rate, config)[peaks]
    starts = np.array([start for start, _ in spans])
    ends = np.array([end for _, end in spans])
    where = np.searchsorted(starts, centres, side="right") - 1
    inside = (where >= 0) & (centres < ends[np.maximum(where, 0)])
    return float(np.count_nonzero(inside) / talk_s)
