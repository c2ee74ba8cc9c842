"""Every kind of bad or unusual input the reliability issue lists, through the batch driver."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from signals_gen import voice

from ser_batch import storage
from ser_batch.config import feature_config
from ser_batch.jobs.featurize import featurize_files

SEED = feature_config("seed268")


def _voice(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    mono = 1.8 * voice(seconds, rate)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else mono


def _wav(path: Path, data: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> None:
    soundfile.write(path, data, rate, subtype=subtype)


def _truncated_data(path: Path) -> None:
    _wav(path, _voice(1.0, 16_000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _nan_float(path: Path) -> None:
    samples = _voice(1.0, 16_000)
    samples[100:200] = np.nan
    _wav(path, samples, subtype="FLOAT")


def _inf_float(path: Path) -> None:
    samples = _voice(1.0, 16_000)
    samples[5] = np.inf
    _wav(path, samples, subtype="FLOAT")


def _one_hour(path: Path) -> None:
    # 1 hour of 8 kHz 16-bit mono, written in blocks so the test itself stays small in memory.
    with soundfile.SoundFile(path, "w", samplerate=8_000, channels=1, subtype="PCM_16") as sound:
        block = _voice(60.0, 8_000)
        for _ in range(60):
            sound.write(block)


BAD: dict[str, tuple[Callable[[Path], None], str]] = {
    "one-hour.wav": (_one_hour, "too long for a clip: 3600 s > 600 s"),
    "empty.wav": (lambda p: p.write_bytes(b""), "empty file"),
    "random.wav": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "undecodable"),
    "truncated-header.wav": (lambda p: p.write_bytes(b"RIFF\x24\x08\x00\x00WAVEfm"), "undecodable"),
    "text.wav": (lambda p: p.write_text("hello, I am a text file named like audio\n" * 40), "undecodable"),
    "nan.wav": (_nan_float, "NaN or Inf"),
    "inf.wav": (_inf_float, "NaN or Inf"),
    "silent.wav": (lambda p: _wav(p, np.zeros(16_000, np.float32)), "no speech"),
    "one-frame-short.wav": (lambda p: _wav(p, _voice(0.05, 16_000)), "no speech"),
}

GOOD: dict[str, Callable[[Path], None]] = {
    "pcm8.wav": lambda p: _wav(p, _voice(1.0, 16_000), subtype="PCM_U8"),
    "pcm24.wav": lambda p: _wav(p, _voice(1.0, 16_000), subtype="PCM_24"),
    "float32.wav": lambda p: _wav(p, _voice(1.0, 16_000), subtype="FLOAT"),
    "clipped.wav": lambda p: _wav(p, np.clip(_voice(1.0, 16_000) * 20, -1, 1)),
    "truncated-data.wav": _truncated_data,
    "six-channels.wav": lambda p: _wav(p, _voice(1.0, 16_000, channels=6)),
    "rate-96k.wav": lambda p: _wav(p, _voice(1.0, 96_000), rate=96_000, subtype="PCM_24"),
    "rate-8k.wav": lambda p: _wav(p, _voice(1.0, 8_000), rate=8_000),
    "name with spaces.wav": lambda p: _wav(p, _voice(1.0, 16_000)),
    "ünïcødé-名前.flac": lambda p: _wav(p, _voice(1.0, 16_000)),
    'quote\'s "double".wav': lambda p: _wav(p, _voice(1.0, 16_000)),
}


@pytest.fixture
def bad_archive(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    root.mkdir()
    for name, (make, _) in BAD.items():
        make(root / name)
    for name, make in GOOD.items():
        make(root / name)
    os.symlink(root, root / "loop")  # a symlink loop: must not hang the listing
    return root


def test_each_bad_input_is_an_error_row_with_its_reason_and_the_rest_featurizes(bad_archive: Path) -> None:
    files = list(storage.list_files(str(bad_archive)))
    assert len(files) == len(BAD) + len(GOOD)
    features, errors = featurize_files(files, SEED)
    reasons = {
        Path(p).name: m
        for p, m in zip(errors.column("path").to_pylist(), errors.column("message").to_pylist(), strict=True)
    }
    assert set(reasons) == set(BAD)
    for name, (_, reason) in BAD.items():
        assert reason in reasons[name], (name, reasons[name])
    assert {Path(p).name for p in features.column("path").to_pylist()} == set(GOOD)
    vectors = np.stack(features.column("features").to_numpy(zero_copy_only=False))
    assert np.isfinite(vectors).all()


def test_a_one_hour_file_is_refused_from_its_header_without_decoding(bad_archive: Path) -> None:
    import resource

    path = bad_archive / "one-hour.wav"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, errors = featurize_files([info for info in storage.list_files(str(bad_archive)) if info.uri == str(path)], SEED)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert errors.column("message").to_pylist()[0].startswith("too long for a clip")
    assert grown_mib < 50  # decoding it whole would take > 100 MiB of float32


def test_originals_are_described_as_they_were(bad_archive: Path) -> None:
    features, _ = featurize_files(list(storage.list_files(str(bad_archive))), SEED)
    rows = {
        Path(r["path"]).name: r
        for r in features.select(["path", "sample_rate", "n_channels", "duration_s"]).to_pylist()
    }
    assert (rows["rate-96k.wav"]["sample_rate"], rows["rate-8k.wav"]["sample_rate"]) == (96_000, 8_000)
    assert rows["six-channels.wav"]["n_channels"] == 6
    assert rows["truncated-data.wav"]["duration_s"] < 0.5
    assert rows["name with spaces.wav"]["path"] == str(bad_archive / "name with spaces.wav")


def test_unreadable_file_is_recorded(bad_archive: Path, unprivileged) -> None:
    target = bad_archive / "pcm24.wav"
    target.chmod(0)
    try:
        with unprivileged():
            _, errors = featurize_files(list(storage.list_files(str(bad_archive))), SEED)
    finally:
        target.chmod(0o644)
    assert "pcm24.wav" in {Path(p).name for p in errors.column("path").to_pylist()}
