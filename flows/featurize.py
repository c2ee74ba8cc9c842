"""Flow `featurize`: audio archive -> partitioned Parquet, one Prefect task per shard on Dask."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from pydantic import SecretStr

from flows.isolation import RunGuard
from flows.report import publish_report
from flows.runner import cluster_on_demand, run_shards, shard_task
from flows.settings import storage_options_from_env, unseal_storage_options
from ser_batch import jobs, storage
from ser_batch.config import (
    DEFAULT_FEATURE_SET,
    DEFAULT_FILE_TIMEOUT_S,
    DEFAULT_SETTLE_S,
    FeatureConfig,
)
from ser_batch.features import augment_by_default, warm_up
from ser_batch.shards import Shard, ShardSummary


@shard_task("featurize-shard")
def featurize_shard(
    shard: Shard, dest: str, config: FeatureConfig, storage_options: SecretStr | None, run_guard: RunGuard
) -> ShardSummary:
    """Featurize one shard on a worker and write its part files (``ser_batch.jobs.featurize_shard``)."""
    options, guard = unseal_storage_options(storage_options), run_guard.begin(shard.files)
    summary = jobs.featurize_shard(shard, dest, config, storage_options=options, guard=guard)
    get_run_logger().info(
        "shard %s: %d files, %d rows, %d errors, %.1f s",
        summary.shard_id,
        summary.n_files,
        summary.n_rows,
        summary.n_errors,
        summary.elapsed_s,
    )
    return summary


@shard_task("augment-shard")
def augment_shard(
    shard: Shard, dest: str, config: FeatureConfig, storage_options: SecretStr | None, run_guard: RunGuard
) -> ShardSummary:
    """Make and featurize one shard's augmented copies on a worker (``ser_batch.jobs.augment_shard``)."""
    options, guard = unseal_storage_options(storage_options), run_guard.begin(shard.files)
    summary = jobs.augment_shard(shard, dest, config, storage_options=options, guard=guard)
    get_run_logger().info(
        "augment shard %s: %d clips, %d copies, %d errors, %.1f s",
        summary.shard_id,
        summary.n_files,
        summary.n_rows,
        summary.n_errors,
        summary.elapsed_s,
    )
    return summary


def warm_worker(config: FeatureConfig) -> None:
    """Run on each Dask worker before its first shard: imports this module (Prefect) and warms the featurizer."""
    warm_up(config, encoder=jobs.encoder_of(config, storage_options=storage_options_from_env()))


@flow(name="featurize", log_prints=True)
def featurize(
    source: str,
    dest: str,
    feature_set: str = DEFAULT_FEATURE_SET,
    dask_address: str | None = None,
    n_workers: int | None = None,
    shard_size: int = 500,
    retry_errors: bool = False,
    max_error_ratio: float = 0.5,
    augment: bool | None = None,
    settle_s: float = DEFAULT_SETTLE_S,
    lease_wait_s: float = 0.0,
    file_timeout_s: float | None = DEFAULT_FILE_TIMEOUT_S,
    allow_empty_source: bool = False,
) -> dict[str, Any]:
    """Make DEST mirror the audio under SOURCE as partitioned Parquet: featurize new or changed files, drop rows of files gone, add augmented copies of labelled clips."""
    started = time.perf_counter()
    logger = get_run_logger()
    options = storage_options_from_env()
    jobs.check_max_error_ratio(max_error_ratio)  # applied at the end: a bad value must not cost a night's work
    config = storage.resolve_feature_set(feature_set, storage_options=options)
    with storage.hold_lease(dest, job="featurize", wait_s=lease_wait_s, storage_options=options) as lease:
        plan = jobs.plan_featurization(
            source,
            dest,
            config,
            shard_size=shard_size,
            retry_errors=retry_errors,
            settle_s=settle_s,
            allow_empty_source=allow_empty_source,
            storage_options=options,
        )
        logger.info("%d files seen, %d already done, %d to featurize", plan.n_seen, plan.n_done, plan.n_pending)
        summaries, copies, copies_plan = [], [], None
        with cluster_on_demand(dask_address, n_workers) as runner:  # one cluster for both passes
            if plan.pending:
                summaries = run_shards(
                    featurize_shard,
                    plan,
                    runner(),
                    description="featurize",
                    n_done=lambda s: s.n_files,
                    file_timeout_s=file_timeout_s,
                    dest=dest,
                    config=config,
                )
            if augment_by_default(config) if augment is None else augment:
                copies_plan = jobs.plan_augmentation(
                    source,
                    dest,
                    config,
                    shard_size=shard_size,
                    retry_errors=retry_errors,
                    settle_s=settle_s,
                    storage_options=options,
                )
                logger.info("%d labelled clips to augment", copies_plan.n_pending)
                if copies_plan.pending:
                    copies = run_shards(
                        augment_shard,
                        copies_plan,
                        runner(),
                        description="augment",
                        n_done=lambda s: s.n_files,
                        file_timeout_s=file_timeout_s,
                        dest=dest,
                        config=config,
                    )

        def report(summary: dict[str, Any]) -> None:
            print(jobs.format_featurize_summary(summary))
            shards = [*summaries, *copies]
            publish_report(jobs.featurize_report(summary, shards, feature_set=config.name, storage_options=options))

        return jobs.complete_featurize(
            dest,
            config,
            plan,
            summaries,
            copies_plan=copies_plan,
            copies=copies,
            started=started,
            max_error_ratio=max_error_ratio,
            lease=lease,
            report=report,
            storage_options=options,
        )


if __name__ == "__main__":
    import sys

    featurize(sys.argv[1], sys.argv[2])
