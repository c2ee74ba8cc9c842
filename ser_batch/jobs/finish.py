"""What a run does after its shards: check its error ratio, make DEST mirror SOURCE, index what it wrote, report (IO driver).

DEST changes here only while the run holds DEST's lease (``Lease.check``), and rows are
removed only by a run that passed its error ratio: a failed run (perhaps a wrong SOURCE)
leaves DEST as it found it, plus the rows it wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ser_batch import storage
from ser_batch.config import FeatureConfig
from ser_batch.errors import RunError
from ser_batch.jobs.plan import is_labelled
from ser_batch.jobs.report import (
    check_error_ratio,
    featurize_summary,
    score_summary,
)
from ser_batch.shards import DoneIndex, Plan, ScorePlan, ScoreShardSummary, ShardSummary, mirror_removals
from ser_batch.storage import score_index
from ser_batch.storage.lease import Lease


def complete_featurize(
    dest: str,
    config: FeatureConfig,
    plan: Plan,
    summaries: Sequence[ShardSummary],
    *,
    copies_plan: Plan | None,
    copies: Sequence[ShardSummary],
    started: float,
    max_error_ratio: float,
    lease: Lease,
    report: Callable[[dict[str, Any]], None],
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Finish a featurize run: check its error ratio, make DEST mirror SOURCE (``mirror_dest``), report its summary.

    Args:
        dest: the featurize DEST.
        config: the feature set.
        plan: the run's features plan.
        summaries: its featurize shards.
        copies_plan: its augmentation plan (None without one).
        copies: its augmentation shards.
        started: ``time.perf_counter()`` at the run's start.
        max_error_ratio: the largest acceptable share of bad files.
        lease: the run's lease on DEST.
        report: takes the run summary, to show it (a flow prints ``format_featurize_summary`` of it).
        storage_options: fsspec options for a remote DEST.

    Returns:
        The run summary (``featurize_summary``), with what mirroring removed.

    Raises:
        RunError: above ``max_error_ratio``, after reporting; DEST then loses no row.
        LeaseError: if the run lost its lease; DEST then loses no row.
    """
    summary = featurize_summary(plan, summaries, wall_s=time.perf_counter() - started, dest=dest, augmented=copies)
    try:
        check_error_ratio(
            summary["failed"], plan.n_pending, max_error_ratio, inputs="files", errors_at=f"{dest}/errors"
        )
    except RunError:
        report(summary)
        raise
    lease.check()
    summary.update(mirror_dest(dest, config, plan, copies_plan, storage_options=storage_options))
    report(summary)
    return summary


def complete_scoring(
    dest: str,
    plan: ScorePlan,
    summaries: Sequence[ScoreShardSummary],
    *,
    run_date: str,
    started: float,
    max_error_ratio: float,
    lease: Lease,
    report: Callable[[dict[str, Any]], None],
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Finish a score run: index what it wrote, replace rows of recordings that changed (``finish_scoring``), report.

    ``report`` takes the run summary (``score_summary`` with what was replaced), to show it.

    Raises:
        RunError: above ``max_error_ratio``, after indexing and reporting; no row is then removed.
        LeaseError: if the run lost its lease; DEST is then left alone.
    """
    summary = score_summary(plan, summaries, wall_s=time.perf_counter() - started, dest=dest, run_date=run_date)
    failure: RunError | None = None
    try:
        check_error_ratio(
            summary["failed"],
            plan.plan.n_pending,
            max_error_ratio,
            inputs="recordings",
            errors_at=f"{dest}/errors (run_date {run_date})",
        )
    except RunError as error:
        failure = error
    lease.check()
    summary.update(
        finish_scoring(dest, plan, summaries, replace_changed=failure is None, storage_options=storage_options)
    )
    report(summary)
    if failure is not None:
        raise failure
    return summary


def mirror_dest(
    dest: str,
    config: FeatureConfig,
    plan: Plan,
    copies: Plan | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, int]:
    """After a successful run, make DEST hold exactly one row per file SOURCE lists, and nothing of files gone.

    Each listed file keeps one row of its current content: its features row, or else its error
    row; superseded rows (older content, stale error rows, duplicates) go, and so do augmented
    copies of any content but the current one of a labelled clip with a features row. Rows of
    files gone from SOURCE go from features, augmented and errors. Files still being written,
    and those in SOURCE folders that could not be listed, keep their rows. Does nothing (and
    reads nothing) when the plans found DEST a mirror already.

    Args:
        dest: the featurize DEST.
        config: the feature set.
        plan: this run's features plan (``plan_featurization``): SOURCE as listed.
        copies: this run's augmentation plan, if it made one.
        storage_options: fsspec options for a remote DEST.

    Returns:
        ``superseded_rows_removed`` (rows of listed files), ``files_gone`` and ``gone_rows_removed``.
    """
    counts = {"superseded_rows_removed": 0, "files_gone": 0, "gone_rows_removed": 0}
    work = [plan] + ([copies] if copies is not None else [])
    if not any(p.pending or p.reconcile for p in work):
        return counts
    features = storage.read_done(dest, config.name, storage_options=storage_options)
    augmented = storage.read_done(dest, config.name, dataset_name="augmented", storage_options=storage_options)
    paths = {
        path
        for path in (features.paths() | augmented.paths()) - plan.settling
        if not plan.passed_over.under_unreadable(path)  # unknown, not gone
    }
    gone = {path for path in paths if path not in plan.listed}
    current = {path: plan.listed[path] for path in paths - gone}
    wanted = {
        path: key
        for path, key in current.items()
        if any(stored == key for stored, _ in features.featurized.get(path, ())) and is_labelled(path)
    }
    passes: list[tuple[str, DoneIndex, dict[str, str | None]]] = [
        ("superseded_rows_removed", features, dict(current)),
        ("superseded_rows_removed", augmented, {path: wanted.get(path) for path in current}),
        ("gone_rows_removed", features, dict.fromkeys(gone)),
        ("gone_rows_removed", augmented, dict.fromkeys(gone)),
    ]
    protocol = dest.split("://", 1)[0] if storage.is_remote(dest) else None
    for counter, done, keys in passes:
        held = done.paths()
        removals = mirror_removals(done, {path: key for path, key in keys.items() if path in held})
        for part_file, removed in sorted(removals.items()):
            counts[counter] += storage.prune_rows(
                part_file, removed, protocol=protocol, storage_options=storage_options
            )
    counts["files_gone"] = len(gone)
    return counts


def finish_scoring(
    dest: str,
    plan: ScorePlan,
    summaries: Sequence[ScoreShardSummary],
    *,
    replace_changed: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Index what this run wrote, and keep one current row per recording channel of this model.

    A recording whose content changed, or whose error is retried, keeps the calls, predictions and
    error rows of its current content only (with ``replace_changed``; a run that failed its error
    ratio keeps both until the next run that does not), whichever ``call_date`` folders hold them:
    its index entries name each row's part. The model's index is rewritten and this run's note removed.

    Returns:
        ``replaced_rows_removed``: rows of earlier content (or duplicates) deleted.
    """
    parts = [score_index.shard_index(s.recordings, s.shard_id) for s in summaries]
    # a shard of the same recordings as an earlier one (a retried error) overwrote that one's parts
    rewritten = {part for index in parts for stored in index.featurized.values() for _, part in stored}
    rewritten |= {part for index in parts for stored in index.failed.values() for _, part in stored}
    index = score_index.merge_indexes(score_index.index_without_parts(plan.index, rewritten), *parts)
    removed = mirror_removals(index, plan.plan.reconcile) if replace_changed else {}
    n_rows = score_index.prune_score_parts(dest, removed, storage_options=storage_options)
    if summaries or removed:
        score_index.write_score_index(
            dest, plan.model.model_id, score_index.index_without(index, removed), storage_options=storage_options
        )
    score_index.end_run_note(dest, plan.run_id, storage_options=storage_options)
    return {"replaced_rows_removed": n_rows}
