from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ser_batch import schema, storage
from ser_batch.config import FeatureConfig, TrainConfig, feature_config
from ser_batch.errors import ConfigError, SchemaError
from ser_batch.features.extract import feature_names
from ser_batch.jobs.train import evaluate_store, format_evaluation, train_and_save
from ser_batch.labels import labels_from_path
from ser_batch.model.fit import Evaluation

STATS = feature_config("stats8k")
SEED = feature_config("seed268")
NAMES = feature_names(STATS)
CLASSES = ("angry", "happy", "sad")
CODES = {"angry": "05", "happy": "03", "sad": "04"}
CONFIG = TrainConfig(
    model="logistic", classes=CLASSES, epochs=2, batch_size=16, split="none", validation_size=0.0, seed=0
)
FILES = {"model.keras", "metadata.json", "confusion_matrix.png", "confusion_matrix.csv", "history.png"}
N_LABELLED = 24
N_COPIED = 6  # clips with augmented copies, two copies each


def clip_paths(root: str) -> list[str]:
    """RAVDESS names: 4 actors x 3 classes x 2 intensities, then a neutral clip (not a class) and an unlabelled call."""
    labelled = [
        f"{root}/ravdess/Actor_{actor:02d}/03-01-{CODES[emotion]}-{intensity}-01-01-{actor:02d}.wav"
        for actor in range(1, 5)
        for emotion in CLASSES
        for intensity in ("01", "02")
    ]
    return [*labelled, f"{root}/ravdess/Actor_05/03-01-01-01-01-01-05.wav", f"{root}/calls/agent-7.wav"]


def feature_rows(
    paths: list[str], *, config: FeatureConfig = STATS, copies: tuple[str, ...] = (), seed: int = 0
) -> pa.Table:
    """Rows as featurize writes them: one Gaussian cluster per emotion, labels from the names."""
    rng = np.random.default_rng(seed)
    width = len(feature_names(config))
    centers = {emotion: np.random.default_rng(index).normal(0.0, 6.0, width) for index, emotion in enumerate(CODES)}
    buffer = schema.FeatureRows.empty()
    for index, path in enumerate(paths):
        labels = labels_from_path(path)
        for _ in copies or [None]:
            center = centers.get(labels.emotion or "", np.zeros(width))
            buffer.append(
                (center + rng.normal(0.0, 1.0, width)).astype(np.float32),
                path=path,
                corpus=labels.corpus,
                speaker=labels.speaker,
                emotion=labels.emotion,
                duration_s=2.0,
                sample_rate=16_000,
                n_channels=1,
                content_key=f"{index}:1",
                content_hash=None,
                feature_set=config.name,
                fingerprint=config.fingerprint(),
                featurized_at=datetime(2026, 11, 24, tzinfo=UTC),
            )
    table = buffer.to_table(schema.features_schema(config, feature_names(config)))
    if not copies:
        return table
    transforms = pa.array(list(copies) * len(paths), pa.string())
    return table.add_column(table.schema.get_field_index("features"), schema.AUGMENTATION_FIELD, transforms)


def write_dest(dest: Path, *, with_copies: bool) -> list[str]:
    paths = clip_paths("/archive")
    storage.write_features(feature_rows(paths), str(dest), "51" * 10)
    if with_copies:
        copies = feature_rows(paths[:N_COPIED], copies=("telephone", "speed-noise"), seed=1)
        storage.write_features(copies, str(dest), "a1" * 10, dataset_name="augmented")
    return paths


@dataclass(frozen=True)
class Trained:
    dest: Path
    model_dir: Path
    metadata: dict[str, Any]
    log: list[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("train")
    write_dest(root / "out", with_copies=False)
    log: list[str] = []
    metadata = train_and_save(
        str(root / "out"), str(root / "model"), feature_set="stats8k", config=CONFIG, log=log.append
    )
    return Trained(root / "out", root / "model", metadata, log)


@pytest.mark.slow
def test_train_and_save_writes_a_complete_model_dir_that_names_its_feature_set(trained: Trained) -> None:
    metadata = json.loads((trained.model_dir / "metadata.json").read_text())

    assert {path.name for path in trained.model_dir.iterdir()} == FILES
    assert metadata == trained.metadata
    assert (metadata["feature_set"], metadata["fingerprint"]) == ("stats8k", STATS.fingerprint())
    assert (metadata["model"], metadata["classes"], metadata["n_features"]) == ("logistic", list(CLASSES), len(NAMES))
    assert metadata["feature_names"] == NAMES and metadata["feature_config"]["fmax"] == STATS.fmax
    assert metadata["n_rows"] == {"train": N_LABELLED, "validation": 0, "test": 0}
    assert (metadata["n_excluded"], metadata["n_unlabelled"]) == ({"neutral": 1}, 1)
    assert metadata["training_rows"] == {"ravdess": {emotion: 8 for emotion in CLASSES}}
    assert metadata["train_config"] == CONFIG.model_dump(mode="json")
    assert any(line.startswith("epoch 2/2 ") for line in trained.log)


@pytest.mark.slow
def test_evaluate_store_reproduces_the_training_evaluation_on_the_same_table(trained: Trained) -> None:
    evaluation = evaluate_store(str(trained.dest), str(trained.model_dir))

    metrics = trained.metadata["metrics"]["train"]
    assert evaluation.n == metrics["n"] == N_LABELLED
    assert (evaluation.accuracy, evaluation.balanced_accuracy) == (metrics["accuracy"], metrics["balanced_accuracy"])
    assert (evaluation.per_class, evaluation.per_corpus) == (metrics["per_class"], metrics["per_corpus"])
    assert evaluation.confusion.tolist() == trained.metadata["confusion"]["train"]
    assert (evaluation.n_excluded, evaluation.n_unlabelled) == ({"neutral": 1}, 1)
    assert (evaluation.classes, evaluation.feature_set, evaluation.fingerprint) == (
        CLASSES,
        "stats8k",
        STATS.fingerprint(),
    )


@pytest.mark.slow
def test_evaluate_store_reports_calibration_angry_detection_and_the_telephone_copies_separately(
    trained: Trained, tmp_path: Path
) -> None:
    write_dest(tmp_path / "out", with_copies=True)

    evaluation = evaluate_store(str(tmp_path / "out"), str(trained.model_dir))
    without = evaluate_store(str(trained.dest), str(trained.model_dir))

    result = json.loads(json.dumps(evaluation.as_dict()))
    assert result["temperature"] == trained.metadata["temperature"] == 1.0  # no validation part to fit it on
    assert 0.0 <= result["ece"] <= 1.0 and result["ece"] == result["ece_uncalibrated"]
    assert (result["angry"]["class"], result["angry"]["n_positive"]) == ("angry", 8)
    phone = result["telephone"]
    assert phone["n"] == N_COPIED  # the telephone copies only, not the speed-noise ones
    assert {"accuracy", "balanced_accuracy", "ece", "ece_uncalibrated", "angry"} <= set(phone)
    assert phone["angry"]["n_positive"] == sum(labels_from_path(p).emotion == "angry" for p in clip_paths("/a")[:6])
    assert without.telephone is None and without.as_dict()["telephone"] is None


@pytest.mark.slow
def test_evaluate_store_reads_only_the_models_feature_set(trained: Trained, tmp_path: Path) -> None:
    storage.write_features(feature_rows(clip_paths("/archive"), config=SEED), str(tmp_path), "51" * 10)

    with pytest.raises(SchemaError, match="no features for feature set 'stats8k'"):
        evaluate_store(str(tmp_path), str(trained.model_dir))


@pytest.mark.slow
@pytest.mark.parametrize(("augmented", "n_train"), [(True, N_LABELLED + 2 * N_COPIED), (False, N_LABELLED)])
def test_augmented_copies_join_training_only_when_dest_holds_them_and_the_config_asks(
    tmp_path: Path, augmented: bool, n_train: int
) -> None:
    write_dest(tmp_path / "out", with_copies=True)
    config = CONFIG.model_copy(update={"augmented": augmented})

    metadata = train_and_save(str(tmp_path / "out"), str(tmp_path / "model"), feature_set="stats8k", config=config)

    assert metadata["n_rows"]["train"] == n_train
    assert sum(metadata["training_rows"]["ravdess"].values()) == n_train


def test_train_and_save_refuses_an_unknown_feature_set_or_one_dest_lacks(tmp_path: Path) -> None:
    write_dest(tmp_path / "out", with_copies=False)

    with pytest.raises(ConfigError, match="unknown feature set 'nope'"):
        train_and_save(str(tmp_path / "out"), str(tmp_path / "model"), feature_set="nope", config=CONFIG)
    with pytest.raises(SchemaError, match="no features for feature set 'seed268'"):
        train_and_save(str(tmp_path / "out"), str(tmp_path / "model"), feature_set="seed268", config=CONFIG)

    assert not (tmp_path / "model").exists()


def angry(n_positive: int, precision: float | None, recall: float, roc_auc: float) -> dict[str, Any]:
    return {
        "class": "angry",
        "n_positive": n_positive,
        "n_detected": 0,
        "precision": precision,
        "recall": recall,
        "roc_auc": roc_auc,
    }


def test_format_evaluation_lists_every_class_its_calibration_and_its_confusion_row() -> None:
    classes = ("angry", "happy", "sad", "surprise")
    confusion = np.array([[5, 1, 0, 0], [2, 3, 0, 1], [0, 0, 4, 0], [0, 1, 0, 7]], dtype=np.int64)
    evaluation = Evaluation(
        classes=classes,
        n=24,
        accuracy=19 / 24,
        balanced_accuracy=0.75,
        per_corpus={"tess": 1.0, "ravdess": 0.5},
        per_class={"angry": 5 / 6, "happy": 0.5, "sad": 1.0, "surprise": 7 / 8},
        confusion=confusion,
        n_excluded={"neutral": 3},
        n_unlabelled=2,
        feature_set="stats8k",
        fingerprint=STATS.fingerprint(),
        temperature=1.5,
        confidence={"ece": 0.04, "ece_uncalibrated": 0.21, "angry": angry(6, 0.714, 0.833, 0.91)},
        telephone={
            "n": 12,
            "accuracy": 0.5,
            "balanced_accuracy": 0.45,
            "ece": 0.12,
            "ece_uncalibrated": 0.3,
            "angry": angry(3, None, 0.0, 0.6),
        },
    )

    lines = format_evaluation(evaluation).splitlines()

    assert lines[0] == "rows 24 (excluded, unknown to the model: {'neutral': 3}; unlabelled: 2)"
    assert lines[1].split() == ["accuracy", "79.2%"]
    assert lines[2].split() == ["balanced", "accuracy", "75.0%"]
    assert lines[3].split() == ["per", "corpus", "ravdess", "50.0%", "tess", "100.0%"]
    assert lines[4].split() == [
        "per",
        "class",
        "angry",
        "83.3%",
        "happy",
        "50.0%",
        "sad",
        "100.0%",
        "surprise",
        "87.5%",
    ]
    assert lines[5] == (
        "calibration        temperature 1.500; ECE 0.210 uncalibrated -> 0.040; "
        "angry vs rest: precision 0.714 recall 0.833 ROC AUC 0.910 (6 angry rows)"
    )
    assert lines[6] == (
        "telephone copies   rows 12  accuracy  50.0%  balanced  45.0%; ECE 0.300 uncalibrated -> 0.120; "
        "angry vs rest: precision n/a recall 0.000 ROC AUC 0.600 (3 angry rows)"
    )
    assert lines[8].split() == list(classes)
    assert [line.split() for line in lines[9:]] == [
        [name, *(str(count) for count in row)] for name, row in zip(classes, confusion.tolist(), strict=True)
    ]


def test_format_evaluation_without_rows_shows_no_figures() -> None:
    evaluation = Evaluation(
        classes=("angry", "sad"),
        n=0,
        accuracy=None,
        balanced_accuracy=None,
        per_corpus={},
        per_class={},
        confusion=np.zeros((2, 2), dtype=np.int64),
        n_excluded={},
        n_unlabelled=0,
        feature_set="stats8k",
        fingerprint=STATS.fingerprint(),
    )

    lines = format_evaluation(evaluation).splitlines()

    assert lines[0] == "rows 0 (excluded, unknown to the model: none; unlabelled: 0)"
    assert lines[1].split() == ["accuracy", "n/a"] and lines[2].split() == ["balanced", "accuracy", "n/a"]
    assert lines[5] == "calibration        temperature 1.000; ECE n/a uncalibrated -> n/a"
    assert [line.split() for line in lines[8:]] == [["angry", "0", "0"], ["sad", "0", "0"]]
