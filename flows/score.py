"""Flow `score`: new call recordings -> segment predictions and per-call summaries, one Prefect task per shard on Dask."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from pydantic import SecretStr

from flows.isolation import RunGuard
from flows.report import publish_report
from flows.runner import dask_runner, run_shards, shard_task
from flows.settings import storage_options_from_env, timezone_name, today, unseal_storage_options
from ser_batch import jobs, schema, storage
from ser_batch.config import (
    DEFAULT_FILE_TIMEOUT_S,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_SETTLE_S,
    ScoreConfig,
    score_config,
)
from ser_batch.shards import ScoreShardSummary, Shard


@shard_task("score-shard")
def score_shard(
    shard: Shard,
    dest: str,
    model_dir: str,
    config: ScoreConfig,
    run_date: str,
    storage_options: SecretStr | None,
    run_guard: RunGuard,
) -> ScoreShardSummary:
    """Score one shard of recordings on a worker and write its part files (``ser_batch.jobs.score_shard``)."""
    options, guard = unseal_storage_options(storage_options), run_guard.begin(shard.files)
    s = jobs.score_shard(shard, dest, model_dir, config, run_date=run_date, storage_options=options, guard=guard)
    get_run_logger().info(
        "shard %s: %d recordings, %d channels, %d segments, %d errors, %.1f min of audio in %.1f s%s",
        s.shard_id,
        s.n_recordings,
        s.n_channels,
        s.n_segments,
        s.n_errors,
        s.audio_s / 60,
        s.elapsed_s,
        " (model loaded on this worker)" if s.model_loaded else "",
    )
    return s


@flow(name="score", log_prints=True)
def score(
    source: str,
    dest: str,
    model_dir: str,
    dask_address: str | None = None,
    n_workers: int | None = None,
    shard_size: int = 50,
    since: date | None = None,
    window_s: float = 3.0,
    hop_s: float = 1.5,
    channel_roles: list[str] | None = None,
    run_date: date | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    retry_errors: bool = False,
    max_error_ratio: float = 0.5,
    settle_s: float = DEFAULT_SETTLE_S,
    lease_wait_s: float = 0.0,
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
) -> dict[str, Any]:
    """Score the recordings under SOURCE that MODEL_DIR has not scored yet into DEST/predictions and DEST/calls, by call date."""
    started = time.perf_counter()
    logger = get_run_logger()
    config = score_config(
        window_s=window_s,
        hop_s=hop_s,
        channel_roles=channel_roles,
        timezone=timezone_name(),
        min_confidence=min_confidence,
    )
    day = schema.date_value(run_date or today(), name="run_date")
    options = storage_options_from_env()
    jobs.check_max_error_ratio(max_error_ratio)  # applied at the end: a bad value must not cost a night's work
    with storage.hold_lease(dest, job="score", wait_s=lease_wait_s, storage_options=options) as lease:
        plan = jobs.plan_scoring(
            source,
            dest,
            model_dir,
            shard_size=shard_size,
            since=since,
            timezone=config.timezone,
            retry_errors=retry_errors,
            settle_s=settle_s,
            storage_options=options,
        )
        logger.info(
            "model %s: %d recordings seen, %d already scored, %d to score (run_date %s)",
            plan.model.model_id,
            plan.plan.n_seen,
            plan.plan.n_done,
            plan.plan.n_pending,
            day,
        )
        summaries = []
        if plan.plan.pending:
            jobs.check_model(plan.model, storage_options=options)  # a broken MODEL_DIR fails here, not on every worker
            jobs.start_scoring(dest, plan, run_date=day, timezone=config.timezone, storage_options=options)
            summaries = run_shards(
                score_shard,
                plan.plan,
                dask_runner(dask_address, n_workers),
                description="score",
                n_done=lambda s: s.n_recordings,
                file_timeout_s=file_timeout_s,
                dest=dest,
                model_dir=model_dir,
                config=config,
                run_date=day,
            )

        def report(summary: dict[str, Any]) -> None:
            print(jobs.format_score_summary(summary))
            publish_report(jobs.score_report(summary, summaries, storage_options=options))

        return jobs.complete_scoring(
            dest,
            plan,
            summaries,
            run_date=day,
            started=started,
            max_error_ratio=max_error_ratio,
            lease=lease,
            report=report,
            storage_options=options,
        )


if __name__ == "__main__":
    import sys

    score(sys.argv[1], sys.argv[2], sys.argv[3])
