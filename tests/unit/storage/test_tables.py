from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from ser_batch import schema, storage
from ser_batch.config import FeatureConfig, feature_config
from ser_batch.errors import SchemaError
from ser_batch.features.extract import feature_names

SEED = feature_config("seed268")
SHARD = "0123456789abcdef0123"


def rows(corpora: list[str], *, config: FeatureConfig = SEED) -> schema.FeatureRows:
    buffer = schema.FeatureRows.empty()
    for index, corpus in enumerate(corpora):
        buffer.append(
            np.full(len(feature_names(config)), index, np.float32),
            path=f"/a/{index}.wav",
            corpus=corpus,
            speaker="s1",
            emotion="sad",
            duration_s=1.5,
            sample_rate=16_000,
            n_channels=1,
            content_key=f"{index}:1",
            content_hash=None,
            feature_set=config.name,
            fingerprint=config.fingerprint(),
            featurized_at=datetime.now(UTC),
        )
    return buffer


def test_round_trip_layout_and_metadata(tmp_path) -> None:
    table = rows(["tess", "ravdess", "tess"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    written = storage.write_features(table, str(tmp_path), SHARD)
    assert sorted(written) == [
        f"{tmp_path}/features/feature_set=seed268/corpus=ravdess/part-{SHARD}.parquet",
        f"{tmp_path}/features/feature_set=seed268/corpus=tess/part-{SHARD}.parquet",
    ]
    back = storage.read_features(str(tmp_path), config=SEED)
    assert back.num_rows == 3
    assert back.schema.field("features").type.list_size == 268
    metadata = pq.read_schema(written[0]).metadata
    assert metadata[schema.META_FINGERPRINT].decode() == SEED.fingerprint()
    assert json.loads(metadata[schema.META_FEATURE_CONFIG])["n_mfcc"] == 128
    assert json.loads(metadata[schema.META_FEATURE_NAMES]) == feature_names(SEED)


def test_duckdb_reads_the_partitioned_table(tmp_path) -> None:
    table = rows(["tess", "emodb"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    storage.write_features(table, str(tmp_path), SHARD)
    counts = duckdb.sql(
        f"SELECT corpus, count(*) FROM read_parquet('{tmp_path}/features/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert counts == [("emodb", 1), ("tess", 1)]


def test_rewriting_a_shard_replaces_its_rows(tmp_path) -> None:
    table = rows(["tess", "tess"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    storage.write_features(table, str(tmp_path), SHARD)
    storage.write_features(table, str(tmp_path), SHARD)
    assert storage.read_features(str(tmp_path), config=SEED).num_rows == 2


def test_unknown_corpus_values_never_reach_a_path() -> None:
    assert schema.partition_value("../../etc") == "unknown"
    assert schema.partition_value("tess") == "tess"


def test_other_fingerprint_is_refused(tmp_path) -> None:
    table = rows(["tess"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    storage.write_features(table, str(tmp_path), SHARD)
    changed = SEED.model_copy(update={"n_fft": 1024})
    with pytest.raises(SchemaError, match="fingerprint"):
        storage.read_features(str(tmp_path), config=changed)


def test_missing_table_is_a_schema_error(tmp_path) -> None:
    with pytest.raises(SchemaError, match="run `ser-batch featurize` first"):
        storage.read_features(str(tmp_path), config=SEED)


def test_read_done_indexes_features_and_errors(tmp_path) -> None:
    table = rows(["tess", "emodb"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    storage.write_features(table, str(tmp_path), SHARD)
    errors = [
        {
            "path": "/bad.wav",
            "content_key": "9:9",
            "error_type": "AudioError",
            "message": "empty file",
            "stage": "decode",
            "feature_set": "seed268",
            "run_at": datetime.now(UTC),
        }
    ]
    import pyarrow as pa

    errors_part = storage.write_errors(
        pa.Table.from_pylist(errors, schema=schema.ERRORS_SCHEMA), str(tmp_path), "seed268", SHARD
    )
    done = storage.read_done(str(tmp_path), "seed268")
    assert set(done.featurized) == {"/a/0.wav", "/a/1.wav"}
    assert done.featurized["/a/0.wav"][0][0] == "0:1"
    assert done.failed == {"/bad.wav": [("9:9", errors_part)]}
    assert done.has_failed("/bad.wav", "9:9") and not done.has_failed("/bad.wav", "1:1")


def test_prune_rows_rewrites_or_deletes_a_part(tmp_path) -> None:
    table = rows(["tess", "tess"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    (part,) = storage.write_features(table, str(tmp_path), SHARD)
    assert storage.prune_rows(part, {"/a/0.wav"}, protocol=None) == 1
    assert pq.read_table(part).column("path").to_pylist() == ["/a/1.wav"]
    assert pq.read_schema(part).metadata[schema.META_FEATURE_SET] == b"seed268"
    storage.prune_rows(part, {"/a/1.wav"}, protocol=None)
    assert not (tmp_path / "features" / "feature_set=seed268" / "corpus=tess" / f"part-{SHARD}.parquet").exists()


def test_augmented_copies_count_once_per_part_and_only_augment_errors_count_as_their_failures(tmp_path) -> None:
    import pyarrow as pa

    table = rows(["tess", "tess"]).to_table(schema.features_schema(SEED, feature_names(SEED)))
    copies = table.add_column(
        table.schema.get_field_index("features"), schema.AUGMENTATION_FIELD, pa.array(["telephone", "speed"])
    )
    copies = pa.concat_tables([copies, copies]).replace_schema_metadata(table.schema.metadata)  # 2 copies per path
    (part,) = storage.write_features(copies, str(tmp_path), SHARD, dataset_name="augmented")
    assert part.startswith(str(tmp_path / "augmented" / "feature_set=seed268" / "corpus=tess"))
    errors = [
        {
            "path": f"/bad{stage}.wav",
            "content_key": "9:9",
            "error_type": "AudioError",
            "message": "x",
            "stage": stage,
            "feature_set": "seed268",
            "run_at": datetime.now(UTC),
        }
        for stage in ("decode", "augment")
    ]
    errors_part = storage.write_errors(
        pa.Table.from_pylist(errors, schema=schema.ERRORS_SCHEMA), str(tmp_path), "seed268", SHARD
    )
    done = storage.read_done(str(tmp_path), "seed268", dataset_name="augmented")
    assert done.featurized == {"/a/0.wav": [("0:1", part)], "/a/1.wav": [("1:1", part)]}
    assert done.failed == {"/badaugment.wav": [("9:9", errors_part)]}
    assert storage.read_done(str(tmp_path), "seed268").failed == {"/baddecode.wav": [("9:9", errors_part)]}
    read = storage.read_features(str(tmp_path), config=SEED, dataset_name="augmented")
    assert read.num_rows == 4 and read.column("augmentation").to_pylist() == ["telephone", "speed"] * 2
    assert storage.has_augmented(str(tmp_path), "seed268") and not storage.has_augmented(str(tmp_path), "stats8k")
