"""Throughput, scaling, overhead and memory of seed268 featurization against the original recipe.

Usage: python benchmarks/throughput.py [--source DIR] [--copies 2] [--repeats 2]
                                      [--rows steady,e2e,overhead,scaling,catalogue,scoring,hour,s3catalogue,flatness]

Every row runs on this machine in one invocation. The archive is ser-dev linked ``--copies``
times under distinct paths (2 copies = 5,272 files). The recipe always gets one BLAS thread per
process and a numba warm-up before its clock starts.

The development machine is shared, so every comparison is interleaved: the steady row alternates
the two sides every 10 clips, the other rows alternate whole runs ``--repeats`` times; each row
reports medians and the median of the paired ratios. The scoring, one-hour, S3-catalogue and
memory-flatness rows come from ``throughput_scale.py`` (run in its own process), in one table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_memory import PeakRss, run_measured  # noqa: E402
from recipe_baseline import init_worker, recipe_features, recipe_features_warm  # noqa: E402

from ser_batch import shards, storage  # noqa: E402
from ser_batch.config import feature_config  # noqa: E402
from ser_batch.jobs.featurize import featurize_files  # noqa: E402
from ser_batch.shards import plan_shards  # noqa: E402

SEED = feature_config("seed268")
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"
CLI = [sys.executable, "-m", "flows.cli"]  # this checkout's code (the ser-batch script may be another checkout's)
PLAIN = [sys.executable, str(Path(__file__).resolve().parent / "plain_loop.py")]
REPO = str(Path(__file__).resolve().parents[1])


def linked_archive(source: Path, copies: int, root: Path) -> list[str]:
    files = [Path(info.uri) for info in storage.list_files(str(source))]
    for copy in range(copies):
        for path in files:
            target = root / f"copy{copy}" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return [info.uri for info in storage.list_files(str(root))]


def cli_featurize(source: str, dest: str, n_workers: int) -> tuple[float, dict, PeakRss]:
    return run_measured(
        [*CLI, "featurize", source, dest, "--feature-set", "seed268", "--n-workers", str(n_workers), "--json"],
        pythonpath=REPO,
    )


def recipe_pool(files: list[str]) -> float:
    with multiprocessing.get_context("spawn").Pool(2, initializer=init_worker) as pool:
        started = time.perf_counter()
        pool.map(recipe_features, files, chunksize=16)
        return time.perf_counter() - started


def _max_relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = np.maximum(np.abs(expected), 1e-6)  # the parity tests' atol: below it a value counts as zero
    return float(np.max(np.abs(actual - expected) / scale))


def row_steady(files: list[str], rows: list[tuple[str, ...]]) -> None:
    sample = files[: len(files) // 2 : max(1, len(files) // 800)][:400]  # one copy of the archive, spread over it
    infos = [shards.FileInfo(path, 0, "0") for path in sample]
    times: dict[str, list[float]] = {"recipe": [], "ours": []}
    expected, actual = [], []
    with threadpool_limits(limits=1):
        recipe_features_warm()
        featurize_files(infos[:2], SEED)
        for i, start in enumerate(range(0, len(sample), 10)):
            chunk = infos[start : start + 10]
            for side in ("recipe", "ours") if i % 2 == 0 else ("ours", "recipe"):
                started = time.perf_counter()
                if side == "recipe":
                    expected.extend(recipe_features(info.uri) for info in chunk)
                else:
                    table, _ = featurize_files(chunk, SEED)
                    actual.extend(table.column("features").to_numpy(zero_copy_only=False))
                times[side].append(time.perf_counter() - started)
    recipe, ours = np.array(times["recipe"]), np.array(times["ours"])
    actual_matrix, expected_matrix = np.stack(actual), np.stack(expected)
    equal = np.allclose(actual_matrix, expected_matrix, rtol=1e-5, atol=1e-6)
    rows.append(
        (
            f"seed268 steady state, 1 core (decode + features), {len(sample)} clips interleaved",
            f"{len(sample) / ours.sum():.1f} clips/s",
            f"recipe {len(sample) / recipe.sum():.1f} clips/s",
            f"{np.median(recipe / ours):.2f}x (median of 10-clip pairs); equal to rtol 1e-5: {equal}, "
            f"max rel. diff {_max_relative_difference(actual_matrix, expected_matrix):.1e}",
            ">= 3x",
        )
    )


def cpu_note(what: str, runs: list[PeakRss]) -> str:
    """CPU-s per process role, median over runs, and the share of all CPU outside the Dask workers."""
    per_role: dict[str, list[float]] = {}
    outside = []
    for run in runs:
        roles = run.cpu_by_role()
        for role, seconds in roles.items():
            per_role.setdefault(role, []).append(sum(seconds) / len(seconds))
        total = sum(sum(seconds) for seconds in roles.values())
        outside.append(1 - sum(roles.get("Dask worker", [])) / total)
    parts = ", ".join(
        f"{role} {np.median(values):.1f}" for role, values in sorted(per_role.items(), key=lambda kv: -np.median(kv[1]))
    )
    return f"{what}: CPU-s per process (each, median of {len(runs)} runs): {parts}; {100 * np.median(outside):.0f}% of all CPU outside the workers"


def row_e2e(archive: str, files: list[str], rows: list[tuple[str, ...]], notes: list[str], repeats: int) -> None:
    recipe_s, ours_s, trees, summaries = [], [], [], []
    for _ in range(repeats):
        recipe_s.append(recipe_pool(files))
        with tempfile.TemporaryDirectory() as dest:
            wall, summary, tree = cli_featurize(archive, dest, 2)
        ours_s.append(wall), trees.append(tree), summaries.append(summary)
    ratios = np.array(ours_s) / np.array(recipe_s)
    rows.append(
        (
            f"featurize CLI end to end, {len(files)} clips, 2 workers ({repeats} alternating runs)",
            f"{np.median(ours_s):.1f} s",
            f"recipe {np.median(recipe_s):.1f} s",
            f"{np.median(ratios):.2f}x the recipe's wall time (runs: {', '.join(f'{r:.2f}' for r in ratios)})",
            "<= 0.5x",
        )
    )
    rows.append(
        (
            "peak memory of the whole run (all processes)",
            f"{max(t.peak for t in trees) / 2**30:.2f} GiB",
            "",
            f"{summaries[0]['featurized']} files",
            "< 3 GiB",
        )
    )
    notes.append(cpu_note("featurize CLI end to end", trees))


def row_overhead(files: list[str], rows: list[tuple[str, ...]], notes: list[str], repeats: int) -> None:
    flow_s, plain_s, plain_trees = [], [], []
    with tempfile.TemporaryDirectory() as source:
        for i, path in enumerate(files):
            os.symlink(path, Path(source) / f"{i:06d}{Path(path).suffix}")
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as dest:
                wall, _, tree = run_measured([*PLAIN, source, dest, "--n-workers", "2"], pythonpath=REPO)
            plain_s.append(wall), plain_trees.append(tree)
            with tempfile.TemporaryDirectory() as dest:
                flow_s.append(cli_featurize(source, dest, 2)[0])
    overhead = np.array(flow_s) / np.array(plain_s) - 1
    rows.append(
        (
            f"orchestration overhead, {len(files)} clips, 2 workers, whole processes ({repeats} alternating runs)",
            f"CLI (Prefect API + flow) {np.median(flow_s):.1f} s",
            f"plain Dask loop {np.median(plain_s):.1f} s",
            f"{100 * np.median(overhead):+.0f}% (runs: {', '.join(f'{100 * o:+.0f}%' for o in overhead)})",
            "<= 10%",
        )
    )
    notes.append(cpu_note("plain Dask loop", plain_trees))


def row_scaling(archive: str, rows: list[tuple[str, ...]], repeats: int) -> None:
    flow: dict[int, list[float]] = {1: [], 2: []}
    whole: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for n_workers in (1, 2):
            with tempfile.TemporaryDirectory() as dest:
                wall, summary, _ = cli_featurize(archive, dest, n_workers)
            flow[n_workers].append(summary["wall_s"]), whole[n_workers].append(wall)
    flow_ratio = np.median(np.array(flow[1]) / np.array(flow[2]))
    whole_ratio = np.median(np.array(whole[1]) / np.array(whole[2]))
    rows.append(
        (
            f"1 -> 2 workers ({repeats} alternating runs)",
            f"{flow_ratio:.2f}x flow wall time",
            f"1: {np.median(flow[1]):.1f} s, 2: {np.median(flow[2]):.1f} s",
            f"whole CLI process {whole_ratio:.2f}x ({np.median(whole[1]):.1f} s -> {np.median(whole[2]):.1f} s)",
            ">= 1.8x",
        )
    )


def row_catalogue(n_files: int, rows: list[tuple[str, ...]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        for i in range(n_files):
            folder = Path(root) / f"{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir()
            (folder / f"{i:06d}.wav").write_bytes(b"x")
        rss_before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        plan = plan_shards(
            storage.list_files(root), shards.DoneIndex({}), fingerprint=SEED.fingerprint(), shard_size=500
        )
        elapsed = time.perf_counter() - started
        grown = psutil.Process().memory_info().rss - rss_before
    rows.append(
        (
            f"catalogue + plan {n_files} local files",
            f"{elapsed:.1f} s",
            f"+{grown / 2**20:.0f} MiB RSS",
            f"{len(plan.shards)} shards",
            "< 60 s, < 1 GiB",
        )
    )


FEATURIZE_ROWS = ["steady", "e2e", "overhead", "scaling", "catalogue"]
SCALE_ROWS = ["scoring", "hour", "s3catalogue", "flatness"]  # measured by throughput_scale.py


def scale_rows(names: list[str]) -> list[tuple[str, ...]]:
    """Run throughput_scale.py's rows in a fresh process and return them in this table's columns."""
    if not names:
        return []
    script = Path(__file__).resolve().parent / "throughput_scale.py"
    out = subprocess.run(
        [sys.executable, str(script), "--rows", ",".join(names)], check=True, capture_output=True, text=True
    ).stdout
    cells = [
        line.strip("|").split(" | ")
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| what")
    ]
    return [(what.strip(), measured, "", met.strip(), goal) for what, measured, goal, met in cells]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--rows", default=",".join(FEATURIZE_ROWS + SCALE_ROWS))
    parser.add_argument("--catalogue-files", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per end-to-end comparison")
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as root:
        files = linked_archive(Path(args.source), args.copies, Path(root))
        if "steady" in wanted:
            row_steady(files, rows)
        if "e2e" in wanted:
            row_e2e(root, files, rows, notes, args.repeats)
        if "overhead" in wanted:
            row_overhead(files, rows, notes, args.repeats)
        if "scaling" in wanted:
            row_scaling(root, rows, args.repeats)
    if "catalogue" in wanted:
        row_catalogue(args.catalogue_files, rows)
    rows.extend(scale_rows([name for name in SCALE_ROWS if name in wanted]))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; python {platform.python_version()}; "
        f"load average at the end {os.getloadavg()[0]:.1f} (shared machine: compare ratios, not absolute times)"
    )
    print("| what | ser-batch | baseline | result | goal |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
