from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from ser_batch import storage
from ser_batch.shards import PassedOver

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(300)]
N_KEYS = 2_150  # three pages of ListObjectsV2


@pytest.fixture(scope="module")
def archive(moto_server: str) -> tuple[str, dict, list[str]]:
    import boto3

    options = {
        "endpoint_url": moto_server,
        "key": "listing",
        "secret": "listing",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="listing",
        aws_secret_access_key="listing",
    )
    bucket = f"listing-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    # Nested day folders, names whose byte order differs from a naive per-folder order, non-audio keys.
    keys = [
        f"archive/2026/11/{i % 7 + 1:02d}/{'A' if i % 3 else 'b'}-call-{i:05d}.{'wav' if i % 10 else 'txt'}"
        for i in range(N_KEYS)
    ]
    keys += [
        "archive/2026/11/01-extra.flac",
        "archive/2026/11/01/",
        "archive/Z.wav",
        "archive/ä-umlaut.wav",
        "other/outside.wav",
    ]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))
    return bucket, options, keys


def test_s3_listing_is_streamed_sorted_and_complete(archive) -> None:
    bucket, options, keys = archive
    fs, _ = storage.filesystem(f"s3://{bucket}/archive", storage_options=options)
    fs.invalidate_cache()

    listed = list(storage.list_files(f"s3://{bucket}/archive", storage_options=options))

    expected = sorted(
        f"s3://{bucket}/{key}" for key in keys if key.startswith("archive/") and key.endswith((".wav", ".flac"))
    )
    assert [info.uri for info in listed] == expected
    assert all(info.size > 0 and info.content_key.startswith(f"{info.size}:") and info.modified_s for info in listed)
    assert not fs.dircache, "the listing was cached whole in the filesystem instance"


def test_a_single_object_as_source_is_listed_like_find_does(archive) -> None:
    bucket, options, _ = archive
    listed = list(storage.list_files(f"s3://{bucket}/archive/Z.wav", storage_options=options))
    assert [info.uri for info in listed] == [f"s3://{bucket}/archive/Z.wav"]


def test_s3_listing_passes_over_junk_and_counts_files_that_are_not_audio(moto_server: str) -> None:
    import boto3

    options = {"endpoint_url": moto_server, "key": "k", "secret": "s", "client_kwargs": {"region_name": "us-east-1"}}
    client = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    bucket = f"junk-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    keys = [
        "unzipped/.hidden-archive/x.wav",  # SOURCE itself may sit anywhere; only what is below it is judged
        "unzipped/.hidden-archive/Actor_01/a.wav",
        "unzipped/.hidden-archive/Actor_01/._a.wav",
        "unzipped/.hidden-archive/__MACOSX/Actor_01/._a.wav",
        "unzipped/.hidden-archive/.Trash/b.wav",
        "unzipped/.hidden-archive/.DS_Store",
        "unzipped/.hidden-archive/c.pdf",
        "unzipped/.hidden-archive/d.PDF",
        "unzipped/.hidden-archive/e.jpg",
    ]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    passed_over = PassedOver()

    listed = storage.list_files(
        f"s3://{bucket}/unzipped/.hidden-archive", storage_options=options, passed_over=passed_over
    )

    assert [info.uri for info in listed] == [f"s3://{bucket}/{key}" for key in keys[1::-1]]
    assert passed_over == PassedOver(Counter({".pdf": 2, ".jpg": 1}), [])


def test_s3_scoring_parts_are_filed_by_call_date_and_a_run_date_layout_is_refused(archive) -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from ser_batch.errors import SchemaError
    from ser_batch.schema import SCORE_SCHEMAS, SCORE_TABLES

    bucket, options, _ = archive
    dest = f"s3://{bucket}/scores-{uuid.uuid4().hex[:8]}"
    storage.check_score_layout(dest, storage_options=options)  # no DEST yet
    paths = [f"s3://{bucket}/archive/2026/11/{day}/c.wav" for day in (23, 24)]
    now = datetime(2026, 11, 30, tzinfo=UTC)
    calls = [
        {"path": path, "content_key": f"e{i}", "model_id": "m", "call_date": f"2026-11-2{3 + i}", "channel": 0,
         "n_channels": 1, "sample_rate": 8000, "duration_s": 1.0, "speech_s": 0.0, "n_segments": 0,
         "scored_at": now, "run_date": now.date()}
        for i, path in enumerate(paths)
    ]  # fmt: skip
    tables = {name: SCORE_SCHEMAS[name].empty_table() for name in SCORE_TABLES}
    tables["calls"] = pa.Table.from_pylist(calls, schema=SCORE_SCHEMAS["calls"])
    written = storage.write_scores(
        tables, dest, "a" * 20, call_dates=["2026-11-23", "2026-11-24"], storage_options=options
    )

    assert sorted(uri.split("/calls/")[1] for uri in written) == [
        f"call_date=2026-11-23/part-{'a' * 20}.parquet",
        f"call_date=2026-11-24/part-{'a' * 20}.parquet",
    ]
    done = storage.read_scored(dest, "m", call_dates=["2026-11-24"], storage_options=options)
    assert done.featurized == {paths[1]: [("e1", f"call_date=2026-11-24/part-{'a' * 20}.parquet")]}
    storage.check_score_layout(dest, storage_options=options)
    fs, root = storage.filesystem(dest, storage_options=options)
    fs.pipe(f"{root}/predictions/run_date=2026-11-30/part-{'b' * 20}.parquet", b"PAR1")
    with pytest.raises(SchemaError, match="run_date= folders of an earlier ser-batch"):
        storage.check_score_layout(dest, storage_options=options)
