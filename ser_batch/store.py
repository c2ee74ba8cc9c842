"""Parquet layout of DEST: feature and error part files, reading them back, and what is done.

Layout (see DESIGN.md, Output contract)::

    DEST/features/feature_set=<name>/corpus=<corpus>/part-<shard-id>.parquet
    DEST/errors/feature_set=<name>/part-<shard-id>.parquet

Every part file is written whole, atomically, under a deterministic name, so a
retried shard replaces its own files and never duplicates rows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from numpy.typing import NDArray

from ser_batch import storage
from ser_batch.config import CORPORA, FeatureConfig
from ser_batch.errors import SchemaError

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


def features_root(dest: str, feature_set: str) -> str:
    return storage.join(dest, "features", f"feature_set={feature_set}")


def errors_root(dest: str, feature_set: str) -> str:
    return storage.join(dest, "errors", f"feature_set={feature_set}")


def partition_value(corpus: str) -> str:
    """The corpus as a partition value: only names from the fixed vocabulary reach a path."""
    return corpus if corpus in CORPORA else "unknown"


def write_features(
    table: pa.Table, dest: str, shard_id: str, *, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Write one shard's feature rows, one part file per corpus; return the URIs written."""
    feature_set = table.schema.metadata[META_FEATURE_SET].decode()
    written = []
    corpora = table.column("corpus").to_pylist()
    for corpus in sorted(set(corpora)):
        mask = pa.array([value == corpus for value in corpora])
        uri = storage.join(features_root(dest, feature_set), f"corpus={partition_value(corpus)}", f"part-{shard_id}.parquet")
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
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read one feature set's consolidated table from DEST.

    Raises:
        SchemaError: if no rows exist, or a part file's fingerprint differs from ``config``'s.
    """
    root = features_root(dest, config.name)
    dataset = _dataset(root, storage_options)
    if dataset is None:
        raise SchemaError(f"no features for feature set {config.name!r} under {root}; run `ser-batch featurize` first")
    stored = dataset.schema.metadata or {}
    fingerprint = stored.get(META_FINGERPRINT, b"").decode()
    if fingerprint != config.fingerprint():
        raise SchemaError(
            f"features under {root} have fingerprint {fingerprint!r} != {config.fingerprint()!r} "
            f"(feature set {config.name!r} as configured now); re-featurize into a new DEST"
        )
    table = dataset.to_table(columns=list(columns) if columns else [f.name for f in dataset.schema if f.name in _ALL_COLUMNS])
    return table.replace_schema_metadata(stored)


_ALL_COLUMNS = {field.name for field in ROW_FIELDS} | {"features"}


@dataclass(frozen=True)
class DoneIndex:
    """What DEST already holds for a feature set, keyed by input path."""

    featurized: dict[str, list[tuple[str, str]]]  # path -> [(content_key, part file), ...]
    failed: set[tuple[str, str]]  # (path, content_key) recorded in errors


def read_done(dest: str, feature_set: str, *, storage_options: dict[str, Any] | None = None) -> DoneIndex:
    """Index the inputs DEST already holds, reading only the key columns."""
    featurized: dict[str, list[tuple[str, str]]] = {}
    dataset = _dataset(features_root(dest, feature_set), storage_options)
    if dataset is not None:
        for fragment in dataset.get_fragments():
            keys = fragment.to_table(columns=["path", "content_key"])
            for path, key in zip(keys.column("path").to_pylist(), keys.column("content_key").to_pylist(), strict=True):
                featurized.setdefault(path, []).append((key, fragment.path))
    failed: set[tuple[str, str]] = set()
    dataset = _dataset(errors_root(dest, feature_set), storage_options)
    if dataset is not None:
        errors = dataset.to_table(columns=["path", "content_key"])
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
