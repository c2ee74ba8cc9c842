"""Scoring throughput and segment accuracy on stereo 8 kHz "calls" built from ser-dev clips; prints one table.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/scoring.py [--model MODEL_DIR | --feature-set seed268
                               --architecture seed-mlp] [--data DIR] [--work DIR] [--repeat 12] [--clips-per-call 16]

Calls: the clips of held-out speakers (RAVDESS Actor_15 and Actor_16, EmoDB 03 and 08) whose
emotion the model knows, decoded and resampled to 8 kHz, each scaled to -20 dBFS RMS (the
VAD's levels are absolute: see ser_batch.scoring.segments), taking turns on the two channels of a
call with 1-3 s silences and -70 dBFS line noise (``ser_batch.demo.conversation``). Every
held-out clip is in exactly one call.

Model: ``--model`` if given (its accuracy here is only honest if it never saw these
speakers); otherwise ``--feature-set`` + ``--architecture`` (default seed268 + seed-mlp, the
recipe) trained with TrainConfig's other defaults (split "none", the six recipe classes) on
every other ser-dev clip, and cached under ``--work``.

Throughput, all on the same calls, each recording counted once whatever its channels:
- library, 1 core: ``score.score_files`` in this process, no Prefect or Dask, after a warm-up;
- flow, 1 and 2 workers: ``flows.score.score`` on a LocalCluster over ``--repeat`` copies of the
  calls (different paths, so every copy is scored), into an empty DEST; "wall" includes the
  flow and cluster start-up, "scoring" spans the first shard's start to the last shard's end;
  both include loading TensorFlow and the model, and warming numba up, once per worker;
- "min/CPU-s" divides by the CPU time the scoring processes used, which other load on a
  shared machine does not inflate (wall-clock rows do); "warm" leaves out each worker's first
  shard (TensorFlow import, model load, numba warm-up).

Accuracy: each segment's truth is the clip it overlaps most on its channel; "clip vote" is the
majority of a clip's segments; for reference, the same model on the same clips whole, at their
original rate (the training protocol) and at 8 kHz.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "ser-batch" / "numba"))  # as the CLI sets it
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import soundfile
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_batch import shards, storage  # noqa: E402
from ser_batch.config import SEED_CLASSES, ScoreConfig, TrainConfig, feature_config  # noqa: E402
from ser_batch.demo import Turn, conversation  # noqa: E402
from ser_batch.features.extract import feature_vector  # noqa: E402
from ser_batch.features.resample import resample  # noqa: E402
from ser_batch.jobs import score
from ser_batch.jobs.featurize import featurize_files
from ser_batch.model.fit import fit
from ser_batch.storage.audio import read_audio
from ser_batch.storage.model_dir import load_artifact, save_artifact

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"
HELD_OUT = {("ravdess", "Actor_15"), ("ravdess", "Actor_16"), ("emodb", "03"), ("emodb", "08")}
RATE = 8000


def read_manifest(data: Path) -> list[dict[str, str]]:
    with open(data / "MANIFEST.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def featurize_chunk(task: tuple[str, list[str]]) -> pa.Table:
    feature_set, paths = task
    with threadpool_limits(limits=1):
        table, _ = featurize_files([shards.FileInfo(p, 0, "0:0") for p in paths], feature_config(feature_set))
    return table


def train_model(
    rows: list[dict[str, str]], data: Path, model_dir: Path, *, feature_set: str, model: str, workers: int
) -> None:
    paths = [str(data / row["relpath"]) for row in rows]
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        tables = list(pool.map(featurize_chunk, [(feature_set, paths[i : i + 100]) for i in range(0, len(paths), 100)]))
    table = pa.concat_tables(tables)
    print(f"featurized {table.num_rows} training clips in {time.perf_counter() - started:.0f} s", flush=True)
    config = TrainConfig(model=model, split="none", classes=SEED_CLASSES)  # type: ignore[arg-type]
    save_artifact(str(model_dir), fit(table, config))
    print(f"trained {model} on {feature_set} in {time.perf_counter() - started:.0f} s: {model_dir}", flush=True)


def build_calls(rows: list[dict[str, str]], data: Path, folder: Path, per_call: int) -> dict[str, list[Turn]]:
    rng = np.random.default_rng(20261124)
    order = rng.permutation(len(rows))
    truth = {}
    for index, start in enumerate(range(0, len(rows), per_call)):
        chosen = [rows[i] for i in order[start : start + per_call]]
        clips = [(read_audio(str(data / row["relpath"]), sample_rate=RATE).waveform, row["emotion"]) for row in chosen]
        waveform, turns = conversation(clips, rng, sample_rate=RATE)
        path = folder / f"call-{index:03d}.flac"
        soundfile.write(path, waveform, RATE)
        truth[str(path)] = [
            Turn(t.channel, t.start_s, t.end_s, f"{t.label}|{row['relpath']}")
            for t, row in zip(turns, chosen, strict=True)
        ]
    return truth


def library_throughput(folder: Path, model_dir: Path) -> tuple[float, float, float]:
    identity = score.read_model_identity(str(model_dir))
    model, _ = score.load_model_once(identity)
    files = list(storage.list_files(str(folder)))
    with threadpool_limits(limits=1):  # as score_shard does on a worker: one BLAS thread per process
        score.score_files(files[:1], model, ScoreConfig())  # warm-up: numba, TensorFlow
        started, cpu = time.perf_counter(), time.process_time()
        scores = score.score_files(files, model, ScoreConfig())
    return scores.audio_s / 60, time.perf_counter() - started, time.process_time() - cpu


def flow_throughput(folder: Path, work: Path, model_dir: Path, n_workers: int, repeat: int) -> dict[str, float]:
    from flows.score import score as score_flow

    source = work / f"copies-{n_workers}"
    shutil.rmtree(source, ignore_errors=True)
    for copy in range(repeat):
        shutil.copytree(folder, source / f"copy-{copy}")
    dest = work / f"dest-{n_workers}"
    shutil.rmtree(dest, ignore_errors=True)
    n_files = len(list(source.rglob("*.flac")))
    summary = score_flow(
        str(source),
        str(dest),
        str(model_dir),
        n_workers=n_workers,
        shard_size=max(1, n_files // (4 * n_workers)),
        run_date="2026-11-24",
    )
    return summary


def segment_accuracy(dest: Path, truth: dict[str, list[Turn]]) -> tuple[float, float, int, int]:
    table = ds.dataset(dest / "predictions", format="parquet", partitioning="hive").to_table(
        columns=["path", "channel", "start_s", "end_s", "emotion"]
    )
    votes: dict[str, Counter[str]] = {}
    correct = n_segments = 0
    for path, channel, start, end, emotion in zip(*(table.column(i).to_pylist() for i in range(5)), strict=True):
        if path not in truth:
            continue  # another copy of the same calls
        n_segments += 1
        candidates = [t for t in truth[path] if t.channel == channel]
        best = max(candidates, key=lambda t: min(end, t.end_s) - max(start, t.start_s))
        label = best.label.split("|")[0]  # type: ignore[union-attr]
        correct += emotion == label
        votes.setdefault(best.label, Counter())[emotion] += 1  # type: ignore[arg-type]
    clip_correct = sum(counter.most_common(1)[0][0] == key.split("|")[0] for key, counter in votes.items())
    n_clips = sum(len(turns) for turns in truth.values())
    return correct / max(n_segments, 1), clip_correct / n_clips, n_segments, n_clips


def whole_clip_accuracy(rows: list[dict[str, str]], data: Path, model_dir: Path) -> tuple[float, float]:
    model = load_artifact(str(model_dir))
    config = feature_config(model.feature_set)
    results = []
    for rate in (None, RATE):
        matrix = []
        for row in rows:
            decoded = read_audio(str(data / row["relpath"]), sample_rate=rate or config.sample_rate)
            waveform = resample(
                decoded.waveform, decoded.sample_rate, config.sample_rate, quality=config.resample_quality
            )
            matrix.append(feature_vector(waveform, config.sample_rate, config))
        predicted = np.array(model.classes)[score.predicted_probabilities(model, np.stack(matrix)).argmax(axis=1)]
        results.append(float(np.mean(predicted == np.array([row["emotion"] for row in rows]))))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model directory (default: train one on the other ser-dev speakers)")
    parser.add_argument("--feature-set", default="seed268", help="feature set of the model trained without --model")
    parser.add_argument(
        "--architecture", default="seed-mlp", help="TrainConfig.model of the model trained without --model"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ser-batch-bench-scoring"))
    parser.add_argument("--repeat", type=int, default=12, help="copies of the calls scored by the flows")
    parser.add_argument("--clips-per-call", type=int, default=16)
    args = parser.parse_args()
    if not (args.data / "MANIFEST.csv").exists():
        sys.exit(f"no ser-dev data under {args.data}")
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.data)
    model_dir = args.model or args.work / f"model-{args.feature_set}-{args.architecture}"
    if args.model is None and not (model_dir / "metadata.json").exists():
        training = [r for r in manifest if (r["corpus"], r["speaker"]) not in HELD_OUT and r["emotion"] in SEED_CLASSES]
        train_model(training, args.data, model_dir, feature_set=args.feature_set, model=args.architecture, workers=2)
    identity = score.read_model_identity(str(model_dir))
    held_out = [r for r in manifest if (r["corpus"], r["speaker"]) in HELD_OUT and r["emotion"] in identity.classes]
    calls = args.work / "calls"
    shutil.rmtree(calls, ignore_errors=True)
    calls.mkdir(parents=True)
    truth = build_calls(held_out, args.data, calls, args.clips_per_call)
    load = os.getloadavg()[0]

    from flows.api import prefect_api

    lib_min, lib_s, lib_cpu_s = library_throughput(calls, model_dir)
    with prefect_api():
        flows = {n: flow_throughput(calls, args.work, model_dir, n, args.repeat) for n in (1, 2)}
    seg_acc, clip_acc, n_segments, n_clips = segment_accuracy(
        args.work / "dest-1", {str(args.work / "copies-1" / "copy-0" / Path(p).name): t for p, t in truth.items()}
    )
    whole, whole_8k = whole_clip_accuracy(held_out, args.data, model_dir)

    print(f"\nmodel {identity.model_id} ({model_dir}); classes {', '.join(identity.classes)}")
    print(
        f"{len(truth)} stereo 8 kHz calls, {lib_min:.1f} min of audio, {n_clips} held-out clips "
        f"({', '.join(sorted(f'{c} {s}' for c, s in HELD_OUT))}); {os.cpu_count()} cores, load {load:.1f} at start\n"
    )
    print(
        f"| {'throughput (min of audio per s)':<44} | {'audio min':>9} | {'seconds':>8} | {'min/s':>7} | "
        f"{'min/s per core':>14} | {'min/CPU-s':>9} | {'warm min/CPU-s':>14} |"
    )
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 10}|{'-' * 9}|{'-' * 16}|{'-' * 11}|{'-' * 16}|")
    print(
        f"| {'library in-process, 1 core (no Prefect/Dask)':<44} | {lib_min:>9.1f} | {lib_s:>8.1f} | {lib_min / lib_s:>7.2f} | "
        f"{lib_min / lib_s:>14.2f} | {lib_min / lib_cpu_s:>9.2f} | {lib_min / lib_cpu_s:>14.2f} |"
    )
    for n, summary in flows.items():
        for label, seconds in (("wall, start-up included", summary["wall_s"]), ("while scoring", summary["scoring_s"])):
            rate = summary["audio_min"] / seconds
            name = f"flow, {n} worker{'s' if n > 1 else ''}, {label}"
            warm = summary["warm_audio_min_per_cpu_s"]
            print(
                f"| {name:<44} | {summary['audio_min']:>9.1f} | {seconds:>8.1f} | {rate:>7.2f} | {rate / n:>14.2f} | "
                f"{summary['audio_min_per_cpu_s']:>9.2f} | {'n/a' if warm is None else f'{warm:.2f}':>14} |"
            )
    print(f"\n| {'accuracy on held-out speakers':<44} | {'n':>6} | {'accuracy':>8} |")
    print(f"|{'-' * 46}|{'-' * 8}|{'-' * 10}|")
    print(f"| {'segments (3 s windows, 1.5 s hop, 8 kHz)':<44} | {n_segments:>6} | {seg_acc:>8.1%} |")
    print(f"| {'clips, majority vote of their segments':<44} | {n_clips:>6} | {clip_acc:>8.1%} |")
    print(f"| {'reference: whole clips, original rate':<44} | {len(held_out):>6} | {whole:>8.1%} |")
    print(f"| {'reference: whole clips at 8 kHz':<44} | {len(held_out):>6} | {whole_8k:>8.1%} |")
    print(
        f"| {'chance (largest class share)':<44} | {len(held_out):>6} | "
        f"{max(Counter(r['emotion'] for r in held_out).values()) / len(held_out):>8.1%} |"
    )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other work on the machine slows every row)")


if __name__ == "__main__":
    main()
