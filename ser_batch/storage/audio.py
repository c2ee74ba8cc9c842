"""Decode audio: whole clips to a mono float32 waveform at a target rate, or long calls one channel at a time (the only decoder)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import soundfile
from numpy.typing import NDArray

from ser_batch.errors import AudioError
from ser_batch.features.highpass import BLOCK_SAMPLES, SETTLE_S, high_pass
from ser_batch.features.resample import resample
from ser_batch.storage import files


@dataclass(frozen=True)
class Decoded:
    """A decoded clip: mono ``waveform`` at ``sample_rate``, plus what the file itself said.

    ``content_hash`` is the sha256 of the file's bytes (64 hex digits): equal for copies of
    one file under any name, different for a re-encoded one.
    """

    waveform: NDArray[np.float32]
    sample_rate: int
    original_sample_rate: int
    n_channels: int
    duration_s: float
    content_hash: str = ""


MAX_CLIP_S = 600.0
"""Longest file ``read_audio`` decodes whole (s): featurize is for clips; long calls go to ``ser-batch score``."""

TOO_LARGE = "too large to decode in memory"
"""How the message of a file refused for the memory it would need begins."""


def read_audio(
    uri: str,
    *,
    sample_rate: int | None,
    quality: str = "soxr_hq",
    max_duration_s: float | None = MAX_CLIP_S,
    max_bytes: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Decoded:
    """Read a whole file, mix it down to mono and resample it, as ``librosa.load`` does.

    The header is checked before any sample is decoded, so a file longer than
    ``max_duration_s``, or whose decoding (``decoding_bytes``) would need more than ``max_bytes``,
    costs no memory (a remote one is first copied to local disk).

    Args:
        uri: local path or ``s3://`` URI.
        sample_rate: target rate in Hz; None keeps the file's own rate.
        quality: soxr quality name (``soxr_hq`` is librosa's default).
        max_duration_s: refuse longer files; None accepts any length.
        max_bytes: refuse files whose decoding needs more memory (bytes); None accepts any.
        storage_options: fsspec options for remote URIs.

    Returns:
        The decoded clip; ``waveform`` is float32 with shape ``(n,)``, high-passed
        (``ser_batch.features.highpass``: no DC, nothing below ~70 Hz).

    Raises:
        AudioError: if the file is empty, libsndfile cannot decode it, it holds no samples,
            it is longer than ``max_duration_s`` or too large for ``max_bytes`` (``TOO_LARGE``).
        OSError: if the file cannot be read at all (propagated: it may be transient).
    """
    with files.local_copy(uri, storage_options=storage_options) as path, open(path, "rb", buffering=0) as handle:
        if not handle.read(1):
            raise AudioError("empty file (0 bytes)")
        handle.seek(0)
        # from the page cache the decoder is about to read: ~0.4 ms for a 350 KB clip
        content_hash = hashlib.file_digest(handle, "sha256").hexdigest()
        handle.seek(0)
        # libsndfile reads the descriptor itself: through the file object it calls back into Python per block
        decoded = _decode(
            handle.fileno(),
            sample_rate=sample_rate,
            quality=quality,
            max_duration_s=max_duration_s,
            max_bytes=max_bytes,
        )
        return replace(decoded, content_hash=content_hash)


def _decode(
    handle: Any, *, sample_rate: int | None, quality: str, max_duration_s: float | None, max_bytes: int | None
) -> Decoded:
    with _decoding(), soundfile.SoundFile(handle, closefd=False) as sound:
        original_rate = int(sound.samplerate)
        header_s = sound.frames / original_rate
        if max_duration_s is not None and header_s > max_duration_s:
            raise AudioError(
                f"too long for a clip: {header_s:.0f} s > {max_duration_s:.0f} s; score long recordings with `ser-batch score`"
            )
        needed = decoding_bytes(sound.frames, sound.channels, original_rate, sample_rate)
        if max_bytes is not None and needed > max_bytes:
            what = f"to decode {header_s:.0f} s of {sound.channels} channels at {original_rate} Hz"
            raise too_large_error(needed, max_bytes, what)
        samples = sound.read(dtype="float32", always_2d=True)
    if samples.shape[0] == 0:
        raise AudioError("no samples: the header is valid but the data is empty or truncated")
    n_channels = samples.shape[1]
    # librosa.to_mono: plain mean over channels.
    mono = samples.mean(axis=1, dtype=np.float32) if n_channels > 1 else samples[:, 0]
    target_rate = original_rate if sample_rate is None else sample_rate
    waveform = high_pass(resample(np.ascontiguousarray(mono), original_rate, target_rate, quality=quality), target_rate)
    return Decoded(waveform, target_rate, original_rate, n_channels, samples.shape[0] / original_rate)


def decoding_bytes(n_frames: int, n_channels: int, original_rate: int, sample_rate: int | None) -> int:
    """Peak memory of ``read_audio`` for a file (bytes): all channels, mono mix, resampled and high-passed waveform.

    All float32, plus the high-pass's block temporaries.

    >>> decoding_bytes(9 * 60 * 48_000, 8, 48_000, 8_000) // 2**20  # 9 minutes, 8 channels at 48 kHz, for 8 kHz
    923
    """
    n_out = n_frames if sample_rate is None else -(-n_frames * sample_rate // original_rate)
    return 4 * (n_frames * n_channels + (n_frames if n_channels > 1 else 0) + 2 * n_out) + 16 * min(
        n_out, BLOCK_SAMPLES
    )


def too_large_error(needed_bytes: int, max_bytes: int, what: str) -> AudioError:
    """The error of a file refused before decoding because it would need ``needed_bytes`` where ``max_bytes`` are free.

    >>> str(too_large_error(3 << 30, 1 << 30, "to decode 540 s of 8 channels at 48000 Hz"))
    'too large to decode in memory: ~3072 MiB to decode 540 s of 8 channels at 48000 Hz, 1024 MiB free on this worker'
    """
    return AudioError(
        f"{TOO_LARGE}: ~{needed_bytes / 2**20:.0f} MiB {what}, {max_bytes / 2**20:.0f} MiB free on this worker"
    )


MIN_SAMPLE_RATE = 4000
"""Calls below this rate (Hz) are refused by ``audio_info``: no speech band left to score."""

_BLOCK_FRAMES = 1 << 16  # frames decoded at a time: 0.5 MB for stereo float32


def audio_info(path: str) -> tuple[int, int, int]:
    """``(sample_rate, n_channels, n_frames)`` from a local file's header.

    Raises:
        AudioError: if libsndfile cannot read the header, the file holds no samples, or
            its rate is below ``MIN_SAMPLE_RATE``.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw, _decoding(), soundfile.SoundFile(raw.fileno(), closefd=False) as handle:
        sample_rate, n_channels, n_frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
    if n_frames <= 0:
        raise AudioError("no samples: the header is valid but the data is empty or truncated")
    if sample_rate < MIN_SAMPLE_RATE:
        raise AudioError(f"sample rate {sample_rate} Hz < {MIN_SAMPLE_RATE} Hz: no speech band to score")
    return sample_rate, n_channels, n_frames


def read_channel(path: str, channel: int) -> NDArray[np.float32]:
    """Decode one channel of a local file block by block, holding only that channel.

    Opening goes through Python (``open``) so permission and missing-file errors keep
    their ``OSError`` types instead of becoming libsndfile messages.

    Returns:
        float32 samples in [-1, 1], high-passed (``ser_batch.features.highpass``), shape ``(n_frames,)``;
        shorter than the header says when the data is truncated.

    Raises:
        AudioError: if libsndfile fails while decoding or the channel does not exist.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw, _decoding(), soundfile.SoundFile(raw.fileno(), closefd=False) as handle:
        if not 0 <= channel < handle.channels:
            raise AudioError(f"channel {channel} not in a {handle.channels}-channel file")
        waveform = np.empty(max(int(handle.frames), 0), dtype=np.float32)
        filled = 0
        for block in handle.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
            n = min(block.shape[0], waveform.size - filled)
            waveform[filled : filled + n] = block[:n, channel]
            filled += n
            if filled == waveform.size:
                break
        sample_rate = int(handle.samplerate)
    return high_pass(waveform[:filled], sample_rate)


def decoded_length(path: str) -> int:
    """Frames libsndfile actually decodes from a local file: the header's count, or fewer when truncated.

    Decodes the file block by block and keeps nothing, as ``read_channel`` would count.

    Raises:
        AudioError: if libsndfile fails while decoding.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw, _decoding(), soundfile.SoundFile(raw.fileno(), closefd=False) as handle:
        n_frames, decoded = max(int(handle.frames), 0), 0
        for block in handle.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
            decoded += block.shape[0]
            if decoded >= n_frames:
                break
    return min(decoded, n_frames)


@contextmanager
def channel_reader(path: str, channel: int) -> Iterator[Callable[[int, int], NDArray[np.float32]]]:
    """Random access to one channel of a local file: ``read(start, stop)`` decodes just those frames.

    Memory is the frames asked for (all channels of them, briefly), never the whole file.
    Callers keep ``stop`` within ``decoded_length(path)``. The samples are high-passed as
    ``read_channel``'s are: each read decodes ``SETTLE_S`` more before ``start`` for the filter
    to settle, so they equal ``read_channel(path, channel)[start:stop]`` to float32 rounding.

    Raises:
        AudioError: if libsndfile fails, the channel does not exist, or a read comes back short.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw:
        with _decoding():
            handle = soundfile.SoundFile(raw.fileno(), closefd=False)
        try:
            if not 0 <= channel < handle.channels:
                raise AudioError(f"channel {channel} not in a {handle.channels}-channel file")

            settle = round(SETTLE_S * handle.samplerate)

            def read(start: int, stop: int) -> NDArray[np.float32]:
                first = max(0, start - settle)
                with _decoding():
                    handle.seek(first)
                    block = handle.read(stop - first, dtype="float32", always_2d=True)
                if block.shape[0] != stop - first:
                    raise AudioError(
                        f"undecodable: frames {start}-{stop} gave {block.shape[0] - (start - first)} samples"
                    )
                return high_pass(np.ascontiguousarray(block[:, channel]), int(handle.samplerate))[start - first :]

            yield read
        finally:
            handle.close()


@contextmanager
def _decoding() -> Iterator[None]:
    """Turn libsndfile's errors into ``AudioError``; OSErrors from Python pass through."""
    try:
        yield
    except soundfile.LibsndfileError as error:
        raise AudioError(f"undecodable: {error.error_string}") from None
    except (RuntimeError, ValueError, EOFError) as error:  # soundfile raises these for some truncations
        raise AudioError(f"undecodable: {error}") from None
