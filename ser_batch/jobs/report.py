"""Run summaries and progress display for people watching a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from ser_batch.errors import ConfigError, RunError
from ser_batch.shards import Plan, ScorePlan, ScoreShardSummary, ShardSummary


def progress_bar(total: int, *, description: str) -> tqdm:
    """A progress bar on stderr that hides itself when stderr is not a terminal."""
    return tqdm(total=total, desc=description, unit="file", disable=None, dynamic_ncols=True)


def featurize_summary(
    plan: Plan,
    summaries: Sequence[ShardSummary],
    *,
    wall_s: float,
    dest: str,
    augmented: Sequence[ShardSummary] = (),
    mirrored: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Counts and throughput of one featurize run, as a JSON-ready dict.

    Args:
        plan: the run's features plan.
        summaries: its featurize shards.
        wall_s: its wall time so far (s).
        dest: the DEST, for messages.
        augmented: its augmentation shards.
        mirrored: what ``jobs.mirror_dest`` removed (zeros when it has not run).
    """
    featurized = sum(s.n_rows for s in summaries)
    audio_s = sum(s.audio_s for s in summaries)
    mirrored = mirrored or {}
    return {
        "dest": dest,
        "files_seen": plan.n_seen,
        "featurized": featurized,
        "already_done": plan.n_done,
        "known_bad_skipped": plan.n_known_bad,
        "still_being_written": plan.n_settling,
        "skipped_extensions": skipped_extensions(plan.passed_over.extensions),
        "unreadable_folders": plan.passed_over.unreadable,
        "failed": sum(s.n_errors for s in summaries),
        "clips_augmented": sum(s.n_files - s.n_errors for s in augmented),
        "augmented_copies": sum(s.n_rows for s in augmented),
        "augment_failed": sum(s.n_errors for s in augmented),
        "superseded_rows_removed": mirrored.get("superseded_rows_removed", 0),
        "files_gone": mirrored.get("files_gone", 0),
        "gone_rows_removed": mirrored.get("gone_rows_removed", 0),
        "shards": len(summaries),
        "audio_s": round(audio_s, 3),
        "wall_s": round(wall_s, 3),
        "clips_per_s": round(featurized / wall_s, 2) if wall_s > 0 else 0.0,
        "audio_s_per_s": round(audio_s / wall_s, 2) if wall_s > 0 else 0.0,
    }


def skipped_extensions(passed_over: Counter[str]) -> dict[str, int]:
    """Files passed over by extension, most first (then by name), as the summary shows them.

    >>> skipped_extensions(Counter({".txt": 1, ".pdf": 3}))
    {'.pdf': 3, '.txt': 1}
    """
    return dict(sorted(passed_over.items(), key=lambda item: (-item[1], item[0])))


def format_skipped(skipped: Mapping[str, int]) -> str:
    """``3 .pdf, 1 .txt (not audio)``, or ``none``.

    >>> format_skipped({".pdf": 3, ".txt": 1})
    '3 .pdf, 1 .txt (not audio)'
    """
    if not skipped:
        return "none"
    return ", ".join(f"{n} {extension}" for extension, n in skipped.items()) + " (not audio)"


def format_featurize_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for a featurize summary."""
    return "\n".join(
        [
            f"files seen      {summary['files_seen']}",
            f"featurized      {summary['featurized']}",
            f"already done    {summary['already_done']}",
            f"known bad       {summary['known_bad_skipped']} (skipped; errors recorded earlier)",
            f"being written   {summary['still_being_written']} (modified within --settle-s; left for a later run)",
            f"skipped         {format_skipped(summary['skipped_extensions'])}",
            f"unreadable      {len(summary['unreadable_folders'])} folders of SOURCE (their files' rows kept)",
            f"failed          {summary['failed']} (see {summary['dest']}/errors)",
            f"augmented       {summary['clips_augmented']} labelled clips, {summary['augmented_copies']} copies "
            f"({summary['augment_failed']} failed)",
            f"removed         {summary['superseded_rows_removed']} superseded rows; rows of {summary['files_gone']} "
            f"files gone from SOURCE ({summary['gone_rows_removed']} rows)",
            f"throughput      {summary['clips_per_s']} clips/s, {summary['audio_s_per_s']} s of audio/s "
            f"({summary['wall_s']} s wall, start-up included)",
        ]
    )


def score_summary(
    plan: ScorePlan, summaries: Sequence[ScoreShardSummary], *, wall_s: float, dest: str, run_date: str
) -> dict[str, Any]:
    """Counts and throughput of one score run, as a JSON-ready dict.

    ``audio_min`` counts each recording once, whatever its channels. ``audio_min_per_s`` is
    over the run's wall time (start-up included); ``scoring_s`` spans the first shard's start
    to the last shard's end; ``audio_min_per_worker_s`` is over the time shard tasks spent
    working, i.e. the rate of one worker (one core) once started; ``audio_min_per_cpu_s`` is
    over the CPU time of the worker processes while they ran shards, which other load on the
    machine does not change; ``warm_audio_min_per_cpu_s`` leaves out the shards that loaded the
    model (each worker's first: TensorFlow import, model load, numba warm-up).
    """
    audio_min = sum(s.audio_s for s in summaries) / 60
    busy_s = sum(s.elapsed_s for s in summaries)
    cpu_s = sum(s.cpu_s for s in summaries)
    warm = [s for s in summaries if not s.model_loaded]
    warm_cpu_s = sum(s.cpu_s for s in warm)
    scoring_s = max((s.started_at + s.elapsed_s for s in summaries), default=0.0) - min(
        (s.started_at for s in summaries), default=0.0
    )
    return {
        "dest": dest,
        "run_date": run_date,
        "call_dates": sorted({day for s in summaries for *_, day in s.recordings}),
        "model_id": plan.model.model_id,
        "recordings_listed": plan.n_listed,
        "recordings_seen": plan.plan.n_seen,
        "scored": sum(s.n_scored for s in summaries),
        "already_scored": plan.plan.n_done,
        "known_bad_skipped": plan.plan.n_known_bad,
        "still_being_written": plan.plan.n_settling,
        "skipped_extensions": skipped_extensions(plan.plan.passed_over.extensions),
        "unreadable_folders": plan.plan.passed_over.unreadable,
        "failed": sum(s.n_errors for s in summaries),
        "channels": sum(s.n_channels for s in summaries),
        "segments": sum(s.n_segments for s in summaries),
        "shards": len(summaries),
        "model_loads": sum(s.model_loaded for s in summaries),
        "orphans_removed": plan.n_orphans_removed,
        "replaced_rows_removed": 0,
        "audio_min": round(audio_min, 3),
        "speech_min": round(sum(s.speech_s for s in summaries) / 60, 3),
        "wall_s": round(wall_s, 3),
        "scoring_s": round(scoring_s, 3),
        "audio_min_per_s": round(audio_min / wall_s, 3) if wall_s > 0 else 0.0,
        "audio_min_per_worker_s": round(audio_min / busy_s, 3) if busy_s > 0 else 0.0,
        "cpu_s": round(cpu_s, 3),
        "audio_min_per_cpu_s": round(audio_min / cpu_s, 3) if cpu_s > 0 else 0.0,
        "warm_audio_min_per_cpu_s": round(sum(s.audio_s for s in warm) / 60 / warm_cpu_s, 3)
        if warm_cpu_s > 0
        else None,
    }


def format_score_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for a score summary."""
    return "\n".join(
        [
            f"model            {summary['model_id']}",
            f"recordings seen  {summary['recordings_seen']} (of {summary['recordings_listed']} listed)",
            f"scored           {summary['scored']} ({summary['channels']} channels, {summary['segments']} segments)",
            f"already scored   {summary['already_scored']}",
            f"known bad        {summary['known_bad_skipped']} (skipped; errors recorded earlier)",
            f"being written    {summary['still_being_written']} (modified within --settle-s; left for a later run)",
            f"skipped          {format_skipped(summary['skipped_extensions'])}",
            f"unreadable       {len(summary['unreadable_folders'])} folders of SOURCE",
            f"replaced         {summary['replaced_rows_removed']} rows of earlier content of re-scored recordings",
            f"call dates       {format_days(summary['call_dates'])}",
            f"failed           {summary['failed']} (see {summary['dest']}/errors, run_date {summary['run_date']})",
            f"audio            {summary['audio_min']} min ({summary['speech_min']} min of speech scored)",
            f"throughput       {summary['audio_min_per_s']} min of audio/s ({summary['wall_s']} s wall, start-up included); "
            f"{summary['audio_min_per_worker_s']} min/s per worker while scoring, {summary['audio_min_per_cpu_s']} per CPU-second",
        ]
    )


def format_days(days: Sequence[str]) -> str:
    """The call dates a run wrote, in one short line.

    >>> format_days(["2026-11-23", "2026-11-24", "2026-11-27"]), format_days([])
    ('2026-11-23 to 2026-11-27 (3 days)', 'none')
    """
    if not days:
        return "none"
    if len(days) == 1:
        return days[0]
    return f"{days[0]} to {days[-1]} ({len(days)} days)"


def check_max_error_ratio(max_error_ratio: float) -> None:
    """Refuse a ``max_error_ratio`` outside [0, 1] before a run starts (it is applied only at the run's end).

    Raises:
        ConfigError: naming the value.

    >>> check_max_error_ratio(3)
    Traceback (most recent call last):
    ...
    ser_batch.errors.ConfigError: max_error_ratio 3 must be in [0, 1]
    """
    if not 0.0 <= max_error_ratio <= 1.0:
        raise ConfigError(f"max_error_ratio {max_error_ratio} must be in [0, 1]")


def check_error_ratio(n_failed: int, n_tried: int, max_error_ratio: float, *, inputs: str, errors_at: str) -> None:
    """Fail a run in which more than ``max_error_ratio`` of the inputs it tried were bad (usually a wrong SOURCE).

    Args:
        n_failed: inputs recorded as errors by this run.
        n_tried: inputs this run tried (already done and known-bad ones excluded).
        max_error_ratio: the largest acceptable share of bad inputs, in [0, 1].
        inputs: what the inputs are, for the message (``files``, ``recordings``).
        errors_at: where the error rows are.

    Raises:
        ConfigError: if ``max_error_ratio`` is outside [0, 1].
        RunError: if ``n_failed / n_tried > max_error_ratio``.

    >>> check_error_ratio(1, 4, 0.5, inputs="files", errors_at="out/errors")
    >>> check_error_ratio(3, 4, 0.5, inputs="files", errors_at="out/errors")
    Traceback (most recent call last):
    ...
    ser_batch.errors.RunError: 3 of 4 files failed (> max_error_ratio 0.5); see out/errors
    """
    check_max_error_ratio(max_error_ratio)
    if n_tried and n_failed / n_tried > max_error_ratio:  # the share, not ratio * n: 0.29 * 100 < 29 in binary
        raise RunError(
            f"{n_failed} of {n_tried} {inputs} failed (> max_error_ratio {max_error_ratio}); see {errors_at}"
        )
