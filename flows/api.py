"""The Prefect API a CLI run talks to: the configured one, or one temporary server shared with workers."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Use ``PREFECT_API_URL`` if set; otherwise start one temporary local API for this run.

    Prefect's own ephemeral mode starts a server per process, so every Dask worker
    would start (and report to) its own. Starting it here and exporting its URL
    before the cluster spawns makes the flow and its workers share one API.
    """
    with prefect_api_starting() as ready:
        yield ready()


@contextmanager
def prefect_api_starting() -> Iterator[Callable[[], str | None]]:
    """Like ``prefect_api``, but a temporary server boots in the background: call the yielded ``ready()``.

    Booting the server takes seconds; work that does not need the API yet (starting and
    warming a Dask cluster) can run meanwhile. The URL is exported before the boot starts,
    so processes spawned meanwhile inherit it. ``ready()`` waits for the server and returns
    its URL; that differs from the URL exported at entry only if the port was taken in
    between and Prefect moved the server (the new URL is then exported and set).
    """
    configured = PREFECT_API_URL.value()
    if configured:
        yield lambda: configured
        return
    from prefect.logging.handlers import APILogWorker

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; avoid telemetry errors
    port = _free_port()
    servers: list[Any] = []
    failure: list[BaseException] = []

    def boot() -> None:
        try:
            from prefect.server.api.server import SubprocessASGIServer  # ~3 s of imports: off the main thread

            servers.append(SubprocessASGIServer(port))
            servers[0].start(timeout=max(_BOOT_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        except BaseException as error:  # re-raised in the caller's thread by ready()
            failure.append(error)

    planned = f"http://127.0.0.1:{port}/api"  # SubprocessASGIServer.api_url
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = planned
    booting = threading.Thread(target=boot, name="prefect-api-boot", daemon=True)
    booting.start()
    try:
        with ExitStack() as settings:
            settings.enter_context(temporary_settings({PREFECT_API_URL: planned}))

            def ready() -> str:
                booting.join()
                if failure:
                    raise failure[0]
                url = str(servers[0].api_url)
                if url != planned:  # the port was taken meanwhile and Prefect moved the server
                    os.environ["PREFECT_API_URL"] = url
                    settings.enter_context(temporary_settings({PREFECT_API_URL: url}))
                return url

            yield ready
    finally:
        booting.join()
        APILogWorker.drain_all(timeout=5)  # send buffered logs while the server still listens
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        if servers:
            servers[0].stop()


_BOOT_TIMEOUT_S = 90  # Prefect's default (20 s) is too short on a loaded 2-core machine while workers start


def _free_port() -> int:
    # Prefect's own choice (SubprocessASGIServer.find_available_port), without importing the server
    for port in random.sample(range(8000, 9000), 50):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8000-8999 for a temporary Prefect API")
