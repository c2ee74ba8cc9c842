from __future__ import annotations

import numpy as np
import pytest

from ser_batch.errors import SchemaError
from ser_batch.model.calibration import TEMPERATURE_BOUNDS, calibrated_probabilities, fit_temperature
from ser_batch.model.metrics import expected_calibration_error


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _calibrated_sample(rng: np.random.Generator, n: int, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    # logits whose softmax is the true class distribution: labels drawn from it are perfectly calibrated
    logits = rng.normal(0.0, 2.0, (n, k))
    probs = _softmax(logits)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("temperature", [0.5, 2.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_made_logits_over_or_under_confident(
    rng: np.random.Generator, temperature: float
) -> None:
    logits, labels = _calibrated_sample(rng, 20_000)
    # the model's logits are the calibrated ones times T, so dividing by the fitted T undoes it
    fitted = fit_temperature(_softmax(logits * temperature), labels)
    assert fitted == pytest.approx(temperature, rel=0.05)


def test_fit_temperature_of_calibrated_probabilities_is_one(rng: np.random.Generator) -> None:
    logits, labels = _calibrated_sample(rng, 20_000)
    assert fit_temperature(_softmax(logits), labels) == pytest.approx(1.0, rel=0.05)


def test_fit_temperature_works_on_averaged_probabilities_of_an_ensemble(rng: np.random.Generator) -> None:
    logits, labels = _calibrated_sample(rng, 20_000)
    members = [_softmax(3.0 * (logits + rng.normal(0.0, 0.3, logits.shape))) for _ in range(5)]
    averaged = np.mean(members, axis=0)
    before = expected_calibration_error(labels, averaged, classes=range(6))
    after = expected_calibration_error(
        labels, calibrated_probabilities(averaged, fit_temperature(averaged, labels)), classes=range(6)
    )
    assert before > 0.1
    assert after < 0.02


def test_fit_temperature_without_rows_is_one() -> None:
    assert fit_temperature(np.zeros((0, 6)), np.zeros(0, np.int64)) == 1.0


def test_fit_temperature_stays_inside_its_bounds_on_separable_rows() -> None:
    # always right at confidence 0.9: the likelihood keeps rising as T falls
    probs = np.tile([[0.9, 0.1]], (100, 1))
    assert fit_temperature(probs, np.zeros(100, np.int64)) == pytest.approx(TEMPERATURE_BOUNDS[0], rel=0.01)


def test_fit_temperature_refuses_targets_out_of_range() -> None:
    with pytest.raises(SchemaError, match="class indices"):
        fit_temperature(np.full((2, 3), 1 / 3), np.array([0, 3]))


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5, 15.0])
def test_calibration_never_changes_the_top_class(rng: np.random.Generator, temperature: float) -> None:
    probs = _softmax(rng.normal(0.0, 3.0, (1000, 6)))
    calibrated = calibrated_probabilities(probs, temperature)
    assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))
    assert calibrated.dtype == np.float32
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-5)


def test_calibration_scales_the_logits() -> None:
    logits = np.array([[2.0, 0.0, -1.0]])
    np.testing.assert_allclose(calibrated_probabilities(_softmax(logits), 2.0), _softmax(logits / 2.0), atol=1e-6)


def test_calibration_keeps_rows_with_a_zero_probability_finite() -> None:
    calibrated = calibrated_probabilities(np.array([[1.0, 0.0, 0.0]], np.float32), 3.0)
    assert np.isfinite(calibrated).all()
    assert calibrated[0].argmax() == 0


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_calibration_refuses_a_temperature_that_is_not_positive_and_finite(temperature: float) -> None:
    with pytest.raises(SchemaError, match="temperature"):
        calibrated_probabilities(np.full((1, 2), 0.5), temperature)
