"""Parquet layout of DEST: feature and error part files, reading them back, and what is done.

Layout (see DESIGN.md, Output contract)::

    DEST/features/feature_set=<name>/corpus=<corpus>/part-<shard-id>.parquet
    DEST/augmented/feature_set=<name>/corpus=<corpus>/part-<shard-id>.parquet (copies of labelled clips)
    DEST/errors/feature_set=<name>/part-<shard-id>.parquet        (featurize)
    DEST/predictions/run_date=YYYY-MM-DD/part-<shard-id>.parquet  (score: one row per segment)
    DEST/calls/run_date=YYYY-MM-DD/part-<shard-id>.parquet        (score: one row per recording channel)
    DEST/errors/run_date=YYYY-MM-DD/part-<shard-id>.parquet       (score)

A scoring DEST and a featurize DEST are meant to be different folders: their ``errors``
trees use different partition keys.

Every part file is written whole, atomically, under a deterministic name, so a
retried shard replaces its own files and never duplicates rows.
"""

from __future__ import annotations

import io
import json
import re
from datetime import date
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from numpy.typing import NDArray

from ser_batch import storage
from ser_batch.config import CORPORA, EMOTIONS, FeatureConfig
from ser_batch.errors import ConfigError, SchemaError

META_FEATURE_SET = b"ser_batch.feature_set"
META_FINGERPRINT = b"ser_batch.fingerprint"
META_FEATURE_CONFIG = b"ser_batch.feature_config"
META_FEATURE_NAMES = b"ser_batch.feature_names"

ROW_FIELDS: tuple[pa.Field, ...] = (
    pa.field("path", pa.string(), nullable=False),
    pa.field("corpus", pa.string(), nullable=False),
    pa.field("speaker", pa.string()),
    pa.field("emotion", pa.string()),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("n_channels", pa.int16(), nullable=False),
    pa.field("content_key", pa.string(), nullable=False),
    pa.field("feature_set", pa.string(), nullable=False),
    pa.field("fingerprint", pa.string(), nullable=False),
    pa.field("featurized_at", pa.timestamp("ms", tz="UTC"), nullable=False),
)

ERRORS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_key", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("feature_set", pa.string(), nullable=False),
        pa.field("run_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)


def features_schema(config: FeatureConfig, feature_names: Sequence[str]) -> pa.Schema:
    """Arrow schema of a feature set's rows, with the set's settings in its metadata."""
    metadata = {
        META_FEATURE_SET: config.name.encode(),
        META_FINGERPRINT: config.fingerprint().encode(),
        META_FEATURE_CONFIG: config.model_dump_json().encode(),
        META_FEATURE_NAMES: json.dumps(list(feature_names)).encode(),
    }
    vector = pa.field("features", pa.list_(pa.float32(), len(feature_names)), nullable=False)
    return pa.schema([*ROW_FIELDS, vector], metadata=metadata)


@dataclass
class FeatureRows:
    """Column buffers for one shard's featurized files; ``to_table`` builds the Arrow table."""

    columns: dict[str, list[Any]]
    vectors: list[NDArray[np.float32]]

    @classmethod
    def empty(cls) -> FeatureRows:
        return cls({field.name: [] for field in ROW_FIELDS}, [])

    def append(self, vector: NDArray[np.float32], **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(values[name])
        self.vectors.append(vector)

    def __len__(self) -> int:
        return len(self.vectors)

    def to_table(self, schema: pa.Schema) -> pa.Table:
        width = schema.field("features").type.list_size
        flat = np.concatenate(self.vectors) if self.vectors else np.empty(0, np.float32)
        arrays = [pa.array(self.columns[field.name], type=field.type) for field in ROW_FIELDS]
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width))
        return pa.Table.from_arrays(arrays, schema=schema)


DATASETS: tuple[str, ...] = ("features", "augmented")
"""Feature datasets under DEST: one row per input clip, and the augmented copies of labelled clips."""

AUGMENTATION_FIELD = pa.field("augmentation", pa.string(), nullable=False)
"""The transform that made an augmented row (``augmented`` dataset only), e.g. ``telephone``."""


def augmented_schema(config: FeatureConfig, feature_names: Sequence[str]) -> pa.Schema:
    """Arrow schema of a feature set's augmented rows: the feature rows plus ``augmentation``."""
    schema = features_schema(config, feature_names)
    return schema.insert(schema.get_field_index("features"), AUGMENTATION_FIELD)


def features_root(dest: str, feature_set: str, dataset_name: str = "features") -> str:
    if dataset_name not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset_name!r}; expected one of {DATASETS}")
    return storage.join(dest, dataset_name, f"feature_set={feature_set}")


def errors_root(dest: str, feature_set: str) -> str:
    return storage.join(dest, "errors", f"feature_set={feature_set}")


def partition_value(corpus: str) -> str:
    """The corpus as a partition value: only names from the fixed vocabulary reach a path."""
    return corpus if corpus in CORPORA else "unknown"


def write_features(
    table: pa.Table, dest: str, shard_id: str, *, dataset_name: str = "features", storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Write one shard's rows of ``dataset_name``, one part file per corpus; return the URIs written."""
    feature_set = table.schema.metadata[META_FEATURE_SET].decode()
    written = []
    corpora = table.column("corpus").to_pylist()
    for corpus in sorted(set(corpora)):
        mask = pa.array([value == corpus for value in corpora])
        uri = storage.join(features_root(dest, feature_set, dataset_name), f"corpus={partition_value(corpus)}", f"part-{shard_id}.parquet")
        storage.write_bytes_atomic(uri, _parquet_bytes(table.filter(mask)), storage_options=storage_options)
        written.append(uri)
    return written


def write_errors(
    table: pa.Table, dest: str, feature_set: str, shard_id: str, *, storage_options: dict[str, Any] | None = None
) -> str:
    """Write one shard's error rows to their own part file; return its URI."""
    uri = storage.join(errors_root(dest, feature_set), f"part-{shard_id}.parquet")
    storage.write_bytes_atomic(uri, _parquet_bytes(table.cast(ERRORS_SCHEMA)), storage_options=storage_options)
    return uri


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _dataset(root: str, storage_options: dict[str, Any] | None) -> ds.Dataset | None:
    fs, path = storage.filesystem(root, storage_options=storage_options)
    with storage.storage_errors(root):
        if not fs.exists(path):
            return None
        return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive", exclude_invalid_files=False)


def read_features(
    dest: str,
    *,
    config: FeatureConfig,
    columns: Sequence[str] | None = None,
    dataset_name: str = "features",
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read one feature set's consolidated table (or its augmented copies) from DEST.

    Raises:
        SchemaError: if no rows exist, or a part file's fingerprint differs from ``config``'s.
    """
    root = features_root(dest, config.name, dataset_name)
    dataset = _dataset(root, storage_options)
    if dataset is None:
        raise SchemaError(f"no {dataset_name} for feature set {config.name!r} under {root}; run `ser-batch featurize` first")
    stored = dataset.schema.metadata or {}
    fingerprint = stored.get(META_FINGERPRINT, b"").decode()
    if fingerprint != config.fingerprint():
        raise SchemaError(
            f"features under {root} have fingerprint {fingerprint!r} != {config.fingerprint()!r} "
            f"(feature set {config.name!r} as configured now); re-featurize into a new DEST"
        )
    table = dataset.to_table(columns=list(columns) if columns else [f.name for f in dataset.schema if f.name in _ALL_COLUMNS])
    return table.replace_schema_metadata(stored)


_ALL_COLUMNS = {field.name for field in ROW_FIELDS} | {"features", AUGMENTATION_FIELD.name}


def has_augmented(dest: str, feature_set: str, *, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether DEST holds augmented copies for a feature set."""
    return _dataset(features_root(dest, feature_set, "augmented"), storage_options) is not None


@dataclass(frozen=True)
class DoneIndex:
    """What DEST already holds for a feature set, keyed by input path."""

    featurized: dict[str, list[tuple[str, str]]]  # path -> [(content_key, part file), ...]
    failed: set[tuple[str, str]]  # (path, content_key) recorded in errors


AUGMENT_STAGE = "augment"
"""``stage`` of an error row for a clip whose augmented copies could not be made (its features row exists)."""


def read_done(
    dest: str, feature_set: str, *, dataset_name: str = "features", storage_options: dict[str, Any] | None = None
) -> DoneIndex:
    """Index the inputs a dataset of DEST already holds, reading only the key columns.

    An input counts once per part file however many rows (augmented copies) it has there.
    Failures are the error rows of the dataset's stage (``augment`` for ``augmented``).
    """
    featurized: dict[str, list[tuple[str, str]]] = {}
    dataset = _dataset(features_root(dest, feature_set, dataset_name), storage_options)
    if dataset is not None:
        for fragment in dataset.get_fragments():
            keys = fragment.to_table(columns=["path", "content_key"])
            pairs = zip(keys.column("path").to_pylist(), keys.column("content_key").to_pylist(), strict=True)
            for path, key in dict.fromkeys(pairs):
                featurized.setdefault(path, []).append((key, fragment.path))
    failed: set[tuple[str, str]] = set()
    dataset = _dataset(errors_root(dest, feature_set), storage_options)
    if dataset is not None:
        errors = dataset.to_table(columns=["path", "content_key", "stage"])
        augment = pc.equal(errors.column("stage"), AUGMENT_STAGE)
        errors = errors.filter(augment if dataset_name == "augmented" else pc.invert(augment))
        failed = set(zip(errors.column("path").to_pylist(), errors.column("content_key").to_pylist(), strict=True))
    return DoneIndex(featurized, failed)


def prune_rows(part_file: str, paths: set[str], *, protocol: str | None, storage_options: dict[str, Any] | None = None) -> int:
    """Rewrite one part file without the rows of ``paths`` (deleting it when none remain)."""
    uri = part_file if protocol is None else f"{protocol}://{part_file}"
    fs, path = storage.filesystem(uri, storage_options=storage_options)
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle)
    keep = pa.array([value not in paths for value in table.column("path").to_pylist()])
    kept = table.filter(keep)
    if kept.num_rows == 0:
        storage.remove(uri, storage_options=storage_options)
    else:
        storage.write_bytes_atomic(uri, _parquet_bytes(kept), storage_options=storage_options)
    return table.num_rows - kept.num_rows


# --- Scoring outputs -------------------------------------------------------------------
# Probability and share columns exist for every emotion in EMOTIONS order, null for the
# classes a model does not have, so parts of different models and days share one schema.

SCORE_TABLES: tuple[str, ...] = ("errors", "predictions", "calls")
"""Scoring part files in write order: ``calls`` last, as the commit record of a shard."""

_SCORED = (
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("content_key", pa.string(), nullable=False),
    pa.field("scored_at", pa.timestamp("ms", tz="UTC"), nullable=False),
)

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("channel", pa.int16(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("emotion", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        *(pa.field(f"prob_{name}", pa.float32()) for name in EMOTIONS),
        *_SCORED,
    ]
)

CALLS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("channel", pa.int16(), nullable=False),
        pa.field("n_channels", pa.int16(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("speech_s", pa.float64(), nullable=False),
        pa.field("n_segments", pa.int32(), nullable=False),
        *(pa.field(f"share_{name}", pa.float64()) for name in EMOTIONS),
        pa.field("dominant_emotion", pa.string()),
        pa.field("peak_angry_s", pa.float64()),
        pa.field("peak_angry_probability", pa.float64()),
        *_SCORED,
    ]
)

# Featurize's error columns plus the model that met the error, before run_at.
SCORE_ERRORS_SCHEMA = ERRORS_SCHEMA.insert(
    ERRORS_SCHEMA.get_field_index("run_at"), pa.field("model_id", pa.string(), nullable=False)
)

SCORE_SCHEMAS: dict[str, pa.Schema] = {"errors": SCORE_ERRORS_SCHEMA, "predictions": PREDICTIONS_SCHEMA, "calls": CALLS_SCHEMA}

_RUN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def run_date_value(run_date: str) -> str:
    """A ``run_date`` partition value, checked: only a real ``YYYY-MM-DD`` date reaches a path.

    Raises:
        ConfigError: if it is not a valid date in that exact form.

    >>> run_date_value("2026-11-24")
    '2026-11-24'
    """
    if not isinstance(run_date, str) or not _RUN_DATE.match(run_date):
        raise ConfigError(f"run_date {run_date!r} is not a date in the form YYYY-MM-DD")
    try:
        date.fromisoformat(run_date)
    except ValueError:
        raise ConfigError(f"run_date {run_date!r} is not a calendar date") from None
    return run_date


def score_part(dest: str, table: str, run_date: str, shard_id: str) -> str:
    """URI of one scoring part file: ``DEST/<table>/run_date=<date>/part-<shard-id>.parquet``."""
    if table not in SCORE_SCHEMAS:
        raise ConfigError(f"unknown scoring table {table!r}; expected one of {sorted(SCORE_SCHEMAS)}")
    return storage.join(dest, table, f"run_date={run_date_value(run_date)}", f"part-{shard_id}.parquet")


def write_scores(
    tables: dict[str, pa.Table], dest: str, run_date: str, shard_id: str, *, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Write one shard's errors, predictions and calls (in that order); return the URIs written.

    An empty table removes its part file instead, so a retried shard never leaves a stale
    part of an earlier attempt behind. ``calls`` goes last: a shard whose calls part exists
    is complete, and ``remove_orphan_predictions`` cleans up after one killed in between.
    """
    written = []
    for name in SCORE_TABLES:
        uri = score_part(dest, name, run_date, shard_id)
        table = tables[name]
        if table.num_rows:
            storage.write_bytes_atomic(uri, _parquet_bytes(table.cast(SCORE_SCHEMAS[name])), storage_options=storage_options)
            written.append(uri)
        else:
            storage.remove(uri, storage_options=storage_options)
    return written


def read_scored(dest: str, model_id: str, *, storage_options: dict[str, Any] | None = None) -> DoneIndex:
    """Index the recordings DEST holds for one model, reading only key columns.

    Returns:
        ``featurized``: path -> [(content_key, calls part file)] of recordings with calls rows
        of ``model_id`` (scored); ``failed``: (path, content_key) with error rows of it.
    """
    scored: dict[str, list[tuple[str, str]]] = {}
    wanted = ds.field("model_id") == model_id
    dataset = _dataset(storage.join(dest, "calls"), storage_options)
    if dataset is not None and "model_id" in dataset.schema.names:  # an empty folder has no columns
        keys = dataset.to_table(columns=["path", "content_key", "__filename"], filter=wanted)
        for path, key, part in zip(*(keys.column(i).to_pylist() for i in range(3)), strict=True):
            if (key, part) not in scored.setdefault(path, []):
                scored[path].append((key, part))
    failed: set[tuple[str, str]] = set()
    dataset = _dataset(storage.join(dest, "errors"), storage_options)
    if dataset is not None and "model_id" in dataset.schema.names:
        errors = dataset.to_table(columns=["path", "content_key"], filter=wanted)
        failed = set(zip(errors.column("path").to_pylist(), errors.column("content_key").to_pylist(), strict=True))
    return DoneIndex(scored, failed)


def remove_orphan_predictions(dest: str, *, storage_options: dict[str, Any] | None = None) -> int:
    """Delete predictions parts that have no calls part of the same run date and shard; return how many.

    Such a part is left only by a shard killed between its two writes; its recordings have
    no calls rows, so they are scored again. Assumes one scoring run per DEST at a time.
    """
    parts = {}
    for name in ("predictions", "calls"):
        fs, root = storage.filesystem(storage.join(dest, name), storage_options=storage_options)
        with storage.storage_errors(storage.join(dest, name)):
            found = fs.find(root) if fs.exists(root) else []
        parts[name] = {path[len(root.rstrip("/")) :]: path for path in found if path.endswith(".parquet")}
    orphans = sorted(set(parts["predictions"]) - set(parts["calls"]))
    protocol = dest.split("://", 1)[0] if storage.is_remote(dest) else None
    for relative in orphans:
        path = parts["predictions"][relative]
        storage.remove(path if protocol is None else f"{protocol}://{path}", storage_options=storage_options)
    return len(orphans)
