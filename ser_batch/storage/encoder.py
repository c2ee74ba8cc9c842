"""ONNX encoder files: hash them, name their feature set, load them once per process (IO).

``--feature-set onnx:URI`` names an encoder set (``ser_batch.config.EncoderFeatureConfig``):
``resolve_feature_set`` reads the file, hashes it and checks the model, and the set is called
``onnx-<first 12 hex digits of its SHA-256>``. Workers load the model with ``load_encoder``, which
checks the bytes against that hash; a model directory trained on the set stores the file's
location and hash, and scoring refuses a file that has since changed (``check_encoder_file``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any

from ser_batch.config import (
    ENCODER_SET_NAME,
    ONNX_PREFIX,
    EncoderFeatureConfig,
    FeatureConfig,
    encoder_set_name,
    feature_config,
)
from ser_batch.errors import ConfigError
from ser_batch.features.encoder import OnnxEncoder
from ser_batch.storage.files import is_remote, local_path, local_uri, read_bytes, storage_errors

# One session per encoder file and process, keyed by the file's SHA-256 and the output taken:
# content-addressed, so never stale (a changed file is another feature set with another key).
# Dask workers are long-lived processes that run many shards; a WavLM-base file is ~380 MB
# (95 M float32 weights), read and turned into a session once per worker rather than once per
# shard. As with scoring's models, the current encoder and the one before it are kept, at most.
_ENCODERS: OrderedDict[tuple[str, str | None], OnnxEncoder] = OrderedDict()
_ENCODERS_KEPT = 2
_ENCODERS_LOCK = threading.Lock()


def _read_model(uri: str, storage_options: dict[str, Any] | None) -> tuple[bytes, str]:
    with storage_errors(uri):
        data = read_bytes(uri, storage_options=storage_options)
    return data, hashlib.sha256(data).hexdigest()


def encoder_feature_config(
    uri: str, *, output: str | None = None, sample_rate: int = 16_000, storage_options: dict[str, Any] | None = None
) -> EncoderFeatureConfig:
    """The encoder feature set of an ONNX file: read, hashed, its model checked and run once.

    Args:
        uri: local path or ``s3://`` URI of the ONNX file.
        output: the output taken as frame embeddings (default: the model's first).
        sample_rate: the rate the model takes (Hz).
        storage_options: fsspec options for a remote file.

    Returns:
        The set, named after the file's SHA-256 and the chosen output (``encoder_set_name``), with the
        embedding width it found.

    Raises:
        StorageError: if the file cannot be read.
        ConfigError: ``<uri>: <what is wrong>`` if the model breaks the contract (``OnnxEncoder``).
    """
    data, sha256 = _read_model(uri, storage_options)
    encoder = OnnxEncoder(data, uri, sample_rate=sample_rate, output=output)
    config = EncoderFeatureConfig(
        name=encoder_set_name(sha256, output),
        model_uri=uri,
        sha256=sha256,
        output=output,
        n_dims=encoder.n_dims,
        sample_rate=sample_rate,
    )
    _keep(encoder, (sha256, output))
    return config


def _keep(encoder: OnnxEncoder, key: tuple[str, str | None]) -> OnnxEncoder:
    with _ENCODERS_LOCK:
        _ENCODERS[key] = _ENCODERS.get(key, encoder)
        _ENCODERS.move_to_end(key)
        while len(_ENCODERS) > _ENCODERS_KEPT:
            _ENCODERS.popitem(last=False)
        return _ENCODERS[key]


def resolve_feature_set(name: str, *, storage_options: dict[str, Any] | None = None) -> FeatureConfig:
    """The feature set a user names: one of ``FEATURE_SETS``, or ``onnx:URI[#OUTPUT]`` (``encoder_feature_config``).

    A local path is stored absolute.

    Raises:
        ConfigError: unknown name, or an ONNX file that breaks the contract.
        StorageError: if the ONNX file cannot be read.
    """
    if re.match(ENCODER_SET_NAME, name):
        raise ConfigError(f"feature set {name!r} is an encoder set: name its file, {ONNX_PREFIX}PATH")
    if not name.startswith(ONNX_PREFIX):
        return feature_config(name)
    uri, _, output = name[len(ONNX_PREFIX) :].partition("#")
    if not uri:
        raise ConfigError(f"feature set {name!r}: name the ONNX file, e.g. {ONNX_PREFIX}/models/wavlm.onnx")
    if not is_remote(uri):  # stored absolute: workers and later scoring runs need not share this directory
        uri = local_uri(local_path(uri))
    return encoder_feature_config(uri, output=output or None, storage_options=storage_options)


def check_encoder_file(config: EncoderFeatureConfig, *, storage_options: dict[str, Any] | None = None) -> None:
    """Refuse an encoder file whose bytes are no longer those the feature set was made with.

    Raises:
        ConfigError: naming the file, the SHA-256 it has and the one the set (and any model trained on it) expects.
        StorageError: if the file cannot be read.
    """
    _, sha256 = _read_model(config.model_uri, storage_options)
    _refuse_another_file(config, sha256)


def _refuse_another_file(config: EncoderFeatureConfig, sha256: str) -> None:
    if sha256 != config.sha256:
        raise ConfigError(
            f"{config.model_uri}: the encoder file has changed (sha256 {sha256[:12]}..., feature set {config.name} "
            f"expects {config.sha256[:12]}...); restore that file, or featurize and train again with this one"
        )


def load_encoder(config: EncoderFeatureConfig, *, storage_options: dict[str, Any] | None = None) -> OnnxEncoder:
    """The loaded model of an encoder set, from this process's cache or read now (and checked against its hash).

    Raises:
        ConfigError: if the file's bytes have another SHA-256 than the set's, or the model breaks the contract.
        StorageError: if the file cannot be read.
    """
    key = (config.sha256, config.output)
    with _ENCODERS_LOCK:
        if key in _ENCODERS:
            _ENCODERS.move_to_end(key)
            return _ENCODERS[key]
    data, sha256 = _read_model(config.model_uri, storage_options)
    _refuse_another_file(config, sha256)
    return _keep(OnnxEncoder(data, config.model_uri, sample_rate=config.sample_rate, output=config.output), key)
