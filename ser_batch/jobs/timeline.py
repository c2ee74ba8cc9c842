"""One scored recording's emotion timeline, read from a scoring DEST and drawn to a PNG (IO driver over scoring.timeline)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_batch.errors import ConfigError
from ser_batch.scoring.timeline import ChannelTimeline, timeline_png
from ser_batch.storage import files
from ser_batch.storage.tables import read_recording_scores


@dataclass(frozen=True)
class CallTimeline:
    """What ``timeline_png`` draws for one recording, as one model scored it in one run (``run_date``; its ``call_date``)."""

    path: str
    model_id: str
    run_date: str
    call_date: str
    duration_s: float
    channels: tuple[ChannelTimeline, ...]


def recording_uri(path: str) -> str:
    r"""A recording as the scoring tables name it: local paths absolute (``files.local_uri``), remote URIs unchanged.

    A local name that is not UTF-8 (typed, or as its stored ``file://`` URI) becomes the URI stored for it.

    >>> recording_uri("s3://calls/2026/a.wav")
    's3://calls/2026/a.wav'
    >>> recording_uri(os.fsdecode(b"/calls/caf\xe9.wav")), recording_uri("file:///calls/caf%E9.wav")
    ('file:///calls/caf%E9.wav', 'file:///calls/caf%E9.wav')
    """
    return path if files.is_remote(path) else files.local_uri(files.local_path(path))


def read_call_timeline(
    dest: str,
    path: str,
    *,
    model_id: str | None = None,
    call_date: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> CallTimeline:
    """Read one recording's windows from ``DEST/predictions`` (and its length from ``DEST/calls``).

    Args:
        dest: the scoring DEST (local or ``s3://``).
        path: the recording, as given to ``ser-batch score`` (a relative local path is made absolute).
        model_id: the model whose scores to draw; default the one that scored the recording last.
        call_date: look in this call date's partition only (a score run's own report), not every one.
        storage_options: fsspec options for a remote DEST.

    Returns:
        the latest scoring of the recording by that model (its rows of the latest ``scored_at``),
        every channel (a channel without speech has no windows).

    Raises:
        ConfigError: if DEST holds no scores of the recording (or none by ``model_id``).
        SchemaError: for a DEST of the earlier ``run_date`` layout.
        StorageError: if DEST cannot be read.
    """
    uri = recording_uri(path)
    calls, predictions = read_recording_scores(dest, uri, call_date=call_date, storage_options=storage_options)
    where = files.redact(files.join(dest, "calls"))
    if calls.num_rows == 0:
        raise ConfigError(
            f"{path}: never scored into this DEST (no rows for {uri} in {where}); run `ser-batch score` first"
        )
    if model_id is not None:
        calls = calls.filter(pc.equal(calls.column("model_id"), model_id))
        if calls.num_rows == 0:
            raise ConfigError(f"{path}: not scored by model {model_id!r} in {where}")
    latest = calls.take([int(np.argmax(calls.column("scored_at").cast(pa.int64()).to_numpy()))]).to_pylist()[0]
    chosen = {key: latest[key] for key in ("model_id", "content_key", "scored_at", "call_date")}
    windows = _matching(predictions, chosen)
    calls = _matching(calls, chosen)
    roles = dict(zip(calls.column("channel").to_pylist(), calls.column("role").to_pylist(), strict=True))
    channels = []
    for channel in range(int(latest["n_channels"])):
        rows = windows.filter(pc.equal(windows.column("channel"), channel)).sort_by("start_s")
        channels.append(
            ChannelTimeline(
                channel=channel,
                start_s=rows.column("start_s").to_numpy().astype(np.float64),
                end_s=rows.column("end_s").to_numpy().astype(np.float64),
                emotion=tuple(str(name) for name in rows.column("emotion").to_pylist()),
                confidence=rows.column("confidence").to_numpy().astype(np.float64),
                role=roles.get(channel),
            )
        )
    return CallTimeline(
        uri,
        str(latest["model_id"]),
        latest["run_date"].isoformat(),
        str(latest["call_date"]),
        float(latest["duration_s"]),
        tuple(channels),
    )


def _matching(table: pa.Table, values: dict[str, Any]) -> pa.Table:
    # one scoring's rows: a shard stamps all its rows with one scored_at
    mask = pa.array(np.ones(table.num_rows, dtype=bool))  # typed bool: [True] * 0 would be a null array
    for name, value in values.items():
        mask = pc.and_(mask, pc.equal(table.column(name), pa.scalar(value, table.schema.field(name).type)))
    return table.filter(mask)


def timeline_uri(dest: str, path: str) -> str:
    """Where a recording's picture goes by default: ``DEST/plots/<file stem>-<hash of the path>.png``.

    >>> timeline_uri("out", "/calls/2026/11/24/call 7.wav")
    'out/plots/call-7-ea353dff.png'
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.splitext(path.rstrip("/").rsplit("/", 1)[-1])[0]).strip("-.")
    digest = hashlib.sha256(path.encode()).hexdigest()[:8]
    return files.join(dest, "plots", f"{stem or 'recording'}-{digest}.png")


def write_call_timeline(
    dest: str,
    path: str,
    output: str | None = None,
    *,
    model_id: str | None = None,
    call_date: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Draw one recording's emotion timeline from a scoring DEST into a PNG; return where it was written.

    Args:
        dest: the scoring DEST.
        path: the recording (see ``read_call_timeline``).
        output: the PNG's path or URI; default ``timeline_uri(dest, recording)``.
        model_id: the model whose scores to draw; default the latest.
        call_date: look in this call date's partition only.
        storage_options: fsspec options for a remote DEST or output.

    Raises:
        ConfigError: if DEST holds no scores of the recording.
        StorageError: if DEST cannot be read or the output written.
    """
    timeline = read_call_timeline(dest, path, model_id=model_id, call_date=call_date, storage_options=storage_options)
    name = timeline.path.rstrip("/").rsplit("/", 1)[-1]
    title = (
        f"{name} of {timeline.call_date}: top emotion per window, model {timeline.model_id}, scored {timeline.run_date}"
    )
    png = timeline_png(timeline.channels, duration_s=timeline.duration_s, title=title)
    target = output or timeline_uri(dest, timeline.path)
    with files.storage_errors(target):
        files.write_bytes_atomic(target, png, storage_options=storage_options)
    return target
