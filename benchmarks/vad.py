"""Voice-activity detectors on real speech vs synthetic line sounds: precision, recall and cost; prints one table.

    .venv/bin/python benchmarks/vad.py [--data DIR] [--clips 12] [--seed 0]

Calls (8 kHz mono, -65 dBFS white line noise throughout): ``--clips`` real ser-dev clips (all three
corpora, resampled to 8 kHz, each at a random -30 to -15 dBFS RMS) take turns with 4 s of one kind of
non-speech, 1-2 s of line noise around each. One call per kind:

- music: synthetic hold music (three-note chords of 1/k harmonics with piano-like decays, a melody
  of eighth notes, a bass line, 100 bpm) at -20 dBFS;
- tones: a steady sine (300-3000 Hz), dial (350+440 Hz), ringback (440+480 Hz, 2 s on) and busy
  (480+620 Hz, 0.5 s on / 0.5 s off) at -20 dBFS;
- DTMF: random digits, 100 ms on / 100 ms off, at -20 dBFS;
- clicks: 1 ms clicks at -6 dBFS peak, 5-20 a second; noise bursts: 0.1-0.6 s of white noise at -20 dBFS
  (Hann-shaped: a door, a rustle), one a second;
- hum / rumble / hiss lie under the WHOLE call, speech included: 50 Hz and 60 Hz mains with
  harmonics to 1 kHz at -30 dBFS, noise below 200 Hz at -25 dBFS, white noise at -45 dBFS.

The truth: each clip's speech runs from its first to its last sample within 30 dB of its loudest
(``librosa.effects.trim``); everything else is non-speech. "recall" is the share of speech time
inside detected spans; "FP <kind>" the share of that call's non-speech time inside detected spans
(for hum/rumble/hiss the gaps between turns); "precision" pools every call. "low voices" is the recall
on the RAVDESS male actors' neutral and calm clips alone (low, flat pitch), pooled over the calls.
"x RT" is seconds of audio per CPU-second for the detector alone on the calls (one core).

Detectors: the energy VAD before this change (git ``ENERGY_COMMIT``, levels over the whole
spectrum), the default VAD (``ser_batch.scoring.segments``: telephone-band levels, steadiness, tone and
click tests; ``vad_mode=None``), WebRTC's VAD alone at each aggressiveness (30 ms frames, pauses
bridged as the product does), and the default AND WebRTC at each mode (``vad_mode=0..3``).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_batch.config import ScoreConfig  # noqa: E402
from ser_batch.features.highpass import high_pass  # noqa: E402
from ser_batch.features.resample import resample  # noqa: E402
from ser_batch.scoring import segments  # noqa: E402

ENERGY_COMMIT = "66e5923"  # the last main whose VAD measured levels over the whole spectrum
RATE = 8000
DTMF = {
    d: (lo, hi)
    for d, lo, hi in zip(
        "123456789*0#", [697] * 3 + [770] * 3 + [852] * 3 + [941] * 3, [1209, 1336, 1477] * 4, strict=True
    )
}
Detector = Callable[[NDArray[np.float32]], list[tuple[float, float]]]


def _db(level_dbfs: float) -> float:
    return float(10 ** (level_dbfs / 20))


def _at_rms(x: NDArray[np.float64], level_dbfs: float) -> NDArray[np.float64]:
    return x * _db(level_dbfs) / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def music(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    beat = 60.0 / 100 / 2  # eighth notes at 100 bpm
    out = np.zeros(n)
    chords = [(60, 64, 67), (57, 60, 64), (65, 69, 72), (67, 71, 74)]
    step = round(beat * RATE)
    for i, start in enumerate(range(0, n, step)):
        chord = chords[(i // 8) % 4]
        notes = [rng.choice(chord) + 12]  # melody
        if i % 8 == 0:
            notes += [*chord, chord[0] - 24]  # chord and bass on the bar
        length = min(n - start, 8 * step if i % 8 == 0 else step)
        t = np.arange(length) / RATE
        for note in notes:
            f = 440.0 * 2 ** ((note - 69) / 12)
            tone = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 8) if k * f < 3800)
            out[start : start + length] += tone * np.exp(-t * (1.5 if i % 8 == 0 else 4.0))
    return _at_rms(out, -20.0)


def tones(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    t = np.arange(n) / RATE
    kind = rng.integers(4)
    if kind == 0:
        x = np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
    else:
        low, high = [(350, 440), (440, 480), (480, 620)][kind - 1]
        x = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)
        if kind == 2:
            x *= (t % 6.0) < 2.0
        if kind == 3:
            x *= (t % 1.0) < 0.5
    return _at_rms(x, -20.0) * np.sqrt(np.mean(x**2) > 0)


def dtmf(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    t = np.arange(n) / RATE
    low, high = np.zeros(n), np.zeros(n)
    step = round(0.2 * RATE)
    for start in range(0, n, step):
        lo, hi = DTMF[rng.choice(list(DTMF))]
        low[start : start + step // 2], high[start : start + step // 2] = lo, hi
    x = (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)) * (low > 0)
    return x * _db(-20.0) / np.sqrt(0.5)


def clicks(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    x = np.zeros(n)
    for start in range(0, n - 8, round(RATE / rng.uniform(5, 20))):
        x[start : start + 8] = rng.choice([-1, 1]) * _db(-6.0) * np.hanning(8)
    return x


def noise_bursts(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    x = np.zeros(n)
    for start in range(0, n, RATE):
        length = round(rng.uniform(0.1, 0.6) * RATE)
        x[start : start + length] = (
            _at_rms(rng.standard_normal(length), -20.0)[: n - start] * np.hanning(length)[: n - start]
        )
    return x


def hum(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    t = np.arange(n) / RATE
    x = sum(np.sin(2 * np.pi * k * 50 * t) / k for k in range(1, 21)) + sum(
        np.sin(2 * np.pi * k * 60 * t + 1.0) / k for k in range(1, 17)
    )
    return _at_rms(x, -30.0)


def rumble(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / RATE) > 200] = 0
    return _at_rms(np.fft.irfft(spectrum, n), -25.0)


def hiss(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return _at_rms(rng.standard_normal(n), -45.0)


SEGMENT_KINDS = {"music": music, "tones": tones, "DTMF": dtmf, "clicks": clicks, "noise bursts": noise_bursts}
BACKGROUND_KINDS = {"hum": hum, "rumble": rumble, "hiss": hiss}


def speech_clips(data: Path, n: int, rng: np.random.Generator) -> list[tuple[NDArray[np.float64], bool]]:
    """``n`` clips per call kind: (8 kHz clip, is a low voice) from all three corpora, seeded."""
    with open(data / "MANIFEST.csv") as handle:
        rows = list(csv.DictReader(handle))
    picked = [rows[i] for i in rng.choice(len(rows), n * (len(SEGMENT_KINDS) + len(BACKGROUND_KINDS)), replace=False)]
    low = [
        r
        for r in rows
        if r["corpus"] == "ravdess" and int(r["speaker"][-2:]) % 2 and r["emotion"] in ("neutral", "calm")
    ]
    picked[::3] = [low[i] for i in rng.choice(len(low), len(picked[::3]), replace=False)]
    clips = []
    for row in picked:
        x, sr = soundfile.read(data / row["relpath"], dtype="float32", always_2d=True)
        clips.append((resample(np.ascontiguousarray(x.mean(axis=1)), sr, RATE).astype(np.float64), row in low))
    return clips


def build_call(
    kind: str, clips: list[tuple[NDArray[np.float64], bool]], rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.int8]]:
    """A call and its per-sample truth: 1 speech, 2 low-voice speech, -1 the non-speech segments, 0 line noise."""
    parts, truth = [], []
    for clip, is_low in clips:
        parts.append(np.zeros(round(rng.uniform(1, 2) * RATE)))
        truth.append(np.zeros(parts[-1].size, np.int8))
        _, (a, b) = librosa.effects.trim(clip, top_db=30)
        parts.append(_at_rms(clip, rng.uniform(-30, -15)))
        label = np.zeros(clip.size, np.int8)
        label[a:b] = 2 if is_low else 1
        truth.append(label)
        parts.append(np.zeros(round(rng.uniform(1, 2) * RATE)))
        truth.append(np.zeros(parts[-1].size, np.int8))
        if kind in SEGMENT_KINDS:
            parts.append(SEGMENT_KINDS[kind](4 * RATE, rng))
            truth.append(np.full(parts[-1].size, -1, np.int8))
    call = np.concatenate(parts)
    call += _at_rms(rng.standard_normal(call.size), -65.0)
    if kind in BACKGROUND_KINDS:
        call += BACKGROUND_KINDS[kind](call.size, rng)
    return np.clip(call, -1, 1).astype(np.float32), np.concatenate(truth)


def energy_detector() -> Detector:
    source = subprocess.run(
        ["git", "show", f"{ENERGY_COMMIT}:ser_batch/scoring/segments.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    path = Path(tempfile.mkdtemp()) / "energy_segments.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("energy_segments", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = ScoreConfig()
    return lambda x: module.speech_spans(x, RATE, config)


def webrtc_alone(mode: int) -> Detector:
    config = ScoreConfig()
    hop = round(config.vad_hop_s * RATE)

    def detect(x: NDArray[np.float32]) -> list[tuple[float, float]]:
        voice = segments._VoiceDetector(RATE, mode)
        voice.feed(x)
        active = voice.decisions_at((np.arange(x.size // hop) * hop + hop / 2) / RATE)
        spans = segments._bridge_gaps(segments._runs_to_spans(active, hop, hop, RATE, x.size / RATE), config.min_gap_s)
        return [(a, b) for a, b in spans if b - a >= config.min_speech_s]

    return detect


def product(mode: int | None) -> Detector:
    config = ScoreConfig(vad_mode=mode)
    return lambda x: segments.speech_spans(x, RATE, config)


def measure(detect: Detector, calls: dict[str, tuple[NDArray[np.float32], NDArray[np.int8]]]) -> dict[str, float]:
    detect(next(iter(calls.values()))[0][:RATE])  # warm-up
    tp = fp = speech = low_tp = low = cpu = audio = 0.0
    row = {}
    for kind, (call, truth) in calls.items():
        start = time.process_time()
        spans = detect(call)
        cpu += time.process_time() - start
        audio += call.size / RATE
        found = np.zeros(call.size, bool)
        for a, b in spans:
            found[round(a * RATE) : round(b * RATE)] = True
        is_speech = truth > 0
        tp += np.sum(found & is_speech)
        fp += np.sum(found & ~is_speech)
        speech += np.sum(is_speech)
        low_tp += np.sum(found & (truth == 2))
        low += np.sum(truth == 2)
        judged = truth < 0 if kind in SEGMENT_KINDS else truth == 0
        row[f"FP {kind}"] = np.sum(found & judged) / np.sum(judged)
    return {
        "recall": tp / speech,
        "low voices": low_tp / low,
        **row,
        "precision": tp / max(tp + fp, 1),
        "x RT": audio / cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ser-dev")
    parser.add_argument("--clips", type=int, default=12, help="speech clips per call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    clips = speech_clips(args.data, args.clips, rng)
    kinds = [*SEGMENT_KINDS, *BACKGROUND_KINDS]
    # as decoding does for every recording (ser_batch.storage.audio): DC and rumble below 70 Hz removed
    calls = {}
    for i, kind in enumerate(kinds):
        call, truth = build_call(kind, clips[i * args.clips : (i + 1) * args.clips], rng)
        calls[kind] = (high_pass(call, RATE), truth)
    detectors: dict[str, Detector] = {"energy, full band (before)": energy_detector()}
    detectors["default: band energy + steady/click tests"] = product(None)
    detectors.update({f"WebRTC mode {m} alone": webrtc_alone(m) for m in range(4)})
    detectors.update({f"default + WebRTC mode {m}": product(m) for m in range(4)})
    results = {name: measure(detect, calls) for name, detect in detectors.items()}
    columns = list(next(iter(results.values())))
    print(
        f"{sum(c.size for c, _ in calls.values()) / RATE / 60:.1f} min of 8 kHz calls, "
        f"{sum(np.sum(t > 0) for _, t in calls.values()) / RATE / 60:.1f} min of speech, seed {args.seed}\n"
    )
    print("| detector | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in results.items():
        cells = [f"{row[c]:,.0f}x" if c == "x RT" else f"{100 * row[c]:.1f}%" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
