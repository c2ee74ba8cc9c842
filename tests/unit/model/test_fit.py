from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pydantic
import pytest

from ser_batch.config import SEED_CLASSES, TrainConfig
from ser_batch.errors import SchemaError
from ser_batch.model.calibration import calibrated_probabilities, fit_temperature
from ser_batch.model.fit import PARTS, TrainResult, check_feature_set, feature_identity, feature_matrix
from ser_batch.model.metrics import expected_calibration_error
from ser_batch.model.networks import probabilities

FeaturesTable = Callable[..., pa.Table]

CLASSES = ("angry", "happy", "sad")
COUNTS: dict[str | None, int] = {"angry": 40, "happy": 40, "sad": 40, "calm": 12, "surprise": 5, None: 7}


def test_train_config_defaults_keep_the_recipe_protocol_with_the_default_model() -> None:
    config = TrainConfig()
    assert (config.split, config.classes) == ("random", SEED_CLASSES)
    assert (config.epochs, config.batch_size, config.test_size, config.validation_size) == (100, 64, 0.2, 0.1)
    assert (config.resolved_class_weight(), config.resolved_patience()) == ("balanced", 20)


def test_seed_mlp_resolves_to_the_recipe_without_weighting_or_early_stopping() -> None:
    config = TrainConfig(model="seed-mlp")
    assert (config.resolved_class_weight(), config.resolved_patience()) == ("none", 0)
    assert TrainConfig(model="seed-mlp", patience=5, class_weight="balanced").resolved_patience() == 5


def test_train_config_orders_classes_like_emotions() -> None:
    assert TrainConfig(classes=("sad", "boredom", "angry")).classes == ("angry", "sad", "boredom")


@pytest.mark.parametrize(
    ("classes", "match"),
    [(("angry", "joy"), "unknown classes"), (("angry",), "at least 2"), (("sad", "sad"), "repeat")],
)
def test_train_config_rejects_bad_classes(classes: tuple[str, ...], match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        TrainConfig(classes=classes)


def test_train_config_is_frozen_and_fingerprinted() -> None:
    config = TrainConfig(epochs=3)
    with pytest.raises(pydantic.ValidationError):
        config.epochs = 4  # type: ignore[misc]
    assert config.fingerprint() == TrainConfig(epochs=3).fingerprint() != TrainConfig().fingerprint()


def test_feature_identity_reads_schema_metadata_and_columns(features_table: FeaturesTable) -> None:
    identity = feature_identity(features_table(n_features=4))
    assert (identity.name, identity.fingerprint) == ("tiny", "f00d")
    assert identity.names == ["f_00", "f_01", "f_02", "f_03"]
    assert identity.config["kind"] == "synthetic"


def test_feature_identity_refuses_mixed_feature_sets(features_table: FeaturesTable) -> None:
    mixed = pa.concat_tables([features_table(), features_table(fingerprint="beef")], promote_options="none")
    with pytest.raises(SchemaError, match="mixes fingerprint"):
        feature_identity(mixed)


def test_feature_identity_refuses_columns_that_contradict_the_metadata(features_table: FeaturesTable) -> None:
    table = features_table()
    metadata = {**table.schema.metadata, b"ser_batch.fingerprint": b"other"}
    with pytest.raises(SchemaError, match="differs from schema metadata"):
        feature_identity(table.replace_schema_metadata(metadata))


def test_feature_identity_requires_a_fingerprint(features_table: FeaturesTable) -> None:
    table = features_table().drop_columns(["fingerprint"]).replace_schema_metadata({})
    with pytest.raises(SchemaError, match="carries no fingerprint"):
        feature_identity(table)


def test_check_feature_set_names_both_sides(features_table: FeaturesTable) -> None:
    with pytest.raises(SchemaError, match=r"'tiny' \(fingerprint f00d\).*'seed268' \(fingerprint abc\)"):
        check_feature_set(features_table(), feature_set="seed268", fingerprint="abc")


def test_feature_matrix_handles_chunks_and_slices(features_table: FeaturesTable) -> None:
    table = features_table(n_features=3)
    expected = np.array(table.column("features").to_pylist(), dtype=np.float32)
    chunked = pa.concat_tables([table.slice(0, 50), table.slice(50)])
    np.testing.assert_array_equal(feature_matrix(chunked), expected)
    np.testing.assert_array_equal(feature_matrix(table.slice(10, 5)), expected[10:15])
    assert feature_matrix(table.slice(0, 0)).shape == (0, 3)


@pytest.fixture(scope="module")
def trained(features_table: FeaturesTable) -> tuple[TrainResult, list[str]]:
    from ser_batch.model.fit import fit

    lines: list[str] = []
    config = TrainConfig(classes=CLASSES, split="speaker", epochs=3, batch_size=16, seed=1, calibrate=True)
    return fit(features_table(COUNTS), config, log=lines.append), lines


@pytest.mark.slow
def test_fit_drops_other_classes_and_nulls_and_counts_them(trained: tuple[TrainResult, list[str]]) -> None:
    result, _ = trained
    assert result.n_excluded == {"calm": 12, "surprise": 5}
    assert result.n_unlabelled == 7
    assert result.rows.num_rows == 120
    assert set(result.rows.column("emotion").to_pylist()) == set(CLASSES)
    assert result.classes == CLASSES


@pytest.mark.slow
def test_fit_speaker_split_keeps_speakers_on_one_side(trained: tuple[TrainResult, list[str]]) -> None:
    result, _ = trained
    speakers = result.rows.column("speaker").to_numpy(zero_copy_only=False)
    sides = [set(speakers[result.split[part]]) for part in PARTS]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sum(result.split[part].size for part in PARTS) == 120


@pytest.mark.slow
def test_fit_reports_metrics_per_part_and_learns_separable_classes(trained: tuple[TrainResult, list[str]]) -> None:
    result, _ = trained
    assert set(result.metrics) == set(PARTS)
    for part in PARTS:
        summary = result.metrics[part]
        assert set(summary) == {
            "n",
            "accuracy",
            "balanced_accuracy",
            "per_corpus",
            "per_class",
            "ece",
            "ece_uncalibrated",
            "angry",
        }
        assert summary["n"] == result.split[part].size == result.confusion[part].sum()
        assert result.confusion[part].shape == (3, 3)
    assert result.metrics["train"]["accuracy"] > 0.9
    assert result.metrics["test"]["balanced_accuracy"] > 0.9
    assert set(result.metrics["test"]["per_corpus"]) <= {"ravdess", "emodb"}
    assert sum(n for counts in result.training_rows.values() for n in counts.values()) == result.split["train"].size


@pytest.mark.slow
def test_fit_fits_the_temperature_on_the_validation_part_and_reports_ece_before_and_after(
    features_table: FeaturesTable, trained: tuple[TrainResult, list[str]]
) -> None:
    result, lines = trained
    table = features_table(COUNTS)
    kept = table.filter(pa.array([e in CLASSES for e in table.column("emotion").to_pylist()]))
    raw = probabilities(result.model, feature_matrix(kept))
    truth = np.array(kept.column("emotion").to_pylist(), dtype=object)
    validation = result.split["validation"]
    targets = np.array([CLASSES.index(e) for e in truth[validation]])

    assert result.temperature == pytest.approx(fit_temperature(raw[validation], targets))
    assert result.temperature != 1.0
    for part, rows in result.split.items():
        calibrated = calibrated_probabilities(raw[rows], result.temperature)
        assert result.metrics[part]["ece"] == pytest.approx(
            expected_calibration_error(truth[rows], calibrated, classes=CLASSES), abs=1e-6
        )
        assert result.metrics[part]["ece_uncalibrated"] == pytest.approx(
            expected_calibration_error(truth[rows], raw[rows], classes=CLASSES), abs=1e-6
        )
        assert result.metrics[part]["angry"]["n_positive"] == int(np.sum(truth[rows] == "angry"))
    assert any(line.startswith(f"temperature {result.temperature:.3f}") for line in lines)


@pytest.mark.slow
def test_fit_keeps_the_networks_probabilities_unless_asked_to_calibrate(features_table: FeaturesTable) -> None:
    from ser_batch.model.fit import fit

    result = fit(features_table(COUNTS), TrainConfig(classes=CLASSES, split="speaker", epochs=1, batch_size=16))

    assert result.split["validation"].size and result.temperature == 1.0
    assert all(result.metrics[part]["ece"] == result.metrics[part]["ece_uncalibrated"] for part in PARTS)


@pytest.mark.slow
def test_fit_logs_every_epoch(trained: tuple[TrainResult, list[str]]) -> None:
    result, lines = trained
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert "val_loss=" in epochs[0]
    assert len(result.history["loss"]) == len(result.history["val_accuracy"]) == 3


@pytest.mark.slow
def test_fit_is_reproducible_for_a_seed(features_table: FeaturesTable, trained: tuple[TrainResult, list[str]]) -> None:
    from ser_batch.model.fit import fit
    from ser_batch.model.networks import probabilities

    result, _ = trained
    again = fit(features_table(COUNTS), result.config)
    for part in PARTS:
        np.testing.assert_array_equal(again.split[part], result.split[part])
    features = feature_matrix(features_table(COUNTS))
    np.testing.assert_allclose(probabilities(again.model, features), probabilities(result.model, features), atol=1e-4)


@pytest.mark.slow
def test_fit_without_test_part_reports_none(features_table: FeaturesTable) -> None:
    from ser_batch.model.fit import fit

    result = fit(features_table(), TrainConfig(classes=CLASSES, split="none", epochs=1, batch_size=32))
    assert result.split["test"].size == 0 and result.split["validation"].size == 12
    assert result.metrics["test"] == {
        "n": 0,
        "accuracy": None,
        "balanced_accuracy": None,
        "per_corpus": {},
        "per_class": {},
        "ece": None,
        "ece_uncalibrated": None,
        "angry": {
            "class": "angry",
            "n_positive": 0,
            "n_detected": 0,
            "precision": None,
            "recall": None,
            "roc_auc": None,
        },
    }
    json.dumps(result.metrics)


def test_fit_needs_two_present_classes(features_table: FeaturesTable) -> None:
    from ser_batch.model.fit import fit

    with pytest.raises(SchemaError, match="at least 2 of the classes"):
        fit(features_table({"angry": 20, "calm": 20}), TrainConfig(classes=CLASSES, epochs=1))


def test_fit_requires_the_label_columns(features_table: FeaturesTable) -> None:
    from ser_batch.model.fit import fit

    with pytest.raises(SchemaError, match=r"lacks columns \['speaker'\]"):
        fit(features_table().drop_columns(["speaker"]), TrainConfig(classes=CLASSES, epochs=1))


def test_class_weights_balance_the_loss() -> None:
    from ser_batch.model.fit import class_weights

    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert weights == {0: 6 / 9, 1: 2.0, 2: 1.0, 3: 1.0}


@pytest.mark.slow
def test_fit_trains_on_copies_of_training_clips_only(features_table: FeaturesTable) -> None:
    from ser_batch.model.fit import AUGMENTATION_COLUMN, fit

    table = features_table({"angry": 30, "happy": 30, "sad": 30})
    originals = table.append_column(AUGMENTATION_COLUMN, pa.array([None] * table.num_rows, pa.string()))
    copies = table.append_column(AUGMENTATION_COLUMN, pa.array(["telephone"] * table.num_rows, pa.string()))
    config = TrainConfig(
        classes=CLASSES, split="speaker", epochs=2, batch_size=16, seed=3, class_weight="balanced", patience=1
    )
    result = fit(pa.concat_tables([originals, copies]), config)
    paths = np.array(result.rows.column("path").to_pylist(), dtype=object)
    augmented = np.array([a is not None for a in result.rows.column(AUGMENTATION_COLUMN).to_pylist()])
    train, held = result.split["train"], np.concatenate([result.split["validation"], result.split["test"]])
    assert not augmented[held].any() and augmented[train].sum() == (~augmented[train]).sum()
    assert not set(paths[train]) & set(paths[held])


@pytest.mark.slow
def test_default_model_learns_emotions_from_120_real_clips(ser_dev) -> None:
    from ser_batch.config import DEFAULT_FEATURE_SET, feature_config
    from ser_batch.jobs.featurize import featurize_files
    from ser_batch.labels import labels_from_path
    from ser_batch.storage.files import list_files

    # 120 clips: per corpus (RAVDESS, TESS, EmoDB) up to 7 per class, the rest from RAVDESS
    files = sorted(list_files(str(ser_dev)), key=lambda info: zlib.crc32(info.uri.encode()))
    chosen, seen = [], Counter()
    for info in files:
        labels = labels_from_path(info.uri)
        if labels.emotion in SEED_CLASSES and seen[(labels.corpus, labels.emotion)] < 7 and len(chosen) < 120:
            seen[(labels.corpus, labels.emotion)] += 1
            chosen.append(info)
    assert len(chosen) >= 110
    features, errors = featurize_files(chosen, feature_config(DEFAULT_FEATURE_SET))
    assert errors.num_rows == 0
    from ser_batch.model.fit import fit

    result = fit(features, TrainConfig(split="random", test_size=0.3, validation_size=0.15, seed=0))
    test = result.metrics["test"]
    assert test["n"] >= 30
    assert test["accuracy"] >= 0.40, test  # chance is 1/6 ~ 0.17


def test_with_copies_marks_originals_and_refuses_copies_of_another_feature_set(features_table: FeaturesTable) -> None:
    from ser_batch.model.fit import AUGMENTATION_COLUMN, with_copies

    table = features_table({"angry": 3, "sad": 3})
    copies = table.append_column(AUGMENTATION_COLUMN, pa.array(["telephone"] * 6, pa.string()))
    combined = with_copies(table, copies)
    assert combined.num_rows == 12 and combined.schema.metadata == table.schema.metadata
    assert combined.column(AUGMENTATION_COLUMN).to_pylist() == [None] * 6 + ["telephone"] * 6
    other = features_table({"angry": 3, "sad": 3}, fingerprint="beef").append_column(
        AUGMENTATION_COLUMN, pa.array(["x"] * 6)
    )
    with pytest.raises(SchemaError, match="fingerprint"):
        with_copies(table, other)


@pytest.mark.slow
@pytest.mark.parametrize("split", ["random", "speaker"])
def test_fit_never_puts_the_same_audio_on_both_sides_of_a_split(features_table: FeaturesTable, split: str) -> None:
    from ser_batch.model.fit import fit

    table = features_table({"angry": 30, "happy": 30, "sad": 30})
    # a reorganised archive: 20 clips also sit under a second path, one of them filed under another speaker
    copied = table.slice(0, 20)
    speakers, corpora = copied.column("speaker").to_pylist(), copied.column("corpus").to_pylist()
    moved = (
        copied.set_column(
            copied.schema.get_field_index("path"), "path", pa.array([f"/moved/clip_{i:04d}.wav" for i in range(20)])
        )
        .set_column(copied.schema.get_field_index("speaker"), "speaker", pa.array(["spk7", *speakers[1:]]))
        .set_column(copied.schema.get_field_index("corpus"), "corpus", pa.array(["emodb", *corpora[1:]]))
    )
    hashes = pa.array([f"{i:064x}" for i in range(90)] + [f"{i:064x}" for i in range(20)])
    both = pa.concat_tables([table, moved.cast(table.schema)]).append_column("content_hash", hashes)
    config = TrainConfig(classes=CLASSES, split=split, epochs=1, batch_size=32, seed=1, patience=1)

    result = fit(both, config)

    hash_of = np.array(result.rows.column("content_hash").to_pylist(), dtype=object)
    sides = [set(hash_of[result.split[part]].tolist()) for part in PARTS]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sum(len(part) for part in result.split.values()) == 110
