from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ser_batch.config import TrainConfig, feature_config
from ser_batch.errors import SchemaError, StorageError
from ser_batch.model.fit import TrainResult, feature_matrix
from ser_batch.model.plots import confusion_csv, confusion_png, history_png

FeaturesTable = Callable[..., pa.Table]
CLASSES = ("angry", "happy", "sad")
SET = "stats8k"  # a model directory must name a feature set this code knows, with its fingerprint
FINGERPRINT = feature_config(SET).fingerprint()
FILES = {"model.keras", "metadata.json", "confusion_matrix.png", "confusion_matrix.csv", "history.png"}


def test_confusion_csv_has_a_header_and_one_row_per_true_class() -> None:
    text = confusion_csv(np.array([[3, 1], [0, 2]]), ("angry", "sad")).decode()
    assert text == "true\\predicted,angry,sad\nangry,3,1\nsad,0,2\n"


def test_plots_are_png_even_with_empty_rows_or_no_validation() -> None:
    assert confusion_png(np.array([[3, 1], [0, 0]]), ("angry", "sad"), title="t").startswith(b"\x89PNG")
    assert history_png({"loss": [1.0, 0.5], "accuracy": [0.4, 0.8]}, title="t").startswith(b"\x89PNG")


@pytest.fixture(scope="module")
def trained(features_table: FeaturesTable) -> TrainResult:
    from ser_batch.model.fit import fit

    counts = {"angry": 30, "happy": 30, "sad": 30, "calm": 6}
    table = features_table(counts, feature_set=SET, fingerprint=FINGERPRINT)
    return fit(table, TrainConfig(classes=CLASSES, epochs=2, batch_size=16, seed=2, calibrate=True))


@pytest.mark.slow
def test_save_writes_every_file_with_the_promised_metadata(trained: TrainResult, tmp_path: Path) -> None:
    from ser_batch.storage.model_dir import save_artifact

    model_dir = tmp_path / "model"
    written = save_artifact(str(model_dir), trained)
    assert {p.name for p in model_dir.iterdir()} == FILES
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata == written
    assert metadata["classes"] == list(CLASSES)
    assert (metadata["feature_set"], metadata["fingerprint"], metadata["model"]) == (
        SET,
        FINGERPRINT,
        trained.config.model,
    )
    assert (metadata["split"], metadata["seed"], metadata["n_excluded"]) == ("random", 2, {"calm": 6})
    assert metadata["feature_config"]["kind"] == "synthetic" and len(metadata["feature_names"]) == 6
    assert sum(sum(c.values()) for c in metadata["training_rows"].values()) == metadata["n_rows"]["train"]
    assert {"numpy", "tensorflow", "keras", "librosa", "pyarrow"} <= {k for k, v in metadata["versions"].items() if v}
    for part in ("train", "validation", "test"):
        assert {"accuracy", "balanced_accuracy", "per_corpus", "per_class"} <= set(metadata["metrics"][part])
    rows = list(csv.reader(io.StringIO((model_dir / "confusion_matrix.csv").read_text())))
    assert rows[0] == ["true\\predicted", *CLASSES]
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == trained.confusion["test"].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("remote", [False, True], ids=["local", "fsspec-memory"])
def test_save_load_predict_round_trip_gives_equal_outputs(
    trained: TrainResult, features_table: FeaturesTable, tmp_path: Path, remote: bool
) -> None:
    from ser_batch.model.networks import probabilities
    from ser_batch.storage.model_dir import load_artifact, save_artifact

    model_dir = "memory://ser-batch-tests/model" if remote else str(tmp_path / "model")
    save_artifact(model_dir, trained)
    artifact = load_artifact(model_dir)
    assert artifact.classes == CLASSES
    assert (artifact.feature_set, artifact.fingerprint) == (SET, FINGERPRINT)
    features = feature_matrix(
        features_table({"angry": 5, "happy": 5, "sad": 5}, seed=9, feature_set=SET, fingerprint=FINGERPRINT)
    )
    np.testing.assert_allclose(
        probabilities(artifact.model, features), probabilities(trained.model, features), atol=1e-6
    )
    assert artifact.probabilities(features).shape == (15, len(CLASSES))


@pytest.mark.slow
def test_the_temperature_is_saved_and_applied_in_the_one_probability_path(
    trained: TrainResult, features_table: FeaturesTable, tmp_path: Path
) -> None:
    from ser_batch.model.calibration import calibrated_probabilities
    from ser_batch.model.networks import probabilities
    from ser_batch.storage.model_dir import load_artifact, save_artifact

    save_artifact(str(tmp_path), trained)
    artifact = load_artifact(str(tmp_path))
    features = feature_matrix(features_table({"angry": 5, "sad": 5}, seed=4, feature_set=SET, fingerprint=FINGERPRINT))
    raw = probabilities(trained.model, features)

    assert json.loads((tmp_path / "metadata.json").read_text())["temperature"] == trained.temperature
    assert artifact.temperature == trained.temperature != 1.0
    np.testing.assert_allclose(artifact.probabilities(features, calibrated=False), raw, atol=1e-6)
    np.testing.assert_allclose(
        artifact.probabilities(features), calibrated_probabilities(raw, trained.temperature), atol=1e-6
    )
    assert not np.allclose(artifact.probabilities(features), raw, atol=1e-3)


@pytest.mark.slow
def test_a_model_dir_saved_before_calibration_loads_with_temperature_one(
    trained: TrainResult, features_table: FeaturesTable, tmp_path: Path
) -> None:
    from ser_batch.model.networks import probabilities
    from ser_batch.storage.model_dir import load_artifact, save_artifact

    save_artifact(str(tmp_path), trained)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    del metadata["temperature"]
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    features = feature_matrix(features_table({"angry": 5, "sad": 5}, seed=4, feature_set=SET, fingerprint=FINGERPRINT))

    artifact = load_artifact(str(tmp_path))

    assert artifact.temperature == 1.0
    np.testing.assert_allclose(artifact.probabilities(features), probabilities(trained.model, features), atol=1e-6)


@pytest.mark.parametrize("temperature", [0, -2.0, "hot", None, True])
def test_load_refuses_a_temperature_that_is_not_a_positive_number(tmp_path: Path, temperature: object) -> None:
    from ser_batch.storage.model_dir import read_model_identity

    metadata = {
        "format_version": 1,
        "model": "mlp",
        "classes": list(CLASSES),
        "feature_set": SET,
        "fingerprint": FINGERPRINT,
        "n_features": 6,
        "temperature": temperature,
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    (tmp_path / "model.keras").write_bytes(b"never read")

    with pytest.raises(SchemaError, match="temperature .* is not a positive number"):
        read_model_identity(str(tmp_path))


@pytest.mark.slow
def test_evaluate_reports_excluded_classes_and_never_maps_them(
    trained: TrainResult, features_table: FeaturesTable, tmp_path: Path
) -> None:
    from ser_batch.model.fit import evaluate
    from ser_batch.storage.model_dir import load_artifact, save_artifact

    save_artifact(str(tmp_path), trained)
    counts = {"angry": 10, "sad": 10, "boredom": 4, "surprise": 3, None: 2}
    table = features_table(counts, seed=3, feature_set=SET, fingerprint=FINGERPRINT)
    evaluation = evaluate(table, load_artifact(str(tmp_path)))
    assert evaluation.n == 20
    assert evaluation.n_excluded == {"surprise": 3, "boredom": 4}
    assert evaluation.n_unlabelled == 2
    assert evaluation.confusion.sum() == 20 and evaluation.confusion[1].sum() == 0
    result = json.loads(json.dumps(evaluation.as_dict()))
    assert {"accuracy", "balanced_accuracy", "per_corpus", "per_class", "confusion", "n"} <= set(result)
    assert set(result["per_class"]) == {"angry", "sad"}


@pytest.mark.slow
@pytest.mark.parametrize(("feature_set", "fingerprint"), [(SET, "beef"), ("seed268", FINGERPRINT)])
def test_evaluate_refuses_another_feature_set_or_fingerprint(
    trained: TrainResult, features_table: FeaturesTable, tmp_path: Path, feature_set: str, fingerprint: str
) -> None:
    from ser_batch.model.fit import evaluate
    from ser_batch.storage.model_dir import load_artifact, save_artifact

    save_artifact(str(tmp_path), trained)
    table = features_table(feature_set=feature_set, fingerprint=fingerprint)
    with pytest.raises(SchemaError, match=f"but the model was trained on '{SET}' \\(fingerprint {FINGERPRINT}\\)"):
        evaluate(table, load_artifact(str(tmp_path)))


def test_load_from_a_missing_directory_raises_storage_error(tmp_path: Path) -> None:
    from ser_batch.storage.model_dir import load_artifact

    with pytest.raises(StorageError, match="not found"):
        load_artifact(str(tmp_path / "absent"))


def test_load_refuses_metadata_without_required_keys(tmp_path: Path) -> None:
    from ser_batch.storage.model_dir import load_artifact

    (tmp_path / "metadata.json").write_text(json.dumps({"model": "seed-mlp"}))
    with pytest.raises(SchemaError, match="lacks keys"):
        load_artifact(str(tmp_path))


@pytest.mark.slow
def test_voice_normalised_model_keeps_its_prior_and_evaluate_reproduces_the_test_metrics(
    trained: TrainResult, features_table: FeaturesTable, tmp_path: Path
) -> None:
    from ser_batch.model.fit import evaluate, fit
    from ser_batch.storage.model_dir import load_artifact, save_artifact

    assert trained.voice_prior is None  # off by default
    trained = fit(
        features_table({"angry": 30, "happy": 30, "sad": 30, "calm": 6}, feature_set=SET, fingerprint=FINGERPRINT),
        TrainConfig(classes=CLASSES, epochs=2, batch_size=16, seed=2, voice_norm=True),
    )
    assert trained.voice_prior is not None
    save_artifact(str(tmp_path), trained)
    artifact = load_artifact(str(tmp_path))
    assert artifact.voice_prior is not None
    np.testing.assert_allclose(artifact.voice_prior.mean, trained.voice_prior.mean)
    assert artifact.voice_prior.weight == trained.config.voice_prior_weight == 10.0
    # the table it was fitted on
    table = features_table({"angry": 30, "happy": 30, "sad": 30, "calm": 6}, feature_set=SET, fingerprint=FINGERPRINT)
    test_paths = set(trained.rows.take(trained.split["test"]).column("path").to_pylist())
    test_rows = table.filter(pa.array([p in test_paths for p in table.column("path").to_pylist()]))
    assert evaluate(test_rows, artifact).accuracy == trained.metrics["test"]["accuracy"]
    features = feature_matrix(test_rows)
    alone, together = (
        artifact.probabilities(features),
        artifact.probabilities(features, voices=["one voice"] * len(features)),
    )
    assert alone.shape == together.shape and not np.allclose(alone, together)  # each clip alone leans on the prior
