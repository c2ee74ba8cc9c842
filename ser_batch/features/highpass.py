"""Remove DC and subsonic rumble right after decoding (pure kernel), so every later step sees the same signal.

A DC offset (a recorder's or a sound card's bias) is no sound, yet it moves every level-based
decision: the VAD's frame levels, the featurizer's silence trimming, its level normalisation and
its lowest mel bands. Both ``featurize`` and ``score`` decode through ``ser_batch.storage.audio``,
which applies :func:`high_pass` to each decoded waveform, once.

The filter is a 2nd-order Butterworth high-pass at ``CUTOFF_HZ`` (scipy ``butter`` + ``sosfilt``),
causal (not zero-phase: features use magnitude spectra, so its phase shift below ~150 Hz does not
matter, and a causal filter can be streamed). Its state starts at the steady state of the first
sample, so an offset present from the first sample leaves no step transient.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.signal
from numpy.typing import NDArray

CUTOFF_HZ = 70.0
"""-3 dB corner (Hz): DC is removed, 50/60 Hz hum is only lightly attenuated, the lowest voices' f0 (~80 Hz) kept."""

BLOCK_SAMPLES = 1 << 16
"""Samples filtered at a time: bounds the float64 temporaries to 2 x 512 KB (and, cache-sized, is 4x faster than
filtering the whole waveform at once: 15,000x real time at 8 kHz)."""

SETTLE_S = 0.25
"""Pre-roll (s) after which the filter's state has forgotten where it started (to ~1e-30 at any rate)."""


def high_pass(waveform: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
    """Remove DC and rumble below ``CUTOFF_HZ`` from a mono waveform.

    Args:
        waveform: mono samples, shape ``(n,)``, float32 in [-1, 1].
        sample_rate: its rate in Hz, > 2 * ``CUTOFF_HZ``.

    Returns:
        float32 array of shape ``(n,)`` (new; ``4 * n`` bytes plus ``16 * min(n, BLOCK_SAMPLES)`` of temporaries);
        an empty input is returned as is.

    >>> x = np.full(8000, 0.02, dtype=np.float32)  # a 2% DC offset, nothing else
    >>> float(np.abs(high_pass(x, 8000)).max()) < 1e-6
    True
    """
    if waveform.size == 0:
        return waveform
    sos, state = _design(sample_rate)
    state = state * float(waveform[0])
    filtered = np.empty(waveform.size, dtype=np.float32)
    # in blocks: sosfilt works in float64, and whole-waveform temporaries would be 4x the output
    for start in range(0, waveform.size, BLOCK_SAMPLES):
        block, state = scipy.signal.sosfilt(sos, waveform[start : start + BLOCK_SAMPLES], zi=state)
        filtered[start : start + BLOCK_SAMPLES] = block
    return filtered


@functools.lru_cache(maxsize=16)
def _design(sample_rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    sos = scipy.signal.butter(2, CUTOFF_HZ, btype="highpass", fs=sample_rate, output="sos")
    return sos, scipy.signal.sosfilt_zi(sos)
