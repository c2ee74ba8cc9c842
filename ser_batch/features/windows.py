"""Feature vectors of many overlapping windows of one channel from one shared set of STFT frames (pure).

``ser_batch.features.extract.feature_vector`` computes one STFT per clip. Scoring windows overlap
(3 s every 1.5 s), so featurizing each window on its own computes every frame about twice,
and pays librosa's per-call set-up (filter banks, window functions, argument checks) once
per window. Here the frames of all windows of a region are computed once:

1. A window ``[a, b)`` has the frames ``librosa.stft(x[a:b], center=True)`` has: centres
   ``a + t * hop_length``, each frame the ``n_fft`` samples around its centre with the samples
   outside ``[a, b)`` zero (stft's zero padding). Frames lying wholly inside the window are
   the same for every window that contains them and are computed once; the few at each
   window edge that reach into the padding are computed per window.
2. Everything ``_stats_vector`` derives per frame from the unscaled spectrum (energy, spectral
   shape, pitch, zero crossings, mel power, the band peaks and valleys of spectral contrast)
   is computed once per frame, column by column as librosa does, so it is bit-identical.
3. Per window: the silence trim, the gain normalisation, log-mel, MFCC and contrast in dB.
   Mel power and contrast are scaled after the projection instead of before, so those groups
   equal ``feature_vector``'s to float32 rounding (tests/unit/test_windowing.py).
4. The pooling of ``features.pooled_stats_vector``, with the statistics of windows of equal
   length computed in one stacked call each (bit-identical to pooling them one by one).

Only ``stats`` feature sets (``StatsFeatureConfig`` itself) are computed here;
``supports_shared_frames`` says which, and other sets keep ``feature_vector`` per window.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft
from numpy.typing import NDArray
from scipy.ndimage import convolve1d

from ser_batch._typing import SampleWindow, Span
from ser_batch.config import FeatureConfig, StatsFeatureConfig
from ser_batch.errors import ConfigError
from ser_batch.features.encoder import FrameEncoder
from ser_batch.features.extract import (
    _AMIN,
    _kept_frames,
    _pitch_stats,
    autocorrelation_pitch,
    feature_names,
    feature_vector,
    validate_waveform,
)
from ser_batch.features.resample import resample

_GROUP_HOPS = 4096  # windows sharing frames span at most this many hops (41 s at 8 kHz): bounds memory
_FRAME_BLOCK = 1024  # frames transformed at a time: bounds the FFT temporaries (~10 MB at n_fft 1024)
_TOP_DB = 80.0  # librosa.power_to_db's default, used by _stats_vector's log-mel and by spectral_contrast
_DELTA_WIDTH = 9
_CONTRAST_QUANTILE = 0.02  # librosa.feature.spectral_contrast's default
_ROLL_PERCENT = 0.85  # librosa.feature.spectral_rolloff's default
_ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings' default


def supports_shared_frames(config: FeatureConfig) -> bool:
    """True when ``window_vectors`` computes this feature set (plain ``stats`` sets).

    >>> from ser_batch.config import feature_config
    >>> supports_shared_frames(feature_config("stats8k")), supports_shared_frames(feature_config("seed268"))
    (True, False)
    """
    return type(config) is StatsFeatureConfig


def window_vectors(
    samples: NDArray[np.float32], windows: Sequence[SampleWindow], config: FeatureConfig
) -> NDArray[np.float32]:
    """``feature_vector`` of each window ``samples[a:b]``, from frames shared between the windows.

    Args:
        samples: mono float32 samples at ``config.sample_rate``, shape ``(n,)``, in [-1, 1].
        windows: ``(a, b)`` sample offsets into ``samples``, ``0 <= a < b <= n``; they may overlap.
        config: a feature set for which ``supports_shared_frames`` is True.

    Returns:
        float32 array of shape ``(len(windows), len(feature_names(config)))``, row ``i`` equal to
        ``feature_vector(samples[a_i:b_i], config.sample_rate, config)`` to float32 rounding.

    Raises:
        AudioError: if a window breaks ``feature_vector``'s contract (too short, silent, not finite).
        ConfigError: if ``config`` is not a plain ``stats`` set or a window is out of range.

    >>> from ser_batch.config import feature_config
    >>> config = feature_config("stats8k")
    >>> t = np.arange(8000 * 4, dtype=np.float32) / 8000
    >>> window_vectors(0.3 * np.sin(2 * np.pi * 200 * t), [(0, 24000), (8000, 32000)], config).shape
    (2, 265)
    """
    if not supports_shared_frames(config):
        raise ConfigError(f"feature set {config.name!r} is not a plain stats set; use feature_vector per window")
    assert isinstance(config, StatsFeatureConfig)
    matrix = np.empty((len(windows), len(feature_names(config))), dtype=np.float32)
    if not windows:
        return matrix
    for a, b in windows:
        if not 0 <= a < b <= samples.size:
            raise ConfigError(f"window ({a}, {b}) is not inside [0, {samples.size}]")
        validate_waveform(samples[a:b], config.sample_rate, config)
    for rows in window_groups(windows, _GROUP_HOPS * config.hop_length):
        group = [windows[row] for row in rows]
        sources, columns = _frame_matrix(samples, group, config)
        per_frame = _frame_features(sources, config)
        zcr = None if config.band_limited else _zero_crossing_rates(samples, group, config)
        frames = [
            _window_frames(per_frame, cols, None if zcr is None else zcr[index], config)
            for index, cols in enumerate(columns)
        ]
        matrix[rows] = _pooled(frames)
    return matrix


def window_groups(windows: Sequence[SampleWindow], max_samples: int) -> list[list[int]]:
    """Indices of runs of consecutive windows whose region spans at most ``max_samples`` samples.

    A window longer than that is a group of its own. Lets callers featurize a long channel a
    bounded region at a time.

    >>> window_groups([(0, 10), (5, 15), (40, 50)], 20)
    [[0, 1], [2]]
    """
    groups: list[list[int]] = []
    low_high = (0, 0)
    for row, (a, b) in enumerate(windows):
        if groups and max(b, low_high[1]) - min(a, low_high[0]) <= max_samples:
            groups[-1].append(row)
            low_high = (min(a, low_high[0]), max(b, low_high[1]))
        else:
            groups.append([row])
            low_high = (a, b)
    return groups


def _frame_matrix(
    samples: NDArray[np.float32], windows: Sequence[SampleWindow], config: StatsFeatureConfig
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.intp]]]:
    """Raw frames of every window, interior frames shared, as blocks of rows; each window's row numbers."""
    half, hop = config.n_fft // 2, config.hop_length
    centres = [a + hop * np.arange(1 + (b - a) // hop) for a, b in windows]
    interior = [(c - half >= a) & (c + half <= b) for c, (a, b) in zip(centres, windows, strict=True)]
    shared, inverse = np.unique(
        np.concatenate([c[m] for c, m in zip(centres, interior, strict=True)]), return_inverse=True
    )
    edges: list[NDArray[np.float32]] = []
    columns: list[NDArray[np.intp]] = []
    n_edges, used = shared.size, 0
    for (a, b), centre, inside in zip(windows, centres, interior, strict=True):
        cols = np.empty(centre.size, dtype=np.intp)
        n_inside = int(inside.sum())
        cols[inside] = inverse[used : used + n_inside]
        used += n_inside
        outside = np.flatnonzero(~inside)
        # stft(center=True) pads the window with zeros: the edge frames see them, not the neighbours.
        padded = np.zeros(b - a + 2 * half, dtype=np.float32)
        padded[half : half + b - a] = samples[a:b]
        starts = centre[outside] - a
        edges.append(np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[starts])
        cols[outside] = n_edges + np.arange(outside.size)
        n_edges += outside.size
        columns.append(cols)
    # Shared frames on a common hop grid are strided views of the samples: no copy until windowed.
    views = np.lib.stride_tricks.sliding_window_view(samples, config.n_fft)
    breaks = np.flatnonzero(np.diff(shared) != hop) + 1
    runs = [views[run[0] - half : run[-1] - half + 1 : hop] for run in np.split(shared, breaks) if run.size]
    return [*runs, np.concatenate(edges)], columns


def _frame_features(sources: list[NDArray[np.float32]], config: StatsFeatureConfig) -> dict[str, NDArray[np.floating]]:
    """Everything ``_stats_vector`` computes per frame before gain normalisation, one column per frame.

    Each value keeps the dtype ``_stats_vector`` has for it (``rms_db`` is float32 there, and
    its comparisons decide the trim).
    """
    window = librosa.filters.get_window("hann", config.n_fft, fftbins=True)
    freqs = librosa.fft_frequencies(sr=config.sample_rate, n_fft=config.n_fft)
    mel_basis = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    )
    outside = (freqs < config.fmin) | (freqs > config.fmax)
    bands = _contrast_bands(freqs, config)
    blocks: dict[str, list[NDArray[np.floating]]] = {}
    chunks = (
        source[begin : begin + _FRAME_BLOCK] for source in sources for begin in range(0, source.shape[0], _FRAME_BLOCK)
    )
    for frames in chunks:
        # (frames, bins) C order transposed is librosa.stft's (bins, frames) Fortran order, so
        # every reduction over bins below runs in the same order as on a window's own STFT.
        magnitude = np.abs(np.fft.rfft(window * frames, axis=1).astype(np.complex64)).T
        if config.band_limited:
            magnitude[outside] = 0.0
        power = magnitude.astype(np.float64) ** 2
        rms = librosa.feature.rms(S=magnitude, frame_length=config.n_fft)[0]
        f0, strength = autocorrelation_pitch(power, config.sample_rate, config)
        peak, valley = _peaks_and_valleys(magnitude, bands)
        values = {
            "rms_db": 10.0 * np.log10(np.maximum(rms, _AMIN) ** 2),
            "power_sum": power.sum(axis=0),
            "centroid": librosa.feature.spectral_centroid(S=magnitude, sr=config.sample_rate, n_fft=config.n_fft)[0],
            "rolloff": _rolloff(magnitude, freqs),
            "flatness": librosa.feature.spectral_flatness(S=magnitude, amin=_AMIN)[0],
            "f0": f0,
            "strength": strength,
            "mel": np.einsum("ft,mf->mt", magnitude**2, mel_basis, optimize=True),
            "peak": peak,
            "valley": valley,
        }
        if config.band_limited:  # Rice's formula, as _stats_vector
            values["zcr"] = (
                2.0
                * np.sqrt((freqs[:, None] ** 2 * power).sum(axis=0) / np.maximum(power.sum(axis=0), _AMIN))
                / config.sample_rate
            )
        for name, value in values.items():
            blocks.setdefault(name, []).append(value)
    return {name: np.concatenate(parts, axis=-1) for name, parts in blocks.items()}


def _rolloff(magnitude: NDArray[np.float32], freqs: NDArray[np.float64]) -> NDArray[np.float64]:
    """librosa.feature.spectral_rolloff, exactly: the first bin whose cumulative sum reaches 85%.

    librosa takes the NaN-aware minimum of the frequencies of all such bins; frequencies rise
    with the bin, so that is the first one, found here without the NaN arrays.
    """
    total = np.cumsum(magnitude, axis=0)
    reached = total >= _ROLL_PERCENT * total[-1]
    return freqs[np.argmax(reached, axis=0)]


def _contrast_bands(freqs: NDArray[np.float64], config: StatsFeatureConfig) -> list[tuple[NDArray[np.intp], int]]:
    """librosa.feature.spectral_contrast's sub-bands: (bins of the band, how many bins make a peak or valley)."""
    octaves = np.zeros(config.n_contrast_bands + 2)
    octaves[1:] = config.contrast_fmin * (2.0 ** np.arange(0, config.n_contrast_bands + 1))
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octaves[:-1], octaves[1:], strict=True)):
        current = np.logical_and(freqs >= f_low, freqs <= f_high)
        index = np.flatnonzero(current)
        if k > 0:
            current[index[0] - 1] = True
        if k == config.n_contrast_bands:
            current[index[-1] + 1 :] = True
        n_quantile = max(int(np.rint(_CONTRAST_QUANTILE * np.sum(current))), 1)
        rows = np.flatnonzero(current)
        if k < config.n_contrast_bands:
            rows = rows[:-1]
        bands.append((rows, n_quantile))
    return bands


def _peaks_and_valleys(
    magnitude: NDArray[np.float32], bands: list[tuple[NDArray[np.intp], int]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    peak = np.empty((len(bands), magnitude.shape[1]))
    valley = np.empty_like(peak)
    by_frame = magnitude.T  # (frames, bins): numpy sorts contiguous rows far faster than columns
    for k, (rows, n) in enumerate(bands):
        # The n smallest and largest are summed in sorted order, as spectral_contrast sums them
        # (n < 8 here, where numpy sums a row one element after another, as it does down a column).
        band = by_frame[:, rows]
        if n == 1:  # the mean of one value is that value
            valley[k], peak[k] = band.min(axis=1), band.max(axis=1)
            continue
        ordered = np.sort(band, axis=1)
        valley[k] = np.mean(ordered[:, :n], axis=1)
        peak[k] = np.mean(ordered[:, -n:], axis=1)
    return peak, valley


def _zero_crossing_rates(
    samples: NDArray[np.float32], windows: Sequence[SampleWindow], config: StatsFeatureConfig
) -> list[NDArray[np.float64]]:
    """librosa.feature.zero_crossing_rate of each window's frames, exactly, from one count of sign changes.

    With ``center=True`` librosa repeats a window's edge samples, which adds no crossing, so a
    frame's rate is the number of sign changes between neighbours inside both the frame and
    the window, divided by ``n_fft``.
    """
    low, high = min(a for a, _ in windows), max(b for _, b in windows)
    region = samples[low:high]
    # librosa compares in float64: a float32 comparison would round the threshold
    negative = np.signbit(region) & (np.abs(region.astype(np.float64)) > _ZCR_THRESHOLD)
    changes = np.concatenate(([0], np.cumsum(negative[1:] != negative[:-1])))  # changes[i]: between 0..i
    half, hop = config.n_fft // 2, config.hop_length
    rates = []
    for a, b in windows:
        centre = a + hop * np.arange(1 + (b - a) // hop)
        first = np.clip(centre - half, a, b) - low
        last = np.clip(centre + half, a, b) - low - 1
        rates.append((changes[last] - changes[first]) / config.n_fft)
    return rates


@functools.cache
def _delta_coeffs(order: int) -> NDArray[np.float64]:
    from scipy.signal import (
        savgol_coeffs,  # here, not at import: 0.5 s the flow process (which imports this module) never uses
    )

    return savgol_coeffs(_DELTA_WIDTH, order, deriv=order, delta=1.0)


def _power_to_db(values: NDArray[np.floating]) -> NDArray[np.floating]:
    log_spec = 10.0 * np.log10(np.maximum(_AMIN, values))
    return np.maximum(log_spec, log_spec.max() - _TOP_DB)


@dataclass(frozen=True)
class _WindowFrames:
    """One window's frame matrices after trim and gain normalisation, as ``_stats_vector`` pools them."""

    logmel: NDArray[np.floating]
    full: NDArray[np.float64]  # MFCC rows then the five shape rows
    deltas: list[NDArray[np.float64]]
    contrast: NDArray[np.floating]
    f0: NDArray[np.floating]
    strength: NDArray[np.floating]
    voiced: NDArray[np.bool_]


def _window_frames(
    per_frame: dict[str, NDArray[np.floating]],
    cols: NDArray[np.intp],
    zcr: NDArray[np.float64] | None,
    config: StatsFeatureConfig,
) -> _WindowFrames:
    rms_db = per_frame["rms_db"][cols]
    kept = _kept_frames(rms_db, config.trim_db)
    cols, rms_db = cols[kept], rms_db[kept]
    n_bins = 1 + config.n_fft // 2
    scale = float(np.sqrt(max(per_frame["power_sum"][cols].sum() / (n_bins * cols.size), _AMIN)))
    logmel = _power_to_db(per_frame["mel"][:, cols] / np.float32(scale * scale))
    mfcc = scipy.fft.dct(logmel, axis=-2, type=2, norm="ortho")[: config.n_mfcc].astype(np.float64)
    contrast = _power_to_db(per_frame["peak"][:, cols] / scale) - _power_to_db(per_frame["valley"][:, cols] / scale)
    nyquist = config.sample_rate / 2
    shape = np.vstack(
        [
            per_frame["zcr"][cols] if zcr is None else zcr[kept],
            rms_db - rms_db.max(),
            per_frame["centroid"][cols] / nyquist,
            per_frame["rolloff"][cols] / nyquist,
            per_frame["flatness"][cols],
        ]
    )
    deltas = [convolve1d(mfcc, _delta_coeffs(order), axis=-1, mode="nearest").std(axis=1) for order in (1, 2)]
    strength = per_frame["strength"][cols]
    voiced = (strength >= config.voicing_threshold) & (rms_db >= rms_db.max() - 30.0)
    return _WindowFrames(logmel, np.vstack([mfcc, shape]), deltas, contrast, per_frame["f0"][cols], strength, voiced)


def _pooled(windows: list[_WindowFrames]) -> NDArray[np.float32]:
    """``pooled_stats_vector`` of each window, the statistics of equally long windows computed together.

    numpy reduces and partitions each row of a stacked array exactly as it does the row on its
    own, so this equals ``pooled_stats_vector`` window by window (the parity tests check it);
    stacking saves the per-call overhead of ~10 numpy reductions per window.
    """
    result = np.empty((len(windows), 0), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for index, window in enumerate(windows):
        by_length.setdefault(window.full.shape[1], []).append(index)
    vectors: list[NDArray[np.float32]] = [result[0]] * len(windows)
    for indices in by_length.values():
        logmel = np.stack([windows[i].logmel for i in indices]).astype(np.float64)
        full = np.stack([windows[i].full for i in indices])
        contrast = np.stack([windows[i].contrast for i in indices])
        p10, p50, p90 = np.percentile(full, [10.0, 50.0, 90.0], axis=2)
        pooled = [
            np.stack([logmel.mean(axis=2), logmel.std(axis=2)], axis=2).reshape(len(indices), -1),
            np.stack([full.mean(axis=2), full.std(axis=2), p10, p50, p90], axis=2).reshape(len(indices), -1),
            np.stack([contrast.mean(axis=2), contrast.std(axis=2)], axis=2).reshape(len(indices), -1),
        ]
        for j, i in enumerate(indices):
            window = windows[i]
            parts = [
                pooled[0][j],
                pooled[1][j],
                *window.deltas,
                pooled[2][j],
                np.asarray(_pitch_stats(window.f0, window.strength, window.voiced)),
            ]
            vectors[i] = np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return np.stack(vectors) if vectors else result


def window_samples(windows: Sequence[Span], sample_rate: int) -> list[SampleWindow]:
    """``(start, stop)`` sample offsets of windows given in seconds.

    >>> window_samples([(0.5, 2.0)], 8000)
    [(4000, 16000)]
    """
    return [(round(start_s * sample_rate), round(end_s * sample_rate)) for start_s, end_s in windows]


def window_features_at(
    samples: NDArray[np.float32],
    sample_rate: int,
    windows: Sequence[SampleWindow],
    config: FeatureConfig,
    *,
    encoder: FrameEncoder | None = None,
) -> NDArray[np.float32]:
    """``window_features`` of windows given as ``(start, stop)`` sample offsets into ``samples``.

    At the feature set's own rate, ``stats`` sets share STFT frames between overlapping windows
    (``ser_batch.features.windows``; equal to ``feature_vector`` per window to float32 rounding).
    Otherwise each window is resampled on its own, as a training clip was, and featurized
    (``encoder``: an encoder set's loaded model, as for ``feature_vector``).

    Raises:
        AudioError: if a window breaks the featurizer's contract (too short, silent, not finite).
    """
    if sample_rate == config.sample_rate and supports_shared_frames(config):
        return window_vectors(np.ascontiguousarray(samples, dtype=np.float32), windows, config)
    matrix = np.empty((len(windows), len(feature_names(config))), dtype=np.float32)
    for row, (start, stop) in enumerate(windows):
        clip = np.ascontiguousarray(samples[start:stop], dtype=np.float32)
        clip = resample(clip, sample_rate, config.sample_rate, quality=config.resample_quality)
        matrix[row] = feature_vector(clip, config.sample_rate, config, encoder=encoder)
    return matrix
