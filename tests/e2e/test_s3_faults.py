from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(420)]
BUCKET = "ser-nightly"
DENY_PARTS = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/out/features/*"}
ALLOW_S3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}


def _policy(*statements: dict[str, str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _require_signatures(endpoint_url: str) -> None:
    """From now on moto checks every request against IAM, as S3 does."""
    request = urllib.request.Request(  # noqa: S310
        f"{endpoint_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def _feature_rows(s3, prefix: str) -> Counter[str]:
    rows: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".parquet"):
                body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                rows.update(
                    PurePosixPath(p).name for p in pq.read_table(pa.BufferReader(body)).column("path").to_pylist()
                )
    return rows


def test_s3_access_denied_mid_run_ends_in_one_line_without_retries_and_a_rerun_completes(
    own_moto_server, run_cli, write_wavs, tmp_path, foreign_files
) -> None:
    import boto3

    anyone = {"endpoint_url": own_moto_server, "region_name": "us-east-1"}
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **anyone)
    keys = {}
    for user, policy in (("nightly", _policy(ALLOW_S3, DENY_PARTS)), ("admin", _policy({**ALLOW_S3, "Action": "*"}))):
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="access", PolicyDocument=policy)
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    admin = {
        "aws_access_key_id": keys["admin"]["AccessKeyId"],
        "aws_secret_access_key": keys["admin"]["SecretAccessKey"],
    }
    s3 = boto3.client("s3", **admin, **anyone)
    s3.create_bucket(Bucket=BUCKET)
    wavs = write_wavs(tmp_path / "audio", 6, seed=11)
    for name in wavs:
        s3.upload_file(str(tmp_path / "audio" / name), BUCKET, f"audio/{name}")
    _require_signatures(own_moto_server)
    env = {
        "AWS_ACCESS_KEY_ID": keys["nightly"]["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": keys["nightly"]["SecretAccessKey"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": own_moto_server,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    args = ["featurize", f"s3://{BUCKET}/audio", f"s3://{BUCKET}/out", "--n-workers", "1", "--feature-set", "seed268",
            "--settle-s", "0"]  # fmt: skip

    denied = run_cli(args, env=env)  # SOURCE lists, DEST takes the probe: refused only at the first part file

    output = denied.stdout + denied.stderr
    last = denied.stderr.strip().splitlines()[-1]
    assert denied.returncode == 2, denied
    assert last.startswith(f"ser-batch: error: s3://{BUCKET}/out/features/") and "access denied" in last, denied
    assert "give the run write access to DEST" in last and "re-run the same command" in last, denied
    assert "Traceback" not in output, denied
    retried = [line for line in output.splitlines() if "StorageError" in line and "Retry" in line]
    assert not retried, retried  # not retried: it would fail alike
    written = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/").get("Contents", [])]
    assert not foreign_files([key.removeprefix("out/") for key in written]), written  # no probe or stray object

    iam = boto3.client("iam", **admin, **anyone)
    iam.put_user_policy(UserName="nightly", PolicyName="access", PolicyDocument=_policy(ALLOW_S3))  # the fix
    rerun = run_cli([*args, "--json"], env=env)

    assert rerun.returncode == 0, rerun
    assert _feature_rows(s3, "out/features/") == Counter({name: 1 for name in wavs})
