"""Flow `score`: new call recordings -> segment predictions and per-call summaries, one Prefect task per shard on Dask."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from flows.report import publish_report
from flows.runner import dask_runner, run_shards
from flows.settings import storage_options_from_env, today, unseal_storage_options
from ser_batch import jobs, schema
from ser_batch.config import ScoreConfig, score_config
from ser_batch.shards import ScoreShardSummary, Shard


@task(name="score-shard", retries=2, retry_delay_seconds=[10, 60], cache_policy=NO_CACHE)
def score_shard(
    shard: Shard, dest: str, model_dir: str, config: ScoreConfig, run_date: str, storage_options: SecretStr | None
) -> ScoreShardSummary:
    """Score one shard of recordings on a worker and write its part files (``ser_batch.jobs.score_shard``)."""
    s = jobs.score_shard(
        shard, dest, model_dir, config, run_date=run_date, storage_options=unseal_storage_options(storage_options)
    )
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
    since: str | None = None,
    window_s: float = 3.0,
    hop_s: float = 1.5,
    run_date: str | None = None,
    retry_errors: bool = False,
    max_error_ratio: float = 0.5,
) -> dict[str, Any]:
    """Score the recordings under SOURCE that MODEL_DIR has not scored yet into DEST/predictions and DEST/calls."""
    started = time.perf_counter()
    logger = get_run_logger()
    config = score_config(window_s=window_s, hop_s=hop_s)
    run_date = schema.run_date_value(run_date or today())
    storage_options = storage_options_from_env()
    plan = jobs.plan_scoring(
        source,
        dest,
        model_dir,
        shard_size=shard_size,
        since=since,
        retry_errors=retry_errors,
        storage_options=storage_options,
    )
    logger.info(
        "model %s: %d recordings seen, %d already scored, %d to score (run_date %s)",
        plan.model.model_id,
        plan.plan.n_seen,
        plan.plan.n_done,
        plan.plan.n_pending,
        run_date,
    )
    summaries = []
    if plan.plan.pending:
        summaries = run_shards(
            score_shard,
            plan.plan,
            dask_runner(dask_address, n_workers),
            description="score",
            n_done=lambda s: s.n_recordings,
            dest=dest,
            model_dir=model_dir,
            config=config,
            run_date=run_date,
        )
    summary = jobs.score_summary(plan, summaries, wall_s=time.perf_counter() - started, dest=dest, run_date=run_date)
    print(jobs.format_score_summary(summary))
    publish_report(jobs.score_report(summary, summaries, storage_options=storage_options))
    errors_at = f"{dest}/errors/run_date={run_date}"
    jobs.check_error_ratio(
        summary["failed"], plan.plan.n_pending, max_error_ratio, inputs="recordings", errors_at=errors_at
    )
    return summary


if __name__ == "__main__":
    import sys

    score(sys.argv[1], sys.argv[2], sys.argv[3])
