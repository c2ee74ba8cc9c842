"""Model directories, local or s3://: save and load a trained model with its metadata and plots (IO).

A model directory holds ``model.keras`` (normalisation included), ``metadata.json``,
``confusion_matrix.png``, ``confusion_matrix.csv`` and ``history.png``. Every file goes
through ``ser_batch.storage``; ``metadata.json`` is written last, so a directory with
metadata is complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ser_batch.errors import SchemaError
from ser_batch.model import probabilities
from ser_batch.storage import join, read_bytes, storage_errors, write_bytes_atomic
from ser_batch.voice import VoicePrior, normalise_voices

if TYPE_CHECKING:
    import keras

    from ser_batch.train import TrainResult

FORMAT_VERSION = 1
"""Version of the model directory layout and ``metadata.json`` keys."""

_REQUIRED_METADATA = ("format_version", "model", "classes", "feature_set", "fingerprint", "n_features")
_VERSIONED = {
    "numpy": ("numpy",), "tensorflow": ("tensorflow-cpu", "tensorflow"), "keras": ("keras",),
    "librosa": ("librosa",), "pyarrow": ("pyarrow",), "ser_batch": ("ser-batch",),
}  # fmt: skip


@dataclass(frozen=True)
class Artifact:
    """A loaded model directory: the Keras model and what it was trained on."""

    model: keras.Model
    metadata: dict[str, Any]
    classes: tuple[str, ...]
    feature_set: str
    fingerprint: str
    model_dir: str
    voice_prior: VoicePrior | None = None


def save_artifact(
    model_dir: str, result: TrainResult, *, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write a trained model and its reports to a model directory (overwriting same-named files).

    Args:
        model_dir: local folder or ``s3://bucket/prefix``; created if missing.
        result: what ``ser_batch.train.fit`` returned.
        storage_options: fsspec/s3fs options (credentials, endpoint) for a remote ``model_dir``.

    Returns:
        the metadata written to ``metadata.json``.

    Raises:
        StorageError: if ``model_dir`` cannot be written.
    """
    metadata = _metadata(result)
    part = metadata["confusion_part"]
    score = result.metrics[part]["accuracy"]
    title = f"{result.config.model} on {result.features.name}: {part} rows, {result.config.split} split"
    title += f", accuracy {score:.1%}" if score is not None else ""
    files = {
        "model.keras": _model_bytes(result.model),
        "confusion_matrix.png": confusion_png(result.confusion[part], result.classes, title=title),
        "confusion_matrix.csv": confusion_csv(result.confusion[part], result.classes),
        "history.png": history_png(result.history, title=f"{result.config.model} on {result.features.name}"),
        "metadata.json": json.dumps(metadata, indent=2, sort_keys=False).encode(),
    }
    for name, data in files.items():  # metadata.json last: its presence marks a complete directory
        with storage_errors(join(model_dir, name)):
            write_bytes_atomic(join(model_dir, name), data, storage_options=storage_options)
    return metadata


def load_artifact(model_dir: str, *, storage_options: dict[str, Any] | None = None) -> Artifact:
    """Load a model directory written by ``save_artifact``.

    Args:
        model_dir: local folder or ``s3://bucket/prefix``.
        storage_options: fsspec/s3fs options for a remote ``model_dir``.

    Returns:
        the model (uncompiled, ready to predict) with its metadata.

    Raises:
        StorageError: if ``metadata.json`` or ``model.keras`` cannot be read.
        SchemaError: if the metadata lacks required keys or disagrees with the model.
    """
    with storage_errors(join(model_dir, "metadata.json")):
        metadata = json.loads(read_bytes(join(model_dir, "metadata.json"), storage_options=storage_options))
    missing = [key for key in _REQUIRED_METADATA if key not in metadata]
    if missing:
        raise SchemaError(f"{join(model_dir, 'metadata.json')} lacks keys {missing}")
    with storage_errors(join(model_dir, "model.keras")):
        model_bytes = read_bytes(join(model_dir, "model.keras"), storage_options=storage_options)
    model = _model_from_bytes(model_bytes)
    classes = tuple(metadata["classes"])
    shape = (int(model.input_shape[-1]), int(model.output_shape[-1]))
    if shape != (int(metadata["n_features"]), len(classes)):
        raise SchemaError(
            f"{model_dir}: model maps {shape[0]} features to {shape[1]} classes but metadata says "
            f"{metadata['n_features']} features and classes {list(classes)}"
        )
    return Artifact(
        model=model, metadata=metadata, classes=classes, feature_set=str(metadata["feature_set"]),
        fingerprint=str(metadata["fingerprint"]), model_dir=model_dir,
        voice_prior=VoicePrior.from_dict(metadata["voice_prior"]) if metadata.get("voice_prior") else None,
    )  # fmt: skip


def predict_proba(artifact: Artifact, features: ArrayLike, *, voices: Sequence[Hashable] | None = None) -> NDArray[np.float32]:
    """Class probabilities for raw feature vectors of the artifact's feature set.

    Args:
        artifact: a loaded model directory.
        features: shape ``(n, n_features)``.
        voices: the voice (speaker, call channel) of each row, for a model trained with
            voice normalisation; None treats every row as a voice of its own, which
            leans on the training population's statistics.

    Returns:
        float32 array of shape ``(n, len(artifact.classes))``, columns in ``artifact.classes`` order.

    Raises:
        SchemaError: if ``features`` does not have the model's width.
    """
    matrix = np.asarray(features, dtype=np.float32)
    if artifact.voice_prior is not None and matrix.ndim == 2 and matrix.shape[0]:
        matrix = normalise_voices(matrix, range(matrix.shape[0]) if voices is None else voices, artifact.voice_prior)
    return probabilities(artifact.model, matrix)


def confusion_png(matrix: NDArray[np.int64], classes: tuple[str, ...], *, title: str) -> bytes:
    """A labelled heat map of a confusion matrix in percent of each true row, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(matrix * 100.0, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = 2.0 + 0.9 * len(classes)
    figure = Figure(figsize=(side + 1.5, side), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(percent, cmap="Blues", vmin=0.0, vmax=100.0)
    for (row, column), value in np.ndenumerate(percent):
        axes.text(column, row, f"{value:.1f}%\n({matrix[row, column]})", ha="center", va="center",
                  fontsize=8, color="white" if value > 55.0 else "black")  # fmt: skip
    axes.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), labels=[f"{c} ({n})" for c, n in zip(classes, totals[:, 0], strict=True)])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (rows)")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="% of the true class")
    return _png(figure)


def confusion_csv(matrix: NDArray[np.int64], classes: tuple[str, ...]) -> bytes:
    r"""A confusion matrix as CSV: header ``true\predicted,<classes>``, one row of counts per true class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\predicted", *classes])
    for name, counts in zip(classes, matrix.tolist(), strict=True):
        writer.writerow([name, *counts])
    return buffer.getvalue().encode()


def history_png(history: dict[str, list[float]], *, title: str) -> bytes:
    """Training and validation loss and accuracy per epoch, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                marker = "." if len(history[key]) < 30 else None
                axes.plot(range(1, len(history[key]) + 1), history[key], label=label, marker=marker)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "accuracy":
            axes.set_ylim(0.0, 1.02)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return _png(figure)


def _metadata(result: TrainResult) -> dict[str, Any]:
    config, split = result.config, result.split
    part = next((p for p in ("test", "validation", "train") if split[p].size), "train")
    return {
        "format_version": FORMAT_VERSION,
        "model": config.model,
        "classes": list(result.classes),
        "feature_set": result.features.name,
        "fingerprint": result.features.fingerprint,
        "feature_config": result.features.config,
        "feature_names": result.features.names,
        "n_features": int(result.model.input_shape[-1]),
        "train_config": config.model_dump(mode="json"),
        "voice_prior": result.voice_prior.as_dict() if result.voice_prior is not None else None,
        "split": config.split,
        "seed": config.seed,
        "n_rows": {p: int(indices.size) for p, indices in split.items()},
        "training_rows": result.training_rows,
        "n_excluded": result.n_excluded,
        "n_unlabelled": result.n_unlabelled,
        "metrics": result.metrics,
        "confusion_part": part,
        "confusion": {p: matrix.tolist() for p, matrix in result.confusion.items()},
        "history": result.history,
        "versions": {name: _version(dists) for name, dists in _VERSIONED.items()},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _version(distributions: tuple[str, ...]) -> str | None:
    for distribution in distributions:
        try:
            return package_metadata.version(distribution)
        except package_metadata.PackageNotFoundError:
            continue
    return None


def _model_bytes(model: keras.Model) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ser-batch-model-") as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def _model_from_bytes(data: bytes) -> keras.Model:
    import keras

    with tempfile.TemporaryDirectory(prefix="ser-batch-model-") as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as handle:
            handle.write(data)
        return keras.models.load_model(path, compile=False)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
