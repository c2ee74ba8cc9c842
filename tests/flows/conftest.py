from __future__ import annotations

from collections.abc import Iterator

import dask
import pytest
from poison_hook import HOOK, HookedCluster

from flows.api import prefect_api


@pytest.fixture(scope="session")
def prefect() -> Iterator[str | None]:
    # The same temporary API the CLI starts, shared with Dask worker processes.
    with prefect_api() as url:
        yield url


@pytest.fixture(scope="module")
def hooked_cluster(prefect: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookedCluster]:
    """One LocalCluster worker process that fails on marked files (tests/poison_hook.py, a test-only preload).

    Set up as the flows set up their own LocalCluster (a task whose worker died fails at once).
    """
    from distributed import LocalCluster

    from flows.runner import LOCAL_CLUSTER_CONFIG

    hits = tmp_path_factory.mktemp("hooked") / "hits.log"
    with (
        dask.config.set(LOCAL_CLUSTER_CONFIG),
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            preload=[str(HOOK)],
            env={"SER_BATCH_TEST_POISON_LOG": str(hits)},
        ) as cluster,
    ):
        yield HookedCluster(cluster.scheduler_address, hits)
