"""Where seed268's time goes per clip: each stage of ``ser_batch.features.seed.seed_vector`` timed on real clips.

Usage: python benchmarks/seed_profile.py [--source DIR] [--every 6]

Decodes every ``--every``-th ser-dev clip and runs the kernel's steps one by one on one core
(one BLAS thread), twice, timing the second pass; checks that the staged result equals
``feature_vector``. Prints ms per clip and the share of each stage.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import scipy.fft
import soundfile
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ser_batch.config import feature_config  # noqa: E402
from ser_batch.features.extract import (
    _AMIN,  # noqa: E402
    feature_vector,  # noqa: E402
)
from ser_batch.features.resample import resample  # noqa: E402
from ser_batch.features.seed import seed_filters
from ser_batch.features.tuning import tuning_estimate  # noqa: E402
from ser_batch.features.windows import _TOP_DB

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"


def staged_vector(path: Path, times: collections.Counter[str]) -> tuple[np.ndarray, np.ndarray]:
    """seed_vector's steps on one clip, each timed into ``times``; returns the vector and the resampled clip."""
    config = feature_config("seed268")
    filters = seed_filters(config)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[stage] += now - clock
        clock = now

    with soundfile.SoundFile(path) as sound:
        samples, rate = sound.read(dtype="float32", always_2d=True).mean(axis=1, dtype=np.float32), sound.samplerate
    lap("decode (libsndfile)")
    waveform = resample(np.ascontiguousarray(samples), rate, config.sample_rate)
    lap("resample (soxr_hq)")
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(waveform, config.n_fft // 2), config.n_fft)[
        :: config.hop_length
    ]
    windowed = frames * filters.window
    lap("framing + window")
    spectrum = scipy.fft.rfft(windowed, axis=-1)
    lap("float64 FFT")
    magnitude = np.abs(spectrum.astype(np.complex64)).T
    lap("complex64 cast + abs")
    mel = filters.mel_bank @ magnitude**2
    lap("mel product")
    log_mel = 10.0 * np.log10(np.maximum(_AMIN, mel))
    log_mel = np.maximum(log_mel, log_mel.max() - _TOP_DB)
    mfcc = scipy.fft.dct(log_mel, axis=0, type=2, norm="ortho")[: config.n_mfcc]
    lap("log-mel + DCT")
    tuning = tuning_estimate(
        magnitude, sample_rate=config.sample_rate, n_fft=config.n_fft, bins_per_octave=config.n_chroma
    )
    lap("tuning estimate")
    chroma = librosa.util.normalize(filters.chroma_bank(tuning) @ magnitude, norm=np.inf, axis=0)
    lap("chroma")
    vector = np.concatenate([mfcc.mean(axis=1), chroma.mean(axis=1), mel.mean(axis=1)]).astype(np.float32)
    lap("frame means")
    return vector, waveform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--every", type=int, default=6)
    args = parser.parse_args()
    paths = sorted(args.source.rglob("*.flac"))[:: args.every]
    times: collections.Counter[str] = collections.Counter()
    with threadpool_limits(limits=1):
        for path in paths:  # warm-up pass: filter banks, caches
            staged_vector(path, collections.Counter())
        for path in paths:
            vector, waveform = staged_vector(path, times)
            expected = feature_vector(waveform, feature_config("seed268").sample_rate, feature_config("seed268"))
            assert np.array_equal(vector, expected), f"the staged kernel differs from feature_vector on {path}"
    total = sum(times.values())
    print(
        f"{len(paths)} clips, {1e3 * total / len(paths):.2f} ms per clip (one core), staged result equal to feature_vector"
    )
    print("| stage | ms per clip | share |\n|---|---|---|")
    for stage, seconds in times.items():
        print(f"| {stage} | {1e3 * seconds / len(paths):.3f} | {100 * seconds / total:.0f}% |")


if __name__ == "__main__":
    main()
