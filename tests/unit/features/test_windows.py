from __future__ import annotations

import numpy as np
import pytest
from signals_gen import burst, reader

from ser_batch.config import ScoreConfig, feature_config
from ser_batch.errors import AudioError, ConfigError
from ser_batch.features.extract import feature_names, feature_vector
from ser_batch.features.windows import (
    supports_shared_frames,
    window_features_at,
    window_groups,
    window_samples,
    window_vectors,
)
from ser_batch.scoring.segments import speech_windows
from ser_batch.storage.audio import read_audio

# Groups computed from the unscaled spectrum frame by frame: these must be bit-identical.
EXACT_PREFIXES = ("zcr_", "rms_db_", "centroid_", "rolloff_", "flatness_", "f0_", "voiced_", "voicing_")


def per_window(samples: np.ndarray, windows: list[tuple[int, int]], config) -> np.ndarray:
    return np.stack(
        [feature_vector(np.ascontiguousarray(samples[a:b]), config.sample_rate, config) for a, b in windows]
    )


def assert_same_numbers(shared: np.ndarray, reference: np.ndarray, config) -> None:
    # Mel power and contrast are scaled after projection: float32 rounding of dB values in the
    # tens, carried through the DCT, leaves up to ~3e-5 on MFCC statistics near zero.
    np.testing.assert_allclose(shared, reference, rtol=1e-5, atol=5e-5)
    exact = [i for i, name in enumerate(feature_names(config)) if name.startswith(EXACT_PREFIXES)]
    np.testing.assert_array_equal(shared[:, exact], reference[:, exact])


def speechy(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    # Voiced bursts and noise over line noise, with a stretch of digital silence inside a window.
    n = 14 * sample_rate
    samples = (10 ** (-70 / 20) * rng.standard_normal(n)).astype(np.float32)
    for start_s, end_s, kind in [
        (0.2, 4.9, "voiced"),
        (5.3, 9.1, "voiced"),
        (9.4, 10.0, "noise"),
        (10.5, 13.8, "voiced"),
    ]:
        a, b = round(start_s * sample_rate), round(end_s * sample_rate)
        samples[a:b] += 0.1 * burst(kind, b - a, sample_rate, rng).astype(np.float32)
    samples[round(7.0 * sample_rate) : round(7.4 * sample_rate)] = 0.0
    return samples


@pytest.mark.parametrize(("name", "sample_rate"), [("stats8k", 8000), ("stats8k-tel", 8000), ("stats16k", 16000)])
def test_shared_frames_give_the_per_window_features(name: str, sample_rate: int, rng: np.random.Generator) -> None:
    config = feature_config(name)
    samples = speechy(sample_rate, rng)
    # 3 s windows every 1.5 s, a last window moved back to the span's end, a short window,
    # and windows off the hop grid of the others (so they share no frames with them).
    seconds = [
        (0.0, 3.0),
        (1.5, 4.5),
        (2.0, 5.0),
        (5.3, 8.3),
        (6.8, 9.8),
        (7.1, 10.1),
        (10.5, 11.6),
        (0.00625, 3.00625),
        (11.0, 14.0),
    ]
    windows = window_samples(seconds, sample_rate)

    shared = window_vectors(samples, windows, config)

    assert shared.shape == (len(windows), len(feature_names(config))) and shared.dtype == np.float32
    assert_same_numbers(shared, per_window(samples, windows, config), config)


def test_shared_frames_give_the_per_window_features_of_real_speech_windows(ser_dev) -> None:
    config = feature_config("stats8k")
    clips = [
        read_audio(str(path), sample_rate=8000).waveform
        for path in sorted(ser_dev.glob("ravdess/Actor_15/*.flac"))[:12]
    ]
    gap = np.zeros(4000, dtype=np.float32)
    samples = np.concatenate([part for clip in clips for part in (clip, gap)])
    windows = window_samples(speech_windows(reader(samples), samples.size, 8000, ScoreConfig(min_gap_s=1.0)), 8000)
    assert len(windows) >= 12

    assert_same_numbers(window_vectors(samples, windows, config), per_window(samples, windows, config), config)


def test_windows_in_several_groups_give_the_same_numbers_as_in_one(rng: np.random.Generator) -> None:
    config = feature_config("stats8k")
    samples = speechy(8000, rng)
    windows = window_samples([(0.0, 3.0), (1.5, 4.5), (5.3, 8.3), (6.8, 9.8)], 8000)

    together = window_vectors(samples, windows, config)
    apart = np.concatenate([window_vectors(samples, [window], config) for window in windows])

    np.testing.assert_allclose(together, apart, rtol=1e-6, atol=1e-6)


def test_bad_windows_raise_as_the_featurizer_does() -> None:
    config = feature_config("stats8k")
    samples = np.zeros(8000 * 4, dtype=np.float32)
    samples[: 8000 * 2] = 0.1
    with pytest.raises(AudioError, match="silent"):
        window_vectors(samples, [(0, 8000), (16000, 32000)], config)
    with pytest.raises(AudioError, match="too short"):
        window_vectors(samples, [(0, 100)], config)


def test_no_windows_give_an_empty_matrix_and_other_sets_are_refused() -> None:
    assert window_vectors(np.zeros(100, np.float32), [], feature_config("stats8k")).shape == (0, 265)
    assert not supports_shared_frames(feature_config("seed268"))
    with pytest.raises(ConfigError, match="not a plain stats set"):
        window_vectors(np.zeros(100, np.float32), [], feature_config("seed268"))


def test_window_groups_bound_the_region_of_each_group() -> None:
    windows = [(0, 3), (1, 4), (2, 5), (10, 13), (30, 60)]
    groups = window_groups(windows, 10)
    assert groups == [[0, 1, 2], [3], [4]]
    for group in groups[:-1]:
        assert max(windows[i][1] for i in group) - min(windows[i][0] for i in group) <= 10


def test_pooling_windows_together_equals_pooling_each_alone(rng: np.random.Generator) -> None:
    from ser_batch.features.extract import pooled_stats_vector
    from ser_batch.features.windows import _pooled, _WindowFrames

    windows = []
    for n_frames in (301, 301, 250, 301, 3):
        full = rng.standard_normal((25, n_frames)) * rng.uniform(0.1, 100.0, (25, 1))
        windows.append(
            _WindowFrames(
                logmel=(rng.standard_normal((40, n_frames)) * 20 - 40).astype(np.float32),
                full=full,
                deltas=[rng.standard_normal(20), rng.standard_normal(20)],
                contrast=rng.standard_normal((6, n_frames)) * 10,
                f0=rng.uniform(80, 300, n_frames),
                strength=rng.uniform(0, 1, n_frames),
                voiced=rng.uniform(0, 1, n_frames) > 0.3,
            )
        )

    together = _pooled(windows)

    for row, w in zip(together, windows, strict=True):
        alone = pooled_stats_vector(
            w.logmel, w.full[:20], w.full[20:], w.deltas, w.contrast, w.f0, w.strength, w.voiced
        )
        np.testing.assert_array_equal(row, alone)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
def test_window_features_resample_each_window_to_the_feature_rate(sample_rate) -> None:
    config = feature_config("seed268")
    t = np.arange(4 * sample_rate) / sample_rate
    waveform = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)

    matrix = window_features_at(waveform, sample_rate, window_samples([(0.0, 3.0), (1.0, 4.0)], sample_rate), config)

    assert matrix.shape == (2, 268) and matrix.dtype == np.float32 and np.isfinite(matrix).all()
    np.testing.assert_allclose(matrix[0], matrix[1], rtol=1e-3, atol=1e-3)  # a steady tone looks the same


def test_window_features_of_no_windows_is_empty() -> None:
    assert window_features_at(np.zeros(8000, np.float32), 8000, [], feature_config("seed268")).shape == (0, 268)
