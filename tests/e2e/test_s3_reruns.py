"""Nightly re-runs into an S3 DEST on moto's server: new, changed and deleted clips between runs."""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_batch import jobs, storage
from ser_batch.config import feature_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(300)]

KEY_ID, SECRET = "AKIAE2ERERUNS0000KEY", "e2e/reruns+secret0000000000000000000000"


def ravdess(actor: int, emotion: int, repetition: int = 1) -> str:
    return f"Actor_{actor:02d}/03-01-{emotion:02d}-01-01-{repetition:02d}-{actor:02d}.wav"


class Archive:
    """A SOURCE prefix on moto that the test edits between runs, and the DEST beside it."""

    def __init__(self, endpoint_url: str, folder: Path, write_clip: Callable[..., None]) -> None:
        import boto3

        self.endpoint_url, self.folder, self.write_clip = endpoint_url, folder, write_clip
        self.bucket = f"reruns-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                                   aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)  # fmt: skip
        self.client.create_bucket(Bucket=self.bucket)
        self.source, self.dest = f"s3://{self.bucket}/audio", f"s3://{self.bucket}/out"

    def put(self, name: str, *, seed: int) -> None:
        local = self.folder / name
        self.write_clip(local, seed=seed)
        self.client.upload_file(str(local), self.bucket, f"audio/{name}")

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=f"audio/{name}")

    def current(self) -> dict[str, str]:
        """URI -> content key (size:ETag) of every clip now under SOURCE, as ser-batch keys them."""
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix="audio/")["Contents"]
        return {f"s3://{self.bucket}/{o['Key']}": f"{o['Size']}:{o['ETag'].strip(chr(34))}" for o in listing}

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip

    def storage_options(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "key": KEY_ID,
            "secret": SECRET,
            "client_kwargs": {"region_name": "us-east-1"},
        }


@pytest.fixture
def archive(moto_server: str, tmp_path: Path, write_clip: Callable[..., None]) -> Archive:
    return Archive(moto_server, tmp_path / "audio", write_clip)


def rows_by_path(archive: Archive, feature_set: str, dataset_name: str) -> Counter[tuple[str, str]]:
    table = storage.read_features(archive.dest, config=feature_config(feature_set), columns=["path", "content_key"],
                                dataset_name=dataset_name, storage_options=archive.storage_options())  # fmt: skip
    return Counter(zip(table.column("path").to_pylist(), table.column("content_key").to_pylist(), strict=True))


@pytest.mark.parametrize("feature_set", ["stats8k", "seed268"])
def test_reruns_after_new_changed_and_deleted_clips_see_their_own_writes(archive, feature_set, run_cli, prefect_server):
    for seed, name in enumerate([ravdess(1, 3), ravdess(1, 4), ravdess(2, 5), ravdess(2, 6)]):
        archive.put(name, seed=seed)
    args = ["featurize", archive.source, archive.dest, "--feature-set", feature_set, "--n-workers", "1", "--json"]
    args += ["--settle-s", "0"]  # the clips were put a moment ago
    env = {**archive.env(), **prefect_server.env()}
    first = run_cli(args, env=env)
    assert first.returncode == 0, first

    archive.put(ravdess(1, 5), seed=10)  # two new clips in corpus folders DEST already has
    archive.put(ravdess(3, 7), seed=11)
    archive.put(ravdess(1, 4), seed=12)  # changed content (another length, so another size and ETag)
    archive.delete(ravdess(2, 6))
    second = run_cli(args, env=env)
    assert second.returncode == 0, second
    assert (second.summary()["featurized"], second.summary()["failed"]) == (3, 0), second
    again = jobs.plan_featurization(archive.source, archive.dest, feature_config(feature_set), shard_size=10,
                                       storage_options=archive.storage_options())  # fmt: skip
    assert (again.n_pending, again.n_done, again.reconcile) == (0, 5, {}), "a third run would redo work"

    current = archive.current()
    features = rows_by_path(archive, feature_set, "features")
    assert {path: n for (path, key), n in features.items() if path in current} == dict.fromkeys(current, 1)
    assert all(current[path] == key for path, key in features if path in current), features
    if feature_set == "stats8k":  # augmentation is on by default for it: two copies per labelled clip
        copies = rows_by_path(archive, feature_set, "augmented")
        assert {(path, key): n for (path, key), n in copies.items() if path in current} == {
            (path, key): 2 for path, key in current.items()
        }


def test_foreign_and_unreadable_files_in_an_s3_dest_are_passed_over_and_named(archive, run_cli, prefect_server):
    config, options = feature_config("stats8k"), archive.storage_options()
    for seed, name in enumerate([ravdess(1, 3), ravdess(1, 4), ravdess(2, 5)]):
        archive.put(name, seed=seed)
    archive.client.put_object(Bucket=archive.bucket, Key="audio/broken.wav", Body=b"RIFF not audio")
    for plan, run in ((jobs.plan_featurization, jobs.featurize_shard), (jobs.plan_augmentation, jobs.augment_shard)):
        for shard in plan(archive.source, archive.dest, config, shard_size=10, storage_options=options).shards:
            run(shard, archive.dest, config, storage_options=options)
    features, errors = "out/features/feature_set=stats8k/corpus=ravdess", "out/errors/feature_set=stats8k"
    (error_part,) = [o["Key"] for o in archive.client.list_objects_v2(Bucket=archive.bucket, Prefix=errors)["Contents"]]
    good = archive.client.get_object(Bucket=archive.bucket, Key=error_part)["Body"].read()
    foreign = {
        f"{features}/analysis.parquet": _parquet({"path": ["x"], "score": [0.5]}),  # an analyst's table
        "out/features/README.txt": b"nightly features",
        f"{features}/part-{'c' * 20}.parquet": b"",  # an own part, 0 bytes
        f"{errors}/part-{'d' * 20}.parquet": good[: len(good) // 2],  # an own part, truncated
    }
    for key, body in foreign.items():
        archive.client.put_object(Bucket=archive.bucket, Key=key, Body=body)
    archive.put(ravdess(3, 6), seed=10)
    archive.put(ravdess(1, 4), seed=11)

    run = run_cli(["featurize", archive.source, archive.dest, "--n-workers", "1", "--settle-s", "0", "--json"],
                  env={**archive.env(), **prefect_server.env()})  # fmt: skip
    assert run.returncode == 0, run
    assert (run.summary()["featurized"], run.summary()["augmented_copies"]) == (2, 4), run
    output = run.stdout + run.stderr
    for key in (f"{features}/part-{'c' * 20}.parquet", f"{errors}/part-{'d' * 20}.parquet"):
        assert f"unreadable part file s3://{archive.bucket}/{key}" in output, run
    assert "analysis.parquet" not in output and "README.txt" not in output, run
    current = {path: key for path, key in archive.current().items() if not path.endswith("broken.wav")}
    assert rows_by_path(archive, "stats8k", "features") == Counter(current.items())
    assert rows_by_path(archive, "stats8k", "augmented") == Counter({item: 2 for item in current.items()})
    assert set(foreign) <= {o["Key"] for o in archive.client.list_objects_v2(Bucket=archive.bucket)["Contents"]}


def _parquet(columns: dict[str, list[Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()
