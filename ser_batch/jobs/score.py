"""Score call recordings with a saved model: plan what is new, then per shard decode, segment, predict, write (IO driver).

A run:

1. ``ser_batch.jobs.plan.plan_scoring`` lists SOURCE, keeps the recordings dated on or after ``since``
   (``recording_date``: a ``YYYY/MM/DD`` folder, else the modification date in ``ScoreConfig.timezone``),
   drops those whose (path, content key) DEST/calls already holds
   for this ``model_id`` (and those with an error row for it, unless ``retry_errors``),
   and cuts the rest into deterministic shards (``ser_batch.shards``).
2. ``score_shard`` decodes every channel of a recording separately, at its own rate,
   finds speech on it (``ser_batch.scoring.segments``), keeps the speech each channel carries
   itself and scores a copied channel once (``ser_batch.scoring.crosstalk``), cuts it into
   windows and featurizes each with the model's own feature set (``ser_batch.scoring.calls``),
   measures how the call went on each channel (talk time, turns, silence, interruptions, loudness, pace:
   ``ser_batch.scoring.conversation``; the anger trend: ``ser_batch.scoring.calls``),
   predicts all windows of the recording in one batch, and writes DEST/errors, DEST/predictions and DEST/calls
   part files in the folder of each recording's date (``call_date``) named by shard id
   (``ser_batch.storage.tables``); every row also carries the ``run_date`` and the channel's ``role``.

``model_id`` is ``<model>-<feature set>-<first 12 hex of sha256(metadata.json, model.keras)>``:
two trainings never share it, so a new model scores everything again, and an unchanged
model directory never does.

The model is loaded once per process (see ``load_model_once``). Memory per recording is
bounded whatever its length: channels are decoded from a local file (remote recordings are
first downloaded to a temporary file, not into memory); channels of up to
``WHOLE_CHANNEL_SAMPLES`` are decoded whole, each once, and kept until the recording is
featurized (32 MB a channel at most: the crosstalk test compares all channels before any is
featurized), longer ones are read in blocks (the VAD then keeps ~40 bytes per 10 ms frame:
14 MB for an hour), plus the window features (~1 KB per window) of the shard's recordings
until they are predicted together.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from ser_batch._typing import SampleReader, Span
from ser_batch.config import EncoderFeatureConfig, FeatureConfig, ScoreConfig
from ser_batch.features.encoder import FrameEncoder
from ser_batch.features.extract import feature_bytes, feature_names, warm_up
from ser_batch.features.windows import window_features_at, window_groups, window_samples
from ser_batch.jobs.featurize import encoder_of
from ser_batch.jobs.guard import NO_GUARD, FileGuard
from ser_batch.jobs.plan import call_date
from ser_batch.model.artifact import Artifact
from ser_batch.schema import SCORE_SCHEMAS, SCORE_TABLES, WORKER_STAGE, ModelIdentity, date_value, error_row
from ser_batch.scoring.calls import call_columns, segment_columns, trend_columns
from ser_batch.scoring.conversation import conversation_columns, speech_loudness, speech_rate
from ser_batch.scoring.crosstalk import attributed_spans, band_levels, duplicate_channels
from ser_batch.scoring.segments import streamed_speech_spans, windows
from ser_batch.shards import FileInfo, ScoreShardSummary, Shard
from ser_batch.storage.audio import audio_info, channel_reader, decoded_length, read_channel
from ser_batch.storage.encoder import check_encoder_file
from ser_batch.storage.files import PER_FILE_ERRORS, local_copy
from ser_batch.storage.model_dir import load_artifact, read_model_identity
from ser_batch.storage.tables import write_scores

WHOLE_CHANNEL_SAMPLES = 1 << 23
"""Channels up to this many samples (17 min at 8 kHz, 32 MB as float32) are decoded whole; longer ones are streamed."""
_REGION_S = 60.0  # a streamed channel is featurized this many seconds of windows at a time
_VAD_BYTES_PER_S = 4000  # the VAD keeps ~40 bytes per 10 ms frame of a channel
_LEVEL_BYTES_PER_S = 1200  # speech-band levels kept for every channel (float32 per 10 ms frame, and its masks)


@dataclass(frozen=True)
class ChannelWindows:
    """One decoded channel's speech windows and their feature vectors, its speech, loudness and pace.

    A channel that copies an earlier one (``duplicate_of``, ``scoring.crosstalk.duplicate_channels``)
    has no windows or speech of its own: it is scored once, as that channel.
    ``spans`` is the speech the channel carries itself (``scoring.crosstalk.attributed_spans``);
    ``loudness_lufs`` and ``speech_rate`` are ``scoring.conversation``'s figures of it.
    """

    channel: int
    windows: list[Span]
    features: NDArray[np.float32]
    duplicate_of: int | None = None
    spans: list[Span] = field(default_factory=list)
    loudness_lufs: float | None = None
    speech_rate: float | None = None


@dataclass(frozen=True)
class Scores:
    """In-memory result of scoring some recordings: the three tables, totals, and each recording's ``call_date``."""

    tables: dict[str, pa.Table]
    n_scored: int
    audio_s: float
    speech_s: float
    call_dates: dict[str, str] = field(default_factory=dict)  # path -> YYYY-MM-DD


# One model per worker process, kept in this module. Dask workers are long-lived processes
# that run many shard tasks, so a module-level cache loads a model once per worker without
# any help from Dask: the library stays runnable in-process, in tests and under any
# executor. The key holds the content hash (model_id), so a retrained MODEL_DIR is loaded
# afresh and an unchanged one never is. A Dask worker plugin would tie the library to
# distributed and need registering on every cluster, including ones the flow does not own.
_MODELS: OrderedDict[tuple[str, str], Artifact] = OrderedDict()
_MODELS_KEPT = 2  # the current model and the one before it, at most
_MODELS_LOCK = threading.Lock()


def load_model_once(identity: ModelIdentity, *, storage_options: dict[str, Any] | None = None) -> tuple[Artifact, bool]:
    """The loaded model of ``identity``, from this process's cache or loaded now.

    Returns:
        ``(artifact, loaded)``: ``loaded`` is True when this call loaded it.

    Raises:
        StorageError, SchemaError: as ``ser_batch.storage.load_artifact``.
    """
    key = (identity.model_dir, identity.model_id)
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key], False
        artifact = load_artifact(identity.model_dir, storage_options=storage_options)
        _MODELS[key] = artifact
        while len(_MODELS) > _MODELS_KEPT:
            _MODELS.popitem(last=False)
        return artifact, True


def check_model(identity: ModelIdentity, *, storage_options: dict[str, Any] | None = None) -> None:
    """Load the model into this process (``load_model_once``) and predict one row of zeros.

    Run once before any work, so a broken model directory fails the run in one line naming it,
    not every worker after its retries; the process that then runs the flow does not load it again.

    For a model of an encoder set, also checks that its ONNX file still has the hash it was trained with.

    Raises:
        StorageError, SchemaError: as ``ser_batch.storage.load_artifact``.
        ConfigError: if the model's encoder file has changed (``storage.check_encoder_file``).
    """
    artifact, _ = load_model_once(identity, storage_options=storage_options)
    artifact.probabilities(np.zeros((1, int(artifact.model.input_shape[-1])), np.float32))
    features = artifact.features
    if isinstance(features, EncoderFeatureConfig):
        check_encoder_file(features, storage_options=storage_options)  # a changed file stops the run in one line


def score_shard(
    shard: Shard,
    dest: str,
    model_dir: str,
    config: ScoreConfig,
    *,
    run_date: str,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> ScoreShardSummary:
    """Score one shard of recordings and write its part files under deterministic names.

    Each recording's rows go to its ``call_date`` folder (``jobs.plan.call_date``); re-running the
    same shard overwrites the same files. The model is taken from this process's cache
    (``load_model_once``). BLAS/OpenMP is limited to one thread: workers are processes, one per core.

    Args:
        shard: recordings with their content keys, from ``plan_scoring``.
        dest: local folder or ``s3://`` prefix of the outputs.
        model_dir: the model directory.
        config: VAD and window settings, channel roles and the time zone of recording dates.
        run_date: the ``YYYY-MM-DD`` day of the run, stored as a column (the call date of an undated recording).
        storage_options: fsspec options for remote SOURCE, DEST and MODEL_DIR.
        guard: known poison recordings, the memory and the time one may take (``jobs.guard``).

    Raises:
        ConfigError: if ``run_date`` is not a date.
        OSError: on a read failure that may be transient (the task should retry).
        StorageError, SchemaError: if the model cannot be loaded or DEST written.
    """
    started, started_at, cpu = time.perf_counter(), time.time(), time.process_time()
    run_date = date_value(run_date, name="run_date")
    identity = read_model_identity(model_dir, storage_options=storage_options)
    artifact, loaded = load_model_once(identity, storage_options=storage_options)
    with threadpool_limits(limits=1):
        if loaded and guard.time_limit_s is not None:  # a fresh process: its one-off costs are not the first file's
            features = artifact.features
            warm_up(features, encoder=encoder_of(features, storage_options=storage_options))
        scores = score_files(
            shard.files, artifact, config, run_date=run_date, storage_options=storage_options, guard=guard
        )
    written = write_scores(
        scores.tables,
        dest,
        shard.shard_id,
        call_dates=scores.call_dates.values(),
        storage_options=storage_options,
    )
    calls = scores.tables["calls"]
    return ScoreShardSummary(
        shard_id=shard.shard_id,
        model_id=identity.model_id,
        n_recordings=len(shard.files),
        n_scored=scores.n_scored,
        n_errors=scores.tables["errors"].num_rows,
        n_channels=calls.num_rows,
        n_segments=scores.tables["predictions"].num_rows,
        audio_s=scores.audio_s,
        speech_s=scores.speech_s,
        started_at=started_at,
        elapsed_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu,
        model_loaded=loaded,
        part_files=tuple(written),
        recordings=recording_outcomes(shard.files, scores),
    )


def score_files(
    files: Sequence[FileInfo],
    artifact: Artifact,
    config: ScoreConfig,
    *,
    run_date: str | None = None,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> Scores:
    """Score recordings, collecting undecodable ones as error rows instead of failing.

    Recordings are decoded and featurized one by one under ``guard`` (``score_shard``); the model
    then predicts the windows of all of them in one batch (a Keras call costs ~100 ms whatever its
    size up to thousands of rows). A channel's ``role`` is ``config.channel_roles[channel]`` for a
    recording with as many channels as roles, else null (mono recordings carry both parties).

    Args:
        files: the recordings.
        artifact: the loaded model.
        config: VAD and window settings, channel roles and the time zone of recording dates.
        run_date: the run's ``YYYY-MM-DD`` (default: today in UTC).
        storage_options: fsspec options for remote recordings.
        guard: known poison recordings, the memory and the time one may take.

    Returns:
        The ``errors``, ``predictions`` and ``calls`` tables (``schema.SCORE_SCHEMAS``): every
        input has calls rows (one per channel, also without speech) or one error row; and each
        input's ``call_date``.

    Raises:
        OSError: on a read failure that may be transient.
    """
    now = datetime.now(UTC)
    run_day = date.fromisoformat(date_value(run_date or now.date().isoformat(), name="run_date"))
    days = {info.uri: call_date(info, config.timezone, run_day.isoformat()) for info in files}
    features = artifact.features
    encoder = encoder_of(features, storage_options=storage_options)
    model_id = artifact.identity.model_id
    stamp = {"model_id": model_id, "scored_at": now, "run_date": run_day}
    rows: dict[str, list[dict[str, Any]]] = {"errors": [], "predictions": [], "calls": []}
    recordings: list[tuple[FileInfo, list[ChannelWindows], int, float]] = []
    for info in files:
        progress = _Progress()
        try:
            poison = guard.verdict(info)
            if poison is not None:
                progress.stage = WORKER_STAGE
                raise poison
            with guard.watch(info):
                channels, sample_rate, duration_s = read_recording_windows(
                    info, config, features, progress, storage_options=storage_options, guard=guard, encoder=encoder
                )
        except PER_FILE_ERRORS as error:
            row = error_row(
                info.uri, info.content_key, error, stage=progress.stage, feature_set=features.name, run_at=now
            )
            rows["errors"].append({**row, "model_id": model_id, "run_date": run_day, "call_date": days[info.uri]})
            continue
        recordings.append((info, channels, sample_rate, duration_s))
    channels_scored = [channel for _, channels, _, _ in recordings for channel in channels]
    width = len(feature_names(features))
    matrix = (
        np.concatenate([c.features for c in channels_scored]) if channels_scored else np.zeros((0, width), np.float32)
    )
    voices = np.repeat(np.arange(len(channels_scored)), [len(c.windows) for c in channels_scored])
    probabilities = artifact.probabilities(matrix, voices=voices)  # each channel is one voice
    offset = 0
    audio_s = speech_s = 0.0
    for info, channels, sample_rate, duration_s in recordings:
        key = {"path": info.uri, "content_key": info.content_key, **stamp, "call_date": days[info.uri]}
        roles = config.channel_roles if config.channel_roles and len(config.channel_roles) == len(channels) else None
        calls: dict[int, dict[str, Any]] = {}
        own = [channel for channel in channels if channel.duplicate_of is None]
        conversation = dict(
            zip((c.channel for c in own), conversation_columns([c.spans for c in own], duration_s), strict=True)
        )
        for channel in channels:
            role = None if roles is None else roles[channel.channel]
            if channel.duplicate_of is None:
                probs = probabilities[offset : offset + len(channel.windows)]
                offset += len(channel.windows)
                segments = segment_columns(
                    channel.windows, probs, artifact.classes, min_confidence=config.min_confidence
                )
                rows["predictions"].extend(
                    {**key, "channel": channel.channel, "role": role, **dict(zip(segments, values, strict=True))}
                    for values in zip(*segments.values(), strict=True)
                )
                calls[channel.channel] = {
                    **call_columns(channel.windows, probs, artifact.classes),
                    **trend_columns(channel.windows, probs, artifact.classes),
                    **conversation[channel.channel],
                    "loudness_lufs": channel.loudness_lufs,
                    "speech_rate": channel.speech_rate,
                }
                speech_s += calls[channel.channel]["speech_s"]
            rows["calls"].append(
                {
                    **key,
                    "channel": channel.channel,
                    "role": role,
                    "n_channels": len(channels),
                    "duplicate_of_channel": channel.duplicate_of,
                    "sample_rate": sample_rate,
                    "duration_s": duration_s,
                    # A copy carries the figures of the channel it copies, whose predictions rows are its own.
                    **calls[channel.channel if channel.duplicate_of is None else channel.duplicate_of],
                }
            )
        audio_s += duration_s
    tables = {name: pa.Table.from_pylist(rows[name], schema=SCORE_SCHEMAS[name]) for name in SCORE_TABLES}
    return Scores(tables, n_scored=len(recordings), audio_s=audio_s, speech_s=speech_s, call_dates=days)


def recording_outcomes(files: Sequence[FileInfo], scores: Scores) -> tuple[tuple[str, str, bool, str], ...]:
    """``(path, content_key, scored, call_date)`` of each input of ``score_files``: scored False for those with an error row."""
    failed = set(scores.tables["errors"].column("path").to_pylist())
    return tuple((info.uri, info.content_key, info.uri not in failed, scores.call_dates[info.uri]) for info in files)


@dataclass
class _Progress:
    stage: str = "read"


def read_recording_windows(
    info: FileInfo,
    config: ScoreConfig,
    features: FeatureConfig,
    progress: _Progress | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
    encoder: FrameEncoder | None = None,
) -> tuple[list[ChannelWindows], int, float]:
    """Decode each channel of one recording, find its speech windows and featurize them.

    First every channel in turn: its speech spans and, with several channels, its speech-band
    levels. Then, with several channels, copies of an earlier channel are found (scored once)
    and each channel keeps only the speech it carries itself, not the other parties' leaks
    (``ser_batch.scoring.crosstalk``). Then the windows of each channel are featurized.
    Channels of up to ``WHOLE_CHANNEL_SAMPLES`` samples are decoded whole, once, and kept
    until the recording is done; longer ones are read in blocks (three times for the spans
    and levels, then one region of windows at a time), so memory does not grow with their
    length beyond ~40 bytes per 10 ms frame. That memory, estimated from the header, is
    checked against ``guard`` before decoding. ``encoder`` is the loaded model of an encoder
    feature set (``ser_batch.jobs.featurize.encoder_of``), None for other sets.

    Returns:
        ``(channels, sample_rate, duration_s)``: one ``ChannelWindows`` per channel, in order,
        and the file's own rate and length.

    Raises:
        AudioError: if the file cannot be decoded, holds no samples, has a rate below
            ``storage.audio.MIN_SAMPLE_RATE`` or NaN/inf samples, or needs more memory than
            ``guard`` allows.
        OSError: if it cannot be read (permission and missing-file errors are per file).
    """
    progress = progress or _Progress()
    progress.stage = "read"
    with local_copy(info.uri, storage_options=storage_options) as path:
        progress.stage = "decode"
        sample_rate, n_channels, n_frames = audio_info(path)
        guard.check_memory(
            _recording_bytes(sample_rate, n_channels, n_frames, config, features),
            f"to score {n_frames / sample_rate:.0f} s of {n_channels} channels at {sample_rate} Hz",
        )
        if n_frames > WHOLE_CHANNEL_SAMPLES:
            n_frames = decoded_length(path)
            decoded: dict[int, NDArray[np.float32]] | None = None
        else:
            decoded = {}
        spans, levels, copies, sizes = _channel_speech(
            path, n_channels, n_frames, decoded, sample_rate, config, progress
        )
        channels = []
        width = len(feature_names(features))
        for channel in range(n_channels):
            if channel in copies:
                channels.append(ChannelWindows(channel, [], np.zeros((0, width), np.float32), copies[channel]))
                continue
            with _channel_samples(path, channel, n_frames, decoded) as (read, size):
                placed = windows(
                    spans[channel],
                    window_s=config.window_s,
                    hop_s=config.hop_s,
                    min_window_s=config.min_window_s,
                    duration_s=size / sample_rate,
                )
                progress.stage = "features"
                channels.append(
                    ChannelWindows(
                        channel,
                        placed,
                        _region_features(read, placed, sample_rate, features, encoder),
                        spans=spans[channel],
                        loudness_lufs=speech_loudness(read, spans[channel], sample_rate),
                        speech_rate=speech_rate(levels[channel], spans[channel], sample_rate, config),
                    )
                )
            if decoded is not None:
                decoded.pop(channel)  # its samples are no longer needed
    return channels, sample_rate, max(sizes, default=0) / sample_rate


def _channel_speech(
    path: str,
    n_channels: int,
    n_frames: int,
    decoded: dict[int, NDArray[np.float32]] | None,
    sample_rate: int,
    config: ScoreConfig,
    progress: _Progress,
) -> tuple[list[list[Span]], list[NDArray[np.float32]], dict[int, int], list[int]]:
    """Each channel's own speech spans (none for a copy), speech-band levels, the copies ``{channel: original}``, lengths."""
    spans, levels, sizes = [], [], []
    for channel in range(n_channels):
        progress.stage = "decode"
        with _channel_samples(path, channel, n_frames, decoded) as (read, size):
            progress.stage = "segment"
            spans.append(streamed_speech_spans(read, size, sample_rate, config))
            levels.append(band_levels(read, size, sample_rate, config))  # crosstalk, and speech_rate's envelope
            sizes.append(size)
    if n_channels < 2:
        return spans, levels, {}, sizes

    def read_excerpt(channel: int, start: int, stop: int) -> NDArray[np.floating]:
        with _channel_samples(path, channel, n_frames, decoded) as (read, _):
            return read(start, stop)

    copies = duplicate_channels(spans, levels, read_excerpt, sizes, sample_rate, config)
    own = [channel for channel in range(n_channels) if channel not in copies]
    attributed = attributed_spans([spans[c] for c in own], [levels[c] for c in own], sample_rate, config)
    return [attributed[own.index(c)] if c in own else [] for c in range(n_channels)], levels, copies, sizes


def _recording_bytes(
    sample_rate: int, n_channels: int, n_frames: int, config: ScoreConfig, features: FeatureConfig
) -> int:
    seconds = n_frames / sample_rate
    # Whole channels are all kept until the recording is done; streamed ones hold no samples.
    decoded = 4 * n_frames * n_channels if n_frames <= WHOLE_CHANNEL_SAMPLES else 0
    spans = _VAD_BYTES_PER_S * seconds + _LEVEL_BYTES_PER_S * seconds * n_channels
    region = 4 * _REGION_S * sample_rate + feature_bytes(round(_REGION_S * features.sample_rate), features)
    windows = 4 * n_channels * seconds / config.hop_s * len(feature_names(features))
    return round(decoded + spans + region + windows)


@contextmanager
def _channel_samples(
    path: str, channel: int, n_frames: int, decoded: dict[int, NDArray[np.float32]] | None
) -> Iterator[tuple[SampleReader, int]]:
    """A reader of one channel and its length: decoded whole once and kept in ``decoded``, or (None) read on demand."""
    if decoded is not None:
        if channel not in decoded:
            decoded[channel] = read_channel(path, channel)
        waveform = decoded[channel]
        yield (lambda start, stop: waveform[start:stop]), waveform.size
        return
    with channel_reader(path, channel) as read:
        yield read, n_frames


def _region_features(
    read: SampleReader, windows: list[Span], sample_rate: int, features: FeatureConfig, encoder: FrameEncoder | None
) -> NDArray[np.float32]:
    bounds = window_samples(windows, sample_rate)
    matrix = np.empty((len(bounds), len(feature_names(features))), dtype=np.float32)
    for rows in window_groups(bounds, round(_REGION_S * sample_rate)):
        low, high = min(bounds[row][0] for row in rows), max(bounds[row][1] for row in rows)
        region = np.asarray(read(low, high), dtype=np.float32)
        matrix[rows] = window_features_at(
            region,
            sample_rate,
            [(bounds[row][0] - low, bounds[row][1] - low) for row in rows],
            features,
            encoder=encoder,
        )
    return matrix
