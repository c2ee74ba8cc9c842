from __future__ import annotations

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
