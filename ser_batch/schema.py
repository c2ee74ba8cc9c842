"""The Arrow schemas of every table ser-batch writes, their metadata keys, and a model directory's metadata (pure).

Layout of DEST (see DESIGN.md, Output contract; ``ser_batch.storage.tables`` reads and writes it)::

    DEST/features/feature_set=<name>/corpus=<corpus>/part-<shard-id>.parquet
    DEST/augmented/feature_set=<name>/corpus=<corpus>/part-<shard-id>.parquet (copies of labelled clips)
    DEST/errors/feature_set=<name>/part-<shard-id>.parquet        (featurize)
    DEST/predictions/call_date=YYYY-MM-DD/part-<shard-id>.parquet  (score: one row per segment)
    DEST/calls/call_date=YYYY-MM-DD/part-<shard-id>.parquet        (score: one row per recording channel)
    DEST/errors/call_date=YYYY-MM-DD/part-<shard-id>.parquet       (score)

A scoring row's ``call_date`` is the day of its recording (``shards.recording_date``), not the
day it was scored (the ``run_date`` column): a shard writes one part per call date of its recordings.

The folder keys (``feature_set``, ``corpus``, ``call_date``) live in the path only, as Hive
partitioning has it: a part file holds every other column of its schema
(``part_file_schema``), so pandas, pyarrow, Dask, DuckDB and polars each take the keys from
the folders without two types of one column to merge. Seconds columns are rounded to the
millisecond and timestamps are UTC milliseconds. Only files named ``part-<shard-id>.parquet``
(``PART_FILE``) in the expected folders are ser-batch's; anything else in DEST is passed over.

A model directory's ``metadata.json`` is described here too (``FORMAT_VERSION``,
``model_identity``), so the planner and the scorer check it the same way without
loading TensorFlow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ser_batch.config import CORPORA, EMOTIONS, FeatureConfig, stored_feature_config
from ser_batch.errors import ConfigError, SchemaError

META_FEATURE_SET = b"ser_batch.feature_set"
META_FINGERPRINT = b"ser_batch.fingerprint"
META_FEATURE_CONFIG = b"ser_batch.feature_config"
META_FEATURE_NAMES = b"ser_batch.feature_names"

ROW_FIELDS: tuple[pa.Field, ...] = (
    pa.field("path", pa.string(), nullable=False),
    pa.field("corpus", pa.string(), nullable=False),
    pa.field("speaker", pa.string()),
    pa.field("emotion", pa.string()),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("n_channels", pa.int16(), nullable=False),
    pa.field("content_key", pa.string(), nullable=False),
    pa.field("content_hash", pa.string()),
    pa.field("feature_set", pa.string(), nullable=False),
    pa.field("fingerprint", pa.string(), nullable=False),
    pa.field("featurized_at", pa.timestamp("ms", tz="UTC"), nullable=False),
)
"""Columns of a feature row before its vector. ``content_hash`` is the sha256 of the file's bytes (hex):
the same audio under two paths has one hash (null in rows written before it existed)."""

ERRORS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_key", pa.string(), nullable=False),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("feature_set", pa.string(), nullable=False),
        pa.field("run_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)


def features_schema(config: FeatureConfig, feature_names: Sequence[str]) -> pa.Schema:
    """Arrow schema of a feature set's rows, with the set's settings in its metadata."""
    metadata = {
        META_FEATURE_SET: config.name.encode(),
        META_FINGERPRINT: config.fingerprint().encode(),
        META_FEATURE_CONFIG: config.model_dump_json().encode(),
        META_FEATURE_NAMES: json.dumps(list(feature_names)).encode(),
    }
    vector = pa.field("features", pa.list_(pa.float32(), len(feature_names)), nullable=False)
    return pa.schema([*ROW_FIELDS, vector], metadata=metadata)


@dataclass
class FeatureRows:
    """Column buffers for one shard's featurized files; ``to_table`` builds the Arrow table."""

    columns: dict[str, list[Any]]
    vectors: list[NDArray[np.float32]]

    @classmethod
    def empty(cls) -> FeatureRows:
        """No rows yet."""
        return cls({field.name: [] for field in ROW_FIELDS}, [])

    def append(self, vector: NDArray[np.float32], **values: Any) -> None:
        """Add one row: its feature vector and a value for every field of ``ROW_FIELDS``."""
        for name, column in self.columns.items():
            column.append(values[name])
        self.vectors.append(vector)

    def __len__(self) -> int:
        return len(self.vectors)

    def to_table(self, schema: pa.Schema) -> pa.Table:
        """The rows as an Arrow table of ``schema`` (``features_schema`` of the set)."""
        width = schema.field("features").type.list_size
        flat = np.concatenate(self.vectors) if self.vectors else np.empty(0, np.float32)
        arrays = [pa.array(self.columns[field.name], type=field.type) for field in ROW_FIELDS]
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width))
        return pa.Table.from_arrays(arrays, schema=schema)


DATASETS: tuple[str, ...] = ("features", "augmented")
"""Feature datasets under DEST: one row per input clip, and the augmented copies of labelled clips."""

AUGMENTATION_FIELD = pa.field("augmentation", pa.string(), nullable=False)
"""The transform that made an augmented row (``augmented`` dataset only), e.g. ``telephone``."""


def augmented_schema(config: FeatureConfig, feature_names: Sequence[str]) -> pa.Schema:
    """Arrow schema of a feature set's augmented rows: the feature rows plus ``augmentation``."""
    schema = features_schema(config, feature_names)
    return schema.insert(schema.get_field_index("features"), AUGMENTATION_FIELD)


FEATURE_KEYS: tuple[str, ...] = ("feature_set", "corpus")
"""Folder keys of the ``features`` and ``augmented`` tables, outermost first."""

FEATURIZE_ERROR_KEYS: tuple[str, ...] = ("feature_set",)
"""Folder keys of a featurize DEST's ``errors`` table."""

SCORE_KEYS: tuple[str, ...] = ("call_date",)
"""Folder keys of a scoring DEST's ``errors``, ``predictions`` and ``calls`` tables: the recording's day."""

EARLIER_SCORE_KEYS: tuple[str, ...] = ("run_date",)
"""Folder keys of scoring DESTs written before ``call_date`` (by the day of the run); refused, see ``tables.check_score_layout``."""

SECONDS_COLUMNS: frozenset[str] = frozenset(
    {
        "duration_s",
        "start_s",
        "end_s",
        "speech_s",
        "peak_angry_s",
        "talk_s",
        "mean_turn_s",
        "longest_turn_s",
        "silence_s",
        "longest_silence_s",
        "overlap_s",
        "response_latency_s",
    }
)
"""Columns in seconds; part files store them rounded to the millisecond."""

PART_FILE = re.compile(r"part-[0-9a-f]{20}\.parquet")
"""The name of every part file ser-batch writes: ``part-<shard id>.parquet`` (``shards.shard_id``)."""


def part_file_name(shard_id: str) -> str:
    """The part file name of a shard.

    Raises:
        ConfigError: if ``shard_id`` is not 20 lowercase hex digits, the form ``shards.shard_id`` gives.

    >>> part_file_name("0123456789abcdef0123")
    'part-0123456789abcdef0123.parquet'
    """
    name = f"part-{shard_id}.parquet"
    if not PART_FILE.fullmatch(name):
        raise ConfigError(f"shard id {shard_id!r} is not 20 lowercase hex digits")
    return name


def part_file_schema(schema: pa.Schema, keys: Sequence[str]) -> pa.Schema:
    """The schema a part file stores: ``schema`` without its folder keys (metadata kept).

    >>> part_file_schema(ERRORS_SCHEMA, FEATURIZE_ERROR_KEYS).names[-2:]
    ['stage', 'run_at']
    """
    for key in keys:
        if key in schema.names:
            schema = schema.remove(schema.get_field_index(key))
    return schema


def partition_value(corpus: str) -> str:
    """The corpus as a partition value: only names from the fixed vocabulary reach a path."""
    return corpus if corpus in CORPORA else "unknown"


AUGMENT_STAGE = "augment"
"""``stage`` of an error row for a clip whose augmented copies could not be made (its features row exists)."""

WORKER_STAGE = "worker"
"""``stage`` of an error row for a file whose featurizing or scoring ended its worker process (``PoisonFileError``)."""


# --- Scoring outputs -------------------------------------------------------------------
# Probability and share columns exist for every emotion in EMOTIONS order, null for the
# classes a model does not have, so parts of different models and days share one schema.

SCORE_TABLES: tuple[str, ...] = ("errors", "predictions", "calls")
"""Scoring part files in write order: ``calls`` last, as the commit record of a shard."""

_SCORED = (
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("content_key", pa.string(), nullable=False),
    pa.field("scored_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("run_date", pa.date32(), nullable=False),
    pa.field("call_date", pa.string(), nullable=False),
)
"""Columns of every scoring row: who scored it and when; ``run_date`` is the run's day (in ``SER_BATCH_TIMEZONE``),
``call_date`` (``YYYY-MM-DD``, the folder key, not stored in part files) the recording's."""

ROLE_FIELD = pa.field("role", pa.string())
"""The channel's role (``--channel-roles``, e.g. ``agent``, ``customer``); null when none was given or it is unknown."""

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("channel", pa.int16(), nullable=False),
        ROLE_FIELD,
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("emotion", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("uncertain", pa.bool_(), nullable=False),
        *(pa.field(f"prob_{name}", pa.float32()) for name in EMOTIONS),
        *_SCORED,
    ]
)

CALLS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("channel", pa.int16(), nullable=False),
        ROLE_FIELD,
        pa.field("n_channels", pa.int16(), nullable=False),
        pa.field("duplicate_of_channel", pa.int16()),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("speech_s", pa.float64(), nullable=False),
        pa.field("n_segments", pa.int32(), nullable=False),
        *(pa.field(f"share_{name}", pa.float64()) for name in EMOTIONS),
        pa.field("dominant_emotion", pa.string()),
        pa.field("peak_angry_s", pa.float64()),
        pa.field("peak_angry_probability", pa.float64()),
        pa.field("share_angry_first", pa.float64()),
        pa.field("share_angry_last", pa.float64()),
        pa.field("trend", pa.string()),
        pa.field("talk_s", pa.float64()),
        pa.field("talk_share", pa.float64()),
        pa.field("n_turns", pa.int32()),
        pa.field("mean_turn_s", pa.float64()),
        pa.field("longest_turn_s", pa.float64()),
        pa.field("silence_s", pa.float64()),
        pa.field("longest_silence_s", pa.float64()),
        pa.field("n_interruptions_made", pa.int32()),
        pa.field("n_interruptions_suffered", pa.int32()),
        pa.field("overlap_s", pa.float64()),
        pa.field("response_latency_s", pa.float64()),
        pa.field("loudness_lufs", pa.float64()),
        pa.field("speech_rate", pa.float64()),
        *_SCORED,
    ]
)
"""One row per recording channel. ``duplicate_of_channel`` names the lower channel this one is a copy
of (a mono mix recorded on both channels, ``scoring.crosstalk.duplicate_channels``): the recording was
scored once, as that channel, whose figures the row repeats and whose predictions rows are its windows.
Null for a channel of its own, and in rows written before the column existed (readers that ask for it
get nulls there only when they read all columns; added in place, no reader of older tables breaks).

How the call went (``scoring.conversation`` defines each; null in rows written before they existed):
``share_angry_first`` / ``share_angry_last`` (angry share of the first / last quarter of the channel's
speech time) and ``trend`` (``rising``, ``falling`` or ``steady``: ``scoring.calls``); ``talk_s`` (s) and
``talk_share`` (of ``duration_s``); ``n_turns``, ``mean_turn_s`` and ``longest_turn_s`` (s);
``silence_s`` and ``longest_silence_s`` (s, the whole call: the same on every channel's row);
``n_interruptions_made`` / ``n_interruptions_suffered`` (counts), ``overlap_s`` (s) and
``response_latency_s`` (s, median), null for a lone channel (mono, or a copied channel's source);
``loudness_lufs`` (LUFS, ITU-R BS.1770-4 of the speech) and ``speech_rate`` (syllable nuclei per
second of speech, a pace proxy). A ``duplicate_of_channel`` row repeats its source's figures."""

# Featurize's error columns plus the model that met the error, before run_at, and the run's and the call's dates.
SCORE_ERRORS_SCHEMA = (
    ERRORS_SCHEMA.insert(ERRORS_SCHEMA.get_field_index("run_at"), pa.field("model_id", pa.string(), nullable=False))
    .append(_SCORED[3])
    .append(_SCORED[4])
)

SCORE_SCHEMAS: dict[str, pa.Schema] = {
    "errors": SCORE_ERRORS_SCHEMA,
    "predictions": PREDICTIONS_SCHEMA,
    "calls": CALLS_SCHEMA,
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def date_value(value: str | date, *, name: str = "date") -> str:
    """A date as ``YYYY-MM-DD``, checked: only a real date in that exact form reaches a path (``call_date``, ``run_date``).

    Args:
        value: the text, or a ``datetime.date`` (a ``datetime`` counts as its date).
        name: what the date is, for the message.

    Raises:
        ConfigError: if it is not a valid date in that exact form.

    >>> date_value("2026-11-24"), date_value(date(2024, 2, 29), name="run_date")
    ('2026-11-24', '2024-02-29')
    """
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not _DATE.match(value):
        raise ConfigError(f"{name} {value!r} is not a date in the form YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not a calendar date") from None
    return value


def error_row(
    path: str, content_key: str, error: Exception, *, stage: str, feature_set: str, run_at: datetime
) -> dict[str, Any]:
    """One ``ERRORS_SCHEMA`` row for a file that could not be featurized or scored.

    An ``OSError`` becomes ``cannot read: <reason>``; any other error (an ``AudioError``) keeps its message.

    >>> from ser_batch.errors import AudioError
    >>> row = error_row("/a.wav", "1:2", AudioError("empty file"), stage="decode", feature_set="stats8k",
    ...                 run_at=datetime(2026, 1, 1))
    >>> row["error_type"], row["message"], row["stage"]
    ('AudioError', 'empty file', 'decode')
    """
    message = f"cannot read: {error.strerror or error}" if isinstance(error, OSError) else str(error)
    return {
        "path": path,
        "content_key": content_key,
        "error_type": type(error).__name__,
        "message": message,
        "stage": stage,
        "feature_set": feature_set,
        "run_at": run_at,
    }


# --- Model directories -----------------------------------------------------------------

FORMAT_VERSION = 1
"""Version of the model directory layout and ``metadata.json`` keys.

It changes only when a reader of the previous version would misread a directory. Optional keys
added since version 1, read with their stated default when absent: ``voice_prior`` (None) and
``temperature`` (1.0, ``model_temperature``). A reader older than a key ignores it: an older
ser-batch scores a calibrated model with the same labels and uncalibrated probabilities.
"""

REQUIRED_METADATA: tuple[str, ...] = ("format_version", "model", "classes", "feature_set", "fingerprint", "n_features")
"""Keys every ``metadata.json`` has."""


@dataclass(frozen=True)
class ModelIdentity:
    """What a model directory holds, read from ``metadata.json`` without loading TensorFlow."""

    model_dir: str
    model_id: str
    model: str
    feature_set: str
    fingerprint: str
    classes: tuple[str, ...]


def check_model_metadata(metadata: dict[str, Any], *, model_dir: str) -> None:
    """Check a model directory's parsed ``metadata.json`` against this code.

    Raises:
        SchemaError: if keys are missing, ``format_version`` is not ``FORMAT_VERSION``, classes are
            outside ``EMOTIONS``, or the feature fingerprint differs from the feature set as this code
            computes it.
        ConfigError: if the metadata names an unknown feature set, or an encoder set with invalid settings.
    """
    where = f"{model_dir.rstrip('/')}/metadata.json"
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise SchemaError(f"{where} lacks keys {missing}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise SchemaError(
            f"{where} has format_version {metadata['format_version']!r}; this ser-batch reads {FORMAT_VERSION}: "
            "retrain the model with this version"
        )
    config = stored_feature_config(str(metadata["feature_set"]), metadata.get("feature_config") or {})
    if metadata["fingerprint"] != config.fingerprint():
        raise SchemaError(
            f"{model_dir}: model was trained on feature set {config.name!r} with fingerprint "
            f"{metadata['fingerprint']}, but this code computes that set with fingerprint {config.fingerprint()}; "
            "retrain or use a matching version"
        )
    classes = [str(name) for name in metadata["classes"]]
    if not set(classes) <= set(EMOTIONS):
        raise SchemaError(f"{model_dir}: classes {classes} are not all in EMOTIONS {list(EMOTIONS)}")
    model_temperature(metadata, model_dir=model_dir)


def model_temperature(metadata: dict[str, Any], *, model_dir: str) -> float:
    """The calibration temperature of a model directory's ``metadata.json``: 1.0 when it has none.

    Models trained before calibration existed carry no ``temperature`` and keep their probabilities.

    Raises:
        SchemaError: if ``temperature`` is present but not a positive finite number.

    >>> model_temperature({"temperature": 1.7}, model_dir="m"), model_temperature({}, model_dir="m")
    (1.7, 1.0)
    """
    value = metadata.get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < float("inf")):
        raise SchemaError(f"{model_dir.rstrip('/')}/metadata.json: temperature {value!r} is not a positive number")
    return float(value)


def model_identity(metadata: dict[str, Any], *, model_dir: str, content_hash: str) -> ModelIdentity:
    """Check a model directory's metadata (``check_model_metadata``) and name the model.

    Args:
        metadata: the parsed ``metadata.json``.
        model_dir: the directory, for messages.
        content_hash: hex digest of the directory's files; its first 12 digits end the ``model_id``.

    Returns:
        The identity; ``model_id`` is ``<model>-<feature set>-<hash>``.

    Raises:
        SchemaError, ConfigError: as ``check_model_metadata``.
    """
    check_model_metadata(metadata, model_dir=model_dir)
    config = stored_feature_config(str(metadata["feature_set"]), metadata.get("feature_config") or {})
    model = str(metadata["model"])
    return ModelIdentity(
        model_dir=model_dir,
        model_id=f"{model}-{config.name}-{content_hash[:12]}",
        model=model,
        feature_set=config.name,
        fingerprint=config.fingerprint(),
        classes=tuple(str(name) for name in metadata["classes"]),
    )
