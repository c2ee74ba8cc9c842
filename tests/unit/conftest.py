"""Fixtures for the training tests: synthetic features tables with the store's schema."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pytest

FeaturesTable = Callable[..., pa.Table]


def _schema(n_features: int, feature_set: str, fingerprint: str) -> pa.Schema:
    fields = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("corpus", pa.string(), nullable=False),
        pa.field("speaker", pa.string()),
        pa.field("emotion", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("content_key", pa.string()),
        pa.field("feature_set", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("features", pa.list_(pa.float32(), n_features)),
    ]
    metadata = {
        b"ser_batch.feature_set": feature_set.encode(),
        b"ser_batch.fingerprint": fingerprint.encode(),
        b"ser_batch.feature_config": json.dumps({"name": feature_set, "kind": "synthetic"}).encode(),
        b"ser_batch.feature_names": json.dumps([f"f_{i:02d}" for i in range(n_features)]).encode(),
    }
    return pa.schema(fields, metadata=metadata)


@pytest.fixture(scope="session")
def features_table() -> FeaturesTable:
    """Build a table of separable Gaussian classes, one cluster per emotion, speakers cycling."""

    def make(
        counts: dict[str | None, int] | None = None,
        *,
        n_features: int = 6,
        n_speakers: int = 8,
        feature_set: str = "tiny",
        fingerprint: str = "f00d",
        seed: int = 0,
        speakers: Sequence[str | None] | None = None,
    ) -> pa.Table:
        counts = {"angry": 40, "happy": 40, "sad": 40} if counts is None else counts
        rng = np.random.default_rng(seed)
        emotions = [emotion for emotion, n in counts.items() for _ in range(n)]
        rng.shuffle(emotions)  # type: ignore[arg-type]
        centers = {emotion: rng.normal(0.0, 6.0, n_features) for emotion in counts}
        features = np.stack([centers[e] + rng.normal(0.0, 1.0, n_features) for e in emotions]).astype(np.float32)
        n = len(emotions)
        speaker = list(speakers) if speakers is not None else [f"spk{i % n_speakers}" for i in range(n)]
        corpus = ["emodb" if s is not None and s[3:].isdigit() and int(s[3:]) % 2 else "ravdess" for s in speaker]
        columns = {
            "path": [f"/data/clip_{i:04d}.wav" for i in range(n)],
            "corpus": corpus,
            "speaker": speaker,
            "emotion": emotions,
            "duration_s": [2.0] * n,
            "sample_rate": [16_000] * n,
            "content_key": [f"{i}:0" for i in range(n)],
            "feature_set": [feature_set] * n,
            "fingerprint": [fingerprint] * n,
            "features": list(features),
        }
        return pa.table(columns, schema=_schema(n_features, feature_set, fingerprint))

    return make
