"""Speech segments of a call channel and the call figures from their predictions (pure)."""

from __future__ import annotations

from ser_batch.scoring.calls import ANGRY, CallSummary, call_columns, call_summary, segment_columns
from ser_batch.scoring.segments import speech_spans, speech_windows, streamed_speech_spans, windows

__all__ = [
    "ANGRY",
    "CallSummary",
    "call_columns",
    "call_summary",
    "segment_columns",
    "speech_spans",
    "speech_windows",
    "streamed_speech_spans",
    "windows",
]
