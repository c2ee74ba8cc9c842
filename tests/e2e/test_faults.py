from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from signals_gen import voice

SER_BATCH = str(Path(sys.executable).parent / "ser-batch")
HOOKS = Path(__file__).parent / "hooks"

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]
N_FILES = 24


def _archive(root: Path) -> list[str]:
    import numpy as np
    import soundfile

    rng = np.random.default_rng(7)
    paths = []
    for index in range(N_FILES):
        path = root / f"speaker{index % 4}" / f"clip-{index:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, voice(2.0, 16_000, seed=index, f0_hz=rng.uniform(100, 400)), 16_000)
        paths.append(str(path))
    return paths


def _rows(dest: Path) -> Counter[str]:
    rows: Counter[str] = Counter()
    for part in dest.rglob("*.parquet"):
        rows.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())  # a partial file would raise here
    return rows


def _wait_for_parts(dest: Path, proc: subprocess.Popen[bytes], *, at_least: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(list(dest.rglob("part-*.parquet"))) >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before {at_least} part files were written")
        time.sleep(0.05)
    raise TimeoutError("no part files appeared")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [SER_BATCH, *args], stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )  # noqa: S603


def _faulty_env(base_env: dict[str, str], fault: str, dest: Path, report: Path, *, after: int) -> dict[str, str]:
    """``base_env`` with ``hooks/sitecustomize.py``'s ``fault`` armed once ``after`` part files are published under ``dest``."""
    pythonpath = os.pathsep.join(filter(None, [str(HOOKS), base_env.get("PYTHONPATH")]))
    return {**base_env, "PYTHONPATH": pythonpath, "SER_BATCH_TEST_FAULT": fault, "SER_BATCH_TEST_FAULT_DEST": str(dest),
            "SER_BATCH_TEST_FAULT_AFTER": str(after), "SER_BATCH_TEST_FAULT_REPORT": str(report)}  # fmt: skip


def _wait_until_held(hold: Path, proc: subprocess.Popen[bytes], *, timeout_s: float = 180) -> tuple[Path, Path]:
    """(temporary, part file) of a write caught between writing and naming, once a process reports one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = [marker for marker in hold.glob("held-*") if not marker.name.endswith(".partial")]
        if held:
            temporary, part = held[0].read_text().splitlines()
            return Path(temporary), Path(part)
        if proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before a part file was held")
        time.sleep(0.05)
    raise TimeoutError("no part file write was held")


def test_flow_killed_mid_write_leaves_only_whole_files_and_rerun_completes(tmp_path, base_env, run_cli) -> None:
    paths = _archive(tmp_path / "audio")
    dest, hold = tmp_path / "out", tmp_path / "hold"
    hold.mkdir()
    args = ["featurize", str(tmp_path / "audio"), str(dest), "--shard-size", "1", "--n-workers", "2", "--settle-s", "0"]
    proc = _start(args, _faulty_env(base_env, "hold", dest, hold, after=3), tmp_path / "killed.log")
    try:
        temporary, part = _wait_until_held(hold, proc)  # a worker wrote a part file and has not named it yet
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the flow, its Prefect API and its LocalCluster workers
        proc.wait(timeout=30)

    assert temporary.exists() and temporary.parent == part.parent and not part.exists()  # killed inside that write
    partial = _rows(dest)  # every visible part file reads whole
    assert 3 <= sum(partial.values()) < N_FILES, partial
    data = [
        p for p in dest.rglob("*") if p.is_file() and "_ser_batch" not in p.relative_to(dest).parts
    ]  # not the lease
    leftovers = [p.name for p in data if not p.name.endswith(".parquet")]
    assert temporary.name in leftovers and all(name.startswith(".") for name in leftovers), leftovers  # hidden

    rerun = run_cli([*args, "--json"])
    assert rerun.returncode == 0, rerun
    assert rerun.summary()["already_done"] == sum(partial.values())
    assert _rows(dest) == Counter({path: 1 for path in paths})


def test_worker_killed_mid_run_then_rerun_gives_every_input_exactly_once(
    tmp_path, base_env, own_dask_cluster, run_cli
) -> None:
    paths = _archive(tmp_path / "audio")
    dest = tmp_path / "out"
    args = [
        "featurize",
        str(tmp_path / "audio"),
        str(dest),
        "--shard-size",
        "1",
        "--dask-address",
        own_dask_cluster.address,
        "--settle-s",
        "0",
    ]
    proc = _start(args, base_env, tmp_path / "first.log")
    try:
        _wait_for_parts(dest, proc, at_least=2)
        victim = own_dask_cluster.workers[0].proc
        os.killpg(victim.pid, signal.SIGKILL)  # nanny and worker: no restart
        victim.wait(timeout=30)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = (tmp_path / "first.log").read_text()
    if proc.returncode != 0:  # allowed, but only with a clear one-line reason
        assert output.strip().splitlines()[-1].startswith("ser-batch: error:"), output[-3000:]
    assert all(count == 1 for count in _rows(dest).values())

    rerun = run_cli([*args, "--json"])
    assert rerun.returncode == 0, rerun
    assert _rows(dest) == Counter({path: 1 for path in paths})


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def _around(output: str, needle: str, n_chars: int = 3000) -> str:
    at = output.find(needle)
    return output[-n_chars:] if at < 0 else output[max(0, at - n_chars // 3) : at + n_chars]


def _last_json(output: str) -> str:
    return next(line for line in reversed(output.splitlines()) if line.startswith("{"))


def test_disk_full_mid_run_ends_in_one_line_without_retries_and_a_rerun_completes(
    tmp_path, base_env, run_cli, foreign_files
) -> None:
    paths = _archive(tmp_path / "audio")
    dest = tmp_path / "out"
    args = ["featurize", str(tmp_path / "audio"), str(dest), "--shard-size", "1", "--n-workers", "2", "--settle-s", "0"]

    full = run_cli(args, env=_faulty_env(base_env, "disk-full", dest, tmp_path, after=3))

    output = full.stdout + full.stderr
    assert full.returncode == 2, full
    assert _last_line(full.stderr).startswith("ser-batch: error: "), full
    assert "no space left on device; free space there and re-run the same command" in _last_line(full.stderr), full
    assert "Traceback" not in output, _around(output, "Traceback")
    retried = [line for line in output.splitlines() if "StorageError" in line and "Retry" in line]
    assert not retried, retried  # a full disk is not retried for 70 s
    partial = _rows(dest)  # every part file written before the disk filled reads whole
    assert 3 <= sum(partial.values()) < N_FILES and set(partial.values()) == {1}, partial
    assert not foreign_files(dest), foreign_files(dest)  # no temporary left behind

    rerun = run_cli([*args, "--json"])  # space freed: the same command
    assert rerun.returncode == 0, rerun
    assert rerun.summary()["already_done"] == sum(partial.values())
    assert _rows(dest) == Counter({path: 1 for path in paths})


def test_dask_scheduler_lost_mid_run_ends_in_one_line_and_a_rerun_completes(
    tmp_path, base_env, start_dask_cluster, run_cli
) -> None:
    paths = _archive(tmp_path / "audio")
    dest, hold = tmp_path / "out", tmp_path / "hold"
    hold.mkdir()
    held = _faulty_env(base_env, "hold", dest, hold, after=2)
    cluster = start_dask_cluster(held)  # its workers hold a part file write once two are published
    address = cluster.address
    source = ["featurize", str(tmp_path / "audio"), str(dest), "--shard-size", "1", "--settle-s", "0"]
    proc = _start([*source, "--dask-address", address], base_env, tmp_path / "lost.log")
    try:
        _wait_until_held(hold, proc)  # mid-run: a worker is inside a write
        os.killpg(cluster.scheduler.proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    output = (tmp_path / "lost.log").read_text()
    last, tail = _last_line(output), output[-3000:]
    assert proc.returncode == 2, tail
    assert last.startswith(f"ser-batch: error: lost the Dask scheduler at {address} mid-run"), tail
    assert "re-run the same command" in last and "Traceback" not in output, tail
    partial = _rows(dest)
    assert sum(partial.values()) >= 2 and set(partial.values()) == {1}, partial

    rerun = run_cli([*source, "--n-workers", "1", "--json"])  # on a LocalCluster: the scheduler is gone
    assert rerun.returncode == 0, rerun
    assert rerun.summary()["already_done"] == sum(partial.values())
    assert _rows(dest) == Counter({path: 1 for path in paths})


def test_two_clis_at_once_whose_temporary_apis_migrate_one_database_both_complete(
    tmp_path, base_env, wav_archive
) -> None:
    wav_archive(n=4)
    report = tmp_path / "report"
    report.mkdir()
    env = {
        **_faulty_env(base_env, "migrations-meet", tmp_path, report, after=0),
        "PREFECT_HOME": str(tmp_path / "home"),
    }
    logs = [tmp_path / f"cli-{index}.log" for index in range(2)]
    args = [
        "featurize",
        str(tmp_path / "audio"),
        "--n-workers",
        "1",
        "--feature-set",
        "seed268",
        "--settle-s",
        "0",
        "--json",
    ]
    procs = [_start([*args[:2], str(tmp_path / f"out-{index}"), *args[2:]], env, log) for index, log in enumerate(logs)]
    try:
        for proc in procs:
            proc.wait(timeout=300)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    for proc, log in zip(procs, logs, strict=True):
        output = log.read_text()
        assert proc.returncode == 0 and "Traceback" not in output, output[-4000:]
        assert json.loads(_last_json(output))["featurized"] == 4, output[-4000:]
