"""Prosody and voice-quality descriptors at telephone rates (pure: numpy, scipy and librosa only).

The ``stats8k-prosody`` feature set appends ``prosody_vector`` to the ``stats8k`` vector. Its
descriptors follow the extended Geneva minimalistic acoustic parameter set (eGeMAPS: Eyben et al.,
"The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and Affective
Computing", IEEE Trans. Affective Computing 7(2), 2016), computed by our own code: openSMILE's
licence forbids commercial use and parselmouth is GPL.

* F0 (the ``stats`` sets' autocorrelation track, in semitones above 55 Hz): 20th and 80th
  percentiles, the 5-95 percentile range, and the mean rising and falling slopes (semitones/s).
  Mean, std and median are already among the ``stats`` columns. The track is the one
  ``ser_batch.features.extract.autocorrelation_pitch`` computes anyway, not ``librosa.pyin``:
  measured at 8 kHz on a 120 -> 180 Hz glide, its median error is 0.1 cent (0.3 at 20 dB SNR)
  against pyin's 2.6, and pyin costs about 0.5 s per second of audio, 20 times ``stats8k``.
* Voicing runs: mean lengths of voiced runs and of the unvoiced gaps between them (s), voiced
  runs per second, loudness peaks per second (a syllable-rate proxy).
* Jitter and shimmer (local), as Praat defines them (Boersma & Weenink, Praat manual, "Voice 2.
  Jitter" and "Voice 3. Shimmer"), from glottal pulses picked on the waveform.
* Harmonics-to-noise ratio by the autocorrelation method (Boersma, "Accurate short-term analysis
  of the fundamental frequency and the harmonics-to-noise ratio of a sampled sound", Proc.
  Institute of Phonetic Sciences 17, 1993): ``10 log10(r / (1 - r))`` with ``r`` the
  window-corrected, sinc-interpolated normalised autocorrelation at the period.
* Loudness: the sum over mel bands of band power to the 0.3 (Stevens' power law), as eGeMAPS's
  auditory-spectrum loudness, on the gain-normalised spectrum.
* Spectral balance of voiced frames: regression slopes of the dB power spectrum over 0-500 and
  500-1500 Hz (dB/kHz), alpha ratio and Hammarberg index. Both are defined up to 5 kHz; at 8 kHz
  the upper band stops at the Nyquist frequency (4 kHz), so alpha ratio here is
  ``E(50-1000 Hz) / E(1000-4000 Hz)`` and Hammarberg the strongest peak in 0-2 kHz over the
  strongest in 2-4 kHz (dB both).
* Formants F1-F3 of voiced frames from LPC (librosa's Burg method, order ``config.lpc_order``)
  on 25 ms pre-emphasised Hamming frames: the angles of the roots with bandwidth under 400 Hz.

Every descriptor of a clip with too few voiced frames or pulses is 0 (as the ``stats`` sets'
pitch statistics are), never NaN.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.ndimage
import scipy.signal
from numpy.typing import NDArray

from ser_batch.config import ProsodyFeatureConfig

PROSODY_NAMES: tuple[str, ...] = (
    "f0_st_p20",
    "f0_st_p80",
    "f0_st_range",
    "f0_st_rise_slope",
    "f0_st_fall_slope",
    "voiced_run_mean_s",
    "unvoiced_run_mean_s",
    "voiced_runs_per_s",
    "loudness_peaks_per_s",
    "jitter_local",
    "shimmer_local",
    "hnr_db_mean",
    "hnr_db_std",
    "loudness_mean",
    "loudness_std",
    "loudness_p20",
    "loudness_p50",
    "loudness_p80",
    "slope_0_500_mean",
    "slope_0_500_std",
    "slope_500_1500_mean",
    "slope_500_1500_std",
    "alpha_ratio_mean",
    "alpha_ratio_std",
    "hammarberg_mean",
    "hammarberg_std",
    "f1_hz_mean",
    "f1_hz_std",
    "f2_hz_mean",
    "f2_hz_std",
    "f3_hz_mean",
    "f3_hz_std",
)
"""Column names ``prosody_vector`` returns, in order (appended to the ``stats`` names)."""

_F0_REF_HZ = 55.0  # as the stats sets' pitch: semitones above A1
_HNR_UPSAMPLE = 2  # the HNR autocorrelation is sinc-interpolated to 2x (1x: 20 dB reads 17.7)
_MAX_PERIOD_FACTOR = 1.3  # Praat's jitter/shimmer default: consecutive periods differing more are skipped
_MAX_AMPLITUDE_FACTOR = 1.6  # Praat's shimmer default
_MAX_HNR_DB = 40.0  # r = 0.9999
_MAX_PITCH_STEP_ST = 2.0  # per frame: larger F0 steps split a run for the slopes
_LOUDNESS_EXPONENT = 0.3  # Stevens' power law on intensity
_AMIN = 1e-10
_FORMANT_WINDOW_S = 0.025
_FORMANT_STEP_S = 0.03
_HNR_STEP_S = 0.02
_HNR_BLOCK = 256  # frames per interpolated autocorrelation block
_PRE_EMPHASIS = 0.97
_FORMANT_MIN_HZ = 90.0
_FORMANT_MAX_BANDWIDTH_HZ = 400.0


def semitones(f0_hz: NDArray[np.floating]) -> NDArray[np.float64]:
    """F0 in semitones above 55 Hz (A1), shape as ``f0_hz``.

    >>> semitones(np.array([55.0, 110.0])).tolist()
    [0.0, 12.0]
    """
    return 12.0 * np.log2(np.maximum(np.asarray(f0_hz, dtype=np.float64), _AMIN) / _F0_REF_HZ)


def boolean_runs(mask: NDArray[np.bool_]) -> NDArray[np.intp]:
    """``[start, stop)`` frame indices of each run of True, shape ``(n_runs, 2)``.

    >>> boolean_runs(np.array([0, 1, 1, 0, 1], bool)).tolist()
    [[1, 3], [4, 5]]
    """
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def pitch_slopes(
    tones: NDArray[np.floating], voiced: NDArray[np.bool_], hop_s: float, hysteresis: float
) -> tuple[float, float]:
    """Mean rising and falling F0 slopes (semitones/s, both >= 0) over the voiced runs.

    Voiced runs are first cut where F0 jumps more than 2 semitones from one frame to the next
    (faster than a voice moves: an octave error or a new voice, not a glide). Each run's contour
    (3-frame median filtered) is cut at its turning points: a maximum or minimum counts once the
    contour has moved ``hysteresis`` semitones back from it, so tracking noise does not split a
    movement. A movement smaller than ``hysteresis`` is no rise or fall.

    Args:
        tones: F0 per frame in semitones, shape ``(t,)`` (values of unvoiced frames are ignored).
        voiced: shape ``(t,)``.
        hop_s: frame step in seconds.
        hysteresis: semitones.

    Returns:
        ``(rise, fall)``: the mean ``|change| / duration`` of the rising and of the falling
        movements; 0 where there is none.

    >>> t = np.arange(100) * 0.01
    >>> rise, fall = pitch_slopes(12.0 * t, np.ones(100, bool), 0.01, 0.5)
    >>> round(rise, 6), fall
    (12.0, 0.0)
    """
    tones = np.asarray(tones, dtype=np.float64)
    steady = voiced.copy()
    steady[1:] &= (np.abs(np.diff(tones)) <= _MAX_PITCH_STEP_ST) | ~voiced[:-1]
    slopes: list[float] = []
    for start, stop in boolean_runs(steady):
        if stop - start < 3:
            continue
        contour = scipy.ndimage.median_filter(tones[start:stop], size=3, mode="nearest")
        pivots = _turning_points(contour.tolist(), hysteresis)  # plain floats: the zigzag is a loop
        slopes += [(contour[b] - contour[a]) / ((b - a) * hop_s) for a, b in zip(pivots[:-1], pivots[1:], strict=True)]
    rising = [s for s in slopes if s > 0]
    falling = [-s for s in slopes if s < 0]
    return (float(np.mean(rising)) if rising else 0.0, float(np.mean(falling)) if falling else 0.0)


def _turning_points(contour: list[float], hysteresis: float) -> list[int]:
    """Indices of the extremes between movements of at least ``hysteresis`` (a zigzag), in order."""
    low = high = extreme = 0
    direction = 0
    pivots: list[int] = []
    for i in range(1, len(contour)):
        value = contour[i]
        if direction == 0:
            low = i if value < contour[low] else low
            high = i if value > contour[high] else high
            if value - contour[low] >= hysteresis:
                pivots, direction, extreme = [low], 1, i
            elif contour[high] - value >= hysteresis:
                pivots, direction, extreme = [high], -1, i
        elif direction * (value - contour[extreme]) >= 0.0:
            extreme = i
        elif direction * (contour[extreme] - value) >= hysteresis:
            pivots.append(extreme)
            direction, extreme = -direction, i
    return pivots + [extreme] if direction != 0 else []


def voicing_runs(voiced: NDArray[np.bool_], hop_s: float) -> tuple[float, float, float]:
    """Speaking-rate proxies from the voiced frames.

    Args:
        voiced: shape ``(t,)``.
        hop_s: frame step in seconds.

    Returns:
        ``(voiced_run_mean_s, unvoiced_run_mean_s, voiced_runs_per_s)``: the mean length of the
        voiced runs, of the unvoiced gaps between two voiced runs (0 with fewer than two runs),
        and the voiced runs per second of the whole span.

    >>> voicing_runs(np.array([1, 1, 0, 0, 0, 1, 1, 1, 1, 0], bool), 0.1)
    (0.30000000000000004, 0.30000000000000004, 2.0)
    """
    spans = boolean_runs(voiced)
    if not spans.size:
        return 0.0, 0.0, 0.0
    lengths = spans[:, 1] - spans[:, 0]
    gaps = spans[1:, 0] - spans[:-1, 1]
    return (
        float(lengths.mean() * hop_s),
        float(gaps.mean() * hop_s) if gaps.size else 0.0,
        float(len(spans) / (voiced.size * hop_s)),
    )


def glottal_pulses(
    waveform: NDArray[np.floating],
    f0_hz: NDArray[np.floating],
    voiced: NDArray[np.bool_],
    sample_rate: int,
    hop_length: int,
    first_frame: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.intp]]:
    """Glottal pulse times and peak amplitudes in each voiced run, by period-guided peak picking.

    In each voiced run (frames centred at ``(first_frame + i) * hop_length``) the pulse polarity
    is that of the run's largest absolute sample; from that peak, each next pulse is the largest
    sample between 0.8 and 1.25 local periods (``1 / f0`` of the frame) on, going forward and
    backward. Each peak's time and height are then refined on the band-limited waveform
    (windowed-sinc interpolation at a quarter sample, then a parabola), as Praat interpolates
    its peaks: at 8 kHz one sample is 1.5% of a 120 Hz period, more than the jitter to measure.

    Args:
        waveform: shape ``(n,)``.
        f0_hz: F0 per frame, shape ``(t,)``.
        voiced: shape ``(t,)``.
        sample_rate: Hz.
        hop_length: samples between frames.
        first_frame: index of frame 0 in the waveform's frames (frames before it were trimmed).

    Returns:
        ``(times_s, amplitudes, run)``: shape ``(p,)`` each, sorted by time; ``run`` numbers the
        voiced run a pulse belongs to (periods only count within a run).
    """
    x = np.asarray(waveform, dtype=np.float64)
    peaks: list[int] = []
    signs: list[float] = []
    labels: list[int] = []
    periods = (sample_rate / np.maximum(np.asarray(f0_hz, dtype=np.float64), _AMIN)).tolist()  # one loop step a pulse
    for number, (start, stop) in enumerate(boolean_runs(voiced)):
        low = max(0, (first_frame + start) * hop_length - hop_length // 2)
        high = min(x.size, (first_frame + stop - 1) * hop_length + hop_length // 2 + 1)
        if high - low < 8:
            continue
        peak = low + int(np.argmax(np.abs(x[low:high])))
        sign = 1.0 if x[peak] >= 0.0 else -1.0
        signed = sign * x[low:high]
        found = [peak]
        for step in (1, -1):
            position = peak
            while True:
                frame = min(max((position + hop_length // 2) // hop_length - first_frame, start), stop - 1)
                near, far = int(0.8 * periods[frame] + 0.5), int(1.25 * periods[frame] + 0.5)
                a, b = (position + near, position + far) if step > 0 else (position - far, position - near)
                if a < low or b >= high:
                    break
                position = a + int(signed[a - low : b - low + 1].argmax())
                found.append(position)
        unique = sorted(set(found))
        peaks += unique
        signs += [sign] * len(unique)
        labels += [number] * len(unique)
    if not peaks:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.intp)
    offset, height = _refined_peaks(x, np.asarray(peaks), np.asarray(signs))
    return (np.asarray(peaks) + offset) / sample_rate, height, np.asarray(labels, dtype=np.intp)


_SINC_HALF = 8  # taps each side of a peak for its interpolation
_SINC_STEPS = np.linspace(-1.0, 1.0, 9)  # quarter-sample offsets around a picked peak
_SINC_TAPS = np.arange(-_SINC_HALF, _SINC_HALF + 1, dtype=np.float64)[:, None] - _SINC_STEPS[None, :]
_SINC_KERNEL = np.sinc(_SINC_TAPS) * np.i0(5.0 * np.sqrt(1.0 - (_SINC_TAPS / (_SINC_HALF + 1)) ** 2)) / np.i0(5.0)
"""Kaiser-windowed sinc: row j, column m weighs sample ``peak + j - 8`` for the value at ``peak + offset[m]``."""


def _refined_peaks(
    x: NDArray[np.float64], peaks: NDArray[np.intp], signs: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sub-sample offsets (samples) and heights of signed peaks of a band-limited signal."""
    padded = np.pad(x, _SINC_HALF)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * _SINC_HALF + 1)[peaks]
    values = signs[:, None] * (windows @ _SINC_KERNEL)  # (p, 9): the signal at quarter-sample offsets
    best = np.clip(np.argmax(values, axis=1), 1, _SINC_STEPS.size - 2)
    rows = np.arange(peaks.size)
    left, centre, right = values[rows, best - 1], values[rows, best], values[rows, best + 1]
    curvature = left - 2.0 * centre + right
    concave = curvature < 0.0
    shift = np.where(concave, np.clip(0.5 * (left - right) / np.where(concave, curvature, -1.0), -0.5, 0.5), 0.0)
    step = _SINC_STEPS[1] - _SINC_STEPS[0]
    return _SINC_STEPS[best] + step * shift, centre - 0.25 * (left - right) * shift


def perturbation(
    times_s: NDArray[np.floating], amplitudes: NDArray[np.floating], run: NDArray[np.intp], f0_min: float, f0_max: float
) -> tuple[float, float]:
    """Local jitter and shimmer of a pulse sequence, as Praat defines them (fractions, not %).

    jitter (local): the mean absolute difference between consecutive periods over the mean
    period. shimmer (local): the mean absolute difference between the amplitudes of
    consecutive periods over the mean amplitude. As Praat does, only periods between
    ``1 / f0_max`` and ``1 / f0_min`` count, a pair of consecutive periods only if their ratio
    is at most 1.3, and an amplitude pair only if their ratio is at most 1.6 (Praat manual,
    "Voice 2. Jitter", "Voice 3. Shimmer").

    Args:
        times_s: pulse times, shape ``(p,)``, sorted.
        amplitudes: the pulses' peak amplitudes, shape ``(p,)``.
        run: voiced run of each pulse, shape ``(p,)``: no period spans two runs.
        f0_min: Hz.
        f0_max: Hz.

    Returns:
        ``(jitter, shimmer)``; 0 each where fewer than two valid pairs exist.

    >>> times = np.cumsum([0.01, 0.0101, 0.0099, 0.0101, 0.0099])
    >>> jitter, shimmer = perturbation(times, np.array([1.0, 1.1, 1.0, 1.1, 1.0]), np.zeros(5, int), 60.0, 500.0)
    >>> round(jitter, 6), round(shimmer, 6)
    (0.02, 0.096154)
    """
    periods = np.diff(times_s)
    valid = (run[1:] == run[:-1]) & (periods >= 1.0 / f0_max) & (periods <= 1.0 / f0_min)
    pairs = valid[1:] & valid[:-1]
    ratio = periods[1:] / np.where(pairs, periods[:-1], 1.0)
    pairs &= (ratio <= _MAX_PERIOD_FACTOR) & (ratio >= 1.0 / _MAX_PERIOD_FACTOR)
    jitter = float(np.abs(np.diff(periods))[pairs].mean() / periods[valid].mean()) if pairs.sum() >= 2 else 0.0
    heights = np.asarray(amplitudes, dtype=np.float64)
    steps = (run[1:] == run[:-1]) & valid & (heights[1:] > 0.0) & (heights[:-1] > 0.0)
    factor = heights[1:] / np.where(steps, heights[:-1], 1.0)
    steps &= (factor <= _MAX_AMPLITUDE_FACTOR) & (factor >= 1.0 / _MAX_AMPLITUDE_FACTOR)
    if steps.sum() < 2:
        return jitter, 0.0
    counted = np.zeros(heights.size, bool)
    counted[1:] |= steps
    counted[:-1] |= steps
    return jitter, float(np.abs(np.diff(heights))[steps].mean() / heights[counted].mean())


def harmonicity(
    power: NDArray[np.floating], f0_hz: NDArray[np.floating], sample_rate: int, n_fft: int
) -> NDArray[np.float64]:
    """Harmonics-to-noise ratio per frame (dB), by Boersma's (1993) autocorrelation method.

    The frame's autocorrelation is the inverse FFT of its power spectrum, zero-padded to 2x
    (sinc interpolation, as Boersma prescribes), divided by the Hann window's own autocorrelation;
    ``r`` is its largest value within 10% of the lag ``1 / f0``, refined by a parabola, and the
    HNR ``10 log10(r / (1 - r))``, clipped to [-40, 40] dB.

    Args:
        power: ``|stft|**2`` of Hann-windowed frames, shape ``(1 + n_fft // 2, t)``.
        f0_hz: F0 per frame, shape ``(t,)``.
        sample_rate: Hz.
        n_fft: frame length in samples.

    Returns:
        shape ``(t,)``, dB.
    """
    size = _HNR_UPSAMPLE * n_fft
    window = np.abs(np.fft.rfft(librosa.filters.get_window("hann", n_fft, fftbins=True))) ** 2
    window_acf = np.fft.irfft(window, n=size)
    lag = _HNR_UPSAMPLE * sample_rate / np.asarray(f0_hz, dtype=np.float64)
    out = np.empty(lag.size)
    for first in range(0, lag.size, _HNR_BLOCK):  # bounds the 2x autocorrelation's memory
        block = slice(first, first + _HNR_BLOCK)
        acf = np.fft.irfft(np.asarray(power[:, block].T, dtype=np.float64), n=size, axis=1).T  # contiguous transforms
        out[block] = _peak_ratio(acf / np.maximum(acf[:1], _AMIN), window_acf / window_acf[0], lag[block])
    r = np.clip(out, 1e-4, 1.0 - 1e-4)
    return np.clip(10.0 * np.log10(r / (1.0 - r)), -_MAX_HNR_DB, _MAX_HNR_DB)


def _peak_ratio(
    acf: NDArray[np.float64], window_acf: NDArray[np.float64], lag: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Largest window-corrected normalised autocorrelation within 10% of ``lag`` per column, parabola-refined."""
    low = np.clip(np.floor(0.9 * lag).astype(int), 1, acf.shape[0] // 2 - 3)
    width = int(np.ceil(0.2 * lag.max())) + 3 if lag.size else 3
    rows = np.minimum(low[None, :] + np.arange(width)[:, None], acf.shape[0] // 2 - 2)
    columns = np.arange(acf.shape[1])
    ratio = np.where(rows <= np.ceil(1.1 * lag)[None, :], acf[rows, columns] / window_acf[rows], -np.inf)
    best = np.clip(np.argmax(ratio, axis=0), 1, width - 2)
    left, centre, right = ratio[best - 1, columns], ratio[best, columns], ratio[best + 1, columns]
    curvature = np.where(np.isfinite(left) & np.isfinite(right), left - 2.0 * centre + right, 0.0)
    concave = curvature < 0.0
    return np.where(concave, centre - 0.125 * (left - right) ** 2 / np.where(concave, curvature, -1.0), centre)


def loudness(mel_power: NDArray[np.floating]) -> NDArray[np.float64]:
    """Loudness per frame: the sum over mel bands of band power to the 0.3 (Stevens), shape ``(t,)``.

    >>> loudness(np.full((2, 1), 10.0)).round(3).tolist()
    [3.991]
    """
    return (np.maximum(np.asarray(mel_power, dtype=np.float64), 0.0) ** _LOUDNESS_EXPONENT).sum(axis=0)


def spectral_balance(power: NDArray[np.floating], sample_rate: int, n_fft: int) -> NDArray[np.float64]:
    """Spectral slopes, alpha ratio and Hammarberg index per frame, shape ``(4, t)``.

    Rows: the least-squares slope of the dB power spectrum against frequency over 0-500 Hz and
    over 500-1500 Hz (dB/kHz); the alpha ratio ``E(50-1000 Hz) / E(1000-4000 Hz)`` (dB); the
    Hammarberg index, the strongest bin in 0-2 kHz over the strongest in 2-4 kHz (dB). The upper
    bands of eGeMAPS reach 5 kHz; they end at 4 kHz (or at the Nyquist frequency if lower) here.

    Args:
        power: power spectrum, shape ``(1 + n_fft // 2, t)``.
        sample_rate: Hz.
        n_fft: FFT size.
    """
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    energy = np.asarray(power, dtype=np.float64)
    below = freqs <= 1500.0
    db = 10.0 * np.log10(np.maximum(energy[below], _AMIN))  # only the bins the slopes use
    top = min(4000.0, sample_rate / 2.0)
    rows = []
    for low, high in ((0.0, 500.0), (500.0, 1500.0)):
        band = (freqs[below] >= low) & (freqs[below] <= high)
        centred = freqs[below][band] / 1000.0 - (freqs[below][band] / 1000.0).mean()
        rows.append(centred @ db[band] / (centred @ centred))
    low_band = energy[(freqs >= 50.0) & (freqs < 1000.0)].sum(axis=0)
    high_band = energy[(freqs >= 1000.0) & (freqs <= top)].sum(axis=0)
    rows.append(10.0 * np.log10(np.maximum(low_band, _AMIN) / np.maximum(high_band, _AMIN)))
    peaks = [
        np.maximum(energy[band].max(axis=0), _AMIN) for band in (freqs < 2000.0, (freqs >= 2000.0) & (freqs <= top))
    ]
    rows.append(10.0 * np.log10(peaks[0]) - 10.0 * np.log10(peaks[1]))
    return np.vstack(rows)


def formants(
    waveform: NDArray[np.floating], centres: NDArray[np.intp], sample_rate: int, order: int, n_formants: int = 3
) -> NDArray[np.float64]:
    """Formant frequencies from LPC at the given frame centres, shape ``(n_formants, len(centres))``, NaN where absent.

    Each 25 ms frame of the pre-emphasised (0.97) waveform around a centre is Hamming-windowed
    and fitted by ``librosa.lpc`` (Burg); the roots of the predictor polynomial (eigenvalues of
    its companion matrix) above the real axis with frequency at least 90 Hz and bandwidth
    ``-ln|z| * sample_rate / pi`` under 400 Hz are formant candidates, lowest first.

    Args:
        waveform: shape ``(n,)``.
        centres: sample indices, shape ``(k,)``.
        sample_rate: Hz.
        order: LPC order (about 2 + sample_rate / 1000).
        n_formants: how many to return.
    """
    out = np.full((n_formants, centres.size), np.nan)
    length = int(round(_FORMANT_WINDOW_S * sample_rate))
    if not centres.size or waveform.size < order + 2:
        return out
    emphasised = np.append(waveform[:1], waveform[1:] - _PRE_EMPHASIS * waveform[:-1]).astype(np.float64)
    padded = np.pad(emphasised, length // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, length)[centres] * np.hamming(length)
    energetic = (frames**2).sum(axis=1) > _AMIN
    if not energetic.any():
        return out
    try:
        coefficients = librosa.lpc(frames[energetic], order=order, axis=-1)
    except FloatingPointError:  # librosa's "ill-conditioned" input (e.g. a pure tone): no formants, not a failure
        return out
    companion = np.zeros((coefficients.shape[0], order, order))
    companion[:, 0, :] = -coefficients[:, 1:] / coefficients[:, :1]
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    roots = np.linalg.eigvals(companion)
    frequency = np.angle(roots) * sample_rate / (2.0 * np.pi)
    bandwidth = -np.log(np.maximum(np.abs(roots), _AMIN)) * sample_rate / np.pi
    keep = (roots.imag > 0.0) & (frequency >= _FORMANT_MIN_HZ) & (bandwidth < _FORMANT_MAX_BANDWIDTH_HZ)
    candidates = np.sort(np.where(keep, frequency, np.inf), axis=1)[:, :n_formants]
    out[:, energetic] = np.where(np.isfinite(candidates), candidates, np.nan).T
    return out


def prosody_vector(
    waveform: NDArray[np.floating],
    power: NDArray[np.floating],
    mel_power: NDArray[np.floating],
    f0_hz: NDArray[np.floating],
    voiced: NDArray[np.bool_],
    first_frame: int,
    config: ProsodyFeatureConfig,
) -> NDArray[np.float64]:
    """The descriptors named by ``PROSODY_NAMES`` for one clip, from the ``stats`` frames.

    Args:
        waveform: the clip, shape ``(n,)`` at ``config.sample_rate``.
        power: power STFT of the kept (silence-trimmed) frames (the descriptors taken from it do not depend on gain),
            shape ``(1 + n_fft // 2, t)``.
        mel_power: mel power of the same frames, shape ``(n_mels, t)``.
        f0_hz: F0 per frame, shape ``(t,)``.
        voiced: shape ``(t,)``.
        first_frame: index in the clip's STFT of the first kept frame.
        config: the feature set.

    Returns:
        shape ``(len(PROSODY_NAMES),)``, finite.
    """
    hop_s = config.hop_length / config.sample_rate
    values: list[float] = []
    tones = semitones(f0_hz)
    if voiced.sum() >= 2:
        p5, p20, p80, p95 = np.percentile(tones[voiced], [5.0, 20.0, 80.0, 95.0])
        values += [p20, p80, p95 - p5, *pitch_slopes(tones, voiced, hop_s, config.pitch_hysteresis_st)]
    else:
        values += [0.0] * 5
    frame_loudness = loudness(mel_power)
    smoothed = np.convolve(frame_loudness, np.ones(5) / 5.0, mode="same")
    peaks, _ = scipy.signal.find_peaks(smoothed, prominence=0.1 * max(float(smoothed.max()), _AMIN), distance=10)
    values += [*voicing_runs(voiced, hop_s), peaks.size / (voiced.size * hop_s)]
    times, heights, run = glottal_pulses(waveform, f0_hz, voiced, config.sample_rate, config.hop_length, first_frame)
    values += list(perturbation(times, heights, run, config.f0_min, config.f0_max))
    every = max(1, int(round(_HNR_STEP_S / hop_s)))  # Praat's HNR time step is 10 ms; 20 ms halves the cost
    hnr_frames = np.flatnonzero(voiced)[::every]
    hnr = harmonicity(power[:, hnr_frames], f0_hz[hnr_frames], config.sample_rate, config.n_fft)
    values += [float(hnr.mean()), float(hnr.std())] if hnr.size else [0.0, 0.0]
    values += [frame_loudness.mean(), frame_loudness.std(), *np.percentile(frame_loudness, [20.0, 50.0, 80.0])]
    balance = spectral_balance(power[:, voiced], config.sample_rate, config.n_fft)
    values += (
        list(np.stack([balance.mean(axis=1), balance.std(axis=1)], axis=1).reshape(-1)) if voiced.any() else [0.0] * 8
    )
    every = max(1, int(round(_FORMANT_STEP_S / hop_s)))  # formants move slowly: every 30 ms is enough for statistics
    centres = np.minimum((first_frame + np.flatnonzero(voiced)[::every]) * config.hop_length, waveform.size - 1)
    tracks = formants(waveform, centres, config.sample_rate, config.lpc_order)
    for track in tracks:
        found = track[np.isfinite(track)]
        values += [found.mean(), found.std()] if found.size else [0.0, 0.0]
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
