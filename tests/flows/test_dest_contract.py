"""DEST mirrors SOURCE: reorganised archives, files being written, archive junk (issue 13, items 1, 3 and 5)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from flows.cli import main
from flows.featurize import featurize
from ser_batch import storage
from ser_batch.config import feature_config
from ser_batch.errors import StorageError

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = feature_config("seed268")
TAKE = ("03-01-05-01-01-01-01.wav", "03-01-04-01-01-01-01.wav", "03-01-03-01-01-01-01.wav", "03-01-06-01-01-01-01.wav")
OTHER = ("YAF_back_angry.wav", "YAF_bath_sad.wav", "OAF_back_happy.wav")
AN_HOUR_AGO = time.time() - 3600


def rows(dest: Path, dataset_name: str = "features") -> Counter[str]:
    try:
        table = storage.read_features(str(dest), config=SEED, columns=["path"], dataset_name=dataset_name)
    except Exception:  # noqa: BLE001  (no table yet)
        return Counter()
    return Counter(table.column("path").to_pylist())


def error_rows(dest: Path) -> Counter[str]:
    done = storage.read_done(str(dest), SEED.name)
    return Counter(path for path, entries in done.failed.items() for _ in entries)


def hashes(dest: Path) -> dict[str, str]:
    table = storage.read_features(str(dest), config=SEED, columns=["path", "content_hash"])
    return dict(zip(table.column("path").to_pylist(), table.column("content_hash").to_pylist(), strict=True))


def listed(source: Path) -> set[str]:
    return {info.uri for info in storage.list_files(str(source))}


def night(source: Path, dest: Path, **options: object) -> dict:
    return featurize(str(source), str(dest), feature_set="seed268", n_workers=1, augment=True, **options)


def test_a_reorganised_archive_is_mirrored_one_row_per_file(prefect, write_wav, tmp_path) -> None:
    for name in TAKE:
        write_wav(f"src/take1/{name}", duration_s=0.4)
    for name in OTHER:
        write_wav(f"src/other/{name}", duration_s=0.4)
    (tmp_path / "src" / "late.wav").write_bytes(b"")  # still empty when night 1 lists it
    source, dest = tmp_path / "src", tmp_path / "out"
    first = night(source, dest, settle_s=0)
    before = hashes(dest)
    assert (first["featurized"], first["failed"], len(error_rows(dest))) == (7, 1, 1)

    (source / "moved").mkdir()
    os.rename(source / "take1", source / "moved" / "take1")  # a folder moved: same files, new paths
    (source / "other" / OTHER[0]).unlink()  # one take deleted
    write_wav("src/late.wav", duration_s=0.4)  # whole by night 2
    second = night(source, dest, settle_s=0)

    present = listed(source)
    assert len(present) == 7
    assert rows(dest) == Counter(present)  # exactly one features row per file present
    assert not error_rows(dest)  # late.wav's stale error row is gone
    labelled = present - {str(source / "late.wav")}  # an unlabelled name gets no augmented copies
    assert set(rows(dest, "augmented")) == labelled and set(rows(dest, "augmented").values()) == {2}
    assert (second["files_gone"], second["superseded_rows_removed"]) == (5, 1)
    now = hashes(dest)
    for name in TAKE:  # the moved clips are the same audio: their hash says so
        assert now[str(source / "moved" / "take1" / name)] == before[str(source / "take1" / name)]
    assert all(len(value) == 64 for value in now.values())


def test_an_empty_source_never_empties_dest_unless_asked(prefect, write_wav, tmp_path) -> None:
    for name in OTHER:
        write_wav(f"src/{name}", duration_s=0.4)
    source, dest = tmp_path / "src", tmp_path / "out"
    night(source, dest, settle_s=0)
    for name in OTHER:
        (source / name).unlink()  # an unmounted share looks like this

    with pytest.raises(StorageError, match="lists no audio file, but .* holds rows of 3 files"):
        night(source, dest, settle_s=0)
    assert rows(dest) == Counter(str(source / name) for name in OTHER)

    emptied = night(source, dest, settle_s=0, allow_empty_source=True)
    assert (emptied["files_gone"], rows(dest), rows(dest, "augmented")) == (3, Counter(), Counter())


def test_files_still_being_written_are_left_for_a_later_run(prefect, write_wav, tmp_path) -> None:
    for name in OTHER:
        os.utime(write_wav(f"src/{name}", duration_s=0.4), (AN_HOUR_AGO, AN_HOUR_AGO))
    growing = write_wav(f"src/{TAKE[0]}", duration_s=0.5)  # modified a moment ago: still being copied in
    source, dest = tmp_path / "src", tmp_path / "out"

    first = night(source, dest)  # the default --settle-s

    assert (first["featurized"], first["still_being_written"]) == (3, 1)
    assert str(growing) not in rows(dest)
    os.utime(write_wav(f"src/{OTHER[1]}", duration_s=0.6), None)  # rewritten now: its old row stays until it settles
    second = night(source, dest)
    assert (second["featurized"], second["still_being_written"], second["files_gone"]) == (0, 2, 0)
    assert str(source / OTHER[1]) in rows(dest)
    for path in (growing, source / OTHER[1]):
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    third = night(source, dest)
    assert (third["featurized"], third["still_being_written"], third["superseded_rows_removed"]) == (2, 0, 3)
    assert rows(dest) == Counter(listed(source))


def test_archive_junk_is_passed_over_and_other_files_are_counted(prefect, write_wav, tmp_path, capsys) -> None:
    for name in (*TAKE, *OTHER):
        clip = write_wav(f"src/{name}", duration_s=0.4)
        (tmp_path / "src" / f"._{name}").write_bytes(b"\x00\x05\x16\x07" + bytes(80))  # AppleDouble companion
        (tmp_path / "src" / "__MACOSX").mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "src" / f"._{name}", tmp_path / "src" / "__MACOSX" / f"._{name}")
        shutil.copyfile(clip, tmp_path / "src" / f"{clip.stem}.pdf" if name in OTHER else clip.with_suffix(".txt"))
    (tmp_path / "src" / ".DS_Store").write_bytes(bytes(64))
    (tmp_path / "src" / ".hidden").mkdir()
    write_wav("src/.hidden/03-01-05-01-01-01-09.wav", duration_s=0.4)
    source, dest = tmp_path / "src", tmp_path / "out"

    argv = ["featurize", str(source), str(dest), "--feature-set", "seed268", "--n-workers", "1", "--settle-s", "0"]
    status = main([*argv, "--no-augment", "--json"])

    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert status == 0, out
    assert (summary["featurized"], summary["failed"], summary["files_seen"]) == (7, 0, 7)
    assert summary["skipped_extensions"] == {".txt": 4, ".pdf": 3}
    assert "skipped: 4 .txt, 3 .pdf (not audio)" in out.out.splitlines()
    assert not error_rows(dest) and set(rows(dest)) == {str(source / name) for name in (*TAKE, *OTHER)}
