"""What a featurize or score run must do: list SOURCE, compare with DEST, plan shards, reconcile (IO driver)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from ser_batch import schema, shards, storage
from ser_batch.config import FeatureConfig
from ser_batch.errors import AudioError, ConfigError
from ser_batch.labels import labels_from_path
from ser_batch.schema import ModelIdentity
from ser_batch.shards import FileInfo, Plan, ScorePlan, plan_shards, superseded_rows
from ser_batch.storage.model_dir import read_model_identity

_DATE_FOLDERS = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")


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
    _check_shard_size(shard_size)
    files = storage.list_files(source, storage_options=storage_options)
    first = next(files, None)  # lists SOURCE now, so a wrong path fails before DEST is touched
    storage.check_writable(dest, storage_options=storage_options)
    done = storage.read_done(dest, config.name, storage_options=storage_options)
    catalogue = files if first is None else _chain(first, files)
    return plan_shards(
        catalogue, done, fingerprint=config.fingerprint(), shard_size=shard_size, retry_errors=retry_errors
    )


AUGMENTATION_POLICY = "call-v1"
"""Version of ``ser_batch.features.augment.augmented_copies``; part of every augmentation shard id."""


def plan_augmentation(
    source: str,
    dest: str,
    config: FeatureConfig,
    *,
    shard_size: int,
    retry_errors: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Plan the augmented copies still to make.

    Those are of the labelled clips under SOURCE whose features row (of their current
    content) DEST holds and whose copies it does not.

    Raises:
        ConfigError: if ``shard_size`` < 1.
        StorageError: if SOURCE or DEST cannot be read.
    """
    _check_shard_size(shard_size)
    featurized = storage.read_done(dest, config.name, storage_options=storage_options).featurized
    done = storage.read_done(dest, config.name, dataset_name="augmented", storage_options=storage_options)
    labelled = (
        info
        for info in storage.list_files(source, storage_options=storage_options)
        if any(key == info.content_key for key, _ in featurized.get(info.uri, ())) and _labelled(info.uri)
    )
    fingerprint = f"{config.fingerprint()}/{AUGMENTATION_POLICY}"
    return plan_shards(labelled, done, fingerprint=fingerprint, shard_size=shard_size, retry_errors=retry_errors)


def _labelled(uri: str) -> bool:
    try:
        return labels_from_path(uri).emotion is not None
    except AudioError:  # mislabelled names never reach the features table anyway
        return False


def _check_shard_size(shard_size: int) -> None:
    if shard_size < 1:
        raise ConfigError(f"shard_size {shard_size} < 1")


def _chain(first: shards.FileInfo, rest: Any) -> Any:
    yield first
    yield from rest


def reconcile_features(
    dest: str,
    config: FeatureConfig,
    changed: Mapping[str, str],
    *,
    dataset_name: str = "features",
    storage_options: dict[str, Any] | None = None,
) -> int:
    """After a run, delete the rows superseded by re-featurized (changed) inputs; return how many.

    Runs only over paths the plan flagged, so an unchanged archive costs nothing here.
    """
    if not changed:
        return 0
    done = storage.read_done(dest, config.name, dataset_name=dataset_name, storage_options=storage_options)
    protocol = dest.split("://", 1)[0] if storage.is_remote(dest) else None
    removed = 0
    for part_file, paths in sorted(superseded_rows(done, changed).items()):
        removed += storage.prune_rows(part_file, paths, protocol=protocol, storage_options=storage_options)
    return removed


def parse_date(value: str | date) -> date:
    """A ``YYYY-MM-DD`` date.

    Raises:
        ConfigError: if the text is not such a date.

    >>> parse_date("2026-11-24")
    datetime.date(2026, 11, 24)
    """
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(schema.run_date_value(value))
    except ConfigError:
        raise ConfigError(f"date {value!r} is not a date in the form YYYY-MM-DD") from None


def recording_date(info: FileInfo) -> date | None:
    """The day a recording belongs to, for ``since``.

    The last ``YYYY/MM/DD`` folder triple in its path (``s3://calls/archive/2026/11/24/x.wav``
    is 2026-11-24) when it forms a real date; otherwise its modification time's UTC date;
    None when the store gives neither.

    >>> recording_date(FileInfo("s3://calls/2026/11/24/a.wav", 1, "1:x"))
    datetime.date(2026, 11, 24)
    """
    for year, month, day in reversed(_DATE_FOLDERS.findall(info.uri.replace("\\", "/"))):
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            continue
    if info.modified_s is None:
        return None
    return datetime.fromtimestamp(info.modified_s, UTC).date()


def recordings_since(files: Iterable[FileInfo], since: date | None) -> Iterator[FileInfo]:
    """The recordings dated on or after ``since`` (all with None); undated ones are kept."""
    for info in files:
        day = recording_date(info) if since is not None else None
        if day is None or since is None or day >= since:
            yield info


def check_scoring(
    source: str, dest: str, model_dir: str, *, storage_options: dict[str, Any] | None = None
) -> ModelIdentity:
    """Fail fast, before any work: the model directory readable and matching, SOURCE listable, DEST writable.

    Raises:
        StorageError, SchemaError, ConfigError: naming the location and the cause.
    """
    identity = read_model_identity(model_dir, storage_options=storage_options)
    next(storage.list_files(source, storage_options=storage_options), None)
    storage.check_writable(dest, storage_options=storage_options)
    return identity


def plan_scoring(
    source: str,
    dest: str,
    model_dir: str,
    *,
    shard_size: int,
    since: str | date | None = None,
    retry_errors: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> ScorePlan:
    """List SOURCE and plan the shards of recordings this model has not scored yet.

    Also removes predictions parts a killed shard left without their calls part.

    Raises:
        ConfigError: if ``shard_size`` < 1 or ``since`` is not a date.
        StorageError, SchemaError: as ``check_scoring``.
    """
    _check_shard_size(shard_size)
    since_date = parse_date(since) if since is not None else None
    identity = read_model_identity(model_dir, storage_options=storage_options)
    files = storage.list_files(source, storage_options=storage_options)
    first = next(files, None)  # lists SOURCE now, so a wrong path fails before DEST is touched
    storage.check_writable(dest, storage_options=storage_options)
    orphans = storage.remove_orphan_predictions(dest, storage_options=storage_options)
    done = storage.read_scored(dest, identity.model_id, storage_options=storage_options)
    listed = _Counted(files if first is None else _chain(first, files))
    plan = plan_shards(
        recordings_since(listed, since_date),
        done,
        fingerprint=identity.model_id,
        shard_size=shard_size,
        retry_errors=retry_errors,
    )
    plan.changed.clear()  # older rows of a changed recording stay: they describe its old content
    return ScorePlan(identity, plan, listed.count, orphans)


class _Counted:
    def __init__(self, items: Iterator[FileInfo]) -> None:
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[FileInfo]:
        for item in self.items:
            self.count += 1
            yield item
