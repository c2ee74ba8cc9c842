from __future__ import annotations

import numpy as np
import pytest

from ser_batch.errors import ConfigError, SchemaError
from ser_batch.model.split import copies_of, group_kfold, speaker_groups, split_indices


def _labels(n: int = 500, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(["angry", "disgust", "fear", "happy", "neutral", "sad"], n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])


def _groups(n: int, seed: int = 2) -> np.ndarray:
    # a dominant single speaker (like TESS's YAF), many actors, and a few rows of unknown speaker
    rng = np.random.default_rng(seed)
    keys = [f"ravdess/Actor_{i:02d}" for i in rng.integers(1, 17, n)]
    keys[: n // 3] = ["tess/YAF"] * (n // 3)
    for i in rng.choice(n, 10, replace=False):
        keys[i] = None
    return np.array(keys, dtype=object)


def _assert_partition(n: int, *parts: np.ndarray) -> None:
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    assert np.array_equal(np.sort(joined), np.arange(n))
    for part in parts:
        assert np.array_equal(part, np.sort(part))


def _assert_stratified(labels: np.ndarray, parent: np.ndarray, held: np.ndarray) -> None:
    for label in np.unique(labels[parent]):
        share = np.sum(labels[parent] == label) * held.size / parent.size
        assert abs(np.sum(labels[held] == label) - share) < 1.0, label


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_split_partitions_rows_and_stratifies_each_class_within_one_row(seed: int) -> None:
    labels = _labels()
    train, validation, test = split_indices(labels, None, split="random", test_size=0.2, validation_size=0.1, seed=seed)
    _assert_partition(labels.size, train, validation, test)
    _assert_stratified(labels, np.arange(labels.size), test)
    _assert_stratified(labels, np.sort(np.concatenate([train, validation])), validation)


def test_random_split_sizes_follow_the_recipe_80_20_then_10_percent() -> None:
    labels = np.array(["a", "b", "c", "d"] * 25)
    train, validation, test = split_indices(labels, None, split="random", test_size=0.2, validation_size=0.1, seed=0)
    assert (train.size, validation.size, test.size) == (72, 8, 20)


@pytest.mark.parametrize("split", ["random", "speaker", "none"])
def test_split_is_deterministic_for_a_seed(split: str) -> None:
    labels, groups = _labels(), _groups(500)
    first = split_indices(labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=3)  # type: ignore[arg-type]
    again = split_indices(labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=3)  # type: ignore[arg-type]
    other = split_indices(labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=4)  # type: ignore[arg-type]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_speaker_split_never_puts_a_group_on_two_sides(seed: int) -> None:
    labels, groups = _labels(), _groups(500)
    train, validation, test = split_indices(
        labels, groups, split="speaker", test_size=0.2, validation_size=0.1, seed=seed
    )
    _assert_partition(labels.size, train, validation, test)
    sides = [set(groups[part].tolist()) - {None} for part in (train, validation, test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert test.size and validation.size
    assert "tess/YAF" in sides[0]  # a third of the data cannot fit a 20% test part


def test_speaker_split_keeps_proportions_and_classes_roughly() -> None:
    rng = np.random.default_rng(5)
    groups = np.array([f"crema/{i}" for i in rng.integers(0, 60, 3000)], dtype=object)
    labels = _labels(3000)
    train, validation, test = split_indices(labels, groups, split="speaker", test_size=0.2, validation_size=0.1, seed=0)
    assert 0.17 < test.size / labels.size < 0.23
    assert 0.07 < validation.size / (train.size + validation.size) < 0.13
    for label in np.unique(labels):
        assert abs(np.mean(labels[test] == label) - np.mean(labels == label)) < 0.03


def test_rows_without_speaker_are_each_their_own_group() -> None:
    labels = np.array(["a", "b"] * 50)
    groups = np.array([None] * 100, dtype=object)
    train, validation, test = split_indices(labels, groups, split="speaker", test_size=0.2, validation_size=0.1, seed=0)
    assert (train.size, validation.size, test.size) == (72, 8, 20)


def test_speaker_split_with_a_single_speaker_raises() -> None:
    with pytest.raises(ConfigError, match="only 1 speaker group"):
        split_indices(["a", "b"] * 5, ["tess/YAF"] * 10, split="speaker", test_size=0.2, validation_size=0.1, seed=0)


def test_speaker_split_without_groups_raises() -> None:
    with pytest.raises(SchemaError, match="group key"):
        split_indices(["a", "b"] * 5, None, split="speaker", test_size=0.2, validation_size=0.1, seed=0)


def test_none_split_trains_on_everything_but_a_stratified_validation_part() -> None:
    labels = np.array(["a"] * 60 + ["b"] * 40)
    train, validation, test = split_indices(labels, None, split="none", test_size=0.2, validation_size=0.1, seed=0)
    assert (train.size, validation.size, test.size) == (90, 10, 0)
    assert np.sum(labels[validation] == "a") == 6


def test_zero_validation_size_gives_an_empty_validation_part() -> None:
    _, validation, test = split_indices(
        ["a", "b"] * 10, None, split="random", test_size=0.2, validation_size=0.0, seed=0
    )
    assert validation.size == 0 and test.size == 4


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (["a", "b"], {"split": "kfold"}, "unknown split"),
        (["a", "b"], {"test_size": 1.0}, "test_size"),
        (["a", "b"], {"validation_size": -0.1}, "validation_size"),
    ],
)
def test_invalid_arguments_raise_config_error(labels: list[str | None], kwargs: dict[str, object], match: str) -> None:
    options: dict[str, object] = {"split": "random", "test_size": 0.2, "validation_size": 0.1, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        split_indices(labels, None, **options)  # type: ignore[arg-type]


def test_null_labels_are_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="nulls"):
        split_indices(["a", None, "b"], None, split="random", test_size=0.2, validation_size=0.1, seed=0)


def test_speaker_groups_join_corpus_and_speaker_and_keep_unknown_speakers_null() -> None:
    keys = speaker_groups(["crema", "savee", "savee"], ["1001", "DC", None])
    assert keys.tolist() == ["crema/1001", "savee/DC", None]


def test_group_kfold_puts_every_group_in_exactly_one_test_fold() -> None:
    labels, groups = _labels(), _groups(500)
    folds = list(group_kfold(labels, groups, n_splits=5, seed=0))
    assert len(folds) == 5
    tests = [test for _, test in folds]
    _assert_partition(labels.size, *tests)
    for train, test in folds:
        _assert_partition(labels.size, train, test)
        assert not (set(groups[train].tolist()) - {None}) & (set(groups[test].tolist()) - {None})


def test_group_kfold_is_deterministic_and_balances_fold_sizes() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 2000)
    labels = _labels(2000)
    first = [test for _, test in group_kfold(labels, groups, n_splits=5, seed=1)]
    again = [test for _, test in group_kfold(labels, groups, n_splits=5, seed=1)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert max(t.size for t in first) - min(t.size for t in first) < 0.1 * 2000 / 5


def test_group_kfold_with_more_folds_than_groups_raises() -> None:
    with pytest.raises(ConfigError, match="n_splits 5"):
        list(group_kfold(["a", "b", "a", "b"], ["x", "x", "y", "y"], n_splits=5))


@pytest.mark.parametrize("split", ["random", "speaker"])
def test_augmented_copies_never_reach_both_sides_of_a_split(split: str) -> None:
    labels, groups = _labels(300), _groups(300)
    paths = np.array([f"clip_{i:03d}.wav" for i in range(300)], dtype=object)
    copy_paths = np.repeat(paths, 2)  # two augmented copies of every clip
    train, validation, test = split_indices(labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=4)  # type: ignore[arg-type]
    joined = copies_of(train, paths, copy_paths)
    assert joined.size == 2 * train.size
    assert set(copy_paths[joined]) == set(paths[train])
    assert not set(copy_paths[joined]) & set(paths[np.concatenate([validation, test])])


def test_augmented_copies_follow_their_clip_in_every_group_fold() -> None:
    labels, groups = _labels(200), _groups(200)
    paths = np.array([f"clip_{i:03d}.wav" for i in range(200)], dtype=object)
    for train, test in group_kfold(labels, groups, n_splits=5, seed=0):
        joined = copies_of(train, paths, np.repeat(paths, 3))
        assert not set(np.repeat(paths, 3)[joined]) & set(paths[test])


def _same_audio(n: int, seed: int = 3) -> np.ndarray:
    # every fifth clip also sits under a second path (same content hash); the rest are unique or unknown
    rng = np.random.default_rng(seed)
    keys = np.array([f"hash-{i:03d}" for i in range(n)], dtype=object)
    for i in range(0, n - 1, 5):
        keys[i + 1] = keys[i]
    keys[rng.choice(n, 5, replace=False)] = None
    return keys


@pytest.mark.parametrize("split", ["random", "speaker", "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_audio_under_two_paths_never_sits_on_two_sides(split: str, seed: int) -> None:
    labels, groups, same = _labels(300), _groups(300), _same_audio(300)
    groups[1::5] = [f"crema/{i}" for i in range(60)]  # the copy filed under another speaker

    parts = split_indices(labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=seed, same_audio=same)  # type: ignore[arg-type]

    _assert_partition(300, *parts)
    for key in {k for k in same.tolist() if k is not None}:
        sides = {name for name, part in zip("tvs", parts, strict=True) if key in set(same[part].tolist())}
        assert len(sides) == 1, (key, sides)


def test_without_shared_audio_the_split_is_the_one_it_always_was() -> None:
    labels, groups = _labels(300), _groups(300)
    unique = np.array([f"hash-{i}" for i in range(300)], dtype=object)
    for split in ("random", "speaker", "none"):
        before = split_indices(labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=5)  # type: ignore[arg-type]
        after = split_indices(
            labels, groups, split=split, test_size=0.2, validation_size=0.1, seed=5, same_audio=unique
        )  # type: ignore[arg-type]
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
