from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import soundfile
from signals_gen import voice

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def write_nine_minutes_of_eight_channels(path: Path) -> None:
    # The example: decoding it for seed268 needs ~982 MiB, more than a 900 MiB worker ever has.
    # FLAC of silence: 0.2 MB on disk, written in blocks in ~3 s.
    n_frames, block = 9 * 60 * 48_000, np.zeros((1 << 20, 8), np.int16)
    with soundfile.SoundFile(path, "w", 48_000, 8, subtype="PCM_16", format="FLAC") as sound:
        for start in range(0, n_frames, block.shape[0]):
            sound.write(block[: min(block.shape[0], n_frames - start)])


def write_voice(path: Path, frequency: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, voice(1.5, 16_000, f0_hz=frequency), 16_000, subtype="PCM_16")


def feature_paths(dest: Path) -> list[str]:
    parts = sorted((dest / "features").rglob("part-*.parquet"))
    return sorted(
        Path(p).name for part in parts for p in pq.read_table(part, columns=["path"]).column("path").to_pylist()
    )


def error_rows(dest: Path) -> dict[str, tuple[str, str, str]]:
    rows = ds.dataset(dest / "errors", format="parquet", partitioning="hive").to_table().to_pylist()
    assert len({row["path"] for row in rows}) == len(rows), rows
    return {Path(row["path"]).name: (row["error_type"], row["stage"], row["message"]) for row in rows}


def test_poison_files_are_isolated_and_recorded_with_their_reason_and_never_tried_again(
    poison_dask_cluster, run_cli, tmp_path
) -> None:
    audio, dest = tmp_path / "audio", tmp_path / "out"
    for index, name in enumerate(["a/good-1.wav", "b/good-2.wav", "c/good-3.wav", "d/good-4.wav"]):
        write_voice(audio / name, 200.0 + 50 * index)
    write_voice(audio / "a" / "poison-segv.wav", 300.0)  # its decoder crashes the worker
    write_voice(audio / "b" / "poison-hang.wav", 310.0)  # its decoder never returns
    write_nine_minutes_of_eight_channels(audio / "c" / "big-8ch.flac")
    # Listed in path order and cut for two worker threads: [good-1, poison-segv] [good-2, poison-hang]
    # [big-8ch, good-3] [good-4]; the crash's shard must be split to find it.
    args = [
        "featurize",
        str(audio),
        str(dest),
        "--feature-set",
        "seed268",
        "--dask-address",
        poison_dask_cluster.address,
    ]
    args += ["--shard-size", "2", "--file-timeout", "5", "--settle-s", "0", "--json"]

    first = run_cli(args, timeout_s=500)

    assert first.returncode == 0, first
    summary = first.summary()
    assert (summary["files_seen"], summary["featurized"], summary["failed"]) == (7, 4, 3), first
    assert feature_paths(dest) == ["good-1.wav", "good-2.wav", "good-3.wav", "good-4.wav"]
    errors = error_rows(dest)
    assert set(errors) == {"poison-segv.wav", "poison-hang.wav", "big-8ch.flac"}
    assert errors["poison-segv.wav"][:2] == ("PoisonFileError", "worker")
    assert errors["poison-segv.wav"][2].startswith("worker died"), errors
    assert errors["poison-hang.wav"][:2] == ("PoisonFileError", "worker")
    assert errors["poison-hang.wav"][2].startswith("timed out: still running after 5 s"), errors
    assert errors["big-8ch.flac"][:2] == ("AudioError", "decode")
    assert errors["big-8ch.flac"][2].startswith("too large to decode in memory: ~982 MiB to decode 540 s"), errors
    # The crash killed its shard of two, then itself alone twice; the hang was ended once and named by its watchdog.
    hits = poison_dask_cluster.hit_counts(audio)
    assert hits == {"poison-segv.wav": 3, "poison-hang.wav": 1}, hits

    second = run_cli(args, timeout_s=300)

    assert second.returncode == 0, second
    again = second.summary()
    assert (again["featurized"], again["already_done"], again["known_bad_skipped"], again["failed"]) == (0, 4, 3, 0)
    assert poison_dask_cluster.hit_counts(audio) == hits, "a recorded poison file was opened again"
