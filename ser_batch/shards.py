"""The plan of a run: the listed inputs, what DEST already holds, the shards still to do, and what each did (pure).

Featurize and score share this: a catalogue of ``FileInfo`` is compared with a
``DoneIndex`` of DEST by (path, content key), and the rest is cut into deterministic
``Shard``s whose ids name their part files. ``mirror_removals`` says which stored rows
to delete so DEST holds exactly one row per input, the one of its current content.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ser_batch.schema import ModelIdentity


@dataclass(frozen=True)
class FileInfo:
    """One listed file: its URI, size in bytes, a key that changes when its content does, and its mtime.

    ``modified_s`` (POSIX seconds, UTC; S3 ``LastModified``) is None when the store gives none.
    """

    uri: str
    size: int
    content_key: str
    modified_s: float | None = None


@dataclass
class PassedOver:
    """What a listing of SOURCE did not take: files by extension, and folders it could not list."""

    extensions: Counter[str] = field(default_factory=Counter)  # extension -> files (not audio: not in AUDIO_EXTENSIONS)
    unreadable: list[str] = field(default_factory=list)  # folders whose files are unknown: their rows are kept

    def under_unreadable(self, path: str) -> bool:
        """Whether ``path`` lies in a folder the listing could not read.

        >>> PassedOver(unreadable=["/a/b"]).under_unreadable("/a/b/c.wav"), PassedOver().under_unreadable("/a/c.wav")
        (True, False)
        """
        return any(path.startswith(folder.rstrip("/") + "/") for folder in self.unreadable)


Entries = dict[str, list[tuple[str, str]]]
"""Input path -> ``[(content key, part file), ...]``: where DEST holds rows of it."""


@dataclass(frozen=True)
class DoneIndex:
    """What DEST already holds for a feature set (or a model), keyed by input path."""

    featurized: Entries  # rows of the input (features, augmented copies, or calls)
    failed: Entries = field(default_factory=dict)  # its error rows

    def has_failed(self, path: str, content_key: str) -> bool:
        """Whether an error row of this content of ``path`` is recorded."""
        return any(key == content_key for key, _ in self.failed.get(path, ()))

    def paths(self) -> set[str]:
        """Every input path DEST holds a row of (featurized or failed)."""
        return set(self.featurized) | set(self.failed)


class Shard:
    """A batch of inputs featurized by one task; its id names its part files.

    A plain class, not a dataclass or tuple: Prefect walks those field by field looking for
    futures (every file, twice per task submission: ~25 ms for 500 files) and Dask hashes
    them whole, while the id already identifies the content.
    """

    __slots__ = ("shard_id", "files")

    def __init__(self, shard_id: str, files: tuple[FileInfo, ...]) -> None:
        self.shard_id, self.files = shard_id, files

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shard) and (self.shard_id, self.files) == (other.shard_id, other.files)

    def __hash__(self) -> int:
        return hash(self.shard_id)

    def __repr__(self) -> str:
        return f"Shard({self.shard_id!r}, <{len(self.files)} files>)"

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("ser_batch.Shard", self.shard_id)


@dataclass
class Plan:
    """The work of one run and what was found already done."""

    pending: list[FileInfo] = field(default_factory=list)  # in listing order
    fingerprint: str = ""  # part of every shard id
    shard_size: int = 1  # the most inputs a shard holds
    n_seen: int = 0  # listed inputs, settling ones included
    n_done: int = 0
    n_known_bad: int = 0
    n_settling: int = 0  # modified too recently: left for a later run
    listed: dict[str, str] = field(default_factory=dict)  # path -> content key of every settled listed input
    settling: set[str] = field(default_factory=set)  # paths of inputs still being written
    reconcile: dict[str, str | None] = field(default_factory=dict)  # paths DEST does not yet mirror (None: gone)
    passed_over: PassedOver = field(default_factory=PassedOver)  # what the listing did not take

    @property
    def n_pending(self) -> int:
        """Inputs still to do."""
        return len(self.pending)

    @property
    def shards(self) -> list[Shard]:
        """The pending inputs in the fewest near-equal shards of at most ``shard_size``."""
        return self.shards_for(1)

    def shards_for(self, n_slots: int) -> list[Shard]:
        """Like ``shards``, but as many as a multiple of ``n_slots`` (parallel task slots) where there are enough inputs.

        Equal shards in a multiple of the slots let the slots finish together: 27 shards on
        two workers left one of them idle for up to a whole shard at the end of a run.
        """
        return cut_shards(self.pending, fingerprint=self.fingerprint, shard_size=self.shard_size, n_slots=n_slots)


def cut_shards(files: Sequence[FileInfo], *, fingerprint: str, shard_size: int, n_slots: int = 1) -> list[Shard]:
    """``files`` in order, cut into the fewest near-equal shards of at most ``shard_size``.

    Their number is a multiple of ``n_slots``, as far as there are files.

    >>> files = [FileInfo(f"/a/{i}.wav", 1, "1:1") for i in range(7)]
    >>> [len(s.files) for s in cut_shards(files, fingerprint="f", shard_size=3)]
    [3, 2, 2]
    >>> [len(s.files) for s in cut_shards(files, fingerprint="f", shard_size=3, n_slots=2)]
    [2, 2, 2, 1]
    """
    if not files:
        return []
    n_shards = -(-len(files) // shard_size)
    n_shards = min(len(files), -(-n_shards // n_slots) * n_slots)
    size, n_larger = divmod(len(files), n_shards)
    shards, start = [], 0
    for index in range(n_shards):
        chunk = tuple(files[start : start + size + (index < n_larger)])
        shards.append(Shard(shard_id(chunk, fingerprint), chunk))
        start += len(chunk)
    return shards


def split_shard(shard: Shard, *, fingerprint: str) -> list[Shard]:
    """``shard``'s files in two near-equal halves, in order, each a shard of its own id (a one-file shard stays whole).

    >>> files = tuple(FileInfo(f"/a/{i}.wav", 1, "1:1") for i in range(5))
    >>> [len(half.files) for half in split_shard(Shard(shard_id(files, "f"), files), fingerprint="f")]
    [3, 2]
    """
    if len(shard.files) < 2:
        return [shard]
    return cut_shards(shard.files, fingerprint=fingerprint, shard_size=-(-len(shard.files) // 2))


def shard_id(files: Iterable[FileInfo], fingerprint: str) -> str:
    """Deterministic id of a shard: the same inputs and feature set always give the same id.

    >>> a = FileInfo("/x/a.wav", 1, "1:1")
    >>> shard_id([a], "f") == shard_id([a], "f") != shard_id([a], "g")
    True
    """
    digest = hashlib.sha256(fingerprint.encode())
    for info in files:
        digest.update(f"\n{info.uri}\t{info.content_key}".encode())
    return digest.hexdigest()[:20]


def plan_shards(
    files: Iterable[FileInfo],
    done: DoneIndex,
    *,
    fingerprint: str,
    shard_size: int,
    retry_errors: bool = False,
    settled_before: float | None = None,
) -> Plan:
    """Drop inputs whose (path, content key) DEST already holds, and shard the rest in listing order (``Plan.shards``).

    Args:
        files: the catalogue, in a stable order.
        done: what DEST holds for this feature set.
        fingerprint: the feature set's fingerprint (part of every shard id).
        shard_size: inputs per shard, >= 1.
        retry_errors: featurize again inputs whose error is already recorded.
        settled_before: POSIX time (s); inputs modified after it are still being written and are
            left alone (not planned, their stored rows kept). None takes every input.

    Returns:
        The plan; ``reconcile`` lists the paths whose stored rows do not yet mirror SOURCE:
        present ones with their current content key, gone ones (in DEST, not listed) with None.
    """
    plan = Plan(fingerprint=fingerprint, shard_size=shard_size)
    for info in files:
        plan.n_seen += 1
        if settled_before is not None and info.modified_s is not None and info.modified_s > settled_before:
            plan.n_settling += 1
            plan.settling.add(info.uri)
            continue
        plan.listed[info.uri] = info.content_key
        stored, failed = done.featurized.get(info.uri, []), done.failed.get(info.uri, [])
        if any(key == info.content_key for key, _ in stored):
            plan.n_done += 1
        elif not retry_errors and done.has_failed(info.uri, info.content_key):
            plan.n_known_bad += 1
        else:
            plan.pending.append(info)
            if stored or failed:
                plan.reconcile[info.uri] = info.content_key
            continue
        if not _mirrored(stored, failed, info.content_key):
            plan.reconcile[info.uri] = info.content_key
    for path in sorted(done.paths() - plan.listed.keys() - plan.settling):
        plan.reconcile[path] = None
    return plan


def _mirrored(stored: Sequence[tuple[str, str]], failed: Sequence[tuple[str, str]], content_key: str) -> bool:
    # exactly one row, of the current content: a features row, or else an error row
    return [key for key, _ in (stored or failed)] == [content_key] and not (stored and failed)


def mirror_removals(done: DoneIndex, current: Mapping[str, str | None]) -> dict[str, set[str]]:
    """Rows to delete so each path of ``current`` keeps exactly one row, the one of its current content.

    A path keeps its first row (by part file) of its current content key, and then no error
    row; without such a row, its first error row of that content, and no other row. A path
    with neither keeps everything (a shard that wrote nothing for it failed: nothing is lost).
    A path whose current key is None (gone from SOURCE) loses every row.

    Args:
        done: what DEST holds (re-read after the run's shards).
        current: path -> content key in SOURCE now, None for a path that is gone.

    Returns:
        part file -> paths to remove from it.

    >>> done = DoneIndex({"/a.wav": [("1:old", "p1"), ("1:new", "p2")]}, {"/a.wav": [("0:x", "e1")]})
    >>> sorted(mirror_removals(done, {"/a.wav": "1:new"}).items())
    [('e1', {'/a.wav'}), ('p1', {'/a.wav'})]
    >>> sorted(mirror_removals(done, {"/a.wav": None}))
    ['e1', 'p1', 'p2']
    """
    remove: dict[str, set[str]] = {}
    for path, current_key in current.items():
        stored = sorted(done.featurized.get(path, []), key=lambda entry: entry[1])
        failed = sorted(done.failed.get(path, []), key=lambda entry: entry[1])
        keep = next((entry for entry in stored if entry[0] == current_key), None)
        if keep is None:
            keep = next((entry for entry in failed if entry[0] == current_key), None)
        if keep is None and current_key is not None:
            continue
        for _, part in (*stored, *failed):
            if keep is None or part != keep[1]:
                remove.setdefault(part, set()).add(path)
    return remove


@dataclass(frozen=True)
class ShardSummary:
    """What one shard did; small enough to travel back through Prefect."""

    shard_id: str
    n_files: int
    n_rows: int
    n_errors: int
    audio_s: float
    elapsed_s: float
    part_files: tuple[str, ...]


@dataclass(frozen=True)
class ScoreShardSummary:
    """What one shard did; small enough to travel back through Prefect."""

    shard_id: str
    model_id: str
    n_recordings: int
    n_scored: int
    n_errors: int
    n_channels: int
    n_segments: int
    audio_s: float
    speech_s: float
    started_at: float
    elapsed_s: float
    cpu_s: float
    model_loaded: bool
    part_files: tuple[str, ...]
    recordings: tuple[tuple[str, str, bool, str], ...] = ()  # (path, content key, scored, call date) of each input


@dataclass(frozen=True)
class ScorePlan:
    """The work of one scoring run: shards to score and what was found already done (``index``)."""

    model: ModelIdentity
    plan: Plan
    n_listed: int
    n_orphans_removed: int
    index: DoneIndex = field(default_factory=lambda: DoneIndex({}))
    run_id: str = ""
