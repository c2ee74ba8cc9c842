"""Decode audio: whole clips to a mono float32 waveform at a target rate, or long calls one channel at a time (the only decoder).

Every file is opened by ``_sound_file`` and read with explicit frame counts, so formats libsndfile
opens as non-seekable (GSM 6.10, G.72x and NMS ADPCM in WAV, AIFF or W64) decode like the rest.
A WAV whose header declares no data, or less than follows it (a recorder that never finalised its
header), is read to the end of the file, as ffmpeg does.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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
        AudioError: if the file is empty (``EMPTY``), in a format libsndfile does not decode
            (``UNSUPPORTED``) or cannot decode, holds no samples, is longer than
            ``max_duration_s`` or too large for ``max_bytes`` (``TOO_LARGE``).
        OSError: if the file cannot be read at all (propagated: it may be transient).
    """
    with files.local_copy(uri, storage_options=storage_options) as path, open(path, "rb", buffering=0) as handle:
        # from the page cache the decoder is about to read: ~0.4 ms for a 350 KB clip
        content_hash = hashlib.file_digest(handle, "sha256").hexdigest()
        with _sound_file(handle) as sound:
            decoded = _decode(
                sound,
                sample_rate=sample_rate,
                quality=quality,
                max_duration_s=max_duration_s,
                max_bytes=max_bytes,
            )
        return replace(decoded, content_hash=content_hash)


def _decode(
    sound: soundfile.SoundFile,
    *,
    sample_rate: int | None,
    quality: str,
    max_duration_s: float | None,
    max_bytes: int | None,
) -> Decoded:
    with _decoding():
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
        samples = sound.read(max(sound.frames, 0), dtype="float32", always_2d=True)
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

EMPTY = "empty file (0 bytes)"
"""The message of a file with no bytes at all, whichever job reads it."""

UNSUPPORTED = "unsupported format"
"""How the message of a file in a container libsndfile does not decode (AAC in MP4, WMA, WebM...) begins."""

_BLOCK_FRAMES = 1 << 16  # frames decoded at a time: 0.5 MB for stereo float32


def audio_info(path: str) -> tuple[int, int, int]:
    """``(sample_rate, n_channels, n_frames)`` from a local file's header.

    Raises:
        AudioError: if the file is empty or libsndfile cannot read the header (see
            ``read_audio``), the file holds no samples, or its rate is below ``MIN_SAMPLE_RATE``.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw, _sound_file(raw) as handle:
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
    with open(path, "rb") as raw, _sound_file(raw) as handle:
        if not 0 <= channel < handle.channels:
            raise AudioError(f"channel {channel} not in a {handle.channels}-channel file")
        waveform = np.empty(max(int(handle.frames), 0), dtype=np.float32)
        filled = 0
        for block in _blocks(handle, waveform.size):
            waveform[filled : filled + block.shape[0]] = block[:, channel]
            filled += block.shape[0]
        sample_rate = int(handle.samplerate)
    return high_pass(waveform[:filled], sample_rate)


def decoded_length(path: str) -> int:
    """Frames libsndfile actually decodes from a local file: the header's count, or fewer when truncated.

    Decodes the file block by block and keeps nothing, as ``read_channel`` would count.

    Raises:
        AudioError: if libsndfile fails while decoding.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw, _sound_file(raw) as handle:
        return sum(block.shape[0] for block in _blocks(handle, max(int(handle.frames), 0)))


@contextmanager
def channel_reader(path: str, channel: int) -> Iterator[Callable[[int, int], NDArray[np.float32]]]:
    """Random access to one channel of a local file: ``read(start, stop)`` decodes just those frames.

    Memory is the frames asked for (all channels of them, briefly), never the whole file. A
    format libsndfile cannot seek in (GSM 6.10...) is decoded forward from where the last read
    ended, and from the start again when a read begins before the previous one did: reads in
    order of ``start`` (the VAD's passes, then the regions) decode each pass once.
    Callers keep ``stop`` within ``decoded_length(path)``. The samples are high-passed as
    ``read_channel``'s are: each read decodes ``SETTLE_S`` more before ``start`` for the filter
    to settle, so they equal ``read_channel(path, channel)[start:stop]`` to float32 rounding.

    Raises:
        AudioError: if libsndfile fails, the channel does not exist, or a read comes back short.
        OSError: if the file cannot be opened.
    """
    with open(path, "rb") as raw, _sound_file(raw) as handle:
        if not 0 <= channel < handle.channels:
            raise AudioError(f"channel {channel} not in a {handle.channels}-channel file")
        forward = None if handle.seekable() else _ForwardReader(path, channel)

        settle, sample_rate = round(SETTLE_S * handle.samplerate), int(handle.samplerate)

        def read(start: int, stop: int) -> NDArray[np.float32]:
            first = max(0, start - settle)
            if forward is not None:
                block = forward.read(first, stop)
            else:
                with _decoding():
                    handle.seek(first)
                    block = np.ascontiguousarray(handle.read(stop - first, dtype="float32", always_2d=True)[:, channel])
            if block.shape[0] != stop - first:
                raise AudioError(f"undecodable: frames {start}-{stop} gave {block.shape[0] - (start - first)} samples")
            return high_pass(block, sample_rate)[start - first :]

        try:
            yield read
        finally:
            if forward is not None:
                forward.close()


class _ForwardReader:
    """One channel of a file libsndfile cannot seek in, decoded forward; keeps the last read for overlapping ones."""

    def __init__(self, path: str, channel: int) -> None:
        self._path, self._channel = path, channel
        self._opened = ExitStack()
        self._sound: soundfile.SoundFile | None = None
        self._position = 0  # the next frame the decoder gives
        self._last_start, self._last = 0, np.empty(0, dtype=np.float32)

    def read(self, start: int, stop: int) -> NDArray[np.float32]:
        if self._sound is None or start < self._last_start:
            self.close()
            self._sound = self._opened.enter_context(_sound_file(self._opened.enter_context(open(self._path, "rb"))))
            self._position, self._last_start, self._last = 0, 0, np.empty(0, dtype=np.float32)
        kept = self._last[max(start - self._last_start, 0) : max(stop - self._last_start, 0)]
        if start + kept.size == stop:
            return np.array(kept)
        if self._position < start:
            for _ in _blocks(self._sound, start - self._position):
                pass
            self._position = start
        parts = [kept[: self._position - start]] if self._position > start else []
        parts.extend(block[:, self._channel] for block in _blocks(self._sound, stop - self._position))
        result = np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)
        self._position = start + result.size
        self._last_start, self._last = start, result
        return result.copy()  # the caller may filter it in place; the next read may need it as decoded

    def close(self) -> None:
        self._opened.close()
        self._sound = None


def _blocks(sound: soundfile.SoundFile, n_frames: int) -> Iterator[NDArray[np.float32]]:
    """Decode up to ``n_frames`` from where ``sound`` is, ``_BLOCK_FRAMES`` at a time, shape ``(n, channels)``.

    Always with a frame count: soundfile refuses to read "to the end" of a file libsndfile cannot seek in.
    """
    remaining = n_frames
    while remaining > 0:
        with _decoding():
            block = sound.read(min(_BLOCK_FRAMES, remaining), dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            return
        remaining -= block.shape[0]
        yield block


@contextmanager
def _sound_file(raw: io.RawIOBase | io.BufferedReader) -> Iterator[soundfile.SoundFile]:
    """The libsndfile reader of an open local file, from its start: the one way every function here opens audio.

    libsndfile reads the descriptor itself (through a file object it would call back into Python
    per block), except for a WAV whose header under-declares its data (``_unfinalised_wav``): that
    one is read through ``_PatchedHeader``, which shows libsndfile the sizes the file really has.

    Raises:
        AudioError: ``EMPTY`` for 0 bytes, ``UNSUPPORTED`` for a container libsndfile does not
            decode, else ``undecodable: <libsndfile's reason>``.
    """
    raw.seek(0)
    descriptor = raw.fileno()
    size = os.fstat(descriptor).st_size
    if size == 0:
        raise AudioError(EMPTY)
    patches = _unfinalised_wav(descriptor, size)
    source: Any = descriptor if patches is None else _PatchedHeader(raw, patches)
    try:
        with _decoding():
            sound = soundfile.SoundFile(source, closefd=False)
    except AudioError:
        container = _undecoded_container(os.pread(descriptor, 16, 0))
        if container is None:
            raise
        raise AudioError(
            f"{UNSUPPORTED}: {container}, which libsndfile does not decode; convert it to FLAC or WAV first"
        ) from None
    try:
        yield sound
    finally:
        sound.close()


_UNKNOWN_SIZES = 0xFFFFFFFF  # what streaming recorders write for "until the end": libsndfile reads on to the end itself
_MAX_CHUNKS = 64  # chunks looked through for "data": real WAVs put it after a handful (fmt, fact, LIST, bext, JUNK)


def _unfinalised_wav(descriptor: int, size: int) -> dict[int, bytes] | None:
    """The header bytes to rewrite (offset -> bytes) so a WAV's data chunk runs to the end of the file, or None.

    A recorder writes its RIFF and data sizes when it finishes; one that never did leaves 0 (or
    the size at its last update) with the audio following. ffmpeg reads a 0 data size to the end;
    here a data chunk is read to the end also when the bytes after its declared end are not a
    chunk (audio the header has not counted).
    """
    head = os.pread(descriptor, 12, 0)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    for _ in range(_MAX_CHUNKS):
        if offset + 8 > size:
            return None
        chunk_id, chunk_size = struct.unpack("<4sI", os.pread(descriptor, 8, offset))
        if chunk_id != b"data":
            offset += 8 + chunk_size + (chunk_size & 1)
            continue
        present = size - offset - 8
        if chunk_size == _UNKNOWN_SIZES or chunk_size >= present or present > _UNKNOWN_SIZES - 1:
            return None
        end = offset + 8 + chunk_size + (chunk_size & 1)
        if chunk_size > 0 and _is_chunk(os.pread(descriptor, 8, end), size - end):
            return None
        return {4: struct.pack("<I", min(size - 8, _UNKNOWN_SIZES - 1)), offset + 4: struct.pack("<I", present)}
    return None


def _is_chunk(header: bytes, available: int) -> bool:
    """Whether 8 bytes read as a RIFF chunk header: a printable ASCII id and a size that fits in what is left."""
    if len(header) < 8:
        return False
    chunk_id, chunk_size = struct.unpack("<4sI", header)
    return all(0x20 <= byte < 0x7F for byte in chunk_id) and 8 + chunk_size <= available


class _PatchedHeader(io.RawIOBase):
    """A local file as libsndfile should see it: its bytes, with ``patches`` (offset -> bytes) laid over them."""

    def __init__(self, raw: io.RawIOBase | io.BufferedReader, patches: dict[int, bytes]) -> None:
        super().__init__()
        self._raw, self._patches = raw, patches

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        start = self._raw.tell()
        view = memoryview(buffer).cast("B")
        n = self._raw.readinto(view) or 0
        for at, value in self._patches.items():
            low, high = max(at, start), min(at + len(value), start + n)
            if low < high:
                view[low - start : high - start] = value[low - at : high - at]
        return n


def _undecoded_container(head: bytes) -> str | None:
    """The container of compressed audio libsndfile does not open, named from a file's first 16 bytes.

    >>> _undecoded_container(bytes.fromhex("0000001c66747970") + b"M4A "), _undecoded_container(b"RIFF")
    ('MP4 (brand M4A)', None)
    """
    if head[4:8] == b"ftyp":
        return f"MP4 (brand {head[8:12].decode('ascii', 'replace').strip()})"
    if head.startswith(bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")):
        return "ASF (WMA)"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head.startswith(b"#!AMR"):
        return "AMR"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS sync word, MPEG layer bits 00
        return "AAC (ADTS)"
    return None


@contextmanager
def _decoding() -> Iterator[None]:
    """Turn libsndfile's errors into ``AudioError``; OSErrors from Python pass through."""
    try:
        yield
    except soundfile.LibsndfileError as error:
        raise AudioError(f"undecodable: {error.error_string}") from None
    except (RuntimeError, ValueError, EOFError) as error:  # soundfile raises these for some truncations
        raise AudioError(f"undecodable: {error}") from None
