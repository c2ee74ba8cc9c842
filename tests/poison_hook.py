"""Test-only Dask worker preload: this worker process fails on marked files the way poison files make workers fail.

Loaded only by test fixtures (``dask worker --preload tests/poison_hook.py``, ``LocalCluster(preload=...)``);
ser-batch ships no such hook. When a file whose path contains one of these markers is opened for decoding:

- ``poison-segv``: the process segfaults (a decoder crash);
- ``poison-hang``: the call never returns (a stuck decoder; the GIL is released, as in libsndfile's calls);
- ``poison-augment``: the process segfaults, but only while the clip's augmented copies are made;
- ``die-once``: the process segfaults the first time only (a worker lost to something else);
- ``flaky-read``: the first open raises a transient ``OSError`` (EIO), later ones succeed.

Each time such a file is opened, its path is appended to ``$SER_BATCH_TEST_POISON_LOG`` first.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile

HOOK = Path(__file__).resolve()
"""This file, for ``--preload`` and ``LocalCluster(preload=...)``."""


@dataclass
class HookedCluster:
    """A Dask cluster whose workers preload this hook."""

    address: str
    hits: Path  # every open of a marked file, one path a line ($SER_BATCH_TEST_POISON_LOG)

    def hit_counts(self, under: Path) -> dict[str, int]:
        """How often each marked file under ``under`` was opened, by file name."""
        lines = [
            line
            for line in (self.hits.read_text().splitlines() if self.hits.exists() else [])
            if line.startswith(f"{under}/")
        ]
        return {Path(line).name: lines.count(line) for line in dict.fromkeys(lines)}


MARKERS = ("poison-segv", "poison-hang", "poison-augment", "die-once", "flaky-read")


def dask_setup(worker: Any) -> None:  # noqa: ARG001  (Dask's preload entry point)
    opened = soundfile.SoundFile.__init__

    def open_or_fail(self: soundfile.SoundFile, file: Any, *args: Any, **kwargs: Any) -> None:
        path = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else str(file)
        marker = next((m for m in MARKERS if m in path), None)
        if marker is not None and (marker != "poison-augment" or _making_copies()):
            log = Path(os.environ["SER_BATCH_TEST_POISON_LOG"])
            first = path not in (log.read_text().splitlines() if log.exists() else [])
            with log.open("a") as handle:
                handle.write(f"{path}\n")
            if marker == "poison-hang":
                time.sleep(3600)
            if marker == "flaky-read" and first:
                raise OSError(errno.EIO, "injected transient I/O error", path)
            if marker in ("poison-segv", "poison-augment") or (marker == "die-once" and first):
                ctypes.string_at(0)  # SIGSEGV
        opened(self, file, *args, **kwargs)

    soundfile.SoundFile.__init__ = open_or_fail  # type: ignore[method-assign]


def _making_copies() -> bool:
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "augment_files":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False
