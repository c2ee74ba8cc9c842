"""Featurize one shard of files on a worker and write its part files (IO driver)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from ser_batch import schema, storage
from ser_batch.config import EncoderFeatureConfig, FeatureConfig, ScoreConfig
from ser_batch.errors import AudioError
from ser_batch.features.augment import augmented_copies
from ser_batch.features.encoder import FrameEncoder
from ser_batch.features.extract import feature_bytes, feature_names, feature_vector, warm_up
from ser_batch.features.resample import resample
from ser_batch.jobs.guard import NO_GUARD, FileGuard
from ser_batch.labels import Labels, labels_from_path
from ser_batch.scoring.segments import speech_spans
from ser_batch.shards import FileInfo, Shard, ShardSummary
from ser_batch.storage.audio import Decoded, read_audio

_COPY_BYTES_PER_SAMPLE = 32  # augmented_copies holds up to ~7 float32 copies of a clip at its own rate (measured)


def featurize_files(
    files: Sequence[FileInfo],
    config: FeatureConfig,
    *,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> tuple[pa.Table, pa.Table]:
    """Featurize files one by one, collecting bad ones instead of failing.

    Args:
        files: inputs with their content keys.
        config: the feature set.
        storage_options: fsspec options for remote inputs.
        guard: known poison files, the memory and the time one file may take (``jobs.guard``).

    Returns:
        ``(features, errors)``: Arrow tables with ``schema.features_schema`` and
        ``schema.ERRORS_SCHEMA``; together they hold exactly one row per input.
    """
    now = datetime.now(UTC)
    encoder = encoder_of(config, storage_options=storage_options)
    rows = schema.FeatureRows.empty()
    errors: list[dict[str, Any]] = []
    for info in files:
        stage = "labels"
        try:
            poison = guard.verdict(info)
            if poison is not None:
                stage = schema.WORKER_STAGE
                raise poison
            with guard.watch(info):
                labels = labels_from_path(info.uri)
                stage = "decode"
                decoded = read_audio(
                    info.uri,
                    sample_rate=config.sample_rate,
                    quality=config.resample_quality,
                    max_bytes=guard.free_bytes(),
                    storage_options=storage_options,
                )
                stage = "segment"
                _check_speech(decoded.waveform, decoded.sample_rate)
                stage = "features"
                _check_feature_memory(guard, decoded.waveform.size, config)
                vector = feature_vector(decoded.waveform, decoded.sample_rate, config, encoder=encoder)
        except storage.PER_FILE_ERRORS as error:
            errors.append(
                schema.error_row(info.uri, info.content_key, error, stage=stage, feature_set=config.name, run_at=now)
            )
            continue
        rows.append(vector, **_row_values(info, labels, decoded, config, now))
    features = rows.to_table(schema.features_schema(config, feature_names(config)))
    return features, pa.Table.from_pylist(errors, schema=schema.ERRORS_SCHEMA)


MIN_SPEECH_S = 0.25
"""A clip with less speech than this (s, ``ser_batch.scoring.segments.speech_spans`` with ``min_speech_s`` set to it)
is no training row: clicks, a DC offset, hiss, a tone or a clip too short for a word."""

# Judged against the clip's own noise floor only: corpora record at very different levels (ser-dev has
# RAVDESS clips at -60 dBFS RMS), where the scorer's absolute -55 dBFS floor is for telephone lines.
# Frames every 30 ms rather than 10: a yes/no needs no finer edges, and it costs 0.7 ms a clip, not 1.2.
_SPEECH_CHECK = ScoreConfig(min_speech_s=MIN_SPEECH_S, vad_floor_dbfs=-90.0, vad_hop_s=0.03)


def _check_speech(waveform: NDArray[np.float32], sample_rate: int) -> None:
    """Refuse a clip in which the scorer's voice-activity detector finds less than ``MIN_SPEECH_S`` of speech.

    Raises:
        AudioError: ``no speech: ...`` naming what was found and the minimum.
    """
    if not np.isfinite(waveform).all():
        return  # feature_vector's contract check names it
    spans = speech_spans(waveform, sample_rate, _SPEECH_CHECK)
    if not spans:
        raise AudioError(
            f"no speech: the voice-activity detector found no stretch of >= {MIN_SPEECH_S} s "
            f"in {waveform.size / sample_rate:.2f} s"
        )


def _check_feature_memory(guard: FileGuard, n_samples: int, config: FeatureConfig, *, extra_bytes: int = 0) -> None:
    what = f"to featurize {n_samples / config.sample_rate:.0f} s at {config.sample_rate} Hz"
    guard.check_memory(extra_bytes + feature_bytes(n_samples, config), what)


def _row_values(
    info: FileInfo, labels: Labels, decoded: Decoded, config: FeatureConfig, now: datetime
) -> dict[str, Any]:
    return {
        "path": info.uri,
        "corpus": schema.partition_value(labels.corpus),
        "speaker": labels.speaker,
        "emotion": labels.emotion,
        "duration_s": decoded.duration_s,
        "sample_rate": decoded.original_sample_rate,
        "n_channels": decoded.n_channels,
        "content_key": info.content_key,
        "content_hash": decoded.content_hash or None,
        "feature_set": config.name,
        "fingerprint": config.fingerprint(),
        "featurized_at": now,
    }


def augment_files(
    files: Sequence[FileInfo],
    config: FeatureConfig,
    *,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> tuple[pa.Table, pa.Table]:
    """Featurize the augmented copies (``augment.augmented_copies``) of labelled clips.

    Each clip is decoded at its own rate, copied with a generator seeded by its path and
    content key (so a retried shard makes the same copies), and every copy is resampled
    to the feature set's rate as the decoder would. ``guard`` as for ``featurize_files``.

    Returns:
        ``(augmented, errors)``: ``schema.augmented_schema`` rows (one per copy) and error
        rows with stage ``augment`` for clips no copy could be made of.
    """
    now = datetime.now(UTC)
    encoder = encoder_of(config, storage_options=storage_options)
    rows = schema.FeatureRows.empty()
    transforms: list[str] = []
    errors: list[dict[str, Any]] = []
    for info in files:
        try:
            poison = guard.verdict(info)
            if poison is not None:
                raise poison
            with guard.watch(info):
                labels = labels_from_path(info.uri)
                decoded = read_audio(
                    info.uri, sample_rate=None, max_bytes=guard.free_bytes(), storage_options=storage_options
                )
                n_samples = round(decoded.waveform.size * config.sample_rate / decoded.sample_rate)
                copies_bytes = _COPY_BYTES_PER_SAMPLE * decoded.waveform.size
                _check_feature_memory(guard, n_samples, config, extra_bytes=copies_bytes)
                rng = np.random.default_rng(zlib.crc32(f"{info.uri}\t{info.content_key}".encode()))
                copies = [
                    (copy.name, _features_at_rate(copy.waveform, copy.sample_rate, config, encoder))
                    for copy in augmented_copies(decoded.waveform, decoded.sample_rate, rng)
                ]
        except storage.PER_FILE_ERRORS as error:
            errors.append(
                schema.error_row(
                    info.uri, info.content_key, error, stage=schema.AUGMENT_STAGE, feature_set=config.name, run_at=now
                )
            )
            continue
        for name, vector in copies:
            transforms.append(name)
            rows.append(vector, **_row_values(info, labels, decoded, config, now))
    names = feature_names(config)
    copy_schema = schema.augmented_schema(config, names)
    columns = rows.to_table(schema.features_schema(config, names)).columns
    columns.insert(copy_schema.get_field_index(schema.AUGMENTATION_FIELD.name), pa.array(transforms, pa.string()))
    return pa.Table.from_arrays(columns, schema=copy_schema), pa.Table.from_pylist(errors, schema=schema.ERRORS_SCHEMA)


def _features_at_rate(
    waveform: NDArray[np.float32], sample_rate: int, config: FeatureConfig, encoder: FrameEncoder | None
) -> NDArray[np.float32]:
    resampled = resample(waveform, sample_rate, config.sample_rate, quality=config.resample_quality)
    return feature_vector(resampled, config.sample_rate, config, encoder=encoder)


def encoder_of(config: FeatureConfig, *, storage_options: dict[str, Any] | None = None) -> FrameEncoder | None:
    """The loaded model of an encoder set (``storage.load_encoder``, once per process); None for other sets.

    Raises:
        ConfigError: if the encoder file has changed since the set was named, or breaks the contract.
        StorageError: if it cannot be read.
    """
    if isinstance(config, EncoderFeatureConfig):
        return storage.load_encoder(config, storage_options=storage_options)
    return None


def augment_shard(
    shard: Shard,
    dest: str,
    config: FeatureConfig,
    *,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> ShardSummary:
    """Make and featurize a shard's augmented copies and write them under deterministic names (see ``featurize_shard``)."""
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        _warm_up_outside_time_limit(guard, config, storage_options)
        augmented, errors = augment_files(shard.files, config, storage_options=storage_options, guard=guard)
    return _write_shard(
        shard,
        dest,
        config,
        augmented,
        errors,
        started=started,
        dataset_name="augmented",
        storage_options=storage_options,
    )


def featurize_shard(
    shard: Shard,
    dest: str,
    config: FeatureConfig,
    *,
    storage_options: dict[str, Any] | None = None,
    guard: FileGuard = NO_GUARD,
) -> ShardSummary:
    """Featurize a shard and write its part files under deterministic names.

    Re-running the same shard overwrites the same files, so retries never duplicate rows.
    BLAS/OpenMP is limited to one thread: workers are processes, one per core. ``guard`` as
    for ``featurize_files``.
    """
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        _warm_up_outside_time_limit(guard, config, storage_options)
        features, errors = featurize_files(shard.files, config, storage_options=storage_options, guard=guard)
    return _write_shard(
        shard, dest, config, features, errors, started=started, dataset_name="features", storage_options=storage_options
    )


def _warm_up_outside_time_limit(
    guard: FileGuard, config: FeatureConfig, storage_options: dict[str, Any] | None
) -> None:
    # A fresh process's one-off costs (librosa's lazy imports, numba's kernels: 2-4 s, more on a busy
    # machine; reading an encoder file and making its session) must not count against its first file's
    # time limit. ~5 ms once warm.
    if guard.time_limit_s is not None:
        warm_up(config, encoder=encoder_of(config, storage_options=storage_options))


def _write_shard(
    shard: Shard,
    dest: str,
    config: FeatureConfig,
    rows: pa.Table,
    errors: pa.Table,
    *,
    started: float,
    dataset_name: str,
    storage_options: dict[str, Any] | None,
) -> ShardSummary:
    written = []
    if errors.num_rows:
        written.append(storage.write_errors(errors, dest, config.name, shard.shard_id, storage_options=storage_options))
    if rows.num_rows:
        written.extend(
            storage.write_features(
                rows, dest, shard.shard_id, dataset_name=dataset_name, storage_options=storage_options
            )
        )
    audio_s = float(sum(rows.column("duration_s").to_pylist()))
    return ShardSummary(
        shard.shard_id,
        len(shard.files),
        rows.num_rows,
        errors.num_rows,
        audio_s,
        time.perf_counter() - started,
        tuple(written),
    )
