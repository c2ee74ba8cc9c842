"""Speech segments of a call channel and the call figures from their predictions (pure)."""

from __future__ import annotations

from ser_batch.scoring.calls import CallSummary, call_columns, call_summary, segment_columns
from ser_batch.scoring.crosstalk import (
    DUPLICATE_CORRELATION,
    EXCERPT_S,
    SPEECH_BAND_HZ,
    attributed_spans,
    band_levels,
    duplicate_channels,
    frame_centres,
    frame_geometry,
    max_correlation,
    similar_levels,
)
from ser_batch.scoring.segments import speech_spans, speech_windows, streamed_speech_spans, windows
from ser_batch.scoring.timeline import (
    EMOTION_COLOURS,
    ChannelTimeline,
    speech_intervals,
    timeline_png,
    timeline_size,
)

__all__ = [
    "DUPLICATE_CORRELATION",
    "EMOTION_COLOURS",
    "EXCERPT_S",
    "SPEECH_BAND_HZ",
    "CallSummary",
    "ChannelTimeline",
    "attributed_spans",
    "band_levels",
    "call_columns",
    "call_summary",
    "duplicate_channels",
    "frame_centres",
    "frame_geometry",
    "max_correlation",
    "segment_columns",
    "similar_levels",
    "speech_intervals",
    "speech_spans",
    "speech_windows",
    "streamed_speech_spans",
    "timeline_png",
    "timeline_size",
    "windows",
]
