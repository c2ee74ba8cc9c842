from __future__ import annotations

from pathlib import Path

import yaml

from ser_batch.config import DEFAULT_SETTLE_S

PREFECT_YAML = Path(__file__).resolve().parents[2] / "deploy" / "prefect.yaml"


def test_deployments_that_write_a_dest_run_one_at_a_time_and_leave_files_being_written(monkeypatch) -> None:
    from flows.serve import deployments

    monkeypatch.delenv("SER_BATCH_TIMEZONE", raising=False)
    served = {deployment.name: deployment for deployment in deployments()}
    declared = {entry["name"]: entry for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}

    for name in ("featurize", "nightly"):
        assert served[name].concurrency_limit == 1 and declared[name]["concurrency_limit"] == 1, name
        assert served[name].parameters["settle_s"] == declared[name]["parameters"]["settle_s"] == DEFAULT_SETTLE_S
    assert served["nightly"].parameters["lease_wait_s"] == declared["nightly"]["parameters"]["lease_wait_s"]


def test_the_nightly_deployment_names_its_channel_roles_as_served(monkeypatch) -> None:
    from flows.serve import deployments

    monkeypatch.delenv("SER_BATCH_CHANNEL_ROLES", raising=False)
    served = {deployment.name: deployment for deployment in deployments()}
    declared = {entry["name"]: entry for entry in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}

    assert "channel_roles" in declared["nightly"]["parameters"]
    assert served["nightly"].parameters["channel_roles"] == declared["nightly"]["parameters"]["channel_roles"] is None
