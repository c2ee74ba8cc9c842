"""`make run` (ser-batch demo) from a fresh copy, and the run reports it publishes to a real Prefect server."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
CANARY = "canary-Zq7-wJalrXUtnFEMI-not-a-real-secret"
DEMO_CALLS = ("call-0001.wav", "call-0002.wav", "call-0003.wav", "call-0004.wav")  # ser_batch.demo.DEMO_CALLS
CALL_ROW = re.compile(r"^│ (call-\d{4}\.wav) │\s+(\d) │")


def fresh_copy(target: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and new, nothing ignored: no .venv, no demo/)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:  # not a git checkout: copy without what a clone would not have
        shutil.copytree(
            ROOT, target, ignore=shutil.ignore_patterns(".git", ".venv", "demo", "__pycache__", ".numba_cache")
        )
        return target
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def calls_rows(stdout: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in map(CALL_ROW.match, stdout.splitlines()) if m]


def test_make_run_in_a_fresh_copy_runs_the_whole_job_and_prints_the_calls_table(tmp_path, base_env, run_cli) -> None:
    clone = fresh_copy(tmp_path / "clone")
    ser_batch = VENV / "bin" / "ser-batch"
    # The installed venv stands in for `make install` (-o: do not rebuild it); PYTHONPATH runs the copy's code.
    argv = ["make", "-o", str(ser_batch), "run", f"VENV={VENV}"]
    started = time.monotonic()
    result = subprocess.run(
        argv,
        cwd=clone,
        env={**base_env, "PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    elapsed = time.monotonic() - started
    (tmp_path / "make-run.log").write_text(
        f"$ {' '.join(argv)}\nexit {result.returncode} after {elapsed:.0f} s\n{result.stdout}\n{result.stderr}"
    )

    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert f"{ser_batch} demo demo" in result.stdout.splitlines()  # make echoes the command its run target runs
    assert calls_rows(result.stdout) == [(name, channel) for name in DEMO_CALLS for channel in (0, 1)]
    assert "THE DEMO MODEL MEANS NOTHING" in result.stdout
    for label in ("featurize it", "train a model", "score them"):
        assert re.search(rf"^  {label}\s+\d+\.\d s$", result.stdout, re.M), label
    assert sorted(p.name for p in (clone / "demo").iterdir()) == ["audio", "model", "out", "recordings", "scores"]

    angry = clone / "demo" / "recordings" / "call-0002.wav"
    drawn = run_cli(["plot-call", "demo/scores", "demo/recordings/call-0002.wav", "-o", "angry.png"], cwd=clone)
    never = run_cli(["plot-call", "demo/scores", "demo/audio/calls/call-0001.wav"], cwd=clone)

    assert drawn.returncode == 0, drawn
    assert png_size(clone / "angry.png") == (1000, 520)  # two channels: agent and customer
    assert angry.exists() and list((clone / "demo" / "scores" / "plots").glob("call-0002-*.png"))
    assert never.returncode == 2, never
    assert never.stderr.count("\n") == 1 and "call-0001.wav: never scored into this DEST" in never.stderr


def artifacts_of(prefect_server, folder: Path) -> dict[str, dict]:
    runs = prefect_server.post("flow_runs/filter", {"limit": 200})
    ours = [run for run in runs if str(folder) in json.dumps(run["parameters"])]
    assert sorted(run["name"] and run["state_type"] for run in ours) == ["COMPLETED"] * 3, ours
    found = prefect_server.post("artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [r["id"] for r in ours]}}})
    return {artifact["key"]: artifact for artifact in found}


def test_each_run_of_the_job_publishes_its_report_with_no_secret_in_it(tmp_path, prefect_server, run_cli) -> None:
    secrets = {
        "AWS_ACCESS_KEY_ID": "AKIACANARY0000000000",
        "AWS_SECRET_ACCESS_KEY": CANARY,
        "SER_BATCH_STORAGE_OPTIONS": json.dumps({"key": "AKIACANARY0000000000", "secret": CANARY}),
    }
    demo = tmp_path / "demo"

    result = run_cli(["demo", str(demo)], env={**prefect_server.env(), **secrets}, timeout_s=540)

    assert result.returncode == 0, result
    artifacts = artifacts_of(prefect_server, demo)
    assert sorted(artifacts) == [
        "featurize-errors",
        "featurize-summary",
        "score-summary",
        "score-top-anger",
        "train-evaluation",
        "train-summary",
    ]
    featurize_errors = json.loads(artifacts["featurize-errors"]["data"])
    assert [(row["stage"], row["files"]) for row in featurize_errors] == [("decode", 1)]
    assert "| files seen | 62 |" in artifacts["featurize-summary"]["data"]
    assert (
        f"`{demo}/out/features/feature_set=stats8k/corpus=*/part-*.parquet`" in artifacts["featurize-summary"]["data"]
    )
    evaluation = json.loads(artifacts["train-evaluation"]["data"])
    assert [row["part"] for row in evaluation] == ["train", "validation", "test"]
    assert {"accuracy", "balanced accuracy", "corpus ravdess", "class angry"} <= set(evaluation[2])
    assert "](data:image/png;base64," in artifacts["train-summary"]["data"]
    top = json.loads(artifacts["score-top-anger"]["data"])
    assert (Path(top[0]["path"]).name, top[0]["channel"], top[0]["role"]) == ("call-0002.wav", 1, "customer")
    assert all(row["share_angry"] > 0 and Path(row["picture"]).is_file() for row in top)
    summary = artifacts["score-summary"]["data"]
    assert (
        "# score: 4 recordings" in summary
        and "1 failed" in summary
        and f"[timeline](file://{top[0]['picture']})" in summary
    )
    everything = json.dumps(prefect_server.post("artifacts/filter", {"limit": 200}))
    assert CANARY not in everything and "AKIACANARY" not in everything
