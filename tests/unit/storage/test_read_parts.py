from __future__ import annotations

import pytest
from scored_tables import scored_call, write_scored

from ser_batch.errors import StorageError
from ser_batch.storage import read_parts, read_recording_scores


def test_read_parts_reads_just_the_given_parts_and_columns(tmp_path) -> None:
    first = write_scored(tmp_path, [scored_call("/a.wav", [[(0.0, 3.0, "sad")]])], shard="a")
    write_scored(tmp_path, [scored_call("/b.wav", [[(0.0, 3.0, "sad")]])], shard="b")
    calls = [uri for uri in first if "/calls/" in uri]

    table = read_parts(calls, columns=["path", "channel"])

    assert table.to_pylist() == [{"path": "/a.wav", "channel": 0}]
    assert read_parts([]) is None


def test_read_parts_of_a_missing_part_is_a_storage_error(tmp_path) -> None:
    with pytest.raises(StorageError, match="not found"):
        read_parts([str(tmp_path / "calls" / "part-gone.parquet")])


def test_a_recording_scores_are_empty_tables_when_dest_has_none(tmp_path) -> None:
    calls, predictions = read_recording_scores(str(tmp_path / "nothing"), "/a.wav")

    assert calls.num_rows == predictions.num_rows == 0 and "model_id" in calls.column_names
