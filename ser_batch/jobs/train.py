"""Train from, and evaluate against, the feature table in DEST (IO driver over train + artifact)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ser_batch import storage
from ser_batch.config import ANGRY, ENCODER_SET_NAME, TrainConfig
from ser_batch.model.fit import AUGMENTATION_COLUMN, Evaluation, evaluate, fit, with_copies
from ser_batch.storage.model_dir import load_artifact, save_artifact


def train_and_save(
    features_dest: str,
    model_dir: str,
    *,
    feature_set: str,
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read one feature set's consolidated table, fit ``config.model`` and save the model directory.

    Returns:
        the metadata written to ``MODEL_DIR/metadata.json``.

    ``feature_set`` is a name of ``FEATURE_SETS``, ``onnx:URI`` (``storage.resolve_feature_set``) or the
    name of an encoder set DEST holds, ``onnx-<12 hex>`` (its settings read from DEST; no file needed).

    Raises:
        ConfigError: unknown feature set, an encoder file that breaks the contract, or a split that cannot be made.
        SchemaError: no table for the feature set, or one of another fingerprint.
        StorageError: DEST unreadable or MODEL_DIR unwritable.
    """
    if re.match(ENCODER_SET_NAME, feature_set):  # an encoder set by its name: its settings are in DEST
        features = storage.read_feature_config(features_dest, feature_set, storage_options=storage_options)
    else:
        features = storage.resolve_feature_set(feature_set, storage_options=storage_options)
    table = storage.read_features(features_dest, config=features, storage_options=storage_options)
    if config.augmented and storage.has_augmented(features_dest, features.name, storage_options=storage_options):
        copies = storage.read_features(
            features_dest, config=features, dataset_name="augmented", storage_options=storage_options
        )
        table = with_copies(table, copies)
    result = fit(table, config, log=log)
    return save_artifact(model_dir, result, storage_options=storage_options)


TELEPHONE_COPY = "telephone"
"""``augmentation`` of the telephone-line copy ``featurize --augment`` makes of a labelled clip."""


def evaluate_store(features_dest: str, model_dir: str, *, storage_options: dict[str, Any] | None = None) -> Evaluation:
    """Score the labelled table of the model's own feature set under ``features_dest`` with a saved model.

    When DEST also holds augmented copies, their telephone-line copies are scored as well
    (``Evaluation.telephone``): the same clips as a call centre hears them.

    Raises:
        SchemaError: the table's feature set or fingerprint differs from the model's.
    """
    artifact = load_artifact(model_dir, storage_options=storage_options)
    features = artifact.features
    table = storage.read_features(features_dest, config=features, storage_options=storage_options)
    telephone = None
    if storage.has_augmented(features_dest, features.name, storage_options=storage_options):
        copies = storage.read_features(
            features_dest, config=features, dataset_name="augmented", storage_options=storage_options
        )
        telephone = copies.filter(pc.equal(copies.column(AUGMENTATION_COLUMN), pa.scalar(TELEPHONE_COPY)))
    return evaluate(table, artifact, telephone=telephone)


def format_evaluation(evaluation: Evaluation) -> str:
    """A plain-text report: headline metrics, per corpus, per class, calibration and angry detection, confusion."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:6.1%}"

    lines = [
        f"rows {evaluation.n} (excluded, unknown to the model: {evaluation.n_excluded or 'none'}; unlabelled: {evaluation.n_unlabelled})",
        f"accuracy           {pct(evaluation.accuracy)}",
        f"balanced accuracy  {pct(evaluation.balanced_accuracy)}",
        "per corpus         " + "  ".join(f"{k} {pct(v)}" for k, v in sorted(evaluation.per_corpus.items())),
        "per class          " + "  ".join(f"{k} {pct(v)}" for k, v in evaluation.per_class.items()),
        f"calibration        temperature {evaluation.temperature:.3f}; {_confidence(evaluation.confidence)}",
    ]
    if evaluation.telephone is not None:
        phone = evaluation.telephone
        lines.append(
            f"telephone copies   rows {phone['n']}  accuracy {pct(phone['accuracy'])}  "
            f"balanced {pct(phone['balanced_accuracy'])}; {_confidence(phone)}"
        )
    lines += ["confusion (rows true, columns predicted)", " " * 10 + "".join(f"{n[:8]:>9}" for n in evaluation.classes)]
    for name, row in zip(evaluation.classes, evaluation.confusion.tolist(), strict=True):
        lines.append(f"{name[:10]:<10}" + "".join(f"{count:>9}" for count in row))
    return "\n".join(lines)


def _confidence(figures: dict[str, Any]) -> str:
    # ECE before -> after calibration, then angry against the rest at the top class
    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    text = f"ECE {number(figures.get('ece_uncalibrated'))} uncalibrated -> {number(figures.get('ece'))}"
    angry = figures.get("angry")
    if angry is not None:
        text += (
            f"; {ANGRY} vs rest: precision {number(angry['precision'])} recall {number(angry['recall'])} "
            f"ROC AUC {number(angry['roc_auc'])} ({angry['n_positive']} {ANGRY} rows)"
        )
    return text
