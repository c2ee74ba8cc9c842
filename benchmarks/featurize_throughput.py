"""`ser-batch featurize --feature-set seed268` vs the original per-file recipe, same files, same cores.

Usage: python benchmarks/featurize_throughput.py [SOURCE] [--workers 2]

Both sides are measured in one run on the same machine:
- recipe: a multiprocessing pool of N processes (one BLAS thread each, numba warmed up
  before the clock starts), calling the recipe on every file;
- ser-batch: the CLI end to end in a subprocess (Prefect API, LocalCluster start-up,
  cataloguing, featurizing, Parquet writing), into an empty DEST.
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
import time
from pathlib import Path

import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_baseline import init_worker, recipe_features  # noqa: E402

from ser_batch.storage import list_files  # noqa: E402

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", nargs="?", default=str(DEFAULT_SOURCE))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    files = [info.uri for info in list_files(args.source)]
    audio_s = sum(soundfile.info(path).duration for path in files)

    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=init_worker) as pool:
        started = time.perf_counter()
        pool.map(recipe_features, files, chunksize=16)
        recipe_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as dest:
        command = [str(Path(sys.executable).parent / "ser-batch"), "featurize", args.source, dest,
                   "--feature-set", "seed268", "--n-workers", str(args.workers), "--json"]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        ours_s = time.perf_counter() - started
        summary = json.loads(result.stdout.strip().splitlines()[-1])

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {len(files)} files, {audio_s / 60:.1f} min of audio; {args.workers} workers")
    print(f"{'pipeline':<44}{'wall s':>9}{'clips/s':>9}{'audio s/s':>11}")
    print(f"{'original recipe, per file, ' + str(args.workers) + ' processes (warm)':<44}{recipe_s:>9.1f}{len(files) / recipe_s:>9.1f}{audio_s / recipe_s:>11.0f}")
    print(f"{'ser-batch featurize CLI, end to end':<44}{ours_s:>9.1f}{len(files) / ours_s:>9.1f}{audio_s / ours_s:>11.0f}")
    print(f"{'  of which the flow itself (after API start)':<44}{summary['wall_s']:>9.1f}{summary['clips_per_s']:>9.1f}{summary['audio_s_per_s']:>11.0f}")
    print(f"rows featurized {summary['featurized']}, failed {summary['failed']}")


if __name__ == "__main__":
    main()
