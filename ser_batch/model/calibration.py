"""Temperature scaling: one scalar that makes a classifier's confidence match its accuracy (pure).

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017, section
4.2: divide the logits ``z`` by a single ``T > 0`` fitted by minimising the negative log-likelihood
on held-out (validation) rows. ``T > 1`` softens over-confident predictions, ``T < 1`` sharpens
under-confident ones, and the top class never changes, so accuracy is untouched.

The models here end in a softmax (and ``mlp-ensemble`` averages five softmaxes), so the
calibration works on probabilities: their logarithm stands in for the logits. For a single softmax,
``log softmax(z) = z - logsumexp(z)`` differs from ``z`` by a per-row constant, which the softmax
cancels, so this *is* temperature scaling of the logits; for the ensemble it scales the log of the
averaged probabilities (its combined output), as one calibrator on the output users see.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch.errors import SchemaError

TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)
"""Search range of the fitted temperature; an edge value means the validation part cannot place it."""

_TINY = 1e-12  # floor of a probability before its logarithm: a float32 softmax underflows to exactly 0


def calibrated_probabilities(probabilities: ArrayLike, temperature: float) -> NDArray[np.float32]:
    """Temperature-scaled probabilities: ``softmax(log(p) / T)`` row by row.

    Args:
        probabilities: shape ``(n, k)``, rows summing to 1 (a softmax output).
        temperature: ``T > 0``; 1 returns the probabilities unchanged.

    Returns:
        float32 array of shape ``(n, k)``, rows summing to 1, each row's argmax unchanged.

    Raises:
        SchemaError: if ``probabilities`` is not 2-D or ``temperature`` is not a positive finite number.

    >>> [round(float(p), 3) for p in calibrated_probabilities([[0.8, 0.2]], 2.0)[0]]
    [0.667, 0.333]
    """
    probs = _matrix(probabilities)
    if not (np.isfinite(temperature) and temperature > 0):
        raise SchemaError(f"temperature {temperature!r} must be a positive finite number")
    if temperature == 1.0 or probs.shape[0] == 0:
        return probs.astype(np.float32)
    return _softmax(np.log(np.maximum(probs, _TINY)) / temperature).astype(np.float32)


def fit_temperature(probabilities: ArrayLike, targets: ArrayLike) -> float:
    """The temperature minimising the negative log-likelihood of ``targets`` (Guo et al. 2017).

    Minimised over ``log T`` with a bounded scalar search (``scipy.optimize.minimize_scalar``)
    inside ``TEMPERATURE_BOUNDS``: the NLL is convex in ``1/T``, so the one minimum is found.

    Args:
        probabilities: uncalibrated probabilities of held-out rows, shape ``(n, k)``.
        targets: the true class index of each row, shape ``(n,)``, in ``[0, k)``.

    Returns:
        ``T`` in ``TEMPERATURE_BOUNDS``; 1.0 when ``n == 0``.

    Raises:
        SchemaError: if the shapes disagree or a target is out of range.

    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(0.0, 2.0, (4000, 3))
    >>> truth = np.array([rng.choice(3, p=p) for p in np.exp(logits) / np.exp(logits).sum(1, keepdims=True)])
    >>> sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)  # over-confident by 3x
    >>> round(fit_temperature(sharp, truth), 1)
    3.0
    """
    from scipy.optimize import minimize_scalar

    probs = _matrix(probabilities)
    index = np.asarray(targets).reshape(-1)
    if index.shape[0] != probs.shape[0]:
        raise SchemaError(f"targets have {index.shape[0]} rows; probabilities {probs.shape[0]}")
    if probs.shape[0] == 0:
        return 1.0
    if not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= probs.shape[1]:
        raise SchemaError(f"targets must be class indices in [0, {probs.shape[1]})")
    log_p = np.log(np.maximum(probs.astype(np.float64), _TINY))
    rows = np.arange(index.size)

    def nll(log_t: float) -> float:
        scaled = log_p / np.exp(log_t)
        peak = scaled.max(axis=1)
        return float(np.mean(peak + np.log(np.exp(scaled - peak[:, None]).sum(axis=1)) - scaled[rows, index]))

    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    best = min((float(result.x), low, high), key=nll)  # the bounded search never evaluates the edges themselves
    return float(np.exp(best))


def _matrix(probabilities: ArrayLike) -> NDArray[np.float64]:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2:
        raise SchemaError(f"probabilities have shape {probs.shape}; expected (n, n_classes)")
    return probs


def _softmax(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    result: NDArray[np.float64] = shifted / shifted.sum(axis=1, keepdims=True)
    return result
