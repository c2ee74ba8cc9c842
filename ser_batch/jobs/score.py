"""Score call recordings with a saved model: plan what is new, then per shard decode, segment, predict, write (IO driver).

A run:

1. ``ser_batch.jobs.plan.plan_scoring`` lists SOURCE, keeps the recordings dated on or after ``since``
   (``recording_date``), drops those whose (path, content key) DEST/calls already holds
   for this ``model_id`` (and those with an error row for it, unless ``retry_errors``),
   and cuts the rest into deterministic shards (``ser_batch.shards``).
2. ``score_shard`` decodes every channel of a recording separately, at its own rate,
   finds speech windows on it (``ser_batch.scoring.segments``), featurizes each window with the
   model's own feature set (``ser_batch.scoring.calls``), predicts all windows of the
   recording in one batch, and writes DEST/errors, DEST/predictions and DEST/calls
   part files named by run date and shard id (``ser_batch.storage.tables``).

``model_id`` is ``<model>-<feature set>-<first 12 hex of sha256(metadata.json, model.keras)>``:
two trainings never share it, so a new model scores everything again, and an unchanged
model directory never does.

The model is loaded once per process (see ``load_model_once``). Memory per recording is
bounded whatever its length: channels are decoded one at a time from a local file (remote
recordings are first downloaded to a temporary file, not into memory); a channel of up to
``WHOLE_CHANNEL_SAMPLES`` is decoded whole (32 MB at most), a longer one is read in blocks
(the VAD then keeps ~40 bytes per 10 ms frame: 14 MB for an hour), plus the window
features (~1 KB per window) of the shard's recordings until they are predicted together.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from ser_batch._typing import SampleReader, Span
from ser_batch.config import FeatureConfig, ScoreConfig, feature_config
from ser_batch.features.extract import feature_bytes, feature_names, warm_up
from ser_batch.features.windows import window_features_at, window_groups, window_samples
from ser_batch.jobs.guard import NO_GUARD, FileGuard
from ser_batch.model.artifact import Artifact
from ser_batch.schema import SCORE_SCHEMAS, SCORE_TABLES, WORKER_STAGE, ModelIdentity, error_row, run_date_value
from ser_batch.scoring.calls import call_columns, segment_columns
from ser_batch.scoring.segments import speech_windows
from ser_batch.shards import FileInfo, ScoreShardSummary, Shard
from ser_batch.storage.audio import audio_info, channel_reader, decoded_length, read_channel
from ser_batch.storage.files import PER_FILE_ERRORS, local_copy
from ser_batch.storage.model_dir import load_artifact, read_model_identity
from ser_batch.storage.tables import write_scores

WHOLE_CHANNEL_SAMPLES = 1 << 23
"""Channels up to this many samples (17 min at 8 kHz, 32 MB as float32) are decoded whole; longer ones are streamed."""
_REGION_S = 60.0  # a streamed channel is featurized this many seconds of windows at a time
_VAD_BYTES_PER_S = 4000  # the VAD keeps ~40 bytes per 10 ms frame of a channel


@dataclass(frozen=True)
class ChannelWindows:
    """One decoded channel's speech windows and their feature vectors."""

    channel: int
    windows: list[Span]
    features: NDArray[np.float32]


@dataclass(frozen=True)
class Scores:
    """In-memory result of scoring some recordings: the three tables and totals."""

    tables: dict[str, pa.Table]
    n_scored: int
    audio_s: float
    speech_s: float


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

    Raises:
        StorageError, SchemaError: as ``ser_batch.storage.load_artifact``.
    """
    artifact, _ = load_model_once(identity, storage_options=storage_options)
    artifact.probabilities(np.zeros((1, int(artifact.model.input_shape[-1])), np.float32))


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

    Re-running the same shard for the same ``run_date`` overwrites the same files. The
    model is taken from this process's cache (``load_model_once``). BLAS/OpenMP is limited
    to one thread: workers are processes, one per core.

    Args:
        shard: recordings with their content keys, from ``plan_scoring``.
        dest: local folder or ``s3://`` prefix of the outputs.
        model_dir: the model directory.
        config: VAD and window settings.
        run_date: the ``YYYY-MM-DD`` partition to write (validated; never from file names).
        storage_options: fsspec options for remote SOURCE, DEST and MODEL_DIR.
        guard: known poison recordings, the memory and the time one may take (``jobs.guard``).

    Raises:
        ConfigError: if ``run_date`` is not a date.
        OSError: on a read failure that may be transient (the task should retry).
        StorageError, SchemaError: if the model cannot be loaded or DEST written.
    """
    started, started_at, cpu = time.perf_counter(), time.time(), time.process_time()
    run_date = run_date_value(run_date)
    identity = read_model_identity(model_dir, storage_options=storage_options)
    artifact, loaded = load_model_once(identity, storage_options=storage_options)
    with threadpool_limits(limits=1):
        if loaded and guard.time_limit_s is not None:  # a fresh process: its one-off costs are not the first file's
            warm_up(feature_config(artifact.feature_set))
        scores = score_files(shard.files, artifact, config, storage_options=storage_options, guard=guard)
    written = write_scores(scores.tables, dest, run_date, shard.shard_id, storage_options=storage_options)
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
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> Scores:
    """Score recordings, collecting undecodable ones as error rows instead of failing.

    Recordings are decoded and featurized one by one under ``guard`` (``score_shard``); the model
    then predicts the windows of all of them in one batch (a Keras call costs ~100 ms whatever its
    size up to thousands of rows).

    Returns:
        The ``errors``, ``predictions`` and ``calls`` tables (``schema.SCORE_SCHEMAS``): every
        input has calls rows (one per channel, also without speech) or one error row.

    Raises:
        OSError: on a read failure that may be transient.
    """
    now = datetime.now(UTC)
    features = feature_config(artifact.feature_set)
    model_id = artifact.identity.model_id
    stamp = {"model_id": model_id, "scored_at": now}
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
                    info, config, features, progress, storage_options=storage_options, guard=guard
                )
        except PER_FILE_ERRORS as error:
            row = error_row(
                info.uri, info.content_key, error, stage=progress.stage, feature_set=features.name, run_at=now
            )
            rows["errors"].append({**row, "model_id": model_id})
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
        key = {"path": info.uri, "content_key": info.content_key, **stamp}
        for channel in channels:
            probs = probabilities[offset : offset + len(channel.windows)]
            offset += len(channel.windows)
            segments = segment_columns(channel.windows, probs, artifact.classes, min_confidence=config.min_confidence)
            rows["predictions"].extend(
                {**key, "channel": channel.channel, **dict(zip(segments, values, strict=True))}
                for values in zip(*segments.values(), strict=True)
            )
            call = call_columns(channel.windows, probs, artifact.classes)
            rows["calls"].append(
                {
                    **key,
                    "channel": channel.channel,
                    "n_channels": len(channels),
                    "sample_rate": sample_rate,
                    "duration_s": duration_s,
                    **call,
                }
            )
            speech_s += call["speech_s"]
        audio_s += duration_s
    tables = {name: pa.Table.from_pylist(rows[name], schema=SCORE_SCHEMAS[name]) for name in SCORE_TABLES}
    return Scores(tables, n_scored=len(recordings), audio_s=audio_s, speech_s=speech_s)


def recording_outcomes(files: Sequence[FileInfo], scores: Scores) -> tuple[tuple[str, str, bool], ...]:
    """``(path, content_key, scored)`` of each input of ``score_files``: False for those with an error row."""
    failed = set(scores.tables["errors"].column("path").to_pylist())
    return tuple((info.uri, info.content_key, info.uri not in failed) for info in files)


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
) -> tuple[list[ChannelWindows], int, float]:
    """Decode each channel of one recording in turn, find its speech windows and featurize them.

    A channel of up to ``WHOLE_CHANNEL_SAMPLES`` samples is decoded whole; a longer one is
    read in blocks, twice for the VAD and then one region of windows at a time, so memory
    does not grow with its length beyond the VAD's ~40 bytes per 10 ms frame. That memory,
    estimated from the header, is checked against ``guard`` before decoding.

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
        streamed = n_frames > WHOLE_CHANNEL_SAMPLES
        if streamed:
            n_frames = decoded_length(path)
        channels, n_samples = [], 0
        for channel in range(n_channels):
            progress.stage = "decode"
            with _channel_samples(path, channel, n_frames if streamed else None) as (read, size):
                n_samples = max(n_samples, size)
                progress.stage = "segment"
                windows = speech_windows(read, size, sample_rate, config)
                progress.stage = "features"
                channels.append(
                    ChannelWindows(channel, windows, _region_features(read, windows, sample_rate, features))
                )
            del read  # it holds a whole channel's samples: free them before the next channel is decoded
    return channels, sample_rate, n_samples / sample_rate


def _recording_bytes(
    sample_rate: int, n_channels: int, n_frames: int, config: ScoreConfig, features: FeatureConfig
) -> int:
    seconds = n_frames / sample_rate
    channel = 4 * min(n_frames, WHOLE_CHANNEL_SAMPLES) + _VAD_BYTES_PER_S * seconds
    region = 4 * _REGION_S * sample_rate + feature_bytes(round(_REGION_S * features.sample_rate), features)
    windows = 4 * n_channels * seconds / config.hop_s * len(feature_names(features))
    return round(channel + region + windows)


@contextmanager
def _channel_samples(path: str, channel: int, n_frames: int | None) -> Iterator[tuple[SampleReader, int]]:
    """A reader of one channel and its length: decoded whole (``n_frames`` None) or read on demand."""
    if n_frames is None:
        waveform = read_channel(path, channel)
        yield (lambda start, stop: waveform[start:stop]), waveform.size
        return
    with channel_reader(path, channel) as read:
        yield read, n_frames


def _region_features(
    read: SampleReader, windows: list[Span], sample_rate: int, features: FeatureConfig
) -> NDArray[np.float32]:
    bounds = window_samples(windows, sample_rate)
    matrix = np.empty((len(bounds), len(feature_names(features))), dtype=np.float32)
    for rows in window_groups(bounds, round(_REGION_S * sample_rate)):
        low, high = min(bounds[row][0] for row in rows), max(bounds[row][1] for row in rows)
        region = np.asarray(read(low, high), dtype=np.float32)
        matrix[rows] = window_features_at(
            region, sample_rate, [(bounds[row][0] - low, bounds[row][1] - low) for row in rows], features
        )
    return matrix
