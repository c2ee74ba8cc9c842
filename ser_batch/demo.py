"""A small synthetic archive the project makes itself, named like the five corpora's files.

The clips are harmonic "voices" whose pitch, loudness and tempo depend on the emotion,
so the pipeline has something learnable to chew on without shipping real recordings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile
from numpy.typing import NDArray

# emotion -> (f0 Hz, pitch swing, loudness, syllables per second)
_VOICES = {
    "angry": (220.0, 0.25, 0.6, 5.0),
    "disgust": (140.0, 0.10, 0.3, 2.5),
    "fear": (260.0, 0.35, 0.35, 6.0),
    "happy": (240.0, 0.30, 0.5, 4.5),
    "neutral": (150.0, 0.05, 0.3, 3.5),
    "sad": (120.0, 0.05, 0.15, 2.0),
}


_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240))
"""Formants (Hz) of /a/, /i/, /e/, /o/, /u/ (Peterson & Barney's adult male means)."""


def synthetic_voice(
    rng: np.random.Generator,
    *,
    sample_rate: int = 16_000,
    duration_s: float = 1.5,
    f0_hz: float = 150.0,
    pitch_swing: float = 0.1,
    syllable_rate: float = 4.0,
) -> NDArray[np.float32]:
    """Speech-like audio, -20 to -28 dBFS RMS with peaks <= 0.5: glottal pulses through vowel formants.

    Each syllable (``syllable_rate`` per second, 70% voiced) glides between two random vowels (three
    2-pole resonators each), has its own rising or falling pitch contour around ``f0_hz`` (by up to
    ``pitch_swing``) with a 3% vibrato and 1% period jitter, a raised-cosine envelope, and a short
    fricative (high-passed noise) before it. Voice-activity detection treats it as speech, unlike a sine or a steady harmonic tone.

    >>> clip = synthetic_voice(np.random.default_rng(0), sample_rate=8000, duration_s=1.0)
    >>> level_dbfs = float(10 * np.log10(np.mean(clip.astype(np.float64) ** 2)))
    >>> clip.dtype, clip.shape, -28 <= level_dbfs <= -20, float(np.abs(clip).max()) <= 0.5
    (dtype('float32'), (8000,), True, True)
    """
    n = int(duration_s * sample_rate)
    out, noise = np.zeros(n), np.zeros(n)
    step = max(1, round(sample_rate / syllable_rate))
    for start in range(round(rng.uniform(0, 0.3) * step), n, step):
        length = min(round(0.7 * step), n - start)
        if length < 16:
            break
        t = np.arange(length) / sample_rate
        glide = pitch_swing * rng.uniform(-1, 1) * t / max(t[-1], 1e-9)
        vibrato = 0.03 * np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 2 * np.pi))  # no voice is flat
        contour = f0_hz * (1 + glide + vibrato) * rng.uniform(0.95, 1.05)
        periods = sample_rate / contour * (1 + 0.01 * rng.standard_normal(length))
        source = np.zeros(length)
        pulse = 0.0
        while pulse < length:
            source[int(pulse)] = 1.0
            pulse += periods[int(pulse)]
        source = np.diff(source, prepend=0.0)  # the glottal flow's derivative: a -6 dB/octave tilt less
        # a glide from one vowel to another (a diphthong, or the transition after a consonant)
        first, second = (_formants(source, _VOWELS[i], sample_rate) for i in rng.choice(len(_VOWELS), 2, replace=False))
        ramp = t / t[-1]
        out[start : start + length] += (
            ((1 - ramp) * first + ramp * second) * np.sin(np.pi * ramp) ** 2 * rng.uniform(0.5, 1.0)
        )
        fricative = min(round(0.06 * sample_rate), start)
        if fricative > 8:
            hiss = np.diff(rng.standard_normal(fricative + 1)) * np.hanning(fricative)
            noise[start - fricative : start] += hiss
    # fricatives 20 dB below the vowels, whose level is set by the glottal pulses' filtering
    out = out / (float(np.sqrt(np.mean(out**2))) or 1.0) + 0.1 * noise / (float(np.sqrt(np.mean(noise**2))) or 1.0)
    # -20 dBFS RMS, unless the glottal pulses' peaks (a 15-20 dB crest factor) would then pass 0.5
    gain = min(0.1 / (float(np.sqrt(np.mean(out**2))) or 1.0), 0.5 / (float(np.max(np.abs(out))) or 1.0))
    return (gain * out).astype(np.float32)


def _formants(source: NDArray[np.float64], formants: tuple[int, ...], sample_rate: int) -> NDArray[np.float64]:
    """``source`` through one 2-pole resonator per formant below Nyquist (bandwidths 80, 100, 150 Hz)."""
    for formant, bandwidth in zip(formants, (80, 100, 150), strict=True):
        if formant < sample_rate / 2 - bandwidth:
            radius = np.exp(-np.pi * bandwidth / sample_rate)
            a = [1.0, -2 * radius * np.cos(2 * np.pi * formant / sample_rate), radius**2]
            source = scipy.signal.lfilter([1.0 - radius], a, source)
    return source


def synthetic_clip(
    emotion: str, rng: np.random.Generator, *, sample_rate: int = 16_000, duration_s: float = 1.5
) -> NDArray[np.float32]:
    """A voice-like clip for one emotion: ``synthetic_voice`` at the emotion's pitch, swing, loudness and tempo.

    >>> clip = synthetic_clip("sad", np.random.default_rng(0))
    >>> clip.dtype, clip.shape, bool(np.abs(clip).max() <= 1)
    (dtype('float32'), (24000,), True)
    """
    f0, swing, loudness, rate = _VOICES[emotion]
    voice = synthetic_voice(
        rng, sample_rate=sample_rate, duration_s=duration_s, f0_hz=f0, pitch_swing=swing, syllable_rate=rate
    )
    return np.clip(voice * np.float32(3 * loudness), -1, 1).astype(np.float32)


_WORDS = ("back", "bar", "base", "bath", "bean", "beg", "bite", "boat")


def _names(emotion: str, index: int) -> list[str]:
    ravdess = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05", "fear": "06", "disgust": "07"}
    crema = {"angry": "ANG", "disgust": "DIS", "fear": "FEA", "happy": "HAP", "neutral": "NEU", "sad": "SAD"}
    emodb = {"angry": "W", "disgust": "E", "fear": "A", "happy": "F", "neutral": "N", "sad": "T"}
    savee = {"angry": "a", "disgust": "d", "fear": "f", "happy": "h", "neutral": "n", "sad": "sa"}
    actor = index % 4 + 1
    return [
        f"ravdess/Actor_{actor:02d}/03-01-{ravdess[emotion]}-01-0{index % 2 + 1}-01-{actor:02d}.wav",
        f"crema/AudioWAV/10{actor:02d}_DFA_{crema[emotion]}_XX.wav",
        f"tess/YAF_{emotion}/YAF_{_WORDS[index % len(_WORDS)]}_{emotion}.wav",
        f"emodb/0{actor + 2}a0{index % 5 + 1}{emodb[emotion]}a.wav",
        f"savee/DC/{savee[emotion]}{index + 1:02d}.wav",
    ]


def write_demo_archive(folder: str | Path, *, n_per_emotion: int = 2, seed: int = 0, sample_rate: int = 16_000) -> int:
    """Write the demo archive (plus one corrupt file and one non-audio file); return the audio files written."""
    root = Path(folder)
    rng = np.random.default_rng(seed)
    written = 0
    for emotion in _VOICES:
        for index in range(n_per_emotion):
            for name in _names(emotion, index):
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(
                    path, synthetic_clip(emotion, rng, sample_rate=sample_rate), sample_rate, subtype="PCM_16"
                )
                written += 1
    calls = root / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    soundfile.write(calls / "call-0001.wav", synthetic_clip("neutral", rng, sample_rate=8_000, duration_s=4.0), 8_000)
    (calls / "call-0002.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (root / "README.txt").write_text("Synthetic demo archive made by `ser-batch make-demo`.\n")
    return written + 2


@dataclass(frozen=True)
class Turn:
    """Where one clip was placed in a generated call, and its label."""

    channel: int
    start_s: float
    end_s: float
    label: str | None


def conversation(
    clips: Sequence[tuple[NDArray[np.float32], str | None]],
    rng: np.random.Generator,
    *,
    sample_rate: int = 8_000,
    gap_s: tuple[float, float] = (1.0, 3.0),
    level_dbfs: float = -20.0,
    noise_dbfs: float | None = -70.0,
) -> tuple[NDArray[np.float32], list[Turn]]:
    """A stereo "call" of clips taking turns on two channels, separated by silences.

    Clip ``i`` goes to channel ``i % 2``, scaled to ``level_dbfs`` RMS (the VAD's levels are
    absolute, and corpora are recorded at very different levels), and starts a random
    ``gap_s`` after the previous clip ends; the call starts and ends with a gap too.

    Args:
        clips: ``(waveform, label)`` pairs; mono float32 already at ``sample_rate``.
        rng: source of the gaps and the line noise.
        sample_rate: rate of the clips and the call in Hz.
        gap_s: ``(low, high)`` bounds of each silence in seconds.
        level_dbfs: RMS level of every clip.
        noise_dbfs: level of white line noise on both channels; None for digital silence.

    Returns:
        ``(waveform, turns)``: float32 of shape ``(n, 2)`` in [-1, 1], and each clip's place.

    >>> call, turns = conversation([(np.ones(800, np.float32), "sad")] * 3, np.random.default_rng(0))
    >>> call.shape[1], [t.channel for t in turns], turns[0].label
    (2, [0, 1, 0], 'sad')
    """
    turns, t = [], 0.0
    for index, (clip, label) in enumerate(clips):
        t += rng.uniform(*gap_s)
        turns.append(Turn(index % 2, t, t + clip.size / sample_rate, label))
        t = turns[-1].end_s
    n = round((t + rng.uniform(*gap_s)) * sample_rate)
    call = np.zeros((n, 2), dtype=np.float32)
    if noise_dbfs is not None:
        call += (10 ** (noise_dbfs / 20) * rng.standard_normal((n, 2))).astype(np.float32)
    gain = 10 ** (level_dbfs / 20)
    for turn, (clip, _) in zip(turns, clips, strict=True):
        begin = round(turn.start_s * sample_rate)
        rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64)))) or 1.0
        call[begin : begin + clip.size, turn.channel] += clip * np.float32(gain / rms)
    return np.clip(call, -1.0, 1.0), turns


DEMO_CALLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "call-0001.wav": ("a calm call", ("neutral", "neutral", "happy", "happy", "neutral", "neutral")),
    "call-0002.wav": ("an angry customer", ("neutral", "angry", "neutral", "angry", "neutral", "angry")),
    "call-0003.wav": ("a worried customer", ("neutral", "fear", "happy", "fear", "neutral", "neutral")),
    "call-0004.wav": ("a customer who calms down", ("neutral", "angry", "happy", "neutral", "happy", "happy")),
}
"""Demo call recordings: file name -> (what happens, the emotion of each turn, agent and customer alternating).
"""

CORRUPT_CALL = "call-0005.wav"
"""A demo recording that is not audio: scoring records it in DEST/errors."""


def write_demo_calls(folder: str | Path, *, seed: int = 1, sample_rate: int = 8_000) -> list[str]:
    """Write the ``DEMO_CALLS`` as stereo telephone-rate WAVs (agent on channel 0, customer on 1) plus one corrupt file.

    Each turn is a 3-6 s ``synthetic_clip`` of its emotion, with 1-3 s of line noise between
    turns (``conversation``). Returns the file names written.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, (_, emotions) in DEMO_CALLS.items():
        clips = [
            (synthetic_clip(emotion, rng, sample_rate=sample_rate, duration_s=float(rng.uniform(3.0, 6.0))), emotion)
            for emotion in emotions
        ]
        call, _ = conversation(clips, rng, sample_rate=sample_rate)
        soundfile.write(root / name, call, sample_rate, subtype="PCM_16")
    (root / CORRUPT_CALL).write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt this recording was cut off")
    return [*DEMO_CALLS, CORRUPT_CALL]
