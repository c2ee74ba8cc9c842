"""Reproduce the original recipe on ser-dev: seed268 features, seed-mlp, random and speaker splits.

Usage: python benchmarks/recipe_reproduction.py [--source DIR] [--dest DIR] [--epochs 100] [--seeds 0 1 2]

Featurizes SOURCE into DEST with `ser-batch featurize --feature-set seed268` (skipped when DEST
already holds it: the run is incremental), then trains the recipe's MLP exactly as the recipe did
under the `random` protocol and under a speaker-grouped split, and prints one table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ser_batch import storage
from ser_batch.config import TrainConfig, feature_config
from ser_batch.model.fit import fit

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"
PUBLISHED = {"train": 0.77, "validation": 0.62, "test": 0.60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--dest", default=str(Path(tempfile.gettempdir()) / "ser-batch-recipe"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ser-batch"),
            "featurize",
            args.source,
            args.dest,
            "--feature-set",
            "seed268",
        ],
        check=True,
        capture_output=True,
    )
    table = storage.read_features(args.dest, config=feature_config("seed268"))

    rows = []
    for split in ("random", "speaker"):
        runs = [fit(table, TrainConfig(split=split, epochs=args.epochs, seed=seed)).metrics for seed in args.seeds]
        rows.append((split, runs))

    def cell(values: list[float | None]) -> str:
        present = np.array([v for v in values if v is not None], dtype=float)
        present = present[~np.isnan(present)]
        return "-" if present.size == 0 else f"{present.mean():.3f} ± {present.std():.3f}"

    corpora = sorted({c for _, runs in rows for run in runs for c in run["test"]["per_corpus"]})
    header = ["split", "train acc", "val acc", "test acc", "test bal. acc", *[f"test {c}" for c in corpora]]
    print(
        f"seed268 + seed-mlp, {args.epochs} epochs, seeds {args.seeds}; {table.num_rows} ser-dev clips featurized, the six classes kept"
    )
    print(" | ".join(header))
    print(
        " | ".join(
            ["recipe, published (own data)", *(f"{PUBLISHED[p]:.2f}" for p in PUBLISHED), "-", *["-"] * len(corpora)]
        )
    )
    for split, runs in rows:
        metric = lambda part, key, runs=runs: [run[part][key] for run in runs]  # noqa: E731
        per_corpus = [cell([run["test"]["per_corpus"].get(c, float("nan")) for run in runs]) for c in corpora]
        print(
            " | ".join(
                [
                    split,
                    cell(metric("train", "accuracy")),
                    cell(metric("validation", "accuracy")),
                    cell(metric("test", "accuracy")),
                    cell(metric("test", "balanced_accuracy")),
                    *per_corpus,
                ]
            )
        )


if __name__ == "__main__":
    main()
