"""What the call figures (talk time, turns, interruptions, loudness, pace, trend) cost in scoring; prints one table.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/conversation.py [--n-calls 4] [--minutes 5]
                          [--model MODEL_DIR] [--repeat 3] [--work DIR]

Calls: stereo 8 kHz PCM-16 WAVs, ``--minutes`` long, two parties taking turns of 2-12 s with
0.3-3 s gaps and one turn in six cutting in 1 s before the other's end; each turn a harmonic voice
(f0 110-160 Hz, harmonics to 3.4 kHz) under a 3-6 Hz syllable envelope at -20 dBFS, -70 dBFS noise.

Rows, CPU seconds of this process with one BLAS thread, after a warm-up, best of ``--repeat``:

- ``score_files``: the whole per-recording path (decode, VAD, crosstalk, windows, features, the
  model, the calls figures), x real time per CPU-second (a stereo call counted once). With no
  ``--model`` the model is a stand-in returning fixed probabilities (``stats8k`` features are
  still computed): the Keras call, ~100 ms a shard, is left out.
- ``call figures``: ``conversation_columns``, ``speech_loudness``, ``speech_rate`` and
  ``trend_columns`` alone on the same channels (absent on code without them).

Run it on two checkouts (before and after) to compare; the machine's load moves wall-clock time,
not CPU time, but a busy machine still slows CPU-bound code through shared caches.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import soundfile
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_batch import storage  # noqa: E402
from ser_batch.config import ScoreConfig, feature_config  # noqa: E402
from ser_batch.jobs import score  # noqa: E402
from ser_batch.model.artifact import Artifact  # noqa: E402
from ser_batch.schema import ModelIdentity  # noqa: E402

RATE = 8000


def voice(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    phase = 2 * np.pi * np.cumsum(rng.uniform(110, 160) + 8 * np.sin(2 * np.pi * 5.5 * t)) / RATE
    signal = sum(np.sin(k * phase) / k for k in range(1, 18)) * (0.6 - 0.4 * np.cos(2 * np.pi * rng.uniform(3, 6) * t))
    return 0.1 * signal / np.sqrt(np.mean(signal**2))


def conversation(minutes: float, rng: np.random.Generator) -> np.ndarray:
    n = round(minutes * 60 * RATE)
    waveform = rng.normal(0, 10 ** (-70 / 20), (n, 2))
    t, channel = 0.5, 0
    while True:
        length = rng.uniform(2, 12)
        start = max(0.0, t - 1.0) if rng.random() < 1 / 6 else t + rng.uniform(0.3, 3.0)
        a, b = round(start * RATE), round((start + length) * RATE)
        if b > n:
            return waveform.astype(np.float32)
        waveform[a:b, channel] += voice(b - a, rng)
        t, channel = start + length, 1 - channel


class FixedModel:
    input_shape = (None, 0)

    def __init__(self, width: int, n_classes: int) -> None:
        self.input_shape, self.output_shape = (None, width), (None, n_classes)
        self.row = np.linspace(1, 2, n_classes, dtype=np.float32) / np.linspace(1, 2, n_classes).sum()

    def __call__(self, features: np.ndarray, training: bool = False) -> np.ndarray:
        return np.tile(self.row, (features.shape[0], 1))


def stand_in() -> Artifact:
    from ser_batch.features.extract import feature_names

    features = feature_config("stats8k")
    classes = ("angry", "happy", "neutral", "sad")
    identity = ModelIdentity(
        "stand-in", "fixed-stats8k-000000000000", "fixed", "stats8k", features.fingerprint(), classes
    )
    return Artifact(model=FixedModel(len(feature_names(features)), len(classes)), metadata={}, identity=identity)


def figures_cpu_s(files: list, config: ScoreConfig) -> float | None:
    try:
        from ser_batch.scoring.calls import trend_columns
        from ser_batch.scoring.conversation import conversation_columns, speech_loudness, speech_rate
        from ser_batch.scoring.crosstalk import attributed_spans, band_levels
        from ser_batch.scoring.segments import speech_spans, windows
    except ImportError:
        return None
    total = 0.0
    for info in files:
        data, _ = soundfile.read(info.uri, dtype="float32")
        channels = [np.ascontiguousarray(data[:, c]) for c in range(data.shape[1])]
        levels = [band_levels(lambda a, b, x=x: x[a:b], x.size, RATE, config) for x in channels]
        spans = attributed_spans([speech_spans(x, RATE, config) for x in channels], levels, RATE, config)
        placed = [windows(s, window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=data.shape[0] / RATE) for s in spans]
        started = time.process_time()
        conversation_columns(spans, data.shape[0] / RATE)
        for x, s, level, w in zip(channels, spans, levels, placed, strict=True):
            speech_loudness(lambda a, b, x=x: x[a:b], s, RATE)
            speech_rate(level, s, RATE, config)
            trend_columns(w, np.tile([[0.4, 0.2, 0.2, 0.2]], (len(w), 1)), ("angry", "happy", "neutral", "sad"))
        total += time.process_time() - started
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ser-batch-bench-conversation"))
    args = parser.parse_args()
    rng = np.random.default_rng(18)
    folder = args.work / "calls"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(args.n_calls):
        soundfile.write(folder / f"call{index}.wav", conversation(args.minutes, rng), RATE, subtype="PCM_16")
    files = sorted(storage.list_files(str(folder)), key=lambda f: f.uri)[: args.n_calls]
    artifact = storage.load_artifact(str(args.model)) if args.model else stand_in()
    config = ScoreConfig()
    audio_s = args.n_calls * args.minutes * 60
    with threadpool_limits(limits=1):
        score.score_files(files[:1], artifact, config)  # warm-up: numba, the model
        best = min(_cpu(lambda: score.score_files(files, artifact, config)) for _ in range(args.repeat))
        figures = [figures_cpu_s(files, config) for _ in range(args.repeat)]
    print(f"| {args.n_calls} calls x {args.minutes:g} min, stereo 8 kHz | CPU-s | x real time per core |")
    print("|---|---|---|")
    print(f"| score_files ({'model ' + args.model.name if args.model else 'stand-in model'}) | {best:.2f} | "
          f"{audio_s / best:,.0f}x |")  # fmt: skip
    if figures[0] is not None:
        cost = min(f for f in figures if f is not None)
        print(f"| call figures alone | {cost:.3f} | {audio_s / cost:,.0f}x |")


def _cpu(run: object) -> float:
    started = time.process_time()
    run()  # type: ignore[operator]
    return time.process_time() - started


if __name__ == "__main__":
    main()
