"""Every table of DEST read by the readers analysts use, foreign files in DEST, and the earlier layout."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import soundfile
from signals_gen import voice

from ser_batch import jobs, schema, storage
from ser_batch.config import DEFAULT_FEATURE_SET, feature_config
from ser_batch.features.extract import feature_names

CONFIG = feature_config(DEFAULT_FEATURE_SET)  # what `make run` featurizes into demo/out
N = len(feature_names(CONFIG))
CLIPS = (
    "03-01-05-01-02-01-12.wav",
    "03-01-03-02-01-02-07.wav",
    "YAF_bath_angry.wav",
    "OAF_back_sad.wav",
    "03a01Wa.wav",
)
DAYS = {"2026-11-24": "a" * 20, "2026-11-25": "b" * 20}
README = Path(__file__).resolve().parents[3] / "README.md"


def schema_rows(table_schema: pa.Schema, n: int) -> pa.Table:
    """``n`` rows of a scoring schema, every column filled; seconds with more than millisecond digits."""
    now = datetime(2026, 11, 24, 2, 0, 0, 123456, tzinfo=UTC)
    fillers: dict[str, Callable[[int], Any]] = {
        "string": lambda i: f"v{i}",
        "int16": lambda i: i,
        "int32": lambda i: i,
        "float": lambda i: 0.25 * i,
        "double": lambda i: 1.0004567 * (i + 1),
        "timestamp[ms, tz=UTC]": lambda i: now,
        "date32[day]": lambda i: now.date(),
        "bool": lambda i: i % 2 == 0,
    }
    rows = [
        {f.name: f"/calls/{i}.wav" if f.name == "path" else fillers[str(f.type)](i) for f in table_schema}
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=table_schema)


def make_dests(root: Path) -> None:
    """``root/demo/out``: featurize DEST (features, augmented, errors); ``root/demo/scores``: scoring DEST."""
    audio, out = root / "audio", str(root / "demo" / "out")
    audio.mkdir(parents=True)
    for i, name in enumerate(CLIPS):
        soundfile.write(audio / name, voice(1.5, 16_000, seed=i, f0_hz=150 + 40 * i), 16_000)
    (audio / "broken.wav").write_bytes(b"RIFF not really")
    for plan, run in ((jobs.plan_featurization, jobs.featurize_shard), (jobs.plan_augmentation, jobs.augment_shard)):
        for shard in plan(str(audio), out, CONFIG, shard_size=3).shards:
            run(shard, out, CONFIG)
    for day, shard_id in DAYS.items():
        tables = {name: schema_rows(schema.SCORE_SCHEMAS[name], 3) for name in schema.SCORE_TABLES}
        tables = {name: table.set_column(table.schema.get_field_index("call_date"), "call_date",
                                         pa.array([day] * 3)) for name, table in tables.items()}  # fmt: skip
        storage.write_scores(tables, str(root / "demo" / "scores"), shard_id, call_dates=[day])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readers")
    make_dests(root)
    return root / "demo"


# table -> (folder under demo/, rows, folder key -> the values it must read as)
TABLES: dict[str, tuple[str, int, dict[str, set[str]]]] = {
    "features": ("out/features", 5, {"feature_set": {CONFIG.name}, "corpus": {"ravdess", "tess", "emodb"}}),
    "augmented": ("out/augmented", 10, {"feature_set": {CONFIG.name}, "corpus": {"ravdess", "tess", "emodb"}}),
    "errors": ("out/errors", 1, {"feature_set": {CONFIG.name}}),
    "predictions": ("scores/predictions", 6, {"call_date": set(DAYS)}),
    "calls": ("scores/calls", 6, {"call_date": set(DAYS)}),
    "score errors": ("scores/errors", 6, {"call_date": set(DAYS)}),
}


def _values(column: Any) -> set[str]:
    return {str(value)[:10] for value in column}  # polars and DuckDB read call_date as a date


READERS: dict[str, Callable[[Path], dict[str, list[Any]]]] = {
    "pandas": lambda folder: pd.read_parquet(folder).to_dict("list"),
    "pyarrow": lambda folder: ds.dataset(folder, partitioning="hive").to_table().to_pydict(),
    "dask": lambda folder: dd.read_parquet(str(folder)).compute().to_dict("list"),
    "duckdb": lambda folder: (
        duckdb.sql(f"SELECT * FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true)")
        .fetchdf()
        .to_dict("list")
    ),
    "polars": lambda folder: pl.read_parquet(folder).to_dict(as_series=False),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("table", TABLES)
def test_every_reader_reads_every_table_with_its_folder_keys(demo, table, reader) -> None:
    folder, n_rows, keys = TABLES[table]
    columns = READERS[reader](demo / folder)
    assert len(columns["path"]) == n_rows
    for key, values in keys.items():
        assert _values(columns[key]) == values, key


def test_the_feature_vector_is_a_fixed_size_list_and_its_names_are_one_call_away(demo) -> None:
    folder = demo / "out" / "features"
    assert ds.dataset(folder, partitioning="hive").schema.field("features").type == pa.list_(pa.float32(), N)
    assert pl.read_parquet(folder).schema["features"] == pl.Array(pl.Float32, N)
    # DuckDB's Parquet reader has no fixed-size lists; the README's cast gives FLOAT[N]
    kinds = duckdb.sql(f"SELECT DISTINCT typeof(features::FLOAT[{N}]) FROM read_parquet('{folder}/**/*.parquet')")
    assert kinds.fetchall() == [(f"FLOAT[{N}]",)]
    assert storage.read_feature_names(str(demo / "out"), CONFIG.name) == feature_names(CONFIG)


def test_times_are_kept_to_the_millisecond(demo) -> None:
    for folder in ("out/features", "scores/predictions", "scores/calls"):
        table = ds.dataset(demo / folder, partitioning="hive").to_table()
        for name in schema.SECONDS_COLUMNS & set(table.column_names):
            seconds = np.array(table.column(name).to_pylist(), dtype=float)
            assert np.array_equal(seconds, np.round(seconds, 3)), (folder, name)
        for field in table.schema:
            if pa.types.is_timestamp(field.type):
                assert field.type == pa.timestamp("ms", tz="UTC"), (folder, field)


def test_part_files_hold_no_folder_key_columns(demo) -> None:
    for part in demo.rglob("part-*.parquet"):
        keys = {folder.split("=")[0] for folder in part.relative_to(demo).parts if "=" in folder}
        assert keys and not keys & set(pq.read_schema(part).names), part


def test_the_library_reads_back_corpus_and_feature_set_in_schema_order(demo) -> None:
    table = storage.read_features(str(demo / "out"), config=CONFIG)
    assert table.column_names == [*schema.features_schema(CONFIG, feature_names(CONFIG)).names]
    assert set(table.column("feature_set").to_pylist()) == {CONFIG.name}
    assert sorted(table.column("corpus").to_pylist()) == ["emodb", "ravdess", "ravdess", "tess", "tess"]
    assert table.schema.metadata[schema.META_FINGERPRINT] == CONFIG.fingerprint().encode()
    copies = storage.read_features(str(demo / "out"), config=CONFIG, dataset_name="augmented")
    assert copies.column_names == [*schema.augmented_schema(CONFIG, feature_names(CONFIG)).names]


def _done(dest: str) -> tuple[Any, ...]:
    features = storage.read_done(dest, CONFIG.name)
    copies = storage.read_done(dest, CONFIG.name, dataset_name="augmented")
    table = storage.read_features(dest, config=CONFIG)
    strip = {path: sorted(key for key, _ in entries) for path, entries in features.featurized.items()}
    failed = {path: sorted(key for key, _ in entries) for path, entries in features.failed.items()}
    return strip, failed, len(copies.featurized), table.sort_by("path").to_pydict()


def test_foreign_and_unreadable_files_in_dest_are_passed_over_and_bad_own_parts_named(demo, tmp_path, caplog) -> None:
    shutil.copytree(demo, tmp_path / "demo")
    out, scores = tmp_path / "demo" / "out", tmp_path / "demo" / "scores"
    before = _done(str(out)), storage.read_scored(str(scores), "v0")
    corpus = out / "features" / f"feature_set={CONFIG.name}" / "corpus=tess"
    pq.write_table(pa.table({"path": ["x"], "score": [0.5]}), corpus / "analysis.parquet")  # an analyst's file
    pq.write_table(pa.table({"x": [1]}), out / "features" / f"feature_set={CONFIG.name}" / "part-0.parquet")
    (out / "features" / "README.txt").write_text("features of the nightly run")
    (out / "errors" / f"feature_set={CONFIG.name}" / "notes.txt").write_text("see ticket 12")
    zero = corpus / f"part-{'c' * 20}.parquet"
    zero.write_bytes(b"")
    good = next((out / "errors" / f"feature_set={CONFIG.name}").glob("part-*.parquet")).read_bytes()
    truncated = out / "errors" / f"feature_set={CONFIG.name}" / f"part-{'d' * 20}.parquet"
    truncated.write_bytes(good[: len(good) // 2])
    (corpus / f".part-{'e' * 20}.parquet.0123.tmp").write_bytes(good[:10])  # a writer's hidden temporary
    (out / "augmented" / f"feature_set={CONFIG.name}" / "corpus=tess" / "copy.parquet").write_bytes(b"PAR1")
    pq.write_table(pa.table({"path": ["y"]}), scores / "calls" / "call_date=2026-11-24" / "export.parquet")
    foreign_prediction = scores / "predictions" / "call_date=2026-11-26" / "export.parquet"
    foreign_prediction.parent.mkdir()
    pq.write_table(pa.table({"path": ["z"]}), foreign_prediction)
    (scores / "calls" / "call_date=2026-11-25" / f"part-{'f' * 20}.parquet").write_bytes(b"")

    with caplog.at_level(logging.WARNING, logger="ser_batch"):
        after = _done(str(out)), storage.read_scored(str(scores), "v0")
        assert storage.remove_orphan_predictions(str(scores)) == 0
        plan = jobs.plan_featurization(str(demo.parent / "audio"), str(out), CONFIG, shard_size=3)

    assert after == before
    assert foreign_prediction.exists() and (plan.n_pending, plan.n_seen, plan.reconcile) == (0, 6, {})
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    named = {re.search(r"part-(\w)\1+\.parquet", message).group(0) for message in warned}  # type: ignore[union-attr]
    assert named == {zero.name, truncated.name, f"part-{'f' * 20}.parquet"}
    assert all(len(message.splitlines()) == 1 and "unreadable part file" in message for message in warned)


def test_parts_of_the_earlier_layout_with_folder_keys_as_columns_still_read(demo, tmp_path) -> None:
    shutil.copytree(demo, tmp_path / "demo")
    out = tmp_path / "demo" / "out"
    for part in out.rglob("part-*.parquet"):  # rewrite as the earlier layout did: keys also inside
        table = pq.read_table(part, partitioning=None)
        for folder in part.relative_to(out).parts[1:-1]:
            key, _, value = folder.partition("=")
            table = table.append_column(pa.field(key, pa.string(), nullable=False), pa.array([value] * len(table)))
        pq.write_table(table, part)
    assert _done(str(out)) == _done(str(demo / "out"))
    assert storage.read_feature_names(str(out), CONFIG.name) == feature_names(CONFIG)
    (part, paths), *_ = ((p, e) for p, e in _parts_by_file(str(out)).items() if len(e) > 1)
    storage.prune_rows(part, {paths[0]}, protocol=None)
    assert "corpus" not in pq.read_schema(part).names  # a rewritten part takes the current layout


def _parts_by_file(dest: str) -> dict[str, list[str]]:
    by_part: dict[str, list[str]] = {}
    for path, entries in storage.read_done(dest, CONFIG.name).featurized.items():
        for _, part in entries:
            by_part.setdefault(part, []).append(path)
    return by_part


def _readme_section(title: str) -> list[tuple[str, str]]:
    text = README.read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_every_snippet_of_readme_output_and_queries_runs(demo, monkeypatch) -> None:
    monkeypatch.chdir(demo.parent)
    blocks = _readme_section("Output and queries")
    python = [code for language, code in blocks if language == "python"]
    queries = [
        query
        for language, code in blocks
        if language == "bash"
        for query in re.findall(r'^duckdb -c "(.*)"$', code, flags=re.M)
    ]
    assert python and queries
    for code in python:
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own snippets)
    for query in queries:
        assert duckdb.sql(query).fetchall(), query
