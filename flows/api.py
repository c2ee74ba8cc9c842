"""The Prefect API a CLI run talks to: the configured one, or one temporary server shared with workers."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
    temporary_settings,
)

from ser_batch.errors import SerBatchError

_BOOT_TIMEOUT_S = 90.0  # Prefect's default (20 s) is too short on a loaded 2-core machine while workers start
_STARTUP_FAILED = 3  # uvicorn's exit status when it cannot bind, or its start-up (database migrations) fails
_logger = logging.getLogger("prefect")  # where SubprocessASGIServer logs the same lines


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")
# The server's main: uvicorn, plus a thread that ends the server once the run that started it is gone
# (kill -9, the OOM killer), which could not stop it; else it would serve on, orphaned, for good.
# argv[1] is that run's pid; a server ignoring SIGTERM for 10 s is ended at once.
_SERVER_MAIN = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(1)
threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


class ApiError(SerBatchError):
    """The temporary Prefect API server could not be started."""


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

    Booting takes seconds; work that does not need the API yet (starting and warming a Dask
    cluster) can run meanwhile. The URL is exported before the boot starts, so processes
    spawned meanwhile inherit it. ``ready()`` waits until the server answers and returns its
    URL; that differs from the one exported at entry only if the port was taken in between
    and the server had to move (the new URL is then exported and set).

    The server is the one Prefect's ``SubprocessASGIServer`` runs (uvicorn with
    ``prefect.server.api.server:create_app``, UI off), launched directly: importing that
    class costs this process seconds of imports that only the server needs.
    """
    configured = PREFECT_API_URL.value()
    if configured:
        yield lambda: configured
        return
    from prefect.logging.handlers import APILogWorker

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; avoid telemetry errors
    server = _Server(get_current_settings().to_environment_variables(exclude_unset=True))
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = planned = server.api_url
    booting = threading.Thread(target=server.boot, name="prefect-api-boot", daemon=True)
    booting.start()
    try:
        with ExitStack() as settings:
            # No flow-run heartbeats: nothing outlives this process to act on a missed one, and
            # the heartbeat thread's 1 s sleep delayed the end of every flow run by up to 1 s.
            settings.enter_context(
                temporary_settings({PREFECT_API_URL: planned, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
            )

            def ready() -> str:
                booting.join()
                if server.failure is not None:
                    raise server.failure
                if server.api_url != planned:
                    os.environ["PREFECT_API_URL"] = server.api_url
                    settings.enter_context(temporary_settings({PREFECT_API_URL: server.api_url}))
                if not server.used:  # logged only once it is used: a failed check prints its one error line alone
                    server.used = True
                    _logger.info("Started temporary server on %s", server.api_url.removesuffix("/api"))
                return server.api_url

            yield ready
    finally:
        if server.process is not None and not booting.is_alive():
            APILogWorker.drain_all(timeout=5)  # send buffered logs while the server still listens
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        server.stop()  # also ends a boot still in progress (a failed check): no waiting for it
        booting.join()


class _Server:
    """One temporary Prefect API server process on 127.0.0.1.

    Servers of concurrent runs share PREFECT_HOME's database, and each migrates it when it
    starts: two migrating at once fail (``duplicate column``). So a server boots holding a lock
    in PREFECT_HOME until it answers, and the next one's migration finds nothing to do. Its
    output goes to a log file, named in the one-line error if it fails, not to the console.
    """

    def __init__(self, settings_env: dict[str, str]) -> None:
        self.settings_env = settings_env
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.failure: BaseException | None = None
        self.used = False
        self.home = get_current_settings().home
        self.log: str | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def boot(self) -> None:
        try:
            with self._booting_alone():
                self._boot()
        except BaseException as error:  # re-raised in the caller's thread by ready()
            self.failure = error

    @contextmanager
    def _booting_alone(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".ser-batch-api-boot.lock", "a") as lock:
            while True:  # released when the other server answers, or its process ends
                self._check_stopped()
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _check_stopped(self) -> None:
        if self._stopped:
            raise RuntimeError("the temporary Prefect API server was stopped while booting")

    def _boot(self) -> None:
        import httpx
        import prefect

        timeout_s = max(_BOOT_TIMEOUT_S, float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        deadline = time.monotonic() + timeout_s
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **self.settings_env,
        }
        env.pop("PREFECT_API_URL", None)  # the server is not a client of itself
        command = [sys.executable, "-c", _SERVER_MAIN, str(os.getpid()), "--app-dir", str(prefect.__module_path__.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--log-level", "error", "--lifespan", "on"]  # fmt: skip
        self._spawn(command, env)
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                self._check_stopped()
                if self.process is not None and self.process.poll() == _STARTUP_FAILED and _port_taken(self.port):
                    self.port = _free_port()  # taken since we probed it: move
                    self._spawn(command, env)
                elif self.process is not None and self.process.poll() is not None:
                    raise ApiError(
                        f"the temporary Prefect API server exited with status {self.process.returncode} while starting "
                        f"({self._last_log_line()}); see {self.log}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                        return
                time.sleep(0.1)
        raise ApiError(
            f"the temporary Prefect API server did not answer within {timeout_s:.0f} s (a busy machine?); re-run, or "
            f"start one with `prefect server start` and set PREFECT_API_URL; its log: {self.log}"
        )

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        with self._lock:
            if self._stopped:
                return
            handle, self.log = tempfile.mkstemp(prefix=f"ser-batch-prefect-api-{self.port}-", suffix=".log")
            try:
                self.process = subprocess.Popen(
                    [*command, "--port", str(self.port)], env=env, stdout=handle, stderr=handle
                )
            finally:
                os.close(handle)

    def _last_log_line(self) -> str:
        """The server log's last exception line (``sqlite3.OperationalError: ...``), else its last line."""
        try:
            with open(self.log or os.devnull, errors="replace") as handle:
                lines = [line.strip() for line in handle if line.strip()]
        except OSError:
            return "no log"
        errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
        return (errors or lines or ["no output"])[-1][:200]

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        if self.process is None:
            return
        if self.used:
            _logger.info("Stopping temporary server on http://127.0.0.1:%d", self.port)
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.failure is None and self.log is not None:
            with contextlib.suppress(OSError):
                os.remove(self.log)  # kept when the server failed: the error line names it


def _port_taken(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _free_port() -> int:
    # Prefect's own choice (SubprocessASGIServer.find_available_port)
    for port in random.sample(range(8000, 9000), 50):
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8000-8999 for a temporary Prefect API")
