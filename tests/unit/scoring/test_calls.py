from __future__ import annotations

import numpy as np
import pytest

from ser_batch.config import EMOTIONS
from ser_batch.errors import SchemaError
from ser_batch.scoring.calls import CallSummary, call_columns, call_summary, segment_columns
from ser_batch.scoring.segments import windows

CLASSES = ("angry", "happy", "neutral", "sad")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


def _one_hot(indices: list[int], n_classes: int = len(CLASSES), p: float = 0.7) -> np.ndarray:
    probs = np.full((len(indices), n_classes), (1.0 - p) / (n_classes - 1))
    probs[np.arange(len(indices)), indices] = p
    return probs


def _random_segments(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = rng.uniform(0, 60, n)
    ends = starts + rng.uniform(0.5, 4.0, n)
    return starts, ends, rng.dirichlet(np.ones(len(CLASSES)), n)


def _brute_force_time(starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, step: float) -> np.ndarray:
    # Sample instants on a grid: the rule applied literally, one instant at a time.
    time = np.zeros(probs.shape[1])
    for t in np.arange(0.0, ends.max() + step, step) + step / 2:
        covering = (starts <= t) & (t < ends)
        if covering.any():
            time[int(np.argmax(probs[covering].mean(axis=0)))] += step
    return time


@pytest.mark.parametrize("n_segments", [1, 5, 40])
def test_shares_sum_to_one_and_lie_in_unit_interval(n_segments: int, rng: np.random.Generator) -> None:
    summary = call_summary(*_random_segments(rng, n_segments), CLASSES)

    shares = np.array(list(summary.shares.values()))
    assert list(summary.shares) == list(CLASSES)
    assert shares.sum() == pytest.approx(1.0)
    assert np.all((shares >= 0) & (shares <= 1))


def test_speech_s_is_the_union_of_windows_not_their_sum() -> None:
    summary = call_summary([0.0, 1.5, 10.0], [3.0, 4.5, 13.0], _one_hot([0, 1, 2]), CLASSES)

    assert summary.speech_s == pytest.approx(7.5)
    assert summary.n_segments == 3


def test_windows_from_spans_have_speech_s_equal_to_the_spans() -> None:
    spans = [(0.5, 3.2), (5.0, 12.3), (13.0, 14.0)]
    cut = windows(spans, window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=14.0)
    starts, ends = np.array(cut).T

    summary = call_summary(starts, ends, _one_hot([0] * len(cut)), CLASSES)

    assert summary.speech_s == pytest.approx(sum(end - start for start, end in spans))
    assert summary.n_segments == len(cut)


def test_disjoint_windows_give_each_its_top_class() -> None:
    summary = call_summary([0.0, 5.0, 10.0], [3.0, 6.0, 12.0], _one_hot([3, 0, 3]), CLASSES)

    assert summary.shares == pytest.approx({"angry": 1 / 6, "happy": 0.0, "neutral": 0.0, "sad": 5 / 6})
    assert summary.dominant_emotion == "sad"


def test_overlaps_go_to_the_top_class_of_the_averaged_probabilities() -> None:
    # Overlap [2, 3]: mean (0.3, 0.7) -> sad, although the first window says angry.
    probs = np.array([[0.6, 0.0, 0.0, 0.4], [0.0, 0.0, 0.0, 1.0]])

    summary = call_summary([0.0, 2.0], [3.0, 5.0], probs, CLASSES)

    assert summary.shares["angry"] == pytest.approx(2 / 5)
    assert summary.shares["sad"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("seed", range(3))
def test_shares_match_a_brute_force_sweep(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Edges on a 0.25 s grid, so a 0.05 s sampling grid is exact.
    starts = rng.integers(0, 80, 12) * 0.25
    ends = starts + rng.integers(1, 16, 12) * 0.25
    probs = rng.dirichlet(np.ones(len(CLASSES)), 12)

    summary = call_summary(starts, ends, probs, CLASSES)

    expected = _brute_force_time(starts, ends, probs, step=0.05)
    assert summary.speech_s == pytest.approx(expected.sum())
    assert list(summary.shares.values()) == pytest.approx(list(expected / expected.sum()))


def test_probability_tie_goes_to_the_first_class_in_order() -> None:
    probs = [[0.5, 0.0, 0.0, 0.5]]

    assert call_summary([0.0], [3.0], probs, CLASSES).shares["angry"] == 1.0
    reversed_summary = call_summary([0.0], [3.0], [row[::-1] for row in probs], CLASSES[::-1])
    assert reversed_summary.shares["sad"] == 1.0


def test_overlap_tie_after_averaging_goes_to_the_first_class() -> None:
    # Overlap [1, 2]: mean (0.5, 0, 0, 0.5), a tie that floating sums must not break.
    probs = np.array([[0.9, 0.0, 0.0, 0.1], [0.1, 0.0, 0.0, 0.9]])

    summary = call_summary([0.0, 1.0], [2.0, 3.0], probs, CLASSES)

    assert summary.shares["angry"] == pytest.approx(2 / 3)
    assert summary.shares["sad"] == pytest.approx(1 / 3)


def test_dominant_emotion_is_the_largest_share() -> None:
    summary = call_summary([0.0, 3.0, 6.0], [3.0, 6.0, 8.0], _one_hot([2, 2, 0]), CLASSES)

    assert summary.dominant_emotion == "neutral"


def test_dominant_emotion_tie_goes_to_the_first_class_in_order() -> None:
    summary = call_summary([0.0, 5.0], [2.0, 7.0], _one_hot([3, 1]), CLASSES)

    assert summary.dominant_emotion == "happy"


def test_peak_anger_is_the_start_of_the_angriest_window() -> None:
    probs = np.array([[0.2, 0.8, 0, 0], [0.9, 0.1, 0, 0], [0.4, 0.6, 0, 0]])

    summary = call_summary([12.0, 4.5, 0.0], [15.0, 7.5, 3.0], probs, CLASSES)

    assert summary.peak_angry_s == 4.5
    assert summary.peak_angry_probability == pytest.approx(0.9)


def test_peak_anger_tie_goes_to_the_earliest_window() -> None:
    probs = np.array([[0.7, 0.3, 0, 0], [0.7, 0.3, 0, 0]])

    summary = call_summary([9.0, 3.0], [12.0, 6.0], probs, CLASSES)

    assert summary.peak_angry_s == 3.0


def test_no_angry_class_gives_no_peak() -> None:
    summary = call_summary([0.0], [3.0], [[0.5, 0.5]], ("happy", "sad"))

    assert summary.peak_angry_s is None
    assert summary.peak_angry_probability is None


def test_input_order_does_not_matter(rng: np.random.Generator) -> None:
    starts, ends, probs = _random_segments(rng, 20)
    order = rng.permutation(20)

    assert call_summary(starts[order], ends[order], probs[order], CLASSES) == call_summary(starts, ends, probs, CLASSES)


def test_no_segments_give_an_empty_summary() -> None:
    summary = call_summary([], [], np.empty((0, len(CLASSES))), CLASSES)

    assert summary == CallSummary(
        speech_s=0.0,
        n_segments=0,
        shares=dict.fromkeys(CLASSES, 0.0),
        dominant_emotion=None,
        peak_angry_s=None,
        peak_angry_probability=None,
    )


def test_empty_probabilities_list_is_accepted() -> None:
    assert call_summary([], [], [], CLASSES).n_segments == 0


def test_zero_length_windows_have_no_speech_but_a_peak() -> None:
    summary = call_summary([2.0], [2.0], _one_hot([0]), CLASSES)

    assert summary.speech_s == 0.0
    assert summary.dominant_emotion is None
    assert summary.peak_angry_s == 2.0


@pytest.mark.parametrize(
    ("starts", "ends", "probs", "classes", "match"),
    [
        ([0.0, 1.0], [1.0], [[1.0, 0.0]] * 2, ("a", "b"), "end_s shape"),
        ([0.0], [1.0], [[1.0, 0.0, 0.0]], ("a", "b"), "probabilities shape"),
        ([0.0], [1.0], [1.0, 0.0], ("a", "b"), "probabilities shape"),
        ([2.0], [1.0], [[1.0, 0.0]], ("a", "b"), "before it starts"),
        ([0.0], [np.nan], [[1.0, 0.0]], ("a", "b"), "finite"),
        ([0.0], [1.0], [[np.inf, 0.0]], ("a", "b"), "finite"),
        ([0.0], [1.0], [[1.0, 0.0]], ("a", "a"), "unique"),
        ([0.0], [1.0], [[]], (), "non-empty"),
    ],
    ids=["lengths", "classes", "1-d-probs", "reversed", "nan-time", "inf-prob", "duplicate-class", "no-class"],
)
def test_bad_input_raises_schema_error(
    starts: list[float], ends: list[float], probs: list[list[float]], classes: tuple[str, ...], match: str
) -> None:
    with pytest.raises(SchemaError, match=match):
        call_summary(starts, ends, probs, classes)


COLUMN_CLASSES = ("angry", "happy", "sad")
WINDOWS = [(0.0, 3.0), (1.5, 4.5), (10.0, 12.0)]
PROBS = np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])


def test_segment_columns_give_top_class_confidence_and_every_emotion() -> None:
    columns = segment_columns(WINDOWS, PROBS, COLUMN_CLASSES)

    assert columns["emotion"] == ["angry", "sad", "angry"]  # the 0.4/0.4 tie goes to the first class
    assert columns["confidence"] == pytest.approx([0.7, 0.6, 0.4])
    assert columns["prob_sad"] == pytest.approx([0.1, 0.6, 0.2])
    assert [key for key in columns if key.startswith("prob_")] == [f"prob_{e}" for e in EMOTIONS]
    assert columns["prob_calm"] == [None] * 3


def test_segment_columns_mark_windows_below_the_min_confidence_uncertain() -> None:
    assert segment_columns(WINDOWS, PROBS, COLUMN_CLASSES, min_confidence=0.6)["uncertain"] == [False, False, True]
    assert segment_columns(WINDOWS, PROBS, COLUMN_CLASSES, min_confidence=0.0)["uncertain"] == [False] * 3


def test_call_columns_summarise_and_fill_every_emotion() -> None:
    row = call_columns(WINDOWS, PROBS, COLUMN_CLASSES)

    assert row["speech_s"] == pytest.approx(6.5) and row["n_segments"] == 3
    assert sum(row[f"share_{c}"] for c in COLUMN_CLASSES) == pytest.approx(1.0)
    assert row["share_boredom"] is None
    assert row["peak_angry_s"] == 0.0


@pytest.mark.parametrize(
    ("probs", "classes"),
    [(np.ones((2, 3)), COLUMN_CLASSES), (np.ones((3, 2)), COLUMN_CLASSES), (np.ones((3, 2)), ("angry", "grumpy"))],
)
def test_bad_shapes_or_classes_raise_schema_error(probs, classes) -> None:
    with pytest.raises(SchemaError):
        segment_columns(WINDOWS, probs, classes)
