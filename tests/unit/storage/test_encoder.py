"""Encoder files: a feature set named and fingerprinted by the file's hash, loaded once, a changed file refused."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from encoder_gen import frame_encoder, weights

from ser_batch import storage
from ser_batch.config import stored_feature_config
from ser_batch.errors import ConfigError, StorageError


def write_model(path, weight) -> str:
    path.write_bytes(frame_encoder(weight))
    return str(path)


def test_the_set_is_named_and_fingerprinted_by_the_files_hash_not_its_location(tmp_path) -> None:
    weight = weights(8)
    first = storage.resolve_feature_set(f"onnx:{write_model(tmp_path / 'a.onnx', weight)}")
    moved = storage.resolve_feature_set(f"onnx:{write_model(tmp_path / 'b.onnx', weight)}")
    changed_weight = weight.copy()
    changed_weight[3, 5] += 0.01  # one weight of 2,560
    changed = storage.resolve_feature_set(f"onnx:{write_model(tmp_path / 'c.onnx', changed_weight)}")

    sha256 = hashlib.sha256((tmp_path / "a.onnx").read_bytes()).hexdigest()
    assert (first.name, first.sha256, first.n_dims, first.output) == (f"onnx-{sha256[:12]}", sha256, 8, None)
    assert first.model_uri == str(tmp_path / "a.onnx") and moved.model_uri == str(tmp_path / "b.onnx")
    assert (moved.name, moved.fingerprint()) == (first.name, first.fingerprint())
    assert changed.name != first.name and changed.fingerprint() != first.fingerprint()
    assert stored_feature_config(first.name, first.model_dump(mode="json")) == first  # as a model directory keeps it


def test_a_relative_path_is_stored_absolute_and_a_chosen_output_is_another_set(tmp_path, monkeypatch) -> None:
    write_model(tmp_path / "m.onnx", weights(8))
    monkeypatch.chdir(tmp_path)
    first = storage.resolve_feature_set("onnx:m.onnx")
    chosen = storage.resolve_feature_set("onnx:m.onnx#frames")
    assert first.model_uri == chosen.model_uri == str(tmp_path / "m.onnx")
    assert (first.output, chosen.output) == (None, "frames") and chosen.name.startswith(f"{first.name}-")
    assert len(chosen.name) == len(first.name) + 9 and chosen.fingerprint() != first.fingerprint()
    with pytest.raises(ConfigError, match="no output 'hidden'"):
        storage.resolve_feature_set("onnx:m.onnx#hidden")


def test_a_missing_file_or_unknown_name_is_refused_in_one_line(tmp_path) -> None:
    with pytest.raises(StorageError, match="nope.onnx: not found"):
        storage.resolve_feature_set(f"onnx:{tmp_path / 'nope.onnx'}")
    with pytest.raises(ConfigError, match=r"unknown feature set 'wavlm'; known: .*, or onnx:PATH"):
        storage.resolve_feature_set("wavlm")
    with pytest.raises(ConfigError, match="'onnx-0123456789ab' is an encoder set: name its file, onnx:PATH"):
        storage.resolve_feature_set("onnx-0123456789ab")  # featurize needs the file itself


def test_a_file_changed_since_the_set_was_named_is_refused_by_the_check_and_by_loading(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    config = storage.resolve_feature_set(f"onnx:{write_model(path, weights(8))}")
    storage.check_encoder_file(config)  # unchanged: passes
    write_model(path, weights(8, seed=1))

    with pytest.raises(ConfigError) as error:
        storage.check_encoder_file(config)
    assert str(error.value).startswith(f"{path}: the encoder file has changed") and config.sha256[:12] in str(
        error.value
    )
    other = type(config).model_validate({**config.model_dump(), "sha256": "0" * 64, "name": "onnx-000000000000"})
    with pytest.raises(ConfigError, match="the encoder file has changed"):
        storage.load_encoder(other)


def test_an_encoder_is_loaded_once_per_process_and_file(tmp_path) -> None:
    config = storage.resolve_feature_set(f"onnx:{write_model(tmp_path / 'm.onnx', weights(8, seed=7))}")
    (tmp_path / "m.onnx").unlink()  # the session made while resolving serves this process from now on
    encoder = storage.load_encoder(config)
    assert encoder is storage.load_encoder(config)
    assert encoder(np.zeros(640, np.float32)).shape == (2, 8)
