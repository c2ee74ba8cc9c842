"""One writer per DEST: a lease file taken before planning, renewed while the run lasts, released at its end (IO).

``DEST/_ser_batch/lease.json`` names its holder (job, host, pid, run start) and an expiry.
It is created only if absent (``files.create_exclusive``: ``O_EXCL`` locally, a PUT with
``If-None-Match: *`` on S3), renewed by a heartbeat thread every third of its time to live
with a compare-and-swap on its version (``If-Match`` on S3), and deleted on release. A lease
past its expiry belongs to a run that died: the next run takes it over with the same
compare-and-swap, so of two runs taking it over at once exactly one succeeds. So does a
lease whose holder ran on this machine (same kernel boot and process namespace) and whose
process is gone: a run killed with SIGKILL blocks nobody.

Expiry is compared with this host's clock: hosts sharing a DEST need clocks that agree to
well within the time to live (NTP does).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ser_batch.errors import LeaseError
from ser_batch.storage import files

LEASE_PATH = "_ser_batch/lease.json"
"""Where a DEST's lease lives, relative to DEST."""

DEFAULT_TTL_S = 300.0
"""A lease's time to live (s): how long a crashed run blocks its DEST at most."""

_POLL_S = 5.0  # how often a waiting run looks at the lease again

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseRecord:
    """What a lease file says: who holds DEST, since when, until when (POSIX seconds, UTC)."""

    holder: str  # a random id of the holding run
    job: str  # featurize, score
    host: str
    pid: int
    started_at: float
    expires_at: float
    processes: str = ""  # this machine's boot and pid namespace (Linux), where ``pid`` means something

    def is_dead(self, now: float) -> bool:
        """Whether the holder is gone: its lease expired, or its process no longer exists on this machine."""
        if self.expires_at <= now:
            return True
        if not self.processes or self.processes != _processes():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def describe(self) -> str:
        """One line naming the holder, e.g. ``a score run on host h (pid 42) since 2026-11-24 02:00:00 UTC``."""
        return (
            f"a {self.job} run on host {self.host} (pid {self.pid}) since {_utc(self.started_at)}, "
            f"its lease expiring at {_utc(self.expires_at)}"
        )


def lease_uri(dest: str) -> str:
    """The lease file of ``dest``."""
    return files.join(dest, LEASE_PATH)


def read_lease(dest: str, *, storage_options: dict[str, Any] | None = None) -> LeaseRecord | None:
    """The lease on ``dest`` as stored, expired or not; None when there is none."""
    found = files.read_versioned(lease_uri(dest), storage_options=storage_options)
    return None if found is None else _parse(found[0])


def check_lease_free(dest: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Fail fast, before any work, when another run holds a live lease on ``dest``.

    Raises:
        LeaseError: naming the holder.
    """
    record = read_lease(dest, storage_options=storage_options)
    if record is not None and not record.is_dead(time.time()):
        raise LeaseError(_held_message(dest, record))


class Lease:
    """A lease this run holds on DEST, renewed by a heartbeat thread until ``release``."""

    def __init__(
        self,
        uri: str,
        record: LeaseRecord,
        version: str,
        *,
        ttl_s: float,
        storage_options: dict[str, Any] | None,
        clock: Callable[[], float],
    ) -> None:
        self.uri, self.record, self.version = uri, record, version
        self.ttl_s, self.storage_options, self.clock = ttl_s, storage_options, clock
        self.lost_reason: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="ser-batch-lease", daemon=True)

    def start(self) -> None:
        """Start the heartbeat."""
        self._thread.start()

    def renew(self) -> bool:
        """Extend the lease by its time to live; False (and ``lost_reason`` set) when it is no longer this run's."""
        with self._lock:
            if self.lost_reason is not None:
                return False
            record = replace(self.record, expires_at=self.clock() + self.ttl_s)
            version = files.replace_versioned(
                self.uri, _dump(record), self.version, storage_options=self.storage_options
            )
            if version is None:
                self.lost_reason = "another run took it over or removed it"
                return False
            self.record, self.version = record, version
            return True

    def check(self) -> None:
        """Raise unless this run still holds its lease: call before changing what other runs rely on.

        Raises:
            LeaseError: if the lease was taken over, removed, or could not be renewed before it expired.
        """
        if self.lost_reason is None and self.record.expires_at <= self.clock():
            self.lost_reason = "it expired before it could be renewed"
        if self.lost_reason is not None:
            raise LeaseError(f"this run lost its lease on {self.uri}: {self.lost_reason}")

    def release(self) -> None:
        """Stop the heartbeat and delete the lease file if it is still this run's."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            if self.lost_reason is None:
                files.remove_versioned(self.uri, self.version, storage_options=self.storage_options)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.renew():
                    _log.error("lease %s lost: %s", self.uri, self.lost_reason)
                    return
            except Exception as error:  # noqa: BLE001  (a transient storage error: try again at the next beat)
                _log.warning("could not renew lease %s: %s", self.uri, error)


@contextmanager
def hold_lease(
    dest: str,
    *,
    job: str,
    wait_s: float = 0.0,
    ttl_s: float = DEFAULT_TTL_S,
    storage_options: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease]:
    """Hold the lease on ``dest`` for the block: take it (or an expired one), renew it, release it.

    Args:
        dest: local folder or ``s3://`` prefix.
        job: what the run does (``featurize``, ``score``), for the holder's description.
        wait_s: how long to wait for another run's live lease before giving up (s, >= 0).
        ttl_s: the lease's time to live (s, > 0); it is renewed every third of that.
        storage_options: fsspec options for a remote DEST.
        clock: POSIX time now (tests pass a fake one).
        sleep: waits between looks at another run's lease (tests pass a hook).

    Yields:
        The held lease; ``Lease.check`` tells whether it is still held.

    Raises:
        LeaseError: if another run holds a live lease after ``wait_s``, naming it.
        StorageError: if DEST cannot be read or written.
    """
    uri = lease_uri(dest)
    lease = _acquire(
        dest, uri, job, wait_s=wait_s, ttl_s=ttl_s, storage_options=storage_options, clock=clock, sleep=sleep
    )
    lease.start()
    try:
        yield lease
    finally:
        lease.release()


def _acquire(
    dest: str,
    uri: str,
    job: str,
    *,
    wait_s: float,
    ttl_s: float,
    storage_options: dict[str, Any] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Lease:
    started = clock()
    deadline = started + max(wait_s, 0.0)
    ours = LeaseRecord(uuid.uuid4().hex, job, socket.gethostname(), os.getpid(), started, started + ttl_s, _processes())
    with files.storage_errors(dest):
        while True:
            ours = replace(ours, expires_at=clock() + ttl_s)
            version = files.create_exclusive(uri, _dump(ours), storage_options=storage_options)
            if version is not None:
                return Lease(uri, ours, version, ttl_s=ttl_s, storage_options=storage_options, clock=clock)
            found = files.read_versioned(uri, storage_options=storage_options)
            if found is None:
                continue  # released between the two requests
            holder = _parse(found[0])
            if holder is None or holder.is_dead(clock()):
                version = files.replace_versioned(uri, _dump(ours), found[1], storage_options=storage_options)
                if version is not None:
                    gone = holder.describe() if holder is not None else "an unreadable holder"
                    _log.warning("took over the lease on %s of %s, which is gone", dest, gone)
                    return Lease(uri, ours, version, ttl_s=ttl_s, storage_options=storage_options, clock=clock)
                continue  # another run took it over first: look again
            if clock() >= deadline:
                raise LeaseError(_held_message(dest, holder))
            _log.warning("waiting for %s to release %s", holder.describe(), dest)
            sleep(min(_POLL_S, deadline - clock()))


def _held_message(dest: str, holder: LeaseRecord) -> str:
    return (
        f"{dest} is in use by {holder.describe()}; one run writes a DEST at a time: "
        "wait for it, or pass --lease-wait-s to wait (a crashed run's lease expires by itself)"
    )


def _dump(record: LeaseRecord) -> bytes:
    return json.dumps({**asdict(record), "expires": _utc(record.expires_at)}, indent=1).encode()


def _parse(data: bytes) -> LeaseRecord | None:
    try:
        values = json.loads(data)
        return LeaseRecord(
            holder=str(values["holder"]),
            job=str(values["job"]),
            host=str(values["host"]),
            pid=int(values["pid"]),
            started_at=float(values["started_at"]),
            expires_at=float(values["expires_at"]),
            processes=str(values.get("processes", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a lease file cut short by a crash: no live holder


def _processes() -> str:
    # a pid names a process only within one boot of one kernel and one pid namespace
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
