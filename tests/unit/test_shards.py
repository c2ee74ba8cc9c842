from __future__ import annotations

import pytest

from ser_batch.shards import DoneIndex, FileInfo, plan_shards, shard_id, superseded_rows

FILES = [FileInfo(f"/a/{i:02d}.wav", 10, f"10:{i}") for i in range(7)]
NOTHING = DoneIndex({}, set())


def test_shards_are_near_equal_at_most_shard_size_and_cover_every_pending_file_once() -> None:
    plan = plan_shards(FILES, NOTHING, fingerprint="f", shard_size=3)
    assert [len(shard.files) for shard in plan.shards] == [3, 2, 2]
    assert [info for shard in plan.shards for info in shard.files] == FILES
    assert plan.n_seen == 7 and plan.n_pending == 7


@pytest.mark.parametrize(
    ("n_slots", "sizes"),
    [(1, [3, 2, 2]), (2, [2, 2, 2, 1]), (3, [3, 2, 2]), (4, [2, 2, 2, 1]), (5, [2, 2, 1, 1, 1]), (100, [1] * 7)],
)
def test_shards_for_slots_come_in_a_multiple_of_the_slots(n_slots, sizes) -> None:
    plan = plan_shards(FILES, NOTHING, fingerprint="f", shard_size=3)
    shards = plan.shards_for(n_slots)
    assert [len(shard.files) for shard in shards] == sizes
    assert [info for shard in shards for info in shard.files] == FILES
    assert len({shard.shard_id for shard in shards}) == len(shards)


def test_no_pending_files_no_shards() -> None:
    done = DoneIndex({info.uri: [(info.content_key, "p1")] for info in FILES}, set())
    assert plan_shards(FILES, done, fingerprint="f", shard_size=3).shards_for(2) == []


def test_same_inputs_give_same_shard_ids() -> None:
    first = plan_shards(FILES, NOTHING, fingerprint="f", shard_size=3)
    second = plan_shards(list(FILES), NOTHING, fingerprint="f", shard_size=3)
    assert [s.shard_id for s in first.shards] == [s.shard_id for s in second.shards]
    assert len({s.shard_id for s in first.shards}) == 3


def test_shard_id_depends_on_content_key_and_feature_set() -> None:
    changed = [FileInfo(FILES[0].uri, 10, "10:changed")]
    assert shard_id(FILES[:1], "f") != shard_id(changed, "f")
    assert shard_id(FILES[:1], "f") != shard_id(FILES[:1], "g")


def test_done_and_known_bad_inputs_are_skipped() -> None:
    done = DoneIndex({FILES[0].uri: [(FILES[0].content_key, "p1")]}, {(FILES[1].uri, FILES[1].content_key)})
    plan = plan_shards(FILES, done, fingerprint="f", shard_size=10)
    assert (plan.n_done, plan.n_known_bad, plan.n_pending) == (1, 1, 5)
    assert plan_shards(FILES, done, fingerprint="f", shard_size=10, retry_errors=True).n_pending == 6


def test_changed_content_is_refeaturized_and_flagged() -> None:
    done = DoneIndex({FILES[0].uri: [("10:old", "p1")]}, set())
    plan = plan_shards(FILES, done, fingerprint="f", shard_size=10)
    assert plan.n_pending == 7
    assert plan.changed == {FILES[0].uri: FILES[0].content_key}


def test_superseded_rows_keep_exactly_the_current_row() -> None:
    path = FILES[0].uri
    done = DoneIndex({path: [("10:old", "p1"), (FILES[0].content_key, "p2"), (FILES[0].content_key, "p3")]}, set())
    assert superseded_rows(done, {path: FILES[0].content_key}) == {"p1": {path}, "p3": {path}}


def test_superseded_rows_keep_old_rows_when_the_new_one_is_missing() -> None:
    done = DoneIndex({FILES[0].uri: [("10:old", "p1")]}, set())
    assert superseded_rows(done, {FILES[0].uri: FILES[0].content_key}) == {}
