from __future__ import annotations

import http.client
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(300)]

_SLOW_DOWN = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


class FlakyProxy(ThreadingHTTPServer):
    """An HTTP proxy in front of moto that fails every ``every``-th request: 503 SlowDown, 500, or a dropped connection."""

    daemon_threads = True

    def __init__(self, upstream: str, every: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream)
        self.every = every
        self.count = 0
        self.faults: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_fault(self) -> str | None:
        with self.lock:
            self.count += 1
            if self.count % self.every:
                return None
            fault = ("slowdown", "internal", "drop")[(self.count // self.every) % 3]
            self.faults[fault] += 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FlakyProxy

    def log_message(self, *args: object) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = self.server.next_fault()
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault is not None:
            self.send_response(503 if fault == "slowdown" else 500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(_SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "expect"}}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


@pytest.fixture
def flaky_endpoint(moto_server: str):
    proxy = FlakyProxy(moto_server, every=4)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_transient_s3_errors_are_retried_and_every_file_lands_once(
    moto_server, flaky_endpoint, run_cli, write_wavs, tmp_path
) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    bucket = f"flaky-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    files = write_wavs(tmp_path / "local", 8, seed=11)
    for name in files:
        client.upload_file(str(tmp_path / "local" / name), bucket, f"audio/{name}")
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": flaky_endpoint.url,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }

    result = run_cli(
        [
            "featurize",
            f"s3://{bucket}/audio",
            f"s3://{bucket}/out",
            "--shard-size",
            "3",
            "--n-workers",
            "1",
            "--settle-s",
            "0",
            "--json",
        ],
        env=env,
    )

    assert result.returncode == 0, result
    assert sum(flaky_endpoint.faults.values()) >= 3 and len(flaky_endpoint.faults) == 3, flaky_endpoint.faults
    summary = result.summary()
    assert (summary["featurized"], summary["failed"]) == (8, 0), result
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket, Prefix="out/features/")["Contents"]]
    paths: Counter[str] = Counter()
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        paths.update(pq.read_table(pa.BufferReader(body), columns=["path"]).column("path").to_pylist())
    assert paths == Counter({f"s3://{bucket}/audio/{name}": 1 for name in files})
