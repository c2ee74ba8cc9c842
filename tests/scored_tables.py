"""Scoring tables written straight into a DEST, for tests that read them (plots, reports) without scoring audio."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from ser_batch.schema import CALLS_SCHEMA, PREDICTIONS_SCHEMA, SCORE_ERRORS_SCHEMA
from ser_batch.scoring import call_columns, segment_columns
from ser_batch.shards import FileInfo, shard_id
from ser_batch.storage import write_scores

CLASSES = ("angry", "neutral", "sad")


def scored_call(
    path: str,
    channels: Sequence[Sequence[tuple[float, float, str]]],
    *,
    model_id: str = "mlp-stats8k-000000000001",
    content_key: str = "100:1",
    scored_at: datetime = datetime(2026, 11, 24, 2, 0, tzinfo=UTC),
    duration_s: float = 20.0,
    call_date: str = "2026-11-23",
    run_date: date = date(2026, 11, 24),
    roles: Sequence[str] | None = None,
) -> dict[str, list[dict]]:
    """Predictions and calls rows of one recording: per channel, windows ``(start_s, end_s, top emotion)``."""
    predictions, calls = [], []
    for channel, windows in enumerate(channels):
        spans = [(start, end) for start, end, _ in windows]
        probabilities = np.array([[0.8 if name == top else 0.1 for name in CLASSES] for _, _, top in windows])
        probabilities = probabilities.reshape(len(windows), len(CLASSES))
        keys = {
            "model_id": model_id,
            "content_key": content_key,
            "scored_at": scored_at,
            "run_date": run_date,
            "call_date": call_date,
            "role": None if roles is None else roles[channel],
        }
        segments = segment_columns(spans, probabilities, CLASSES)
        predictions += [
            {"path": path, "channel": channel, **{k: v[i] for k, v in segments.items()}, **keys}
            for i in range(len(windows))
        ]
        row = call_columns(spans, probabilities, CLASSES)
        calls.append(
            {
                "path": path,
                "channel": channel,
                "n_channels": len(channels),
                "sample_rate": 8000,
                "duration_s": duration_s,
                **row,
                **keys,
            }
        )
    return {"predictions": predictions, "calls": calls}


def write_scored(
    dest: Path | str,
    recordings: Sequence[dict[str, list[dict]]],
    *,
    shard: str = "s1",
    errors: Sequence[dict] = (),
) -> list[str]:
    """Write ``scored_call`` rows (and error rows, with their ``call_date``) as the part files of the shard named ``shard``.

    Returns their URIs.
    """
    tables = {
        "errors": pa.Table.from_pylist(
            [{"run_date": date(2026, 11, 24), "call_date": "2026-11-23", **row} for row in errors],
            schema=SCORE_ERRORS_SCHEMA,
        ),
        "predictions": pa.Table.from_pylist([r for rec in recordings for r in rec["predictions"]], PREDICTIONS_SCHEMA),
        "calls": pa.Table.from_pylist([r for rec in recordings for r in rec["calls"]], schema=CALLS_SCHEMA),
    }
    days = {day for table in tables.values() for day in table.column("call_date").to_pylist()}
    return write_scores(tables, str(dest), shard_id_of(shard), call_dates=days)


def shard_id_of(name: str) -> str:
    """A shard id of the form ``shards.shard_id`` gives, named by ``name``."""
    return shard_id([FileInfo(name, 0, "0:0")], "test")
