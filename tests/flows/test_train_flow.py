from __future__ import annotations

import csv
import json
import shutil

import pytest

from flows.cli import main
from flows.featurize import featurize
from flows.train import train
from ser_batch import storage
from ser_batch.config import TrainConfig, feature_config
from ser_batch.demo import write_demo_archive

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = feature_config("seed268")
EVALUATE_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "per_corpus",
    "per_class",
    "confusion",
    "n",
    "temperature",
    "ece",
    "ece_uncalibrated",
    "angry",
    "telephone",
}


@pytest.fixture(scope="module")
def demo_features(tmp_path_factory, prefect):
    root = tmp_path_factory.mktemp("demo")
    write_demo_archive(root / "audio", n_per_emotion=2)
    featurize(str(root / "audio"), str(root / "out"), feature_set="seed268", n_workers=2, settle_s=0)
    return root / "out"


def test_train_writes_a_complete_model_directory(demo_features, tmp_path) -> None:
    result = train(
        str(demo_features),
        str(tmp_path / "model"),
        feature_set="seed268",
        config=TrainConfig(epochs=2, split="speaker"),
    )
    assert set(result["metrics"]) == {"train", "validation", "test"}
    names = {path.name for path in (tmp_path / "model").iterdir()}
    assert {"model.keras", "metadata.json", "confusion_matrix.png", "confusion_matrix.csv", "history.png"} <= names
    metadata = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert metadata["feature_set"] == "seed268" and metadata["fingerprint"] == SEED.fingerprint()
    assert metadata["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad"]


def test_evaluate_json_has_the_documented_keys(demo_features, tmp_path, capsys) -> None:
    train(
        str(demo_features), str(tmp_path / "model"), feature_set="seed268", config=TrainConfig(epochs=2, split="none")
    )
    capsys.readouterr()
    assert main(["evaluate", str(demo_features), "--model", str(tmp_path / "model"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert EVALUATE_KEYS <= set(report)
    assert report["n"] == 60 and report["n_unlabelled"] == 1


def test_model_refuses_a_table_of_another_fingerprint(demo_features, tmp_path, capsys) -> None:
    train(
        str(demo_features), str(tmp_path / "model"), feature_set="seed268", config=TrainConfig(epochs=1, split="none")
    )
    metadata_path = tmp_path / "model" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["fingerprint"] = "0123456789abcdef"
    metadata_path.write_text(json.dumps(metadata))
    capsys.readouterr()
    assert main(["evaluate", str(demo_features), "--model", str(tmp_path / "model")]) == 2
    assert "fingerprint" in capsys.readouterr().err


def test_real_clips_featurize_with_manifest_labels_then_train_and_evaluate(ser_dev, prefect, tmp_path, capsys) -> None:
    with open(ser_dev / "MANIFEST.csv", newline="") as handle:
        manifest = list(csv.DictReader(handle))
    chosen = [row for row in manifest if row["emotion"] in {"angry", "happy", "sad", "neutral"}][::12]
    for row in chosen:
        target = tmp_path / "archive" / row["relpath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ser_dev / row["relpath"], target)
    summary = featurize(
        str(tmp_path / "archive"), str(tmp_path / "out"), feature_set="seed268", n_workers=2, shard_size=25, settle_s=0
    )
    assert summary["featurized"] == len(chosen) and summary["failed"] == 0

    table = storage.read_features(str(tmp_path / "out"), config=SEED)
    expected = {
        str(tmp_path / "archive" / row["relpath"]): (
            row["corpus"],
            row["speaker"],
            row["emotion"],
            int(row["sample_rate"]),
        )
        for row in chosen
    }
    actual = {
        row["path"]: (row["corpus"], row["speaker"], row["emotion"], row["sample_rate"])
        for row in table.select(["path", "corpus", "speaker", "emotion", "sample_rate"]).to_pylist()
    }
    assert actual == expected

    config = TrainConfig(epochs=5, split="speaker", classes=("angry", "happy", "neutral", "sad"))
    result = train(str(tmp_path / "out"), str(tmp_path / "model"), feature_set="seed268", config=config)
    assert result["metrics"]["test"]["n"] > 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "out"), "--model", str(tmp_path / "model"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == len(chosen)
