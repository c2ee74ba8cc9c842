"""Train, validation and test rows: stratified random and speaker-grouped splits (pure, numpy only).

Every function is deterministic for a given ``seed`` and returns sorted ``int64`` row
indices. Grouped splits never put one group (corpus + speaker) on two sides, and no split
puts two rows of the same audio (``same_audio``: a content hash per row) on two sides.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch._typing import Indices
from ser_batch.errors import ConfigError, SchemaError

_EMPTY: Indices = np.zeros(0, dtype=np.int64)
_GREEDY_BUDGET = 50_000  # group visits per grouped split: 32 orders of ~1,500 groups


def speaker_groups(corpus: Sequence[str], speaker: Sequence[str | None]) -> NDArray[np.object_]:
    """Group keys ``"<corpus>/<speaker>"`` for ``split_indices``; None where the speaker is unknown.

    Args:
        corpus: corpus name per row, length ``n``.
        speaker: speaker id per row (None when unknown), length ``n``.

    Returns:
        object array of shape ``(n,)``.

    >>> speaker_groups(["tess", "ravdess"], ["YAF", None]).tolist()
    ['tess/YAF', None]
    """
    keys = [None if s is None else f"{c}/{s}" for c, s in zip(corpus, speaker, strict=True)]
    return np.array(keys, dtype=object)


def split_indices(
    labels: ArrayLike,
    groups: ArrayLike | None,
    *,
    split: Literal["random", "speaker", "none"],
    test_size: float,
    validation_size: float,
    seed: int,
    same_audio: ArrayLike | None = None,
) -> tuple[Indices, Indices, Indices]:
    """Split rows into train, validation and test.

    - ``random``: stratified ``test_size`` for test, then stratified ``validation_size``
      of the rest for validation (the original recipe's protocol). Each class's share of
      a held-out part is within one row of its proportional share.
    - ``speaker``: the same proportions, but whole groups go to one side; classes are
      balanced greedily over several seeded group orders (the best is kept).
    - ``none``: everything trains except a stratified ``validation_size``; test is empty.

    Args:
        labels: class label per row, shape ``(n,)``, no nulls (any sortable values).
        groups: group key per row, shape ``(n,)``; None (or NaN) makes a row its own
            group. Required for ``speaker``, ignored otherwise.
        split: the protocol, as above.
        test_size: fraction of all rows for test, in (0, 1); ignored for ``none``.
        validation_size: fraction of the non-test rows for validation, in [0, 1).
        seed: seed of the only random generator used.
        same_audio: a key per row, shape ``(n,)``, equal for rows of the same audio (the
            ``content_hash`` of a file copied under two paths); rows sharing a key always land
            on one side: ``random`` and ``none`` stratify one row per key, ``speaker`` joins the
            groups they link. None (or a null key) makes every row its own audio.

    Returns:
        ``(train, validation, test)`` sorted int64 row indices that partition ``range(n)``.

    Raises:
        ConfigError: on an unknown split or a fraction out of range.
        SchemaError: on null labels, missing or
            mis-sized groups, or a grouped part that has a single group left to split.

    >>> train, validation, test = split_indices(["a", "b"] * 5, None, split="random",
    ...     test_size=0.2, validation_size=0.1, seed=0)
    >>> len(train), len(validation), len(test)
    (7, 1, 2)
    """
    codes = _codes(labels)
    if not 0.0 <= validation_size < 1.0 or (split != "none" and not 0.0 < test_size < 1.0):
        raise ConfigError(f"test_size {test_size} must be in (0, 1) and validation_size {validation_size} in [0, 1)")
    rng = np.random.default_rng(seed)
    audio = _group_codes(np.full(codes.size, None) if same_audio is None else same_audio, codes.size)
    first = np.unique(audio, return_index=True)[1]
    every = np.sort(first).astype(np.int64)  # one row per audio: every row when all differ
    if split == "none":
        train, validation = _stratified(codes, every, validation_size, rng)
        return _with_same_audio(train, audio), _with_same_audio(validation, audio), _EMPTY
    if split == "random":
        rest, test = _stratified(codes, every, test_size, rng)
        train, validation = _stratified(codes, rest, validation_size, rng)
        return _with_same_audio(train, audio), _with_same_audio(validation, audio), _with_same_audio(test, audio)
    if split == "speaker":
        if groups is None:
            raise SchemaError("split 'speaker' needs a group key (corpus + speaker) per row")
        group_codes = _joined(_group_codes(groups, codes.size), audio)
        every = np.arange(codes.size, dtype=np.int64)
        rest, test = _grouped(codes, group_codes, every, test_size, rng, part="test")
        train, validation = _grouped(codes, group_codes, rest, validation_size, rng, part="validation")
        return train, validation, test
    raise ConfigError(f"unknown split {split!r}; expected random, speaker or none")


def _with_same_audio(rows: Indices, audio: NDArray[np.int64]) -> Indices:
    # every row whose audio is that of one of ``rows``
    return np.flatnonzero(np.isin(audio, audio[rows])).astype(np.int64)


def _joined(group_codes: NDArray[np.int64], audio: NDArray[np.int64]) -> NDArray[np.int64]:
    # groups linked by rows of the same audio become one group (union-find over group codes)
    parent = list(range(int(group_codes.max()) + 1 if group_codes.size else 0))

    def root(group: int) -> int:
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    first_group: dict[int, int] = {}
    for group, key in zip(group_codes.tolist(), audio.tolist(), strict=True):
        other = first_group.setdefault(key, group)
        parent[root(group)] = root(other)
    return np.array([root(group) for group in group_codes.tolist()], dtype=np.int64)


def copies_of(rows: Indices, keys: ArrayLike, copy_keys: ArrayLike) -> Indices:
    """Which augmented copies belong to the clips ``rows`` (so they may train with them).

    Split the original clips first, then call this with the training rows: copies of a
    validation or test clip are never returned, so no clip's audio reaches both sides.

    Args:
        rows: indices into ``keys`` of the clips on one side of a split.
        keys: source key (e.g. path) of every original clip, shape ``(n,)``.
        copy_keys: source key of every augmented copy, shape ``(m,)``.

    Returns:
        sorted int64 indices into ``copy_keys``.

    >>> copies_of(np.array([0]), ["a.wav", "b.wav"], ["b.wav", "a.wav", "a.wav"]).tolist()
    [1, 2]
    """
    chosen = set(np.asarray(keys, dtype=object)[np.asarray(rows, dtype=np.int64)].tolist())
    flags = [key in chosen for key in np.asarray(copy_keys, dtype=object).tolist()]
    return np.flatnonzero(np.array(flags, dtype=bool)).astype(np.int64)


def group_kfold(
    labels: ArrayLike, groups: ArrayLike, *, n_splits: int = 5, seed: int = 0
) -> Iterator[tuple[Indices, Indices]]:
    """Yield ``(train, test)`` row indices of ``n_splits`` grouped, class-balanced folds.

    Groups are placed largest first (ties in seeded random order) into the fold where
    they bring per-class counts closest to an even share, so every group is in exactly
    one test fold and folds are as stratified as whole groups allow.

    Args:
        labels: class label per row, shape ``(n,)``, no nulls.
        groups: group key per row, shape ``(n,)``; None (or NaN) makes a row its own group.
        n_splits: number of folds, at least 2 and at most the number of groups.
        seed: seed of the tie-breaking order.

    Yields:
        ``(train, test)`` sorted int64 row indices, one pair per fold.

    Raises:
        ConfigError: if ``n_splits`` is out of range.
        SchemaError: if labels or groups are invalid (not 1-D, nulls, wrong length).

    >>> folds = list(group_kfold(["a", "b"] * 6, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5], n_splits=3))
    >>> [len(test) for _, test in folds]
    [4, 4, 4]
    """
    codes = _codes(labels)
    group_codes = _group_codes(groups, codes.size)
    n_groups = int(group_codes.max()) + 1 if group_codes.size else 0
    if not 2 <= n_splits <= n_groups:
        raise ConfigError(f"n_splits {n_splits} must be in [2, {n_groups}] (the number of groups)")
    counts = _count_matrix(group_codes, codes, n_groups)
    target = counts.sum(axis=0) / n_splits
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    filled = np.zeros((n_splits, counts.shape[1]))
    fold_of_group = np.zeros(n_groups, dtype=np.int64)
    for group in order:
        row = counts[group]
        deltas = 2.0 * (filled - target) @ row + row @ row
        fold = int(np.lexsort((filled.sum(axis=1), deltas))[0])  # least cost, then smallest fold
        fold_of_group[group] = fold
        filled[fold] += row
    fold_of_row = fold_of_group[group_codes]
    for fold in range(n_splits):
        yield np.flatnonzero(fold_of_row != fold).astype(np.int64), np.flatnonzero(fold_of_row == fold).astype(np.int64)


def _codes(labels: ArrayLike) -> NDArray[np.int64]:
    values = np.asarray(labels, dtype=object if not isinstance(labels, np.ndarray) else None)
    if values.ndim != 1:
        raise SchemaError(f"labels have shape {values.shape}; expected 1-D")
    if any(_is_null(value) for value in values.tolist()):
        raise SchemaError("labels contain nulls; drop unlabelled rows before splitting")
    if values.size == 0:
        return _EMPTY
    _, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def _group_codes(groups: ArrayLike, n: int) -> NDArray[np.int64]:
    values = np.asarray(groups, dtype=object).reshape(-1).tolist()
    if len(values) != n:
        raise SchemaError(f"{len(values)} group keys for {n} rows")
    seen: dict[object, int] = {}
    codes = np.zeros(n, dtype=np.int64)
    next_code = 0
    for i, value in enumerate(values):
        if _is_null(value):  # an unknown speaker is nobody else: a group of its own
            codes[i], next_code = next_code, next_code + 1
        elif value in seen:
            codes[i] = seen[value]
        else:
            seen[value] = codes[i] = next_code
            next_code += 1
    return codes


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _count_matrix(group_codes: NDArray[np.int64], codes: NDArray[np.int64], n_groups: int) -> NDArray[np.float64]:
    n_classes = int(codes.max()) + 1 if codes.size else 0
    counts = np.zeros((n_groups, n_classes))
    np.add.at(counts, (group_codes, codes), 1.0)
    return counts


def _n_held(n: int, fraction: float) -> int:
    if fraction <= 0.0 or n < 2:
        return 0
    # ceil as scikit-learn sizes a test part; the epsilon keeps 0.2 * 100 from becoming 21
    return min(max(math.ceil(fraction * n - 1e-9), 1), n - 1)


def _stratified(
    codes: NDArray[np.int64], rows: Indices, fraction: float, rng: np.random.Generator
) -> tuple[Indices, Indices]:
    n_held = _n_held(rows.size, fraction)
    if n_held == 0:
        return rows, _EMPTY
    classes, counts = np.unique(codes[rows], return_counts=True)
    quota = counts * (n_held / rows.size)
    take = np.floor(quota).astype(np.int64)
    # largest remainders get the leftover rows; equal remainders are ordered by the seed
    order = np.lexsort((rng.random(classes.size), -(quota - take)))
    take[order[: n_held - int(take.sum())]] += 1
    take = np.minimum(take, counts)
    held = [rng.permutation(rows[codes[rows] == label])[:k] for label, k in zip(classes, take, strict=True)]
    held_rows = np.sort(np.concatenate(held)).astype(np.int64)
    return np.setdiff1d(rows, held_rows).astype(np.int64), held_rows


def _grouped(
    codes: NDArray[np.int64],
    group_codes: NDArray[np.int64],
    rows: Indices,
    fraction: float,
    rng: np.random.Generator,
    *,
    part: str,
) -> tuple[Indices, Indices]:
    if _n_held(rows.size, fraction) == 0:
        return rows, _EMPTY
    groups, group_of_row = np.unique(group_codes[rows], return_inverse=True)
    if groups.size < 2:
        raise ConfigError(f"cannot hold out a {part} part by speaker: only {groups.size} speaker group left")
    counts = _count_matrix(group_of_row.reshape(-1), codes[rows], groups.size)
    target = counts.sum(axis=0) * fraction
    n_trials = max(1, min(32, _GREEDY_BUDGET // groups.size))
    best, best_cost = None, math.inf
    for _ in range(n_trials):
        chosen, cost = _greedy_fill(counts, target, rng.permutation(groups.size))
        if cost < best_cost:
            best, best_cost = chosen, cost
    assert best is not None
    held = best[group_of_row.reshape(-1)]
    return rows[~held], rows[held]


def _greedy_fill(
    counts: NDArray[np.float64], target: NDArray[np.float64], order: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], float]:
    chosen = np.zeros(counts.shape[0], dtype=bool)
    filled = np.zeros(counts.shape[1])
    for group in order:
        row = counts[group]
        if 2.0 * (filled - target) @ row + row @ row < 0.0:  # adding it moves every class closer overall
            chosen[group] = True
            filled += row
    squares = (counts * counts).sum(axis=1)
    if not chosen.any():  # every group overshoots: take the one that overshoots least
        best = order[np.argmin((squares - 2.0 * counts @ target)[order])]
        chosen[best], filled = True, counts[best].copy()
    elif chosen.all():  # a large fraction took everything: give back the group that costs least to lose
        worst = int(np.argmin(squares - 2.0 * counts @ (filled - target)))
        chosen[worst], filled = False, filled - counts[worst]
    return chosen, float(((filled - target) ** 2).sum())
