"""The Parquet tables of DEST: write part files, read them back, and index what is done (IO).

The layout and the schemas are ``ser_batch.schema``'s. Every part file is written whole,
atomically, under a deterministic name, so a retried shard replaces its own files and
never duplicates rows. A scoring DEST and a featurize DEST are meant to be different
folders: their ``errors`` trees use different partition keys.

Readers take only ser-batch's own part files (``schema.PART_FILE`` in the table's key
folders); other files in DEST (an analyst's Parquet, a README, hidden temporaries) are
passed over. An own part file that cannot be read (0 bytes, truncated, lacking columns) is
skipped with a warning on the ``ser_batch.storage.tables`` logger naming it. Part files of
the earlier layout, which also held the folder keys as columns, read the same way.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ser_batch.config import FeatureConfig, stored_feature_config
from ser_batch.errors import ConfigError, SchemaError, StorageError
from ser_batch.schema import (
    AUGMENT_STAGE,
    AUGMENTATION_FIELD,
    CALLS_SCHEMA,
    DATASETS,
    EARLIER_SCORE_KEYS,
    ERRORS_SCHEMA,
    FEATURE_KEYS,
    FEATURIZE_ERROR_KEYS,
    META_FEATURE_CONFIG,
    META_FEATURE_NAMES,
    META_FEATURE_SET,
    META_FINGERPRINT,
    PART_FILE,
    PREDICTIONS_SCHEMA,
    ROW_FIELDS,
    SCORE_KEYS,
    SCORE_SCHEMAS,
    SCORE_TABLES,
    SECONDS_COLUMNS,
    date_value,
    part_file_name,
    part_file_schema,
    partition_value,
)
from ser_batch.shards import DoneIndex, Entries
from ser_batch.storage import files

_log = logging.getLogger(__name__)

_READ_THREADS = 8  # part files read at once: S3 latency, not CPU, bounds a listing's read


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
    """Write one shard's rows of ``dataset_name``, one part file per corpus; return the URIs written.

    Raises:
        ConfigError: if ``shard_id`` is not of the form ``shards.shard_id`` gives.
    """
    feature_set = table.schema.metadata[META_FEATURE_SET].decode()
    name = part_file_name(shard_id)
    written = []
    corpora = table.column("corpus").to_pylist()
    for corpus in sorted(set(corpora)):
        mask = pa.array([value == corpus for value in corpora])
        uri = files.join(features_root(dest, feature_set, dataset_name), f"corpus={partition_value(corpus)}", name)
        part = _part_bytes(table.filter(mask), FEATURE_KEYS)
        files.write_bytes_atomic(uri, part, storage_options=storage_options)
        written.append(uri)
    return written


def write_errors(
    table: pa.Table, dest: str, feature_set: str, shard_id: str, *, storage_options: dict[str, Any] | None = None
) -> str:
    """Write one shard's error rows to their own part file; return its URI.

    Raises:
        ConfigError: if ``shard_id`` is not of the form ``shards.shard_id`` gives.
    """
    uri = files.join(errors_root(dest, feature_set), part_file_name(shard_id))
    part = _part_bytes(table.cast(ERRORS_SCHEMA), FEATURIZE_ERROR_KEYS)
    files.write_bytes_atomic(uri, part, storage_options=storage_options)
    return uri


def _part_bytes(table: pa.Table, keys: Sequence[str]) -> bytes:
    # The folder keys stay in the path only; seconds are kept to the millisecond.
    table = table.select(part_file_schema(table.schema, keys).names)
    for index, field in enumerate(table.schema):
        if field.name in SECONDS_COLUMNS:
            table = table.set_column(index, field, pc.round(table.column(index), 3))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


@dataclass(frozen=True)
class _Part:
    path: str  # as the filesystem names it (no protocol)
    values: dict[str, str]  # folder key -> value


def _own_parts(
    root: str, keys: Sequence[str], storage_options: dict[str, Any] | None, *, known: Mapping[str, str] | None = None
) -> tuple[fsspec.AbstractFileSystem, list[_Part]]:
    """ser-batch's part files under ``root``, sorted by path.

    Own parts sit in ``<key>=<value>/`` folders in ``keys`` order and are named ``part-<id>.parquet``;
    ``known`` adds the folder values that ``root`` itself implies.
    """
    fs, base = files.filesystem(root, storage_options=storage_options)
    with files.storage_errors(root):
        found = fs.find(base) if fs.exists(base) else []
    prefix = base.rstrip("/") + "/"
    parts = []
    for path in sorted(found):
        *folders, name = path[len(prefix) :].split("/") if path.startswith(prefix) else ("",)
        pairs = [folder.partition("=") for folder in folders]
        if not PART_FILE.fullmatch(name) or [key for key, _, _ in pairs] != list(keys) or not all(v for *_, v in pairs):
            continue
        parts.append(_Part(path, {**(known or {}), **{key: value for key, _, value in pairs}}))
    return fs, parts


def _read_parts(
    fs: fsspec.AbstractFileSystem, parts: Sequence[_Part], columns: Sequence[str] | None, root: str
) -> Iterator[tuple[_Part, pa.Table]]:
    """Each readable part's ``columns`` (None: all), its folder keys appended as string columns.

    Unreadable parts are skipped with a warning naming them.
    """
    protocol = root.split("://", 1)[0] if files.is_remote(root) else None

    def read(part: _Part) -> pa.Table | None:
        try:
            with files.storage_errors(root), fs.open(part.path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                stored = [name for name in parquet.schema_arrow.names if name not in part.values]
                wanted = stored if columns is None else [name for name in columns if name not in part.values]
                missing = sorted(set(wanted) - set(stored))
                if missing:
                    raise SchemaError(f"lacks columns {missing}")
                table = parquet.read(columns=wanted)
        except (pa.ArrowInvalid, SchemaError) as error:
            shown = part.path if protocol is None else f"{protocol}://{part.path}"
            _log.warning("skipping unreadable part file %s: %s", shown, str(error).splitlines()[0][:200])
            return None
        for key, value in part.values.items():
            if columns is None or key in columns:
                table = table.append_column(
                    pa.field(key, pa.string(), nullable=False), pa.array([value] * table.num_rows, pa.string())
                )
        return table.select([name for name in (columns or table.column_names)])

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        for part, table in zip(parts, pool.map(read, parts), strict=True):
            if table is not None:
                yield part, table


_FEATURE_COLUMNS: tuple[str, ...] = (*(field.name for field in ROW_FIELDS), AUGMENTATION_FIELD.name, "features")
"""Columns of the feature datasets in schema order (``augmentation`` in ``augmented`` only)."""


def read_features(
    dest: str,
    *,
    config: FeatureConfig,
    columns: Sequence[str] | None = None,
    dataset_name: str = "features",
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read one feature set's consolidated table (or its augmented copies) from DEST.

    Args:
        dest: the featurize DEST (local folder or ``s3://`` prefix).
        config: the feature set; every part file must carry its fingerprint.
        columns: the columns to read (all of ``schema.features_schema``'s by default).
        dataset_name: ``features`` or ``augmented``.
        storage_options: fsspec options for a remote DEST.

    Returns:
        One row per stored row, in part-file order, with ``corpus`` and ``feature_set`` from
        the folders and the part files' schema metadata (feature names, settings).

    Raises:
        SchemaError: if no readable part file exists, or one has another fingerprint than ``config``'s.
    """
    root = features_root(dest, config.name, dataset_name)
    fs, parts = _own_parts(root, FEATURE_KEYS[1:], storage_options, known={"feature_set": config.name})
    tables, metadata = [], None
    for part, table in _read_parts(fs, parts, columns, root):
        stored = table.schema.metadata or {}
        fingerprint = stored.get(META_FINGERPRINT, b"").decode()
        if fingerprint != config.fingerprint():
            raise SchemaError(
                f"features in {part.path} have fingerprint {fingerprint!r} != {config.fingerprint()!r} "
                f"(feature set {config.name!r} as configured now); re-featurize into a new DEST"
            )
        metadata = metadata or stored
        order = list(columns) if columns else [name for name in _FEATURE_COLUMNS if name in table.column_names]
        tables.append(table.select(order).replace_schema_metadata(None))
    if not tables:
        raise SchemaError(
            f"no {dataset_name} for feature set {config.name!r} under {root}; run `ser-batch featurize` first"
        )
    return pa.concat_tables(tables).replace_schema_metadata(metadata)


def read_feature_names(
    dest: str, feature_set: str, *, dataset_name: str = "features", storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The names of the ``features`` vector's entries, in order, as DEST stores them.

    Args:
        dest: the featurize DEST (local folder or ``s3://`` prefix).
        feature_set: e.g. ``stats8k``.
        dataset_name: ``features`` or ``augmented``.
        storage_options: fsspec options for a remote DEST.

    Returns:
        One name per vector entry, e.g. ``["logmel_00_mean", ...]``: ``features[i]`` is ``names[i]``.

    Raises:
        SchemaError: if DEST holds no readable part file of that feature set.
    """
    names = _stored_metadata(dest, feature_set, META_FEATURE_NAMES, dataset_name, storage_options)
    return [str(name) for name in json.loads(names)]


def read_feature_config(dest: str, feature_set: str, *, storage_options: dict[str, Any] | None = None) -> FeatureConfig:
    """The settings of a feature set as DEST stores them: how ``train --feature-set onnx-<12 hex>`` finds an encoder set.

    Raises:
        SchemaError: if DEST holds no readable part file of that feature set.
        ConfigError: if the stored settings are not those of a feature set of that name.
    """
    settings = _stored_metadata(dest, feature_set, META_FEATURE_CONFIG, "features", storage_options)
    return stored_feature_config(feature_set, json.loads(settings))


def _stored_metadata(
    dest: str, feature_set: str, key: bytes, dataset_name: str, storage_options: dict[str, Any] | None
) -> bytes:
    root = features_root(dest, feature_set, dataset_name)
    fs, parts = _own_parts(root, FEATURE_KEYS[1:], storage_options, known={"feature_set": feature_set})
    for _, table in _read_parts(fs, parts, ["path"], root):
        value = (table.schema.metadata or {}).get(key)
        if value:
            return bytes(value)
    raise SchemaError(
        f"no {dataset_name} for feature set {feature_set!r} under {root}; run `ser-batch featurize` first"
    )


def has_augmented(dest: str, feature_set: str, *, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether DEST holds augmented copies for a feature set."""
    _, parts = _own_parts(features_root(dest, feature_set, "augmented"), FEATURE_KEYS[1:], storage_options)
    return bool(parts)


def read_done(
    dest: str, feature_set: str, *, dataset_name: str = "features", storage_options: dict[str, Any] | None = None
) -> DoneIndex:
    """Index the inputs a dataset of DEST already holds, and their error rows, reading only the key columns.

    An input counts once per part file however many rows (augmented copies) it has there.
    Failures are the error rows of the dataset's stage (``augment`` for ``augmented``).
    """
    featurized: Entries = {}
    root = features_root(dest, feature_set, dataset_name)
    fs, parts = _own_parts(root, FEATURE_KEYS[1:], storage_options)
    for part, keys in _read_parts(fs, parts, ["path", "content_key"], root):
        _add_entries(featurized, keys, part.path)
    failed: Entries = {}
    root = errors_root(dest, feature_set)
    fs, parts = _own_parts(root, FEATURIZE_ERROR_KEYS[1:], storage_options)
    for part, errors in _read_parts(fs, parts, ["path", "content_key", "stage"], root):
        augment = pc.equal(errors.column("stage"), AUGMENT_STAGE)
        _add_entries(failed, errors.filter(augment if dataset_name == "augmented" else pc.invert(augment)), part.path)
    return DoneIndex(featurized, failed)


def _add_entries(entries: Entries, keys: pa.Table, part: str) -> None:
    # each (path, content key) of one part file once, however many rows (copies, channels) it has there
    pairs = zip(keys.column("path").to_pylist(), keys.column("content_key").to_pylist(), strict=True)
    for path, key in dict.fromkeys(pairs):
        entries.setdefault(path, []).append((key, part))


_FOLDER_KEYS = frozenset({*FEATURE_KEYS, *FEATURIZE_ERROR_KEYS, *SCORE_KEYS})


def prune_rows(
    part_file: str, paths: set[str], *, protocol: str | None, storage_options: dict[str, Any] | None = None
) -> int:
    """Rewrite one part file of any table without the rows of ``paths`` (deleting it when none remain); return how many went.

    A part file already gone counts 0. A part of the earlier layout is rewritten in the current
    one (the keys of its ``key=value`` folders not stored).
    """
    uri = part_file if protocol is None else f"{protocol}://{part_file}"
    fs, path = files.filesystem(uri, storage_options=storage_options)
    try:
        with files.storage_errors(uri), fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
    except StorageError:
        if fs.exists(path):
            raise
        return 0
    keep = pa.array([value not in paths for value in table.column("path").to_pylist()])
    kept = table.filter(keep)
    if kept.num_rows == 0:
        files.remove(uri, storage_options=storage_options)
    else:
        keys = [folder.partition("=")[0] for folder in part_file.split("/")[:-1] if "=" in folder]
        part = _part_bytes(kept, [key for key in keys if key in _FOLDER_KEYS])
        files.write_bytes_atomic(uri, part, storage_options=storage_options)
    return int(table.num_rows - kept.num_rows)


def score_part(dest: str, table: str, call_date: str, shard_id: str) -> str:
    """URI of one scoring part file: ``DEST/<table>/call_date=<date>/part-<shard-id>.parquet``.

    Raises:
        ConfigError: for an unknown table, a bad date or a shard id not of ``shards.shard_id``'s form.
    """
    if table not in SCORE_SCHEMAS:
        raise ConfigError(f"unknown scoring table {table!r}; expected one of {sorted(SCORE_SCHEMAS)}")
    return files.join(dest, table, _call_date_folder(call_date), part_file_name(shard_id))


def _call_date_folder(call_date: str) -> str:
    return f"{SCORE_KEYS[0]}={date_value(call_date, name='call_date')}"


def write_scores(
    tables: dict[str, pa.Table],
    dest: str,
    shard_id: str,
    *,
    call_dates: Iterable[str],
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Write one shard's errors, predictions and calls, one part file per call date; return the URIs written.

    Every table is written for every date before the next table is, ``calls`` last: a shard whose
    calls part of a date exists has completed that date, and ``remove_orphan_predictions`` cleans up
    after one killed in between. A date in ``call_dates`` without rows in a table removes that part
    file instead, so a retried shard never leaves a stale part of an earlier attempt behind.

    Args:
        tables: ``errors``, ``predictions`` and ``calls`` (``schema.SCORE_SCHEMAS``), each row with its
            ``call_date`` (``YYYY-MM-DD``), which names its folder and is not stored in the file.
        dest: the scoring DEST.
        shard_id: names the part files.
        call_dates: the call dates of all the shard's recordings (those of every row included).
        storage_options: fsspec options for a remote DEST.

    Raises:
        ConfigError: if a call date is not a date, or a row's is not in ``call_dates``.
    """
    days = sorted({date_value(day, name="call_date") for day in call_dates})
    written = []
    for name in SCORE_TABLES:
        table = tables[name].cast(SCORE_SCHEMAS[name])
        column = table.column(SCORE_KEYS[0])
        stray = set(column.to_pylist()) - set(days)
        if stray:
            raise ConfigError(f"rows of call dates {sorted(stray)} not in the shard's call dates {days}")
        for day in days:
            uri = score_part(dest, name, day, shard_id)
            rows = table.filter(pc.equal(column, day))
            if rows.num_rows:
                files.write_bytes_atomic(uri, _part_bytes(rows, SCORE_KEYS), storage_options=storage_options)
                written.append(uri)
            else:
                files.remove(uri, storage_options=storage_options)
    return written


def check_score_layout(dest: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Refuse a scoring DEST of the earlier layout, partitioned by the day of the run (``run_date=`` folders).

    This version partitions by the recording's day (``call_date=``); one DEST holding both would
    break every Hive reader (DuckDB, pandas, pyarrow) and the plan. Costs one listing per table.

    Raises:
        SchemaError: naming the folder and what to do, in one line.
        StorageError: if DEST cannot be listed.
    """
    for table in SCORE_TABLES:
        root = files.join(dest, table)
        if EARLIER_SCORE_KEYS[0] in _folder_keys(root, storage_options):
            shown = files.redact(dest)
            raise SchemaError(
                f"{files.redact(root)} holds {EARLIER_SCORE_KEYS[0]}= folders of an earlier ser-batch (rows by the day "
                f"they were scored; rows are now by the call's date, call_date=): score into a new DEST, or move "
                f"calls/, predictions/, errors/ and _ser_batch/scored/ out of {shown} to score its recordings again"
            )


def check_dest_job(
    dest: str, job: Literal["featurize", "score"], *, storage_options: dict[str, Any] | None = None
) -> None:
    """Refuse a DEST that holds the other job's tables: featurize and score each write a DEST of their own.

    Both write ``errors``, partitioned by different keys (``feature_set=`` and ``call_date=``); one
    folder holding both breaks the Hive readers (pandas and pyarrow cannot merge them). Costs a
    listing per table.

    Raises:
        ConfigError: naming what DEST holds and what to do, in one line.
        StorageError: if DEST cannot be listed.
    """
    other, tables, error_keys = (
        ("score", SCORE_TABLES[1:], {*SCORE_KEYS, *EARLIER_SCORE_KEYS})
        if job == "featurize"
        else ("featurize", DATASETS, set(FEATURIZE_ERROR_KEYS))
    )
    found = [f"{table}/" for table in tables if _folder_keys(files.join(dest, table), storage_options)]
    found += [
        f"errors/{key}=" for key in sorted(_folder_keys(files.join(dest, "errors"), storage_options) & error_keys)
    ]
    if found:
        raise ConfigError(
            f"{files.redact(dest)} holds {', '.join(found)} of a {other} run: {job} into a DEST of its own (featurize "
            "and score both write errors/, by feature_set= and by call_date=, which Hive readers cannot read as one table)"
        )


def _folder_keys(root: str, storage_options: dict[str, Any] | None) -> set[str]:
    # the keys of the key folders under root (``call_date`` for ``call_date=2026-11-24``); empty if root is absent
    fs, base = files.filesystem(root, storage_options=storage_options)
    with files.storage_errors(root):
        names = (
            [str(name).rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(base, detail=False)] if fs.exists(base) else []
        )
    return {name.split("=", 1)[0] for name in names if "=" in name}


def read_scored(
    dest: str,
    model_id: str,
    *,
    call_dates: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DoneIndex:
    """Index the recordings DEST holds for one model by reading the key columns of its calls and errors parts.

    Costs a request per part file: the nightly plan reads ``ser_batch.storage.score_index``
    instead, and this only to build that index once, or for the call dates of a run that died.

    Args:
        dest: the scoring DEST.
        model_id: the model whose rows count.
        call_dates: only these ``call_date`` folders (None: all).
        storage_options: fsspec options for a remote DEST.

    Returns:
        ``featurized``: path -> [(content_key, part)] of recordings with calls rows of ``model_id``
        (scored); ``failed``: the same of its error rows. ``part`` is relative to the table:
        ``call_date=<date>/part-<shard-id>.parquet``.
    """
    entries: dict[str, Entries] = {"calls": {}, "errors": {}}
    for table, found in entries.items():
        for root, fs, parts in _score_parts(dest, table, call_dates, storage_options):
            for part, keys in _read_parts(fs, parts, ["path", "content_key", "model_id"], root):
                relative = f"{_call_date_folder(part.values[SCORE_KEYS[0]])}/{part.path.rsplit('/', 1)[1]}"
                _add_entries(found, keys.filter(pc.equal(keys.column("model_id"), model_id)), relative)
    return DoneIndex(entries["calls"], entries["errors"])


def _score_parts(
    dest: str, table: str, call_dates: Sequence[str] | None, storage_options: dict[str, Any] | None
) -> Iterator[tuple[str, fsspec.AbstractFileSystem, list[_Part]]]:
    # a scoring table's own parts: all of them, or those of some call dates' folders only
    if call_dates is None:
        root = files.join(dest, table)
        yield (root, *_own_parts(root, SCORE_KEYS, storage_options))
        return
    for day in sorted(set(call_dates)):
        root = files.join(dest, table, _call_date_folder(day))
        yield (root, *_own_parts(root, (), storage_options, known={SCORE_KEYS[0]: day}))


def remove_orphan_predictions(
    dest: str, *, call_dates: Sequence[str] | None = None, storage_options: dict[str, Any] | None = None
) -> int:
    """Delete predictions parts that have no calls part of the same call date and shard; return how many.

    Such a part is left only by a shard killed between its two writes; its recordings have
    no calls rows, so they are scored again. Assumes one scoring run per DEST at a time
    (``ser_batch.storage.lease``). Only ser-batch's own part files are considered
    (``schema.PART_FILE``); ``call_dates`` limits the search to those folders.
    """
    parts: dict[str, dict[tuple[str, str], str]] = {}
    for name in ("predictions", "calls"):
        parts[name] = {
            (part.values[SCORE_KEYS[0]], part.path.rsplit("/", 1)[1]): part.path
            for _, _, found in _score_parts(dest, name, call_dates, storage_options)
            for part in found
        }
    orphans = sorted(set(parts["predictions"]) - set(parts["calls"]))
    protocol = dest.split("://", 1)[0] if files.is_remote(dest) else None
    for relative in orphans:
        path = parts["predictions"][relative]
        files.remove(path if protocol is None else f"{protocol}://{path}", storage_options=storage_options)
    return len(orphans)


def read_parts(
    uris: Sequence[str], *, columns: Sequence[str] | None = None, storage_options: dict[str, Any] | None = None
) -> pa.Table | None:
    """Read part files of one table and one store into one table, e.g. the parts a run wrote (its shard summaries name them).

    Parts are read several at a time; an unreadable one is skipped with a warning, as by every reader here.

    Returns:
        their rows (``columns`` only, when given; no folder keys), or None for no URIs or no readable part.

    Raises:
        StorageError: if a part does not exist or cannot be opened.
    """
    if not uris:
        return None
    fs, _ = files.filesystem(uris[0], storage_options=storage_options)
    parts = [_Part(files.filesystem(uri, storage_options=storage_options)[1], {}) for uri in uris]
    tables = [table for _, table in _read_parts(fs, parts, columns, uris[0])]
    return pa.concat_tables(tables, promote_options="default") if tables else None


_RECORDING_CALL_COLUMNS = (
    "path",
    "channel",
    "role",
    "n_channels",
    "duration_s",
    "model_id",
    "content_key",
    "scored_at",
    "run_date",
)


def read_recording_scores(
    dest: str, path: str, *, call_date: str | None = None, storage_options: dict[str, Any] | None = None
) -> tuple[pa.Table, pa.Table]:
    """The calls rows of one recording in a scoring DEST (every model; every call date, or ``call_date``'s) and their predictions rows.

    Only the calls table's key columns are read in full; predictions are read from the parts of
    the shards whose calls rows name the recording (a shard's parts share its id).

    Returns:
        ``(calls, predictions)``, both with ``call_date``; each possibly empty (a recording without
        speech has calls rows but no predictions rows; one never scored into DEST has neither).

    Raises:
        SchemaError: for a DEST of the earlier ``run_date`` layout (``check_score_layout``).
        StorageError: if DEST cannot be read.
    """
    check_score_layout(dest, storage_options=storage_options)
    key = SCORE_KEYS[0]
    calls, predictions = [], []
    if call_date is None:
        root = files.join(dest, "calls")
        fs, parts = _own_parts(root, SCORE_KEYS, storage_options)
    else:
        root = files.join(dest, "calls", _call_date_folder(call_date))
        fs, parts = _own_parts(root, (), storage_options, known={key: call_date})
    for part, table in _read_parts(fs, parts, [*_RECORDING_CALL_COLUMNS, key], root):
        rows = table.filter(pc.equal(table.column("path"), path))
        if not rows.num_rows:
            continue
        calls.append(rows)
        uri = files.join(dest, "predictions", _call_date_folder(part.values[key]), part.path.rsplit("/", 1)[1])
        _, windows_path = files.filesystem(uri, storage_options=storage_options)
        with files.storage_errors(uri):
            if not fs.exists(windows_path):
                continue
        for _, windows in _read_parts(fs, [_Part(windows_path, part.values)], None, uri):
            predictions.append(windows.filter(pc.equal(windows.column("path"), path)))
    empty_calls = pa.schema(
        [*(CALLS_SCHEMA.field(n) for n in _RECORDING_CALL_COLUMNS), pa.field(key, pa.string(), nullable=False)]
    )
    return (
        pa.concat_tables(calls, promote_options="default") if calls else empty_calls.empty_table(),
        pa.concat_tables(predictions, promote_options="default") if predictions else PREDICTIONS_SCHEMA.empty_table(),
    )
