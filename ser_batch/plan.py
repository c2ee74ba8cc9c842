"""Which inputs still need featurizing, cut into deterministic shards (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ser_batch.storage import FileInfo
from ser_batch.store import DoneIndex


@dataclass(frozen=True)
class Shard:
    """A batch of inputs featurized by one task; its id names its part files."""

    shard_id: str
    files: tuple[FileInfo, ...]


@dataclass
class Plan:
    """The work of one run and what was found already done."""

    shards: list[Shard] = field(default_factory=list)
    n_seen: int = 0
    n_done: int = 0
    n_known_bad: int = 0
    changed: dict[str, str] = field(default_factory=dict)  # path -> current content key, where DEST holds another row

    @property
    def n_pending(self) -> int:
        return sum(len(shard.files) for shard in self.shards)


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
) -> Plan:
    """Drop inputs whose (path, content key) DEST already holds, and shard the rest in listing order.

    Args:
        files: the catalogue, in a stable order.
        done: what DEST holds for this feature set.
        fingerprint: the feature set's fingerprint (part of every shard id).
        shard_size: inputs per shard, >= 1.
        retry_errors: featurize again inputs whose error is already recorded.

    Returns:
        The plan; ``changed`` lists paths whose stored rows must be reconciled after the run.
    """
    plan = Plan()
    batch: list[FileInfo] = []
    for info in files:
        plan.n_seen += 1
        stored = done.featurized.get(info.uri, [])
        if len(stored) > 1 or any(key != info.content_key for key, _ in stored):
            plan.changed[info.uri] = info.content_key
        if any(key == info.content_key for key, _ in stored):
            plan.n_done += 1
            continue
        if not retry_errors and (info.uri, info.content_key) in done.failed:
            plan.n_known_bad += 1
            continue
        batch.append(info)
        if len(batch) == shard_size:
            plan.shards.append(Shard(shard_id(batch, fingerprint), tuple(batch)))
            batch = []
    if batch:
        plan.shards.append(Shard(shard_id(batch, fingerprint), tuple(batch)))
    return plan


def superseded_rows(done: DoneIndex, changed: Mapping[str, str]) -> dict[str, set[str]]:
    """Rows to delete so each changed path keeps exactly one row, the one of its current content.

    A path keeps its first row with the current content key; its other rows go. A path
    with no current row keeps everything (its re-featurization failed; nothing is lost).

    Returns:
        part file -> paths to remove from it.
    """
    remove: dict[str, set[str]] = {}
    for path, current_key in changed.items():
        stored = sorted(done.featurized.get(path, []), key=lambda entry: entry[1])
        keep = next((entry for entry in stored if entry[0] == current_key), None)
        if keep is None:
            continue
        for entry in stored:
            if entry is not keep:
                remove.setdefault(entry[1], set()).add(path)
    return remove
