from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest
import soundfile
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from signals_gen import voice

import flows.featurize
from flows.featurize import featurize
from ser_batch import storage
from ser_batch.config import feature_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def write_voice(path: Path, frequency: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, voice(1.5, 16_000, f0_hz=frequency), 16_000, subtype="PCM_16")


def feature_names_in(dest: Path, dataset: str = "features") -> list[str]:
    rows = storage.read_features(str(dest), config=feature_config("stats8k"), dataset_name=dataset)
    return sorted(Path(path).name for path in rows.column("path").to_pylist())


def error_rows(dest: Path) -> list[dict]:
    if not (dest / "errors").exists():
        return []
    return ds.dataset(dest / "errors", format="parquet", partitioning="hive").to_table().to_pylist()


def test_a_shard_failing_once_succeeds_on_its_prefect_retry_and_one_whose_worker_died_is_run_again(
    hooked_cluster, tmp_path, monkeypatch
) -> None:
    # Prefect's retry machinery as shipped, without its 10 s wait.
    monkeypatch.setattr(
        flows.featurize, "featurize_shard", flows.featurize.featurize_shard.with_options(retry_delay_seconds=0)
    )
    audio, dest = tmp_path / "audio", tmp_path / "out"
    write_voice(audio / "a" / "flaky-read.wav", 220.0)  # its first read fails with a transient EIO
    write_voice(audio / "a" / "good-1.wav", 240.0)
    write_voice(audio / "b" / "die-once.wav", 260.0)  # the first time, its worker process dies (a node lost, say)
    write_voice(audio / "b" / "good-2.wav", 280.0)

    state = featurize(str(audio), str(dest), "stats8k", dask_address=hooked_cluster.address, shard_size=2,
                      augment=False, settle_s=0, return_state=True)  # fmt: skip

    summary = state.result()
    assert (summary["featurized"], summary["failed"]) == (4, 0)
    assert feature_names_in(dest) == ["die-once.wav", "flaky-read.wav", "good-1.wav", "good-2.wav"]
    assert error_rows(dest) == []
    assert hooked_cluster.hit_counts(audio) == {"flaky-read.wav": 2, "die-once.wav": 2}
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    attempts = sorted((run.run_count, run.state.type.value) for run in runs if run.name.startswith("featurize-shard"))
    # flaky shard: 2 attempts, completed; the shard whose worker died: crashed; its halves: completed
    assert attempts == [(1, "COMPLETED"), (1, "COMPLETED"), (1, "CRASHED"), (2, "COMPLETED")], attempts


def test_a_clip_that_kills_its_worker_while_augmented_is_recorded_for_the_augment_pass_only(
    hooked_cluster, tmp_path
) -> None:
    audio, dest = tmp_path / "audio", tmp_path / "out"
    write_voice(audio / "03-01-05-01-02-01-12.wav", 220.0)
    write_voice(audio / "poison-augment" / "03-01-04-01-02-01-12.wav", 240.0)  # dies while its copies are made

    first = featurize(str(audio), str(dest), "stats8k", dask_address=hooked_cluster.address, shard_size=1, settle_s=0)

    assert (first["featurized"], first["failed"], first["augmented_copies"], first["augment_failed"]) == (2, 0, 2, 1)
    assert feature_names_in(dest) == ["03-01-04-01-02-01-12.wav", "03-01-05-01-02-01-12.wav"]
    assert feature_names_in(dest, "augmented") == ["03-01-05-01-02-01-12.wav"] * 2
    (row,) = error_rows(dest)
    assert (Path(row["path"]).parent.name, row["error_type"], row["stage"]) == (
        "poison-augment",
        "PoisonFileError",
        "augment",
    )
    assert row["message"].startswith("worker died")
    assert hooked_cluster.hit_counts(audio)["03-01-04-01-02-01-12.wav"] == 2  # dead alone twice, then recorded unopened

    again = featurize(str(audio), str(dest), "stats8k", dask_address=hooked_cluster.address, shard_size=1, settle_s=0)

    assert (again["featurized"], again["augmented_copies"], again["augment_failed"]) == (0, 0, 0)
    assert hooked_cluster.hit_counts(audio)["03-01-04-01-02-01-12.wav"] == 2
