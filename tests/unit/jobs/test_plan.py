from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scored_tables import scored_call, write_scored

from ser_batch import schema, storage
from ser_batch.config import feature_config
from ser_batch.errors import AudioError, ConfigError, LabelError, StorageError
from ser_batch.features.extract import feature_names
from ser_batch.jobs.finish import mirror_dest
from ser_batch.jobs.plan import (
    AUGMENTATION_POLICY,
    check_locations,
    parse_date,
    plan_augmentation,
    plan_featurization,
    recordings_since,
)
from ser_batch.labels import Labels, labels_from_path
from ser_batch.shards import FileInfo, shard_id

SEED = feature_config("seed268")
NAMES = feature_names(SEED)
NOW = datetime(2026, 11, 24, tzinfo=UTC)
WriteWav = Callable[..., Path]


def listed(source: Path) -> dict[str, FileInfo]:
    return {Path(info.uri).name: info for info in storage.list_files(str(source))}


def labels_or_none(uri: str) -> Labels:
    try:
        return labels_from_path(uri)
    except LabelError:
        return Labels("unknown", None, None)


def feature_rows(files: Sequence[FileInfo], *, copies: Sequence[str] = ()) -> pa.Table:
    """Rows of seed268 as featurize writes them; with ``copies``, one augmented row per transform and file."""
    buffer = schema.FeatureRows.empty()
    for info in files:
        labels = labels_or_none(info.uri)
        for _ in copies or [None]:
            buffer.append(
                np.zeros(len(NAMES), np.float32),
                path=info.uri,
                corpus=schema.partition_value(labels.corpus),
                speaker=labels.speaker,
                emotion=labels.emotion,
                duration_s=0.2,
                sample_rate=16_000,
                n_channels=1,
                content_key=info.content_key,
                content_hash=None,
                feature_set=SEED.name,
                fingerprint=SEED.fingerprint(),
                featurized_at=NOW,
            )
    table = buffer.to_table(schema.features_schema(SEED, NAMES))
    if not copies:
        return table
    transforms = pa.array(list(copies) * len(files), pa.string())
    return table.add_column(table.schema.get_field_index("features"), schema.AUGMENTATION_FIELD, transforms)


def write_rows(dest: Path, shard: str, files: Sequence[FileInfo], *, copies: Sequence[str] = ()) -> list[str]:
    dataset_name = "augmented" if copies else "features"
    return storage.write_features(feature_rows(files, copies=copies), str(dest), shard, dataset_name=dataset_name)


def write_error_rows(dest: Path, shard: str, files: Sequence[FileInfo], *, stage: str = "decode") -> None:
    rows = [
        schema.error_row(
            info.uri, info.content_key, AudioError("silent"), stage=stage, feature_set=SEED.name, run_at=NOW
        )
        for info in files
    ]
    storage.write_errors(pa.Table.from_pylist(rows, schema=schema.ERRORS_SCHEMA), str(dest), SEED.name, shard)


def rows_by_path(dest: Path, dataset_name: str = "features") -> dict[str, list[str]]:
    table = storage.read_features(str(dest), config=SEED, columns=["path", "content_key"], dataset_name=dataset_name)
    found: dict[str, list[str]] = {}
    for path, key in zip(table.column("path").to_pylist(), table.column("content_key").to_pylist(), strict=True):
        found.setdefault(path, []).append(key)
    return found


@pytest.fixture
def source(write_wav: WriteWav, tmp_path: Path) -> Path:
    for name in ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav"):
        write_wav(f"src/{name}", duration_s=0.1)
    return tmp_path / "src"


def change(write_wav: WriteWav, name: str) -> None:
    write_wav(f"src/{name}", duration_s=0.15)  # another size, so another content key


def test_check_locations_accepts_a_listable_source_and_leaves_no_probe_in_dest(source, tmp_path) -> None:
    dest = tmp_path / "out" / "nested"

    check_locations(str(source), str(dest))

    assert dest.is_dir() and list(dest.iterdir()) == []


def test_check_locations_names_a_missing_source_and_leaves_dest_alone(tmp_path) -> None:
    missing, dest = tmp_path / "no-such-source", tmp_path / "out"

    with pytest.raises(StorageError, match=f"{re.escape(str(missing))}: not found"):
        check_locations(str(missing), str(dest))

    assert not dest.exists()


def test_check_locations_refuses_a_source_that_is_a_file(source, tmp_path) -> None:
    with pytest.raises(StorageError, match="not a directory"):
        check_locations(str(source / "a.wav"), str(tmp_path / "out"))


def test_check_locations_refuses_a_dest_inside_a_file(source, tmp_path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")

    with pytest.raises(StorageError, match=f"{re.escape(str(tmp_path / 'blocker' / 'out'))}: not a directory"):
        check_locations(str(source), str(tmp_path / "blocker" / "out"))


def test_check_locations_refuses_a_dest_that_is_a_file(source, tmp_path) -> None:
    (tmp_path / "out").write_text("a file where a folder should be")

    with pytest.raises(StorageError, match="out"):
        check_locations(str(source), str(tmp_path / "out"))


@pytest.mark.parametrize("written", ["calls", "errors only"])
def test_a_scoring_dest_is_refused_in_one_line_before_anything_is_written(source, tmp_path, written) -> None:
    # both jobs write errors/, by call_date= and by feature_set=: pandas and pyarrow cannot read the two as one table
    errors = [{"path": "/calls/bad.wav", "content_key": "1:1", "error_type": "AudioError", "message": "x",
               "stage": "decode", "feature_set": "stats8k", "model_id": "mlp-stats8k-000000000001", "run_at": NOW}]  # fmt: skip
    calls = [scored_call("/calls/a.wav", [[(0.0, 3.0, "sad")]])] if written == "calls" else []
    write_scored(tmp_path / "scores", calls, errors=errors)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "scores").rglob("*"))

    for check in (check_locations, lambda s, d: plan_featurization(s, d, SEED, shard_size=2)):
        with pytest.raises(
            ConfigError, match=r"scores holds .*errors/call_date= of a score run: featurize into a DEST of its own"
        ) as error:
            check(str(source), str(tmp_path / "scores"))
        assert "\n" not in str(error.value)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "scores").rglob("*")) == before


def test_new_files_are_all_pending_in_listing_order_and_cut_into_shards(source, tmp_path) -> None:
    plan = plan_featurization(str(source), str(tmp_path / "out"), SEED, shard_size=2)

    assert [info.uri for info in plan.pending] == [str(source / f"{n}.wav") for n in "abcde"]
    assert (plan.n_seen, plan.n_done, plan.n_known_bad, plan.reconcile) == (5, 0, 0, {})
    assert [len(shard.files) for shard in plan.shards] == [2, 2, 1]
    assert plan.fingerprint == SEED.fingerprint()
    assert list((tmp_path / "out").iterdir()) == []


def test_featurized_files_are_done_and_a_changed_one_is_redone_and_flagged(source, tmp_path, write_wav) -> None:
    dest = tmp_path / "out"
    before = listed(source)
    write_rows(dest, "51" * 10, [before["a.wav"], before["b.wav"]])
    change(write_wav, "b.wav")
    now = listed(source)

    plan = plan_featurization(str(source), str(dest), SEED, shard_size=10)

    assert now["b.wav"].content_key != before["b.wav"].content_key
    assert [Path(info.uri).name for info in plan.pending] == ["b.wav", "c.wav", "d.wav", "e.wav"]
    assert plan.pending[0] == now["b.wav"]
    assert (plan.n_seen, plan.n_done) == (5, 1)
    assert plan.reconcile == {now["b.wav"].uri: now["b.wav"].content_key}


def test_known_bad_files_are_skipped_unless_retried_or_changed(source, tmp_path, write_wav) -> None:
    dest = tmp_path / "out"
    files = listed(source)
    write_error_rows(dest, "51" * 10, [files["c.wav"], files["d.wav"]])
    write_error_rows(dest, "52" * 10, [files["e.wav"]], stage=schema.AUGMENT_STAGE)  # not a featurize failure

    plan = plan_featurization(str(source), str(dest), SEED, shard_size=10)
    retried = plan_featurization(str(source), str(dest), SEED, shard_size=10, retry_errors=True)
    change(write_wav, "d.wav")
    after_change = plan_featurization(str(source), str(dest), SEED, shard_size=10)

    assert [Path(info.uri).name for info in plan.pending] == ["a.wav", "b.wav", "e.wav"]
    assert (plan.n_known_bad, plan.n_done) == (2, 0)
    assert retried.n_pending == 5 and retried.n_known_bad == 0
    assert [Path(info.uri).name for info in after_change.pending] == ["a.wav", "b.wav", "d.wav", "e.wav"]
    assert after_change.n_known_bad == 1


@pytest.mark.parametrize("shard_size", [0, -3])
def test_shard_size_below_one_is_a_config_error_before_anything_is_touched(shard_size, tmp_path) -> None:
    dest = tmp_path / "out"

    with pytest.raises(ConfigError, match=f"shard_size {shard_size} < 1"):
        plan_featurization(str(tmp_path / "no-such-source"), str(dest), SEED, shard_size=shard_size)
    with pytest.raises(ConfigError, match="shard_size"):
        plan_augmentation(str(tmp_path / "no-such-source"), str(dest), SEED, shard_size=shard_size)

    assert not dest.exists()


def test_missing_source_is_a_storage_error_before_dest_is_touched(tmp_path) -> None:
    missing, dest = tmp_path / "no-such-source", tmp_path / "out"

    with pytest.raises(StorageError, match=f"{re.escape(str(missing))}: not found"):
        plan_featurization(str(missing), str(dest), SEED, shard_size=2)

    assert not dest.exists()


def test_empty_source_plans_nothing(tmp_path) -> None:
    (tmp_path / "src").mkdir()

    plan = plan_featurization(str(tmp_path / "src"), str(tmp_path / "out"), SEED, shard_size=2)

    assert (plan.n_seen, plan.n_pending, plan.shards) == (0, 0, [])


@pytest.fixture
def corpus(write_wav: WriteWav, tmp_path: Path) -> Path:
    for name in (
        "ravdess/Actor_01/03-01-05-01-01-01-01.wav",  # angry, featurized: its copies are to make
        "ravdess/Actor_01/03-01-04-01-01-01-01.wav",  # sad, featurized, copies made
        "ravdess/Actor_01/03-01-03-01-01-01-01.wav",  # happy, never featurized
        "ravdess/Actor_02/03-01-06-01-01-01-02.wav",  # fear, featurized before it changed
        "ravdess/Actor_02/03-01-09-01-01-01-02.wav",  # undefined emotion code
        "tess/YAF_fear/YAF_bath_fear.wav",  # featurized, making its copies failed
        "calls/agent-7.wav",  # featurized, no label
    ):
        write_wav(f"src/{name}", duration_s=0.1)
    return tmp_path / "src"


def test_copies_are_planned_for_labelled_clips_with_a_current_row_and_no_copies(corpus, tmp_path, write_wav) -> None:
    dest = tmp_path / "out"
    files = listed(corpus)
    angry, sad, fear, tess = (
        files["03-01-05-01-01-01-01.wav"],
        files["03-01-04-01-01-01-01.wav"],
        files["03-01-06-01-01-01-02.wav"],
        files["YAF_bath_fear.wav"],
    )
    write_rows(dest, "51" * 10, [angry, sad, fear, tess, files["03-01-09-01-01-01-02.wav"], files["agent-7.wav"]])
    write_rows(dest, "51" * 10, [sad], copies=("telephone", "speed-noise"))
    write_error_rows(dest, "52" * 10, [tess], stage=schema.AUGMENT_STAGE)
    write_wav("src/ravdess/Actor_02/03-01-06-01-01-01-02.wav", duration_s=0.15)

    plan = plan_augmentation(str(corpus), str(dest), SEED, shard_size=10)
    retried = plan_augmentation(str(corpus), str(dest), SEED, shard_size=10, retry_errors=True)

    assert plan.pending == [angry]
    assert (plan.n_seen, plan.n_done, plan.n_known_bad) == (3, 1, 1)
    assert plan.fingerprint == f"{SEED.fingerprint()}/{AUGMENTATION_POLICY}"
    assert plan.shards[0].shard_id == shard_id([angry], plan.fingerprint) != shard_id([angry], SEED.fingerprint())
    assert [Path(info.uri).name for info in retried.pending] == ["03-01-05-01-01-01-01.wav", "YAF_bath_fear.wav"]


def test_no_copies_are_planned_before_anything_is_featurized(corpus, tmp_path) -> None:
    plan = plan_augmentation(str(corpus), str(tmp_path / "out"), SEED, shard_size=10)

    assert (plan.n_seen, plan.n_pending) == (0, 0)


def test_mirror_keeps_exactly_one_row_of_a_changed_file_its_current_one(source, tmp_path, write_wav) -> None:
    dest = tmp_path / "out"
    before = listed(source)
    (old_part,) = write_rows(dest, "51" * 10, [before["a.wav"], before["b.wav"]])
    change(write_wav, "a.wav")
    plan = plan_featurization(str(source), str(dest), SEED, shard_size=10)
    for shard in plan.shards:
        write_rows(dest, shard.shard_id, shard.files)

    removed = mirror_dest(str(dest), SEED, plan)

    now = listed(source)
    rows = rows_by_path(dest)
    assert removed == {"superseded_rows_removed": 1, "files_gone": 0, "gone_rows_removed": 0}
    assert rows[now["a.wav"].uri] == [now["a.wav"].content_key]
    assert rows[now["b.wav"].uri] == [before["b.wav"].content_key]
    assert sum(len(keys) for keys in rows.values()) == 5
    assert Path(old_part).exists()  # rewritten without a.wav's old row: b.wav's row stays
    assert mirror_dest(str(dest), SEED, plan)["superseded_rows_removed"] == 0
    again = plan_featurization(str(source), str(dest), SEED, shard_size=10)
    assert (again.n_done, again.n_pending, again.reconcile) == (5, 0, {})


def test_mirror_keeps_the_old_row_when_the_changed_file_was_not_featurized_again(source, tmp_path, write_wav) -> None:
    dest = tmp_path / "out"
    before = listed(source)
    write_rows(dest, "51" * 10, [before["a.wav"]])
    change(write_wav, "a.wav")
    plan = plan_featurization(str(source), str(dest), SEED, shard_size=10)

    assert mirror_dest(str(dest), SEED, plan)["superseded_rows_removed"] == 0
    assert rows_by_path(dest) == {before["a.wav"].uri: [before["a.wav"].content_key]}


def test_mirror_drops_every_copy_of_the_old_content(corpus, tmp_path, write_wav) -> None:
    dest = tmp_path / "out"
    name = "ravdess/Actor_01/03-01-05-01-01-01-01.wav"
    before = listed(corpus)["03-01-05-01-01-01-01.wav"]
    write_rows(dest, "51" * 10, [before], copies=("telephone", "speed-noise"))
    write_wav(f"src/{name}", duration_s=0.15)
    now = listed(corpus)["03-01-05-01-01-01-01.wav"]
    write_rows(dest, "52" * 10, [now])
    write_rows(dest, "52" * 10, [now], copies=("telephone", "speed-noise"))
    plan = plan_featurization(str(corpus), str(dest), SEED, shard_size=10)

    removed = mirror_dest(str(dest), SEED, plan, plan_augmentation(str(corpus), str(dest), SEED, shard_size=10))

    assert removed["superseded_rows_removed"] == 2
    assert rows_by_path(dest, "augmented") == {now.uri: [now.content_key] * 2}


def test_mirror_removes_rows_of_files_gone_but_keeps_those_of_a_folder_that_could_not_be_listed(
    write_wav, tmp_path, monkeypatch
) -> None:
    for name in ("a/1.wav", "b/2.wav", "c/3.wav"):
        write_wav(f"src/{name}", duration_s=0.1)
    source, dest = tmp_path / "src", tmp_path / "out"
    write_rows(dest, "51" * 10, list(storage.list_files(str(source))))
    (source / "c" / "3.wav").unlink()
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: _refuse(path) if str(path).endswith("/b") else scandir(path))

    plan = plan_featurization(str(source), str(dest), SEED, shard_size=10)
    removed = mirror_dest(str(dest), SEED, plan)

    assert plan.passed_over.unreadable == [str(source / "b")]
    assert removed == {"superseded_rows_removed": 0, "files_gone": 1, "gone_rows_removed": 1}
    assert set(rows_by_path(dest)) == {str(source / "a" / "1.wav"), str(source / "b" / "2.wav")}


def _refuse(path: object) -> None:
    raise OSError(5, "Input/output error", str(path))


def test_mirror_with_nothing_changed_touches_nothing(tmp_path) -> None:
    (tmp_path / "src").mkdir()
    plan = plan_featurization(str(tmp_path / "src"), str(tmp_path / "absent"), SEED, shard_size=10)
    (tmp_path / "absent").rmdir()

    assert mirror_dest(str(tmp_path / "absent"), SEED, plan)["superseded_rows_removed"] == 0
    assert not (tmp_path / "absent").exists()


def test_parse_date_takes_iso_text_or_a_date_and_refuses_impossible_days() -> None:
    assert parse_date("2024-02-29") == date(2024, 2, 29)
    assert parse_date(date(2026, 11, 24)) == date(2026, 11, 24)
    with pytest.raises(ConfigError, match="'2026-02-30' is not a date in the form YYYY-MM-DD"):
        parse_date("2026-02-30")


def test_without_since_every_recording_is_kept() -> None:
    files = [FileInfo("/calls/2001/01/01/old.wav", 1, "1:1"), FileInfo("/calls/undated.wav", 1, "1:1", None)]

    assert list(recordings_since(files, None)) == files
