"""Fit and evaluate a classifier on a features table: class filtering, splits, metrics.

Works on in-memory pyarrow tables (as ``ser_batch.storage.tables.read_features`` returns) and
does no IO; saving and loading live in ``ser_batch.storage.model_dir``. TensorFlow is imported
only when a model is built or run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from ser_batch._typing import Indices, Log
from ser_batch.config import EMOTIONS, TrainConfig
from ser_batch.errors import SchemaError
from ser_batch.model.calibration import calibrated_probabilities, fit_temperature
from ser_batch.model.metrics import confidence_summary, confusion_matrix, metric_summary
from ser_batch.model.networks import build_model, probabilities
from ser_batch.model.split import copies_of, speaker_groups, split_indices
from ser_batch.model.voice import VoicePrior, normalise_voices, voice_prior
from ser_batch.schema import (
    AUGMENTATION_FIELD,
    META_FEATURE_CONFIG,
    META_FEATURE_NAMES,
    META_FEATURE_SET,
    META_FINGERPRINT,
)

# An augmented copy keeps its source clip's ``path`` and names its transform in this column (null
# for an original); ``fit`` splits the originals and adds only the copies of training clips.
AUGMENTATION_COLUMN = AUGMENTATION_FIELD.name

if TYPE_CHECKING:
    import keras

    from ser_batch.model.artifact import Artifact

PARTS: tuple[str, ...] = ("train", "validation", "test")
"""Split parts in report order."""


@dataclass(frozen=True)
class FeatureIdentity:
    """The feature set a table (or model) belongs to, from its Parquet schema metadata and columns."""

    name: str
    fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """``(n_frames, n_mels)`` for a ``frames`` feature set, None for pooled vectors."""
        if self.config.get("kind") != "frames":
            return None
        return int(self.config["n_frames"]), int(self.config["n_mels"])


@dataclass(frozen=True)
class TrainResult:
    """Everything ``fit`` produced; ``split`` indexes the rows of ``rows`` (the labelled, kept rows)."""

    model: keras.Model
    config: TrainConfig
    classes: tuple[str, ...]
    features: FeatureIdentity
    history: dict[str, list[float]]
    split: dict[str, Indices]
    rows: pa.Table
    metrics: dict[str, dict[str, Any]]
    confusion: dict[str, NDArray[np.int64]]
    training_rows: dict[str, dict[str, int]]
    n_excluded: dict[str, int]
    n_unlabelled: int
    voice_prior: VoicePrior | None = None
    temperature: float = 1.0


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a saved model on one labelled table; ``confusion`` rows are true classes.

    ``confidence`` holds the calibration and angry-detection figures (``metrics.confidence_summary``)
    of the table's rows; ``telephone`` the accuracy and those figures on the telephone copies
    ``featurize --augment`` made of them (None without copies).
    """

    classes: tuple[str, ...]
    n: int
    accuracy: float | None
    balanced_accuracy: float | None
    per_corpus: dict[str, float]
    per_class: dict[str, float]
    confusion: NDArray[np.int64]
    n_excluded: dict[str, int]
    n_unlabelled: int
    feature_set: str
    fingerprint: str
    temperature: float = 1.0
    confidence: dict[str, Any] = field(default_factory=dict)
    telephone: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``evaluate --json`` object)."""
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "per_corpus": self.per_corpus,
            "per_class": self.per_class,
            "confusion": self.confusion.tolist(),
            "classes": list(self.classes),
            "n_excluded": self.n_excluded,
            "n_unlabelled": self.n_unlabelled,
            "feature_set": self.feature_set,
            "fingerprint": self.fingerprint,
            "temperature": self.temperature,
            **self.confidence,
            "telephone": self.telephone,
        }


@dataclass(frozen=True)
class _Labelled:
    table: pa.Table
    emotion: NDArray[np.object_]
    corpus: NDArray[np.object_]
    features: NDArray[np.float32]
    n_excluded: dict[str, int]
    n_unlabelled: int


def fit(table: pa.Table, config: TrainConfig, *, log: Log | None = None) -> TrainResult:
    """Train ``config.model`` on the labelled rows of ``config.classes`` and measure it.

    Rows with a null emotion or an emotion outside ``config.classes`` are dropped (and
    counted); the rest are split by ``config.split``, the model's normaliser is fitted on
    the training part only, and accuracy, balanced accuracy, per-corpus and per-class
    accuracy and a confusion matrix are computed for each part. With ``config.calibrate`` a
    temperature is fitted on the validation part (1.0 otherwise); each part also gets the
    expected calibration error with and without it and the angry-vs-rest figures.

    Args:
        table: a features table (columns ``corpus``, ``speaker``, ``emotion``, ``features``
            and the feature set's name and fingerprint, in columns or schema metadata).
        config: the training settings.
        log: called with one line per epoch and a few summary lines; None is silent.

    Returns:
        the fitted model with its history, split, metrics and row counts.

    Raises:
        SchemaError: if columns are missing, the table mixes feature sets, features are
            null or ragged, or fewer than two of ``config.classes`` have rows.
        ConfigError: if the split cannot be made (e.g. one speaker for ``speaker``).
    """
    identity = feature_identity(table)
    data = _labelled(table, config.classes, width=len(identity.names) or None)
    _check_classes_present(data.emotion, config.classes, log)
    split = _split_with_copies(data, config)
    train = split["train"]
    features, prior = data.features, None
    if config.voice_norm:  # each part's voices with their own clips: no statistics cross parts
        voices = row_voices(data.table)
        prior = voice_prior(features[train], voices[train], weight=config.voice_prior_weight)
        features = np.empty_like(data.features)
        for indices in split.values():
            if indices.size:
                features[indices] = normalise_voices(data.features[indices], voices[indices], prior)
    _say(
        log,
        f"{config.model}: {data.emotion.size} rows ({', '.join(f'{p} {i.size}' for p, i in split.items())}); "
        f"excluded {data.n_excluded or 'none'}, unlabelled {data.n_unlabelled}",
    )
    model = build_model(
        features.shape[1],
        len(config.classes),
        config,
        normalizer_data=features[train],
        frame_shape=identity.frame_shape,
    )
    history = _fit_model(model, features, data.emotion, split, config, log)
    raw = probabilities(model, features)
    temperature = _temperature(raw, data.emotion, split["validation"], config.classes) if config.calibrate else 1.0
    calibrated = calibrated_probabilities(raw, temperature)
    predicted = np.array(config.classes, dtype=object)[raw.argmax(axis=1)] if raw.shape[0] else data.emotion[:0]
    metrics = {
        p: {
            **metric_summary(data.emotion[i], predicted[i], data.corpus[i], classes=config.classes),
            **confidence_summary(data.emotion[i], calibrated[i], raw[i], classes=config.classes),
        }
        for p, i in split.items()
    }
    confusion = {p: confusion_matrix(data.emotion[i], predicted[i], classes=config.classes) for p, i in split.items()}
    if config.calibrate:
        _say(log, f"temperature {temperature:.3f} (fitted on the {split['validation'].size} validation rows)")
    for part in PARTS:
        _say(
            log,
            f"{part}: n={metrics[part]['n']} accuracy={metrics[part]['accuracy']} "
            f"balanced_accuracy={metrics[part]['balanced_accuracy']} ece={metrics[part]['ece']} "
            f"(uncalibrated {metrics[part]['ece_uncalibrated']})",
        )
    return TrainResult(
        model=model,
        config=config,
        classes=config.classes,
        features=identity,
        history=history,
        split=split,
        rows=data.table.drop_columns(["features"]),
        metrics=metrics,
        confusion=confusion,
        training_rows=_rows_per_corpus_and_class(data.corpus[train], data.emotion[train], config.classes),
        n_excluded=data.n_excluded,
        n_unlabelled=data.n_unlabelled,
        voice_prior=prior,
        temperature=temperature,
    )


def _temperature(
    raw: NDArray[np.float32], emotion: NDArray[np.object_], validation: Indices, classes: tuple[str, ...]
) -> float:
    # fitted on validation rows only: the training rows' confidence is what over-fitting inflates
    index = {name: i for i, name in enumerate(classes)}
    targets = np.array([index[e] for e in emotion[validation].tolist()], dtype=np.int64)
    return fit_temperature(raw[validation], targets)


def row_voices(table: pa.Table) -> NDArray[np.object_]:
    """The voice of each row: corpus, speaker (the path when unknown) and, for a copy, its transform.

    An augmented copy is its own voice: a telephone line changes the voice's statistics.
    """
    corpus, speaker, path = (table.column(name).to_pylist() for name in ("corpus", "speaker", "path"))
    copy = (
        table.column(AUGMENTATION_COLUMN).to_pylist()
        if AUGMENTATION_COLUMN in table.column_names
        else [None] * table.num_rows
    )
    return np.array(
        [
            f"{c}/{s if s is not None else p}/{a or 'original'}"
            for c, s, p, a in zip(corpus, speaker, path, copy, strict=True)
        ],
        dtype=object,
    )


def evaluate(table: pa.Table, artifact: Artifact, *, telephone: pa.Table | None = None) -> Evaluation:
    """Score a labelled features table with a saved model.

    Rows whose emotion is not one of the model's classes are left out and counted per
    emotion in ``n_excluded``; they are never mapped to another class. Rows without an
    emotion are counted in ``n_unlabelled``.

    Args:
        table: a features table of the model's feature set.
        artifact: a loaded model (``ser_batch.storage.model_dir.load_artifact``).
        telephone: telephone-channel copies of labelled clips (``augmented`` rows whose
            ``augmentation`` is ``telephone``), scored separately; None or empty skips them.

    Returns:
        accuracy, balanced accuracy, per-corpus and per-class accuracy and the confusion
        matrix (in the model's class order) over the kept rows; the expected calibration error
        with and without the model's temperature and, when the model knows 'angry', angry
        against the rest (precision, recall, ROC AUC); the same figures for ``telephone``.

    Raises:
        SchemaError: if the table's feature set name or fingerprint differs from the
            model's, or its columns are missing or malformed.
    """
    check_feature_set(table, feature_set=artifact.feature_set, fingerprint=artifact.fingerprint)
    data, predicted, confidence = _scored(table, artifact)
    summary = metric_summary(data.emotion, predicted, data.corpus, classes=artifact.classes)
    phone = None
    if telephone is not None and telephone.num_rows:
        check_feature_set(telephone, feature_set=artifact.feature_set, fingerprint=artifact.fingerprint)
        phone_data, phone_predicted, phone_confidence = _scored(telephone, artifact)
        phone_summary = metric_summary(phone_data.emotion, phone_predicted, phone_data.corpus, classes=artifact.classes)
        phone = {key: phone_summary[key] for key in ("n", "accuracy", "balanced_accuracy")} | phone_confidence
    return Evaluation(
        classes=tuple(artifact.classes),
        n=summary["n"],
        accuracy=summary["accuracy"],
        balanced_accuracy=summary["balanced_accuracy"],
        per_corpus=summary["per_corpus"],
        per_class=summary["per_class"],
        confusion=confusion_matrix(data.emotion, predicted, classes=artifact.classes),
        n_excluded=data.n_excluded,
        n_unlabelled=data.n_unlabelled,
        feature_set=artifact.feature_set,
        fingerprint=artifact.fingerprint,
        temperature=artifact.temperature,
        confidence=confidence,
        telephone=phone,
    )


def _scored(table: pa.Table, artifact: Artifact) -> tuple[_Labelled, NDArray[np.object_], dict[str, Any]]:
    # one forward pass: the network's own probabilities, then the calibrated ones from them
    data = _labelled(table, artifact.classes, width=int(artifact.model.input_shape[-1]))
    raw = artifact.probabilities(data.features, voices=row_voices(data.table), calibrated=False)
    calibrated = artifact.calibrate(raw)
    predicted = np.array(artifact.classes, dtype=object)[raw.argmax(axis=1)] if raw.shape[0] else data.emotion[:0]
    return data, predicted, confidence_summary(data.emotion, calibrated, raw, classes=artifact.classes)


def check_feature_set(table: pa.Table, *, feature_set: str, fingerprint: str) -> None:
    """Refuse a table of another feature set than a model's.

    Raises:
        SchemaError: naming both feature sets and fingerprints when they differ, or when
            the table carries no feature set identity at all.
    """
    found = feature_identity(table)
    if (found.name, found.fingerprint) != (feature_set, fingerprint):
        raise SchemaError(
            f"table has feature set {found.name!r} (fingerprint {found.fingerprint}) but the model was trained "
            f"on {feature_set!r} (fingerprint {fingerprint}); featurize with feature set {feature_set!r} "
            "using the same settings, or use a model trained on this table's feature set"
        )


def feature_identity(table: pa.Table) -> FeatureIdentity:
    """Feature set name, fingerprint, settings and names a table carries.

    Schema metadata (``ser_batch.feature_set``, ``ser_batch.fingerprint``,
    ``ser_batch.feature_config``, ``ser_batch.feature_names``) and the ``feature_set`` /
    ``fingerprint`` columns must agree where both exist.

    Raises:
        SchemaError: if the name or fingerprint is missing, differs between rows, or
            differs between the columns and the metadata.
    """
    metadata = table.schema.metadata or {}
    name = _one_value(table, "feature_set", metadata.get(META_FEATURE_SET))
    fingerprint = _one_value(table, "fingerprint", metadata.get(META_FINGERPRINT))
    settings = json.loads(metadata[META_FEATURE_CONFIG]) if META_FEATURE_CONFIG in metadata else {}
    names = json.loads(metadata[META_FEATURE_NAMES]) if META_FEATURE_NAMES in metadata else []
    return FeatureIdentity(name=name, fingerprint=fingerprint, config=settings, names=list(names))


def feature_matrix(table: pa.Table) -> NDArray[np.float32]:
    """The ``features`` column as a float32 matrix of shape ``(n_rows, n_features)``.

    Raises:
        SchemaError: if the column is missing, has nulls, or its lists differ in length.
    """
    _require_columns(table, ("features",))
    column = table.column("features")
    if column.null_count:
        raise SchemaError(f"{column.null_count} rows have null features")
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        chunks = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
        flat = np.concatenate(chunks) if chunks else np.zeros(0)
        return flat.astype(np.float32, copy=False).reshape(-1, width)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = {len(row) for row in column.to_pylist()}
        if len(lengths) > 1:
            raise SchemaError(f"features lists have different lengths {sorted(lengths)[:5]}")
        return np.asarray(column.to_pylist(), dtype=np.float32).reshape(table.num_rows, -1)
    raise SchemaError(f"features column has type {column.type}; expected a list of float32")


def _labelled(table: pa.Table, classes: tuple[str, ...], *, width: int | None) -> _Labelled:
    _require_columns(table, ("corpus", "speaker", "emotion", "features"))
    emotion = table.column("emotion").to_pylist()
    excluded = Counter(e for e in emotion if e is not None and e not in classes)
    kept = table.filter(pa.array([e in classes for e in emotion], type=pa.bool_()))
    features = feature_matrix(kept)
    if width is not None and features.shape[1] != width and kept.num_rows:
        raise SchemaError(f"features have {features.shape[1]} values per row; expected {width}")
    order = {name: i for i, name in enumerate(EMOTIONS)}
    return _Labelled(
        table=kept,
        emotion=np.array(kept.column("emotion").to_pylist(), dtype=object),
        corpus=np.array(kept.column("corpus").to_pylist(), dtype=object),
        features=features,
        n_excluded={e: excluded[e] for e in sorted(excluded, key=lambda e: (order.get(e, len(order)), e))},
        n_unlabelled=sum(e is None for e in emotion),
    )


def _split_with_copies(data: _Labelled, config: TrainConfig) -> dict[str, Indices]:
    # originals are split; augmented copies only ever join their source clip's training part
    if AUGMENTATION_COLUMN in data.table.column_names:
        is_copy = np.array([a is not None for a in data.table.column(AUGMENTATION_COLUMN).to_pylist()], dtype=bool)
    else:
        is_copy = np.zeros(data.emotion.size, dtype=bool)
    originals, copies = np.flatnonzero(~is_copy), np.flatnonzero(is_copy)
    groups = speaker_groups(
        data.corpus[originals].tolist(),
        np.array(data.table.column("speaker").to_pylist(), dtype=object)[originals].tolist(),
    )
    same_audio = None
    if "content_hash" in data.table.column_names:  # older tables lack it: every row is its own audio
        same_audio = np.array(data.table.column("content_hash").to_pylist(), dtype=object)[originals]
    train, validation, test = split_indices(
        data.emotion[originals],
        groups,
        split=config.split,
        test_size=config.test_size,
        validation_size=config.validation_size,
        seed=config.seed,
        same_audio=same_audio,
    )
    if copies.size:
        paths = np.array(data.table.column("path").to_pylist(), dtype=object)
        joined = copies[copies_of(train, paths[originals], paths[copies])]
        return {
            "train": np.sort(np.concatenate([originals[train], joined])),
            "validation": originals[validation],
            "test": originals[test],
        }
    return {"train": train, "validation": validation, "test": test}


def with_copies(table: pa.Table, copies: pa.Table) -> pa.Table:
    """One table of original rows and augmented copies, ``AUGMENTATION_COLUMN`` null for originals.

    Raises:
        SchemaError: if the two tables belong to different feature sets.
    """
    found = feature_identity(copies)
    check_feature_set(table, feature_set=found.name, fingerprint=found.fingerprint)
    columns = [name for name in table.column_names if name in copies.column_names]
    originals = table.select(columns).append_column(AUGMENTATION_COLUMN, pa.nulls(table.num_rows, pa.string()))
    combined = pa.concat_tables([originals, copies.select([*columns, AUGMENTATION_COLUMN]).cast(originals.schema)])
    return combined.replace_schema_metadata(table.schema.metadata)


def class_weights(targets: NDArray[np.int64], n_classes: int) -> dict[int, float]:
    """Balanced loss weights ``n / (n_classes_present * n_c)`` per class index (absent classes get 1).

    >>> class_weights(np.array([0, 0, 0, 1]), 2)
    {0: 0.6666666666666666, 1: 2.0}
    """
    counts = np.bincount(targets, minlength=n_classes)
    present = int((counts > 0).sum())
    return {c: float(targets.size / (present * counts[c])) if counts[c] else 1.0 for c in range(n_classes)}


def _check_classes_present(emotion: NDArray[np.object_], classes: tuple[str, ...], log: Log | None) -> None:
    present = set(emotion.tolist())
    if len(present) < 2:
        raise SchemaError(f"need rows of at least 2 of the classes {list(classes)}; found {sorted(present)}")
    missing = [name for name in classes if name not in present]
    if missing:
        _say(log, f"warning: no training rows for classes {missing}; the model will never predict them well")


def _fit_model(
    model: keras.Model,
    features: NDArray[np.float32],
    emotion: NDArray[np.object_],
    split: dict[str, Indices],
    config: TrainConfig,
    log: Log | None,
) -> dict[str, list[float]]:
    index = {name: i for i, name in enumerate(config.classes)}
    targets = np.array([index[e] for e in emotion.tolist()], dtype=np.int64)
    train, validation = split["train"], split["validation"]
    callbacks = [_epoch_logger(log, config.epochs)] if log is not None else []
    if config.resolved_patience() and validation.size:
        import keras

        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.resolved_patience(), restore_best_weights=True
            )
        )
    balanced = config.resolved_class_weight() == "balanced"
    weights = class_weights(targets[train], len(config.classes)) if balanced else None
    history = model.fit(
        features[train],
        targets[train],
        validation_data=(features[validation], targets[validation]) if validation.size else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
        class_weight=weights,
    )
    return {key: [float(value) for value in values] for key, values in history.history.items()}


def _epoch_logger(log: Log, epochs: int) -> keras.callbacks.Callback:
    import keras

    class EpochLog(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            values = " ".join(f"{key}={float(value):.4f}" for key, value in sorted((logs or {}).items()))
            log(f"epoch {epoch + 1}/{epochs} {values}")

    return EpochLog()


def _rows_per_corpus_and_class(
    corpus: NDArray[np.object_], emotion: NDArray[np.object_], classes: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    counts = Counter(zip(corpus.tolist(), emotion.tolist(), strict=True))
    corpora = sorted({c for c, _ in counts})
    return {c: {e: counts[(c, e)] for e in classes if counts[(c, e)]} for c in corpora}


def _one_value(table: pa.Table, column: str, metadata_value: bytes | None) -> str:
    values = set(table.column(column).unique().to_pylist()) - {None} if column in table.column_names else set()
    if len(values) > 1:
        raise SchemaError(f"table mixes {column} values {sorted(values)}; read one feature set at a time")
    from_metadata = metadata_value.decode() if metadata_value is not None else None
    if values and from_metadata is not None and values != {from_metadata}:
        raise SchemaError(f"{column} column {values.pop()!r} differs from schema metadata {from_metadata!r}")
    if not values and from_metadata is None:
        raise SchemaError(f"table carries no {column} (neither a column nor ser_batch.{column} schema metadata)")
    return values.pop() if values else str(from_metadata)


def _require_columns(table: pa.Table, names: tuple[str, ...]) -> None:
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise SchemaError(f"table lacks columns {missing}; has {table.column_names}")


def _say(log: Log | None, message: str) -> None:
    if log is not None:
        log(message)
