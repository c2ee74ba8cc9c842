"""Peak resident memory and CPU time of a process tree, sampled in the background (shared by the benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import psutil


class PeakRss:
    """Samples the summed RSS of a process and all its children every 50 ms, and each one's CPU time.

    ``cpu_s`` maps each process seen to ``(role, user + system seconds)`` as last sampled
    (a process's final 50 ms may be missed).
    """

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.cpu_s: dict[int, tuple[str, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                processes = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in processes))
                for process in processes:
                    times = process.cpu_times()
                    self.cpu_s[process.pid] = (self._role(process), times.user + times.system)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def _role(self, process: psutil.Process) -> str:
        known = self.cpu_s.get(process.pid)
        if known is not None:
            return known[0]
        command = " ".join(process.cmdline())
        if process.pid == self.pid:
            return "main process"
        if "uvicorn" in command:
            return "Prefect API server"
        if "forkserver" in command:  # workers are forked from the forkserver: same command line
            return "forkserver" if process.ppid() == self.pid else "Dask worker"
        if "resource_tracker" in command:
            return "resource tracker"
        return "other"

    def cpu_by_role(self) -> dict[str, list[float]]:
        """CPU seconds of each process, grouped by role."""
        roles: dict[str, list[float]] = {}
        for role, seconds in self.cpu_s.values():
            roles.setdefault(role, []).append(seconds)
        return roles

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(command: list[str], *, pythonpath: str) -> tuple[float, dict, PeakRss]:
    """Run a command that prints a JSON summary last, with ``pythonpath`` first on its path.

    Returns its wall time, the summary and its process tree's sampled memory and CPU.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    with PeakRss(proc.pid) as tree:
        out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{command} exited {proc.returncode}")
    return time.perf_counter() - started, json.loads(out.strip().splitlines()[-1]), tree
