"""Two runs into one DEST at once: one writes, the other exits 2 naming it (or finds everything done)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_batch.errors import LeaseError
from ser_batch.storage import files
from ser_batch.storage.lease import hold_lease, lease_uri, read_lease

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]
N_WAVS = 12
SER_BATCH = str(Path(sys.executable).parent / "ser-batch")


@dataclass
class Together:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-6000:]}"


def run_together(argvs: list[list[str]], env: dict[str, str], log_dir: Path) -> list[Together]:
    """Start one CLI per ``argvs`` at the same moment, against one Prefect server (in ``env``), and wait for all."""
    procs = [
        subprocess.Popen(  # noqa: S603
            [SER_BATCH, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=log_dir
        )
        for argv in argvs
    ]
    results = []
    for index, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=300)
        results.append(Together(proc.returncode, stdout, stderr))
        (log_dir / f"together-{index}.log").write_text(str(results[-1]))
    return results


def check_one_writer(results: list[Together], rows: Counter[str]) -> None:
    assert sorted(r.returncode for r in results)[0] == 0, "\n".join(map(str, results))
    for result in results:
        assert result.returncode in (0, 2), result
        if result.returncode == 2:  # lost the race for the lease: named the winner, wrote nothing
            assert "is in use by a featurize run on host" in result.stderr, result
            assert "(pid " in result.stderr and "its lease expiring at" in result.stderr, result
    assert len(rows) == N_WAVS and set(rows.values()) == {1}, rows


def local_rows(dest: Path) -> Counter[str]:
    parts = (dest / "features").rglob("part-*.parquet")
    return Counter(path for part in parts for path in pq.read_table(part, columns=["path"]).column("path").to_pylist())


def test_two_featurize_clis_at_once_into_one_local_dest_write_every_file_once(
    base_env, prefect_server, dask_cluster, write_wavs, tmp_path
) -> None:
    write_wavs(tmp_path / "audio", N_WAVS, seed=11)
    dest = tmp_path / "out"
    argv = ["featurize", str(tmp_path / "audio"), str(dest), "--feature-set", "seed268"]
    argv += ["--dask-address", dask_cluster.address]  # both runs on one cluster: no cluster start-up to wait for

    env = {**base_env, **prefect_server.env()}
    # a catch-up run beside the nightly, with other options: other shards, other part files
    results = run_together([[*argv, "--shard-size", size, "--settle-s", "0"] for size in ("2", "3")], env, tmp_path)

    check_one_writer(results, local_rows(dest))
    assert read_lease(str(dest)) is None  # released by the run that held it


def test_a_live_lease_of_another_run_makes_the_cli_exit_2_and_an_expired_one_is_taken_over(
    run_cli, dask_cluster, write_wavs, tmp_path
) -> None:
    write_wavs(tmp_path / "audio", 3, seed=12)
    dest = tmp_path / "out"
    argv = ["featurize", str(tmp_path / "audio"), str(dest), "--settle-s", "0", "--json"]
    argv += ["--dask-address", dask_cluster.address]
    lease = Path(lease_uri(str(dest)))
    lease.parent.mkdir(parents=True)
    record = {"holder": "catch-up", "job": "score", "host": "batch-7", "pid": 31337, "started_at": time.time() - 60}

    lease.write_text(json.dumps({**record, "expires_at": time.time() + 600}))
    refused = run_cli(argv)
    assert refused.returncode == 2, refused
    assert refused.stderr.startswith(f"ser-batch: error: {dest} is in use by a score run on host batch-7 (pid 31337)")
    assert sorted(path.name for path in dest.rglob("*")) == [".lease.json.lock", "_ser_batch", "lease.json"]

    lease.write_text(json.dumps({**record, "expires_at": time.time() - 1}))
    taken_over = run_cli(argv)
    assert taken_over.returncode == 0, taken_over
    assert taken_over.summary()["featurized"] == 3 and not lease.exists()


@pytest.mark.s3
def test_two_featurize_clis_at_once_into_one_s3_dest_write_every_file_once(
    moto_server, base_env, prefect_server, dask_cluster, write_wavs, tmp_path
) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    bucket = f"one-writer-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for name in write_wavs(tmp_path / "audio", N_WAVS, seed=13):
        client.upload_file(str(tmp_path / "audio" / name), bucket, f"audio/{name}")
    env = {**base_env, **prefect_server.env(), "AWS_CONFIG_FILE": "/nonexistent"}
    options = {"endpoint_url": moto_server, "key": "k", "secret": "s", "client_kwargs": {"region_name": "us-east-1"}}
    argv = ["featurize", f"s3://{bucket}/audio", f"s3://{bucket}/out", "--feature-set", "seed268"]
    argv += ["--dask-address", dask_cluster.address, "--storage-options", json.dumps(options)]  # reach the workers

    # a catch-up run beside the nightly, with other options: other shards, other part files
    results = run_together([[*argv, "--shard-size", size, "--settle-s", "0"] for size in ("2", "3")], env, tmp_path)

    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/features/")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    rows: Counter[str] = Counter()
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        rows.update(pq.read_table(pa.BufferReader(body), columns=["path"]).column("path").to_pylist())
    check_one_writer(results, rows)
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="out/_ser_batch/lease.json")


@pytest.mark.s3
def test_s3_lease_takes_conditional_writes_and_an_expired_lease_is_taken_over(moto_server) -> None:
    import boto3

    options: dict[str, Any] = {
        "endpoint_url": moto_server,
        "key": "k",
        "secret": "s",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    client = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    bucket = f"lease-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    dest = f"s3://{bucket}/scores"
    uri = f"s3://{bucket}/probe.json"

    version = files.create_exclusive(uri, b"one", storage_options=options)
    assert version is not None and files.create_exclusive(uri, b"two", storage_options=options) is None
    assert files.read_versioned(uri, storage_options=options) == (b"one", version)
    newer = files.replace_versioned(uri, b"three", version, storage_options=options)
    assert newer is not None and files.replace_versioned(uri, b"four", version, storage_options=options) is None
    assert files.remove_versioned(uri, newer, storage_options=options)

    with hold_lease(dest, job="score", storage_options=options) as first:
        with pytest.raises(LeaseError, match=f"{dest} is in use by a score run"):
            with hold_lease(dest, job="score", storage_options=options):
                pass
        assert first.renew()
        expired = json.loads(client.get_object(Bucket=bucket, Key="scores/_ser_batch/lease.json")["Body"].read())
    client.put_object(
        Bucket=bucket,
        Key="scores/_ser_batch/lease.json",
        Body=json.dumps({**expired, "host": "gone", "expires_at": time.time() - 1}).encode(),
    )
    with hold_lease(dest, job="featurize", storage_options=options) as second:
        assert read_lease(dest, storage_options=options) == second.record
    assert read_lease(dest, storage_options=options) is None
