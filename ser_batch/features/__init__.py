"""Waveform -> feature vectors: the feature sets, scoring windows, the recipe's seed268, augmentation (pure)."""

from __future__ import annotations

from ser_batch.features.augment import (
    TELEPHONE_BAND_HZ,
    TELEPHONE_RATE,
    Copy,
    add_noise,
    apply_gain,
    augment_by_default,
    augmented_copies,
    change_speed,
    mu_law,
    telephone_channel,
)
from ser_batch.features.extract import (
    LAZY_MODULES,
    STAT_SUFFIXES,
    autocorrelation_pitch,
    feature_bytes,
    feature_names,
    feature_vector,
    logmel_frames,
    pooled_stats_vector,
    spectral_frames,
    validate_waveform,
    warm_up,
)
from ser_batch.features.highpass import BLOCK_SAMPLES, CUTOFF_HZ, SETTLE_S, high_pass
from ser_batch.features.resample import resample
from ser_batch.features.seed import SeedFilters, seed_filters, seed_vector, stft_magnitude
from ser_batch.features.tuning import pitch_tuning, tuning_estimate
from ser_batch.features.windows import (
    supports_shared_frames,
    window_features_at,
    window_groups,
    window_samples,
    window_vectors,
)

__all__ = [
    "BLOCK_SAMPLES",
    "CUTOFF_HZ",
    "Copy",
    "LAZY_MODULES",
    "SETTLE_S",
    "STAT_SUFFIXES",
    "SeedFilters",
    "TELEPHONE_BAND_HZ",
    "TELEPHONE_RATE",
    "add_noise",
    "apply_gain",
    "augment_by_default",
    "augmented_copies",
    "autocorrelation_pitch",
    "change_speed",
    "feature_bytes",
    "feature_names",
    "feature_vector",
    "high_pass",
    "logmel_frames",
    "mu_law",
    "pitch_tuning",
    "pooled_stats_vector",
    "resample",
    "seed_filters",
    "seed_vector",
    "spectral_frames",
    "stft_magnitude",
    "supports_shared_frames",
    "telephone_channel",
    "tuning_estimate",
    "validate_waveform",
    "warm_up",
    "window_features_at",
    "window_groups",
    "window_samples",
    "window_vectors",
]
