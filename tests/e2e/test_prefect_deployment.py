from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

N_WAVS = 8


def _rows(dest: Path) -> Counter[str]:
    names: Counter[str] = Counter()
    for part in (dest / "features" / "feature_set=seed268").glob("corpus=*/part-*.parquet"):
        names.update(Path(p).name for p in pq.read_table(part, columns=["path"]).column("path").to_pylist())
    return names


def _deployment_run(prefect_server, base_env, source: Path, dest: Path, log: Path) -> subprocess.CompletedProcess[str]:
    argv = [
        str(Path(sys.executable).parent / "prefect"),
        "deployment",
        "run",
        "featurize/featurize",
        "-p",
        f"source={source}",
        "-p",
        f"dest={dest}",
        "-p",
        "n_workers=1",
        "-p",
        "feature_set=seed268",
        "-p",
        "settle_s=0",  # the archive was written a moment ago
        "--watch",
        "--watch-timeout",
        "200",
    ]
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, env={**base_env, **prefect_server.env()}, timeout=240, check=False
    )  # noqa: S603
    log.write_text(
        f"$ {' '.join(argv)}\nexit {result.returncode} after {time.monotonic() - started:.1f} s\n{result.stdout}\n{result.stderr}"
    )
    return result


def _flow_runs(prefect_server, dest: Path) -> list[dict]:
    runs = prefect_server.post("flow_runs/filter", {"flows": {"name": {"any_": ["featurize"]}}, "limit": 200})
    return [run for run in runs if run["parameters"].get("dest") == str(dest)]


def test_prefect_deployment_run_watch_featurizes_through_ser_batch_serve(
    prefect_server, ser_batch_serve, wav_archive, base_env, tmp_path
):
    expected = wav_archive(tmp_path / "audio", n=N_WAVS)
    (tmp_path / "audio" / "truncated.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    dest = tmp_path / "out"

    result = _deployment_run(prefect_server, base_env, tmp_path / "audio", dest, tmp_path / "deployment-run.log")

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{ser_batch_serve.log.read_text()[-6000:]}"
    assert "Completed" in result.stdout, result.stdout
    assert _rows(dest) == Counter(expected.keys()), _rows(dest)
    errors = [row for part in (dest / "errors").rglob("part-*.parquet") for row in pq.read_table(part).to_pylist()]
    assert [Path(row["path"]).name for row in errors] == ["truncated.wav"], errors
    runs = _flow_runs(prefect_server, dest)
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED" and runs[0]["deployment_id"], runs

    again = _deployment_run(prefect_server, base_env, tmp_path / "audio", dest, tmp_path / "deployment-rerun.log")

    assert again.returncode == 0, f"{again.stdout}\n{again.stderr}\n{ser_batch_serve.log.read_text()[-6000:]}"
    assert _rows(dest) == Counter(expected.keys()), "a re-run through the deployment added or lost rows"
    assert [run["state_type"] for run in _flow_runs(prefect_server, dest)] == ["COMPLETED", "COMPLETED"]
    assert ser_batch_serve.proc.poll() is None, "ser-batch serve exited while serving"
