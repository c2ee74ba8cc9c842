"""Run summaries and progress display for people watching a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from ser_batch.batch import ShardSummary
from ser_batch.plan import Plan


def progress_bar(total: int, *, description: str) -> tqdm:  # type: ignore[type-arg]
    """A progress bar on stderr that hides itself when stderr is not a terminal."""
    return tqdm(total=total, desc=description, unit="file", disable=None, dynamic_ncols=True)


def featurize_summary(plan: Plan, summaries: Sequence[ShardSummary], *, wall_s: float, n_pruned: int, dest: str) -> dict[str, Any]:
    """Counts and throughput of one featurize run, as a JSON-ready dict."""
    featurized = sum(s.n_rows for s in summaries)
    audio_s = sum(s.audio_s for s in summaries)
    return {
        "dest": dest,
        "files_seen": plan.n_seen,
        "featurized": featurized,
        "already_done": plan.n_done,
        "known_bad_skipped": plan.n_known_bad,
        "failed": sum(s.n_errors for s in summaries),
        "superseded_rows_removed": n_pruned,
        "shards": len(summaries),
        "audio_s": round(audio_s, 3),
        "wall_s": round(wall_s, 3),
        "clips_per_s": round(featurized / wall_s, 2) if wall_s > 0 else 0.0,
        "audio_s_per_s": round(audio_s / wall_s, 2) if wall_s > 0 else 0.0,
    }


def format_featurize_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for a featurize summary."""
    return "\n".join(
        [
            f"files seen      {summary['files_seen']}",
            f"featurized      {summary['featurized']}",
            f"already done    {summary['already_done']}",
            f"known bad       {summary['known_bad_skipped']} (skipped; errors recorded earlier)",
            f"failed          {summary['failed']} (see {summary['dest']}/errors)",
            f"throughput      {summary['clips_per_s']} clips/s, {summary['audio_s_per_s']} s of audio/s "
            f"({summary['wall_s']} s wall, start-up included)",
        ]
    )
