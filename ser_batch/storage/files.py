"""Local and s3:// file access through fsspec: listing, reading, atomic writes, clear errors.

The only module that talks to fsspec/s3fs directly. Credentials arrive only as
``storage_options``; when those are None, s3fs/botocore read the standard AWS
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, profiles, ...).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

import fsspec
from fsspec.core import url_to_fs

from ser_batch.errors import AudioError, StorageError
from ser_batch.shards import FileInfo, PassedOver

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
        # compressed call audio libsndfile does not decode: listed all the same, so that each file
        # becomes an error row saying so (``storage.audio.UNSUPPORTED``) instead of being passed over
        ".m4a",
        ".mp4",
        ".aac",
        ".wma",
        ".webm",
        ".mka",
        ".amr",
        ".3gp",
    }
)
"""Extensions of audio files: the containers libsndfile decodes (headerless RAW excluded) and the
compressed ones calls are archived in (``.m4a``, ``.wma``, ``.webm``...), which decode to an error row."""


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
    r"""Absolute local path of a local URI; a ``file://`` URI's percent escapes are decoded (``local_uri``'s inverse).

    The path may hold lone surrogates (``os.fsdecode`` of bytes that are not UTF-8); ``open``
    and ``os`` functions take it as the original bytes.

    >>> local_path("file:///archive/caf%E9.wav") == os.fsdecode(b"/archive/caf\xe9.wav")
    True
    """
    if uri.startswith("file://"):
        return os.path.abspath(os.fsdecode(unquote_to_bytes(uri[len("file://") :])))
    return os.path.abspath(uri)


def local_uri(path: str) -> str:
    r"""The URI ser-batch stores and logs for a local path: always valid UTF-8, reversible by ``local_path``.

    A path that is valid UTF-8 is its own URI. One that is not (a Latin-1 name from an SMB or
    NFS share, which Python holds as lone surrogates) becomes a ``file://`` URI in which each
    byte that is not UTF-8, and each ``%``, is percent-escaped; nothing else changes. Listed
    paths never start with ``file://``, so the two forms cannot collide.

    >>> local_uri("/archive/café.wav")
    '/archive/café.wav'
    >>> local_uri(os.fsdecode(b"/archive/50%_caf\xe9.wav"))
    'file:///archive/50%25_caf%E9.wav'
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file://" + "".join(_escape(char) for char in path)
    return path


def _escape(char: str) -> str:
    if "\udc80" <= char <= "\udcff":  # surrogateescape's stand-in for the byte 0x80-0xff
        return f"%{ord(char) - 0xDC00:02X}"
    return "%25" if char == "%" else char


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


_NO_SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
_RERUN = "re-run the same command: the part files already written are kept"


@contextmanager
def _writing(uri: str) -> Iterator[None]:
    """Turn a write's permanent failures into a one-line ``StorageError`` saying what to do.

    Permanent: access denied, no space left, quota exceeded, read-only. Any other error
    propagates as it is: it may be transient, and the task is retried.
    """
    try:
        yield
    except PermissionError as error:
        raise StorageError(
            f"{redact(uri)}: access denied ({_reason(error)}); give the run write access to DEST "
            f"(permissions, bucket policy, credentials) and {_RERUN}"
        ) from None
    except OSError as error:
        if error.errno not in _NO_SPACE:
            raise
        raise StorageError(f"{redact(uri)}: {_NO_SPACE[error.errno]}; free space there and {_RERUN}") from None


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

    Raises:
        StorageError: for a local path that is not valid UTF-8 (pyarrow, which reads and
            writes the tables, takes only UTF-8 paths).
    """
    options = dict(storage_options or {})
    if is_remote(uri):
        options.setdefault("use_listings_cache", False)
    else:
        path = local_path(uri)
        if local_uri(path) != path:
            raise StorageError(
                f"{uri}: a folder whose path is not valid UTF-8 cannot hold ser-batch's tables; use another"
            )
        uri = path
    fs, path = url_to_fs(uri, **options)
    return fs, path


JUNK_FOLDERS = frozenset({"__MACOSX"})
"""Folders an archive carries that hold no recordings (macOS zip resource forks)."""


def is_junk(name: str) -> bool:
    """Whether a file or folder name is archive junk: hidden (``.x``, AppleDouble ``._x.wav``) or ``__MACOSX``.

    >>> is_junk("._a.wav"), is_junk(".DS_Store"), is_junk("__MACOSX"), is_junk("a.wav")
    (True, True, True, False)
    """
    return name.startswith(".") or name in JUNK_FOLDERS


def extension_label(name: str) -> str:
    """A file name's extension as counted in run summaries: lower case, ``(none)`` without one.

    >>> extension_label("call.M4A"), extension_label("README")
    ('.m4a', '(none)')
    """
    return "".join(map(_escape, os.path.splitext(name)[1].lower())) or "(none)"  # bytes that are not UTF-8 escaped


def list_files(
    uri: str, *, storage_options: dict[str, Any] | None = None, passed_over: PassedOver | None = None
) -> Iterator[FileInfo]:
    """Yield every audio file under a directory or prefix, recursively, sorted by URI per folder.

    Local listing never follows directory symlinks (so symlink loops end) and skips
    entries it cannot stat. Hidden files and folders (AppleDouble ``._*`` companions
    included) and ``__MACOSX`` folders below ``uri`` are junk and passed over unseen. Files
    whose extension is not in ``AUDIO_EXTENSIONS`` (``.txt``, ``.pdf``, ...) are passed over and counted by ``extension_label`` in ``passed_over.extensions``, when given. A
    local subfolder that cannot be listed is passed over and named in ``passed_over.unreadable``
    (its files are unknown, not gone).

    Raises:
        StorageError: if ``uri`` does not exist, is not a directory, or cannot be listed (on S3,
            any failed page).
    """
    passed_over = PassedOver() if passed_over is None else passed_over
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
        yield from _walk_local(root, passed_over)
        return
    fs, path = filesystem(uri, storage_options=storage_options)
    with storage_errors(uri):
        if not fs.exists(path):
            raise FileNotFoundError(f"no such bucket or prefix: {uri}")
    protocol = uri.split("://", 1)[0]
    base = path.rstrip("/") + "/"
    for info in _remote_listing(fs, path, uri):
        key = str(info["name"])
        relative = key[len(base) :] if key.startswith(base) else key.rsplit("/", 1)[-1]
        if info.get("type") != "file" or key.endswith("/") or any(map(is_junk, relative.split("/"))):
            continue
        if os.path.splitext(key)[1].lower() not in AUDIO_EXTENSIONS:
            passed_over.extensions[extension_label(key.rsplit("/", 1)[-1])] += 1
        else:
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


def _walk_local(root: str, passed_over: PassedOver) -> Iterator[FileInfo]:
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        passed_over.unreadable.append(local_uri(root))  # nothing in it can be read either; what it holds is unknown
        return
    for entry in entries:
        if is_junk(entry.name):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_local(entry.path, passed_over)
                continue
            if os.path.splitext(entry.name)[1].lower() not in AUDIO_EXTENSIONS:
                if entry.is_file():
                    passed_over.extensions[extension_label(entry.name)] += 1
                continue
            info = entry.stat()  # follows file symlinks; a dangling one raises
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            yield FileInfo(local_uri(entry.path), info.st_size, f"{info.st_size}:{info.st_mtime_ns}", info.st_mtime)


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
    temporary file is removed on exit.

    Raises:
        StorageError: if the temporary folder has no space left (every file would fail alike).
        OSError: on read failures (maybe transient).
    """
    if not is_remote(uri):
        yield local_path(uri)
        return
    fs, path = filesystem(uri, storage_options=storage_options)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix="ser-batch-", suffix=os.path.splitext(path)[1])
        os.close(handle)
        fs.get_file(path, temporary)
    except OSError as error:
        if temporary is not None:
            os.remove(temporary)
        if error.errno not in _NO_SPACE:
            raise
        raise StorageError(
            f"{tempfile.gettempdir()}: {_NO_SPACE[error.errno]} for a temporary copy of {redact(uri)}; "
            f"free space there (or set TMPDIR on the workers) and {_RERUN}"
        ) from None
    try:
        yield temporary
    finally:
        os.remove(temporary)


def write_bytes_atomic(uri: str, data: bytes, *, storage_options: dict[str, Any] | None = None) -> None:
    """Write a file so readers see the old file or the new one, never a partial one.

    Local: a hidden temporary file in the same folder, fsynced, then ``os.replace``.
    S3: one PUT, which object stores apply atomically.

    Raises:
        StorageError: on access denied, no space left, quota exceeded or a read-only file
            system, naming ``uri`` and what to do.
        OSError: on any other failure (it may be transient: a retry may succeed).
    """
    if not is_remote(uri):
        path = local_path(uri)
        folder, name = os.path.split(path)
        temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        with _writing(uri):
            os.makedirs(folder, exist_ok=True)
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
    with _writing(uri):
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
    filesystem(uri, storage_options=storage_options)  # a local path that is not UTF-8 is refused here
    with storage_errors(uri):
        if not is_remote(uri):
            os.makedirs(local_path(uri), exist_ok=True)
        write_bytes_atomic(probe, b"", storage_options=storage_options)
        remove(probe, storage_options=storage_options)


# --- Conditional writes: the primitives of DEST's lease -------------------------------------------
# A version names one write of a file: its S3 ETag, or locally its inode, mtime and size
# (every local write below makes a new inode). Local compare-and-swap holds an flock on a
# sidecar file, which orders it against every other swap on the same file.


def create_exclusive(uri: str, data: bytes, *, storage_options: dict[str, Any] | None = None) -> str | None:
    """Write a new file, only if none exists at ``uri``; return its version, None when one existed.

    Local: ``O_CREAT | O_EXCL`` (atomic on local filesystems and NFSv3+). S3: a conditional
    PUT with ``If-None-Match: *`` (AWS S3 since 2024-08, MinIO, moto 5), one atomic request.
    """
    if not is_remote(uri):
        path = local_path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with _swap_lock(path):  # a reader never sees the file half-written
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            return _local_version(path)
    fs, path = filesystem(uri, storage_options=storage_options)
    try:
        response = fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return None
    return _etag(response) or _remote_version(fs, path)


def read_versioned(uri: str, *, storage_options: dict[str, Any] | None = None) -> tuple[bytes, str] | None:
    """A file's content and version, read together; None when it does not exist."""
    if not is_remote(uri):
        path = local_path(uri)
        with _swap_lock(path):
            try:
                with open(path, "rb") as handle:
                    return handle.read(), _version_of(os.fstat(handle.fileno()))
            except FileNotFoundError:
                return None
    fs, path = filesystem(uri, storage_options=storage_options)
    fs.invalidate_cache(path)
    try:
        with fs.open(path, "rb") as handle:  # s3fs reads with If-Match on the ETag it opened
            return handle.read(), str(handle.details.get("ETag", ""))
    except FileNotFoundError:
        return None


def replace_versioned(
    uri: str, data: bytes, version: str, *, storage_options: dict[str, Any] | None = None
) -> str | None:
    """Replace a file only if it is still the write ``version`` names; return the new version, None if not.

    S3: a conditional PUT with ``If-Match: <ETag>``, one atomic request. Local: under the
    sidecar lock, compare and ``os.replace`` a complete temporary file.
    """
    if not is_remote(uri):
        path = local_path(uri)
        with _swap_lock(path):
            try:
                if _local_version(path) != version:
                    return None
            except FileNotFoundError:
                return None
            write_bytes_atomic(uri, data)
            return _local_version(path)
    fs, path = filesystem(uri, storage_options=storage_options)
    try:
        response = fs.pipe_file(path, data, IfMatch=version)
    except (FileNotFoundError, OSError) as error:
        if isinstance(error, FileNotFoundError) or _precondition_failed(error):
            return None
        raise
    return _etag(response) or _remote_version(fs, path)


def remove_versioned(uri: str, version: str, *, storage_options: dict[str, Any] | None = None) -> bool:
    """Delete a file if it is still the write ``version`` names; return whether it was deleted.

    On S3 the check and the delete are two requests: a file replaced in between (by a run
    that took over an expired lease) is deleted too; the taker's heartbeat then finds it gone.
    """
    if not is_remote(uri):
        path = local_path(uri)
        with _swap_lock(path):
            try:
                if _local_version(path) != version:
                    return False
                os.remove(path)
            except FileNotFoundError:
                return False
            return True
    fs, path = filesystem(uri, storage_options=storage_options)
    fs.invalidate_cache(path)
    try:
        if str(fs.info(path).get("ETag", "")) != version:
            return False
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    return True


@contextmanager
def _swap_lock(path: str) -> Iterator[None]:
    import fcntl  # POSIX only, like the rest of the local DEST handling

    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    handle = os.open(os.path.join(folder, f".{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def _local_version(path: str) -> str:
    return _version_of(os.stat(path))


def _version_of(info: os.stat_result) -> str:
    return f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}"


def _etag(response: Any) -> str | None:
    etag = response.get("ETag") if isinstance(response, dict) else None
    return str(etag) if etag else None


def _remote_version(fs: fsspec.AbstractFileSystem, path: str) -> str:
    fs.invalidate_cache(path)
    return str(fs.info(path).get("ETag", ""))


def _precondition_failed(error: BaseException) -> bool:
    # s3fs turns a 412 (If-Match) into OSError(EINVAL) and keeps botocore's error as the cause;
    # AWS answers 409 ConditionalRequestConflict to a conditional write racing another.
    cause: BaseException | None = error
    while cause is not None:
        code = str(getattr(cause, "response", {}).get("Error", {}).get("Code", ""))
        if code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
            return True
        cause = cause.__cause__ or cause.__context__
    return False
