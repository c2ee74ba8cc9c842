"""Generated test signals and coded audio files (shared by unit, flow and e2e tests)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ser_batch.demo import synthetic_voice


def sine(duration_s: float, sample_rate: int, frequency: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def chirp(duration_s: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (0.4 * np.sin(2 * np.pi * (100 + 800 * t / duration_s) * t)).astype(np.float32)


def noise(duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(duration_s * sample_rate)).astype(np.float32)


def voice(duration_s: float, sample_rate: int, seed: int = 0, f0_hz: float = 150.0) -> np.ndarray:
    """Speech-like audio, -20 to -28 dBFS, peaks <= 0.5 (``ser_batch.demo.synthetic_voice``): featurize takes it as speech."""
    rng = np.random.default_rng(seed)
    return synthetic_voice(rng, sample_rate=sample_rate, duration_s=duration_s, f0_hz=f0_hz)


SIGNALS: dict[str, Callable[[float, int], np.ndarray]] = {"voice": voice, "sine": sine, "chirp": chirp, "noise": noise}


def burst(kind: str, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A -20 dBFS burst: white noise, or voiced (gliding f0, harmonics to 3.4 kHz, syllable envelope)."""
    t = np.arange(n) / sample_rate
    if kind == "noise":
        signal = rng.standard_normal(n)
    else:
        f0 = rng.uniform(110, 160) + 40 * t / max(t[-1], 1e-9) + 8 * np.sin(2 * np.pi * 5.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        signal = sum(np.sin(k * phase) / k for k in range(1, 3400 // 200 + 1)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return 0.1 * signal / np.sqrt(np.mean(signal**2))


def call_waveform(
    duration_s: float,
    sample_rate: int,
    channels: list[list[tuple[float, float]]],
    rng: np.random.Generator,
    kind: str = "voiced",
) -> np.ndarray:
    """A call of digital silence with bursts at known (start_s, end_s) per channel; shape (n, n_channels)."""
    data = np.zeros((round(duration_s * sample_rate), len(channels)), dtype=np.float32)
    for index, spans in enumerate(channels):
        for start, end in spans:
            a, b = round(start * sample_rate), round(end * sample_rate)
            data[a:b, index] = burst(kind, b - a, sample_rate, rng)
    return data


def reader(waveform: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """``read(start, stop)`` over an in-memory waveform, as the scorer reads a decoded channel."""
    return lambda start, stop: waveform[start:stop]


def unfinalised(path: Path, *, data_size: int, riff_size: int | None = None) -> Path:
    """Rewrite a WAV's data chunk size (and RIFF size) as a recorder that never finalised its header leaves them."""
    raw = bytearray(path.read_bytes())
    data = raw.index(b"data")
    raw[data + 4 : data + 8] = struct.pack("<I", data_size)
    if riff_size is not None:
        raw[4:8] = struct.pack("<I", riff_size)
    path.write_bytes(bytes(raw))
    return path


def mp4(brand: bytes) -> bytes:
    """The first bytes of an MP4 container of this brand (``ftyp`` box, then a little ``mdat``)."""
    ftyp = b"ftyp" + brand + struct.pack(">I", 0) + brand + b"isom"
    return struct.pack(">I", 8 + len(ftyp) - 4) + ftyp + struct.pack(">I", 16) + b"mdat" + bytes(8)
