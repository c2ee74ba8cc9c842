"""Scoring plan cost against the length of DEST's history; prints one markdown table.

Usage: python benchmarks/history.py [--nights 30,365] [--parts-per-night 4] [--recordings 7300]
                                    [--where local,moto] [--work DIR]

One archive of ``--recordings`` calls (tiny files: the plan lists them, it never reads them),
all scored already, is spread over ``--nights`` nights of scoring history with
``--parts-per-night`` shards a night: DEST holds a calls and a predictions part per shard
(two channels and twenty segments per recording), as the nightly writes them, and the
model's index (``ser_batch.storage.score_index``). So the archive is the same for every
row and only the history's length differs. A night's plan then has nothing to do, and
costs:

- ``parts`` (before): what the plan did until the index: list SOURCE, remove orphan
  predictions (a listing of both tables) and read the key columns of every calls and errors
  part (``tables.read_scored``), then ``plan_shards``;
- ``index`` (now): ``jobs.plan_scoring``: list SOURCE, read the model's index (one request),
  look for notes of runs that died (one listing of a folder that is normally empty).

Each cell runs in a fresh process (warm-up, then three timed plans): median wall time, the
process's peak RSS growth over its imports and a first Parquet read (first plan included), and
the peak of Python objects (tracemalloc) during one more plan. ``moto`` is moto's S3 server in its own process
over real HTTP (seeded in-process), ``local`` a local folder. The machine is shared with
other work: wall times are noisy, compare within a row.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from ser_batch import schema, storage  # noqa: E402
from ser_batch.config import feature_config  # noqa: E402
from ser_batch.shards import DoneIndex, FileInfo, shard_id  # noqa: E402
from ser_batch.storage import score_index  # noqa: E402

STATS = feature_config("stats8k")
BUCKET = "calls"
_AN_HOUR_AGO = time.time() - 3600


def model_dir(folder: Path) -> Path:
    """A model directory as the plan reads one: metadata and model bytes (never loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format_version": schema.FORMAT_VERSION,
        "model": "mlp-ensemble",
        "classes": ["angry", "happy", "neutral", "sad"],
        "feature_set": STATS.name,
        "fingerprint": STATS.fingerprint(),
        "n_features": 3,
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "model.keras").write_bytes(b"weights of the benchmark model")
    return folder


def call_body(index: int) -> bytes:
    return f"RIFF call {index:07d}".encode()


def archive(folder: Path, n: int) -> list[FileInfo]:
    """``n`` tiny recordings in day folders under ``folder``, as local files; their listing."""
    for index in range(n):
        path = folder / f"2026/{index % 12 + 1:02d}/{index % 28 + 1:02d}/call-{index:07d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(call_body(index))
        os.utime(path, (_AN_HOUR_AGO, _AN_HOUR_AGO))
    return list(storage.list_files(str(folder)))


def s3_listing(local: list[FileInfo], folder: Path) -> list[FileInfo]:
    """The same recordings as moto lists them under ``s3://calls/archive`` (ETag: MD5 of the body)."""
    infos = []
    for info in local:
        body = Path(info.uri).read_bytes()
        key = "archive/" + Path(info.uri).relative_to(folder).as_posix()
        infos.append(FileInfo(f"s3://{BUCKET}/{key}", len(body), f"{len(body)}:{hashlib.md5(body).hexdigest()}"))  # noqa: S324
    return sorted(infos, key=lambda info: info.uri)


def _rows(files: list[FileInfo], table: str, model_id: str, per_file: int, day: str) -> pa.Table:
    names = schema.SCORE_SCHEMAS[table].names
    stamp = {"model_id": model_id, "scored_at": time.time(), "emotion": "neutral", "confidence": 0.5,
             "run_date": datetime.date.fromisoformat(day), "call_date": day}  # fmt: skip
    columns: dict[str, list[object]] = {name: [] for name in names}
    for info in files:
        for index in range(per_file):
            row = {
                **stamp,
                "path": info.uri,
                "content_key": info.content_key,
                "channel": index % 2,
                "n_channels": 2,
                "sample_rate": 8000,
                "duration_s": 60.0,
                "speech_s": 30.0,
                "n_segments": 10,
                "start_s": 1.5 * index,
                "end_s": 1.5 * index + 3.0,
                "share_neutral": 1.0,
                "dominant_emotion": "neutral",
            }
            for name in names:
                columns[name].append(row.get(name))
    columns["scored_at"] = [int(value * 1000) for value in columns["scored_at"]]  # type: ignore[arg-type]
    return pa.table(columns).cast(schema.SCORE_SCHEMAS[table])


def history(dest: str, files: list[FileInfo], model_id: str, *, nights: int, per_night: int) -> int:
    """Write ``nights`` nights of calls and predictions parts covering ``files`` and the model's index; return parts."""
    n_shards = nights * per_night
    size, extra = divmod(len(files), n_shards)
    scored: dict[str, list[tuple[str, str]]] = {}
    start = 0
    empty = pa.Table.from_pylist([], schema=schema.SCORE_SCHEMAS["errors"])
    for index in range(n_shards):
        chunk = files[start : start + size + (index < extra)]
        start += len(chunk)
        day = time.strftime("%Y-%m-%d", time.gmtime(1764547200 + 86400 * (index // per_night)))  # a night's calls
        part = shard_id(chunk, model_id)
        tables = {
            "errors": empty,
            "predictions": _rows(chunk, "predictions", model_id, 20, day),
            "calls": _rows(chunk, "calls", model_id, 2, day),
        }
        storage.write_scores(tables, dest, part, call_dates=[day])
        for info in chunk:
            scored.setdefault(info.uri, []).append((info.content_key, score_index.score_part_name(day, part)))
    score_index.write_score_index(dest, model_id, DoneIndex(scored))
    return 2 * n_shards


_MOTO = """
import sys, time
from pathlib import Path
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
port, source, staged = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
backend.create_bucket("calls", "us-east-1")
for root, prefix in ((source, "archive"), (staged, "")):
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            backend.put_object("calls", "/".join(filter(None, [prefix, path.relative_to(root).as_posix()])), path.read_bytes())
print("ready", flush=True)
time.sleep(7200)
"""

_CELL = """
import json, resource, statistics, sys, time
from ser_batch import storage
from ser_batch.jobs.plan import plan_scoring
from ser_batch.shards import plan_shards
from ser_batch.storage import tables
from ser_batch.storage.model_dir import read_model_identity
mode, source, dest, model_dir, endpoint = sys.argv[1:6]
options = None if endpoint == "-" else {
    "endpoint_url": endpoint, "key": "bench", "secret": "bench", "client_kwargs": {"region_name": "us-east-1"}}

def by_parts():  # the plan before the index: every part of DEST read
    identity = read_model_identity(model_dir, storage_options=options)
    files = storage.list_files(source, storage_options=options)
    storage.check_writable(dest, storage_options=options)
    tables.remove_orphan_predictions(dest, storage_options=options)
    done = tables.read_scored(dest, identity.model_id, storage_options=options)
    return plan_shards(files, done, fingerprint=identity.model_id, shard_size=50)

def by_index():
    return plan_scoring(source, dest, model_dir, shard_size=50, storage_options=options).plan

import io, pyarrow as pa, pyarrow.dataset, pyarrow.parquet as pq, s3fs  # noqa: E401,F401
buffer = io.BytesIO()  # pyarrow's first Parquet read sets up ~20 MiB of pools: not the plan's memory
pq.write_table(pa.table({"x": ["y"]}), buffer, compression="zstd")
pq.read_table(pa.BufferReader(buffer.getvalue()))
plan = by_index if mode == "index" else by_parts
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = plan()  # warm-up
times = []
for _ in range(3):
    started = time.perf_counter()
    result = plan()
    times.append(time.perf_counter() - started)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
import tracemalloc
tracemalloc.start()
plan()
python_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"s": statistics.median(times), "grown_kib": grown, "python_kib": python_peak // 1024,
                  "seen": result.n_seen, "done": result.n_done, "pending": result.n_pending}))
"""


def cell(mode: str, source: str, dest: str, model: Path, endpoint: str | None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [mode, source, dest, str(model), endpoint or "-"]
    proc = subprocess.run([sys.executable, "-c", _CELL, *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"{mode} {dest} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["pending"] == 0 and result["done"] == result["seen"], result  # nothing to do: a flat night
    return result


def _cell(result: dict[str, float]) -> str:
    return (
        f"{result['s']:.2f} s, RSS +{result['grown_kib'] / 1024:.0f} MiB, "
        f"Python objects {result['python_kib'] / 1024:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", default="30,365")
    parser.add_argument("--parts-per-night", type=int, default=4)
    parser.add_argument("--recordings", type=int, default=7300)
    parser.add_argument("--where", default="local,moto")
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="ser-batch-history-")))
    args = parser.parse_args()
    nights = [int(n) for n in args.nights.split(",")]
    places = args.where.split(",")
    work: Path = args.work
    model = model_dir(work / "model")
    model_id = storage.read_model_identity(str(model)).model_id
    started = time.perf_counter()
    local_files = archive(work / "archive", args.recordings)
    s3_files = s3_listing(local_files, work / "archive")
    n_parts = {}
    for n in nights:
        if "local" in places:
            n_parts[n] = history(
                str(work / f"local-{n}"), local_files, model_id, nights=n, per_night=args.parts_per_night
            )
        if "moto" in places:
            staged = work / "staged" / f"scores-{n}"
            n_parts[n] = history(str(staged), s3_files, model_id, nights=n, per_night=args.parts_per_night)
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    rows = []
    if "local" in places:
        for n in nights:
            dest = str(work / f"local-{n}")
            rows.append(("local", n, cell("parts", str(work / "archive"), dest, model, None),
                         cell("index", str(work / "archive"), dest, model, None)))  # fmt: skip
    if "moto" in places:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-c", _MOTO, str(port), str(work / "archive"), str(work / "staged")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            endpoint = f"http://127.0.0.1:{port}"
            for n in nights:
                dest, source = f"s3://{BUCKET}/scores-{n}", f"s3://{BUCKET}/archive"
                rows.append(("moto", n, cell("parts", source, dest, model, endpoint),
                             cell("index", source, dest, model, endpoint)))  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)

    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"load average {load[0]:.1f}; {args.recordings:,} recordings, {args.parts_per_night} shards a night"
    )
    print("| DEST | nights of history | part files | plan reading every part (before) | plan reading the index (now) |")
    print("|---|---|---|---|---|")
    for where, n, parts, index in rows:
        print(f"| {where} | {n} | {n_parts[n]:,} | {_cell(parts)} | {_cell(index)} |")


if __name__ == "__main__":
    main()
