"""What a featurize run must do: list SOURCE, compare with DEST, plan shards, reconcile (IO driver)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ser_batch import storage, store
from ser_batch.config import FeatureConfig
from ser_batch.errors import ConfigError
from ser_batch.plan import Plan, plan_shards, superseded_rows


def check_locations(source: str, dest: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Fail fast, before any work: SOURCE must be listable and DEST writable.

    Raises:
        StorageError: naming the location and the cause (missing, denied, unreachable, no credentials).
    """
    next(storage.list_files(source, storage_options=storage_options), None)
    storage.check_writable(dest, storage_options=storage_options)


def plan_featurization(
    source: str,
    dest: str,
    config: FeatureConfig,
    *,
    shard_size: int,
    retry_errors: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Check SOURCE and DEST, list the audio under SOURCE and plan the shards still to featurize.

    Raises:
        ConfigError: if ``shard_size`` < 1.
        StorageError: if SOURCE is missing or unlistable, or DEST is not writable.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size {shard_size} < 1")
    files = storage.list_files(source, storage_options=storage_options)
    first = next(files, None)  # lists SOURCE now, so a wrong path fails before DEST is touched
    storage.check_writable(dest, storage_options=storage_options)
    done = store.read_done(dest, config.name, storage_options=storage_options)
    catalogue = files if first is None else _chain(first, files)
    return plan_shards(catalogue, done, fingerprint=config.fingerprint(), shard_size=shard_size, retry_errors=retry_errors)


def _chain(first: storage.FileInfo, rest: Any) -> Any:
    yield first
    yield from rest


def reconcile_features(
    dest: str, config: FeatureConfig, changed: Mapping[str, str], *, storage_options: dict[str, Any] | None = None
) -> int:
    """After a run, delete the rows superseded by re-featurized (changed) inputs; return how many.

    Runs only over paths the plan flagged, so an unchanged archive costs nothing here.
    """
    if not changed:
        return 0
    done = store.read_done(dest, config.name, storage_options=storage_options)
    protocol = dest.split("://", 1)[0] if storage.is_remote(dest) else None
    removed = 0
    for part_file, paths in sorted(superseded_rows(done, changed).items()):
        removed += store.prune_rows(part_file, paths, protocol=protocol, storage_options=storage_options)
    return removed
