"""Speech segments of a call channel and the call figures from their predictions (pure)."""

from __future__ import annotations

from ser_batch.scoring.calls import CallSummary, call_columns, call_summary, segment_columns
from ser_batch.scoring.segments import speech_spans, speech_windows, streamed_speech_spans, windows
from ser_batch.scoring.timeline import (
    EMOTION_COLOURS,
    ChannelTimeline,
    speech_intervals,
    timeline_png,
    timeline_size,
)

__all__ = [
    "CallSummary",
    "ChannelTimeline",
    "EMOTION_COLOURS",
    "call_columns",
    "call_summary",
    "segment_columns",
    "speech_intervals",
    "speech_spans",
    "speech_windows",
    "streamed_speech_spans",
    "timeline_png",
    "timeline_size",
    "windows",
]
