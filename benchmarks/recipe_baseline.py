"""The original per-file recipe, verbatim, as a baseline to measure ser-batch against.

Each clip: ``librosa.load`` at 22,050 Hz, then three separate STFTs for MFCC, chroma and mel.
"""

from __future__ import annotations

import librosa
import numpy as np
from threadpoolctl import threadpool_limits


def recipe_features(path: str) -> np.ndarray:
    waveform, sample_rate = librosa.load(path)
    stft = np.abs(librosa.stft(waveform))
    mfccs = np.mean(librosa.feature.mfcc(y=waveform, sr=sample_rate, n_mfcc=128).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sample_rate).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=waveform, sr=sample_rate).T, axis=0)
    return np.hstack([mfccs, chroma, mel])


def init_worker() -> None:
    # The recipe's best chance: one BLAS/OpenMP thread per process (no oversubscription).
    threadpool_limits(limits=1)
    recipe_features_warm()


def recipe_features_warm() -> None:
    t = np.arange(22_050, dtype=np.float32) / 22_050
    waveform = 0.5 * np.sin(2 * np.pi * 220 * t)
    stft = np.abs(librosa.stft(waveform))
    librosa.feature.mfcc(y=waveform, sr=22_050, n_mfcc=128)
    librosa.feature.chroma_stft(S=stft, sr=22_050)
