"""The `ser-batch` command: runs the project's Prefect flows in-process, or serves them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ser_batch.config import DEFAULT_FEATURE_SET, FEATURE_SETS
from ser_batch.errors import SerBatchError

Handler = Callable[[argparse.Namespace], int]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        help="fsspec/s3fs options as a JSON object (e.g. '{\"endpoint_url\": \"http://localhost:9000\"}'); "
        "overrides the AWS environment. Never logged or sent to the Prefect API.",
    )


def _check_featurize(args: argparse.Namespace) -> None:
    from flows.runner import dask_runner
    from flows.settings import storage_options_from_env
    from ser_batch.catalog import check_locations

    dask_runner(args.dask_address, args.n_workers)  # validates the address without connecting
    check_locations(args.source, args.dest, storage_options=storage_options_from_env())


def _featurize(args: argparse.Namespace) -> int:
    from flows.featurize import featurize

    summary = featurize(
        source=args.source,
        dest=args.dest,
        feature_set=args.feature_set,
        dask_address=args.dask_address,
        n_workers=args.n_workers,
        shard_size=args.shard_size,
        retry_errors=args.retry_errors,
        max_error_ratio=args.max_error_ratio,
    )
    features = Path(args.dest) / "features" if "://" not in args.dest else f"{args.dest.rstrip('/')}/features"
    print(f"\nfeatures: {features}/feature_set={args.feature_set}/corpus=*/part-*.parquet")
    print(f"query:    duckdb -c \"SELECT corpus, emotion, count(*) FROM read_parquet('{features}/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL\"")
    if args.json:
        print(json.dumps(summary))
    return 0


def _make_demo(args: argparse.Namespace) -> int:
    from ser_batch.demo import write_demo_archive

    n_files = write_demo_archive(args.folder, n_per_emotion=args.n_per_emotion)
    print(f"wrote {n_files} demo audio files (one of them deliberately corrupt) under {args.folder}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flows.serve import serve

    serve()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="ser-batch", description="Speech emotion recognition at batch scale.")
    commands = parser.add_subparsers(dest="command", required=True)

    featurize = commands.add_parser("featurize", help="featurize an audio archive into partitioned Parquet")
    featurize.add_argument("source", help="local folder or s3://bucket/prefix of audio files")
    featurize.add_argument("dest", help="local folder or s3://bucket/prefix for the Parquet output")
    featurize.add_argument("--feature-set", default=DEFAULT_FEATURE_SET, choices=sorted(FEATURE_SETS))
    featurize.add_argument("--dask-address", help="scheduler of an existing cluster, e.g. tcp://host:8786 (default: a LocalCluster)")
    featurize.add_argument("--n-workers", type=_positive_int, help="LocalCluster worker processes (default: one per core)")
    featurize.add_argument("--shard-size", type=_positive_int, default=200, help="files per Prefect task (default 200)")
    featurize.add_argument("--retry-errors", action="store_true", help="featurize again files whose error is already recorded")
    featurize.add_argument("--max-error-ratio", type=float, default=0.5, help="fail the run above this share of bad files (default 0.5)")
    featurize.add_argument("--json", action="store_true", help="also print the run summary as one JSON line")
    _add_storage_options(featurize)
    featurize.set_defaults(handler=_featurize, check=_check_featurize)

    demo = commands.add_parser("make-demo", help="write a small synthetic audio archive named like the five corpora")
    demo.add_argument("folder")
    demo.add_argument("--n-per-emotion", type=_positive_int, default=2)
    demo.set_defaults(handler=_make_demo, needs_api=False)

    serve = commands.add_parser("serve", help="serve every deployment of the project against PREFECT_API_URL")
    serve.set_defaults(handler=_serve, needs_api=False)
    return parser


class _NoTracebackForKnownErrors(logging.Filter):
    """Console only: a SerBatchError is reported in one line by `main`, not as a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SerBatchError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_libraries() -> None:
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # inherited by worker processes
    from prefect.logging.configuration import setup_logging

    setup_logging()  # first, so the levels and filter below stick
    for name in ("distributed", "prefect._internal", "httpx", "numba"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoTracebackForKnownErrors())
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "ser-batch" / "numba"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ser-batch` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        if getattr(args, "storage_options", None):
            from flows.settings import STORAGE_OPTIONS_ENV, parse_storage_options

            parse_storage_options(args.storage_options)
            os.environ[STORAGE_OPTIONS_ENV] = args.storage_options
        if getattr(args, "check", None):
            args.check(args)
        if not getattr(args, "needs_api", True):
            return args.handler(args)
        from flows.api import prefect_api

        with prefect_api():
            return args.handler(args)
    except SerBatchError as error:
        print(f"ser-batch: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-batch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
