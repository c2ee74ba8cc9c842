from __future__ import annotations

import librosa
import numpy as np
import pytest
from recipe_reference import recipe_vector
from signals_gen import SIGNALS

from ser_batch.config import feature_config
from ser_batch.errors import AudioError
from ser_batch.features.extract import feature_names, feature_vector

SEED = feature_config("seed268")


@pytest.mark.parametrize("kind", sorted(SIGNALS))
@pytest.mark.parametrize("duration_s", [0.1, 1.3])
def test_seed268_equals_the_recipe(kind: str, duration_s: float) -> None:
    waveform = SIGNALS[kind](duration_s, SEED.sample_rate)
    np.testing.assert_allclose(
        feature_vector(waveform, SEED.sample_rate, SEED),
        recipe_vector(waveform, SEED.sample_rate),
        rtol=1e-5,
        atol=1e-6,
    )


def test_seed268_equals_the_recipe_on_real_clips(ser_dev) -> None:
    clips = sorted(ser_dev.glob("*/**/*.flac"))[::400]
    for path in clips:
        waveform, sample_rate = librosa.load(path)  # the recipe's own loader
        np.testing.assert_allclose(
            feature_vector(waveform, sample_rate, SEED), recipe_vector(waveform, sample_rate), rtol=1e-5, atol=1e-6
        )
    assert len(clips) >= 6


@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_vector_contract_shape_dtype_finite_repeatable(kind: str) -> None:
    waveform = SIGNALS[kind](0.8, SEED.sample_rate)
    first = feature_vector(waveform, SEED.sample_rate, SEED)
    assert first.shape == (len(feature_names(SEED)),) == (268,)
    assert first.dtype == np.float32
    assert np.isfinite(first).all()
    assert first.tobytes() == feature_vector(waveform.copy(), SEED.sample_rate, SEED).tobytes()


def test_clipped_input_stays_finite() -> None:
    waveform = np.clip(SIGNALS["sine"](0.5, SEED.sample_rate) * 50, -1, 1).astype(np.float32)
    assert np.isfinite(feature_vector(waveform, SEED.sample_rate, SEED)).all()


def test_feature_names_are_unique_and_ordered() -> None:
    names = feature_names(SEED)
    assert len(set(names)) == len(names)
    assert names[:2] == ["mfcc_001_mean", "mfcc_002_mean"] and names[-1] == "mel_128_mean"


@pytest.mark.parametrize(
    ("waveform", "sample_rate", "match"),
    [
        (np.full(4096, np.nan, np.float32), 22_050, "NaN or Inf"),
        (np.r_[np.ones(4095, np.float32) * 0.1, np.float32(np.inf)], 22_050, "NaN or Inf"),
        (np.zeros(4096, np.int16), 22_050, "dtype int16 != float32"),
        (np.zeros(0, np.float32), 22_050, "too short: 0 samples"),
        (np.full(100, 0.1, np.float32), 22_050, "too short: 100 samples < 2048"),
        (np.full(4096, 0.1, np.float32), 16_000, "sample_rate 16000 != 22050"),
        (np.full((4096, 2), 0.1, np.float32), 22_050, "expected 1-D mono"),
        (np.zeros(4096, np.float32), 22_050, "silent"),
    ],
)
def test_contract_violations_raise_audio_error(waveform: np.ndarray, sample_rate: int, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        feature_vector(waveform, sample_rate, SEED)


STATS_SETS = ["stats16k", "stats8k", "stats8k-tel"]


def harmonic(f0: float, duration_s: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


@pytest.mark.parametrize("name", STATS_SETS)
@pytest.mark.parametrize("kind", sorted(SIGNALS))
@pytest.mark.parametrize("duration_s", [0.07, 1.3])
def test_stats_sets_shape_dtype_finite_repeatable(name: str, kind: str, duration_s: float) -> None:
    config = feature_config(name)
    waveform = SIGNALS[kind](duration_s, config.sample_rate)
    first = feature_vector(waveform, config.sample_rate, config)
    assert first.shape == (len(feature_names(config)),) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert first.tobytes() == feature_vector(waveform.copy(), config.sample_rate, config).tobytes()


@pytest.mark.parametrize("name", STATS_SETS)
def test_stats_sets_names_are_unique(name: str) -> None:
    names = feature_names(feature_config(name))
    assert len(set(names)) == len(names)
    assert names[0] == "logmel_01_mean" and names[-1] == "voicing_strength_mean"


@pytest.mark.parametrize("name", STATS_SETS)
def test_stats_sets_survive_clipping_and_leading_silence(name: str) -> None:
    config = feature_config(name)
    loud = np.clip(harmonic(150.0, 0.8, config.sample_rate) * 50, -1, 1).astype(np.float32)
    padded = np.concatenate([np.zeros(config.sample_rate // 2, np.float32), loud, np.zeros(300, np.float32)])
    for waveform in (loud, padded):
        assert np.isfinite(feature_vector(waveform, config.sample_rate, config)).all()


@pytest.mark.parametrize("name", STATS_SETS)
def test_stats_sets_raise_on_silence(name: str) -> None:
    config = feature_config(name)
    with pytest.raises(AudioError, match="silent"):
        feature_vector(np.zeros(config.sample_rate, np.float32), config.sample_rate, config)


@pytest.mark.parametrize("name", STATS_SETS)
def test_stats_sets_do_not_depend_on_gain(name: str) -> None:
    config = feature_config(name)
    waveform = harmonic(180.0, 1.0, config.sample_rate) + SIGNALS["noise"](1.0, config.sample_rate) * 0.05
    quiet = feature_vector((waveform * 0.1).astype(np.float32), config.sample_rate, config)
    np.testing.assert_allclose(feature_vector(waveform, config.sample_rate, config), quiet, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("f0", [90.0, 150.0, 240.0])
@pytest.mark.parametrize("name", STATS_SETS)
def test_stats_pitch_finds_the_fundamental_of_a_voiced_tone(name: str, f0: float) -> None:
    config = feature_config(name)
    vector = dict(
        zip(
            feature_names(config),
            feature_vector(harmonic(f0, 1.0, config.sample_rate), config.sample_rate, config),
            strict=True,
        )
    )
    assert abs(55.0 * 2 ** (vector["f0_st_p50"] / 12) - f0) < 0.02 * f0
    assert vector["voiced_fraction"] > 0.9
    noise = dict(
        zip(
            feature_names(config),
            feature_vector(SIGNALS["noise"](1.0, config.sample_rate), config.sample_rate, config),
            strict=True,
        )
    )
    assert noise["voiced_fraction"] < 0.2


@pytest.mark.parametrize("name", STATS_SETS)
def test_shared_stft_frames_equal_direct_librosa_calls(name: str) -> None:
    from ser_batch.features.extract import spectral_frames

    config = feature_config(name)
    waveform = SIGNALS["chirp"](1.0, config.sample_rate) + SIGNALS["noise"](1.0, config.sample_rate)
    sr, n_fft, hop = config.sample_rate, config.n_fft, config.hop_length
    frames = spectral_frames(np.abs(librosa.stft(waveform, n_fft=n_fft, hop_length=hop)), sr, config)
    mel = librosa.feature.melspectrogram(
        y=waveform, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    )
    mfcc = librosa.feature.mfcc(
        y=waveform,
        sr=sr,
        n_mfcc=config.n_mfcc,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    )
    contrast = librosa.feature.spectral_contrast(
        y=waveform, sr=sr, n_fft=n_fft, hop_length=hop, fmin=config.contrast_fmin, n_bands=config.n_contrast_bands
    )
    np.testing.assert_allclose(frames["mel"], mel, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(frames["mfcc"], mfcc, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(frames["contrast"], contrast, rtol=1e-4, atol=1e-4)


def test_stats8k_works_on_telephone_audio_resampled_from_8k() -> None:
    from ser_batch.features.augment import telephone_channel
    from ser_batch.features.resample import resample

    narrow = telephone_channel(harmonic(140.0, 1.0, 16_000), 16_000)
    for name in STATS_SETS:
        config = feature_config(name)
        vector = feature_vector(resample(narrow, 8_000, config.sample_rate), config.sample_rate, config)
        assert np.isfinite(vector).all()


def test_seed268_fingerprint_is_unchanged() -> None:
    assert SEED.fingerprint() == "c74da47aea1c7e7b"


FRAMES = feature_config("frames8k")


@pytest.mark.parametrize("kind", sorted(SIGNALS))
@pytest.mark.parametrize("duration_s", [0.07, 1.3, 4.0])
def test_frames_set_shape_dtype_finite_repeatable(kind: str, duration_s: float) -> None:
    waveform = SIGNALS[kind](duration_s, FRAMES.sample_rate)
    first = feature_vector(waveform, FRAMES.sample_rate, FRAMES)
    assert first.shape == (len(feature_names(FRAMES)),) == (150 * 40,) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert first.tobytes() == feature_vector(waveform.copy(), FRAMES.sample_rate, FRAMES).tobytes()


def test_frames_names_are_frame_major() -> None:
    names = feature_names(FRAMES)
    assert len(set(names)) == len(names)
    assert (
        names[:2] == ["logmel_01_t000", "logmel_02_t000"]
        and names[40] == "logmel_01_t001"
        and names[-1] == "logmel_40_t149"
    )


def test_frames_equal_direct_librosa_calls_cropped_to_the_centre() -> None:
    from ser_batch.features.extract import logmel_frames

    waveform = SIGNALS["noise"](4.0, FRAMES.sample_rate)  # stationary: no frame is trimmed
    sr, n_fft, hop = FRAMES.sample_rate, FRAMES.n_fft, FRAMES.hop_length
    power = np.abs(librosa.stft(waveform, n_fft=n_fft, hop_length=hop)) ** 2
    mel = librosa.feature.melspectrogram(
        y=waveform, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=FRAMES.n_mels, fmin=FRAMES.fmin, fmax=FRAMES.fmax
    )
    direct = librosa.power_to_db(mel / power.mean(), ref=1.0, amin=1e-10, top_db=80.0).T
    start = (direct.shape[0] - FRAMES.n_frames) // 2
    np.testing.assert_allclose(
        logmel_frames(waveform, sr, FRAMES), direct[start : start + FRAMES.n_frames], rtol=1e-4, atol=1e-3
    )


def test_short_clips_repeat_whole_frames_instead_of_padding() -> None:
    from ser_batch.features.extract import logmel_frames

    frames = logmel_frames(SIGNALS["chirp"](1.0, FRAMES.sample_rate), FRAMES.sample_rate, FRAMES)
    n_kept = 1 + FRAMES.sample_rate // FRAMES.hop_length  # 51 centred frames in one second
    np.testing.assert_array_equal(frames[n_kept : 2 * n_kept], frames[:n_kept])
    assert not np.array_equal(frames[1], frames[0])


def test_frames_trim_silence_and_do_not_depend_on_gain() -> None:
    voiced = harmonic(180.0, 1.0, FRAMES.sample_rate) + SIGNALS["noise"](1.0, FRAMES.sample_rate) * 0.05
    padded = np.concatenate(
        [np.zeros(FRAMES.sample_rate, np.float32), voiced, np.zeros(FRAMES.sample_rate, np.float32)]
    )
    quiet = (padded * 0.1).astype(np.float32)
    np.testing.assert_allclose(
        feature_vector(padded, FRAMES.sample_rate, FRAMES),
        feature_vector(quiet, FRAMES.sample_rate, FRAMES),
        rtol=1e-3,
        atol=1e-3,
    )
    clipped = np.clip(padded * 50, -1, 1).astype(np.float32)
    assert np.isfinite(feature_vector(clipped, FRAMES.sample_rate, FRAMES)).all()
    with pytest.raises(AudioError, match="silent"):
        feature_vector(np.zeros(FRAMES.sample_rate, np.float32), FRAMES.sample_rate, FRAMES)
