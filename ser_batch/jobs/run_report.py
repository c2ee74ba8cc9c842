"""What a finished run shows operators: a markdown page and a table per run, built here and published by flows/ (IO driver).

``flows/report.py`` publishes a ``RunReport`` as two Prefect artifacts, keyed by ``report_key``
so that a deployment's runs form one history per key. Reports hold counts, rates, locations
and at most ``TOP_CALLS`` recordings: never credentials (URIs are redacted, storage options are
never read here) and never a run's file list.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ser_batch.errors import SerBatchError, StorageError
from ser_batch.jobs.report import format_days
from ser_batch.jobs.timeline import write_call_timeline
from ser_batch.shards import ScoreShardSummary, ShardSummary
from ser_batch.storage import files
from ser_batch.storage.tables import errors_root, features_root, read_parts

TOP_CALLS = 5
"""Recording channels listed under the highest share of anger in a score report."""

MAX_EMBEDDED_PNG_BYTES = 300_000
"""A picture up to this size is embedded in a report as a data: URI; a larger one is linked by its path."""

_MAX_REASONS = 15


@dataclass(frozen=True)
class RunReport:
    """One run's report: a markdown page and a table, published under ``<prefix>-summary`` and ``<prefix>-<table_name>``.

    Attributes:
        markdown: the page (counts, rates, locations, pictures).
        table_name: the table's key suffix: ``errors``, ``evaluation`` or ``top-anger``.
        table: the table's rows, all with the same keys (the columns).
        description: one line shown beside both artifacts.
    """

    markdown: str
    table_name: str
    table: list[dict[str, Any]]
    description: str


def report_key(flow_name: str, deployment_name: str | None, part: str) -> str:
    """The artifact key of one part of a run's report: lowercase letters, digits and dashes, as Prefect requires.

    Runs of a deployment share their keys, so each key holds that deployment's history;
    a deployment named like its flow (``featurize/featurize``) shares the flow's keys.

    >>> report_key("score", "nightly", "summary"), report_key("featurize", "featurize", "errors")
    ('score-nightly-summary', 'featurize-errors')
    >>> report_key("Score Calls", None, "top_anger")
    'score-calls-top-anger'
    """
    names = [flow_name] if deployment_name in (None, "", flow_name) else [flow_name, str(deployment_name)]
    return "-".join(_slug(name) for name in [*names, part] if _slug(name))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def error_reason(message: str) -> str:
    """An error message with its particulars (quoted names, numbers) masked, so like errors count together.

    >>> error_reason("ravdess name '03-01-09-01-01-01-01' has undefined emotion code '09'")
    "ravdess name '…' has undefined emotion code '…'"
    >>> error_reason("too short: 812 samples < 2048 (one 2048-sample frame)")
    'too short: N samples < N (one N-sample frame)'
    """
    masked = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    return re.sub(r"\d+(?:\.\d+)?", "N", masked)[:160]


def errors_by_reason(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Count error rows by stage, error type and ``error_reason`` of the message, most frequent first.

    At most 15 reasons are listed; the rest are counted in one ``(other reasons)`` row.

    >>> errors_by_reason([{"stage": "decode", "error_type": "AudioError", "message": "empty file (0 bytes)"}] * 2)
    [{'stage': 'decode', 'error_type': 'AudioError', 'reason': 'empty file (N bytes)', 'files': 2}]
    """
    counts = Counter((row["stage"], row["error_type"], error_reason(str(row["message"]))) for row in rows)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    table = [{"stage": s, "error_type": t, "reason": r, "files": n} for (s, t, r), n in ranked[:_MAX_REASONS]]
    rest = sum(n for _, n in ranked[_MAX_REASONS:])
    if rest:
        table.append({"stage": "", "error_type": "", "reason": "(other reasons)", "files": rest})
    return table


def markdown_table(rows: Sequence[dict[str, Any]], *, empty: str = "none") -> str:
    """Rows (dicts with the same keys) as a GitHub-flavoured markdown table; ``empty`` when there are none.

    >>> print(markdown_table([{"a": 1, "b": None}]))
    | a | b |
    |---|---|
    | 1 |  |
    """
    if not rows:
        return f"_{empty}_"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = ["" if row.get(name) is None else str(row[name]).replace("|", "\\|") for name in header]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shown_uri(uri: str) -> str:
    """A location as a report shows it: local paths absolute, remote URIs without credentials."""
    return files.redact(uri) if files.is_remote(uri) else files.local_path(uri)


def _read_rows(uris: Sequence[str], columns: Sequence[str], storage_options: dict[str, Any] | None) -> list[Any]:
    table = read_parts(uris, columns=columns, storage_options=storage_options)
    return [] if table is None else table.to_pylist()


def _parts_under(summaries: Sequence[ShardSummary | ScoreShardSummary], root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    return [uri for summary in summaries for uri in summary.part_files if uri.startswith(prefix)]


def featurize_report(
    summary: dict[str, Any],
    summaries: Sequence[ShardSummary],
    *,
    feature_set: str,
    storage_options: dict[str, Any] | None = None,
) -> RunReport:
    """The report of one featurize run: counts, failures by reason, throughput and where the tables are.

    Args:
        summary: what ``featurize_summary`` returned for the run.
        summaries: every shard summary of the run (featurize and augment passes); their error
            part files are read for the failures by reason.
        feature_set: the run's feature set.
        storage_options: fsspec options for a remote DEST.

    Raises:
        StorageError: if an error part file cannot be read.
    """
    dest = summary["dest"]
    errors = errors_by_reason(
        _read_rows(
            _parts_under(summaries, errors_root(dest, feature_set)), ("stage", "error_type", "message"), storage_options
        )
    )
    features = shown_uri(features_root(dest, feature_set))
    counts = [
        {"": "files seen", "count": summary["files_seen"]},
        {"": "featurized", "count": summary["featurized"]},
        {"": "already done (skipped)", "count": summary["already_done"]},
        {"": "known bad (skipped)", "count": summary["known_bad_skipped"]},
        {"": "failed", "count": summary["failed"]},
        {"": "augmented copies", "count": summary["augmented_copies"]},
        {"": "augmentation failed", "count": summary["augment_failed"]},
    ]
    markdown = "\n\n".join(
        [
            f"# featurize: {summary['featurized']} files featurized, {summary['failed']} failed ({feature_set})",
            markdown_table(counts),
            f"**Throughput** {summary['clips_per_s']} clips/s, {summary['audio_s_per_s']} s of audio per second "
            f"({summary['wall_s']} s wall, start-up included; {summary['shards']} shards).",
            "## Failed, by reason",
            markdown_table(errors, empty="no failures"),
            "## Where",
            f"- features: `{features}/corpus=*/part-*.parquet`\n"
            f"- augmented copies: `{shown_uri(features_root(dest, feature_set, 'augmented'))}`\n"
            f"- errors: `{shown_uri(errors_root(dest, feature_set))}`",
            f"```\nduckdb -c \"SELECT corpus, emotion, count(*) FROM read_parquet('{features}/*/*.parquet', "
            'hive_partitioning=true) GROUP BY ALL ORDER BY ALL"\n```',
        ]
    )
    return RunReport(markdown, "errors", errors, f"featurize into {shown_uri(dest)}")


def train_report(
    metadata: dict[str, Any],
    model_dir: str,
    *,
    features_dest: str,
    storage_options: dict[str, Any] | None = None,
) -> RunReport:
    """The report of one train run: the evaluation table, the confusion matrix picture and where the model is.

    The picture (``MODEL_DIR/confusion_matrix.png``) is embedded as a data: URI when it is at
    most ``MAX_EMBEDDED_PNG_BYTES`` (Prefect stores artifacts in its database and cannot serve
    files); a larger one is named by its location.

    Args:
        metadata: the model directory's metadata (what ``train_and_save`` returned).
        model_dir: the model directory.
        features_dest: the DEST the model was trained from.
        storage_options: fsspec options for a remote MODEL_DIR.

    Raises:
        StorageError: if the picture cannot be read.
    """
    metrics: dict[str, dict[str, Any]] = metadata["metrics"]
    part = str(metadata.get("confusion_part", "test"))
    evaluation = [_evaluation_row(name, values) for name, values in metrics.items()]
    headline = metrics.get(part, {})
    classes = [str(name) for name in metadata["classes"]]
    confusion = [
        {"true \\ predicted": name, **dict(zip(classes, row, strict=True))}
        for name, row in zip(classes, metadata.get("confusion", {}).get(part, []), strict=False)
    ]
    picture_uri = files.join(model_dir, "confusion_matrix.png")
    with files.storage_errors(picture_uri):
        png = files.read_bytes(picture_uri, storage_options=storage_options)
    picture = (
        f"![confusion matrix, {part} rows](data:image/png;base64,{base64.b64encode(png).decode()})"
        if len(png) <= MAX_EMBEDDED_PNG_BYTES
        else f"Confusion matrix picture: `{shown_uri(picture_uri)}` ({len(png) // 1000} kB, too large to embed)"
    )
    shown_model = shown_uri(model_dir)
    markdown = "\n\n".join(
        [
            f"# train: {metadata['model']} on {metadata['feature_set']}, {metadata['split']} split: "
            f"{part} accuracy {_percent(headline.get('accuracy'))}, balanced {_percent(headline.get('balanced_accuracy'))}",
            markdown_table(evaluation),
            f"## Confusion matrix ({part} rows; rows are true classes)",
            markdown_table(confusion, empty="no rows"),
            picture,
            "## Where",
            f"- model: `{shown_model}` (model.keras, metadata.json, confusion_matrix.png/.csv, history.png)\n"
            f"- trained from: `{shown_uri(features_dest)}`\n"
            f"- model files written at {metadata.get('created_at', '?')}",
            f"```\nser-batch evaluate {shown_uri(features_dest)} --model {shown_model}\n```",
        ]
    )
    return RunReport(markdown, "evaluation", evaluation, f"{metadata['model']} model in {shown_model}")


def _evaluation_row(part: str, values: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "part": part,
        "rows": values.get("n"),
        "accuracy": _rounded(values.get("accuracy")),
        "balanced accuracy": _rounded(values.get("balanced_accuracy")),
    }
    row.update({f"corpus {k}": _rounded(v) for k, v in sorted((values.get("per_corpus") or {}).items())})
    row.update({f"class {k}": _rounded(v) for k, v in (values.get("per_class") or {}).items()})
    return row


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


_CALL_COLUMNS = ("path", "channel", "role", "speech_s", "share_angry", "peak_angry_s", "peak_angry_probability")


def score_report(
    summary: dict[str, Any],
    summaries: Sequence[ScoreShardSummary],
    *,
    draw: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> RunReport:
    """The report of one score run: recordings and hours scored, the angriest calls, errors by reason, throughput.

    The calls and error rows are this run's own (read from the part files its shards wrote).
    With ``draw`` and a local DEST, each listed recording's timeline is drawn to
    ``DEST/plots`` (``write_call_timeline``) and linked.

    Args:
        summary: what ``score_summary`` returned for the run.
        summaries: the run's shard summaries.
        draw: draw the listed recordings' timelines (local DEST only).
        storage_options: fsspec options for a remote DEST.

    Raises:
        StorageError: if a part file cannot be read or a picture written.
    """
    dest = summary["dest"]
    calls = _read_rows(_parts_under(summaries, files.join(dest, "calls")), _CALL_COLUMNS, storage_options)
    angry = sorted((row for row in calls if row["share_angry"]), key=lambda row: (-row["share_angry"], row["path"]))
    top = [_top_call_row(rank, row) for rank, row in enumerate(angry[:TOP_CALLS], start=1)]
    if draw and not files.is_remote(dest):
        pictures = {}
        days = {path: day for s in summaries for path, *_, day in s.recordings}
        for row in top:
            if row["path"] not in pictures:
                pictures[row["path"]] = _picture(dest, row["path"], days.get(row["path"]), summary, storage_options)
            row["picture"] = pictures[row["path"]]
    errors = errors_by_reason(
        _read_rows(
            _parts_under(summaries, files.join(dest, "errors")), ("stage", "error_type", "message"), storage_options
        )
    )
    where = {name: shown_uri(files.join(dest, name)) for name in ("calls", "predictions", "errors")}
    hours = summary["audio_min"] / 60
    counts = [
        {"": "recordings seen", "count": summary["recordings_seen"]},
        {"": "scored", "count": summary["scored"]},
        {"": "already scored (skipped)", "count": summary["already_scored"]},
        {"": "known bad (skipped)", "count": summary["known_bad_skipped"]},
        {"": "failed", "count": summary["failed"]},
        {"": "channels", "count": summary["channels"]},
        {"": "windows", "count": summary["segments"]},
    ]
    markdown = "\n\n".join(
        [
            f"# score: {summary['scored']} recordings, {hours:.2f} h of audio scored, {summary['failed']} failed",
            f"Model `{summary['model_id']}`, run date {summary['run_date']}, calls of {format_days(summary['call_dates'])}.",
            markdown_table(counts),
            f"**Audio** {hours:.2f} h ({summary['speech_min'] / 60:.2f} h of speech scored). **Throughput** "
            f"{summary['audio_min_per_s']} min of audio per second ({summary['wall_s']} s wall, start-up included); "
            f"{summary['audio_min_per_cpu_s']} min per worker CPU-second.",
            f"## Highest share of anger (top {TOP_CALLS} recording channels)",
            markdown_table([_linked(row) for row in top], empty="no anger in this run's calls"),
            "## Errors, by reason",
            markdown_table(errors, empty="no errors"),
            "## Where",
            "\n".join(f"- {name}: `{uri}`" for name, uri in where.items()),
            f'```\nduckdb -c "SELECT path, channel, role, round(share_angry, 3) AS share_angry, peak_angry_s '
            f"FROM read_parquet('{where['calls']}/*/*.parquet', hive_partitioning = true) "
            f"WHERE model_id = '{summary['model_id']}' AND run_date = DATE '{summary['run_date']}' "
            'ORDER BY share_angry DESC LIMIT 20"\n'
            f"ser-batch plot-call {shown_uri(dest)} PATH    # one recording's emotion timeline as a PNG\n```",
        ]
    )
    return RunReport(markdown, "top-anger", top, f"score into {shown_uri(dest)}")


def _top_call_row(rank: int, row: dict[str, Any]) -> dict[str, Any]:
    peak = row["peak_angry_s"]
    return {
        "rank": rank,
        "path": row["path"],
        "channel": row["channel"],
        "role": row["role"],
        "share_angry": round(float(row["share_angry"]), 3),
        "speech_s": round(float(row["speech_s"]), 1),
        "peak_angry_s": None if peak is None else round(float(peak), 1),
        "peak_probability": _rounded(row["peak_angry_probability"]),
        "picture": None,
    }


def _picture(
    dest: str, path: str, call_date: str | None, summary: dict[str, Any], storage_options: dict[str, Any] | None
) -> str | None:
    try:
        written = write_call_timeline(
            dest, path, model_id=summary["model_id"], call_date=call_date, storage_options=storage_options
        )
        return files.local_path(written)
    except SerBatchError:  # a picture is not worth failing the report (e.g. DEST/plots unwritable)
        return None


def _linked(row: dict[str, Any]) -> dict[str, Any]:
    picture = row.get("picture")
    return {**row, "picture": f"[timeline](file://{picture})" if picture else None}


def calls_query(dest: str, model_id: str) -> str:
    """A DuckDB query of DEST's calls table for one model: one row per recording channel.

    >>> print(calls_query("demo/scores", "m-1"))  # doctest: +ELLIPSIS
    SELECT regexp_extract(path, '[^/]+$') AS recording, channel, role, ... WHERE model_id = 'm-1' ORDER BY recording, channel
    """
    calls = files.join(dest, "calls", "*", "*.parquet")
    return (
        "SELECT regexp_extract(path, '[^/]+$') AS recording, channel, role, round(speech_s, 1) AS speech_s, "
        "dominant_emotion, round(share_angry, 2) AS share_angry, round(peak_angry_s, 1) AS peak_angry_s "
        f"FROM read_parquet('{calls}', hive_partitioning = true) WHERE model_id = '{model_id}' ORDER BY recording, channel"
    )


def query_result(sql: str) -> str:
    """Run a DuckDB query and return its result as DuckDB's text table (local files; an error is a StorageError)."""
    import duckdb

    try:
        return str(duckdb.sql(sql))
    except duckdb.Error as error:
        raise StorageError(f"the query failed: {str(error).splitlines()[0]}") from None
