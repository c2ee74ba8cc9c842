from __future__ import annotations

import pytest

from ser_batch.shards import DoneIndex, FileInfo, mirror_removals, plan_shards, shard_id

FILES = [FileInfo(f"/a/{i:02d}.wav", 10, f"10:{i}") for i in range(7)]
NOTHING = DoneIndex({})


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
    done = DoneIndex({info.uri: [(info.content_key, "p1")] for info in FILES})
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
    done = DoneIndex({FILES[0].uri: [(FILES[0].content_key, "p1")]}, {FILES[1].uri: [(FILES[1].content_key, "e1")]})
    plan = plan_shards(FILES, done, fingerprint="f", shard_size=10)
    assert (plan.n_done, plan.n_known_bad, plan.n_pending) == (1, 1, 5)
    assert plan_shards(FILES, done, fingerprint="f", shard_size=10, retry_errors=True).n_pending == 6


def test_changed_content_is_refeaturized_and_flagged() -> None:
    done = DoneIndex({FILES[0].uri: [("10:old", "p1")]})
    plan = plan_shards(FILES, done, fingerprint="f", shard_size=10)
    assert plan.n_pending == 7
    assert plan.reconcile == {FILES[0].uri: FILES[0].content_key}


def test_mirror_removals_keep_exactly_the_current_row() -> None:
    path = FILES[0].uri
    done = DoneIndex({path: [("10:old", "p1"), (FILES[0].content_key, "p2"), (FILES[0].content_key, "p3")]})
    assert mirror_removals(done, {path: FILES[0].content_key}) == {"p1": {path}, "p3": {path}}


def test_mirror_removals_keep_old_rows_when_the_new_one_is_missing() -> None:
    done = DoneIndex({FILES[0].uri: [("10:old", "p1")]})
    assert mirror_removals(done, {FILES[0].uri: FILES[0].content_key}) == {}


def test_a_file_empty_one_night_and_whole_the_next_keeps_its_features_row_only() -> None:
    path, now = FILES[0].uri, FILES[0].content_key
    done = DoneIndex({path: [(now, "features/p2")]}, {path: [("0:empty", "errors/p1")]})
    assert mirror_removals(done, {path: now}) == {"errors/p1": {path}}


def test_a_file_that_turned_bad_keeps_its_error_row_only() -> None:
    path, now = FILES[0].uri, FILES[0].content_key
    done = DoneIndex({path: [("10:old", "features/p1")]}, {path: [(now, "errors/p2")]})
    assert mirror_removals(done, {path: now}) == {"features/p1": {path}}


def test_a_retried_error_that_now_featurizes_loses_its_error_row() -> None:
    path, now = FILES[0].uri, FILES[0].content_key
    done = DoneIndex({path: [(now, "features/p2")]}, {path: [(now, "errors/p1")]})
    assert mirror_removals(done, {path: now}) == {"errors/p1": {path}}


def test_a_gone_file_loses_every_row() -> None:
    path = FILES[0].uri
    done = DoneIndex({path: [("10:a", "features/p1"), ("10:b", "features/p2")]}, {path: [("0:x", "errors/p3")]})
    assert mirror_removals(done, {path: None}) == {"features/p1": {path}, "features/p2": {path}, "errors/p3": {path}}


def test_rows_of_files_gone_from_source_are_flagged_but_not_those_still_being_written() -> None:
    done = DoneIndex({"/gone/a.wav": [("1:1", "p1")], "/a/00.wav": [("old", "p1")]}, {"/gone/bad.wav": [("0:0", "e1")]})
    settling = [FileInfo("/a/00.wav", 10, "10:new", modified_s=1000.0), *FILES[1:3]]

    plan = plan_shards(settling, done, fingerprint="f", shard_size=10, settled_before=900.0)

    assert plan.reconcile == {"/gone/a.wav": None, "/gone/bad.wav": None}
    assert (plan.n_seen, plan.n_settling, plan.n_pending) == (3, 1, 2)
    assert plan.settling == {"/a/00.wav"} and set(plan.listed) == {FILES[1].uri, FILES[2].uri}


def test_a_mirrored_dest_needs_no_reconciling() -> None:
    done = DoneIndex({FILES[0].uri: [(FILES[0].content_key, "p1")]}, {FILES[1].uri: [(FILES[1].content_key, "e1")]})

    plan = plan_shards(FILES[:2], done, fingerprint="f", shard_size=10)

    assert (plan.reconcile, plan.n_done, plan.n_known_bad) == ({}, 1, 1)


def test_duplicate_rows_of_one_file_are_flagged() -> None:
    done = DoneIndex({FILES[0].uri: [(FILES[0].content_key, "p1"), (FILES[0].content_key, "p2")]})

    plan = plan_shards(FILES[:1], done, fingerprint="f", shard_size=10)

    assert plan.reconcile == {FILES[0].uri: FILES[0].content_key}
    assert mirror_removals(done, plan.reconcile) == {"p2": {FILES[0].uri}}
