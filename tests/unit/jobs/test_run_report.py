from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from scored_tables import scored_call, shard_id_of, write_scored

from ser_batch.jobs import report as summaries
from ser_batch.jobs import run_report
from ser_batch.jobs.run_report import (
    calls_query,
    errors_by_reason,
    featurize_report,
    query_result,
    report_key,
    score_report,
    shown_uri,
    train_report,
)
from ser_batch.schema import ERRORS_SCHEMA, ModelIdentity
from ser_batch.shards import Plan, ScorePlan, ScoreShardSummary, ShardSummary
from ser_batch.storage import write_errors

RUN_AT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@pytest.mark.parametrize(
    ("flow", "deployment", "part", "key"),
    [
        ("featurize", None, "summary", "featurize-summary"),
        ("featurize", "featurize", "errors", "featurize-errors"),
        ("train", "train", "evaluation", "train-evaluation"),
        ("score", "nightly", "top-anger", "score-nightly-top-anger"),
        ("score", "Night Shift (EU)", "summary", "score-night-shift-eu-summary"),
    ],
)
def test_report_keys_follow_the_deployment_and_are_valid_prefect_keys(flow, deployment, part, key) -> None:
    assert report_key(flow, deployment, part) == key
    assert KEY.match(key)


def test_errors_count_together_by_reason_without_file_names() -> None:
    rows = [
        {
            "stage": "labels",
            "error_type": "LabelError",
            "message": f"ravdess name '03-01-09-01-01-0{i}-01' has undefined emotion code '09'",
        }
        for i in range(3)
    ] + [{"stage": "decode", "error_type": "AudioError", "message": "undecodable: Format not recognised."}]

    table = errors_by_reason(rows)

    assert table == [
        {
            "stage": "labels",
            "error_type": "LabelError",
            "reason": "ravdess name '…' has undefined emotion code '…'",
            "files": 3,
        },
        {"stage": "decode", "error_type": "AudioError", "reason": "undecodable: Format not recognised.", "files": 1},
    ]


def test_errors_beyond_fifteen_reasons_are_one_row() -> None:
    rows = [{"stage": "decode", "error_type": "AudioError", "message": f"reason {chr(97 + i)}"} for i in range(20)]

    table = errors_by_reason(rows)

    assert len(table) == 16 and table[-1] == {"stage": "", "error_type": "", "reason": "(other reasons)", "files": 5}


def error_part(dest: Path, shard_id: str, names: list[str], message: str) -> str:
    rows = [
        {
            "path": f"/archive/{n}",
            "content_key": "1:1",
            "error_type": "AudioError",
            "message": message,
            "stage": "decode",
            "feature_set": "stats8k",
            "run_at": RUN_AT,
        }
        for n in names
    ]
    return write_errors(pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA), str(dest), "stats8k", shard_id_of(shard_id))


def test_featurize_report_counts_this_runs_failures_by_reason_and_says_where_the_table_is(tmp_path) -> None:
    dest = tmp_path / "out"
    error_part(dest, "old", ["earlier-run.wav"], "empty file (0 bytes)")  # another run's part: not this report's
    part = error_part(
        dest, "s1", ["secret-customer-a.wav", "secret-customer-b.wav"], "undecodable: Format not recognised."
    )
    shards = [ShardSummary("s1", 10, 8, 2, 12.0, 1.0, (part,)), ShardSummary("s2", 10, 10, 0, 15.0, 1.0, ())]
    summary = summaries.featurize_summary(Plan(n_seen=20, n_done=0, n_known_bad=0), shards, wall_s=4.0, dest=str(dest))

    report = featurize_report(summary, shards, feature_set="stats8k")

    assert report.table_name == "errors"
    assert report.table == [
        {"stage": "decode", "error_type": "AudioError", "reason": "undecodable: Format not recognised.", "files": 2}
    ]
    assert "| files seen | 20 |" in report.markdown and "| failed | 2 |" in report.markdown
    assert f"`{dest}/features/feature_set=stats8k/corpus=*/part-*.parquet`" in report.markdown
    assert "4.5 clips/s" in report.markdown
    assert "secret-customer" not in report.markdown + str(report.table) and "empty file" not in report.markdown


METADATA = {
    "model": "mlp-ensemble",
    "feature_set": "stats8k",
    "split": "speaker",
    "classes": ["angry", "sad"],
    "confusion_part": "test",
    "confusion": {"test": [[3, 1], [0, 4]]},
    "created_at": "2026-11-24T02:00:00+00:00",
    "metrics": {
        "train": {
            "n": 40,
            "accuracy": 0.95,
            "balanced_accuracy": 0.9512,
            "per_corpus": {"tess": 1.0},
            "per_class": {"angry": 0.9, "sad": 1.0},
        },
        "validation": {"n": 0, "accuracy": None, "balanced_accuracy": None, "per_corpus": {}, "per_class": {}},
        "test": {
            "n": 8,
            "accuracy": 0.875,
            "balanced_accuracy": 0.875,
            "per_corpus": {"emodb": 0.75, "tess": 1.0},
            "per_class": {"angry": 0.75, "sad": 1.0},
        },
    },
}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    return folder


def test_train_report_has_the_evaluation_table_and_embeds_a_small_confusion_picture(model_dir, tmp_path) -> None:
    report = train_report(METADATA, str(model_dir), features_dest=str(tmp_path / "features"))

    assert report.table_name == "evaluation"
    assert [row["part"] for row in report.table] == ["train", "validation", "test"]
    assert report.table[2] == {
        "part": "test",
        "rows": 8,
        "accuracy": 0.875,
        "balanced accuracy": 0.875,
        "corpus emodb": 0.75,
        "corpus tess": 1.0,
        "class angry": 0.75,
        "class sad": 1.0,
    }
    png = base64.b64encode((model_dir / "confusion_matrix.png").read_bytes()).decode()
    assert f"](data:image/png;base64,{png})" in report.markdown
    assert "test accuracy 87.5%, balanced 87.5%" in report.markdown
    assert "| angry | 3 | 1 |" in report.markdown and f"`{model_dir}`" in report.markdown


def test_a_large_confusion_picture_is_named_by_its_path_not_embedded(model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run_report, "MAX_EMBEDDED_PNG_BYTES", 50)

    report = train_report(METADATA, str(model_dir), features_dest=str(tmp_path / "features"))

    assert "data:image" not in report.markdown
    assert f"`{model_dir}/confusion_matrix.png`" in report.markdown


def score_summary_of(dest: Path, shard: ScoreShardSummary) -> dict:
    model = ModelIdentity("/m", shard.model_id, "mlp", "stats8k", "f" * 16, ("angry", "neutral", "sad"))
    plan = ScorePlan(model, Plan(n_seen=4, n_done=0, n_known_bad=0), n_listed=4, n_orphans_removed=0)
    return summaries.score_summary(plan, [shard], wall_s=10.0, dest=str(dest), run_date="2026-11-24")


@pytest.mark.parametrize("draw", [True, False])
def test_score_report_lists_the_angriest_channels_with_their_pictures_and_errors_by_reason(tmp_path, draw) -> None:
    dest = tmp_path / "scores"
    calm = scored_call("/calls/calm.wav", [[(0.0, 3.0, "neutral")], [(4.0, 7.0, "neutral")]])
    angry = scored_call(
        "/calls/angry.wav",
        [[(0.0, 3.0, "neutral")], [(4.0, 7.0, "angry"), (5.5, 8.5, "angry"), (9.0, 12.0, "sad")]],
        roles=("agent", "customer"),
    )
    errors = [
        {
            "path": "/calls/cut-off.wav",
            "content_key": "1:1",
            "error_type": "AudioError",
            "message": "undecodable: x",
            "stage": "decode",
            "feature_set": "stats8k",
            "model_id": "mlp-stats8k-000000000001",
            "run_at": RUN_AT,
        }
    ]
    parts = write_scored(dest, [calm, angry], errors=errors)
    shard = ScoreShardSummary(
        "s1", "mlp-stats8k-000000000001", 3, 2, 1, 4, 5, 3600.0, 30.0, 0.0, 8.0, 6.0, True, tuple(parts)
    )

    report = score_report(score_summary_of(dest, shard), [shard], draw=draw)

    assert report.table_name == "top-anger"
    assert [
        (row["rank"], row["path"], row["channel"], row["role"], row["share_angry"], row["peak_angry_s"])
        for row in report.table
    ] == [(1, "/calls/angry.wav", 1, "customer", 0.6, 4.0)]
    picture = report.table[0]["picture"]
    if draw:
        assert Path(picture).parent == dest / "plots" and Path(picture).stat().st_size > 10_000
        assert f"[timeline](file://{picture})" in report.markdown
    else:
        assert picture is None and not (dest / "plots").exists()
    assert "# score: 2 recordings, 1.00 h of audio scored, 1 failed" in report.markdown
    assert "| decode | AudioError | undecodable: x | 1 |" in report.markdown
    assert "cut-off" not in report.markdown


def test_reports_show_remote_locations_without_credentials() -> None:
    assert shown_uri("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/scores") == "s3://***@bucket/scores"


def test_the_calls_query_prints_one_row_per_recording_channel_of_one_model(tmp_path) -> None:
    write_scored(tmp_path / "scores", [scored_call("/calls/a.wav", [[(0.0, 3.0, "angry")], []])], shard="a")
    other = scored_call("/calls/b.wav", [[(0.0, 3.0, "sad")]], model_id="mlp-stats8k-000000000002")
    write_scored(tmp_path / "scores", [other], shard="b")

    text = query_result(calls_query(str(tmp_path / "scores"), "mlp-stats8k-000000000001"))

    lines = [line for line in text.splitlines() if "a.wav" in line or "b.wav" in line]
    assert len(lines) == 2 and all("a.wav" in line for line in lines)
    assert "angry" in lines[0]
