"""`ser-batch serve`: serve every deployment in deploy/prefect.yaml from this process."""

from __future__ import annotations

from prefect import serve as prefect_serve

from flows.featurize import featurize
from flows.train import train


def serve() -> None:
    """Serve the project's deployments against ``PREFECT_API_URL`` until interrupted.

    Names, schedules and defaults mirror deploy/prefect.yaml, so `prefect deployment run
    featurize/featurize` works the same whether served here or deployed to a work pool.
    """
    prefect_serve(
        featurize.to_deployment(name="featurize", description="Featurize new audio under SOURCE into DEST."),
        train.to_deployment(name="train", description="Train a model on a featurized DEST and save MODEL_DIR."),
    )
