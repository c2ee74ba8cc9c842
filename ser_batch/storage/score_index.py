"""What a scoring DEST holds per model, in one file, so a night's plan does not read every part ever written (IO).

``DEST/_ser_batch/scored/<model_id>.parquet`` has one row per recording and part file of
a model: ``path, content_key, outcome`` (``scored`` or ``failed``) and ``part``
(``call_date=<date>/part-<shard-id>.parquet``, the same name in calls, predictions and
errors; a shard writes one part per call date of its recordings). A night's plan reads it in one request instead of a request per part file, so
planning costs the same after a year of nights as after one.

The index is rewritten at the end of every run that completed. A run first leaves a note
in ``DEST/_ser_batch/runs/<run-id>.json`` naming its model and the call dates it writes, and
removes it with that rewrite; a run that died leaves its note, and the next run reads the part
files of those call dates only (``tables.read_scored``) to bring the index up to date. A DEST
without an index (the index deleted, or one of the earlier ``run_date`` layout) is read whole once.
Everything here assumes the DEST lease is held (``ser_batch.storage.lease``).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ser_batch.errors import ConfigError
from ser_batch.schema import SCORE_KEYS, SCORE_TABLES, date_value
from ser_batch.shards import DoneIndex, Entries
from ser_batch.storage import files, tables

_INDEX_ROOT = "_ser_batch/scored"
_RUNS_ROOT = "_ser_batch/runs"
_SCORED, _FAILED = "scored", "failed"

SCORE_INDEX_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_key", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("part", pa.string(), nullable=False),
    ]
)

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class LoadedScoreIndex:
    """A model's index as a plan uses it, and what loading it took."""

    done: DoneIndex
    n_orphans_removed: int  # predictions parts of killed shards deleted
    n_runs_recovered: int  # notes of runs that died, folded in
    rebuilt: bool  # read from every part file (no index yet)


def score_index_uri(dest: str, model_id: str) -> str:
    """``DEST/_ser_batch/scored/<model_id>.parquet``.

    Raises:
        ConfigError: if ``model_id`` could name another file.
    """
    if not _MODEL_ID.match(model_id):
        raise ConfigError(f"model_id {model_id!r} is not a plain name")
    return files.join(dest, _INDEX_ROOT, f"{model_id}.parquet")


def score_part_name(call_date: str, shard_id: str) -> str:
    """A scoring part file's name relative to its table: ``call_date=<date>/part-<shard-id>.parquet``.

    Raises:
        ConfigError: if ``call_date`` is not a ``YYYY-MM-DD`` date.
    """
    return f"{SCORE_KEYS[0]}={date_value(call_date, name='call_date')}/part-{shard_id}.parquet"


def load_score_index(dest: str, model_id: str, *, storage_options: dict[str, Any] | None = None) -> LoadedScoreIndex:
    """A model's index, brought up to date with runs that died (their notes removed), rebuilt if absent.

    Writes the index back when it changed. Reading it costs one request; runs that died cost
    a listing of their call dates' folders; a missing index costs a read of every part once.

    Raises:
        StorageError: if DEST cannot be read or written.
    """
    runs = read_run_notes(dest, storage_options=storage_options)
    done = read_score_index(dest, model_id, storage_options=storage_options)
    rebuilt = done is None
    n_orphans = 0
    if done is None:
        done = tables.read_scored(dest, model_id, storage_options=storage_options)
        n_orphans = tables.remove_orphan_predictions(dest, storage_options=storage_options)
        runs_of_others = [run for run in runs if run["model_id"] != model_id]
    else:
        runs_of_others = []
        for run in runs:
            n_orphans += tables.remove_orphan_predictions(
                dest, call_dates=run["call_dates"], storage_options=storage_options
            )
            if run["model_id"] == model_id:
                done = merge_indexes(
                    done,
                    tables.read_scored(dest, model_id, call_dates=run["call_dates"], storage_options=storage_options),
                )
            else:
                runs_of_others.append(run)
    for run in runs_of_others:  # another model's run died: fold it into that model's index
        other = read_score_index(dest, run["model_id"], storage_options=storage_options)
        if other is not None:
            found = tables.read_scored(
                dest, run["model_id"], call_dates=run["call_dates"], storage_options=storage_options
            )
            write_score_index(dest, run["model_id"], merge_indexes(other, found), storage_options=storage_options)
    if rebuilt or runs:
        write_score_index(dest, model_id, done, storage_options=storage_options)
    for run in runs:
        end_run_note(dest, run["run_id"], storage_options=storage_options)
    return LoadedScoreIndex(done, n_orphans, len(runs), rebuilt)


def read_score_index(dest: str, model_id: str, *, storage_options: dict[str, Any] | None = None) -> DoneIndex | None:
    """A model's index as stored; None when there is none, or it names parts of the earlier ``run_date`` layout."""
    uri = score_index_uri(dest, model_id)
    fs, path = files.filesystem(uri, storage_options=storage_options)
    with files.storage_errors(uri):
        try:
            with fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
        except FileNotFoundError:
            return None
    scored: Entries = {}
    failed: Entries = {}
    if not all(part.startswith(f"{SCORE_KEYS[0]}=") for part in table.column("part").to_pylist()):
        return None  # its parts were moved out of DEST with the earlier layout (tables.check_score_layout)
    columns = (table.column(name).to_pylist() for name in SCORE_INDEX_SCHEMA.names)
    for path_, key, outcome, part in zip(*columns, strict=True):
        (scored if outcome == _SCORED else failed).setdefault(path_, []).append((key, part))
    return DoneIndex(scored, failed)


def write_score_index(
    dest: str, model_id: str, done: DoneIndex, *, storage_options: dict[str, Any] | None = None
) -> None:
    """Replace a model's index with ``done`` (whole, in one write)."""
    rows: dict[str, list[str]] = {name: [] for name in SCORE_INDEX_SCHEMA.names}
    for outcome, entries in ((_SCORED, done.featurized), (_FAILED, done.failed)):
        for path, stored in entries.items():
            for key, part in stored:
                for name, value in zip(SCORE_INDEX_SCHEMA.names, (path, key, outcome, part), strict=True):
                    rows[name].append(value)
    table = pa.Table.from_pydict(rows, schema=SCORE_INDEX_SCHEMA).sort_by(
        [("path", "ascending"), ("part", "ascending")]
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    uri = score_index_uri(dest, model_id)
    with files.storage_errors(uri):
        files.write_bytes_atomic(uri, buffer.getvalue(), storage_options=storage_options)


def merge_indexes(*indexes: DoneIndex) -> DoneIndex:
    """The entries of all ``indexes``, each once, in order.

    >>> a = DoneIndex({"/x.wav": [("1:a", "p1")]}, {})
    >>> merge_indexes(a, DoneIndex({"/x.wav": [("1:a", "p1"), ("1:b", "p2")]}, {})).featurized
    {'/x.wav': [('1:a', 'p1'), ('1:b', 'p2')]}
    """
    scored: Entries = {}
    failed: Entries = {}
    for index in indexes:
        for merged, entries in ((scored, index.featurized), (failed, index.failed)):
            for path, stored in entries.items():
                known = merged.setdefault(path, [])
                known.extend(entry for entry in stored if entry not in known)
    return DoneIndex(scored, failed)


def index_without(done: DoneIndex, removed: dict[str, set[str]]) -> DoneIndex:
    """``done`` less the entries of ``removed`` (part -> paths, as ``shards.mirror_removals`` gives)."""

    def keep(entries: Entries) -> Entries:
        kept = {
            path: [(k, part) for k, part in stored if path not in removed.get(part, ())]
            for path, stored in entries.items()
        }
        return {path: stored for path, stored in kept.items() if stored}

    return DoneIndex(keep(done.featurized), keep(done.failed))


def index_without_parts(done: DoneIndex, parts: set[str]) -> DoneIndex:
    """``done`` less every entry in ``parts`` (part files since rewritten whole).

    >>> index_without_parts(DoneIndex({"/x.wav": [("1:a", "p1")]}, {"/x.wav": [("1:a", "p2")]}), {"p2"}).failed
    {}
    """

    def keep(entries: Entries) -> Entries:
        kept = {path: [(k, part) for k, part in stored if part not in parts] for path, stored in entries.items()}
        return {path: stored for path, stored in kept.items() if stored}

    return DoneIndex(keep(done.featurized), keep(done.failed))


def prune_score_parts(dest: str, removed: dict[str, set[str]], *, storage_options: dict[str, Any] | None = None) -> int:
    """Delete the rows of the given paths from the calls, predictions and errors parts of each named part; return how many."""
    protocol = dest.split("://", 1)[0] if files.is_remote(dest) else None
    n_rows = 0
    for part, paths in sorted(removed.items()):
        for table in SCORE_TABLES:
            uri = files.join(dest, table, part)
            target = uri if protocol is None else uri.split("://", 1)[1]
            n_rows += tables.prune_rows(target, paths, protocol=protocol, storage_options=storage_options)
    return n_rows


def shard_index(recordings: Iterable[tuple[str, str, bool, str]], shard_id: str) -> DoneIndex:
    """An index of one shard's recordings: ``(path, content_key, scored, call_date)`` each, in its call date's part."""
    scored: Entries = {}
    failed: Entries = {}
    for path, key, ok, day in recordings:
        (scored if ok else failed).setdefault(path, []).append((key, score_part_name(day, shard_id)))
    return DoneIndex(scored, failed)


def start_run_note(
    dest: str,
    run_id: str,
    *,
    model_id: str,
    call_dates: Iterable[str],
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Leave the note of a run about to write parts under ``call_dates`` (removed by ``end_run_note`` once indexed)."""
    days = sorted({date_value(day, name="call_date") for day in call_dates})
    note = {"run_id": run_id, "model_id": model_id, "call_dates": days}
    uri = files.join(dest, _RUNS_ROOT, f"{run_id}.json")
    with files.storage_errors(uri):
        files.write_bytes_atomic(uri, json.dumps(note).encode(), storage_options=storage_options)


def end_run_note(dest: str, run_id: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Remove a run's note: its parts are in the index."""
    files.remove(files.join(dest, _RUNS_ROOT, f"{run_id}.json"), storage_options=storage_options)


def read_run_notes(dest: str, *, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The notes of runs that started writing and have not been indexed (runs that died), oldest name first.

    Each is ``{"run_id": str, "model_id": str, "call_dates": [YYYY-MM-DD, ...]}``; a note of the earlier
    ``run_date`` layout names parts this version never reads, and is passed over (then removed).
    """
    uri = files.join(dest, _RUNS_ROOT)
    fs, root = files.filesystem(uri, storage_options=storage_options)
    with files.storage_errors(uri):
        if not fs.exists(root):
            return []
        names = sorted(name for name in fs.find(root) if name.endswith(".json"))
        notes = []
        for name in names:
            try:
                note = json.loads(fs.cat_file(name))
                days = [date_value(str(day), name="call_date") for day in note.get("call_dates", [])]
                notes.append({"run_id": str(note["run_id"]), "model_id": str(note["model_id"]), "call_dates": days})
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # cut short by a crash while it was written: that run wrote no part yet
    return notes
