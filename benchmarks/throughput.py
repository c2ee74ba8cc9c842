"""Throughput, scaling, overhead and memory of seed268 featurization against the original recipe.

Usage: python benchmarks/throughput.py [--source DIR] [--copies 2] [--rows steady,e2e,overhead,scaling,catalogue]

Every row runs on this machine in one invocation. The archive is ser-dev linked ``--copies``
times under distinct paths (2 copies = 5,272 files). The recipe always gets one BLAS thread per
process and a numba warm-up before its clock starts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_baseline import init_worker, recipe_features, recipe_features_warm  # noqa: E402

from flows.runner import _keep_glibc_malloc_defaults  # noqa: E402
from ser_batch import storage, store  # noqa: E402
from ser_batch.batch import featurize_files, featurize_shard  # noqa: E402
from ser_batch.config import feature_config  # noqa: E402
from ser_batch.plan import plan_shards  # noqa: E402

SEED = feature_config("seed268")
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"
CLI = str(Path(sys.executable).parent / "ser-batch")


def linked_archive(source: Path, copies: int, root: Path) -> list[str]:
    files = [Path(info.uri) for info in storage.list_files(str(source))]
    for copy in range(copies):
        for path in files:
            target = root / f"copy{copy}" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return [info.uri for info in storage.list_files(str(root))]


class PeakRss:
    """Samples the summed RSS of a process tree every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cli_featurize(source: str, dest: str, n_workers: int) -> tuple[float, dict, int]:
    started = time.perf_counter()
    proc = subprocess.Popen([CLI, "featurize", source, dest, "--feature-set", "seed268", "--n-workers", str(n_workers), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    with PeakRss(proc.pid) as memory:
        out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"ser-batch featurize exited {proc.returncode}")
    return time.perf_counter() - started, json.loads(out.strip().splitlines()[-1]), memory.peak


def row_steady(files: list[str], rows: list[tuple[str, ...]]) -> None:
    sample = files[:: max(1, len(files) // 400)]
    infos = [storage.FileInfo(path, 0, "0") for path in sample]
    with threadpool_limits(limits=1):
        recipe_features_warm()
        featurize_files(infos[:2], SEED)
        started = time.perf_counter()
        expected = np.stack([recipe_features(path) for path in sample])
        recipe_s = time.perf_counter() - started
        started = time.perf_counter()
        table, _ = featurize_files(infos, SEED)
        ours_s = time.perf_counter() - started
    actual = np.stack(table.column("features").to_numpy(zero_copy_only=False))
    identical = np.allclose(actual, expected, rtol=1e-5, atol=1e-6)
    rows.append(("seed268 steady state, 1 core (decode + features)", f"{len(sample) / ours_s:.1f} clips/s",
                 f"recipe {len(sample) / recipe_s:.1f} clips/s", f"{recipe_s / ours_s:.2f}x; outputs equal: {identical}", ">= 3x"))  # fmt: skip


def row_e2e(archive: str, files: list[str], rows: list[tuple[str, ...]]) -> None:
    with multiprocessing.get_context("spawn").Pool(2, initializer=init_worker) as pool:
        started = time.perf_counter()
        pool.map(recipe_features, files, chunksize=16)
        recipe_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as dest:
        ours_s, summary, peak = cli_featurize(archive, dest, 2)
    rows.append((f"featurize CLI end to end, {len(files)} clips, 2 workers", f"{ours_s:.1f} s", f"recipe {recipe_s:.1f} s",
                 f"{ours_s / recipe_s:.2f}x the recipe's wall time", "<= 0.5x"))  # fmt: skip
    rows.append(("peak memory of the whole run (all processes)", f"{peak / 2**30:.2f} GiB", "", f"{summary['featurized']} files", "< 3 GiB"))


def row_overhead(files: list[str], rows: list[tuple[str, ...]]) -> None:
    from distributed import Client, LocalCluster

    infos = [storage.FileInfo(path, 0, str(i)) for i, path in enumerate(files)]
    shards = plan_shards(infos, store.DoneIndex({}, set()), fingerprint=SEED.fingerprint(), shard_size=200).shards
    _keep_glibc_malloc_defaults()  # the same worker environment the flow's LocalCluster gets
    started = time.perf_counter()  # like the flow's wall time: cluster start-up included
    with tempfile.TemporaryDirectory() as dest, LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.gather(client.map(featurize_shard, shards, dest=dest, config=SEED, pure=False))
        plain_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as source, tempfile.TemporaryDirectory() as dest:
        for i, path in enumerate(files):
            os.symlink(path, Path(source) / f"{i:06d}{Path(path).suffix}")
        _, summary, _ = cli_featurize(source, dest, 2)
    rows.append((f"orchestration overhead, {len(files)} clips, 2 workers", f"flow {summary['wall_s']:.1f} s",
                 f"plain Dask loop {plain_s:.1f} s", f"{100 * (summary['wall_s'] / plain_s - 1):+.0f}% (both incl. cluster start)", "<= 10%"))  # fmt: skip


def row_scaling(archive: str, rows: list[tuple[str, ...]]) -> None:
    walls = {}
    for n_workers in (1, 2):
        with tempfile.TemporaryDirectory() as dest:
            _, summary, _ = cli_featurize(archive, dest, n_workers)
            walls[n_workers] = summary["wall_s"]
    rows.append(("1 -> 2 workers (flow wall time)", f"{walls[1] / walls[2]:.2f}x", f"1: {walls[1]:.1f} s", f"2: {walls[2]:.1f} s", ">= 1.8x"))


def row_catalogue(n_files: int, rows: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        for i in range(n_files):
            folder = Path(root) / f"{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir()
            (folder / f"{i:06d}.wav").write_bytes(b"x")
        rss_before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        plan = plan_shards(storage.list_files(root), store.DoneIndex({}, set()), fingerprint=SEED.fingerprint(), shard_size=200)
        elapsed = time.perf_counter() - started
        grown = psutil.Process().memory_info().rss - rss_before
    rows.append((f"catalogue + plan {n_files} local files", f"{elapsed:.1f} s", f"+{grown / 2**20:.0f} MiB RSS", f"{len(plan.shards)} shards", "< 60 s, < 1 GiB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--rows", default="steady,e2e,overhead,scaling,catalogue")
    parser.add_argument("--catalogue-files", type=int, default=100_000)
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as root:
        files = linked_archive(Path(args.source), args.copies, Path(root))
        if "steady" in wanted:
            row_steady(files, rows)
        if "e2e" in wanted:
            row_e2e(root, files, rows)
        if "overhead" in wanted:
            row_overhead(files, rows)
        if "scaling" in wanted:
            row_scaling(root, rows)
    if "catalogue" in wanted:
        row_catalogue(args.catalogue_files, rows)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; python {platform.python_version()}")
    print("| what | ser-batch | baseline | result | goal |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
