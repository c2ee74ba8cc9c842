"""Scoring tables written straight into a DEST, for tests that read them (plots, reports) without scoring audio."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
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
) -> dict[str, list[dict]]:
    """Predictions and calls rows of one recording: per channel, windows ``(start_s, end_s, top emotion)``."""
    predictions, calls = [], []
    for channel, windows in enumerate(channels):
        spans = [(start, end) for start, end, _ in windows]
        probabilities = np.array([[0.8 if name == top else 0.1 for name in CLASSES] for _, _, top in windows])
        probabilities = probabilities.reshape(len(windows), len(CLASSES))
        keys = {"model_id": model_id, "content_key": content_key, "scored_at": scored_at}
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
    run_date: str = "2026-11-24",
    shard: str = "s1",
    errors: Sequence[dict] = (),
) -> list[str]:
    """Write ``scored_call`` rows (and error rows) as the part files of the shard named ``shard``; returns their URIs."""
    tables = {
        "errors": pa.Table.from_pylist(list(errors), schema=SCORE_ERRORS_SCHEMA),
        "predictions": pa.Table.from_pylist([r for rec in recordings for r in rec["predictions"]], PREDICTIONS_SCHEMA),
        "calls": pa.Table.from_pylist([r for rec in recordings for r in rec["calls"]], schema=CALLS_SCHEMA),
    }
    return write_scores(tables, str(dest), run_date, shard_id_of(shard))


def shard_id_of(name: str) -> str:
    """A shard id of the form ``shards.shard_id`` gives, named by ``name``."""
    return shard_id([FileInfo(name, 0, "0:0")], "test")
