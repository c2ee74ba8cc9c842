"""What a worker allows each file of a shard: poison verdicts, a memory budget and a time limit (IO driver support).

A file can hurt the process working on it in ways no exception reports: its decoding needs more
memory than the worker has (a Dask nanny then kills the process), or a decoder crashes the
process or never returns. The job drivers (``featurize_files``, ``augment_files``,
``score_files``) take a ``FileGuard`` from their caller, which knows the process they run in:

- ``poisoned``: files that already ended a worker in this run. They get an error row
  (``PoisonFileError`` with the recorded reason) instead of another try.
- ``free_memory``: what this worker can still spare, asked before each step. A file whose
  decoding (estimated from its header) or features would need more is refused as
  ``too large to decode in memory`` before it is decoded or featurized.
- ``time_limit_s``: how long one file may take. Code stuck in C cannot be interrupted, only its
  process ended, so the watchdog ends the process: a Python thread first calls
  ``on_time_limit`` (to say which file overran) and then ``os._exit(EXIT_TIMED_OUT)``. If the
  stuck code holds the GIL, that thread never runs, and ``faulthandler``'s C thread, which
  needs no GIL, ends the process ``backstop_s`` later (then nobody is told why).
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from ser_batch.errors import PoisonFileError
from ser_batch.shards import FileInfo
from ser_batch.storage.audio import too_large_error

WORKER_DIED = "worker died"
"""How the recorded reason of a file whose worker process ended while working on it alone begins."""

TIMED_OUT = "timed out"
"""How the recorded reason of a file that overran the per-file time limit begins."""

BACKSTOP_S = 10.0
"""After the time limit, how long faulthandler waits before it ends a process whose Python watchdog could not."""

EXIT_TIMED_OUT = 124
"""Exit status of a process ended by the watchdog (as coreutils ``timeout``)."""


@dataclass(frozen=True)
class FileGuard:
    """What one worker process allows each file: see the module docstring. The defaults allow everything.

    Attributes:
        poisoned: ``(path, content_key) -> reason`` of files not to try again.
        free_memory: returns the bytes this process can still allocate (for one file at a time);
            None leaves memory unchecked.
        time_limit_s: seconds one file may take; None sets no limit.
        on_time_limit: called with the file and the limit from the watchdog thread just before it
            ends the process; it should return within ``backstop_s``.
        backstop_s: seconds after the limit at which faulthandler ends the process regardless.
    """

    poisoned: Mapping[tuple[str, str], str] = field(default_factory=dict)
    free_memory: Callable[[], int | None] | None = None
    time_limit_s: float | None = None
    on_time_limit: Callable[[FileInfo, float], object] | None = None
    backstop_s: float = BACKSTOP_S

    def verdict(self, info: FileInfo) -> PoisonFileError | None:
        """The error to record for ``info`` instead of processing it, or None to process it."""
        reason = self.poisoned.get((info.uri, info.content_key))
        return None if reason is None else PoisonFileError(reason)

    def free_bytes(self) -> int | None:
        """Bytes this process can still allocate now, or None if unchecked."""
        return None if self.free_memory is None else self.free_memory()

    def check_memory(self, needed_bytes: int, what: str) -> None:
        """Refuse a step that would need ``needed_bytes`` (``what`` it is for) when this worker cannot spare them.

        Raises:
            AudioError: ``too large to decode in memory: ...``.
        """
        free = self.free_bytes()
        if free is not None and needed_bytes > free:
            raise too_large_error(needed_bytes, free, what)

    @contextmanager
    def watch(self, info: FileInfo) -> Iterator[None]:
        """Run the body under the time limit: past it, the process ends (see the module docstring)."""
        if self.time_limit_s is None:
            yield
            return
        with _WATCHDOG.watch(info, self.time_limit_s, self.on_time_limit, self.backstop_s):
            yield


NO_GUARD = FileGuard()
"""Processes every file, with no memory or time limit: the library run in-process."""


@dataclass(frozen=True)
class _Watched:
    info: FileInfo
    limit_s: float
    deadline: float  # time.monotonic()
    on_time_limit: Callable[[FileInfo, float], object] | None
    backstop_s: float


class _Watchdog:
    """One per process: a thread that ends the process when a watched file overruns, and faulthandler behind it."""

    def __init__(self) -> None:
        self._pid = -1
        self._tokens = itertools.count()

    def _start_in_this_process(self) -> None:
        # First use in this process (a forked child has no watchdog thread and no files of its parent's to watch).
        self._pid = os.getpid()
        self._lock = threading.Condition()
        self._watched: dict[int, _Watched] = {}
        threading.Thread(target=self._run, name="ser-batch-watchdog", daemon=True).start()

    @contextmanager
    def watch(
        self,
        info: FileInfo,
        limit_s: float,
        on_time_limit: Callable[[FileInfo, float], object] | None,
        backstop_s: float,
    ) -> Iterator[None]:
        if self._pid != os.getpid():
            self._start_in_this_process()
        token = next(self._tokens)
        with self._lock:
            self._watched[token] = _Watched(info, limit_s, time.monotonic() + limit_s, on_time_limit, backstop_s)
            self._arm_backstop()
            self._lock.notify()
        try:
            yield
        finally:
            with self._lock:
                del self._watched[token]
                self._arm_backstop()

    def _arm_backstop(self) -> None:
        # faulthandler has one timer per process: armed for the earliest backstop of all watched files.
        if not self._watched:
            faulthandler.cancel_dump_traceback_later()
            return
        end = min(watched.deadline + watched.backstop_s for watched in self._watched.values())
        faulthandler.dump_traceback_later(max(end - time.monotonic(), 0.001), exit=True, file=2)

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                overdue = [watched for watched in self._watched.values() if watched.deadline <= now]
                if overdue:
                    break
                next_deadline = min((watched.deadline for watched in self._watched.values()), default=None)
                self._lock.wait(None if next_deadline is None else next_deadline - now)
        try:
            for watched in overdue:
                if watched.on_time_limit is not None:
                    watched.on_time_limit(watched.info, watched.limit_s)
        finally:
            os._exit(EXIT_TIMED_OUT)


_WATCHDOG = _Watchdog()
