from __future__ import annotations

import os

import librosa
import numpy as np
import pytest
import soundfile

from ser_batch.errors import AudioError
from ser_batch.features.highpass import high_pass
from ser_batch.storage.audio import read_audio


@pytest.mark.parametrize("wav_file", [(0.5, 48_000), (0.5, 8_000), (0.5, 22_050), (0.5, 24_414)], indirect=True)
def test_read_is_librosa_load_high_passed(wav_file) -> None:
    expected = high_pass(librosa.load(wav_file)[0], 22_050)
    decoded = read_audio(str(wav_file), sample_rate=22_050)
    assert decoded.waveform.dtype == np.float32
    np.testing.assert_array_equal(decoded.waveform, expected)
    assert decoded.duration_s == pytest.approx(0.5)


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_mixed_down_like_librosa(write_wav, channels: int) -> None:
    path = write_wav("multi.wav", channels=channels, sample_rate=16_000)
    decoded = read_audio(str(path), sample_rate=22_050)
    np.testing.assert_allclose(decoded.waveform, high_pass(librosa.load(path)[0], 22_050), atol=1e-7)
    assert decoded.n_channels == channels and decoded.original_sample_rate == 16_000


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_sample_formats_decode(write_wav, subtype: str) -> None:
    path = write_wav(f"fmt_{subtype}.wav", kind="sine", subtype=subtype, sample_rate=22_050)
    decoded = read_audio(str(path), sample_rate=22_050)
    assert 0.45 < np.abs(decoded.waveform).max() <= 0.55  # a 0.5 sine, +8% from the high-pass at its abrupt start


def test_flac_decodes(write_wav) -> None:
    path = write_wav("clip.flac", sample_rate=96_000)
    assert read_audio(str(path), sample_rate=22_050).waveform.size == 22_050


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty file"),
        (os.urandom(4000), "undecodable"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "undecodable"),
        (b"%PDF-1.4 not audio at all" * 20, "undecodable"),
    ],
)
def test_bad_bytes_raise_audio_error(tmp_path, data: bytes, match: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(AudioError, match=match):
        read_audio(str(path), sample_rate=22_050)


def test_truncated_data_decodes_what_is_there(write_wav) -> None:
    path = write_wav("long.wav", duration_s=1.0, sample_rate=16_000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decoded = read_audio(str(path), sample_rate=16_000)
    assert 0.4 < decoded.duration_s < 0.6


def test_header_only_wav_has_no_samples(tmp_path) -> None:
    path = tmp_path / "header.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16_000)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(str(path), sample_rate=16_000)


@pytest.mark.parametrize(
    ("original_rate", "sample_rate"),
    [(48_000, 22_050), (24_414, 22_050), (44_100, 16_000), (8_000, 22_050), (16_000, 8_000)],
)
def test_resample_gives_soxr_resample_samples_call_after_call(rng, original_rate: int, sample_rate: int) -> None:
    import soxr

    from ser_batch.features.resample import resample

    for n in (1, 2, 17, 1000, 4097, 48_000, 100_003):
        waveform = rng.normal(0, 0.2, n).astype(np.float32)
        expected = soxr.resample(waveform, original_rate, sample_rate, quality="soxr_hq")
        actual = resample(waveform, original_rate, sample_rate)
        assert actual.dtype == np.float32 and actual.shape == expected.shape
        assert np.array_equal(actual, expected), n
