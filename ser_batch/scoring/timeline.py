"""A picture of one scored call: each channel's top emotion and its probability over time (pure: bytes out, no IO)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ser_batch.config import EMOTIONS
from ser_batch.errors import SchemaError
from ser_batch.scoring.calls import span_union

if TYPE_CHECKING:
    from matplotlib.axes import Axes

EMOTION_COLOURS: dict[str, str] = {
    "angry": "#d62728",
    "calm": "#17becf",
    "disgust": "#8c564b",
    "fear": "#9467bd",
    "happy": "#e5ae00",
    "neutral": "#7f7f7f",
    "sad": "#1f77b4",
    "surprise": "#e377c2",
    "boredom": "#bcbd22",
}
"""One fixed colour per emotion, so every picture reads the same."""

_DPI = 100
_WIDTH_IN = 10.0
_HEADER_IN, _CHANNEL_IN = 1.2, 2.0


@dataclass(frozen=True)
class ChannelTimeline:
    """The scored windows of one channel of a recording (rows of the predictions table).

    Attributes:
        channel: the channel index in the recording (0 = first).
        start_s: window starts in seconds, shape ``(n,)``.
        end_s: window ends in seconds, shape ``(n,)``.
        emotion: each window's top emotion, ``n`` names from ``EMOTIONS``.
        confidence: each window's probability of that emotion in [0, 1], shape ``(n,)``.
        role: the channel's role (``--channel-roles``, e.g. ``customer``), None when unknown.
    """

    channel: int
    start_s: NDArray[np.float64]
    end_s: NDArray[np.float64]
    emotion: tuple[str, ...]
    confidence: NDArray[np.float64]
    role: str | None = None


def timeline_size(n_channels: int) -> tuple[int, int]:
    """Width and height in pixels of ``timeline_png`` for a recording of ``n_channels``.

    >>> timeline_size(1), timeline_size(2)
    ((1000, 320), (1000, 520))
    """
    height_in = _HEADER_IN + _CHANNEL_IN * max(1, n_channels)
    return round(_WIDTH_IN * _DPI), round(height_in * _DPI)


def speech_intervals(start_s: NDArray[np.float64], end_s: NDArray[np.float64]) -> list[tuple[float, float]]:
    """The union of windows as sorted, disjoint ``(start_s, end_s)`` intervals: where speech was scored.

    >>> speech_intervals(np.array([0.0, 1.5, 6.0]), np.array([3.0, 4.5, 9.0]))
    [(0.0, 4.5), (6.0, 9.0)]
    """
    return span_union(zip(start_s.tolist(), end_s.tolist(), strict=True))


def timeline_png(channels: Sequence[ChannelTimeline], *, duration_s: float, title: str) -> bytes:
    """Draw a recording's emotion timeline, one panel per channel, as PNG bytes of ``timeline_size``.

    Each scored window is a bar at its centre, one hop wide (the median step between window
    starts), as tall as the probability of its top emotion and coloured by that emotion;
    grey shading marks where speech was scored (the union of the windows). A channel
    without speech shows an empty panel saying so.

    Args:
        channels: the recording's channels in order, with their windows (any may have none).
        duration_s: the recording's length in seconds (the x axis).
        title: the picture's title (e.g. the recording's name and model id).

    Returns:
        PNG bytes, ``timeline_size(len(channels))`` pixels.

    Raises:
        SchemaError: if ``channels`` is empty, lengths disagree or an emotion is unknown.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not channels:
        raise SchemaError("a timeline needs at least one channel")
    width_px, height_px = timeline_size(len(channels))
    figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(len(channels), 1, sharex=True, squeeze=False)[:, 0]
    seen: list[str] = []
    for axes, channel in zip(axes_list, channels, strict=True):
        _draw_channel(axes, channel, seen)
        axes.set_xlim(0.0, max(duration_s, 1e-3))
    axes_list[-1].set_xlabel("time (s)")
    handles = [Patch(color=EMOTION_COLOURS[name], label=name) for name in EMOTIONS if name in seen]
    handles.append(Patch(color="#e8e8e8", label="speech"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    figure.suptitle(title, fontsize=10, x=0.01, ha="left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _draw_channel(axes: Axes, channel: ChannelTimeline, seen: list[str]) -> None:
    n = len(channel.emotion)
    if not (channel.start_s.shape == channel.end_s.shape == channel.confidence.shape == (n,)):
        raise SchemaError(f"channel {channel.channel}: window starts, ends, emotions and confidences differ in length")
    unknown = sorted(set(channel.emotion) - set(EMOTIONS))
    if unknown:
        raise SchemaError(f"channel {channel.channel}: unknown emotions {unknown}")
    for start, end in speech_intervals(channel.start_s, channel.end_s):
        axes.axvspan(start, end, color="#e8e8e8", zorder=0)
    if n:
        starts = np.sort(channel.start_s)
        steps = np.diff(starts)
        lengths = channel.end_s - channel.start_s
        width = float(np.median(steps[steps > 0])) if np.any(steps > 0) else float(np.median(lengths))
        width = min(width, float(np.median(lengths)))
        centres = (channel.start_s + channel.end_s) / 2
        colours = [EMOTION_COLOURS[name] for name in channel.emotion]
        axes.bar(centres, channel.confidence, width=width, color=colours, zorder=2)
        seen.extend(name for name in channel.emotion if name not in seen)
    else:
        axes.text(0.5, 0.5, "no speech", transform=axes.transAxes, ha="center", va="center", color="#7f7f7f")
    axes.set_ylim(0.0, 1.0)
    name = f"channel {channel.channel}" + (f" ({channel.role})" if channel.role else "")
    axes.set_ylabel(f"{name}\ntop probability", fontsize=9)
    axes.grid(axis="y", alpha=0.3, zorder=1)
