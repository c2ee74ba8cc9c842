from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)

from flows.api import prefect_api


def test_flow_runs_on_the_temporary_api_send_no_heartbeats(prefect) -> None:
    # nothing outlives the run to act on a missed heartbeat; the heartbeat thread delays each flow's end
    assert prefect is not None and PREFECT_API_URL.value() == prefect
    assert get_current_settings().flows.heartbeat_frequency is None


def test_a_configured_api_is_used_as_is_heartbeats_included() -> None:
    configured = "http://127.0.0.1:9/api"
    with temporary_settings({PREFECT_API_URL: configured, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}), prefect_api() as url:
        assert url == configured
        assert get_current_settings().flows.heartbeat_frequency == 60


CHILD = """
import os, sys, time
import psutil
from flows.api import prefect_api

with prefect_api():
    server = next(p for p in psutil.Process().children() if "prefect.server.api.server:create_app" in p.cmdline())
    print(server.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.integration
def test_the_temporary_api_server_ends_when_its_run_is_killed(tmp_path) -> None:
    # kill -9 (or the OOM killer) skips every clean-up: the server used to serve on, orphaned, for good
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # not the module's API: its own server
    run = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = run.stdout.readline()  # type: ignore[union-attr]
        server = psutil.Process(int(line))
    finally:
        run.kill()
        run.wait()

    gone, _ = psutil.wait_procs([server], timeout=30)
    assert gone, f"server {server.pid} still running after its run was killed"
