from __future__ import annotations

import struct

import numpy as np
import pytest

from ser_batch.errors import SchemaError
from ser_batch.scoring.timeline import ChannelTimeline, speech_intervals, timeline_png, timeline_size


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def channel(index: int, starts: list[float], emotions: list[str]) -> ChannelTimeline:
    start = np.array(starts, dtype=np.float64)
    return ChannelTimeline(index, start, start + 3.0, tuple(emotions), np.linspace(0.4, 0.9, len(starts)))


def test_a_stereo_timeline_is_a_png_of_the_documented_size() -> None:
    channels = [channel(0, [1.0, 2.5, 4.0], ["neutral"] * 3), channel(1, [9.0, 10.5], ["angry", "sad"])]

    png = timeline_png(channels, duration_s=15.0, title="call-0002.wav")

    assert png_size(png) == timeline_size(2) == (1000, 520)


def test_a_channel_without_speech_and_a_mono_call_still_draw() -> None:
    png = timeline_png([channel(0, [], [])], duration_s=8.0, title="silent")

    assert png_size(png) == timeline_size(1) == (1000, 320)


def test_speech_is_the_union_of_overlapping_windows() -> None:
    assert speech_intervals(np.array([6.0, 0.0, 1.5]), np.array([9.0, 3.0, 4.5])) == [(0.0, 4.5), (6.0, 9.0)]
    assert speech_intervals(np.array([]), np.array([])) == []


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ([], "at least one channel"),
        ([channel(0, [1.0], ["furious"])], "unknown emotions"),
        ([ChannelTimeline(0, np.zeros(2), np.ones(2), ("sad",), np.ones(2))], "differ in length"),
    ],
)
def test_bad_timelines_raise_schema_errors(channels, message) -> None:
    with pytest.raises(SchemaError, match=message):
        timeline_png(channels, duration_s=5.0, title="x")
