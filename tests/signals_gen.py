"""Generated test signals (shared by unit, flow and e2e tests)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def sine(duration_s: float, sample_rate: int, frequency: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def chirp(duration_s: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (0.4 * np.sin(2 * np.pi * (100 + 800 * t / duration_s) * t)).astype(np.float32)


def noise(duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(duration_s * sample_rate)).astype(np.float32)


SIGNALS: dict[str, Callable[[float, int], np.ndarray]] = {"sine": sine, "chirp": chirp, "noise": noise}
