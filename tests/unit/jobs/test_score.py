from __future__ import annotations

import json
import os
import re
import tracemalloc
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pyloudnorm
import pytest
import soundfile
from signals_gen import call_waveform

from ser_batch import schema, storage
from ser_batch.config import ScoreConfig, channel_roles, feature_config, score_config
from ser_batch.errors import AudioError, ConfigError, SchemaError
from ser_batch.jobs import FileGuard, score
from ser_batch.jobs.finish import finish_scoring
from ser_batch.jobs.plan import parse_date, plan_scoring, recording_date, recordings_since, start_scoring
from ser_batch.model.artifact import Artifact
from ser_batch.scoring import segments
from ser_batch.shards import FileInfo, ScorePlan, ScoreShardSummary, Shard

SEED = feature_config("seed268")
STATS8K = feature_config("stats8k")
CONFIG = ScoreConfig()
CLASSES = ("angry", "happy", "sad")
RATE = 8000


class FakeModel:
    """Stands in for a Keras model: fixed probabilities, no TensorFlow."""

    input_shape = (None, 268)
    output_shape = (None, len(CLASSES))

    def __call__(self, features: np.ndarray, training: bool = False) -> np.ndarray:
        assert training is False
        return np.tile(np.array([[0.6, 0.3, 0.1]], dtype=np.float32), (features.shape[0], 1))


def write_call(
    path: Path, duration_s: float, channels: list[list[tuple[float, float]]], rng: np.random.Generator, **kwargs: object
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, call_waveform(duration_s, RATE, channels, rng, **kwargs), RATE, subtype="PCM_16")  # type: ignore[arg-type]
    return path


def info(path: Path) -> FileInfo:
    return next(f for f in storage.list_files(str(path.parent)) if f.uri == str(path))


@pytest.fixture
def fake_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    metadata = {
        "format_version": 1,
        "model": "fake",
        "classes": list(CLASSES),
        "feature_set": "seed268",
        "fingerprint": SEED.fingerprint(),
        "n_features": 268,
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "model.keras").write_bytes(b"weights v1")
    return folder


def fake_artifact(model_dir: Path) -> tuple[Artifact, score.ModelIdentity]:
    identity = score.read_model_identity(str(model_dir))
    artifact = Artifact(model=FakeModel(), metadata={}, identity=identity)
    return artifact, identity


def inside(t: float, spans: list[tuple[float, float]], tolerance: float = 0.1) -> bool:
    return any(start - tolerance <= t <= end + tolerance for start, end in spans)


def test_each_channel_of_a_stereo_call_gets_its_own_windows(tmp_path, rng) -> None:
    agent, customer = [(1.0, 5.0)], [(6.0, 9.5), (11.0, 14.0)]
    path = write_call(tmp_path / "call.wav", 15.0, [agent, customer], rng)

    channels, sample_rate, duration_s = score.read_recording_windows(info(path), CONFIG, SEED)

    assert (sample_rate, duration_s) == (RATE, 15.0)
    assert [c.channel for c in channels] == [0, 1]
    for channel, spans in zip(channels, (agent, customer), strict=True):
        assert channel.windows, f"no windows on channel {channel.channel}"
        assert all(inside(start, spans) and inside(end, spans) for start, end in channel.windows)
        assert channel.features.shape == (len(channel.windows), 268)
        assert np.isfinite(channel.features).all()
    assert channels[0].windows != channels[1].windows


def test_mono_call_has_one_channel(tmp_path, rng) -> None:
    path = write_call(tmp_path / "mono.flac", 6.0, [[(1.0, 5.0)]], rng)

    channels, _, _ = score.read_recording_windows(info(path), CONFIG, SEED)

    assert [c.channel for c in channels] == [0]


@pytest.mark.parametrize("seed", range(3))
def test_windows_never_start_in_silence_nor_pass_the_end(tmp_path, seed) -> None:
    rng = np.random.default_rng(seed)
    spans, t = [], 0.0
    while t < 18.0:  # pauses longer than min_gap_s, so no span is bridged over silence
        start = t + rng.uniform(0.6, 2.0)
        spans.append((round(start, 2), round(start + rng.uniform(0.5, 4.0), 2)))
        t = spans[-1][1]
    spans.append((t + 1.0, t + 4.0))  # the last one runs to the end of the file
    path = write_call(tmp_path / "call.wav", t + 4.0, [spans], rng, kind="noise")

    channels, _, duration_s = score.read_recording_windows(info(path), CONFIG, SEED)

    windows = channels[0].windows
    assert windows and windows[-1][1] == pytest.approx(duration_s, abs=0.02)
    for start, end in windows:
        assert 0.0 <= start < end <= duration_s
        assert inside(start, spans), f"window {start}-{end} starts in silence; speech {spans}"
        assert end - start < CONFIG.window_s + CONFIG.hop_s


def test_streamed_channels_give_the_same_windows_and_features_as_whole_ones(tmp_path, rng, monkeypatch) -> None:
    path = write_call(tmp_path / "call.flac", 50.0, [[(1.0, 12.0), (14.0, 30.5)], [(31.0, 49.0)]], rng)
    whole, rate, duration_s = score.read_recording_windows(info(path), CONFIG, STATS8K)

    monkeypatch.setattr(score, "WHOLE_CHANNEL_SAMPLES", 1000)
    monkeypatch.setattr(score, "_REGION_S", 7.0)  # several regions, and windows wider than one
    monkeypatch.setattr(segments, "_BLOCK_FRAMES", 300)  # many VAD blocks, tone test across their edges
    streamed, streamed_rate, streamed_s = score.read_recording_windows(info(path), CONFIG, STATS8K)

    assert (streamed_rate, streamed_s) == (rate, duration_s)
    for a, b in zip(whole, streamed, strict=True):
        assert a.windows == b.windows and len(a.windows) > 5
        np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-5)  # BLAS blocks differ: float32 rounding


def write_hour(path: Path, rng: np.random.Generator) -> None:
    """One hour of 8 kHz mono line noise with speech-like bursts at 10 and 50 minutes, written a minute at a time."""
    with soundfile.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as handle:
        for minute in range(60):
            block = (10 ** (-60 / 20) * rng.standard_normal(60 * RATE)).astype(np.float32)
            if minute in (10, 50):
                block[: 20 * RATE] += call_waveform(20.0, RATE, [[(0.0, 20.0)]], rng)[:, 0]
            handle.write(block)


def test_a_one_hour_recording_is_scored_in_bounded_memory(tmp_path, rng) -> None:
    path = tmp_path / "hour.wav"
    write_hour(path, rng)
    whole_channel_bytes = 3600 * RATE * 4  # what decoding the channel whole would hold: 115 MB
    warm_up = write_call(tmp_path / "warm-up.wav", 5.0, [[(1.0, 4.5)]], rng)
    score.read_recording_windows(info(warm_up), CONFIG, STATS8K)  # first-call imports and numba are not the point

    tracemalloc.start()
    try:
        channels, _, duration_s = score.read_recording_windows(info(path), CONFIG, STATS8K)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert duration_s == 3600.0
    assert peak < 0.3 * whole_channel_bytes, f"peak {peak / 2**20:.0f} MiB"  # ~18 MiB measured; whole: ~128 MiB
    windows = channels[0].windows
    assert windows and all(inside(start, [(600, 620), (3000, 3020)], 0.5) for start, _ in windows)
    assert channels[0].features.shape == (len(windows), 265)


def test_silent_channel_still_gets_a_calls_row(tmp_path, fake_model_dir, rng) -> None:
    path = write_call(tmp_path / "calls" / "one-sided.wav", 8.0, [[(1.0, 6.0)], []], rng)
    artifact, identity = fake_artifact(fake_model_dir)

    scores = score.score_files([info(path)], artifact, CONFIG)

    calls = scores.tables["calls"].to_pylist()
    assert [(c["channel"], c["n_channels"]) for c in calls] == [(0, 2), (1, 2)]
    assert calls[0]["n_segments"] > 0 and calls[0]["dominant_emotion"] == "angry"
    assert calls[1]["n_segments"] == 0 and calls[1]["speech_s"] == 0.0 and calls[1]["dominant_emotion"] is None
    assert calls[1]["share_angry"] == 0.0 and calls[1]["share_neutral"] is None
    predictions = scores.tables["predictions"]
    assert set(predictions.column("channel").to_pylist()) == {0}
    assert predictions.column("model_id").unique().to_pylist() == [identity.model_id]
    assert predictions.column("prob_calm").null_count == predictions.num_rows


def with_crosstalk(call: np.ndarray, leak_db: float, echo_s: float = 0.012) -> np.ndarray:
    delay, gain = round(echo_s * RATE), np.float32(10 ** (leak_db / 20))
    leaked = call.copy()
    leaked[delay:, 0] += gain * call[:-delay, 1]
    leaked[delay:, 1] += gain * call[:-delay, 0]
    return leaked


@pytest.mark.parametrize("leak_db", [-20.0, -30.0])
def test_crosstalk_is_scored_on_the_channel_that_carries_it(tmp_path, fake_model_dir, rng, leak_db) -> None:
    agent, customer = [(1.0, 5.5), (12.0, 16.5)], [(7.0, 10.5), (18.0, 22.0)]
    call = with_crosstalk(call_waveform(24.0, RATE, [agent, customer], rng), leak_db)
    path = tmp_path / "calls" / "leaky.wav"
    path.parent.mkdir()
    soundfile.write(path, call, RATE, subtype="PCM_16")
    artifact, _ = fake_artifact(fake_model_dir)

    scores = score.score_files([info(path)], artifact, CONFIG)

    calls = scores.tables["calls"].to_pylist()
    assert [row["speech_s"] for row in calls] == pytest.approx([9.0, 7.5], rel=0.1)  # was about 16.5 on each
    assert [row["duplicate_of_channel"] for row in calls] == [None, None]
    predictions = scores.tables["predictions"].to_pylist()
    for channel, spans in enumerate((agent, customer)):
        windows = [(row["start_s"], row["end_s"]) for row in predictions if row["channel"] == channel]
        assert windows and all(inside(start, spans) and inside(end, spans) for start, end in windows), windows


def test_a_mono_call_on_both_channels_is_scored_once_and_flagged(tmp_path, fake_model_dir, rng) -> None:
    mono = call_waveform(12.0, RATE, [[(1.0, 5.0), (7.0, 11.0)]], rng)[:, 0]
    path = tmp_path / "calls" / "copied.wav"
    path.parent.mkdir()
    soundfile.write(path, np.stack([mono, 0.7 * mono], axis=1), RATE, subtype="PCM_16")
    artifact, _ = fake_artifact(fake_model_dir)

    scores = score.score_files([info(path)], artifact, CONFIG)

    calls = scores.tables["calls"].to_pylist()
    assert [(row["channel"], row["duplicate_of_channel"]) for row in calls] == [(0, None), (1, 0)]
    assert calls[0]["speech_s"] == pytest.approx(8.0, abs=0.2)
    figures = ("speech_s", "n_segments", "share_angry", "dominant_emotion", "peak_angry_s")
    assert [calls[1][name] for name in figures] == [calls[0][name] for name in figures]
    assert set(scores.tables["predictions"].column("channel").to_pylist()) == {0}
    assert scores.speech_s == pytest.approx(calls[0]["speech_s"])


def test_rows_carry_the_call_date_the_run_date_and_the_channel_roles(tmp_path, fake_model_dir, rng) -> None:
    stereo = write_call(
        tmp_path / "calls" / "2026" / "11" / "23" / "stereo.wav", 6.0, [[(1.0, 5.0)], [(1.5, 4.5)]], rng
    )
    mono = write_call(tmp_path / "calls" / "2026" / "11" / "24" / "mono.wav", 6.0, [[(1.0, 5.0)]], rng)
    (tmp_path / "calls" / "2026" / "11" / "24" / "junk.wav").write_bytes(b"not audio at all")
    artifact, _ = fake_artifact(fake_model_dir)
    roles = ScoreConfig(channel_roles=("agent", "customer"))

    listed = sorted(storage.list_files(str(tmp_path / "calls")), key=lambda f: f.uri)
    scores = score.score_files(listed, artifact, roles, run_date="2026-11-30")
    unnamed = score.score_files([info(stereo)], artifact, CONFIG, run_date="2026-11-30")

    calls = [
        (Path(r["path"]).name, r["channel"], r["role"], r["call_date"]) for r in scores.tables["calls"].to_pylist()
    ]
    assert calls == [
        ("stereo.wav", 0, "agent", "2026-11-23"),
        ("stereo.wav", 1, "customer", "2026-11-23"),
        ("mono.wav", 0, None, "2026-11-24"),  # one channel carries both parties: no role
    ]
    predictions = scores.tables["predictions"].to_pylist()
    assert {(r["channel"], r["role"]) for r in predictions if r["path"] == str(stereo)} == {
        (0, "agent"),
        (1, "customer"),
    }
    assert all(r["role"] is None for r in predictions if r["path"] == str(mono))
    errors = scores.tables["errors"].to_pylist()
    assert [(Path(r["path"]).name, r["call_date"]) for r in errors] == [("junk.wav", "2026-11-24")]
    for table in scores.tables.values():
        assert set(table.column("run_date").to_pylist()) == {date(2026, 11, 30)}
    assert set(unnamed.tables["calls"].column("role").to_pylist()) == {None}
    assert scores.call_dates == {str(mono): "2026-11-24", str(stereo): "2026-11-23", listed[1].uri: "2026-11-24"}


@pytest.mark.parametrize(("timezone", "expected"), [("UTC", "2026-11-24"), ("America/New_York", "2026-11-23")])
def test_a_recording_without_a_date_folder_takes_its_modification_date_in_the_time_zone(
    tmp_path, fake_model_dir, rng, timezone, expected
) -> None:
    path = write_call(tmp_path / "calls" / "c.wav", 3.0, [[(0.5, 2.5)]], rng)
    late = datetime(2026, 11, 24, 3, 30, tzinfo=UTC).timestamp()  # 22:30 the day before in New York
    os.utime(path, (late, late))
    artifact, _ = fake_artifact(fake_model_dir)

    scores = score.score_files([info(path)], artifact, ScoreConfig(timezone=timezone), run_date="2026-11-30")

    assert set(scores.tables["calls"].column("call_date").to_pylist()) == {expected}
    assert recording_date(info(path), timezone) == date.fromisoformat(expected)
    since = list(recordings_since([info(path)], date(2026, 11, 24), timezone))
    assert len(since) == (expected == "2026-11-24")


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ("agent", "one name per channel, at least two"),
        (["customer"], "one name per channel, at least two"),
        ("agent,", "a role name is empty"),
        (" ,customer", "a role name is empty"),
        ("agent,agent", "a different name"),
    ],
)
def test_channel_roles_are_checked_in_one_line(roles, message) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        channel_roles(roles)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=message):
        score_config(channel_roles=roles if isinstance(roles, list) else roles.split(","))
    with pytest.raises(ConfigError, match="time zone"):
        score_config(timezone="Mars/Olympus")


def test_bad_recordings_become_error_rows_and_the_rest_is_scored(tmp_path, fake_model_dir, rng) -> None:
    folder = tmp_path / "calls"
    good = write_call(folder / "good.wav", 6.0, [[(1.0, 5.0)]], rng)
    (folder / "junk.wav").write_bytes(b"not audio at all")
    (folder / "empty.wav").write_bytes(b"")
    soundfile.write(folder / "too-slow.wav", np.zeros(2000, np.float32), 2000)
    nan = np.full(8000, np.nan, dtype=np.float32)
    soundfile.write(folder / "nan.wav", nan, RATE, subtype="FLOAT")
    artifact, identity = fake_artifact(fake_model_dir)

    scores = score.score_files(list(storage.list_files(str(folder))), artifact, CONFIG)

    errors = {Path(row["path"]).name: row for row in scores.tables["errors"].to_pylist()}
    assert set(errors) == {"junk.wav", "empty.wav", "too-slow.wav", "nan.wav"}
    assert errors["junk.wav"]["stage"] == "decode" and "undecodable" in errors["junk.wav"]["message"]
    assert "2000 Hz" in errors["too-slow.wav"]["message"]
    assert errors["nan.wav"]["stage"] == "segment" and "NaN" in errors["nan.wav"]["message"]
    assert all(row["model_id"] == identity.model_id and row["error_type"] == "AudioError" for row in errors.values())
    assert scores.tables["calls"].column("path").to_pylist() == [str(good)]
    assert scores.n_scored == 1


def test_unreadable_recording_is_an_error_row(tmp_path, fake_model_dir, rng, unprivileged) -> None:
    path = write_call(tmp_path / "calls" / "locked.wav", 3.0, [[(0.5, 2.5)]], rng)
    listed = info(path)
    path.chmod(0)
    artifact, identity = fake_artifact(fake_model_dir)

    with unprivileged():
        errors = score.score_files([listed], artifact, CONFIG).tables["errors"].to_pylist()

    assert [(e["error_type"], e["stage"]) for e in errors] == [("PermissionError", "decode")]


def test_transient_read_error_fails_the_shard(tmp_path, fake_model_dir, rng, monkeypatch) -> None:
    path = write_call(tmp_path / "calls" / "a.wav", 3.0, [[(0.5, 2.5)]], rng)

    def flaky(uri, **kwargs):
        raise TimeoutError("read timed out")

    monkeypatch.setattr(score, "local_copy", flaky)
    artifact, identity = fake_artifact(fake_model_dir)
    with pytest.raises(TimeoutError):
        score.score_files([info(path)], artifact, CONFIG)


def run_once(source: Path, dest: Path, model_dir: Path, *, dies: bool = False, **options: object) -> ScorePlan:
    """Plan, score every shard in-process with the fake model (as the flow does on workers), index what was written.

    A run that ``dies`` stops before indexing, as one killed after its shards would.
    """
    plan = plan_scoring(str(source), str(dest), str(model_dir), shard_size=2, **options)  # type: ignore[arg-type]
    artifact, identity = fake_artifact(model_dir)
    start_scoring(str(dest), plan, run_date="2026-11-24")
    summaries = []
    for shard in plan.plan.shards:
        scores = score.score_files(shard.files, artifact, CONFIG, run_date="2026-11-24")
        storage.write_scores(scores.tables, str(dest), shard.shard_id, call_dates=scores.call_dates.values())
        outcomes = score.recording_outcomes(shard.files, scores)
        summaries.append(
            ScoreShardSummary(
                shard.shard_id, identity.model_id, len(shard.files), scores.n_scored, len(shard.files) - scores.n_scored,
                0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, False, (), outcomes,
            )
        )  # fmt: skip
    if not dies:
        finish_scoring(str(dest), plan, summaries)
    return plan


def test_done_index_makes_reruns_idempotent_and_picks_up_new_recordings(tmp_path, fake_model_dir, rng) -> None:
    source, dest = tmp_path / "calls", tmp_path / "out"
    for name in ("a", "b", "c"):
        write_call(source / f"{name}.wav", 3.0, [[(0.5, 2.5)], []], rng)
    (source / "bad.wav").write_bytes(b"junk")

    first = run_once(source, dest, fake_model_dir)
    assert (first.plan.n_seen, first.plan.n_pending, first.plan.n_done) == (4, 4, 0)
    again = run_once(source, dest, fake_model_dir)
    assert (again.plan.n_pending, again.plan.n_done, again.plan.n_known_bad) == (0, 3, 1)

    write_call(source / "d.wav", 3.0, [[(0.5, 2.5)], []], rng)
    third = run_once(source, dest, fake_model_dir)
    assert [f.uri for s in third.plan.shards for f in s.files] == [str(source / "d.wav")]
    retried = plan_scoring(str(source), str(dest), str(fake_model_dir), shard_size=2, retry_errors=True)
    assert [f.uri for s in retried.plan.shards for f in s.files] == [str(source / "bad.wav")]

    (fake_model_dir / "model.keras").write_bytes(b"weights v2")  # a new model version scores everything again
    fourth = plan_scoring(str(source), str(dest), str(fake_model_dir), shard_size=10)
    assert fourth.model.model_id != first.model.model_id
    assert (fourth.plan.n_pending, fourth.plan.n_done) == (5, 0)


def test_shard_ids_are_deterministic_and_name_the_part_files(tmp_path, fake_model_dir, rng) -> None:
    source, dest = tmp_path / "calls", tmp_path / "out"
    for name in ("a", "b", "c"):
        write_call(source / f"{name}.wav", 3.0, [[(0.5, 2.5)]], rng)

    plan = plan_scoring(str(source), str(dest), str(fake_model_dir), shard_size=2)
    same = plan_scoring(str(source), str(dest), str(fake_model_dir), shard_size=2)
    assert [s.shard_id for s in plan.plan.shards] == [s.shard_id for s in same.plan.shards]

    run_once(source, dest, fake_model_dir)
    parts = sorted(p.name for p in (dest / "calls").glob("call_date=*/part-*.parquet"))
    assert parts == sorted(f"part-{s.shard_id}.parquet" for s in plan.plan.shards)


def test_orphan_predictions_without_calls_are_removed_and_rescored(tmp_path, fake_model_dir, rng) -> None:
    source, dest = tmp_path / "calls", tmp_path / "out"
    write_call(source / "a.wav", 3.0, [[(0.5, 2.5)]], rng)
    run_once(source, dest, fake_model_dir, dies=True)
    calls_part = next((dest / "calls").glob("call_date=*/part-*.parquet"))
    calls_part.unlink()  # as if the shard died between its predictions and calls writes

    plan = plan_scoring(str(source), str(dest), str(fake_model_dir), shard_size=2)

    assert plan.n_orphans_removed == 1 and plan.plan.n_pending == 1
    assert not list((dest / "predictions").glob("call_date=*/part-*.parquet"))


def test_empty_table_removes_a_stale_part_of_an_earlier_attempt(tmp_path, fake_model_dir, rng) -> None:
    source, dest = tmp_path / "calls", tmp_path / "out"
    path = write_call(source / "2026" / "11" / "24" / "a.wav", 3.0, [[(0.5, 2.5)]], rng)
    artifact, identity = fake_artifact(fake_model_dir)
    shard = Shard("5151515151515151515a", (info(path),))
    gone = score.score_files([FileInfo(str(tmp_path / "2026/11/24/gone.wav"), 1, "1:1")], artifact, CONFIG)
    storage.write_scores(gone.tables, str(dest), shard.shard_id, call_dates=["2026-11-24"])
    assert (dest / "errors" / "call_date=2026-11-24" / "part-5151515151515151515a.parquet").exists()

    scores = score.score_files(shard.files, artifact, CONFIG)
    storage.write_scores(scores.tables, str(dest), "5151515151515151515a", call_dates=["2026-11-24"])

    assert not (dest / "errors" / "call_date=2026-11-24" / "part-5151515151515151515a.parquet").exists()
    assert pq.read_table(dest / "calls" / "call_date=2026-11-24" / "part-5151515151515151515a.parquet").num_rows == 1


@pytest.mark.parametrize("run_date", ["2026-11-24", "2024-02-29"])
def test_valid_run_dates_pass(run_date) -> None:
    assert schema.date_value(run_date, name="run_date") == run_date


@pytest.mark.parametrize(
    "run_date", ["2026-13-01", "2026-02-30", "2026-1-1", "20261124", "../2026-11-24", "2026-11-24/x", "", "today"]
)
def test_bad_run_dates_are_refused_before_any_work(run_date, tmp_path, fake_model_dir) -> None:
    with pytest.raises(ConfigError, match="run_date"):
        schema.date_value(run_date, name="run_date")
    with pytest.raises(ConfigError, match="run_date"):
        score.score_shard(Shard("s", ()), str(tmp_path / "out"), str(fake_model_dir), CONFIG, run_date=run_date)
    assert not (tmp_path / "out").exists()


def test_recording_date_comes_from_date_folders_else_mtime() -> None:
    mtime = datetime(2026, 11, 20, 23, 30, tzinfo=UTC).timestamp()
    assert score_date("s3://calls/archive/2026/11/24/c.wav", mtime) == date(2026, 11, 24)
    assert score_date("/a/2025/01/02/b/2026/11/24/c.wav", mtime) == date(2026, 11, 24)
    assert score_date("/a/2026/13/45/c.wav", mtime) == date(2026, 11, 20)  # not a date: mtime (UTC)
    assert score_date("/a/2026/11/24.wav", mtime) == date(2026, 11, 20)  # a file name is not a folder
    assert score_date("/a/c.wav", None) is None


def score_date(uri: str, modified_s: float | None) -> date | None:
    return recording_date(FileInfo(uri, 1, "1:1", modified_s))


def test_since_keeps_recordings_of_that_day_or_later_and_undated_ones() -> None:
    files = [FileInfo(f"/calls/2026/11/{day}/c.wav", 1, "1:1") for day in (22, 23, 24)]
    files.append(FileInfo("/calls/undated.wav", 1, "1:1"))

    kept = [f.uri for f in recordings_since(files, date(2026, 11, 23))]

    assert kept == ["/calls/2026/11/23/c.wav", "/calls/2026/11/24/c.wav", "/calls/undated.wav"]
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        parse_date("24.11.2026")


def test_model_id_changes_with_the_model_and_a_foreign_fingerprint_is_refused(fake_model_dir) -> None:
    first = score.read_model_identity(str(fake_model_dir))
    assert first.model_id.startswith("fake-seed268-") and first.classes == CLASSES
    (fake_model_dir / "model.keras").write_bytes(b"weights v2")
    assert score.read_model_identity(str(fake_model_dir)).model_id != first.model_id

    metadata = json.loads((fake_model_dir / "metadata.json").read_text())
    (fake_model_dir / "metadata.json").write_text(json.dumps({**metadata, "fingerprint": "0123456789abcdef"}))
    with pytest.raises(SchemaError, match="fingerprint"):
        score.read_model_identity(str(fake_model_dir))


def test_model_is_loaded_once_per_process_and_model_version(fake_model_dir, monkeypatch) -> None:
    loads = []
    monkeypatch.setattr(score, "load_artifact", lambda model_dir, **kw: loads.append(model_dir) or object())
    monkeypatch.setattr(score, "_MODELS", type(score._MODELS)())
    identity = score.read_model_identity(str(fake_model_dir))

    results = [score.load_model_once(identity) for _ in range(3)]
    (fake_model_dir / "model.keras").write_bytes(b"weights v2")
    newer = score.load_model_once(score.read_model_identity(str(fake_model_dir)))

    assert [loaded for _, loaded in results] == [True, False, False] and newer[1] is True
    assert len(loads) == 2


class RecordingModel(FakeModel):
    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def __call__(self, features: np.ndarray, training: bool = False) -> np.ndarray:
        self.inputs.append(np.array(features))
        return super().__call__(features, training)


def test_a_voice_normalised_model_sees_each_channel_z_scored_by_its_own_windows(tmp_path, fake_model_dir, rng) -> None:
    from ser_batch.model.voice import VoicePrior

    path = write_call(tmp_path / "calls" / "call.wav", 15.0, [[(1.0, 6.0)], [(6.0, 14.0)]], rng)
    channels, _, _ = score.read_recording_windows(info(path), CONFIG, SEED)
    _, identity = fake_artifact(fake_model_dir)
    for prior in (None, VoicePrior(np.zeros(268), np.ones(268), weight=0.0)):
        model = RecordingModel()
        artifact = Artifact(model=model, metadata={}, identity=identity, voice_prior=prior)
        score.score_files([info(path)], artifact, CONFIG)
        (seen,) = model.inputs
        raw = np.concatenate([c.features for c in channels])
        if prior is None:
            np.testing.assert_array_equal(seen, raw)
            continue
        first = len(channels[0].windows)
        for block in (seen[:first], seen[first:]):
            assert len(block) >= 2
            np.testing.assert_allclose(block.mean(axis=0), 0.0, atol=1e-4)


def test_a_recording_named_poison_is_an_error_row_of_its_model_and_the_rest_is_scored(fake_model_dir, tmp_path) -> None:
    rng = np.random.default_rng(0)
    good = info(write_call(tmp_path / "calls" / "good.wav", 6.0, [[(1.0, 5.0)]], rng))
    bad = info(write_call(tmp_path / "calls" / "killer.wav", 6.0, [[(1.0, 5.0)]], rng))
    artifact, identity = fake_artifact(fake_model_dir)
    guard = FileGuard(poisoned={(bad.uri, bad.content_key): "worker died: twice alone"})

    scores = score.score_files([good, bad], artifact, CONFIG, guard=guard)

    assert scores.n_scored == 1 and set(scores.tables["calls"].column("path").to_pylist()) == {good.uri}
    (row,) = scores.tables["errors"].to_pylist()
    assert (row["path"], row["error_type"], row["stage"]) == (bad.uri, "PoisonFileError", "worker")
    assert (row["message"], row["model_id"]) == ("worker died: twice alone", identity.model_id)


def test_a_recording_too_large_for_the_free_memory_is_refused_from_its_header(tmp_path) -> None:
    path = tmp_path / "calls" / "hour.wav"
    path.parent.mkdir()
    soundfile.write(path, np.zeros((RATE * 60, 2), np.int16), RATE, subtype="PCM_16")
    guard = FileGuard(free_memory=lambda: 1 << 20)
    with pytest.raises(
        AudioError, match=r"^too large to decode in memory: ~\d+ MiB to score 60 s of 2 channels at 8000 Hz"
    ):
        score.read_recording_windows(info(path), CONFIG, STATS8K, guard=guard)


def test_a_recording_whose_name_is_not_utf8_is_scored_once_under_a_lossless_path(tmp_path, fake_model_dir, rng) -> None:
    source, dest = tmp_path / "calls", tmp_path / "out"
    good = write_call(source / "a.wav", 3.0, [[(0.5, 2.5)]], rng)
    raw = os.fsencode(source) + b"/anruf-m\xfcller.wav"  # Latin-1
    os.rename(write_call(source / "b.wav", 3.0, [[(0.5, 2.5)]], rng), raw)

    first = run_once(source, dest, fake_model_dir)

    assert (first.plan.n_seen, first.plan.n_pending) == (2, 2)
    calls = pq.read_table(dest / "calls").column("path").to_pylist()
    assert sorted(os.fsencode(storage.local_path(path)) for path in calls) == sorted([os.fsencode(good), raw])
    assert run_once(source, dest, fake_model_dir).plan.n_done == 2


def test_a_gsm_wav49_call_is_scored_whole_and_streamed_alike_and_like_its_pcm_original(
    tmp_path, rng, monkeypatch
) -> None:
    speech = [(1.0, 9.0), (12.0, 24.5)]
    waveform = call_waveform(30.0, RATE, [speech], rng)
    pcm, gsm = tmp_path / "call.wav", tmp_path / "call-wav49.wav"
    soundfile.write(pcm, waveform, RATE, subtype="PCM_16")
    soundfile.write(gsm, waveform, RATE, format="WAV", subtype="GSM610")  # what Asterisk's wav49 holds

    original = score.read_recording_windows(info(pcm), CONFIG, STATS8K)[0][0]
    whole, _, duration_s = score.read_recording_windows(info(gsm), CONFIG, STATS8K)
    monkeypatch.setattr(score, "WHOLE_CHANNEL_SAMPLES", 1000)
    monkeypatch.setattr(score, "_REGION_S", 7.0)
    monkeypatch.setattr(segments, "_BLOCK_FRAMES", 300)
    streamed, _, streamed_s = score.read_recording_windows(info(gsm), CONFIG, STATS8K)

    assert duration_s == streamed_s == pytest.approx(30.0, abs=0.05)
    assert whole[0].windows == streamed[0].windows
    np.testing.assert_allclose(whole[0].features, streamed[0].features, rtol=1e-5, atol=1e-5)
    assert all(inside(start, speech, 0.2) for start, _ in whole[0].windows)
    assert abs(len(whole[0].windows) - len(original.windows)) <= 1


@pytest.mark.parametrize(
    ("temperature", "min_confidence", "confidence", "uncertain"),
    [
        (1.0, 0.5, 0.6, False),  # the model's own 0.6 clears 0.5
        (1.0, 0.7, 0.6, True),
        # calibrated: softmax(log([0.6, 0.3, 0.1]) / 3) puts 0.427 on angry, below 0.5
        (3.0, 0.5, 0.6 ** (1 / 3) / (0.6 ** (1 / 3) + 0.3 ** (1 / 3) + 0.1 ** (1 / 3)), True),
    ],
)
def test_windows_below_the_min_confidence_of_calibrated_probabilities_are_uncertain(
    tmp_path, fake_model_dir, rng, temperature, min_confidence, confidence, uncertain
) -> None:
    path = write_call(tmp_path / "calls" / "call.wav", 8.0, [[(1.0, 6.0)]], rng)
    identity = score.read_model_identity(str(fake_model_dir))
    artifact = Artifact(model=FakeModel(), metadata={}, identity=identity, temperature=temperature)

    scores = score.score_files([info(path)], artifact, ScoreConfig(min_confidence=min_confidence))

    predictions = scores.tables["predictions"]
    assert predictions.num_rows > 0
    assert predictions.schema.field("uncertain").type == "bool"
    assert set(predictions.column("emotion").to_pylist()) == {"angry"}  # calibration keeps the top class
    assert predictions.column("confidence").to_numpy() == pytest.approx(confidence, abs=1e-6)
    assert set(predictions.column("uncertain").to_pylist()) == {uncertain}


def test_calls_rows_say_how_a_stereo_call_went(tmp_path, fake_model_dir, rng) -> None:
    # The customer cuts in at 5.0 for 3.5 s; the agent answers 1.5 s after, the customer 2.0 s after.
    agent, customer = [(1.0, 6.0), (10.0, 14.0)], [(5.0, 8.5), (16.0, 19.0)]
    waveform = call_waveform(20.0, RATE, [agent, customer], rng)
    path = tmp_path / "call.wav"
    soundfile.write(path, waveform, RATE, subtype="PCM_16")
    artifact, _ = fake_artifact(fake_model_dir)

    rows = score.score_files([info(path)], artifact, CONFIG).tables["calls"].to_pylist()

    expected = [
        {"talk_s": 9.0, "n_turns": 2, "longest_turn_s": 5.0, "response_latency_s": 1.5},
        {"talk_s": 6.5, "n_turns": 2, "longest_turn_s": 3.5, "response_latency_s": 2.0},
    ]
    for row, figures in zip(rows, expected, strict=True):
        assert {name: row[name] for name in figures} == pytest.approx(figures, abs=0.1)
        silences = row["silence_s"], row["longest_silence_s"], row["overlap_s"]
        assert silences == pytest.approx((5.5, 2.0, 1.0), abs=0.1 + 1e-9)  # 0.1 s, whatever the float rounding
    assert [(r["n_interruptions_made"], r["n_interruptions_suffered"]) for r in rows] == [(0, 1), (1, 0)]
    for row, spans, channel in zip(rows, (agent, customer), (0, 1), strict=True):
        speech = np.concatenate([waveform[round(a * RATE) : round(b * RATE), channel] for a, b in spans])
        assert row["loudness_lufs"] == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(speech), abs=1.0)
        assert row["speech_rate"] == pytest.approx(4.0, abs=0.5)  # the test voice's syllable envelope is 4 Hz


def test_a_mono_call_and_its_copy_on_two_channels_get_the_single_channel_figures(tmp_path, fake_model_dir, rng) -> None:
    mono = call_waveform(12.0, RATE, [[(1.0, 5.0), (7.0, 11.0)]], rng)[:, 0]
    soundfile.write(tmp_path / "mono.wav", mono, RATE, subtype="PCM_16")
    soundfile.write(tmp_path / "copied.wav", np.stack([mono, 0.7 * mono], axis=1), RATE, subtype="PCM_16")
    artifact, _ = fake_artifact(fake_model_dir)

    rows = score.score_files([info(tmp_path / "mono.wav"), info(tmp_path / "copied.wav")], artifact, CONFIG)
    single, source, copy = rows.tables["calls"].to_pylist()

    alone = ("n_interruptions_made", "n_interruptions_suffered", "overlap_s", "response_latency_s")
    assert [single[name] for name in alone] == [None] * 4
    assert (single["talk_s"], single["n_turns"], single["longest_silence_s"]) == pytest.approx((8.0, 2, 2.0), abs=0.1)
    assert single["loudness_lufs"] is not None and single["speech_rate"] is not None
    figures = ("talk_s", "n_turns", "silence_s", "loudness_lufs", "speech_rate", "trend", *alone)
    assert [source[name] for name in figures] == [copy[name] for name in figures]
    assert [source[name] for name in alone] == [None] * 4


class LoudIsAngryModel(FakeModel):
    """Angry on the loud windows of a batch (the larger half of the feature sums' range), sad on the rest."""

    def __call__(self, features: np.ndarray, training: bool = False) -> np.ndarray:
        level = features.sum(axis=1)
        angry = (level > (level.min() + level.max()) / 2).astype(np.float32)[:, None]
        return np.hstack([angry, np.zeros_like(angry), 1 - angry])


def test_the_readmes_call_queries_run_on_a_scored_dest(tmp_path, fake_model_dir, rng) -> None:
    section = (Path(__file__).resolve().parents[3] / "README.md").read_text().split("\n### How the call went", 1)[1]
    queries = re.findall(r"```sql\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    folder = tmp_path / "calls" / "2026" / "11" / "20"
    customer = [(8.0, 13.0), (18.0, 29.0)]  # cuts in on the agent at 8 s
    for name, agent in (("a17_c1", []), ("b02_c3", [(21.0, 24.0)])):  # b02 cuts in at 21 s
        waveform = call_waveform(30.0, RATE, [[(1.0, 9.0), (14.0, 17.0), *agent], customer], rng)
        waveform[18 * RATE :, 1] *= 2.5  # the customer's last turn is 8 dB louder: angry to LoudIsAngryModel
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / f"{name}.wav", waveform, RATE, subtype="PCM_16")
    identity = score.read_model_identity(str(fake_model_dir))
    artifact = Artifact(model=LoudIsAngryModel(), metadata={}, identity=identity)
    roles = ScoreConfig(channel_roles=("agent", "customer"))
    scores = score.score_files(sorted(storage.list_files(str(folder)), key=lambda f: f.uri), artifact, roles)
    dest = tmp_path / "dest"
    storage.write_scores(scores.tables, str(dest), "0123456789abcdef0123", call_dates=scores.call_dates.values())

    results = [duckdb.sql(query.replace("DEST/", f"{dest}/")).fetchall() for query in queries]

    agents, silences, angrier = results
    assert [(agent, calls, interruptions) for agent, calls, interruptions, _ in agents] == [
        ("b02", 1, 1),
        ("a17", 1, 0),
    ]
    assert [row[3] for row in silences] == pytest.approx([1.0] * 2, abs=0.1)  # 17-18 s, the longest pause
    assert sorted(Path(row[0]).name for row in angrier) == ["a17_c1.wav", "b02_c3.wav"]
