from __future__ import annotations

import numpy as np
import pytest

from ser_batch.config import EMOTIONS, feature_config
from ser_batch.errors import SchemaError
from ser_batch.prediction import call_columns, segment_columns, window_features

CLASSES = ("angry", "happy", "sad")
WINDOWS = [(0.0, 3.0), (1.5, 4.5), (10.0, 12.0)]
PROBS = np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])


def test_segment_columns_give_top_class_confidence_and_every_emotion() -> None:
    columns = segment_columns(WINDOWS, PROBS, CLASSES)

    assert columns["emotion"] == ["angry", "sad", "angry"]  # the 0.4/0.4 tie goes to the first class
    assert columns["confidence"] == pytest.approx([0.7, 0.6, 0.4])
    assert columns["prob_sad"] == pytest.approx([0.1, 0.6, 0.2])
    assert [key for key in columns if key.startswith("prob_")] == [f"prob_{e}" for e in EMOTIONS]
    assert columns["prob_calm"] == [None] * 3


def test_call_columns_summarise_and_fill_every_emotion() -> None:
    row = call_columns(WINDOWS, PROBS, CLASSES)

    assert row["speech_s"] == pytest.approx(6.5) and row["n_segments"] == 3
    assert sum(row[f"share_{c}"] for c in CLASSES) == pytest.approx(1.0)
    assert row["share_boredom"] is None
    assert row["peak_angry_s"] == 0.0


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
def test_window_features_resample_each_window_to_the_feature_rate(sample_rate) -> None:
    config = feature_config("seed268")
    t = np.arange(4 * sample_rate) / sample_rate
    waveform = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)

    matrix = window_features(waveform, sample_rate, [(0.0, 3.0), (1.0, 4.0)], config)

    assert matrix.shape == (2, 268) and matrix.dtype == np.float32 and np.isfinite(matrix).all()
    np.testing.assert_allclose(matrix[0], matrix[1], rtol=1e-3, atol=1e-3)  # a steady tone looks the same


def test_window_features_of_no_windows_is_empty() -> None:
    assert window_features(np.zeros(8000, np.float32), 8000, [], feature_config("seed268")).shape == (0, 268)


@pytest.mark.parametrize(("probs", "classes"), [(np.ones((2, 3)), CLASSES), (np.ones((3, 2)), CLASSES),
                                                (np.ones((3, 2)), ("angry", "grumpy"))])  # fmt: skip
def test_bad_shapes_or_classes_raise_schema_error(probs, classes) -> None:
    with pytest.raises(SchemaError):
        segment_columns(WINDOWS, probs, classes)
