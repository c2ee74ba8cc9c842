"""Poison files on a Dask cluster: the guard a shard task runs its files under, and what to run again when its worker dies.

A file that ends its worker process (a decoder crash, a kill by the nanny for memory, the
per-file time limit) ends its shard's Dask task in ``KilledWorker``: Prefect's task engine dies
with the process, so nothing is retried or written. ``run_shards`` hands such a shard to
``Isolation``, which submits it again:

1. unchanged, if it had not begun: Dask queues a task on a worker before a thread is free for
   it, and a queued task dies with the worker too;
2. unchanged, if this run's poison registry now names one of its files (the watchdog names the
   file that overran the time limit before it ends its process): the task records that file
   and does the rest;
3. else in two halves, until the file that kills its worker is alone;
4. alone, again; a file that killed its worker alone twice is named ``worker died`` in the
   registry and submitted once more, so that its own task records it as its error row. (Once is
   not proof on a worker of several threads: a task beside the poison file's dies with it.)

The poison registry is a topic of the Dask scheduler's event log, one per pass of a run
(``RunGuard.poison_topic``): the dying worker's watchdog writes to it, the flow reads and writes
it, and every shard task reads it when it begins (so Dask's own reschedules of a killed task
skip the file too), after saying so under ``RunGuard.begun_topic``. The library stays free of
Dask: it only takes the ``FileGuard`` built here.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import dask
import distributed
import prefect.runtime
import psutil
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.futures import PrefectFuture
from prefect.states import Crashed

from ser_batch.errors import RunError
from ser_batch.jobs import NO_GUARD, TIMED_OUT, WORKER_DIED, FileGuard
from ser_batch.shards import FileInfo, Shard, split_shard

MAX_WORKER_DEATHS = 20
"""Workers that may die with no shard completing in between before the run stops: isolating one poison
file in a shard of 500 costs about 11; workers that die on every shard are not a poison file."""


@dataclass(frozen=True)
class RunGuard:
    """What every shard task of one pass needs to guard its files; travels as a task parameter.

    Attributes:
        run: scopes the poison registry to one pass of one run.
        file_timeout_s: seconds one file may take; None for no limit.
    """

    run: str
    file_timeout_s: float | None

    @property
    def poison_topic(self) -> str:
        """The scheduler event topic of this pass's poison files: ``{"file": file_key, "reason": ..., "path": ...}``."""
        return f"ser-batch-poison/{self.run}"

    @property
    def begun_topic(self) -> str:
        """The scheduler event topic where each shard task says it began: ``{"task_run": its Prefect task run id}``."""
        return f"ser-batch-begun/{self.run}"

    def begin(self, files: tuple[FileInfo, ...]) -> FileGuard:
        """Called first by a shard task: say it began, and guard ``files``.

        On a Dask worker the guard knows which of ``files`` this pass found poisonous, the memory
        the worker can spare and the time limit. Elsewhere it allows everything: the time limit ends
        its process, which only a worker's nanny brings back.
        """
        try:
            worker = distributed.get_worker()
        except ValueError:
            return NO_GUARD
        client = distributed.get_client()
        client.log_event(self.begun_topic, {"task_run": str(prefect.runtime.task_run.id)})
        registry = poison_registry(client, self)
        poisoned = {
            (info.uri, info.content_key): registry[key] for info in files if (key := file_key(info)) in registry
        }
        return FileGuard(
            poisoned=poisoned,
            free_memory=partial(spare_memory, worker),
            time_limit_s=self.file_timeout_s,
            on_time_limit=partial(_name_timed_out, client, self),
        )


def file_key(info: FileInfo) -> str:
    """A file's key in the registry: a digest of its path and content key (paths need not be valid UTF-8)."""
    return hashlib.sha256(f"{info.uri}\t{info.content_key}".encode("utf-8", "surrogateescape")).hexdigest()[:24]


def poison_registry(client: distributed.Client, guard: RunGuard) -> dict[str, str]:
    """``file_key -> reason`` of the files named poison in ``guard``'s pass so far."""
    return {msg["file"]: msg["reason"] for _, msg in client.get_events(guard.poison_topic)}


def name_poison(client: distributed.Client, guard: RunGuard, info: FileInfo, reason: str) -> None:
    """Add ``info`` to the poison registry of ``guard``'s pass with ``reason`` (waits for the scheduler to take it)."""
    path = info.uri.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    client.log_event(guard.poison_topic, {"file": file_key(info), "reason": reason, "path": path})


def _name_timed_out(client: distributed.Client, guard: RunGuard, info: FileInfo, limit_s: float) -> None:
    reason = f"{TIMED_OUT}: still running after {limit_s:g} s, the per-file time limit (--file-timeout); its worker was ended"
    name_poison(client, guard, info, reason)


def spare_memory(worker: distributed.Worker) -> int | None:
    """Bytes one task thread of ``worker`` can still allocate before the nanny would kill the process (None: no limit)."""
    limit = worker.memory_manager.memory_limit
    if not limit:
        return None
    fraction = dask.config.get("distributed.worker.memory.terminate") or 1.0  # False: no kill, the limit still stands
    free = int(limit * fraction) - psutil.Process().memory_info().rss
    return max(0, free) // max(1, worker.state.nthreads)


class Isolation:
    """Decides what to submit again when a shard's worker died (see the module docstring)."""

    def __init__(self, client: distributed.Client, guard: RunGuard, fingerprint: str) -> None:
        self._client, self._guard, self._fingerprint = client, guard, fingerprint
        self._acted_on: set[str] = set()  # registry keys a resubmission already answered
        self._deaths_alone: Counter[str] = Counter()
        self._dead_workers: set[str] = set()  # since a shard last completed

    def completed(self) -> None:
        """A shard task finished: the workers can do work."""
        self._dead_workers.clear()

    def after_death(self, shard: Shard, future: PrefectFuture[Any], error: BaseException) -> list[Shard]:
        """The shards to submit because ``shard``'s worker died (``error``, a ``KilledWorker``).

        Raises:
            RunError: when more than ``MAX_WORKER_DEATHS`` workers died with no shard completing.
        """
        logger = get_run_logger()
        _mark_crashed(future, f"worker died: {type(error).__name__}; the shard is run again to isolate the file")
        self._dead_workers.add(str(getattr(getattr(error, "last_worker", None), "address", error)))
        if len(self._dead_workers) > MAX_WORKER_DEATHS:
            raise RunError(
                f"{len(self._dead_workers)} workers died and no shard completed meanwhile: not a poison file but the "
                "workers (too little memory for the job? a broken install?); see the Dask worker logs"
            )
        if not self._begun(future):
            logger.warning("shard %s: its worker died before it began; running it again", shard.shard_id)
            return [shard]
        registry = poison_registry(self._client, self._guard)
        named = {key for info in shard.files if (key := file_key(info)) in registry} - self._acted_on
        if named:
            self._acted_on |= named
            logger.warning(
                "shard %s (%d files): its worker ended on a file now named poison (%s); running the shard again",
                shard.shard_id,
                len(shard.files),
                "; ".join(sorted({registry[key] for key in named})),
            )
            return [shard]
        if len(shard.files) == 1:
            self._died_alone(shard.files[0])
            return [shard]
        halves = split_shard(shard, fingerprint=self._fingerprint)
        logger.warning(
            "shard %s (%d files): its worker died; running it again as shards of %s files to find the file",
            shard.shard_id,
            len(shard.files),
            " and ".join(str(len(half.files)) for half in halves),
        )
        return halves

    def _died_alone(self, info: FileInfo) -> None:
        key = file_key(info)
        self._deaths_alone[key] += 1
        if self._deaths_alone[key] < 2:
            get_run_logger().warning("%s alone: its worker died; running it once more", info.uri)
            return
        self._acted_on.add(key)
        reason = f"{WORKER_DIED}: its worker process ended twice while working on it alone"
        name_poison(self._client, self._guard, info, reason)
        get_run_logger().warning("%s killed its worker twice on its own: recorded as %r", info.uri, WORKER_DIED)

    def _begun(self, future: PrefectFuture[Any]) -> bool:
        begun = {msg.get("task_run") for _, msg in self._client.get_events(self._guard.begun_topic)}
        return str(future.task_run_id) in begun


def _mark_crashed(future: PrefectFuture[Any], message: str) -> None:
    # The task's engine died with the worker and left its task run Running in the Prefect API.
    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_state(future.task_run_id, Crashed(message=message), force=True)
    except Exception:  # noqa: BLE001  (the API's view is cosmetic here: the run goes on)
        get_run_logger().debug("could not mark task run %s crashed", future.task_run_id, exc_info=True)
