"""One driver per job: plan a run, featurize, train, score, and report what a run did (IO drivers)."""

from __future__ import annotations

from ser_batch.jobs.featurize import augment_files, augment_shard, featurize_files, featurize_shard
from ser_batch.jobs.plan import (
    AUGMENTATION_POLICY,
    check_locations,
    check_scoring,
    parse_date,
    plan_augmentation,
    plan_featurization,
    plan_scoring,
    reconcile_features,
    recording_date,
    recordings_since,
)
from ser_batch.jobs.report import (
    check_error_ratio,
    featurize_summary,
    format_featurize_summary,
    format_score_summary,
    progress_bar,
    score_summary,
)
from ser_batch.jobs.score import (
    WHOLE_CHANNEL_SAMPLES,
    ChannelWindows,
    Scores,
    load_model_once,
    read_recording_windows,
    score_files,
    score_shard,
)
from ser_batch.jobs.train import evaluate_store, format_evaluation, train_and_save

__all__ = [
    "AUGMENTATION_POLICY",
    "ChannelWindows",
    "Scores",
    "WHOLE_CHANNEL_SAMPLES",
    "augment_files",
    "augment_shard",
    "check_error_ratio",
    "check_locations",
    "check_scoring",
    "evaluate_store",
    "featurize_files",
    "featurize_shard",
    "featurize_summary",
    "format_evaluation",
    "format_featurize_summary",
    "format_score_summary",
    "load_model_once",
    "parse_date",
    "plan_augmentation",
    "plan_featurization",
    "plan_scoring",
    "progress_bar",
    "read_recording_windows",
    "reconcile_features",
    "recording_date",
    "recordings_since",
    "score_files",
    "score_shard",
    "score_summary",
    "train_and_save",
]
