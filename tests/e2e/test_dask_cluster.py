from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def _feature_rows(dest: Path) -> dict[str, Counter[str]]:
    rows: dict[str, Counter[str]] = {}
    for part in sorted((dest / "features" / "feature_set=seed268").glob("corpus=*/part-*.parquet")):
        corpus = part.parent.name.removeprefix("corpus=")
        table = pq.read_table(part)
        assert "corpus" not in table.column_names, part  # the folder holds it
        rows.setdefault(corpus, Counter()).update(Path(p).name for p in table.column("path").to_pylist())
    return rows


def _scheduler_task_count(address: str) -> int:
    from distributed import Client

    def count(dask_scheduler) -> int:  # type: ignore[no-untyped-def]
        return sum(
            len(prefix.all_durations) > 0 or sum(prefix.state_counts.values()) > 0
            for prefix in dask_scheduler.task_prefixes.values()
        )

    with Client(address, timeout=30) as client:
        return int(client.run_on_scheduler(count))


def test_featurize_on_external_dask_cluster_writes_every_file_once_and_rerun_adds_nothing(
    dask_cluster, run_cli, wav_archive, tmp_path, foreign_files
):
    expected = wav_archive(n=10)
    dest = tmp_path / "out"
    args = [
        "featurize",
        str(tmp_path / "audio"),
        str(dest),
        "--dask-address",
        dask_cluster.address,
        "--shard-size",
        "4",
        "--feature-set",
        "seed268",
        "--settle-s",
        "0",
        "--json",
    ]

    first = run_cli(args)

    assert first.returncode == 0, first
    assert "Connecting to an existing Dask cluster" in first.stderr, first
    assert "Creating a new Dask cluster" not in first.stderr, first
    assert _scheduler_task_count(dask_cluster.address) > 0, "the external scheduler ran no tasks"
    summary = first.summary()
    # 10 files of at most 4 a shard, for the cluster's two worker threads: 4 shards (3, 3, 2, 2), not 3 (4, 4, 2)
    assert (summary["files_seen"], summary["featurized"], summary["failed"], summary["shards"]) == (10, 10, 0, 4), first
    rows = _feature_rows(dest)
    assert set(rows) == set(expected.values())
    assert {name: corpus for corpus, names in rows.items() for name in names} == expected
    assert all(count == 1 for names in rows.values() for count in names.values()), rows
    table = pq.read_table(next((dest / "features").rglob("part-*.parquet")))
    assert table.schema.field("features").type.list_size == 268

    second = run_cli(args)

    assert second.returncode == 0, second
    again = second.summary()
    assert (again["files_seen"], again["featurized"], again["already_done"], again["failed"]) == (10, 0, 10, 0), second
    assert _feature_rows(dest) == rows
    assert not foreign_files(dest), foreign_files(dest)  # no probe, temporary or stray file: part files only
