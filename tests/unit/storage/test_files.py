from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ser_batch import storage
from ser_batch.errors import StorageError
from ser_batch.shards import PassedOver
from ser_batch.storage import files


def test_list_files_recurses_sorted_and_passes_over_non_audio(archive) -> None:
    listed = list(storage.list_files(str(archive)))
    names = [os.path.relpath(info.uri, archive) for info in listed]
    assert len(names) == 7
    assert "notes.txt" not in names
    assert names == sorted(names, key=lambda name: name.split(os.sep))
    assert all(info.size > 0 and info.content_key.startswith(f"{info.size}:") for info in listed)


def test_content_key_changes_with_content(write_wav) -> None:
    path = write_wav("a/x.wav")
    before = next(storage.list_files(str(path.parent))).content_key
    os.utime(path, ns=(1, 1))
    assert next(storage.list_files(str(path.parent))).content_key != before


def test_symlink_loops_and_dangling_links_end(write_wav, tmp_path) -> None:
    path = write_wav("loop/a.wav")
    os.symlink(tmp_path / "loop", tmp_path / "loop" / "again")
    os.symlink(tmp_path / "missing.wav", tmp_path / "loop" / "dangling.wav")
    assert [info.uri for info in storage.list_files(str(tmp_path / "loop"))] == [str(path)]


def test_directory_named_like_audio_is_walked_not_read(write_wav, tmp_path) -> None:
    inner = write_wav("d/folder.wav/inner.wav")
    assert [info.uri for info in storage.list_files(str(tmp_path / "d"))] == [str(inner)]


def test_missing_source_is_a_storage_error(tmp_path) -> None:
    with pytest.raises(StorageError, match="not found"):
        list(storage.list_files(str(tmp_path / "nope")))


def test_file_as_source_is_a_storage_error(write_wav) -> None:
    with pytest.raises(StorageError, match="not a directory"):
        list(storage.list_files(str(write_wav("x.wav"))))


def test_unwritable_dest_is_a_storage_error(write_wav) -> None:
    with pytest.raises(StorageError):
        storage.check_writable(str(write_wav("x.wav") / "out"))


def test_read_only_dest_is_a_storage_error(tmp_path, unprivileged) -> None:
    tmp_path.chmod(0o500)
    try:
        with unprivileged(), pytest.raises(StorageError, match="access denied"):
            storage.check_writable(str(tmp_path / "out"))
    finally:
        tmp_path.chmod(0o700)


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "d" / "part.parquet"
    storage.write_bytes_atomic(str(target), b"one")
    storage.write_bytes_atomic(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["part.parquet"]


_CRASHED = 77


def _die_writing_half(real_open: Callable[..., Any]) -> Callable[..., Any]:
    def crashing_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode:
            write = handle.write
            handle.write = lambda data: (write(data[: len(data) // 2]), handle.flush(), os._exit(_CRASHED))
        return handle

    return crashing_open


def _write_and_die(target: Path, data: bytes, crash: str) -> int:
    """``write_bytes_atomic`` in a child process killed at ``crash``: no cleanup of any kind runs, as for a killed worker."""
    pid = os.fork()
    if pid == 0:
        try:
            if crash == "mid-write":
                files.open = _die_writing_half(open)  # type: ignore[attr-defined]
            else:  # after the whole file is written and synced, before it gets its name
                os.replace = lambda *args, **kwargs: os._exit(_CRASHED)
            storage.write_bytes_atomic(str(target), data)
        finally:
            os._exit(0)  # the writer never reached the crash point
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("crash", ["mid-write", "between write and rename"])
def test_a_writer_killed_while_writing_leaves_the_old_file_whole_and_only_a_hidden_temporary(tmp_path, crash) -> None:
    target = tmp_path / "d" / "part.parquet"
    storage.write_bytes_atomic(str(target), b"old rows")

    assert _write_and_die(target, b"new rows, a whole file of them", crash) == _CRASHED

    assert target.read_bytes() == b"old rows"
    names = os.listdir(target.parent)
    assert [name for name in names if not name.startswith(".")] == ["part.parquet"]  # readers see nothing else
    assert [name for name in names if name.startswith(".part.parquet.")], names  # the crash did land inside a write


def test_credentials_in_uri_are_redacted_from_errors() -> None:
    with pytest.raises(StorageError) as caught, storage.storage_errors("s3://AKIAXXX:sekrit@bucket/x"):
        raise FileNotFoundError("gone")
    assert "sekrit" not in str(caught.value) and "AKIAXXX" not in str(caught.value)


def test_the_listing_passes_over_junk_and_counts_other_files_by_extension(tmp_path) -> None:
    for name in ("a.wav", "._a.wav", "__MACOSX/._a.wav", ".Trash/b.wav", "c.pdf", "d.PDF", "e.jpg", "README"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(b"x")
    passed_over = PassedOver()

    found = [info.uri for info in storage.list_files(str(tmp_path / "src"), passed_over=passed_over)]

    assert found == [str(tmp_path / "src" / "a.wav")]
    assert passed_over == PassedOver(Counter({".pdf": 2, ".jpg": 1, "(none)": 1}), [])


def test_compressed_call_audio_libsndfile_does_not_decode_is_listed_to_become_error_rows(tmp_path) -> None:
    names = ("a.M4A", "b.mp4", "c.aac", "d.wma", "e.webm", "f.mka", "g.amr", "h.3gp", "i.mp3", "j.opus")
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    passed_over = PassedOver()

    found = [info.uri for info in storage.list_files(str(tmp_path), passed_over=passed_over)]

    assert found == [str(tmp_path / name) for name in names] and passed_over == PassedOver()


def test_a_local_folder_that_cannot_be_listed_is_named_not_taken_as_empty(tmp_path, monkeypatch) -> None:
    for name in ("a/1.wav", "b/2.wav", "c/3.wav"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(b"x")
    scandir = os.scandir

    def flaky(path):  # an NFS hiccup, or a folder this user may not read (root reads any, so no chmod here)
        if str(path).endswith("/b"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", flaky)
    passed_over = PassedOver()

    found = [
        os.path.relpath(info.uri, tmp_path / "src")
        for info in storage.list_files(str(tmp_path / "src"), passed_over=passed_over)
    ]

    assert found == ["a/1.wav", "c/3.wav"]
    assert passed_over.unreadable == [str(tmp_path / "src" / "b")]


def test_a_name_that_is_not_utf8_is_listed_as_a_utf8_uri_that_reads_back_the_same_file(tmp_path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9 50%.wav"  # Latin-1, as SMB and NFS archives hold them
    handle = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(handle, b"RIFF-ish bytes")
    os.close(handle)

    (listed,) = storage.list_files(str(tmp_path))

    assert listed.uri == f"file://{tmp_path}/caf%E9 50%25.wav"
    assert os.fsencode(storage.local_path(listed.uri)) == raw
    assert storage.read_bytes(listed.uri) == b"RIFF-ish bytes"
    with storage.local_copy(listed.uri) as path:
        assert os.fsencode(path) == raw


def test_a_dest_whose_path_is_not_utf8_is_refused_in_one_line(tmp_path) -> None:
    dest = storage.local_uri(os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9"))
    with pytest.raises(StorageError, match="not valid UTF-8"):
        storage.check_writable(dest)


def test_what_the_listing_passes_over_is_named_in_utf8_when_the_names_are_not(tmp_path, monkeypatch) -> None:
    source = os.fsencode(tmp_path / "src")
    for raw in (source + b"/notiz.t\xe9xt", source + b"/gesperrt-\xe9/a.wav"):  # Latin-1
        os.makedirs(os.path.dirname(raw), exist_ok=True)
        os.close(os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644))
    scandir = os.scandir

    def denied(path):  # a folder this user may not read (root reads any, so no chmod here)
        if os.fsencode(path).endswith(b"-\xe9"):
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    passed_over = PassedOver()

    assert list(storage.list_files(str(tmp_path / "src"), passed_over=passed_over)) == []

    assert passed_over.extensions == Counter({".t%E9xt": 1})
    assert passed_over.unreadable == [f"file://{tmp_path}/src/gesperrt-%E9"]
    "\n".join([*passed_over.extensions, *passed_over.unreadable]).encode("utf-8")  # printable: no surrogate left
