"""Flow `train`: fit a model on the consolidated feature table and save a self-contained model directory."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.report import publish_report
from flows.settings import storage_options_from_env
from ser_batch import jobs
from ser_batch.config import DEFAULT_FEATURE_SET, TrainConfig
from ser_batch.jobs.train import train_and_save


@task(name="fit-and-save", retries=0, cache_policy=NO_CACHE)
def fit_and_save(features_dest: str, model_dir: str, feature_set: str, config: TrainConfig) -> dict[str, Any]:
    """Fit the model on the consolidated table and save the model directory (``ser_batch.jobs.train_and_save``)."""
    logger = get_run_logger()
    metadata = train_and_save(
        features_dest,
        model_dir,
        feature_set=feature_set,
        config=config,
        log=logger.info,
        storage_options=storage_options_from_env(),
    )
    logger.info("saved %s (test accuracy %s)", model_dir, metadata["metrics"]["test"]["accuracy"])
    return metadata


@flow(name="train", log_prints=True)
def train(
    features_dest: str,
    model_dir: str,
    feature_set: str = DEFAULT_FEATURE_SET,
    config: TrainConfig = TrainConfig(),  # noqa: B008  (frozen: a shared default is safe)
) -> dict[str, Any]:
    """Train a model on FEATURES_DEST/features and write MODEL_DIR (model, metadata, reports)."""
    metadata = fit_and_save(features_dest, model_dir, feature_set, config)
    report = jobs.train_report(
        metadata, model_dir, features_dest=features_dest, storage_options=storage_options_from_env()
    )
    publish_report(report)
    return {"model_dir": model_dir, "metrics": metadata["metrics"]}


if __name__ == "__main__":
    import sys

    train(sys.argv[1], sys.argv[2])
