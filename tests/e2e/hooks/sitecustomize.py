"""Fault hooks for end-to-end tests, loaded by every Python process of a run (the CLI, its Dask workers)
whose PYTHONPATH holds this folder. Nothing in ser-batch knows about this file.

Inactive unless ``SER_BATCH_TEST_FAULT`` is set. Once at least ``SER_BATCH_TEST_FAULT_AFTER`` part
files are published under ``SER_BATCH_TEST_FAULT_DEST``:

- ``hold``: a process about to publish the next part file (``os.replace`` of its hidden temporary
  onto ``part-*.parquet``) writes a marker into ``SER_BATCH_TEST_FAULT_REPORT`` and blocks for
  good, caught between writing a part file and naming it, where a test can kill it.
- ``disk-full``: syncing any file under DEST fails with ``ENOSPC``, as on a full disk.

``migrations-meet``: two runs' temporary Prefect API servers migrating PREFECT_HOME's database at
the same time fail, as they can after an upgrade (``duplicate column name``), and are made to try:
a server (a uvicorn process serving Prefect's app) holds its migration until a second server has
started, or a run is found waiting for PREFECT_HOME's boot lock (at most 60 s), and a migration
that overlaps another one fails. Markers go into ``SER_BATCH_TEST_FAULT_REPORT``.
"""

from __future__ import annotations

import errno
import os
import sys
import time

_FAULT = os.environ.get("SER_BATCH_TEST_FAULT")


def _n_published() -> int:
    dest = os.environ["SER_BATCH_TEST_FAULT_DEST"]
    return sum(
        name.startswith("part-") and name.endswith(".parquet") for _, _, names in os.walk(dest) for name in names
    )


def _due() -> bool:
    return _n_published() >= int(os.environ.get("SER_BATCH_TEST_FAULT_AFTER", "0"))


if _FAULT == "hold":
    _real_replace = os.replace

    def _held_replace(source, target, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = os.path.basename(os.fsdecode(target))
        if name.startswith("part-") and name.endswith(".parquet") and _due():
            marker = os.path.join(os.environ["SER_BATCH_TEST_FAULT_REPORT"], f"held-{os.getpid()}")
            with open(f"{marker}.partial", "w") as handle:
                handle.write(f"{os.fsdecode(source)}\n{os.fsdecode(target)}\n")
            _real_replace(f"{marker}.partial", marker)
            while True:
                time.sleep(3600)
        return _real_replace(source, target, *args, **kwargs)

    os.replace = _held_replace

elif _FAULT == "disk-full":
    _real_fsync = os.fsync

    def _full_fsync(fd):  # type: ignore[no-untyped-def]
        path = os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}")
        if path.startswith(os.environ["SER_BATCH_TEST_FAULT_DEST"].rstrip("/") + "/") and _due():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _real_fsync(fd)

    os.fsync = _full_fsync

elif _FAULT == "migrations-meet":
    import fcntl

    _report = os.environ["SER_BATCH_TEST_FAULT_REPORT"]
    _real_flock = fcntl.flock

    def _marked(prefix: str) -> list[str]:
        return [name for name in os.listdir(_report) if name.startswith(prefix)]

    def _flock(fd, operation):  # type: ignore[no-untyped-def]
        try:
            return _real_flock(fd, operation)
        except BlockingIOError:
            path = os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}")
            if path.endswith(".ser-batch-api-boot.lock"):
                open(os.path.join(_report, f"waiting-{os.getpid()}"), "w").close()
            raise

    fcntl.flock = _flock

    if any("prefect.server.api.server" in arg for arg in sys.argv):
        import alembic.command

        open(os.path.join(_report, f"server-{os.getpid()}"), "w").close()
        _real_upgrade = alembic.command.upgrade

        def _upgrade_together(*args, **kwargs):  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + 60
            while len(_marked("server-")) < 2 and not _marked("waiting-") and time.monotonic() < deadline:
                time.sleep(0.05)
            mine = os.path.join(_report, f"migrating-{os.getpid()}")
            open(mine, "w").close()
            try:
                if len(_marked("migrating-")) > 1:
                    raise RuntimeError("another server is migrating this database at the same time")
                return _real_upgrade(*args, **kwargs)
            finally:
                os.remove(mine)

        alembic.command.upgrade = _upgrade_together
