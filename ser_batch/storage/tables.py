"""The Parquet tables of DEST: write part files, read them back, and index what is done (IO).

The layout and the schemas are ``ser_batch.schema``'s. Every part file is written whole,
atomically, under a deterministic name, so a retried shard replaces its own files and
never duplicates rows. A scoring DEST and a featurize DEST are meant to be different
folders: their ``errors`` trees use different partition keys.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ser_batch.config import FeatureConfig
from ser_batch.errors import ConfigError, SchemaError
from ser_batch.schema import (
    AUGMENT_STAGE,
    AUGMENTATION_FIELD,
    DATASETS,
    ERRORS_SCHEMA,
    META_FEATURE_SET,
    META_FINGERPRINT,
    ROW_FIELDS,
    SCORE_SCHEMAS,
    SCORE_TABLES,
    partition_value,
    run_date_value,
)
from ser_batch.shards import DoneIndex
from ser_batch.storage import files


def features_root(dest: str, feature_set: str, dataset_name: str = "features") -> str:
    """``DEST/<dataset>/feature_set=<name>``: the folder of one feature set's rows (``features`` or ``augmented``).

    Raises:
        ConfigError: if ``dataset_name`` is not one of ``schema.DATASETS``.
    """
    if dataset_name not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset_name!r}; expected one of {DATASETS}")
    return files.join(dest, dataset_name, f"feature_set={feature_set}")


def errors_root(dest: str, feature_set: str) -> str:
    """``DEST/errors/feature_set=<name>``: the folder of one feature set's featurize error rows."""
    return files.join(dest, "errors", f"feature_set={feature_set}")


def write_features(
    table: pa.Table,
    dest: str,
    shard_id: str,
    *,
    dataset_name: str = "features",
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Write one shard's rows of ``dataset_name``, one part file per corpus; return the URIs written."""
    feature_set = table.schema.metadata[META_FEATURE_SET].decode()
    written = []
    corpora = table.column("corpus").to_pylist()
    for corpus in sorted(set(corpora)):
        mask = pa.array([value == corpus for value in corpora])
        uri = files.join(
            features_root(dest, feature_set, dataset_name),
            f"corpus={partition_value(corpus)}",
            f"part-{shard_id}.parquet",
        )
        files.write_bytes_atomic(uri, _parquet_bytes(table.filter(mask)), storage_options=storage_options)
        written.append(uri)
    return written


def write_errors(
    table: pa.Table, dest: str, feature_set: str, shard_id: str, *, storage_options: dict[str, Any] | None = None
) -> str:
    """Write one shard's error rows to their own part file; return its URI."""
    uri = files.join(errors_root(dest, feature_set), f"part-{shard_id}.parquet")
    files.write_bytes_atomic(uri, _parquet_bytes(table.cast(ERRORS_SCHEMA)), storage_options=storage_options)
    return uri


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _dataset(root: str, storage_options: dict[str, Any] | None) -> ds.Dataset | None:
    fs, path = files.filesystem(root, storage_options=storage_options)
    with files.storage_errors(root):
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
        raise SchemaError(
            f"no {dataset_name} for feature set {config.name!r} under {root}; run `ser-batch featurize` first"
        )
    stored = dataset.schema.metadata or {}
    fingerprint = stored.get(META_FINGERPRINT, b"").decode()
    if fingerprint != config.fingerprint():
        raise SchemaError(
            f"features under {root} have fingerprint {fingerprint!r} != {config.fingerprint()!r} "
            f"(feature set {config.name!r} as configured now); re-featurize into a new DEST"
        )
    table = dataset.to_table(
        columns=list(columns) if columns else [f.name for f in dataset.schema if f.name in _ALL_COLUMNS]
    )
    return table.replace_schema_metadata(stored)


_ALL_COLUMNS = {field.name for field in ROW_FIELDS} | {"features", AUGMENTATION_FIELD.name}


def has_augmented(dest: str, feature_set: str, *, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether DEST holds augmented copies for a feature set."""
    return _dataset(features_root(dest, feature_set, "augmented"), storage_options) is not None


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


def prune_rows(
    part_file: str, paths: set[str], *, protocol: str | None, storage_options: dict[str, Any] | None = None
) -> int:
    """Rewrite one part file without the rows of ``paths`` (deleting it when none remain)."""
    uri = part_file if protocol is None else f"{protocol}://{part_file}"
    fs, path = files.filesystem(uri, storage_options=storage_options)
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle)
    keep = pa.array([value not in paths for value in table.column("path").to_pylist()])
    kept = table.filter(keep)
    if kept.num_rows == 0:
        files.remove(uri, storage_options=storage_options)
    else:
        files.write_bytes_atomic(uri, _parquet_bytes(kept), storage_options=storage_options)
    return int(table.num_rows - kept.num_rows)


def score_part(dest: str, table: str, run_date: str, shard_id: str) -> str:
    """URI of one scoring part file: ``DEST/<table>/run_date=<date>/part-<shard-id>.parquet``."""
    if table not in SCORE_SCHEMAS:
        raise ConfigError(f"unknown scoring table {table!r}; expected one of {sorted(SCORE_SCHEMAS)}")
    return files.join(dest, table, f"run_date={run_date_value(run_date)}", f"part-{shard_id}.parquet")


def write_scores(
    tables: dict[str, pa.Table],
    dest: str,
    run_date: str,
    shard_id: str,
    *,
    storage_options: dict[str, Any] | None = None,
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
            files.write_bytes_atomic(
                uri, _parquet_bytes(table.cast(SCORE_SCHEMAS[name])), storage_options=storage_options
            )
            written.append(uri)
        else:
            files.remove(uri, storage_options=storage_options)
    return written


def read_scored(dest: str, model_id: str, *, storage_options: dict[str, Any] | None = None) -> DoneIndex:
    """Index the recordings DEST holds for one model, reading only key columns.

    Returns:
        ``featurized``: path -> [(content_key, calls part file)] of recordings with calls rows
        of ``model_id`` (scored); ``failed``: (path, content_key) with error rows of it.
    """
    scored: dict[str, list[tuple[str, str]]] = {}
    wanted = ds.field("model_id") == model_id
    dataset = _dataset(files.join(dest, "calls"), storage_options)
    if dataset is not None and "model_id" in dataset.schema.names:  # an empty folder has no columns
        keys = dataset.to_table(columns=["path", "content_key", "__filename"], filter=wanted)
        for path, key, part in zip(*(keys.column(i).to_pylist() for i in range(3)), strict=True):
            if (key, part) not in scored.setdefault(path, []):
                scored[path].append((key, part))
    failed: set[tuple[str, str]] = set()
    dataset = _dataset(files.join(dest, "errors"), storage_options)
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
        fs, root = files.filesystem(files.join(dest, name), storage_options=storage_options)
        with files.storage_errors(files.join(dest, name)):
            found = fs.find(root) if fs.exists(root) else []
        parts[name] = {path[len(root.rstrip("/")) :]: path for path in found if path.endswith(".parquet")}
    orphans = sorted(set(parts["predictions"]) - set(parts["calls"]))
    protocol = dest.split("://", 1)[0] if files.is_remote(dest) else None
    for relative in orphans:
        path = parts["predictions"][relative]
        files.remove(path if protocol is None else f"{protocol}://{path}", storage_options=storage_options)
    return len(orphans)
