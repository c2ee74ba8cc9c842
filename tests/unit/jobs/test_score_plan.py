"""The scoring plan reads one index per model, finds runs that died, and keeps one current row per recording."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_batch import schema, storage
from ser_batch.config import feature_config
from ser_batch.errors import ConfigError, SchemaError
from ser_batch.jobs.finish import finish_scoring
from ser_batch.jobs.plan import call_date, plan_scoring, start_scoring
from ser_batch.shards import ScorePlan, ScoreShardSummary, Shard
from ser_batch.storage import score_index, tables

STATS = feature_config("stats8k")
AN_HOUR_AGO = datetime.now(UTC).timestamp() - 3600
NOW = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory as far as planning reads one: metadata and the model file's bytes (never loaded)."""
    folder = tmp_path / "model"
    folder.mkdir()
    metadata = {
        "format_version": schema.FORMAT_VERSION,
        "model": "mlp",
        "classes": ["angry", "sad"],
        "feature_set": STATS.name,
        "fingerprint": STATS.fingerprint(),
        "n_features": 3,
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "model.keras").write_bytes(b"weights")
    return folder


def record(archive: Path, name: str, content: bytes = b"RIFF call") -> Path:
    path = archive / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    return path


def rows_of(shard: Shard, model_id: str, table: str, run_date: str, *, per_file: int) -> pa.Table:
    """Rows of one scoring table for every file of a shard (``per_file`` channels or segments each)."""
    names = schema.SCORE_SCHEMAS[table].names
    now = datetime(2026, 11, 24, tzinfo=UTC)
    rows = []
    for info in shard.files:
        for index in range(per_file):
            row: dict[str, object] = {name: None for name in names}
            row.update(path=info.uri, content_key=info.content_key, model_id=model_id, scored_at=now, run_at=now)
            row.update(run_date=date.fromisoformat(run_date), call_date=call_date(info, "UTC", run_date))
            row.update(channel=index, n_channels=per_file, sample_rate=8000, duration_s=1.0, speech_s=0.5)
            row.update(n_segments=1, start_s=0.0, end_s=1.0, emotion="sad", confidence=0.9, uncertain=False)
            row.update(error_type="AudioError")
            row.update(message="x", stage="decode", feature_set=STATS.name)
            rows.append({name: row[name] for name in names})
    return pa.Table.from_pylist(rows, schema=schema.SCORE_SCHEMAS[table])


def score_night(plan: ScorePlan, dest: Path, run_date: str, *, bad: Sequence[str] = ()) -> list[ScoreShardSummary]:
    """What the score flow does, with two-channel recordings written instead of scored."""
    start_scoring(str(dest), plan, run_date=run_date)
    summaries = []
    for shard in plan.plan.shards:
        failed = [info for info in shard.files if Path(info.uri).name in bad]
        good = Shard(shard.shard_id, tuple(info for info in shard.files if info not in failed))
        model_id = plan.model.model_id
        written = {
            "errors": rows_of(Shard(shard.shard_id, tuple(failed)), model_id, "errors", run_date, per_file=1),
            "predictions": rows_of(good, model_id, "predictions", run_date, per_file=3),
            "calls": rows_of(good, model_id, "calls", run_date, per_file=2),
        }
        days = {info.uri: call_date(info, "UTC", run_date) for info in shard.files}
        storage.write_scores(written, str(dest), shard.shard_id, call_dates=days.values())
        summaries.append(
            ScoreShardSummary(
                shard.shard_id, model_id, len(shard.files), len(good.files), len(failed), 0, 0,
                0.0, 0.0, 0.0, 0.0, 0.0, False, (),
                tuple((info.uri, info.content_key, info not in failed, days[info.uri]) for info in shard.files),
            )
        )  # fmt: skip
    return summaries


def night(archive: Path, dest: Path, model_dir: Path, run_date: str, **options: object) -> tuple[ScorePlan, dict]:
    plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2, **options)  # type: ignore[arg-type]
    return plan, finish_scoring(str(dest), plan, score_night(plan, dest, run_date))


def table_rows(dest: Path, table: str) -> list[tuple[str, int, str, str]]:
    """(file name, channel, content key, call date folder) of every row of a scoring table."""
    found = []
    for part in sorted((dest / table).glob("call_date=*/part-*.parquet")):
        read = pq.read_table(part, columns=["path", "content_key"] + (["channel"] if table != "errors" else []))
        channels = read.column("channel").to_pylist() if table != "errors" else [None] * read.num_rows
        for path, key, channel in zip(
            read.column("path").to_pylist(), read.column("content_key").to_pylist(), channels, strict=True
        ):
            found.append((Path(path).name, channel, key, part.parent.name))
    return sorted(found, key=str)


def test_a_nights_plan_reads_one_index_however_many_nights_dest_holds(model_dir, tmp_path, monkeypatch) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    for day in range(1, 4):
        record(archive, f"2026/11/0{day}/a.wav")
        record(archive, f"2026/11/0{day}/b.wav")
        night(archive, dest, model_dir, f"2026-11-0{day}")
    record(archive, "2026/11/04/a.wav")

    def no_part_reads(*_: object, **__: object) -> None:
        raise AssertionError("the plan read part files")

    monkeypatch.setattr(tables, "read_scored", no_part_reads)
    monkeypatch.setattr(tables, "_read_parts", no_part_reads)
    monkeypatch.setattr(tables, "remove_orphan_predictions", no_part_reads)
    plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert (plan.plan.n_seen, plan.plan.n_done, plan.plan.n_pending, plan.n_orphans_removed) == (7, 6, 1, 0)
    index = pq.read_table(score_index.score_index_uri(str(dest), plan.model.model_id))
    assert index.num_rows == 6 and set(index.column("outcome").to_pylist()) == {"scored"}
    assert not (dest / "_ser_batch" / "runs").exists() or not list((dest / "_ser_batch" / "runs").iterdir())


def test_a_run_that_died_is_found_by_its_note_and_its_parts_indexed(model_dir, tmp_path) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        record(archive, f"2026/11/24/{name}")
    night(archive, dest, model_dir, "2026-11-23")  # an index exists
    for name in ("e.wav", "f.wav", "g.wav"):
        record(archive, f"2026/11/25/{name}")
    plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=1)
    score_night(plan, dest, "2026-11-25")  # ... and the run dies before indexing what it wrote
    killed = next((dest / "calls" / "call_date=2026-11-25").glob("part-*.parquet"))
    killed.unlink()  # one shard killed between its predictions and its calls part

    again = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert again.n_orphans_removed == 1
    assert (again.plan.n_done, again.plan.n_pending) == (6, 1)  # the killed shard's recording is scored again
    assert not list((dest / "_ser_batch" / "runs").iterdir())
    assert not (dest / "predictions" / "call_date=2026-11-25" / killed.name).exists()


def test_a_missing_index_is_rebuilt_from_the_parts(model_dir, tmp_path) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    for name in ("a.wav", "b.wav", "bad.wav"):
        record(archive, f"2026/11/24/{name}")
    plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)
    finish_scoring(str(dest), plan, score_night(plan, dest, "2026-11-24", bad=["bad.wav"]))
    stored = score_index.read_score_index(str(dest), plan.model.model_id)
    Path(score_index.score_index_uri(str(dest), plan.model.model_id)).unlink()

    again = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert (again.plan.n_done, again.plan.n_known_bad, again.plan.n_pending) == (2, 1, 0)
    assert score_index.read_score_index(str(dest), plan.model.model_id) == stored


def test_a_recording_that_changed_keeps_one_row_per_channel_of_its_current_content(model_dir, tmp_path) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    record(archive, "2026/11/24/a.wav")
    record(archive, "2026/11/24/b.wav")
    night(archive, dest, model_dir, "2026-11-24")
    grown = record(archive, "2026/11/24/a.wav", b"RIFF call, the rest of it")  # scored while still growing
    record(archive, "2026/11/24/bad.wav")
    night(archive, dest, model_dir, "2026-11-25")
    key = f"{grown.stat().st_size}:{grown.stat().st_mtime_ns}"

    plan, finished = night(archive, dest, model_dir, "2026-11-26")  # nothing new: nothing changes
    record(archive, "2026/11/24/bad.wav", b"RIFF now bad")
    bad_plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)
    finish_scoring(str(dest), bad_plan, score_night(bad_plan, dest, "2026-11-27", bad=["bad.wav"]))

    calls = table_rows(dest, "calls")  # every row in its call's folder, whichever night scored it
    assert [row for row in calls if row[0] == "a.wav"] == [("a.wav", c, key, "call_date=2026-11-24") for c in (0, 1)]
    assert len([row for row in calls if row[0] == "b.wav"]) == 2
    assert {row[2] for row in table_rows(dest, "predictions") if row[0] == "a.wav"} == {key}
    assert [row[:1] + row[3:] for row in table_rows(dest, "errors")] == [("bad.wav", "call_date=2026-11-24")]
    assert not [row for row in calls if row[0] == "bad.wav"]  # its rows of the content that scored went
    assert (plan.plan.n_pending, finished["replaced_rows_removed"]) == (0, 0)


def test_a_catch_up_run_writes_each_recording_under_its_call_date_and_one_that_died_is_recovered_on_each(
    model_dir, tmp_path
) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    for day, name in (("23", "a.wav"), ("23", "b.wav"), ("24", "c.wav"), ("24", "d.wav")):
        record(archive, f"2026/11/{day}/{name}")
    plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=4)  # one shard, two call dates
    score_night(plan, dest, "2026-11-30")  # the catch-up run on the 30th dies before indexing
    note = json.loads(next((dest / "_ser_batch" / "runs").iterdir()).read_text())
    assert note["call_dates"] == ["2026-11-23", "2026-11-24"]
    (dest / "calls" / "call_date=2026-11-24" / f"part-{plan.plan.shards[0].shard_id}.parquet").unlink()  # killed

    again = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=4)

    assert again.n_orphans_removed == 1  # the 24th's predictions part without its calls part
    assert sorted(Path(f.uri).name for f in again.plan.pending) == ["c.wav", "d.wav"]
    finish_scoring(str(dest), again, score_night(again, dest, "2026-12-01"))
    assert {(row[0], row[3]) for row in table_rows(dest, "calls")} == {
        ("a.wav", "call_date=2026-11-23"),
        ("b.wav", "call_date=2026-11-23"),
        ("c.wav", "call_date=2026-11-24"),
        ("d.wav", "call_date=2026-11-24"),
    }
    assert not (dest / "calls" / "run_date=2026-11-30").exists()


def test_a_retried_error_rescored_into_the_same_part_keeps_one_row_per_channel_and_a_clean_index(
    model_dir, tmp_path
) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    record(archive, "2026/11/24/bad.wav")
    plan = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)
    finish_scoring(str(dest), plan, score_night(plan, dest, "2026-11-25", bad=["bad.wav"]))

    retried = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2, retry_errors=True)
    assert [s.shard_id for s in retried.plan.shards] == [s.shard_id for s in plan.plan.shards]  # same part names
    finish_scoring(str(dest), retried, score_night(retried, dest, "2026-11-26"))  # it scores now
    after = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert [row[:2] + row[3:] for row in table_rows(dest, "calls")] == [
        ("bad.wav", 0, "call_date=2026-11-24"),
        ("bad.wav", 1, "call_date=2026-11-24"),
    ]
    assert table_rows(dest, "errors") == []
    index = pq.read_table(score_index.score_index_uri(str(dest), plan.model.model_id))
    assert index.column("outcome").to_pylist() == ["scored"]
    assert (after.plan.n_done, after.plan.reconcile) == (1, {})


def test_a_dest_of_the_run_date_layout_is_refused_in_one_line(model_dir, tmp_path) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    record(archive, "2026/11/24/a.wav")
    earlier = dest / "calls" / "run_date=2026-11-30" / f"part-{'a' * 20}.parquet"
    earlier.parent.mkdir(parents=True)
    pq.write_table(pa.table({"path": [str(archive / "2026/11/24/a.wav")]}), earlier)

    with pytest.raises(SchemaError, match="run_date= folders of an earlier ser-batch") as error:
        plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert "score into a new DEST, or move calls/, predictions/, errors/" in str(error.value)
    assert "\n" not in str(error.value) and earlier.exists()
    with pytest.raises(SchemaError, match="earlier ser-batch"):
        storage.read_recording_scores(str(dest), str(archive / "2026/11/24/a.wav"))


@pytest.mark.parametrize("written", ["features", "errors only"])
def test_a_featurize_dest_is_refused_in_one_line(model_dir, tmp_path, written) -> None:
    # both jobs write errors/, by feature_set= and by call_date=: pandas and pyarrow cannot read the two as one table
    archive, dest = tmp_path / "calls", tmp_path / "out"
    bad = record(archive, "2026/11/24/a.wav")
    if written == "features":  # a featurize DEST's folders (its part files do not matter here)
        (dest / "features" / f"feature_set={STATS.name}" / "corpus=unknown").mkdir(parents=True)
    else:
        row = schema.error_row(str(bad), "9:1", ValueError("x"), stage="decode", feature_set=STATS.name, run_at=NOW)
        storage.write_errors(pa.Table.from_pylist([row], schema=schema.ERRORS_SCHEMA), str(dest), STATS.name, "a" * 20)

    with pytest.raises(ConfigError, match="out holds .* of a featurize run: score into a DEST of its own") as error:
        plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert ("features/" if written == "features" else "errors/feature_set=") in str(error.value)
    assert "\n" not in str(error.value) and not (dest / "calls").exists()


def test_an_index_of_the_run_date_layout_is_rebuilt_from_the_parts(model_dir, tmp_path) -> None:
    archive, dest = tmp_path / "calls", tmp_path / "scores"
    record(archive, "2026/11/24/a.wav")
    plan, _ = night(archive, dest, model_dir, "2026-11-24")
    uri = score_index.score_index_uri(str(dest), plan.model.model_id)
    stale = pa.table({"path": ["/gone.wav"], "content_key": ["1:1"], "outcome": ["scored"],
                      "part": [f"run_date=2026-11-01/part-{'b' * 20}.parquet"]})  # fmt: skip
    pq.write_table(stale.cast(score_index.SCORE_INDEX_SCHEMA), uri)

    again = plan_scoring(str(archive), str(dest), str(model_dir), shard_size=2)

    assert (again.plan.n_done, again.plan.n_pending) == (1, 0)
    assert pq.read_table(uri).column("part").to_pylist()[0].startswith("call_date=2026-11-24/")
