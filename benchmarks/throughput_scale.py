"""Scoring speed, long-recording memory, catalogue scale and memory flatness; prints one markdown table.

Usage: python benchmarks/throughput_scale.py [--rows scoring,hour,s3catalogue,flatness] [--model MODEL_DIR]
                                             [--data DIR] [--work DIR] [--s3-keys 100000] [--flatness 1000,5000,20000]

Rows (one function each):

- ``scoring``: 8 kHz mono calls per core. The held-out speakers' clips of
  ``benchmarks/scoring.py`` (RAVDESS Actor_15/16, EmoDB 03/08), at 8 kHz and -20 dBFS, taking
  turns with 1-3 s pauses over -70 dBFS line noise, mixed to one channel: 15 calls, ~19 min.
  ``score.score_files`` in this process on one core (one BLAS thread), after a warm-up, with
  the model's default ``stats8k`` set: decode, VAD, windows, features, predict. The baseline
  is the same library featurizing each window on its own (``feature_vector``) and calling the
  model once per recording, as before shared frames; both are run alternately, and their
  predictions compared. "x real time" is audio seconds per CPU second of this process.
- ``hour``: a 1-hour 8 kHz mono WAV (the held-out clips repeated over an hour, ~40% speech),
  scored by ``score.read_recording_windows`` in a fresh process: peak RSS growth over the
  process after warm-up, streamed (the default) and with the channel decoded whole.
- ``s3catalogue``: ``--s3-keys`` tiny keys on a moto S3 server (its own process, real HTTP,
  seeded in-process so seeding takes seconds), then ``storage.list_files`` + ``plan_shards``
  in a fresh process: wall time, that process's CPU time and peak RSS growth, and the moto
  server's CPU time over the same interval (moto re-sorts the whole bucket for every page of
  1,000 keys, so its time grows with the square of the bucket size; S3 does not).
- ``flatness``: ``python -m flows.cli featurize`` (stats8k, 2 workers, a LocalCluster)
  on 1,000 to 20,000 tiny generated WAVs (0.25 s each): peak RSS summed over every process of the run.

The machine is shared with other work: wall-clock rows are noisy, CPU-second rows less so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "ser-batch" / "numba"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import psutil
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from process_memory import run_measured  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ser-dev"
RATE = 8000
Row = tuple[str, str, str, str]


def _python(code: str, *args: str, timeout_s: float = 1800) -> dict:
    """Run ``code`` in a fresh interpreter (this repo first on the path); it prints one JSON line last."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=timeout_s, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- scoring --------------------------------------------------------------------------------------


def mono_calls(data: Path, folder: Path, per_call: int = 16) -> list[Path]:
    """The held-out clips as mono 8 kHz calls (benchmarks/scoring.py's stereo calls, mixed down)."""
    import scoring

    from ser_batch.demo import conversation
    from ser_batch.storage.audio import read_audio

    rows = [r for r in scoring.read_manifest(data) if (r["corpus"], r["speaker"]) in scoring.HELD_OUT]
    rng = np.random.default_rng(20261124)
    order = rng.permutation(len(rows))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, len(rows), per_call)):
        clips = [
            (read_audio(str(data / rows[i]["relpath"]), sample_rate=RATE).waveform, None)
            for i in order[start : start + per_call]
        ]
        call, _ = conversation(clips, rng, sample_rate=RATE)
        paths.append(folder / f"call-{index:03d}.wav")
        soundfile.write(paths[-1], np.clip(call.sum(axis=1), -1, 1), RATE, subtype="PCM_16")
    return paths


def stats8k_model(data: Path, work: Path, model: Path | None) -> Path:
    """``--model``, or an mlp-ensemble on stats8k trained on every other ser-dev speaker (cached under work)."""
    if model is not None:
        return model
    import scoring

    from ser_batch.config import SEED_CLASSES

    model_dir = work / "model-stats8k-mlp-ensemble"
    if not (model_dir / "metadata.json").exists():
        training = [
            r
            for r in scoring.read_manifest(data)
            if (r["corpus"], r["speaker"]) not in scoring.HELD_OUT and r["emotion"] in SEED_CLASSES
        ]
        scoring.train_model(training, data, model_dir, feature_set="stats8k", model="mlp-ensemble", workers=2)
    return model_dir


def row_scoring(data: Path, work: Path, model: Path | None, rows: list[Row], repeats: int = 5) -> None:
    from threadpoolctl import threadpool_limits

    from ser_batch import storage
    from ser_batch.config import ScoreConfig
    from ser_batch.features import windows
    from ser_batch.jobs import score

    folder = work / "mono-calls"
    shutil.rmtree(folder, ignore_errors=True)
    mono_calls(data, folder)
    identity = score.read_model_identity(str(stats8k_model(data, work, model)))
    artifact, _ = score.load_model_once(identity)
    files = list(storage.list_files(str(folder)))
    config = ScoreConfig()
    shared_frames = windows.supports_shared_frames

    def run(baseline: bool) -> tuple[float, float, score.Scores | list[score.Scores]]:
        windows.supports_shared_frames = (lambda _config: False) if baseline else shared_frames  # type: ignore[assignment]
        started, cpu = time.perf_counter(), time.process_time()
        if baseline:  # before: one model call per recording, each window featurized on its own
            result: score.Scores | list[score.Scores] = [score.score_files([f], artifact, config) for f in files]
        else:
            result = score.score_files(files, artifact, config)
        return time.perf_counter() - started, time.process_time() - cpu, result

    with threadpool_limits(limits=1):
        run(False), run(True)  # warm-up: numba, TensorFlow, page cache
        timings: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        outputs: dict[bool, score.Scores | list[score.Scores]] = {}
        for _ in range(repeats):
            for baseline in (True, False):
                wall, cpu, outputs[baseline] = run(baseline)
                timings[baseline].append((wall, cpu))
    windows.supports_shared_frames = shared_frames  # type: ignore[assignment]
    new = outputs[False]
    assert isinstance(new, score.Scores)
    audio_s = new.audio_s
    old_probs = np.concatenate([_probabilities(s) for s in outputs[True]])  # type: ignore[union-attr]
    same = bool(np.allclose(_probabilities(new), old_probs, rtol=1e-4, atol=1e-5))
    best = {b: min(cpu for _, cpu in t) for b, t in timings.items()}
    median = {b: float(np.median([cpu for _, cpu in t])) for b, t in timings.items()}
    best_wall = {b: min(wall for wall, _ in t) for b, t in timings.items()}
    rows.append(
        (
            f"scoring 8 kHz mono calls, per core ({len(files)} calls, {audio_s / 60:.1f} min, {new.speech_s / audio_s:.0%} speech, "
            f"{new.tables['predictions'].num_rows} windows; {repeats} alternating runs)",
            f"best {audio_s / best[False]:.0f}x real time per CPU-s, median {audio_s / median[False]:.0f}x "
            f"(best per wall-s {audio_s / best_wall[False]:.0f}x); before: best {audio_s / best[True]:.0f}x, median "
            f"{audio_s / median[True]:.0f}x ({median[True] / median[False]:.2f}x faster); probabilities equal: {same}",
            ">= 1,000x",
            "yes" if audio_s / median[False] >= 1000 else "no",
        )
    )


def _probabilities(scores: object) -> np.ndarray:
    table = scores.tables["predictions"]  # type: ignore[attr-defined]
    return np.stack(
        [
            np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)
            for name in table.column_names
            if name.startswith("prob_") and table.column(name).null_count == 0
        ],
        axis=1,
    )


# --- one hour ---------------------------------------------------------------------------------------

_HOUR_CHILD = """
import json, resource, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from ser_batch import storage
from ser_batch.jobs import score
from ser_batch.config import ScoreConfig, feature_config
path, whole = sys.argv[1], sys.argv[2] == "whole"
if whole:
    score.WHOLE_CHANNEL_SAMPLES = 1 << 40
info = next(f for f in storage.list_files(str(__import__("pathlib").Path(path).parent)) if f.uri == path)
warm = next(f for f in storage.list_files(str(__import__("pathlib").Path(path).parent)) if f.uri.endswith("warm-up.wav"))
with threadpool_limits(limits=1):
    score.read_recording_windows(warm, ScoreConfig(), feature_config("stats8k"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu = time.perf_counter(), time.process_time()
    channels, _, duration_s = score.read_recording_windows(info, ScoreConfig(), feature_config("stats8k"))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown_kib": after - before, "before_kib": before, "s": elapsed, "cpu_s": cpu, "duration_s": duration_s,
                  "windows": len(channels[0].windows)}))
"""


def hour_recording(data: Path, path: Path) -> None:
    """About an hour of 8 kHz mono speech and pauses: the held-out clips in calls, repeated, written a call at a time."""
    calls = sorted((path.parent / "hour-parts").glob("*.wav"))
    if not calls:
        calls = mono_calls(data, path.parent / "hour-parts")
    written = 0
    with soundfile.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as handle:
        while written < 3600 * RATE:
            for call in calls:
                samples = soundfile.read(call, dtype="float32")[0][: 3600 * RATE - written]
                handle.write(samples)
                written += samples.size
                if written >= 3600 * RATE:
                    break
    soundfile.write(path.parent / "warm-up.wav", soundfile.read(calls[0], dtype="float32")[0], RATE, subtype="PCM_16")


def row_hour(data: Path, work: Path, rows: list[Row]) -> None:
    folder = work / "hour"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hour.wav"
    if not path.exists():
        hour_recording(data, path)
    streamed = _python(_HOUR_CHILD, str(path), "streamed")
    whole = _python(_HOUR_CHILD, str(path), "whole")
    channel_mib = 3600 * RATE * 4 / 2**20
    rows.append(
        (
            f"a 1-hour 8 kHz mono recording ({streamed['windows']} windows), peak RSS growth while scoring it",
            f"streamed: +{streamed['grown_kib'] / 1024:.0f} MiB, {streamed['cpu_s']:.1f} CPU-s; channel decoded whole: "
            f"+{whole['grown_kib'] / 1024:.0f} MiB, {whole['cpu_s']:.1f} CPU-s (the channel alone is {channel_mib:.0f} MiB)",
            "bounded: decode buffer + a window's worth",
            "yes" if streamed["grown_kib"] / 1024 < channel_mib / 3 else "no",
        )
    )


# --- S3 catalogue on moto ---------------------------------------------------------------------------------

_MOTO_SERVER = """
import sys, time
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
port, n_keys = int(sys.argv[1]), int(sys.argv[2])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
backend.create_bucket("calls", "us-east-1")
for i in range(n_keys):
    backend.put_object("calls", f"archive/2026/11/{i // 4000 + 1:02d}/{i // 1000:03d}/call-{i:06d}.wav", b"x")
backend.put_object("calls", "archive/README.txt", b"not audio")
print("ready", flush=True)
time.sleep(3600)
"""

_CATALOGUE_CHILD = """
import json, resource, sys, time
from ser_batch import storage
from ser_batch.config import feature_config
from ser_batch.shards import DoneIndex, plan_shards
endpoint = sys.argv[1]
options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench", "client_kwargs": {"region_name": "us-east-1"}}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started, cpu = time.perf_counter(), time.process_time()
plan = plan_shards(storage.list_files("s3://calls/archive", storage_options=options), DoneIndex({}),
                   fingerprint=feature_config("stats8k").fingerprint(), shard_size=500)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": elapsed, "cpu_s": cpu, "grown_kib": after - before, "seen": plan.n_seen, "shards": len(plan.shards)}))
"""


def row_s3_catalogue(n_keys: int, rows: list[Row]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SERVER, str(port), str(n_keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        moto = psutil.Process(server.pid)
        moto_cpu = sum(moto.cpu_times()[:2])
        result = _python(_CATALOGUE_CHILD, f"http://127.0.0.1:{port}")
        moto_cpu = sum(moto.cpu_times()[:2]) - moto_cpu
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows.append(
        (
            f"catalogue + plan {result['seen']:,} S3 keys on moto (HTTP), {result['shards']} shards",
            f"{result['s']:.1f} s wall, of which the moto server {moto_cpu:.1f} CPU-s; ser-batch {result['cpu_s']:.1f} CPU-s, "
            f"+{result['grown_kib'] / 1024:.0f} MiB peak RSS",
            "< 60 s, < 1 GiB",
            f"{'yes' if result['s'] < 60 else 'no'} (time), {'yes' if result['grown_kib'] < 2**20 else 'no'} (memory)",
        )
    )


# --- memory flatness ---------------------------------------------------------------------------------------


def tiny_archive(folder: Path, n_files: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(RATE // 4) / RATE
    for i in range(n_files):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(t.size)
        soundfile.write(sub / f"clip-{i:06d}.wav", tone.astype(np.float32), RATE, subtype="PCM_16")


def cli_featurize(source: Path, dest: Path) -> tuple[float, dict, int]:
    wall, summary, tree = run_measured(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "featurize",
            str(source),
            str(dest),
            "--feature-set",
            "stats8k",
            "--n-workers",
            "2",
            "--settle-s",
            "0",  # the archive was written a moment ago
            "--json",
        ],
        pythonpath=str(ROOT),
    )
    return wall, summary, tree.peak


def row_flatness(sizes: list[int], rows: list[Row]) -> None:
    peaks = {}
    with tempfile.TemporaryDirectory() as root:
        for n_files in sizes:
            source, dest = Path(root) / f"audio-{n_files}", Path(root) / f"out-{n_files}"
            tiny_archive(source, n_files)
            wall, summary, peak = cli_featurize(source, dest)
            peaks[n_files] = (peak, wall, summary["featurized"])
            shutil.rmtree(source)
            shutil.rmtree(dest)
    low, high = peaks[sizes[0]][0], peaks[sizes[-1]][0]
    growth = high / low - 1
    rows.append(
        (
            f"peak memory of the whole featurize run (all processes), {sizes[0]:,} -> {sizes[-1]:,} files (stats8k, 2 workers)",
            "; ".join(
                f"{n:,} files: {p / 2**30:.2f} GiB ({w:.0f} s, {f:,} featurized)" for n, (p, w, f) in peaks.items()
            )
            + f"; growth {growth:+.0%}",
            "< 3 GiB, flat",
            f"{'yes' if high < 3 * 2**30 else 'no'} (< 3 GiB), {'yes' if growth < 0.1 else 'no'} (flat within 10%)",
        )
    )


def machine() -> str:
    load = os.getloadavg()
    return (
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, python {platform.python_version()}; "
        f"load average {load[0]:.1f} (shared with other work: wall-clock figures are noisy)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="scoring,hour,s3catalogue,flatness")
    parser.add_argument(
        "--model", type=Path, help="a stats8k model directory (default: train one on the other ser-dev speakers)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ser-batch-bench-scale")
    parser.add_argument("--s3-keys", type=int, default=100_000)
    parser.add_argument("--flatness", default="1000,5000,20000", help="archive sizes of the flatness row")
    args = parser.parse_args()
    wanted = args.rows.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for name in wanted:
        started = time.perf_counter()
        if name == "scoring":
            row_scoring(args.data, args.work, args.model, rows)
        elif name == "hour":
            row_hour(args.data, args.work, rows)
        elif name == "s3catalogue":
            row_s3_catalogue(args.s3_keys, rows)
        elif name == "flatness":
            row_flatness([int(n) for n in args.flatness.split(",")], rows)
        else:
            parser.error(f"unknown row {name!r}")
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(machine())
    print("| what | measured | goal | met? |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
