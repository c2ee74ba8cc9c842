"""The `ser-batch` command: runs the project's Prefect flows in-process, or serves them."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from ser_batch.config import (
    DEFAULT_FEATURE_SET,
    DEFAULT_FILE_TIMEOUT_S,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_SETTLE_S,
    ENCODER_SET_NAME,
    FEATURE_SETS,
    MODELS,
    ONNX_PREFIX,
    SEED_CLASSES,
    TrainConfig,
    channel_roles,
)
from ser_batch.errors import SerBatchError

Handler = Callable[[argparse.Namespace], int]
_STARTED = time.perf_counter()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def _feature_set_name(text: str) -> str:
    if (
        text in FEATURE_SETS
        or re.match(ENCODER_SET_NAME, text)
        or (text.startswith(ONNX_PREFIX) and text != ONNX_PREFIX)
    ):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(sorted(FEATURE_SETS))} or {ONNX_PREFIX}PATH)"
    )


_FEATURE_SET_HELP = (
    f"{', '.join(sorted(FEATURE_SETS))}, or {ONNX_PREFIX}PATH[#OUTPUT]: an ONNX encoder file (local or s3://), "
    f"its frame embeddings pooled to mean and std (README, Bring your own encoder; default {DEFAULT_FEATURE_SET}); "
    "train also takes an encoder set DEST holds by its name, onnx-<12 hex>"
)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 1]")
    return value


def _add_file_timeout(parser: argparse.ArgumentParser, inputs: str) -> None:
    parser.add_argument(
        "--file-timeout",
        type=_positive_seconds,
        default=DEFAULT_FILE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"longest one of the {inputs} may take on a worker before its process is ended and it is recorded "
        f"as 'timed out' (default {DEFAULT_FILE_TIMEOUT_S:g})",
    )


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        help='fsspec/s3fs options as a JSON object (e.g. \'{"endpoint_url": "http://localhost:9000"}\'); '
        "overrides the AWS environment. Never logged or sent to the Prefect API.",
    )


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settle-s",
        type=_non_negative_float,
        default=DEFAULT_SETTLE_S,
        metavar="SECONDS",
        help=f"leave files modified in the last SECONDS for a later run: they may still be being written "
        f"(default {DEFAULT_SETTLE_S:.0f}; 0 takes everything)",
    )
    parser.add_argument(
        "--lease-wait-s",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="when another run is writing DEST, wait up to SECONDS for it to finish (default 0: exit 2 naming it)",
    )


def _check_lease(args: argparse.Namespace) -> None:
    from flows.settings import storage_options_from_env
    from ser_batch.storage.lease import check_lease_free

    if args.lease_wait_s == 0:  # fail before the cluster and the API start; the flow takes the lease itself
        check_lease_free(args.dest, storage_options=storage_options_from_env())


def _check_featurize(args: argparse.Namespace) -> None:
    from flows.settings import storage_options_from_env
    from ser_batch.jobs.plan import check_locations
    from ser_batch.storage import resolve_feature_set

    check_locations(args.source, args.dest, storage_options=storage_options_from_env())
    args.features = resolve_feature_set(args.feature_set, storage_options=storage_options_from_env())
    _check_lease(args)
    _check_dask_address(args)


def _check_dask_address(args: argparse.Namespace) -> None:
    # last: importing Prefect's task runner and Dask takes seconds, which a wrong SOURCE or DEST need not wait for
    from flows.runner import dask_runner

    dask_runner(args.dask_address, args.n_workers)  # validates the address without connecting


def _start_featurize_cluster(args: argparse.Namespace, resources: ExitStack) -> None:
    """Without a Dask address, start and warm the LocalCluster now, while the Prefect API boots.

    Workers fork from one process that imported Prefect, the flow and librosa's lazy modules,
    so the two cores do not import them once per worker while the API server boots beside them.
    """
    from flows.featurize import warm_worker
    from flows.runner import given_address, local_cluster
    from ser_batch.config import feature_config
    from ser_batch.features.extract import LAZY_MODULES

    if given_address(args.dask_address) is not None:
        return
    config = getattr(args, "features", None) or feature_config(args.feature_set)  # resolved by _check_featurize
    cluster = local_cluster(
        args.n_workers, warm_up=partial(warm_worker, config), preload=("flows.featurize", *LAZY_MODULES)
    )
    args.dask_address = resources.enter_context(cluster)


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
        file_timeout_s=args.file_timeout,
        augment=args.augment,
        settle_s=args.settle_s,
        lease_wait_s=args.lease_wait_s,
        allow_empty_source=args.allow_empty_source,
    )
    from ser_batch.storage import features_root

    features = features_root(args.dest, args.features.name)
    _print_passed_over(summary)
    print(f"\nfeatures: {features}/corpus=*/part-*.parquet")
    duckdb = Path(sys.executable).parent / "duckdb"  # installed with ser-batch (duckdb-cli)
    print(
        f"query:    {duckdb if duckdb.exists() else 'duckdb'} -c \"SELECT corpus, emotion, count(*) FROM read_parquet('{features}/*/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL\""
    )
    if args.json:
        print(json.dumps(summary))
    return 0


def _print_passed_over(summary: dict[str, object]) -> None:
    """What the run left alone in SOURCE, on stdout: files it cannot read by extension, files still being written."""
    from ser_batch.jobs.report import format_skipped

    skipped = summary.get("skipped_extensions") or {}
    if skipped:
        print(f"skipped: {format_skipped(skipped)}")  # type: ignore[arg-type]
    if summary.get("still_being_written"):
        print(
            f"still being written: {summary['still_being_written']} (modified within --settle-s; a later run takes them)"
        )


def _train(args: argparse.Namespace) -> int:
    from flows.train import train
    from ser_batch.config import TrainConfig

    config = TrainConfig(
        model=args.model,
        split=args.split,
        classes=tuple(args.classes.split(",")),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        augmented=args.augmented,
        voice_norm=args.voice_norm,
        calibrate=args.calibrate,
    )
    result = train(
        features_dest=args.features_dest, model_dir=args.model_dir, feature_set=args.feature_set, config=config
    )
    print(json.dumps(result["metrics"], indent=2) if args.json else _metrics_table(result["metrics"]))
    print(f"model: {args.model_dir} (model.keras, metadata.json, confusion_matrix.png/.csv, history.png)")
    return 0


def _metrics_table(metrics: dict[str, dict[str, object]]) -> str:
    lines = [f"{'part':<11}{'n':>6}{'accuracy':>10}{'balanced':>10}  per corpus"]
    for part, values in metrics.items():
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        corpora = ", ".join(f"{k} {fmt(v)}" for k, v in sorted((values.get("per_corpus") or {}).items()))  # type: ignore[union-attr]
        lines.append(
            f"{part:<11}{values['n']!s:>6}{fmt(values['accuracy']):>10}{fmt(values['balanced_accuracy']):>10}  {corpora}"
        )
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from flows.settings import storage_options_from_env
    from ser_batch.jobs.train import evaluate_store, format_evaluation

    evaluation = evaluate_store(args.features_dest, args.model, storage_options=storage_options_from_env())
    print(json.dumps(evaluation.as_dict()) if args.json else format_evaluation(evaluation))
    return 0


def _check_score(args: argparse.Namespace) -> None:
    from flows.settings import storage_options_from_env, timezone_name
    from ser_batch.config import score_config
    from ser_batch.jobs.plan import check_scoring, parse_date
    from ser_batch.jobs.score import check_model

    score_config(window_s=args.window_s, hop_s=args.hop_s, min_confidence=args.min_confidence)
    if args.channel_roles is not None:
        channel_roles(args.channel_roles)
    if args.since is not None:
        parse_date(args.since)
    timezone_name()  # run dates, and the dates of recordings without date folders, are in $SER_BATCH_TIMEZONE
    options = storage_options_from_env()
    identity = check_scoring(args.source, args.dest, args.model, storage_options=options)
    _check_lease(args)
    _check_dask_address(args)
    check_model(identity, storage_options=options)  # loads it once here: a broken model stops the run in one line


def _score(args: argparse.Namespace) -> int:
    from flows.score import score
    from ser_batch.jobs.report import format_days

    summary = score(
        source=args.source,
        dest=args.dest,
        model_dir=args.model,
        dask_address=args.dask_address,
        n_workers=args.n_workers,
        shard_size=args.shard_size,
        since=args.since,
        window_s=args.window_s,
        hop_s=args.hop_s,
        channel_roles=None if args.channel_roles is None else list(channel_roles(args.channel_roles)),
        min_confidence=args.min_confidence,
        retry_errors=args.retry_errors,
        max_error_ratio=args.max_error_ratio,
        file_timeout_s=args.file_timeout,
        settle_s=args.settle_s,
        lease_wait_s=args.lease_wait_s,
    )
    calls = f"{args.dest.rstrip('/')}/calls"
    _print_passed_over(summary)
    days = format_days(summary["call_dates"])
    print(f"\ncalls:       {calls}/call_date=YYYY-MM-DD/part-*.parquet (one row per recording channel; {days})")
    print(f"predictions: {args.dest.rstrip('/')}/predictions/call_date=YYYY-MM-DD/part-*.parquet (one row per segment)")
    print(
        f"query:       duckdb -c \"SELECT call_date, role, dominant_emotion, count(*) FROM read_parquet('{calls}/*/*.parquet', "
        f"hive_partitioning=true) WHERE model_id = '{summary['model_id']}' GROUP BY ALL ORDER BY ALL\""
    )
    if args.json:
        print(json.dumps(summary))
    return 0


def _make_demo(args: argparse.Namespace) -> int:
    from ser_batch.demo import write_demo_archive

    n_files = write_demo_archive(args.folder, n_per_emotion=args.n_per_emotion)
    print(f"wrote {n_files} demo audio files (one of them deliberately corrupt) under {args.folder}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    run_demo(args.folder, dask_address=args.dask_address, n_workers=args.n_workers, started=_STARTED)
    return 0


def _plot_call(args: argparse.Namespace) -> int:
    from flows.settings import storage_options_from_env
    from ser_batch.jobs.timeline import write_call_timeline

    written = write_call_timeline(
        args.dest, args.path, args.output, model_id=args.model_id, storage_options=storage_options_from_env()
    )
    print(f"wrote {written}")
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
    featurize.add_argument(
        "--feature-set", default=DEFAULT_FEATURE_SET, type=_feature_set_name, metavar="NAME", help=_FEATURE_SET_HELP
    )
    featurize.add_argument(
        "--dask-address", help="scheduler of an existing cluster, e.g. tcp://host:8786 (default: a LocalCluster)"
    )
    featurize.add_argument(
        "--n-workers", type=_positive_int, help="LocalCluster worker processes (default: one per core)"
    )
    featurize.add_argument(
        "--shard-size", type=_positive_int, default=500, help="most files per Prefect task (default 500)"
    )
    featurize.add_argument(
        "--retry-errors", action="store_true", help="featurize again files whose error is already recorded"
    )
    featurize.add_argument(
        "--max-error-ratio", type=_share, default=0.5, help="fail the run above this share of bad files (default 0.5)"
    )
    featurize.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also featurize augmented copies (telephone channel; a new voice by VTLP, gain and noise) of labelled "
        "clips, for training (default: on, except for the recipe's seed268)",
    )
    featurize.add_argument(
        "--allow-empty-source",
        action="store_true",
        help="let a SOURCE that lists no audio file empty DEST (refused by default: a wrong or unmounted SOURCE)",
    )
    _add_run_options(featurize)
    _add_file_timeout(featurize, "files")
    featurize.add_argument("--json", action="store_true", help="also print the run summary as one JSON line")
    _add_storage_options(featurize)
    featurize.set_defaults(handler=_featurize, check=_check_featurize, prepare=_start_featurize_cluster)

    train = commands.add_parser("train", help="train a model on FEATURES_DEST/features and save MODEL_DIR")
    train.add_argument("features_dest", help="the DEST a featurize run wrote (local or s3://)")
    train.add_argument("model_dir", help="where to write model.keras, metadata.json and reports")
    train.add_argument(
        "--feature-set", default=DEFAULT_FEATURE_SET, type=_feature_set_name, metavar="NAME", help=_FEATURE_SET_HELP
    )
    train.add_argument("--model", default=TrainConfig.model_fields["model"].default, choices=MODELS)
    train.add_argument(
        "--split",
        default="random",
        choices=["random", "speaker", "none"],
        help="random: the recipe's protocol; speaker: no voice on both sides; none: all rows (the model to ship)",
    )
    train.add_argument("--classes", default=",".join(SEED_CLASSES), help="comma-separated emotions to learn")
    train.add_argument("--epochs", type=_positive_int, default=100)
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--augmented",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the augmented copies featurize made of training clips to the training part (default: on)",
    )
    train.add_argument(
        "--voice-norm",
        action="store_true",
        help="normalise features per voice (speaker; call channel when scoring): better when each voice "
        "has audio of several emotions, worse for calls of one emotion throughout (see README)",
    )
    train.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a temperature on the validation part and scale the probabilities by it (off by default: on "
        "unseen voices it raised the calibration error, see README)",
    )
    train.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_storage_options(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score a labelled features table with a saved model")
    evaluate.add_argument("features_dest")
    evaluate.add_argument("--model", required=True, metavar="MODEL_DIR")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_storage_options(evaluate)
    evaluate.set_defaults(handler=_evaluate, needs_api=False)

    score = commands.add_parser(
        "score", help="score new call recordings with a saved model into DEST/predictions and DEST/calls"
    )
    score.add_argument("source", help="local folder or s3://bucket/prefix of call recordings (searched recursively)")
    score.add_argument("dest", help="local folder or s3://bucket/prefix for predictions/, calls/ and errors/")
    score.add_argument(
        "--model", required=True, metavar="MODEL_DIR", help="a model directory written by `ser-batch train`"
    )
    score.add_argument(
        "--dask-address", help="scheduler of an existing cluster, e.g. tcp://host:8786 (default: a LocalCluster)"
    )
    score.add_argument("--n-workers", type=_positive_int, help="LocalCluster worker processes (default: one per core)")
    score.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        help="only recordings of this day or later: by their .../YYYY/MM/DD/ folders, else their modification date "
        "in $SER_BATCH_TIMEZONE (default UTC)",
    )
    score.add_argument(
        "--channel-roles",
        metavar="ROLE,ROLE",
        help="name the channels in order, e.g. agent,customer: the role column of calls and predictions "
        "(null for recordings with another number of channels, mono ones included)",
    )
    score.add_argument("--window-s", type=float, default=3.0, help="scored window length in seconds (default 3.0)")
    score.add_argument(
        "--hop-s", type=float, default=1.5, help="start-to-start step between windows in seconds (default 1.5)"
    )
    score.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        help="mark a window `uncertain` when its calibrated top-class probability is below this "
        f"(default {DEFAULT_MIN_CONFIDENCE}; see README)",
    )
    score.add_argument("--shard-size", type=_positive_int, default=50, help="recordings per Prefect task (default 50)")
    score.add_argument(
        "--retry-errors", action="store_true", help="score again recordings whose error is already recorded"
    )
    score.add_argument(
        "--max-error-ratio",
        type=_share,
        default=0.5,
        help="fail the run above this share of bad recordings (default 0.5)",
    )
    _add_run_options(score)
    _add_file_timeout(score, "recordings")
    score.add_argument("--json", action="store_true", help="also print the run summary as one JSON line")
    _add_storage_options(score)
    score.set_defaults(handler=_score, check=_check_score)

    demo = commands.add_parser("make-demo", help="write a small synthetic audio archive named like the five corpora")
    demo.add_argument("folder")
    demo.add_argument("--n-per-emotion", type=_positive_int, default=2)
    demo.set_defaults(handler=_make_demo, needs_api=False)

    run_demo = commands.add_parser(
        "demo",
        help="the whole job on synthetic audio (what `make run` runs): make a demo archive under FOLDER, "
        "featurize it, train a model, score demo calls, print the calls table",
    )
    run_demo.add_argument("folder", help="where to put the demo's audio, tables and model (e.g. demo)")
    run_demo.add_argument(
        "--dask-address", help="scheduler of an existing cluster, e.g. tcp://host:8786 (default: a LocalCluster)"
    )
    run_demo.add_argument(
        "--n-workers", type=_positive_int, help="LocalCluster worker processes (default: one per core)"
    )
    run_demo.set_defaults(handler=_demo, prepare=_start_featurize_cluster, feature_set=DEFAULT_FEATURE_SET)

    plot = commands.add_parser(
        "plot-call", help="draw one scored recording's emotion timeline per channel from DEST/predictions into a PNG"
    )
    plot.add_argument("dest", help="the DEST a `ser-batch score` run wrote (local or s3://)")
    plot.add_argument("path", help="the recording, as scored (a relative local path is made absolute)")
    plot.add_argument("--output", "-o", help="the PNG to write (default: DEST/plots/<name>-<hash of the path>.png)")
    plot.add_argument("--model-id", help="draw this model's scores (default: the model that scored it last)")
    _add_storage_options(plot)
    plot.set_defaults(handler=_plot_call, needs_api=False)

    serve = commands.add_parser("serve", help="serve every deployment of the project against PREFECT_API_URL")
    serve.set_defaults(handler=_serve, needs_api=False)
    return parser


class _NoTracebackForKnownErrors(logging.Filter):
    """Console only: a SerBatchError is reported in one line by `main`, not as a traceback.

    So is a lost Dask scheduler (``flows.runner.ClusterError``): the tracebacks Dask's client
    logs while its connection dies (a cancelled or closed comm) are dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.name.startswith("distributed.") and isinstance(error, (asyncio.CancelledError, OSError)):
            return False
        if isinstance(error, SerBatchError):
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
    os.environ.setdefault("GLOG_minloglevel", "2")  # TF 2.16+ prints oneDNN notices through glog


_LOCATIONS = ("source", "dest", "features_dest", "model_dir", "model")  # train's --model is a name: always UTF-8


def _as_uris(args: argparse.Namespace) -> None:
    """Turn locations given as paths that are not UTF-8 into ``file://`` URIs (``storage.local_uri``).

    ``sys.argv`` holds such bytes as lone surrogates, which no log line, Prefect parameter or
    Parquet value can carry.
    """
    from ser_batch.storage import is_remote, local_uri

    for name in _LOCATIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and not is_remote(value):
            setattr(args, name, local_uri(value))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ser-batch` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    _as_uris(args)
    _quiet_libraries()
    try:
        if getattr(args, "storage_options", None):
            from flows.settings import STORAGE_OPTIONS_ENV, parse_storage_options

            parse_storage_options(args.storage_options)
            os.environ[STORAGE_OPTIONS_ENV] = args.storage_options
        if not getattr(args, "needs_api", True):
            if getattr(args, "check", None):
                args.check(args)
            return args.handler(args)
        from flows.api import prefect_api_starting

        # The API boots in the background from here on; checks and preparations run meanwhile.
        with prefect_api_starting() as api_ready, ExitStack() as resources:
            if getattr(args, "check", None):
                args.check(args)
            prepare = getattr(args, "prepare", None)
            if prepare is not None:  # e.g. start and warm the Dask cluster while the API boots
                from prefect.settings import PREFECT_API_URL

                exported, given = PREFECT_API_URL.value(), args.dask_address
                prepare(args, resources)
                if (
                    api_ready() != exported and args.dask_address != given
                ):  # the API moved port: respawn workers with its URL
                    resources.close()
                    args.dask_address = given
                    prepare(args, resources)
            api_ready()
            return args.handler(args)
    except SerBatchError as error:
        print(f"ser-batch: error: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # a config model refused a value (e.g. --classes angry,bogus)
        problem = error.errors()[0]
        print(
            f"ser-batch: error: {'.'.join(map(str, problem['loc'])) or error.title}: {problem['msg']}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("ser-batch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
