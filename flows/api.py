"""The Prefect API a CLI run talks to: the configured one, or one temporary server shared with workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import PREFECT_API_URL, temporary_settings


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Use ``PREFECT_API_URL`` if set; otherwise start one temporary local API for this run.

    Prefect's own ephemeral mode starts a server per process, so every Dask worker
    would start (and report to) its own. Starting it here and exporting its URL
    before the cluster spawns makes the flow and its workers share one API.
    """
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer

    from prefect.logging.handlers import APILogWorker

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; avoid telemetry errors
    server = SubprocessASGIServer()
    server.start()
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        APILogWorker.drain_all(timeout=5)  # send buffered logs while the server still listens
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        server.stop()
