from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ser_batch import schema, storage
from ser_batch.config import FEATURE_SETS, feature_config
from ser_batch.features.extract import feature_bytes, feature_vector
from ser_batch.jobs import EXIT_TIMED_OUT, FileGuard, augment_files, featurize_files
from ser_batch.storage.audio import decoding_bytes, read_audio

STATS8K = feature_config("stats8k")


def run_watched(
    body: str, tmp_path: Path, *, limit_s: float, backstop_s: float = 30.0
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``body`` in a fresh interpreter with ``guard`` (naming overruns in tmp_path/named) and ``info`` defined."""
    prelude = f"""
import ctypes, time
from pathlib import Path
from ser_batch.jobs import FileGuard
from ser_batch.shards import FileInfo

def name(info, limit_s):
    Path({str(tmp_path / "named")!r}).write_text(f"{{info.uri}} {{limit_s}}")

guard = FileGuard(time_limit_s={limit_s}, on_time_limit=name, backstop_s={backstop_s})
info = FileInfo("/calls/stuck.wav", 1, "1:1")
"""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(body)], capture_output=True, text=True, timeout=60, check=False
    )
    return done, time.monotonic() - started


def test_a_file_over_its_time_limit_is_named_and_its_process_ended(tmp_path) -> None:
    body = """
        with guard.watch(info):
            time.sleep(60)  # a decoder stuck in C with the GIL released
    """
    done, _ = run_watched(body, tmp_path, limit_s=0.5)
    assert done.returncode == EXIT_TIMED_OUT, done.stderr
    assert (tmp_path / "named").read_text() == "/calls/stuck.wav 0.5"


def test_a_file_stuck_holding_the_gil_is_ended_by_faulthandler_unnamed(tmp_path) -> None:
    # pause() through PyDLL keeps the GIL: no Python thread runs again, so only faulthandler's C thread can act.
    body = """
        with guard.watch(info):
            ctypes.PyDLL(None).pause()
    """
    done, elapsed_s = run_watched(body, tmp_path, limit_s=0.3, backstop_s=0.5)
    assert done.returncode == 1, done.stderr
    assert "Timeout (0:00:00" in done.stderr and elapsed_s < 30
    assert not (tmp_path / "named").exists()


def test_files_within_their_limit_leave_no_timer_behind(tmp_path) -> None:
    body = """
        for _ in range(200):
            with guard.watch(info):
                pass
        time.sleep(1.0)  # past the limit and the backstop of every watch above
        print("alive")
    """
    done, _ = run_watched(body, tmp_path, limit_s=0.2, backstop_s=0.2)
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr
    assert not (tmp_path / "named").exists()


def listed(folder: Path) -> dict[str, storage.FileInfo]:
    return {Path(info.uri).name: info for info in storage.list_files(str(folder))}


def test_a_poisoned_file_is_recorded_with_its_reason_and_not_opened(write_wav, tmp_path) -> None:
    write_wav("in/good.wav")
    write_wav("in/killer.wav")
    files = listed(tmp_path / "in")
    (tmp_path / "in" / "killer.wav").unlink()  # opening it now would record FileNotFoundError instead
    poisoned = {(files["killer.wav"].uri, files["killer.wav"].content_key): "worker died: twice alone"}

    features, errors = featurize_files(list(files.values()), STATS8K, guard=FileGuard(poisoned=poisoned))

    assert features.column("path").to_pylist() == [files["good.wav"].uri]
    (row,) = errors.to_pylist()
    assert (row["error_type"], row["stage"], row["message"]) == (
        "PoisonFileError",
        "worker",
        "worker died: twice alone",
    )


def test_a_changed_file_is_not_held_to_its_old_content_s_verdict(write_wav) -> None:
    path = write_wav("in/clip.wav")
    info = listed(path.parent)["clip.wav"]
    poisoned = {(info.uri, "another content key"): "timed out: still running after 600 s"}
    features, errors = featurize_files([info], STATS8K, guard=FileGuard(poisoned=poisoned))
    assert (features.num_rows, errors.num_rows) == (1, 0)


def test_a_poisoned_clip_in_the_augment_pass_is_recorded_with_stage_augment(write_wav, tmp_path) -> None:
    path = write_wav("in/03-01-05-01-02-01-12.wav", duration_s=1.0)
    info = listed(path.parent)[path.name]
    guard = FileGuard(poisoned={(info.uri, info.content_key): "worker died: twice alone"})
    copies, errors = augment_files([info], STATS8K, guard=guard)
    assert copies.num_rows == 0
    assert [(r["error_type"], r["stage"]) for r in errors.to_pylist()] == [("PoisonFileError", schema.AUGMENT_STAGE)]


def test_a_file_too_large_for_the_free_memory_is_refused_from_its_header(write_wav, tmp_path) -> None:
    write_wav("in/small.wav", duration_s=1.0)
    write_wav("in/wide.wav", duration_s=10.0, sample_rate=48_000, channels=8)  # ~18 MiB decoded and high-passed
    files = listed(tmp_path / "in")
    asked: list[int] = []

    def free_memory() -> int:
        asked.append(1)
        return 4 << 20

    features, errors = featurize_files(list(files.values()), STATS8K, guard=FileGuard(free_memory=free_memory))

    assert features.column("path").to_pylist() == [files["small.wav"].uri]
    (row,) = errors.to_pylist()
    assert (row["error_type"], row["stage"]) == ("AudioError", "decode")
    assert row["message"] == (
        "too large to decode in memory: ~18 MiB to decode 10 s of 8 channels at 48000 Hz, 4 MiB free on this worker"
    )
    assert len(asked) == 3  # before decoding each file, and before the small one's features


def test_a_file_whose_features_need_more_than_the_free_memory_is_refused_before_featurizing(
    write_wav, tmp_path
) -> None:
    path = write_wav("in/long.wav", duration_s=30.0, sample_rate=8_000)  # decodes in 1 MiB, features need ~42 MiB
    features, errors = featurize_files(
        list(listed(path.parent).values()), STATS8K, guard=FileGuard(free_memory=lambda: 8 << 20)
    )
    assert features.num_rows == 0
    (row,) = errors.to_pylist()
    assert row["stage"] == "features"
    assert row["message"].startswith("too large to decode in memory: ~41 MiB to featurize 30 s at 8000 Hz")


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_feature_bytes_bounds_what_featurizing_allocates(name: str) -> None:
    config = feature_config(name)
    t = np.arange(20 * config.sample_rate) / config.sample_rate
    waveform = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    feature_vector(waveform[: config.sample_rate], config.sample_rate, config)  # first-call caches are not the point
    tracemalloc.start()
    feature_vector(waveform, config.sample_rate, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0.1 * feature_bytes(waveform.size, config) < peak <= feature_bytes(waveform.size, config)


@pytest.mark.parametrize(
    ("channels", "sample_rate", "target_rate"), [(1, 16_000, 8_000), (8, 48_000, 22_050), (2, 8_000, None)]
)
def test_decoding_bytes_bounds_what_read_audio_allocates(write_wav, channels, sample_rate, target_rate) -> None:
    path = write_wav("clip.wav", duration_s=5.0, sample_rate=sample_rate, channels=channels)
    tracemalloc.start()
    read_audio(str(path), sample_rate=target_rate)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    bound = decoding_bytes(5 * sample_rate, channels, sample_rate, target_rate)
    assert 0.5 * bound < peak <= 1.1 * bound
