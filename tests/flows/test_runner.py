from __future__ import annotations

from dask.tokenize import tokenize
from prefect.utilities.collections import visit_collection

from ser_batch.shards import FileInfo, Shard


def test_prefect_and_dask_take_a_shard_as_one_value_named_by_its_id() -> None:
    # each task submission visits its parameters twice and hashes them: a shard's files must not be walked
    shard = Shard("abc", tuple(FileInfo(f"/a/{i}.wav", i, f"{i}:1") for i in range(500)))
    seen: list[object] = []
    visit_collection({"shard": shard}, visit_fn=seen.append)
    assert not any(isinstance(value, FileInfo) for value in seen)
    assert shard in seen
    assert tokenize(shard) == tokenize(Shard("abc", ())) != tokenize(Shard("abd", shard.files))
