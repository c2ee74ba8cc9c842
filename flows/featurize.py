"""Flow `featurize`: audio archive -> partitioned Parquet, one Prefect task per shard on Dask."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from flows.report import publish_report
from flows.runner import cluster_on_demand, run_shards
from flows.settings import storage_options_from_env, unseal_storage_options
from ser_batch import jobs
from ser_batch.config import DEFAULT_FEATURE_SET, FeatureConfig, feature_config
from ser_batch.features import augment_by_default, warm_up
from ser_batch.shards import Shard, ShardSummary


@task(name="featurize-shard", retries=2, retry_delay_seconds=[10, 60], cache_policy=NO_CACHE)
def featurize_shard(shard: Shard, dest: str, config: FeatureConfig, storage_options: SecretStr | None) -> ShardSummary:
    """Featurize one shard on a worker and write its part files (``ser_batch.jobs.featurize_shard``)."""
    summary = jobs.featurize_shard(shard, dest, config, storage_options=unseal_storage_options(storage_options))
    get_run_logger().info(
        "shard %s: %d files, %d rows, %d errors, %.1f s",
        summary.shard_id,
        summary.n_files,
        summary.n_rows,
        summary.n_errors,
        summary.elapsed_s,
    )
    return summary


@task(name="augment-shard", retries=2, retry_delay_seconds=[10, 60], cache_policy=NO_CACHE)
def augment_shard(shard: Shard, dest: str, config: FeatureConfig, storage_options: SecretStr | None) -> ShardSummary:
    """Make and featurize one shard's augmented copies on a worker (``ser_batch.jobs.augment_shard``)."""
    summary = jobs.augment_shard(shard, dest, config, storage_options=unseal_storage_options(storage_options))
    get_run_logger().info(
        "augment shard %s: %d clips, %d copies, %d errors, %.1f s",
        summary.shard_id,
        summary.n_files,
        summary.n_rows,
        summary.n_errors,
        summary.elapsed_s,
    )
    return summary


def warm_worker(feature_set: str) -> None:
    """Run on each Dask worker before its first shard: imports this module (Prefect) and warms the featurizer."""
    warm_up(feature_config(feature_set))


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
) -> dict[str, Any]:
    """Featurize every new or changed audio file under SOURCE into partitioned Parquet under DEST, and augmented copies of labelled clips."""
    started = time.perf_counter()
    logger = get_run_logger()
    config = feature_config(feature_set)
    storage_options = storage_options_from_env()
    plan = jobs.plan_featurization(
        source, dest, config, shard_size=shard_size, retry_errors=retry_errors, storage_options=storage_options
    )
    logger.info("%d files seen, %d already done, %d to featurize", plan.n_seen, plan.n_done, plan.n_pending)
    summaries, copies = [], []
    with cluster_on_demand(dask_address, n_workers) as runner:  # one cluster for both passes
        if plan.pending:
            summaries = run_shards(
                featurize_shard,
                plan,
                runner(),
                description="featurize",
                n_done=lambda s: s.n_files,
                dest=dest,
                config=config,
            )
        pruned = jobs.reconcile_features(dest, config, plan.changed, storage_options=storage_options)
        if augment_by_default(config) if augment is None else augment:
            copies_plan = jobs.plan_augmentation(
                source, dest, config, shard_size=shard_size, retry_errors=retry_errors, storage_options=storage_options
            )
            logger.info("%d labelled clips to augment", copies_plan.n_pending)
            if copies_plan.pending:
                copies = run_shards(
                    augment_shard,
                    copies_plan,
                    runner(),
                    description="augment",
                    n_done=lambda s: s.n_files,
                    dest=dest,
                    config=config,
                )
            pruned += jobs.reconcile_features(
                dest, config, copies_plan.changed, dataset_name="augmented", storage_options=storage_options
            )
    summary = jobs.featurize_summary(
        plan, summaries, wall_s=time.perf_counter() - started, n_pruned=pruned, dest=dest, augmented=copies
    )
    print(jobs.format_featurize_summary(summary))
    publish_report(
        jobs.featurize_report(summary, [*summaries, *copies], feature_set=config.name, storage_options=storage_options)
    )
    jobs.check_error_ratio(
        summary["failed"], plan.n_pending, max_error_ratio, inputs="files", errors_at=f"{dest}/errors"
    )
    return summary


if __name__ == "__main__":
    import sys

    featurize(sys.argv[1], sys.argv[2])
