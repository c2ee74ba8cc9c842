"""`ser-batch serve`: serve every deployment in deploy/prefect.yaml from this process."""

from __future__ import annotations

import os
from typing import Any

from prefect import serve as prefect_serve
from prefect.schedules import Cron

from flows.featurize import featurize
from flows.score import score
from flows.settings import timezone_name
from flows.train import train
from ser_batch.config import DEFAULT_SETTLE_S, channel_roles

SCORE_PARAMETER_ENV = {
    "source": "SER_BATCH_SCORE_SOURCE",
    "dest": "SER_BATCH_SCORE_DEST",
    "model_dir": "SER_BATCH_MODEL_DIR",
}
"""Environment variables that give score/nightly its archive, output and model."""

CHANNEL_ROLES_ENV = "SER_BATCH_CHANNEL_ROLES"
"""Comma-separated channel roles of score/nightly's recordings, e.g. ``agent,customer`` (its ``channel_roles``)."""

NIGHTLY_PARAMETERS: dict[str, Any] = {"settle_s": DEFAULT_SETTLE_S, "lease_wait_s": 3600.0, "channel_roles": None}
"""score/nightly's defaults, as in deploy/prefect.yaml: a catch-up run writing DEST at 02:00 is waited for, up to an hour."""


def nightly_score() -> Any:
    """The score/nightly deployment: 02:00 every day in ``$SER_BATCH_TIMEZONE`` (default UTC).

    SOURCE, DEST and MODEL_DIR come from ``SER_BATCH_SCORE_SOURCE``, ``SER_BATCH_SCORE_DEST``
    and ``SER_BATCH_MODEL_DIR`` when set; without all three the schedule is created paused
    (a run needs them as parameters). ``SER_BATCH_CHANNEL_ROLES`` (e.g. ``agent,customer``) names
    the channels. One run at a time: DEST has a single writer (and a lease).

    Raises:
        ConfigError: if ``SER_BATCH_CHANNEL_ROLES`` is not two or more different, non-empty names.
    """
    parameters: dict[str, Any] = {
        name: os.environ[env] for name, env in SCORE_PARAMETER_ENV.items() if os.environ.get(env)
    }
    roles = os.environ.get(CHANNEL_ROLES_ENV)
    if roles:
        parameters["channel_roles"] = list(channel_roles(roles))
    schedule = Cron("0 2 * * *", timezone=timezone_name(), active=len(parameters) == len(SCORE_PARAMETER_ENV))
    return score.to_deployment(
        name="nightly",
        schedules=[schedule],
        parameters={**NIGHTLY_PARAMETERS, **parameters},
        concurrency_limit=1,
        description="Score the new call recordings under SOURCE with MODEL_DIR into DEST, nightly.",
    )


def deployments() -> list[Any]:
    """The project's deployments; names, schedules, limits and defaults mirror deploy/prefect.yaml.

    Featurize and score/nightly run one at a time (``concurrency_limit=1``): each also takes
    its DEST's lease, which covers runs started from the CLI too.
    """
    return [
        featurize.to_deployment(
            name="featurize",
            description="Make partitioned Parquet under DEST mirror the audio under SOURCE.",
            parameters={"settle_s": DEFAULT_SETTLE_S},
            concurrency_limit=1,
        ),
        train.to_deployment(name="train", description="Train a model on a featurized DEST and save MODEL_DIR."),
        nightly_score(),
    ]


def serve() -> None:
    """Serve the project's deployments against ``PREFECT_API_URL`` until interrupted.

    `prefect deployment run featurize/featurize` works the same whether served here or
    deployed to a work pool.
    """
    prefect_serve(*deployments())
