from __future__ import annotations

import io
import json
import socket
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(300)]

# Canaries: shaped like real AWS credentials so any redaction keyed on shape would also catch them.
CANARY_KEY_ID = "AKIACANARY7E2E0KEYID"
CANARY_SECRET = "canary/SECRET+e2e0tHiSsHoUlDnEvErLeAk0000"
STORAGE_OPTIONS_KEY_ID = "AKIACANARY7E2E1OPTNS"
STORAGE_OPTIONS_SECRET = "canary/OPTIONS+e2e1nEvErInPrEfEcTpArAmS11"
ENV_CANARIES = (CANARY_KEY_ID, CANARY_SECRET)
CANARIES = (*ENV_CANARIES, STORAGE_OPTIONS_KEY_ID, STORAGE_OPTIONS_SECRET)
N_WAVS = 10


def _hermetic_aws() -> dict[str, str]:
    # no ~/.aws files or profiles can supply credentials behind the test's back
    return {
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _aws_env(endpoint_url: str) -> dict[str, str]:
    return {
        **_hermetic_aws(),
        "AWS_ACCESS_KEY_ID": CANARY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": CANARY_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint_url,
    }


@dataclass
class Bucket:
    endpoint_url: str
    name: str
    client: Any  # boto3 S3 client
    files: dict[str, str]  # uploaded WAV name -> expected corpus

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.name}", *parts])

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def bucket(moto_server: str, write_wavs, tmp_path_factory: pytest.TempPathFactory) -> Bucket:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id=CANARY_KEY_ID,
        aws_secret_access_key=CANARY_SECRET,
    )
    name = f"ser-e2e-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    local = tmp_path_factory.mktemp("s3-audio")
    files = write_wavs(local, N_WAVS, seed=7)
    for wav in files:
        client.upload_file(str(local / wav), name, f"audio/{wav}")
    client.put_object(Bucket=name, Key="audio/corrupt.wav", Body=np.random.default_rng(3).bytes(4096))
    client.put_object(Bucket=name, Key="audio/notes.txt", Body=b"not audio, passed over")
    return Bucket(moto_server, name, client, files)


@dataclass
class Runs:
    first: Any  # CliResult
    second: Any
    dest: str


@pytest.fixture(scope="module")
def env_runs(bucket: Bucket, prefect_server, run_cli) -> Runs:
    """Featurize s3 -> s3 twice with the canary credentials in the AWS environment, on the Prefect server."""
    args = [
        "featurize",
        bucket.uri("audio"),
        bucket.uri("out"),
        "--n-workers",
        "1",
        "--feature-set",
        "seed268",
        "--settle-s",
        "0",
        "--json",
    ]
    env = {**_aws_env(bucket.endpoint_url), **prefect_server.env()}
    return Runs(run_cli(args, env=env), run_cli(args, env=env), "out")


@pytest.fixture(scope="module")
def options_run(bucket: Bucket, prefect_server, run_cli) -> Any:
    """Featurize with credentials and endpoint only in --storage-options (no AWS credentials in the environment)."""
    options = {
        "endpoint_url": bucket.endpoint_url,
        "key": STORAGE_OPTIONS_KEY_ID,
        "secret": STORAGE_OPTIONS_SECRET,
        "client_kwargs": {"region_name": "us-east-1"},
    }
    args = [
        "featurize",
        bucket.uri("audio"),
        bucket.uri("out-options"),
        "--n-workers",
        "1",
        "--feature-set",
        "seed268",
        "--settle-s",
        "0",
        "--json",
        "--storage-options",
        json.dumps(options),
    ]
    return run_cli(args, env={**_hermetic_aws(), **prefect_server.env()})


def _read_parts(bucket: Bucket, prefix: str) -> tuple[dict[str, Counter[str]], list[dict[str, Any]]]:
    """Rows per corpus (file name counts) and error rows under s3://bucket/prefix, read with pyarrow + s3fs."""
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=bucket.endpoint_url,
        key=CANARY_KEY_ID,
        secret=CANARY_SECRET,
        client_kwargs={"region_name": "us-east-1"},
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    rows: dict[str, Counter[str]] = {}
    for path in sorted(fs.glob(f"{bucket.name}/{prefix}/features/feature_set=seed268/corpus=*/part-*.parquet")):
        corpus = path.split("/")[-2].removeprefix("corpus=")
        table = pq.read_table(path, filesystem=fs)
        assert table.schema.field("features").type.list_size == 268
        assert "corpus" not in table.column_names, path  # the folder holds it
        rows.setdefault(corpus, Counter()).update(p.rsplit("/", 1)[-1] for p in table.column("path").to_pylist())
    errors: list[dict[str, Any]] = []
    for path in sorted(fs.glob(f"{bucket.name}/{prefix}/errors/feature_set=seed268/part-*.parquet")):
        errors.extend(pq.read_table(path, filesystem=fs).to_pylist())
    return rows, errors


def _assert_complete(bucket: Bucket, prefix: str) -> None:
    rows, errors = _read_parts(bucket, prefix)
    assert {name: corpus for corpus, names in rows.items() for name in names} == bucket.files
    assert all(n == 1 for names in rows.values() for n in names.values()), rows
    assert [e["path"].rsplit("/", 1)[-1] for e in errors] == ["corrupt.wav"], errors
    assert errors[0]["error_type"] and errors[0]["message"] and errors[0]["stage"], errors


def test_s3_round_trip_featurizes_every_wav_records_the_corrupt_one_and_rerun_adds_nothing(
    bucket, env_runs, foreign_files
):
    first, second = env_runs.first, env_runs.second
    assert first.returncode == 0, first
    summary = first.summary()
    assert (summary["files_seen"], summary["featurized"], summary["failed"]) == (N_WAVS + 1, N_WAVS, 1), first
    _assert_complete(bucket, "out")
    parts_before = {key: bucket.get(key) for key in bucket.keys("out/")}

    assert second.returncode == 0, second
    again = second.summary()
    assert (again["featurized"], again["failed"], again["already_done"]) == (0, 0, N_WAVS), second
    _assert_complete(bucket, "out")
    assert {key: bucket.get(key) for key in bucket.keys("out/")} == parts_before, "a re-run rewrote or added part files"
    assert not foreign_files([key.removeprefix("out/") for key in parts_before]), parts_before  # part files only


def test_storage_options_alone_give_credentials_and_endpoint(bucket, options_run):
    assert options_run.returncode == 0, options_run
    summary = options_run.summary()
    assert (summary["featurized"], summary["failed"]) == (N_WAVS, 1), options_run
    _assert_complete(bucket, "out-options")


def _leaks(text: str | bytes, canaries: tuple[str, ...] = CANARIES) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [canary for canary in canaries if canary.encode() in data]


def _api_dump(prefect_server) -> dict[str, list[Any]]:
    """Everything the Prefect API holds about runs: flow runs (names, parameters), task runs, logs, artifacts."""
    dump: dict[str, list[Any]] = {}
    for route in ("flow_runs/filter", "task_runs/filter", "logs/filter", "artifacts/filter", "deployments/filter"):
        items: list[Any] = []
        while True:
            page = prefect_server.post(route, {"limit": 200, "offset": len(items)})
            items.extend(page)
            if len(page) < 200:
                break
        dump[route] = items
    return dump


def test_canary_aws_env_credentials_appear_in_no_output_parquet_or_prefect_api(bucket, env_runs, prefect_server):
    for run in (env_runs.first, env_runs.second):
        assert run.returncode == 0, run
        assert not _leaks(run.stdout) and not _leaks(run.stderr), run
    for key in bucket.keys("out/"):
        data = bucket.get(key)
        assert not _leaks(data), key
        if key.endswith(".parquet"):
            metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
            assert not _leaks(b"".join(k + v for k, v in metadata.items())), key
    dump = _api_dump(prefect_server)
    assert any(run["parameters"].get("source") == bucket.uri("audio") for run in dump["flow_runs/filter"]), (
        "the runs did not reach the Prefect server"
    )
    assert not _leaks(json.dumps(dump), ENV_CANARIES), "canary found in the Prefect API"
    assert not _leaks(prefect_server.service.log.read_bytes(), ENV_CANARIES), "canary in the Prefect server's log"


def test_canary_storage_options_credentials_appear_in_no_output_or_parquet(bucket, options_run):
    assert options_run.returncode == 0, options_run
    assert not _leaks(options_run.stdout) and not _leaks(options_run.stderr), options_run
    for key in bucket.keys("out-options/"):
        data = bucket.get(key)
        assert not _leaks(data), key
        if key.endswith(".parquet"):
            metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
            assert not _leaks(b"".join(k + v for k, v in metadata.items())), key


def test_canary_storage_options_credentials_appear_nowhere_in_the_prefect_api(options_run, prefect_server):
    assert options_run.returncode == 0, options_run
    dump = _api_dump(prefect_server)
    assert any(run["parameters"].get("dest", "").endswith("/out-options") for run in dump["flow_runs/filter"]), (
        "the run did not reach the Prefect server"
    )
    leaked = {run["name"]: sorted(run["parameters"]) for run in dump["flow_runs/filter"] if _leaks(json.dumps(run))}
    assert not leaked, f"canary in the parameters of flow runs {leaked}"
    assert not _leaks(json.dumps(dump)), "canary found in the Prefect API"


# --- permanent faults: quick, one line, no traceback -------------------------------------------------


@dataclass
class Failure:
    result: Any  # CliResult
    expected: tuple[str, ...]  # what the one-line message must name


@pytest.fixture(scope="module")
def failures(bucket: Bucket, run_cli) -> dict[str, Failure]:
    with socket.socket() as sock:  # bound, then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reachable, unreachable = _aws_env(bucket.endpoint_url), _aws_env(f"http://127.0.0.1:{port}")
    cases = {
        "unreachable endpoint": (
            bucket.uri("audio"),
            bucket.uri("out-x"),
            unreachable,
            ("unreachable", "AWS_ENDPOINT_URL"),
        ),
        "missing source bucket": (
            "s3://no-such-bucket-e2e/audio",
            bucket.uri("out-y"),
            reachable,
            ("s3://no-such-bucket-e2e/audio", "not found"),
        ),
        "missing dest bucket": (
            bucket.uri("audio"),
            "s3://no-such-bucket-e2e/out",
            reachable,
            ("s3://no-such-bucket-e2e/out", "not found"),
        ),
    }
    return {
        fault: Failure(run_cli(["featurize", source, dest, "--n-workers", "1"], env=env, timeout_s=120), expected)
        for fault, (source, dest, env, expected) in cases.items()
    }


@pytest.mark.parametrize("fault", ["unreachable endpoint", "missing source bucket", "missing dest bucket"])
def test_permanent_s3_fault_exits_quickly_with_one_line_naming_the_cause_and_no_traceback(failures, fault):
    result = failures[fault].result
    assert result.returncode == 2, result
    assert result.elapsed_s < 60, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ser-batch: error: "), result
    assert all(word in lines[0] for word in failures[fault].expected), result
    assert not _leaks(result.stdout) and not _leaks(result.stderr), result
