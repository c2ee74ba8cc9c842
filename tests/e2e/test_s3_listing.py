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
