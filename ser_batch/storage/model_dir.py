"""Model directories, local or s3://: save and load a trained model with its metadata and plots (IO).

A model directory holds ``model.keras`` (normalisation included), ``metadata.json``,
``confusion_matrix.png``, ``confusion_matrix.csv`` and ``history.png``. Every file goes
through ``ser_batch.storage``; ``metadata.json`` is written last, so a directory with
metadata is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

from ser_batch.errors import SchemaError
from ser_batch.model.artifact import Artifact
from ser_batch.model.plots import confusion_csv, confusion_png, history_png
from ser_batch.model.voice import VoicePrior
from ser_batch.schema import FORMAT_VERSION, ModelIdentity, check_model_metadata, model_identity, model_temperature
from ser_batch.storage.files import join, read_bytes, storage_errors, write_bytes_atomic

if TYPE_CHECKING:
    import keras

    from ser_batch.model.fit import TrainResult

_VERSIONED = {
    "numpy": ("numpy",),
    "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "keras": ("keras",),
    "librosa": ("librosa",),
    "pyarrow": ("pyarrow",),
    "ser_batch": ("ser-batch",),
}


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


def read_model_identity(model_dir: str, *, storage_options: dict[str, Any] | None = None) -> ModelIdentity:
    """Read a model directory's metadata, check it, and hash it with the model file into a ``model_id``.

    Cheap (no TensorFlow): the planner and every scoring shard call it.

    Raises:
        StorageError: if ``metadata.json`` or ``model.keras`` cannot be read.
        SchemaError, ConfigError: as ``ser_batch.schema.model_identity``.
    """
    identity, _, _ = _read_model_files(model_dir, storage_options)
    return identity


def load_artifact(model_dir: str, *, storage_options: dict[str, Any] | None = None) -> Artifact:
    """Load a model directory written by ``save_artifact``.

    Args:
        model_dir: local folder or ``s3://bucket/prefix``.
        storage_options: fsspec/s3fs options for a remote ``model_dir``.

    Returns:
        the model (uncompiled, ready to predict) with its metadata and calibration temperature
        (1.0 for a directory written before calibration existed).

    Raises:
        StorageError: if ``metadata.json`` or ``model.keras`` cannot be read.
        SchemaError: if the metadata is malformed or disagrees with the model, or the model file
            cannot be loaded (truncated, or written by an incompatible Keras); the message names
            ``model_dir``, never a temporary copy.
    """
    identity, metadata, model_bytes = _read_model_files(model_dir, storage_options)
    model = _model_from_bytes(
        model_bytes, join(model_dir, "model.keras"), (metadata.get("versions") or {}).get("keras")
    )
    shape = (int(model.input_shape[-1]), int(model.output_shape[-1]))
    if shape != (int(metadata["n_features"]), len(identity.classes)):
        raise SchemaError(
            f"{model_dir}: model maps {shape[0]} features to {shape[1]} classes but metadata says "
            f"{metadata['n_features']} features and classes {list(identity.classes)}"
        )
    prior = VoicePrior.from_dict(metadata["voice_prior"]) if metadata.get("voice_prior") else None
    temperature = model_temperature(metadata, model_dir=model_dir)  # 1.0 for a model saved before calibration
    return Artifact(model=model, metadata=metadata, identity=identity, voice_prior=prior, temperature=temperature)


def _read_model_files(
    model_dir: str, storage_options: dict[str, Any] | None
) -> tuple[ModelIdentity, dict[str, Any], bytes]:
    metadata_uri, model_uri = join(model_dir, "metadata.json"), join(model_dir, "model.keras")
    with storage_errors(metadata_uri):
        metadata_bytes = read_bytes(metadata_uri, storage_options=storage_options)
    try:
        metadata = json.loads(metadata_bytes)
    except ValueError as error:
        raise SchemaError(f"{metadata_uri} is not JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise SchemaError(f"{metadata_uri} is not a JSON object")
    check_model_metadata(metadata, model_dir=model_dir)  # before reading a model file that may be large
    with storage_errors(model_uri):
        model_bytes = read_bytes(model_uri, storage_options=storage_options)
    digest = hashlib.sha256(hashlib.sha256(metadata_bytes).digest() + hashlib.sha256(model_bytes).digest())
    return model_identity(metadata, model_dir=model_dir, content_hash=digest.hexdigest()), metadata, model_bytes


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
        "temperature": result.temperature,
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


_LOAD_ERRORS = (ValueError, OSError, TypeError, KeyError, AttributeError, EOFError, zipfile.BadZipFile)
"""What Keras raises for a model file it cannot read: truncated or foreign zips, HDF5 errors, unknown classes or keys."""


def _model_from_bytes(data: bytes, uri: str, saved_with: str | None = None) -> keras.Model:
    with tempfile.TemporaryDirectory(prefix="ser-batch-model-") as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as handle:
            handle.write(data)
        loading_with = None
        try:
            if not zipfile.is_zipfile(path):  # checked before importing Keras: a truncated copy fails in milliseconds
                raise zipfile.BadZipFile("not a whole .keras (zip) file")
            import keras

            loading_with = keras.__version__
            return keras.models.load_model(path, compile=False)
        except _LOAD_ERRORS as error:  # named by MODEL_DIR, never by the temporary copy
            reason = str(error).replace(path, "model.keras").splitlines()[0] if str(error) else type(error).__name__
            if saved_with and loading_with and saved_with != loading_with:
                reason += f"; saved with Keras {saved_with}, this is Keras {loading_with}"
            raise SchemaError(
                f"{uri} cannot be loaded ({reason}): it is truncated or was written by an incompatible version; "
                "retrain into the model directory with `ser-batch train`, or copy it again"
            ) from None
