from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
from signals_gen import mp4, unfinalised

from ser_batch.errors import AudioError
from ser_batch.features.highpass import high_pass
from ser_batch.storage.audio import (
    audio_info,
    channel_reader,
    decoded_length,
    read_audio,
    read_channel,
)

RATE = 8000


def speech_like(duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced-speech stand-in: 120-240 Hz harmonics with syllable-rate envelope and a little noise."""
    t = np.arange(round(duration_s * RATE)) / RATE
    pitch = 160 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.25 * voiced * envelope / 3 + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def pcm_and_coded(tmp_path: Path, rng: np.random.Generator, fmt: str, subtype: str) -> tuple[np.ndarray, Path]:
    signal = speech_like(4.0, rng)
    path = tmp_path / f"call.{fmt.lower()}"
    soundfile.write(path, signal, RATE, format=fmt, subtype=subtype)  # libsndfile writes these formats mono only
    with soundfile.SoundFile(path) as handle:
        assert not handle.seekable()  # what this test is about: libsndfile opens these as non-seekable
    return signal, path


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize(
    ("fmt", "subtype", "least"),
    [("WAV", "GSM610", 0.95), ("AIFF", "GSM610", 0.95), ("W64", "GSM610", 0.95), ("WAV", "G721_32", 0.99)],
)
def test_formats_libsndfile_cannot_seek_in_decode_in_every_reader(tmp_path, rng, fmt, subtype, least) -> None:
    original, path = pcm_and_coded(tmp_path, rng, fmt, subtype)

    rate, n_channels, n_frames = audio_info(str(path))
    clip = read_audio(str(path), sample_rate=None).waveform
    channel = read_channel(str(path), 0)

    assert (rate, n_channels) == (RATE, 1) and decoded_length(str(path)) == channel.size == clip.size
    assert abs(n_frames - original.size) < 400  # GSM fills its last 320-sample block
    assert correlation(high_pass(original, RATE), clip) > least  # wav49 speech: 0.988 against its PCM original
    np.testing.assert_array_equal(clip, channel)


def test_a_channel_of_a_file_that_cannot_seek_is_read_at_any_start_in_any_order(tmp_path, rng) -> None:
    _, path = pcm_and_coded(tmp_path, rng, "WAV", "GSM610")
    whole = read_channel(str(path), 0)
    spans = [(0, 900), (600, 5000), (5000, 5001), (4000, 20_000), (30_000, 31_999), (100, 200), (31_000, 32_000)]

    with channel_reader(str(path), 0) as read:
        for start, stop in spans:  # overlapping, forward past a gap, then back to the start
            block = read(start, stop)
            np.testing.assert_allclose(block, whole[start:stop], atol=1e-6)  # the filter settled
            block[:] = 0  # a caller filtering in place changes nothing the next read gives
    with pytest.raises(AudioError, match="channel 1 not in a 1-channel file"), channel_reader(str(path), 1):
        pass


@pytest.mark.parametrize(
    ("data_size", "riff_size"),
    [(0, 0), (0, 36), (0, None), (1000, None), (0xFFFFFFFF, 0xFFFFFFFF)],  # the last: libsndfile reads on itself
    ids=["both-0", "riff-header-only", "data-0", "data-under-declared", "streaming-unknown"],
)
def test_a_wav_header_never_finalised_is_read_to_the_end_of_the_file(
    tmp_path, rng, data_size: int, riff_size: int | None
) -> None:
    signal = speech_like(20.0, rng)
    soundfile.write(tmp_path / "final.wav", signal, RATE, subtype="PCM_16")
    expected = high_pass(soundfile.read(tmp_path / "final.wav", dtype="float32")[0], RATE)  # decoding high-passes
    soundfile.write(tmp_path / "call.wav", signal, RATE, subtype="PCM_16")
    path = str(unfinalised(tmp_path / "call.wav", data_size=data_size, riff_size=riff_size))

    assert audio_info(path) == (RATE, 1, 20 * RATE) and decoded_length(path) == 20 * RATE
    np.testing.assert_array_equal(read_audio(path, sample_rate=None).waveform, expected)
    np.testing.assert_array_equal(read_channel(path, 0), expected)
    with channel_reader(path, 0) as read:
        np.testing.assert_allclose(read(150_000, 160_000), expected[150_000:], atol=1e-6)  # the filter settled


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "GSM610"), ("WAVEX", "PCM_16"), ("WAV", "ULAW"), ("WAV", "IMA_ADPCM")]
)
def test_a_coded_wav_whose_header_was_never_finalised_is_read_to_the_end(tmp_path, rng, fmt, subtype) -> None:
    original = speech_like(4.0, rng)
    soundfile.write(tmp_path / "call.wav", original, RATE, format=fmt, subtype=subtype)
    whole = read_channel(str(tmp_path / "call.wav"), 0)
    path = str(unfinalised(tmp_path / "call.wav", data_size=0, riff_size=0))

    np.testing.assert_array_equal(read_audio(path, sample_rate=None).waveform, whole)
    assert audio_info(path)[2] == whole.size and correlation(high_pass(original, RATE), whole) > 0.95


def test_an_under_declared_data_size_is_read_on_through_audio_but_not_into_a_chunk(tmp_path, rng) -> None:
    soundfile.write(tmp_path / "call.wav", speech_like(1.0, rng), RATE, subtype="PCM_16")
    expected = high_pass(soundfile.read(tmp_path / "call.wav", dtype="float32")[0], RATE)  # decoding high-passes
    listing = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"some recorder\x00"
    raw = bytearray((tmp_path / "call.wav").read_bytes())
    raw[4:8] = struct.pack("<I", len(raw) - 8 + len(listing))
    (tmp_path / "tagged.wav").write_bytes(bytes(raw) + listing)  # a finalised file with a chunk after its data
    unfinalised(tmp_path / "call.wav", data_size=4000)  # its header last updated 2000 frames in

    np.testing.assert_array_equal(read_audio(str(tmp_path / "call.wav"), sample_rate=None).waveform, expected)
    np.testing.assert_array_equal(read_audio(str(tmp_path / "tagged.wav"), sample_rate=None).waveform, expected)


EVERY_READER = {
    "audio_info": audio_info,
    "read_audio": lambda path: read_audio(path, sample_rate=None),
    "read_channel": lambda path: read_channel(path, 0),
    "decoded_length": decoded_length,
    "channel_reader": lambda path: channel_reader(path, 0).__enter__(),
}


@pytest.mark.parametrize("reader", EVERY_READER.values(), ids=EVERY_READER.keys())
def test_an_empty_file_has_one_message_in_every_reader(tmp_path, reader) -> None:
    (tmp_path / "call.wav").write_bytes(b"")

    with pytest.raises(AudioError, match=r"^empty file \(0 bytes\)$"):
        reader(str(tmp_path / "call.wav"))


COMPRESSED = {  # the first bytes of each container, as an encoder writes them, and a little payload
    "call.m4a": (mp4(b"M4A "), "MP4 (brand M4A)"),
    "call.mp4": (mp4(b"isom"), "MP4 (brand isom)"),
    "call.3gp": (mp4(b"3gp4"), "MP4 (brand 3gp4)"),
    "call.wma": (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + bytes(200), "ASF (WMA)"),
    "call.webm": (
        bytes.fromhex("1a45dfa39f4286810142f7810142f2810442f381084282847765626d") + bytes(200),
        "Matroska/WebM",
    ),
    "call.amr": (b"#!AMR\n" + bytes.fromhex("3c0217249067") * 20, "AMR"),
    "call.aac": (bytes.fromhex("fff16040407ffc") + bytes(200), "AAC (ADTS)"),
}


@pytest.mark.parametrize("reader", EVERY_READER.values(), ids=EVERY_READER.keys())
@pytest.mark.parametrize("name", COMPRESSED)
def test_compressed_containers_libsndfile_does_not_decode_say_so(tmp_path, name, reader) -> None:
    data, container = COMPRESSED[name]
    (tmp_path / name).write_bytes(data)

    with pytest.raises(
        AudioError, match=rf"^unsupported format: {re.escape(container)}, which libsndfile does not decode"
    ):
        reader(str(tmp_path / name))
