"""Scoring calls as they really are: crosstalk, hold music, DTMF, ringback, hum, rumble, DC; prints one row per condition.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/calls.py [--n-calls 8] [--model MODEL_DIR]
                          [--data DIR] [--work DIR] [--margins 6,10,15,20]

Calls: stereo 8 kHz, one held-out ser-dev speaker per channel (RAVDESS Actor_15 with Actor_16,
EmoDB 03 with 08, alternately), ``--n-calls`` of them, each of 8 turns taking turns between the
channels with 3-5 s between turns. Each turn is one clip of that speaker, resampled to 8 kHz,
trimmed of its leading and trailing silence (``librosa.effects.trim``, 30 dB) so that the turn's
length is its speech time, and scaled to -20 dBFS RMS; -70 dBFS line noise on both channels.
Every condition is the same calls with one fault added:

- crosstalk -20 / -30 dB: each channel carries the other party 20 (30) dB down, 12 ms late;
- hold music (channel 1), DTMF digits (channel 0, six digits, -15 dBFS a tone), ringback
  (channel 1, 440 + 480 Hz, -20 dBFS): in the middle 2 s of every gap between turns;
- hum: 50 Hz and its harmonics to 250 Hz, -25 dBFS on both channels, the whole call;
- rumble: noise below 200 Hz, -25 dBFS on both channels, the whole call;
- DC offset: 2% of full scale on both channels.

Columns, from what ``score_files`` returns (the calls and predictions tables):

- speech time error: ``calls.speech_s`` of each channel against the sum of its turns; mean of
  the absolute errors over every channel of every call, and the worst;
- windows in non-speech: share of predictions rows (windows) less than half inside a turn of
  their channel;
- segment accuracy: share of all windows that are at least half inside a turn of their channel
  and whose emotion is that turn's label (a window on silence, a tone or the other party's leak
  counts as wrong);
- dominant emotion != clean: share of channels whose ``dominant_emotion`` differs from the clean
  calls';
- x real time per core: seconds of recording (a stereo call counted once) per CPU-second of
  ``score_files`` in this process, one BLAS thread, after a warm-up (decode, VAD, crosstalk,
  windows, features and the model).

Model: ``--model`` if given (honest only if it never heard these four speakers); otherwise a
``stats8k`` + ``mlp`` model trained on RAVDESS Actor_01-14 and EmoDB 09-12 (the six recipe
classes), cached under ``--work``. A second table sweeps ``ScoreConfig.crosstalk_db`` over
``--margins`` on the crosstalk calls and on calls whose turns overlap by 0.3-1 s (both parties
talking at once, leaking -20 dB): the margin trades leaks kept against overlapping speech lost.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "ser-batch" / "numba"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import librosa
import numpy as np
import pyarrow as pa
import scipy.signal
import soundfile
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_batch import shards, storage  # noqa: E402
from ser_batch.config import SEED_CLASSES, ScoreConfig, TrainConfig, feature_config  # noqa: E402
from ser_batch.demo import Turn  # noqa: E402
from ser_batch.jobs import score  # noqa: E402
from ser_batch.jobs.featurize import featurize_files  # noqa: E402
from ser_batch.model.fit import fit  # noqa: E402
from ser_batch.storage.audio import read_audio  # noqa: E402
from ser_batch.storage.model_dir import save_artifact  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"
PAIRS = ((("ravdess", "Actor_15"), ("ravdess", "Actor_16")), (("emodb", "03"), ("emodb", "08")))
HELD_OUT = {speaker for pair in PAIRS for speaker in pair}
RATE = 8000
TURNS_PER_CALL = 8
ECHO_S = 0.012
GAP_S = (3.0, 5.0)
DISTRACTOR_S = 2.0


def read_manifest(data: Path) -> list[dict[str, str]]:
    with open(data / "MANIFEST.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def featurize_chunk(paths: list[str]) -> pa.Table:
    with threadpool_limits(limits=1):
        table, _ = featurize_files([shards.FileInfo(p, 0, "0:0") for p in paths], feature_config("stats8k"))
    return table


def train_model(rows: list[dict[str, str]], data: Path, model_dir: Path) -> None:
    paths = [str(data / row["relpath"]) for row in rows]
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        table = pa.concat_tables(pool.map(featurize_chunk, [paths[i : i + 50] for i in range(0, len(paths), 50)]))
    config = TrainConfig(model="mlp", split="none", classes=SEED_CLASSES)
    save_artifact(str(model_dir), fit(table, config))
    print(f"trained stats8k + mlp on {table.num_rows} clips in {time.perf_counter() - started:.0f} s: {model_dir}")


def turn_clip(data: Path, row: dict[str, str]) -> np.ndarray:
    waveform = read_audio(str(data / row["relpath"]), sample_rate=RATE).waveform
    trimmed, _ = librosa.effects.trim(waveform, top_db=30, frame_length=256, hop_length=64)
    return (trimmed * (0.1 / max(float(np.sqrt(np.mean(trimmed**2))), 1e-6))).astype(np.float32)


def build_call(
    clips: list[tuple[np.ndarray, str]], rng: np.random.Generator, gap_s: tuple[float, float]
) -> tuple[np.ndarray, list[Turn]]:
    """Clip i on channel i % 2, each starting gap_s after the previous ends (negative: overlapping)."""
    turns, t, free = [], rng.uniform(*GAP_S), [0.0, 0.0]
    for index, (clip, label) in enumerate(clips):
        start = max(t, free[index % 2] + 0.5)  # a speaker's turns never overlap each other
        turns.append(Turn(index % 2, start, start + clip.size / RATE, label))
        free[index % 2] = turns[-1].end_s
        t = max(turns[-1].end_s + rng.uniform(*gap_s), turns[-1].start_s + 0.5)
    n = round((max(turn.end_s for turn in turns) + rng.uniform(*GAP_S)) * RATE)
    call = (10 ** (-70 / 20) * rng.standard_normal((n, 2))).astype(np.float32)
    for turn, (clip, _) in zip(turns, clips, strict=True):
        begin = round(turn.start_s * RATE)
        call[begin : begin + clip.size, turn.channel] += clip
    return call, turns


def crosstalk(call: np.ndarray, leak_db: float) -> np.ndarray:
    delay, gain = round(ECHO_S * RATE), np.float32(10 ** (leak_db / 20))
    leaked = call.copy()
    leaked[delay:, 0] += gain * call[:-delay, 1]
    leaked[delay:, 1] += gain * call[:-delay, 0]
    return leaked


def hold_music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Chords of decaying harmonic notes, a new one every 0.25-0.5 s, and a bass line."""
    out, t = np.zeros(n), 0
    while t < n:
        length = int(rng.uniform(0.25, 0.5) * RATE)
        time_s = np.arange(min(length, n - t)) / RATE
        decay = np.exp(-3.0 * time_s)
        for semitone in rng.choice([0, 4, 7, 12], 3, replace=False):
            f0 = 262.0 * 2 ** ((semitone + rng.integers(-5, 6)) / 12)
            out[t : t + time_s.size] += decay * sum(np.sin(2 * np.pi * k * f0 * time_s) / k for k in range(1, 6))
        out[t : t + time_s.size] += 0.7 * decay * np.sin(2 * np.pi * 110.0 * time_s)
        t += length
    return out


def dtmf(n: int, rng: np.random.Generator) -> np.ndarray:
    rows, columns = (697, 770, 852, 941), (1209, 1336, 1477)
    out, t, on, off = np.zeros(n), 0, int(0.08 * RATE), int(0.08 * RATE)
    time_s = np.arange(on) / RATE
    for _ in range(6):
        if t + on > n:
            break
        low, high = rng.choice(rows), rng.choice(columns)
        out[t : t + on] = np.sin(2 * np.pi * low * time_s) + np.sin(2 * np.pi * high * time_s)
        t += on + off
    return out


def ringback(n: int, rng: np.random.Generator) -> np.ndarray:
    time_s = np.arange(n) / RATE
    return np.sin(2 * np.pi * 440 * time_s) + np.sin(2 * np.pi * 480 * time_s)


def in_gaps(
    make: Callable[[int, np.random.Generator], np.ndarray], channel: int, level_dbfs: float
) -> Callable[[np.ndarray, list[Turn], np.random.Generator], np.ndarray]:
    """A fault placed in the middle DISTRACTOR_S of every gap between turns, on one channel."""

    def apply(call: np.ndarray, turns: list[Turn], rng: np.random.Generator) -> np.ndarray:
        out = call.copy()
        for before, after in zip(turns, turns[1:], strict=False):
            middle = (before.end_s + after.start_s) / 2
            begin = round((middle - DISTRACTOR_S / 2) * RATE)
            signal = make(round(DISTRACTOR_S * RATE), rng)
            rms = float(np.sqrt(np.mean(signal[signal != 0] ** 2))) or 1.0
            out[begin : begin + signal.size, channel] += (10 ** (level_dbfs / 20) / rms * signal).astype(np.float32)
        return out

    return apply


def whole_call(
    make: Callable[[int, np.random.Generator], np.ndarray],
) -> Callable[[np.ndarray, list[Turn], np.random.Generator], np.ndarray]:
    def apply(call: np.ndarray, turns: list[Turn], rng: np.random.Generator) -> np.ndarray:
        return call + np.stack([make(call.shape[0], rng), make(call.shape[0], rng)], axis=1).astype(np.float32)

    return apply


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    time_s = np.arange(n) / RATE
    signal = sum(np.sin(2 * np.pi * 50 * k * time_s + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    return 10 ** (-25 / 20) * signal / np.sqrt(np.mean(signal**2))


def rumble(n: int, rng: np.random.Generator) -> np.ndarray:
    sos = scipy.signal.butter(6, 200, btype="lowpass", fs=RATE, output="sos")
    signal = scipy.signal.sosfilt(sos, rng.standard_normal(n))
    return 10 ** (-25 / 20) * signal / np.sqrt(np.mean(signal**2))


CONDITIONS: dict[str, Callable[[np.ndarray, list[Turn], np.random.Generator], np.ndarray]] = {
    "clean": lambda call, turns, rng: call,
    "crosstalk -20 dB, 12 ms": lambda call, turns, rng: crosstalk(call, -20.0),
    "crosstalk -30 dB, 12 ms": lambda call, turns, rng: crosstalk(call, -30.0),
    "hold music in gaps (-20 dBFS)": in_gaps(hold_music, 1, -20.0),
    "DTMF in gaps (-15 dBFS)": in_gaps(dtmf, 0, -15.0),
    "ringback in gaps (-20 dBFS)": in_gaps(ringback, 1, -20.0),
    "hum 50 Hz (-25 dBFS)": whole_call(lambda n, rng: hum(n, rng)),
    "rumble < 200 Hz (-25 dBFS)": whole_call(lambda n, rng: rumble(n, rng)),
    "DC offset 2%": lambda call, turns, rng: call + np.float32(0.02),
}


def make_calls(
    manifest: list[dict[str, str]], data: Path, classes: tuple[str, ...], n_calls: int, gap_s: tuple[float, float]
) -> list[tuple[np.ndarray, list[Turn]]]:
    rng = np.random.default_rng(20261130)
    pools = {
        speaker: [r for r in manifest if (r["corpus"], r["speaker"]) == speaker and r["emotion"] in classes]
        for speaker in HELD_OUT
    }
    calls = []
    for index in range(n_calls):
        pair = PAIRS[index % len(PAIRS)]
        rows = [pools[pair[k % 2]][int(rng.integers(len(pools[pair[k % 2]])))] for k in range(TURNS_PER_CALL)]
        calls.append(build_call([(turn_clip(data, row), row["emotion"]) for row in rows], rng, gap_s))
    return calls


def score_condition(
    folder: Path, calls: list[np.ndarray], model: score.Artifact, config: ScoreConfig
) -> tuple[score.Scores, float]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index, call in enumerate(calls):
        soundfile.write(folder / f"call-{index:03d}.wav", np.clip(call, -1, 1), RATE, subtype="PCM_16")
    files = sorted(storage.list_files(str(folder)), key=lambda f: f.uri)
    with threadpool_limits(limits=1):
        cpu = time.process_time()
        scores = score.score_files(files, model, config)
        return scores, time.process_time() - cpu


def overlap_s(window: tuple[float, float], turn: Turn) -> float:
    return max(0.0, min(window[1], turn.end_s) - max(window[0], turn.start_s))


def measure(
    scores: score.Scores, folder: Path, turns: list[list[Turn]], clean: dict[tuple[str, int], str | None] | None
) -> dict[str, Any]:
    by_path = {str(folder / f"call-{index:03d}.wav"): call_turns for index, call_turns in enumerate(turns)}
    errors, dominant = [], {}
    for row in scores.tables["calls"].to_pylist():
        truth = sum(t.end_s - t.start_s for t in by_path[row["path"]] if t.channel == row["channel"])
        errors.append(abs(row["speech_s"] - truth) / truth)
        dominant[(Path(row["path"]).name, row["channel"])] = row["dominant_emotion"]
    n_windows = in_noise = correct = 0
    for row in scores.tables["predictions"].to_pylist():
        window = (row["start_s"], row["end_s"])
        own = [t for t in by_path[row["path"]] if t.channel == row["channel"]]
        best = max(own, key=lambda t: overlap_s(window, t))
        n_windows += 1
        if overlap_s(window, best) < (window[1] - window[0]) / 2:
            in_noise += 1  # a window in non-speech (or on the other party's leak) counts as wrong
        else:
            correct += row["emotion"] == best.label
    flipped = None if clean is None else sum(dominant[key] != clean[key] for key in clean) / len(clean)
    return {
        "error_mean": float(np.mean(errors)),
        "error_max": float(np.max(errors)),
        "noise_share": in_noise / max(n_windows, 1),
        "accuracy": correct / max(n_windows, 1),
        "n_windows": n_windows,
        "dominant": dominant,
        "flipped": flipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-calls", type=int, default=8, help="calls per condition (8 turns, about 50 s each)")
    parser.add_argument("--model", type=Path, help="model directory (default: train stats8k + mlp on other voices)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ser-batch-bench-calls"))
    parser.add_argument("--margins", default="6,10,15,20", help="crosstalk_db values of the second table ('' for none)")
    args = parser.parse_args()
    if not (args.data / "MANIFEST.csv").exists():
        sys.exit(f"no ser-dev data under {args.data}")
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.data)
    model_dir = args.model or args.work / "model-stats8k-mlp"
    if args.model is None and not (model_dir / "metadata.json").exists():
        training = [
            r
            for r in manifest
            if r["corpus"] in ("ravdess", "emodb")
            and (r["corpus"], r["speaker"]) not in HELD_OUT
            and r["emotion"] in SEED_CLASSES
        ]
        train_model(training, args.data, model_dir)
    identity = score.read_model_identity(str(model_dir))
    model, _ = score.load_model_once(identity)
    calls = make_calls(manifest, args.data, identity.classes, args.n_calls, (3.0, 5.0))
    turns = [call_turns for _, call_turns in calls]
    audio_s = sum(call.shape[0] for call, _ in calls) / RATE
    score_condition(args.work / "warm-up", [calls[0][0]], model, ScoreConfig())  # numba, TensorFlow

    print(f"\nmodel {identity.model_id}; classes {', '.join(identity.classes)}")
    print(
        f"{len(calls)} stereo 8 kHz calls per condition, {audio_s / 60:.1f} min, {len(calls) * TURNS_PER_CALL} turns "
        f"of {', '.join(f'{c} {s}' for c, s in sorted(HELD_OUT))}; {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}\n"
    )
    header = (
        f"| {'condition':<30} | {'speech time error, mean':>23} | {'worst':>6} | {'windows in non-speech':>21} | "
        f"{'segment accuracy':>16} | {'windows':>7} | {'dominant emotion != clean':>25} | {'x real time per core':>20} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    clean = None
    for name, apply in CONDITIONS.items():
        rng = np.random.default_rng(7)
        faulty = [apply(call, call_turns, rng) for call, call_turns in calls]
        scores, cpu_s = score_condition(args.work / "calls", faulty, model, ScoreConfig())
        m = measure(scores, args.work / "calls", turns, clean)
        clean = clean or m["dominant"]
        flipped = "" if m["flipped"] is None else f"{m['flipped']:.1%}"
        print(
            f"| {name:<30} | {m['error_mean']:>23.1%} | {m['error_max']:>6.1%} | {m['noise_share']:>21.1%} | "
            f"{m['accuracy']:>16.1%} | {m['n_windows']:>7} | {flipped:>25} | {audio_s / cpu_s:>19,.0f}x |"
        )

    if not args.margins:
        return
    overlapping = make_calls(manifest, args.data, identity.classes, args.n_calls, (-1.0, -0.3))
    sweeps = {
        "crosstalk -20 dB": (calls, lambda call: crosstalk(call, -20.0)),
        "crosstalk -10 dB": (calls, lambda call: crosstalk(call, -10.0)),
        "overlapping turns, -20 dB": (overlapping, lambda call: crosstalk(call, -20.0)),
    }
    margins = [float(m) for m in args.margins.split(",")]
    print("\nspeech time error (mean over channels / worst) against crosstalk_db\n")
    cells = [f"{f'crosstalk_db {m:g}':>16}" for m in margins]
    print(f"| {'calls':<30} | " + " | ".join(cells) + " |")
    print(f"|{'-' * 32}|" + "|".join("-" * (len(c) + 2) for c in cells) + "|")
    for name, (base, apply_one) in sweeps.items():
        results = []
        for margin in margins:
            scores, _ = score_condition(
                args.work / "calls", [apply_one(call) for call, _ in base], model, ScoreConfig(crosstalk_db=margin)
            )
            m = measure(scores, args.work / "calls", [call_turns for _, call_turns in base], None)
            results.append(f"{m['error_mean']:>7.1%} / {m['error_max']:>6.1%}")
        print(f"| {name:<30} | " + " | ".join(f"{r:>16}" for r in results) + " |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other work on the machine slows the throughput column)")


if __name__ == "__main__":
    main()
