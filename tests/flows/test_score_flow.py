from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
from signals_gen import call_waveform, mp4, unfinalised

from flows.cli import main
from flows.score import score
from ser_batch import shards, storage
from ser_batch.config import TrainConfig, feature_config
from ser_batch.demo import conversation, synthetic_clip
from ser_batch.errors import ConfigError
from ser_batch.jobs.featurize import featurize_files
from ser_batch.model.fit import fit
from ser_batch.storage.audio import read_audio
from ser_batch.storage.model_dir import save_artifact

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = feature_config("seed268")
CLASSES = ("angry", "happy", "sad")
RUN_DATE = "2026-11-24"
CATCH_UP = "2026-11-30"
RATE = 8000


def train_model(
    files: list[shards.FileInfo], model_dir: Path, *, classes: tuple[str, ...], seed: int = 0, epochs: int = 2
) -> None:
    table, errors = featurize_files(files, SEED)
    assert errors.num_rows == 0
    result = fit(table, TrainConfig(model="seed-mlp", epochs=epochs, split="none", classes=classes, seed=seed))
    save_artifact(str(model_dir), result)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    for emotion, code in {"angry": "05", "happy": "03", "sad": "04"}.items():
        for i in range(6):
            path = root / "clips" / f"Actor_{i % 3 + 1:02d}" / f"03-01-{code}-01-01-0{i % 2 + 1}-{i % 3 + 1:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, synthetic_clip(emotion, rng), 16_000)
    files = list(storage.list_files(str(root / "clips")))
    for name, seed in (("a", 0), ("b", 1)):
        train_model(files, root / name, classes=CLASSES, seed=seed)
    return {"a": root / "a", "b": root / "b"}


@pytest.fixture(scope="module")
def cluster(prefect):
    # One long-lived worker across runs, as on a real cluster: it keeps its loaded model.
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def write_call(path: Path, duration_s: float, channels: list[list[tuple[float, float]]], seed: int, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, call_waveform(duration_s, RATE, channels, np.random.default_rng(seed), **kw), RATE)


def read(dest: Path, table: str, query: str) -> list[tuple]:
    source = f"read_parquet('{dest}/{table}/*/*.parquet', hive_partitioning=true)"
    return duckdb.sql(query.replace("TABLE", source)).fetchall()


def test_a_catch_up_run_files_calls_under_their_own_dates_with_roles_and_a_new_model_scores_everything_again(
    models, cluster, tmp_path, capsys
) -> None:
    archive, dest = tmp_path / "archive", tmp_path / "out"
    day = archive / "2026" / "11" / "24"
    write_call(archive / "2026" / "11" / "23" / "c1.wav", 13.0, [[(1.0, 5.0), (9.0, 12.0)], [(5.5, 8.5)]], seed=1)
    write_call(day / "c2.wav", 8.0, [[(1.0, 6.0)], []], seed=2)  # the customer never speaks
    write_call(day / "c3.flac", 10.0, [[(0.5, 4.0)], [(5.0, 9.5)]], seed=3, kind="noise")
    (day / "junk.wav").write_bytes(b"RIFF....WAVE but not really")

    first = score(str(archive), str(dest), str(models["a"]), dask_address=cluster, shard_size=2, run_date=CATCH_UP,
                  channel_roles=["agent", "customer"], settle_s=0)  # fmt: skip

    assert (first["recordings_seen"], first["scored"], first["failed"], first["shards"]) == (4, 3, 1, 2)
    assert first["model_loads"] == 1  # one worker, two shards: loaded once
    assert first["call_dates"] == ["2026-11-23", RUN_DATE]
    calls = read(
        dest,
        "calls",
        "SELECT regexp_extract(path, '[^/]+$'), channel, n_segments, dominant_emotion, run_date, model_id, "
        "call_date, role FROM TABLE ORDER BY 1, 2",
    )
    assert [(name, channel) for name, channel, *_ in calls] == [
        (n, c) for n in ("c1.wav", "c2.wav", "c3.flac") for c in (0, 1)
    ]
    assert all(row[4] == date(2026, 11, 30) and row[5] == first["model_id"] for row in calls)
    assert [(row[0], row[6], row[7]) for row in calls] == [
        (name, date(2026, 11, 23 if name == "c1.wav" else 24), role)
        for name in ("c1.wav", "c2.wav", "c3.flac")
        for role in ("agent", "customer")
    ]
    assert sorted(p.name for p in (dest / "calls").iterdir()) == ["call_date=2026-11-23", f"call_date={RUN_DATE}"]
    silent = calls[3]
    assert silent[2] == 0 and silent[3] is None
    assert all(row[2] > 0 and row[3] in CLASSES for index, row in enumerate(calls) if index != 3)
    segments = read(
        dest,
        "predictions",
        "SELECT regexp_extract(path, '[^/]+$'), channel, start_s, end_s, emotion, confidence FROM TABLE ORDER BY ALL",
    )
    assert len(segments) == sum(row[2] for row in calls)
    assert all(
        0 <= start < end <= 13.0 and emotion in CLASSES and 0 < confidence <= 1
        for _, _, start, end, emotion, confidence in segments
    )
    c1_customer = [(start, end) for name, channel, start, end, *_ in segments if (name, channel) == ("c1.wav", 1)]
    assert c1_customer and all(5.4 <= start and end <= 8.6 for start, end in c1_customer)
    stored = pq.read_table(dest / "calls" / f"call_date={RUN_DATE}").to_pylist()  # read without DuckDB or partitioning
    customers = {Path(row["path"]).name: row for row in stored if row["role"] == "customer"}
    assert sorted(customers) == ["c2.wav", "c3.flac"]
    assert customers["c2.wav"]["n_segments"] == 0 and all(customers["c2.wav"][f"share_{c}"] == 0 for c in CLASSES)
    assert all(abs(sum(row[f"share_{c}"] for c in CLASSES) - 1) < 1e-6 for row in stored if row["n_segments"])
    for threshold in (-1.0, 0.2):  # the README's query at 0.2; at -1 it must find both customers of the 24th
        angry_customers = read(
            dest,
            "calls",
            f"SELECT path FROM TABLE WHERE call_date = DATE '{RUN_DATE}' AND role = 'customer' "
            f"AND share_angry > {threshold}",
        )
        expected = sorted(row["path"] for row in customers.values() if row["share_angry"] > threshold)
        assert sorted(path for (path,) in angry_customers) == expected, threshold
    assert read(dest, "errors", "SELECT regexp_extract(path, '[^/]+$'), stage FROM TABLE") == [("junk.wav", "decode")]

    again = score(str(archive), str(dest), str(models["a"]), dask_address=cluster, shard_size=2,
                  since=date(2026, 11, 24), settle_s=0)  # fmt: skip  # a datetime.date, as Prefect may pass it
    assert (again["scored"], again["already_scored"], again["known_bad_skipped"], again["shards"]) == (0, 2, 1, 0)

    write_call(archive / "2026" / "11" / "25" / "c4.wav", 6.0, [[(1.0, 5.0)], [(1.5, 4.5)]], seed=4)
    capsys.readouterr()
    assert (
        main(
            [
                "score",
                str(archive),
                str(dest),
                "--model",
                str(models["a"]),
                "--dask-address",
                cluster,
                "--since",
                "2026-11-25",
                "--settle-s",
                "0",
                "--json",
            ]
        )
        == 0
    )
    third = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # `--since` reaches the flow as text
    assert (third["recordings_listed"], third["recordings_seen"], third["scored"]) == (5, 1, 1)
    assert third["model_loads"] == 0  # the worker still holds model a
    assert read(dest, "calls", "SELECT count(DISTINCT path), count(*) FROM TABLE") == [(4, 8)]

    fourth = score(
        str(archive), str(dest), str(models["b"]), dask_address=cluster, shard_size=10, run_date=RUN_DATE, settle_s=0
    )
    assert (fourth["scored"], fourth["failed"], fourth["already_scored"], fourth["model_loads"]) == (4, 1, 0, 1)
    assert fourth["model_id"] != first["model_id"]
    per_model = read(dest, "calls", "SELECT model_id, count(*) FROM TABLE GROUP BY ALL ORDER BY ALL")
    assert sorted(per_model) == sorted([(first["model_id"], 8), (fourth["model_id"], 8)])


def test_a_recording_scored_while_growing_keeps_one_current_row_per_channel(models, cluster, tmp_path) -> None:
    archive, dest = tmp_path / "archive", tmp_path / "out"
    day = archive / "2026" / "11" / "24"
    an_hour_ago = time.time() - 3600
    write_call(day / "c1.wav", 6.0, [[(1.0, 5.0)], [(1.5, 4.5)]], seed=1)
    os.utime(day / "c1.wav", (an_hour_ago, an_hour_ago))
    write_call(day / "c2.wav", 6.0, [[(1.0, 5.0)], [(2.0, 4.0)]], seed=2)  # still being copied in at 02:00

    first = score(str(archive), str(dest), str(models["a"]), dask_address=cluster, run_date="2026-11-24")

    assert (first["scored"], first["still_being_written"]) == (1, 1)
    write_call(day / "c1.wav", 12.0, [[(1.0, 5.0), (7.0, 11.0)], [(1.5, 4.5)]], seed=1)  # c1 had grown
    for name in ("c1.wav", "c2.wav"):
        os.utime(day / name, (an_hour_ago, an_hour_ago))
    second = score(str(archive), str(dest), str(models["a"]), dask_address=cluster, run_date="2026-11-25")

    assert (second["scored"], second["still_being_written"]) == (2, 0) and second["replaced_rows_removed"] > 0
    key = f"{(day / 'c1.wav').stat().st_size}:{(day / 'c1.wav').stat().st_mtime_ns}"
    calls = read(dest, "calls", "SELECT regexp_extract(path, '[^/]+$'), channel, content_key FROM TABLE ORDER BY 1, 2")
    assert [(name, channel) for name, channel, _ in calls] == [(n, c) for n in ("c1.wav", "c2.wav") for c in (0, 1)]
    assert {k for name, _, k in calls if name == "c1.wav"} == {key}
    segments = read(dest, "predictions", "SELECT DISTINCT content_key FROM TABLE WHERE path LIKE '%c1.wav'")
    assert segments == [(key,)]


def test_a_second_score_run_into_a_dest_in_use_exits_2_naming_the_first(models, tmp_path, capsys) -> None:
    from ser_batch.storage.lease import hold_lease

    (tmp_path / "archive").mkdir()
    dest = tmp_path / "out"
    argv = ["score", str(tmp_path / "archive"), str(dest), "--model", str(models["a"])]

    with hold_lease(str(dest), job="score"):
        assert main(argv) == 2

    error = capsys.readouterr().err
    assert error.startswith(f"ser-batch: error: {dest} is in use by a score run on host {socket.gethostname()}")
    assert f"(pid {os.getpid()})" in error and not (dest / "calls").exists()


def test_cli_refuses_bad_settings_before_any_work(models, tmp_path, capsys) -> None:
    (tmp_path / "archive").mkdir()
    base = ["score", str(tmp_path / "archive"), str(tmp_path / "out"), "--model"]
    cases = [
        ([*base, str(tmp_path / "nope")], "not found"),
        ([*base, str(models["a"]), "--since", "24/11/2026"], "YYYY-MM-DD"),
        ([*base, str(models["a"]), "--window-s", "2", "--hop-s", "3"], "hop_s"),
        ([*base, str(models["a"]), "--channel-roles", "agent"], "one name per channel, at least two"),
        ([*base, str(models["a"]), "--channel-roles", "agent,"], "a role name is empty"),
        ([*base, str(models["a"]), "--min-confidence", "1.5"], "min_confidence"),
        (["score", str(tmp_path / "nope"), str(tmp_path / "out"), "--model", str(models["a"])], "not found"),
    ]
    for args, message in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "calls").exists()


def _broken_copies(model_dir: Path, root: Path) -> dict[str, Path]:
    """Copies of a model directory broken as they are found in the field."""
    copies = {name: root / name for name in ("truncated", "incompatible", "format-2")}
    for folder in copies.values():
        shutil.copytree(model_dir, folder)
    model = copies["truncated"] / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # an interrupted copy
    with (
        zipfile.ZipFile(model_dir / "model.keras") as source,
        zipfile.ZipFile(copies["incompatible"] / "model.keras", "w") as out,
    ):
        for item in source.infolist():  # as a later Keras might write it: a layer class this one does not have
            data = source.read(item.filename)
            out.writestr(item, data.replace(b'"Dense"', b'"DenseV9"') if item.filename == "config.json" else data)
    for name, change in (("incompatible", {"versions": {"keras": "9.0.0"}}), ("format-2", {"format_version": 2})):
        metadata = json.loads((copies[name] / "metadata.json").read_text())
        (copies[name] / "metadata.json").write_text(json.dumps({**metadata, **change}))
    return copies


def test_a_broken_model_directory_exits_2_before_any_work_with_one_line_naming_it(prefect, models, tmp_path) -> None:
    archive, dest = tmp_path / "archive", tmp_path / "out"
    write_call(archive / "2026" / "11" / "24" / "c1.wav", 6.0, [[(1.0, 5.0)]], seed=1)
    expected = {"truncated": "not a whole .keras", "incompatible": "Keras 9.0.0", "format-2": "format_version 2"}

    for name, model_dir in _broken_copies(models["a"], tmp_path / "models").items():
        started = time.monotonic()
        result = subprocess.run([str(Path(sys.executable).parent / "ser-batch"), "score", str(archive), str(dest), "--model",
                                 str(model_dir), "--n-workers", "1"], capture_output=True, text=True, timeout=180)  # fmt: skip

        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"ser-batch: error: {model_dir}") and expected[name] in last, output
        assert "retrain" in last and "Traceback" not in output and "ser-batch-model-" not in output, output
        assert "Beginning flow run" not in output, output  # refused by the up-front check, before any work
        assert not (dest / "calls").exists() and not (dest / "predictions").exists()
        print(f"{name}: exit 2 after {time.monotonic() - started:.1f} s")


def test_real_clips_in_stereo_8khz_calls_are_segmented_on_their_own_channel(ser_dev, models, cluster, tmp_path) -> None:
    with open(ser_dev / "MANIFEST.csv", newline="") as handle:
        manifest = [
            row
            for row in csv.DictReader(handle)
            if row["corpus"] == "ravdess" and row["emotion"] in {"angry", "happy", "sad", "neutral"}
        ]
    held_out = {"Actor_15", "Actor_16"}
    training = [row for row in manifest if row["speaker"] not in held_out][::8]
    calling = [row for row in manifest if row["speaker"] in held_out][::4][:12]
    assert len(calling) == 12
    files = [shards.FileInfo(str(ser_dev / row["relpath"]), 0, "0:0") for row in training]
    train_model(files, tmp_path / "model", classes=("angry", "happy", "neutral", "sad"), epochs=10)
    rng = np.random.default_rng(7)
    truth = {}
    for index in range(2):
        rows = calling[index * 6 : (index + 1) * 6]
        clips = [(read_audio(str(ser_dev / row["relpath"]), sample_rate=RATE).waveform, row["emotion"]) for row in rows]
        waveform, turns = conversation(clips, rng, sample_rate=RATE)
        path = tmp_path / "calls" / f"call-{index}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, waveform, RATE)
        truth[str(path)] = turns

    summary = score(
        str(tmp_path / "calls"),
        str(tmp_path / "out"),
        str(tmp_path / "model"),
        dask_address=cluster,
        run_date=RUN_DATE,
        settle_s=0,
    )

    assert (summary["scored"], summary["failed"], summary["channels"]) == (2, 0, 4)
    segments = read(tmp_path / "out", "predictions", "SELECT path, channel, start_s, end_s, emotion FROM TABLE")
    correct = 0
    for path, turns in truth.items():
        for turn in turns:
            mine = [
                s
                for s in segments
                if s[0] == path and s[1] == turn.channel and s[2] < turn.end_s and s[3] > turn.start_s
            ]
            assert mine, f"no segment for the clip at {turn.start_s:.1f}-{turn.end_s:.1f} s on channel {turn.channel}"
            correct += sum(s[4] == turn.label for s in mine)
    for path, channel, start, end, _ in segments:
        assert any(t.channel == channel and t.start_s - 0.1 <= start and end <= t.end_s + 0.1 for t in truth[path]), (
            f"segment {start:.2f}-{end:.2f} on channel {channel} of {path} is not inside one clip"
        )
    print(f"segment accuracy of a 10-epoch model on unseen speakers: {correct / len(segments):.0%} of {len(segments)}")


def test_nightly_deployment_takes_time_zone_and_parameters_from_the_environment(monkeypatch) -> None:
    from flows.serve import NIGHTLY_PARAMETERS, SCORE_PARAMETER_ENV, nightly_score

    for env in (*SCORE_PARAMETER_ENV.values(), "SER_BATCH_CHANNEL_ROLES"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("SER_BATCH_TIMEZONE", "Europe/Berlin")
    paused = nightly_score()
    assert (paused.name, paused.parameters, paused.schedules[0].active) == ("nightly", NIGHTLY_PARAMETERS, False)
    assert (paused.schedules[0].schedule.cron, paused.schedules[0].schedule.timezone) == ("0 2 * * *", "Europe/Berlin")

    monkeypatch.setenv("SER_BATCH_SCORE_SOURCE", "s3://calls/archive")
    monkeypatch.setenv("SER_BATCH_SCORE_DEST", "s3://calls/scores")
    monkeypatch.setenv("SER_BATCH_MODEL_DIR", "s3://models/seed-mlp")
    active = nightly_score()
    assert active.schedules[0].active and active.concurrency_limit == 1
    assert active.parameters == {
        "source": "s3://calls/archive",
        "dest": "s3://calls/scores",
        "model_dir": "s3://models/seed-mlp",
        **NIGHTLY_PARAMETERS,
    }

    monkeypatch.setenv("SER_BATCH_CHANNEL_ROLES", "agent, customer")
    assert nightly_score().parameters["channel_roles"] == ["agent", "customer"]
    monkeypatch.setenv("SER_BATCH_CHANNEL_ROLES", "agent")
    with pytest.raises(ConfigError, match="at least two"):
        nightly_score()

    monkeypatch.delenv("SER_BATCH_CHANNEL_ROLES")
    monkeypatch.setenv("SER_BATCH_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="time zone"):
        nightly_score()


def test_a_recording_that_kills_its_worker_is_recorded_for_its_model_and_the_rest_scored(
    models, hooked_cluster, tmp_path
) -> None:
    archive, dest = tmp_path / "archive", tmp_path / "out"
    day = archive / "2026" / "11" / "24"
    write_call(day / "c1.wav", 8.0, [[(1.0, 6.0)], [(2.0, 5.0)]], seed=1)
    write_call(day / "c3.wav", 8.0, [[(1.0, 6.0)], []], seed=3)
    write_call(day / "poison-segv" / "c2.wav", 8.0, [[(1.0, 6.0)], []], seed=2)  # its decoder crashes the worker

    first = score(str(archive), str(dest), str(models["a"]), dask_address=hooked_cluster.address, shard_size=3,
                  run_date=RUN_DATE, settle_s=0)  # fmt: skip

    assert (first["scored"], first["failed"]) == (2, 1)
    assert read(dest, "calls", "SELECT DISTINCT regexp_extract(path, '[^/]+$') FROM TABLE ORDER BY 1") == [
        ("c1.wav",),
        ("c3.wav",),
    ]
    errors = read(
        dest, "errors", "SELECT regexp_extract(path, '[^/]+$'), error_type, stage, message, model_id FROM TABLE"
    )
    assert [row[:3] for row in errors] == [("c2.wav", "PoisonFileError", "worker")]
    assert errors[0][3].startswith("worker died") and errors[0][4] == first["model_id"]
    # its shard of three died, then it alone twice; recorded without being opened again
    assert hooked_cluster.hit_counts(archive) == {"c2.wav": 3}

    again = score(str(archive), str(dest), str(models["a"]), dask_address=hooked_cluster.address, shard_size=3,
                  run_date=RUN_DATE, settle_s=0)  # fmt: skip

    assert (again["scored"], again["already_scored"], again["known_bad_skipped"]) == (0, 2, 1)
    assert hooked_cluster.hit_counts(archive) == {"c2.wav": 3}


def test_wav49_and_unfinalised_calls_are_scored_and_empty_or_m4a_ones_recorded(models, cluster, tmp_path) -> None:
    archive, dest = tmp_path / "archive", tmp_path / "out"
    day = archive / "2026" / "11" / "24"
    day.mkdir(parents=True)
    waveform = call_waveform(12.0, RATE, [[(1.0, 5.0), (7.0, 11.0)]], np.random.default_rng(5))
    soundfile.write(day / "pcm.wav", waveform, RATE, subtype="PCM_16")
    soundfile.write(day / "wav49.wav", waveform, RATE, format="WAV", subtype="GSM610")  # Asterisk's wav49
    soundfile.write(day / "unfinalised.wav", waveform, RATE, subtype="PCM_16")
    unfinalised(day / "unfinalised.wav", data_size=0)  # a recorder that never finalised its header
    (day / "empty.wav").write_bytes(b"")
    (day / "call.m4a").write_bytes(mp4(b"M4A "))

    summary = score(str(archive), str(dest), str(models["a"]), dask_address=cluster, run_date=RUN_DATE, settle_s=0)

    assert (summary["recordings_seen"], summary["scored"], summary["failed"]) == (5, 3, 2)
    calls = read(
        dest,
        "calls",
        "SELECT regexp_extract(path, '[^/]+$'), duration_s, n_segments, dominant_emotion FROM TABLE ORDER BY 1",
    )
    assert [row[0] for row in calls] == ["pcm.wav", "unfinalised.wav", "wav49.wav"]
    assert calls[1][1:] == calls[0][1:] and calls[0][1] == 12.0 and calls[0][2] > 0
    assert calls[2][1] == pytest.approx(12.0, abs=0.05) and abs(calls[2][2] - calls[0][2]) <= 1
    assert read(dest, "errors", "SELECT regexp_extract(path, '[^/]+$'), message FROM TABLE ORDER BY 1") == [
        (
            "call.m4a",
            "unsupported format: MP4 (brand M4A), which libsndfile does not decode; convert it to FLAC or WAV first",
        ),
        ("empty.wav", "empty file (0 bytes)"),
    ]
