from __future__ import annotations

import io
import sys
from collections import Counter

import pytest

from ser_batch.errors import ConfigError, RunError
from ser_batch.jobs.report import (
    check_error_ratio,
    featurize_summary,
    format_featurize_summary,
    format_score_summary,
    progress_bar,
    score_summary,
)
from ser_batch.schema import ModelIdentity
from ser_batch.shards import PassedOver, Plan, ScorePlan, ScoreShardSummary, ShardSummary

MODEL = ModelIdentity("/models/m1", "mlp-stats8k-0123456789ab", "mlp", "stats8k", "f" * 16, ("angry", "sad"))


def shard(n_files: int, n_rows: int, n_errors: int, audio_s: float) -> ShardSummary:
    return ShardSummary(f"s{n_files}-{n_rows}", n_files, n_rows, n_errors, audio_s, 1.0, ())


def scored(
    *,
    n_scored: int,
    n_errors: int,
    audio_s: float,
    started_at: float,
    elapsed_s: float,
    cpu_s: float,
    loaded: bool,
    call_dates: tuple[str, ...] = (),
) -> ScoreShardSummary:
    return ScoreShardSummary(
        shard_id=f"s{started_at}",
        model_id=MODEL.model_id,
        n_recordings=n_scored + n_errors,
        n_scored=n_scored,
        n_errors=n_errors,
        n_channels=2 * n_scored,
        n_segments=10 * n_scored,
        audio_s=audio_s,
        speech_s=audio_s / 2,
        started_at=started_at,
        elapsed_s=elapsed_s,
        cpu_s=cpu_s,
        model_loaded=loaded,
        part_files=(),
        recordings=tuple((f"/calls/{day}/{i}.wav", "1:1", True, day) for i, day in enumerate(call_dates)),
    )


FEATURIZE_PLAN = Plan(
    n_seen=20, n_done=6, n_known_bad=2, n_settling=1, passed_over=PassedOver(Counter({".txt": 1, ".pdf": 3}), ["/a/b"])
)
MIRRORED = {"superseded_rows_removed": 3, "files_gone": 2, "gone_rows_removed": 5}
FEATURIZED = [shard(6, 5, 1, 10.0), shard(6, 6, 0, 14.5)]
AUGMENTED = [shard(4, 6, 1, 9.0), shard(3, 6, 0, 9.0)]


def test_featurize_summary_counts_rows_errors_copies_and_rates() -> None:
    summary = featurize_summary(
        FEATURIZE_PLAN, FEATURIZED, wall_s=4.0, dest="/out", augmented=AUGMENTED, mirrored=MIRRORED
    )

    assert summary == {
        "dest": "/out",
        "files_seen": 20,
        "featurized": 11,
        "already_done": 6,
        "known_bad_skipped": 2,
        "still_being_written": 1,
        "skipped_extensions": {".pdf": 3, ".txt": 1},
        "unreadable_folders": ["/a/b"],
        "failed": 1,
        "clips_augmented": 6,
        "augmented_copies": 12,
        "augment_failed": 1,
        "superseded_rows_removed": 3,
        "files_gone": 2,
        "gone_rows_removed": 5,
        "shards": 2,
        "audio_s": 24.5,
        "wall_s": 4.0,
        "clips_per_s": 2.75,
        "audio_s_per_s": 6.12,
    }


def test_featurize_summary_of_an_instant_run_has_zero_rates() -> None:
    summary = featurize_summary(Plan(), [], wall_s=0.0, dest="/out")

    assert (summary["featurized"], summary["clips_per_s"], summary["audio_s_per_s"]) == (0, 0.0, 0.0)
    assert (summary["clips_augmented"], summary["augmented_copies"]) == (0, 0)


def test_format_featurize_summary_shows_every_figure() -> None:
    text = format_featurize_summary(
        featurize_summary(FEATURIZE_PLAN, FEATURIZED, wall_s=4.0, dest="/out", augmented=AUGMENTED, mirrored=MIRRORED)
    )

    lines = dict(line.split(None, 1) for line in text.splitlines())
    assert lines["files"].split() == ["seen", "20"]
    assert lines["featurized"] == "11"
    assert lines["already"].split() == ["done", "6"]
    assert lines["known"].startswith("bad       2 (skipped")
    assert lines["failed"] == "1 (see /out/errors)"
    assert lines["augmented"] == "6 labelled clips, 12 copies (1 failed)"
    assert lines["skipped"] == "3 .pdf, 1 .txt (not audio)"
    assert lines["unreadable"] == "1 folders of SOURCE (their files' rows kept)"
    assert lines["being"].split()[:2] == ["written", "1"]
    assert lines["removed"] == "3 superseded rows; rows of 2 files gone from SOURCE (5 rows)"
    assert lines["throughput"].startswith("2.75 clips/s, 6.12 s of audio/s (4.0 s wall")


SCORE_PLAN = ScorePlan(MODEL, Plan(n_seen=9, n_done=2, n_known_bad=1, n_settling=2), n_listed=12, n_orphans_removed=1)
SCORED = [
    scored(n_scored=3, n_errors=1, audio_s=360.0, started_at=100.0, elapsed_s=10.0, cpu_s=8.0, loaded=True),
    scored(
        n_scored=2,
        n_errors=0,
        audio_s=240.0,
        started_at=104.0,
        elapsed_s=8.0,
        cpu_s=4.0,
        loaded=False,
        call_dates=("2026-11-24", "2026-11-23"),
    ),
    scored(
        n_scored=1,
        n_errors=0,
        audio_s=120.0,
        started_at=111.0,
        elapsed_s=4.0,
        cpu_s=2.0,
        loaded=False,
        call_dates=("2026-11-23",),
    ),
]


def test_score_summary_counts_recordings_and_rates_over_wall_busy_and_cpu_time() -> None:
    summary = score_summary(SCORE_PLAN, SCORED, wall_s=30.0, dest="/scores", run_date="2026-11-24")

    assert summary == {
        "dest": "/scores",
        "run_date": "2026-11-24",
        "call_dates": ["2026-11-23", "2026-11-24"],
        "model_id": MODEL.model_id,
        "recordings_listed": 12,
        "recordings_seen": 9,
        "scored": 6,
        "already_scored": 2,
        "known_bad_skipped": 1,
        "still_being_written": 2,
        "skipped_extensions": {},
        "unreadable_folders": [],
        "failed": 1,
        "channels": 12,
        "segments": 60,
        "shards": 3,
        "model_loads": 1,
        "orphans_removed": 1,
        "replaced_rows_removed": 0,
        "audio_min": 12.0,
        "speech_min": 6.0,
        "wall_s": 30.0,
        "scoring_s": 15.0,  # first start 100 s to last end 115 s
        "audio_min_per_s": 0.4,
        "audio_min_per_worker_s": 0.545,  # 12 min over 22 busy seconds
        "cpu_s": 14.0,
        "audio_min_per_cpu_s": 0.857,
        "warm_audio_min_per_cpu_s": 1.0,  # 6 min over the 6 CPU seconds of shards that did not load the model
    }


def test_score_summary_without_warm_shards_or_time_has_no_rates() -> None:
    cold = score_summary(SCORE_PLAN, SCORED[:1], wall_s=0.0, dest="/scores", run_date="2026-11-24")
    empty = score_summary(SCORE_PLAN, [], wall_s=5.0, dest="/scores", run_date="2026-11-24")

    assert cold["warm_audio_min_per_cpu_s"] is None and cold["audio_min_per_s"] == 0.0
    assert (empty["scoring_s"], empty["audio_min_per_worker_s"], empty["audio_min_per_cpu_s"]) == (0.0, 0.0, 0.0)
    assert empty["warm_audio_min_per_cpu_s"] is None and empty["scored"] == 0


def test_format_score_summary_shows_every_figure() -> None:
    text = format_score_summary(score_summary(SCORE_PLAN, SCORED, wall_s=30.0, dest="/scores", run_date="2026-11-24"))

    lines = dict(line.split(None, 1) for line in text.splitlines())
    assert lines["model"] == MODEL.model_id
    assert lines["recordings"].split() == ["seen", "9", "(of", "12", "listed)"]
    assert lines["scored"] == "6 (12 channels, 60 segments)"
    assert lines["already"].split() == ["scored", "2"]
    assert lines["known"].startswith("bad        1 (skipped")
    assert lines["failed"] == "1 (see /scores/errors, run_date 2026-11-24)"
    assert lines["call"] == "dates       2026-11-23 to 2026-11-24 (2 days)"
    assert lines["being"].split()[:2] == ["written", "2"]
    assert lines["skipped"] == "none"
    assert lines["audio"] == "12.0 min (6.0 min of speech scored)"
    assert lines["throughput"].startswith("0.4 min of audio/s (30.0 s wall")
    assert "0.545 min/s per worker while scoring, 0.857 per CPU-second" in lines["throughput"]


@pytest.mark.parametrize(
    ("n_failed", "n_tried", "ratio"), [(2, 4, 0.5), (0, 10, 0.0), (10, 10, 1.0), (5, 0, 0.0), (1, 10, 0.1)]
)
def test_error_ratio_at_or_below_the_limit_passes(n_failed, n_tried, ratio) -> None:
    check_error_ratio(n_failed, n_tried, ratio, inputs="files", errors_at="/out/errors")


@pytest.mark.parametrize(("n_failed", "n_tried", "ratio"), [(3, 4, 0.5), (1, 10, 0.0), (2, 10, 0.1)])
def test_error_ratio_above_the_limit_fails_the_run(n_failed, n_tried, ratio) -> None:
    message = f"{n_failed} of {n_tried} recordings failed \\(> max_error_ratio {ratio}\\); see /scores/errors"

    with pytest.raises(RunError, match=message):
        check_error_ratio(n_failed, n_tried, ratio, inputs="recordings", errors_at="/scores/errors")


def test_error_ratio_exactly_at_a_limit_not_exact_in_binary_passes() -> None:
    check_error_ratio(29, 100, 0.29, inputs="files", errors_at="/out/errors")


@pytest.mark.parametrize("ratio", [-0.01, 1.01, float("nan")])
def test_error_ratio_outside_zero_to_one_is_a_config_error(ratio) -> None:
    with pytest.raises(ConfigError, match="max_error_ratio .* must be in \\[0, 1\\]"):
        check_error_ratio(0, 10, ratio, inputs="files", errors_at="/out/errors")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_silent_when_stderr_is_not_a_terminal(monkeypatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)

    bar = progress_bar(3, description="featurize")
    disabled = bar.disable
    bar.update(3)
    bar.close()

    assert disabled is True
    assert stderr.getvalue() == ""


def test_progress_bar_shows_on_a_terminal(monkeypatch) -> None:
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)

    bar = progress_bar(3, description="featurize")
    disabled = bar.disable
    bar.update(3)
    bar.close()

    assert not disabled
    assert "featurize" in stderr.getvalue() and "3/3" in stderr.getvalue()
