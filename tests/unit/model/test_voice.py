from __future__ import annotations

import numpy as np
import pytest

from ser_batch.errors import SchemaError
from ser_batch.model.voice import VoicePrior, normalise_voices, voice_prior


def voices_with_offsets(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # three voices: the same two "emotions" (+/-1 on feature 0) on top of very different voice levels
    offsets = np.array([[0.0, 0.0], [20.0, -5.0], [-8.0, 3.0]])
    voice = np.repeat(np.arange(3), 40)
    emotion = np.tile([-1.0, 1.0], 60)
    features = offsets[voice] + np.c_[emotion, np.zeros(120)] + rng.normal(0, 0.1, (120, 2))
    return features.astype(np.float32), voice, emotion


def test_normalising_by_voice_removes_the_voice_and_keeps_the_emotion(rng) -> None:
    features, voice, emotion = voices_with_offsets(rng)
    prior = voice_prior(features, voice, weight=0.0)
    normalised = normalise_voices(features, voice, prior)
    for v in range(3):
        np.testing.assert_allclose(normalised[voice == v].mean(axis=0), 0.0, atol=1e-5)
    assert np.corrcoef(normalised[:, 0], emotion)[0, 1] > 0.99
    assert abs(np.corrcoef(features[:, 0], emotion)[0, 1]) < 0.2  # before: the voice level swamps the emotion


def test_the_prior_counts_every_voice_once(rng) -> None:
    features = np.r_[np.zeros((90, 1)), np.full((10, 1), 10.0)].astype(np.float32)
    prior = voice_prior(features, ["big"] * 90 + ["small"] * 10, weight=3.0)
    assert prior.mean.tolist() == [5.0] and prior.variance.tolist() == [0.0] and prior.weight == 3.0


def test_few_clips_lean_on_the_prior_and_many_on_themselves() -> None:
    prior = VoicePrior(np.zeros(1), np.ones(1), weight=10.0)
    one = normalise_voices(np.array([[4.0]], np.float32), ["a"], prior)
    mean = 4.0 / 11  # one clip against ten pseudo-clips at the population mean 0
    assert one[0, 0] == pytest.approx((4.0 - mean) / np.sqrt(((4.0 - mean) ** 2 + 10.0) / 11), rel=1e-5)
    assert 2.0 < one[0, 0] < 4.0  # near the population's z-score (4), not the voice's own (undefined)
    many = np.r_[np.full(500, 3.0), np.full(500, 5.0)][:, None].astype(np.float32)
    out = normalise_voices(many, ["a"] * 1000, prior)
    assert abs(out.mean()) < 0.05 and out.std() == pytest.approx(1.0, abs=0.02)  # 1,000 clips outweigh 10 pseudo-clips


def test_rows_of_a_voice_need_not_be_adjacent_and_constants_stay_finite() -> None:
    features = np.array([[1.0, 7.0], [10.0, 7.0], [3.0, 7.0], [12.0, 7.0]], np.float32)
    out = normalise_voices(features, ["a", "b", "a", "b"], VoicePrior(np.zeros(2), np.zeros(2), weight=0.0))
    np.testing.assert_allclose(out[:, 0], [-1, -1, 1, 1], rtol=1e-5)
    assert np.isfinite(out).all() and (out[:, 1] == 0).all()


def test_shapes_are_checked_and_the_prior_round_trips_through_json() -> None:
    prior = VoicePrior(np.array([1.0, 2.0]), np.array([3.0, 4.0]), weight=10.0)
    again = VoicePrior.from_dict(prior.as_dict())
    assert again.mean.tolist() == [1.0, 2.0] and again.variance.tolist() == [3.0, 4.0] and again.weight == 10.0
    with pytest.raises(SchemaError, match="voice prior has 2"):
        normalise_voices(np.zeros((2, 3), np.float32), ["a", "a"], prior)
    with pytest.raises(SchemaError, match="need"):
        normalise_voices(np.zeros((2, 2), np.float32), ["a"], prior)
