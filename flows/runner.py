"""The Dask task runner every flow uses: an existing cluster, or a LocalCluster."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dask
from distributed import KilledWorker
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect_dask import DaskTaskRunner

from flows.isolation import Isolation, RunGuard
from flows.settings import sealed_storage_options
from ser_batch.errors import ConfigError, SerBatchError
from ser_batch.jobs import progress_bar
from ser_batch.shards import Plan, Shard

_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
DASK_ADDRESS_ENV = "SER_BATCH_DASK_ADDRESS"
Summary = TypeVar("Summary")


def dask_runner(address: str | None = None, n_workers: int | None = None) -> DaskTaskRunner:
    """Connect to ``address`` (or ``$SER_BATCH_DASK_ADDRESS``); with neither, start a LocalCluster.

    The local cluster runs one single-threaded worker process per core: librosa's numba
    and BLAS code oversubscribes cores when threads are shared.
    """
    address = given_address(address)
    if address is not None:
        if not _ADDRESS.match(address):
            raise ConfigError(f"malformed Dask address {address!r}; expected like tcp://host:8786")
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=_prepare_local_cluster(n_workers))


def given_address(address: str | None) -> str | None:
    """``address``, else ``$SER_BATCH_DASK_ADDRESS``, else None (start a LocalCluster)."""
    return address or os.environ.get(DASK_ADDRESS_ENV) or None


LOCAL_CLUSTER_CONFIG = {
    # A task whose worker died fails at once (KilledWorker) instead of being run again on another worker:
    # run_shards isolates the file that killed it (flows.isolation), where another try would kill again.
    "distributed.scheduler.allowed-failures": 0,
    # A LocalCluster closes a worker's nanny for good when no worker of its name is back 15 s after a death;
    # a poison file that kills the restarted worker within those 15 s would leave the run without workers.
    "distributed.deploy.lost-worker-timeout": "7 days",
}
"""Dask settings of the LocalCluster a flow starts, for a cluster whose workers poison files may kill."""


def _prepare_local_cluster(n_workers: int | None) -> dict[str, Any]:
    """Check ``n_workers``, keep glibc's malloc defaults for the workers, return the LocalCluster's arguments."""
    if n_workers is not None and n_workers < 1:
        raise ConfigError(f"n_workers {n_workers} < 1")
    _keep_glibc_malloc_defaults()
    dask.config.set(LOCAL_CLUSTER_CONFIG)
    return {
        "n_workers": n_workers or os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",  # any free port: several runs may share a machine
    }


@contextmanager
def local_cluster(
    n_workers: int | None = None, *, warm_up: Callable[[], object] | None = None, preload: Sequence[str] = ()
) -> Iterator[str]:
    """Start the LocalCluster ``dask_runner`` would, run ``warm_up`` once on every worker, yield its address.

    Lets the CLI start and warm the workers while the Prefect API boots, then hand the
    address to the flow (``dask_runner(address)``), instead of starting them inside the flow.
    With ``preload`` (module names), workers are forked from a Dask forkserver that imported
    those modules once, instead of each worker importing them afresh.
    """
    from distributed import Client, LocalCluster
    from distributed.utils import get_mp_context

    cluster_kwargs = _prepare_local_cluster(n_workers)
    method = "forkserver" if preload else dask.config.get("distributed.worker.multiprocessing-method")
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        if preload:
            get_mp_context().set_forkserver_preload(
                ["distributed", "numpy", *preload]
            )  # read when the forkserver starts
        with LocalCluster(**cluster_kwargs) as cluster:
            if warm_up is not None:
                with Client(cluster) as client:
                    client.run(warm_up)
            yield cluster.scheduler_address


@contextmanager
def cluster_on_demand(address: str | None, n_workers: int | None) -> Iterator[Callable[[], DaskTaskRunner]]:
    """Yield ``runner()``, a task runner on ``address``, ``$SER_BATCH_DASK_ADDRESS`` or a shared LocalCluster.

    Without an address, one LocalCluster is started at the first call, shared by every later
    one and closed on exit.

    A flow with several passes (featurize, then augment) pays one cluster start, and a
    run with nothing to do pays none.
    """
    with contextlib.ExitStack() as stack:
        given = given_address(address)

        def runner() -> DaskTaskRunner:
            nonlocal given
            if given is None:
                given = stack.enter_context(local_cluster(n_workers))
            return dask_runner(given, n_workers)

        yield runner


def _keep_glibc_malloc_defaults() -> None:
    # Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers (and into this process's
    # environment, where it would override the config). Setting it turns off glibc's dynamic
    # mmap threshold, so every multi-MB STFT temporary is mmapped and page-faulted afresh:
    # a scoring shard took 2.2x the CPU (716k vs 46k minor page faults), featurizing alike.
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})


class ClusterError(SerBatchError):
    """The Dask scheduler cannot be reached, or was lost mid-run."""


def retry_unless_permanent(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` of the shard tasks: retry unless the shard failed on a ``SerBatchError``.

    Those (disk full, access denied, a model that does not load) fail the same way again, so
    the run ends at once with their one line rather than after 70 s of retries. Anything else
    (a dropped connection, throttling) may be transient and is retried.
    """
    return not isinstance(state.data, SerBatchError)


def shard_task(name: str) -> Any:
    """The decorator of every shard task: two Prefect retries after 10 s and 60 s, unless ``retry_unless_permanent``.

    Shards write part files under deterministic names, so a retry redoes the same work; nothing is cached.
    """
    return task(
        name=name,
        retries=2,
        retry_delay_seconds=[10, 60],
        retry_condition_fn=retry_unless_permanent,
        cache_policy=NO_CACHE,
    )


@contextmanager
def _on_cluster(runner: DaskTaskRunner) -> Iterator[DaskTaskRunner]:
    """Enter ``runner``; a scheduler that cannot be reached, or is lost mid-run, is a one-line ``ClusterError``."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    address = runner.address or "the LocalCluster"
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(runner)
        except OSError as error:  # distributed's connect timeout
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} ({str(error).splitlines()[0]}); start it "
                f"(`dask scheduler`) or correct --dask-address / ${DASK_ADDRESS_ENV}"
            ) from None
        try:
            yield runner
        except (FutureCancelledError, CommClosedError) as error:
            reason = getattr(error, "reason", None) or str(error).splitlines()[0]
            raise ClusterError(
                f"lost the Dask scheduler at {address} mid-run ({reason}); restart it and its workers "
                "(`dask scheduler`, `dask worker`) and re-run the same command: the part files already written are kept"
            ) from None


def run_shards(
    task: Task[..., Summary],
    plan: Plan,
    runner: DaskTaskRunner,
    *,
    description: str,
    n_done: Callable[[Summary], int],
    file_timeout_s: float | None = None,
    **constants: Any,
) -> list[Summary]:
    """Run ``task(shard=..., storage_options=..., run_guard=..., **constants)`` per shard of ``plan``, with a progress bar.

    The plan's pending inputs are cut for the cluster's worker threads (``Plan.shards_for``).
    At most ``in_flight(n_threads)`` shards are submitted at a time and the next one when one
    finishes, so the scheduler, the workers and the Prefect API hold a bounded number of task
    runs (and their file lists) however large the archive.

    A shard whose worker died (``KilledWorker``) is submitted again as ``flows.isolation``
    decides, until the file that killed it is recorded; ``run_guard`` gives each task this
    pass's poison files and ``file_timeout_s``, the per-file time limit.

    The runner is used directly, not through a subflow: a subflow's parameters (every file
    path) would be stored by the Prefect API. Storage options travel sealed as a SecretStr,
    so workers of an external cluster use the flow's endpoint and keys and the API shows none.
    """
    guard = RunGuard(run=f"{description}-{uuid.uuid4().hex}", file_timeout_s=file_timeout_s)
    shared = {"storage_options": sealed_storage_options(), "run_guard": guard, **constants}
    summaries = []
    finished: queue.Queue[PrefectFuture[Summary]] = queue.Queue()
    running: dict[Any, Shard] = {}  # task run id -> its shard

    def submit(shard: Shard) -> None:
        future = runner.submit(task, {"shard": shard, **shared})
        running[future.task_run_id] = shard
        future.add_done_callback(finished.put)

    with _on_cluster(runner), progress_bar(plan.n_pending, description=description) as bar:
        n_threads = max(1, sum(runner.client.nthreads().values()))  # an external cluster may have no workers yet
        shards = plan.shards_for(n_threads)
        get_run_logger().info(
            "%s: %d files in %d shards for %d worker threads", description, plan.n_pending, len(shards), n_threads
        )
        isolation = Isolation(runner.client, guard, plan.fingerprint)
        waiting = iter(shards)
        for shard in itertools.islice(waiting, in_flight(n_threads)):
            submit(shard)
        while running:
            future = finished.get()
            shard = running.pop(future.task_run_id)
            try:
                summary = future.result()
            except KilledWorker as error:
                for again in isolation.after_death(shard, future, error):
                    submit(again)
                continue
            isolation.completed()
            summaries.append(summary)
            bar.update(n_done(summary))
            shard = next(waiting, None)
            if shard is not None:
                submit(shard)
    return summaries


def in_flight(n_threads: int) -> int:
    """Shards submitted at once: enough to keep every worker thread busy while results come back.

    >>> in_flight(2), in_flight(64)
    (8, 256)
    """
    return max(8, 4 * n_threads)
