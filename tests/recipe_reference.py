"""The original recipe's feature code, verbatim: the reference seed268 must equal."""

from __future__ import annotations

import librosa
import numpy as np


def recipe_vector(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    # Three separate STFTs and librosa's defaults, as the recipe wrote it.
    stft = np.abs(librosa.stft(waveform))
    mfccs = np.mean(librosa.feature.mfcc(y=waveform, sr=sample_rate, n_mfcc=128).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sample_rate).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=waveform, sr=sample_rate).T, axis=0)
    return np.hstack([mfccs, chroma, mel])
