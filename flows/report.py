"""Publish a run's report (``ser_batch.jobs.RunReport``) as Prefect artifacts, one history per deployment and key."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import deployment, flow_run

from ser_batch.jobs import RunReport, report_key


def publish_report(report: RunReport) -> None:
    """Create the run's ``<flow>[-<deployment>]-summary`` markdown and ``-<table name>`` table artifacts.

    A report that cannot be published is logged, never raised: the run's data is written by then.
    """
    flow_name, deployment_name = str(flow_run.flow_name), deployment.name
    try:
        create_markdown_artifact(
            report.markdown, key=report_key(flow_name, deployment_name, "summary"), description=report.description
        )
        create_table_artifact(
            report.table, key=report_key(flow_name, deployment_name, report.table_name), description=report.description
        )
    except Exception as error:  # noqa: BLE001  (the API refused or is gone: the run itself succeeded)
        get_run_logger().warning("the run report was not published: %s", error)
