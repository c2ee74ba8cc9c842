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
        return float(
            librosa.estimate_tuning(
                S=magnitude, sr=sample_rate, n_fft=n_fft, bins_per_octave=bins_per_octave, resolution=resolution
            )
        )
    lo, hi = int(band[0]), int(band[-1]) + 1
    # Frames as rows, contiguous when ``magnitude`` is a transposed STFT (librosa's and seed's are).
    # Peaks come out frame by frame instead of bin by bin; the estimate depends only on their multiset.
    spectra = magnitude.T
    window = np.ascontiguousarray(spectra[:, lo - 1 : hi + 1])
    gated = window * (window > _THRESHOLD * spectra.max(axis=1, keepdims=True))
    centre, below, above = gated[:, 1:-1], gated[:, :-2], gated[:, 2:]
    frames, rows = np.nonzero((centre > below) & (centre >= above))
    flat, at = window.reshape(-1), frames * window.shape[1] + rows
    x0, xm, xp = flat[at + 1], flat[at], flat[at + 2]
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
    return pitch_tuning(pitches[keep], resolution=resolution, bins_per_octave=bins_per_octave)


def pitch_tuning(frequencies: NDArray[np.floating], *, resolution: float = 0.01, bins_per_octave: int = 12) -> float:
    """Equal to ``librosa.pitch_tuning``: the most common deviation of ``frequencies`` from equal temperament.

    The same float arithmetic, but bins are counted directly instead of through
    ``np.histogram`` (which sorts), and ``librosa.core.pitch`` is not imported: its numba
    kernels cost about a second in every new worker process.

    Args:
        frequencies: Hz, any shape; values <= 0 are ignored.
        resolution: histogram bin width in fractions of a bin.
        bins_per_octave: pitch classes per octave.

    Returns:
        A value of ``np.linspace(-0.5, 0.5, ceil(1 / resolution) + 1)``; 0.0 when no frequency is > 0.

    >>> pitch_tuning(np.array([440.0, 880.0, 220.0 * 2 ** (0.2 / 12)], np.float32))
    0.0
    """
    frequencies = np.atleast_1d(frequencies)
    frequencies = frequencies[frequencies > 0]
    if not np.any(frequencies):
        return 0.0  # librosa warns, then returns this
    residual = np.mod(bins_per_octave * np.log2(frequencies / (440.0 / 16)), 1.0)  # librosa.hz_to_octs, A440
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    # np.histogram's bins: [e_i, e_i+1), the last one closed; residual lies in [-0.5, 0.5]
    index = np.minimum(np.searchsorted(edges, residual, side="right") - 1, edges.size - 2)
    counts = np.bincount(index[index >= 0], minlength=edges.size - 1)
    return float(edges[np.argmax(counts)])
