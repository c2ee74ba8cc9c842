"""Local and s3:// file access through fsspec: listing, reading, atomic writes, clear errors.

The only module that talks to fsspec/s3fs directly. Credentials arrive only as
``storage_options``; when those are None, s3fs/botocore read the standard AWS
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, profiles, ...).
"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from ser_batch.errors import AudioError, StorageError
from ser_batch.shards import FileInfo

AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".sd2",
        ".voc",
        ".nist",
        ".sph",
        ".ircam",
        ".htk",
        ".avr",
        ".paf",
        ".xi",
    }
)
"""Extensions of the containers libsndfile decodes (headerless RAW excluded)."""


PER_FILE_OS_ERRORS: tuple[type[OSError], ...] = (
    PermissionError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
)
"""Read failures that are permanent for one file: recorded as its error row. Any other OSError may
be transient (network, throttling) and fails the shard, so its task is retried."""

PER_FILE_ERRORS: tuple[type[Exception], ...] = (AudioError, *PER_FILE_OS_ERRORS)
"""Everything that is one file's own problem: recorded as its error row, never fatal to a shard."""


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than ``file``.

    >>> is_remote("s3://bucket/x"), is_remote("/tmp/x")
    (True, False)
    """
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    """Absolute local path of a local URI (``file://`` stripped)."""
    return os.path.abspath(uri[len("file://") :] if uri.startswith("file://") else uri)


def join(base: str, *parts: str) -> str:
    """Join URI parts with ``/`` (local paths and object keys alike)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


@contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """Turn permanent storage failures into a one-line ``StorageError`` naming the cause."""
    try:
        yield
    except FileNotFoundError as error:
        raise StorageError(f"{redact(uri)}: not found ({_reason(error)})") from None
    except PermissionError as error:
        raise StorageError(f"{redact(uri)}: access denied ({_reason(error)})") from None
    except IsADirectoryError:
        raise StorageError(f"{redact(uri)}: is a directory") from None
    except NotADirectoryError:
        raise StorageError(f"{redact(uri)}: not a directory") from None
    except FileExistsError:  # os.makedirs over a regular file
        raise StorageError(f"{redact(uri)}: exists and is not a directory") from None
    except Exception as error:  # botocore's credential/endpoint errors share no base class we can import lazily
        name = type(error).__name__
        if name in {"NoCredentialsError", "PartialCredentialsError", "NoRegionError"}:
            raise StorageError(
                f"{redact(uri)}: no usable AWS credentials ({name}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            ) from None
        if name in {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionRefusedError"}:
            raise StorageError(
                f"{redact(uri)}: storage endpoint unreachable ({name}); check AWS_ENDPOINT_URL / network"
            ) from None
        if name == "ClientError":
            raise StorageError(f"{redact(uri)}: {_reason(error)}") from None
        raise


def _reason(error: BaseException) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def redact(uri: str) -> str:
    """The URI without credentials: ``s3://KEY:SECRET@bucket`` URLs must never reach a log line or report.

    >>> redact("s3://AKIA:secret@bucket/x"), redact("/data/x")
    ('s3://***@bucket/x', '/data/x')
    """
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri


def filesystem(uri: str, *, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve a URI to its fsspec filesystem and path.

    Remote filesystems keep no listing cache (``use_listings_cache=False``, unless
    ``storage_options`` says otherwise): fsspec caches filesystem instances per process, and
    s3fs fills an instance's folder listings as it lists and never refreshes them, while
    DEST's part files are written and removed by Dask workers in other processes. A cached
    listing then hid a part file the same run had just written (``FileNotFoundError``).
    Invalidating on write cannot fix that across processes; not caching can.
    """
    options = dict(storage_options or {})
    if is_remote(uri):
        options.setdefault("use_listings_cache", False)
    fs, path = url_to_fs(uri, **options)
    return fs, path


def list_files(uri: str, *, storage_options: dict[str, Any] | None = None) -> Iterator[FileInfo]:
    """Yield every audio file under a directory or prefix, recursively, sorted by URI per folder.

    Local listing never follows directory symlinks (so symlink loops end) and skips
    entries it cannot stat. Files whose extension libsndfile does not decode are passed over.

    Raises:
        StorageError: if ``uri`` does not exist, is not a directory, or cannot be listed.
    """
    if not is_remote(uri):
        root = local_path(uri)
        with storage_errors(uri):
            if not os.path.isdir(root):
                raise (
                    FileNotFoundError(f"no such directory: {root}")
                    if not os.path.exists(root)
                    else NotADirectoryError(root)
                )
            os.listdir(root)
        yield from _walk_local(root)
        return
    fs, path = filesystem(uri, storage_options=storage_options)
    with storage_errors(uri):
        if not fs.exists(path):
            raise FileNotFoundError(f"no such bucket or prefix: {uri}")
    protocol = uri.split("://", 1)[0]
    for info in _remote_listing(fs, path, uri):
        key = str(info["name"])
        if info.get("type") == "file" and os.path.splitext(key)[1].lower() in AUDIO_EXTENSIONS:
            etag = str(info.get("ETag", info.get("etag", ""))).strip('"')
            modified = info.get("LastModified", info.get("mtime"))
            modified_s = (
                float(modified.timestamp()) if modified is not None and hasattr(modified, "timestamp") else None
            )
            yield FileInfo(f"{protocol}://{key}", int(info["size"]), f"{info['size']}:{etag}", modified_s)


_LISTING_PAGE = 1000  # S3's page size: one page of object infos in memory at a time


def _remote_listing(fs: fsspec.AbstractFileSystem, path: str, uri: str) -> Iterator[dict[str, Any]]:
    """Info dicts of everything under ``path``, sorted by name.

    On S3 the keys are streamed a page at a time: ListObjectsV2 without a delimiter returns
    every key under the prefix in UTF-8 byte order, which is Python's order for the names,
    so no sort is needed. ``fs.find`` would instead hold the whole listing (about 1.5 KB
    per object) and cache every folder of it in the filesystem instance. Other stores (and
    a SOURCE that is a single object) fall back to ``find``.
    """
    bucket, key, _ = fs.split_path(path) if hasattr(fs, "split_path") else (None, None, None)
    iterdir = getattr(fs, "_iterdir", None)
    streamed = 0
    if bucket and iterdir is not None and not getattr(fs, "version_aware", False):
        pages = iterdir(bucket, delimiter="", prefix=f"{key.rstrip('/')}/" if key else "")
        # One page ahead: the next request is in flight on fsspec's event loop while the
        # caller works through this page (one request at a time on the generator).
        pending = asyncio.run_coroutine_threadsafe(_next_items(pages, _LISTING_PAGE), fs.loop)
        try:
            while True:
                with storage_errors(uri):
                    page = pending.result()
                if len(page) == _LISTING_PAGE:
                    pending = asyncio.run_coroutine_threadsafe(_next_items(pages, _LISTING_PAGE), fs.loop)
                streamed += len(page)
                yield from page
                if len(page) < _LISTING_PAGE:
                    break
        finally:
            pending.cancel()
    if streamed == 0:
        with storage_errors(uri):
            listing = fs.find(path, detail=True)
        for name in sorted(listing):
            yield {"name": name, **listing[name]}


async def _next_items(items: Any, n: int) -> list[Any]:
    taken: list[Any] = []
    async for item in items:
        taken.append(item)
        if len(taken) == n:
            break
    return taken


def _walk_local(root: str) -> Iterator[FileInfo]:
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        return  # an unreadable subfolder: nothing in it can be read either
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_local(entry.path)
                continue
            if os.path.splitext(entry.name)[1].lower() not in AUDIO_EXTENSIONS:
                continue
            info = entry.stat()  # follows file symlinks; a dangling one raises
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            yield FileInfo(entry.path, info.st_size, f"{info.st_size}:{info.st_mtime_ns}", info.st_mtime)


def read_bytes(uri: str, *, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read a whole file (local or remote)."""
    if not is_remote(uri):
        with open(local_path(uri), "rb") as handle:
            return handle.read()
    fs, path = filesystem(uri, storage_options=storage_options)
    return bytes(fs.cat_file(path))


@contextmanager
def local_copy(uri: str, *, storage_options: dict[str, Any] | None = None) -> Iterator[str]:
    """A local path holding the file: the file itself when local, else a temporary download.

    Lets decoders stream from disk instead of holding a remote file's bytes in memory. The
    temporary file is removed on exit. Read failures propagate as ``OSError`` (maybe transient).
    """
    if not is_remote(uri):
        yield local_path(uri)
        return
    fs, path = filesystem(uri, storage_options=storage_options)
    suffix = os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(prefix="ser-batch-", suffix=suffix)
    os.close(handle)
    try:
        fs.get_file(path, temporary)
        yield temporary
    finally:
        os.remove(temporary)


def write_bytes_atomic(uri: str, data: bytes, *, storage_options: dict[str, Any] | None = None) -> None:
    """Write a file so readers see the old file or the new one, never a partial one.

    Local: a hidden temporary file in the same folder, fsynced, then ``os.replace``.
    S3: one PUT, which object stores apply atomically.
    """
    if not is_remote(uri):
        path = local_path(uri)
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return
    fs, path = filesystem(uri, storage_options=storage_options)
    fs.pipe_file(path, data)


def remove(uri: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Delete one file if it exists."""
    if not is_remote(uri):
        try:
            os.remove(local_path(uri))
        except FileNotFoundError:
            pass
        return
    fs, path = filesystem(uri, storage_options=storage_options)
    if fs.exists(path):
        fs.rm_file(path)


def check_writable(uri: str, *, storage_options: dict[str, Any] | None = None) -> None:
    """Fail fast unless a probe file can be written to and removed from ``uri``.

    Raises:
        StorageError: naming the location and the cause.
    """
    probe = join(uri, f".ser-batch-probe-{uuid.uuid4().hex}")
    with storage_errors(uri):
        if not is_remote(uri):
            os.makedirs(local_path(uri), exist_ok=True)
        write_bytes_atomic(probe, b"", storage_options=storage_options)
        remove(probe, storage_options=storage_options)
