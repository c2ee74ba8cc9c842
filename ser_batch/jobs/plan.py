"""What a featurize or score run must do: list SOURCE, compare with DEST, plan shards, make DEST mirror SOURCE (IO driver)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ser_batch import schema, shards, storage
from ser_batch.config import FeatureConfig
from ser_batch.errors import AudioError, ConfigError, StorageError
from ser_batch.labels import labels_from_path
from ser_batch.schema import ModelIdentity
from ser_batch.shards import FileInfo, PassedOver, Plan, ScorePlan, plan_shards
from ser_batch.storage import score_index
from ser_batch.storage.model_dir import read_model_identity

_DATE_FOLDERS = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")


def settled_before(settle_s: float, *, now: float | None = None) -> float | None:
    """The POSIX time after which a file's modification means it is still being written; None for ``settle_s`` 0.

    Raises:
        ConfigError: if ``settle_s`` is negative.

    >>> settled_before(300, now=1000.0), settled_before(0)
    (700.0, None)
    """
    if settle_s < 0:
        raise ConfigError(f"settle_s {settle_s} < 0")
    if settle_s == 0:
        return None
    return (time.time() if now is None else now) - settle_s


def check_locations(source: str, dest: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Fail fast, before any work: SOURCE must be listable and DEST writable, and not a scoring DEST.

    Raises:
        StorageError: naming the location and the cause (missing, denied, unreachable, no credentials).
        ConfigError: if DEST holds a score run's tables (``storage.check_dest_job``).
    """
    next(storage.list_files(source, storage_options=storage_options), None)
    storage.check_writable(dest, storage_options=storage_options)
    storage.check_dest_job(dest, "featurize", storage_options=storage_options)


def plan_featurization(
    source: str,
    dest: str,
    config: FeatureConfig,
    *,
    shard_size: int,
    retry_errors: bool = False,
    settle_s: float = 0.0,
    allow_empty_source: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Check SOURCE and DEST, list the audio under SOURCE and plan the shards still to featurize.

    Args:
        source: local folder or ``s3://`` prefix of the archive.
        dest: local folder or ``s3://`` prefix of the tables.
        config: the feature set.
        shard_size: files per shard, >= 1.
        retry_errors: featurize again files whose error is recorded.
        settle_s: files modified in the last ``settle_s`` seconds are still being written and
            are left alone (``Plan.n_settling``); 0 takes every file.
        allow_empty_source: let a SOURCE that lists no audio file empty a DEST that holds rows.
        storage_options: fsspec options for remote locations.

    Returns:
        The plan, with what the listing passed over (``Plan.passed_over``). Rows of files in a
        SOURCE folder that could not be listed are left alone, as if still being written.

    Raises:
        ConfigError: if ``shard_size`` < 1, ``settle_s`` < 0 or DEST holds a score run's tables.
        StorageError: if SOURCE is missing or unlistable, DEST is not writable, or SOURCE lists
            no audio file while DEST holds rows (unless ``allow_empty_source``).
    """
    _check_shard_size(shard_size)
    cutoff = settled_before(settle_s)
    passed_over = PassedOver()
    files = storage.list_files(source, storage_options=storage_options, passed_over=passed_over)
    first = next(files, None)  # lists SOURCE now, so a wrong path fails before DEST is touched
    storage.check_writable(dest, storage_options=storage_options)
    storage.check_dest_job(dest, "featurize", storage_options=storage_options)
    done = storage.read_done(dest, config.name, storage_options=storage_options)
    catalogue = files if first is None else _chain(first, files)
    plan = plan_shards(
        catalogue,
        done,
        fingerprint=config.fingerprint(),
        shard_size=shard_size,
        retry_errors=retry_errors,
        settled_before=cutoff,
    )
    plan.passed_over = passed_over
    for path in [path for path, key in plan.reconcile.items() if key is None and passed_over.under_unreadable(path)]:
        del plan.reconcile[path]  # in a folder that could not be listed: unknown, not gone
    if plan.n_seen == 0 and done.paths() and not allow_empty_source:
        raise StorageError(
            f"{source} lists no audio file, but {dest} holds rows of {len(done.paths())} files: refusing to "
            "empty DEST to mirror it (a wrong or unmounted SOURCE?); pass --allow-empty-source to empty it"
        )
    return plan


AUGMENTATION_POLICY = "call-v2"
"""Version of ``ser_batch.features.augment.augmented_copies`` (v2: telephone + VTLP copies; v1 had a speed + noise
copy in place of VTLP); part of every augmentation shard id. Copies DEST holds are kept whatever their version."""


def plan_augmentation(
    source: str,
    dest: str,
    config: FeatureConfig,
    *,
    shard_size: int,
    retry_errors: bool = False,
    settle_s: float = 0.0,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Plan the augmented copies still to make.

    Those are of the labelled clips under SOURCE whose features row (of their current
    content) DEST holds and whose copies it does not. Copies of any other clip are flagged
    in ``Plan.reconcile`` as not wanted (None), for ``mirror_dest``.

    Raises:
        ConfigError: if ``shard_size`` < 1 or ``settle_s`` < 0.
        StorageError: if SOURCE or DEST cannot be read.
    """
    _check_shard_size(shard_size)
    cutoff = settled_before(settle_s)
    featurized = storage.read_done(dest, config.name, storage_options=storage_options).featurized
    done = storage.read_done(dest, config.name, dataset_name="augmented", storage_options=storage_options)
    labelled = (
        info
        for info in storage.list_files(source, storage_options=storage_options)
        if _settling(info, cutoff)
        or (any(key == info.content_key for key, _ in featurized.get(info.uri, ())) and is_labelled(info.uri))
    )
    fingerprint = f"{config.fingerprint()}/{AUGMENTATION_POLICY}"
    return plan_shards(
        labelled,
        done,
        fingerprint=fingerprint,
        shard_size=shard_size,
        retry_errors=retry_errors,
        settled_before=cutoff,
    )


def _settling(info: FileInfo, cutoff: float | None) -> bool:
    return cutoff is not None and info.modified_s is not None and info.modified_s > cutoff


def is_labelled(uri: str) -> bool:
    """Whether a file's name gives it an emotion label (only labelled clips get augmented copies)."""
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


def parse_date(value: str | date) -> date:
    """A ``YYYY-MM-DD`` date, from text or a ``datetime.date`` (as Prefect passes ``-p since=2026-11-24`` or a date).

    Raises:
        ConfigError: if the text is not such a date.

    >>> parse_date("2026-11-24"), parse_date(date(2026, 11, 24))
    (datetime.date(2026, 11, 24), datetime.date(2026, 11, 24))
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(schema.date_value(value))
    except ConfigError:
        raise ConfigError(f"date {value!r} is not a date in the form YYYY-MM-DD") from None


def recording_date(info: FileInfo, timezone: str = "UTC") -> date | None:
    """The day a recording belongs to: its ``call_date`` partition and what ``since`` compares.

    The last ``YYYY/MM/DD`` folder triple in its path (``s3://calls/archive/2026/11/24/x.wav``
    is 2026-11-24) when it forms a real date; otherwise the date of its modification time in
    ``timezone`` (an IANA name); None when the store gives neither.

    Raises:
        ConfigError: if ``timezone`` is not a known IANA time zone.

    >>> recording_date(FileInfo("s3://calls/2026/11/24/a.wav", 1, "1:x"))
    datetime.date(2026, 11, 24)
    >>> recording_date(FileInfo("/calls/a.wav", 1, "1:x", 1795489200.0), "America/New_York")  # 2026-11-24 03:00 UTC
    datetime.date(2026, 11, 23)
    """
    for year, month, day in reversed(_DATE_FOLDERS.findall(info.uri.replace("\\", "/"))):
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            continue
    if info.modified_s is None:
        return None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"time zone {timezone!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)") from None
    return datetime.fromtimestamp(info.modified_s, zone).date()


def call_date(info: FileInfo, timezone: str, run_date: str) -> str:
    """A recording's ``call_date`` partition value: ``recording_date``, or ``run_date`` when the store gives no date.

    >>> call_date(FileInfo("/calls/a.wav", 1, "1:x"), "UTC", "2026-11-30")
    '2026-11-30'
    """
    day = recording_date(info, timezone)
    return schema.date_value(day if day is not None else run_date, name="run_date")


def recordings_since(files: Iterable[FileInfo], since: date | None, timezone: str = "UTC") -> Iterator[FileInfo]:
    """The recordings dated (``recording_date`` in ``timezone``) on or after ``since`` (all with None); undated ones are kept."""
    for info in files:
        day = recording_date(info, timezone) if since is not None else None
        if day is None or since is None or day >= since:
            yield info


def check_scoring(
    source: str, dest: str, model_dir: str, *, storage_options: dict[str, Any] | None = None
) -> ModelIdentity:
    """Fail fast, before any work: the model directory readable and matching, SOURCE listable, DEST writable and not a featurize DEST.

    Raises:
        StorageError, SchemaError, ConfigError: naming the location and the cause.
    """
    identity = read_model_identity(model_dir, storage_options=storage_options)
    next(storage.list_files(source, storage_options=storage_options), None)
    storage.check_writable(dest, storage_options=storage_options)
    storage.check_score_layout(dest, storage_options=storage_options)
    storage.check_dest_job(dest, "score", storage_options=storage_options)
    return identity


def plan_scoring(
    source: str,
    dest: str,
    model_dir: str,
    *,
    shard_size: int,
    since: str | date | None = None,
    timezone: str = "UTC",
    retry_errors: bool = False,
    settle_s: float = 0.0,
    storage_options: dict[str, Any] | None = None,
) -> ScorePlan:
    """List SOURCE and plan the shards of recordings this model has not scored yet.

    What DEST holds comes from the model's index (``ser_batch.storage.score_index``): one
    read, however many nights DEST holds. Runs that died are folded into it first, and
    predictions parts their killed shards left without a calls part are removed.
    ``since`` (text ``YYYY-MM-DD`` or a date) keeps the recordings whose ``recording_date`` in
    ``timezone`` is on or after it.

    Raises:
        ConfigError: if ``shard_size`` < 1, ``settle_s`` < 0, ``since`` is not a date, ``timezone`` unknown or
            DEST holds a featurize run's tables.
        StorageError, SchemaError: as ``check_scoring``; SchemaError also for a DEST of the earlier
            ``run_date`` layout (``storage.check_score_layout``).
    """
    _check_shard_size(shard_size)
    cutoff = settled_before(settle_s)
    since_date = parse_date(since) if since is not None else None
    identity = read_model_identity(model_dir, storage_options=storage_options)
    passed_over = PassedOver()
    files = storage.list_files(source, storage_options=storage_options, passed_over=passed_over)
    first = next(files, None)  # lists SOURCE now, so a wrong path fails before DEST is touched
    storage.check_writable(dest, storage_options=storage_options)
    storage.check_score_layout(dest, storage_options=storage_options)
    storage.check_dest_job(dest, "score", storage_options=storage_options)
    loaded = score_index.load_score_index(dest, identity.model_id, storage_options=storage_options)
    listed = _Counted(files if first is None else _chain(first, files))
    plan = plan_shards(
        recordings_since(listed, since_date, timezone),
        loaded.done,
        fingerprint=identity.model_id,
        shard_size=shard_size,
        retry_errors=retry_errors,
        settled_before=cutoff,
    )
    plan.passed_over = passed_over
    # calls of recordings gone from SOURCE (or before `since`) are history: they stay
    plan.reconcile = {path: key for path, key in plan.reconcile.items() if key is not None}
    return ScorePlan(identity, plan, listed.count, loaded.n_orphans_removed, index=loaded.done, run_id=uuid.uuid4().hex)


def start_scoring(
    dest: str, plan: ScorePlan, *, run_date: str, timezone: str = "UTC", storage_options: dict[str, Any] | None = None
) -> None:
    """Note in DEST the call dates this run is about to write parts under, so a run that dies is found and indexed later.

    Its recordings' ``call_date`` values (``call_date`` in ``timezone``, ``run_date`` for undated ones).
    """
    days = sorted({call_date(info, timezone, run_date) for info in plan.plan.pending})
    score_index.start_run_note(
        dest, plan.run_id, model_id=plan.model.model_id, call_dates=days, storage_options=storage_options
    )


class _Counted:
    def __init__(self, items: Iterator[FileInfo]) -> None:
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[FileInfo]:
        for item in self.items:
            self.count += 1
            yield item
