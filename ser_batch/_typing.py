"""Type aliases shared across packages (no runtime code)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Span = tuple[float, float]
"""``(start_s, end_s)`` of a stretch of a recording, in seconds."""

SampleWindow = tuple[int, int]
"""``(start, stop)`` sample offsets of a window into a waveform."""

SampleReader = Callable[[int, int], NDArray[np.floating]]
"""``read(start, stop)``: the samples ``[start, stop)`` of one channel, float in [-1, 1]."""

Indices = NDArray[np.int64]
"""Sorted row numbers of a table."""

Log = Callable[[str], None]
"""Where progress lines go (``print``, a Prefect logger's ``info``)."""

Voices = Sequence[Hashable] | NDArray[Any]
"""The voice of each row (a speaker, a call channel), shape ``(n,)``: rows of one voice are normalised together."""
