from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from ser_batch.config import feature_config
from ser_batch.schema import FORMAT_VERSION
from ser_batch.storage.lease import hold_lease

BIN = Path(sys.executable).parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ser-batch"), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.integration
def test_missing_source_exits_2_with_one_line(tmp_path) -> None:
    result = run_cli("featurize", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("ser-batch: error: ")
    assert "not found" in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_unwritable_dest_exits_2_with_one_line(archive, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where DEST's folder should be")
    result = run_cli("featurize", str(archive), str(blocker / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "ser-batch: error: " in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard-size", "0"], "must be >= 1"),
        (["--shard-size", "-3"], "must be >= 1"),
        (["--feature-set", "nope"], "invalid choice"),
        (["--n-workers", "x"], "is not an integer"),
        (["--max-error-ratio", "3"], "must be in [0, 1]"),  # was checked only once the whole run was done
    ],
)
def test_bad_parameters_are_rejected_by_the_parser(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["featurize", "src", "dest", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage-options", "{not json"], "--storage-options is not valid JSON"),
        (["--storage-options", "[1, 2]"], "must be a JSON object"),
        (["--dask-address", "localhost"], "malformed Dask address"),
    ],
)
def test_bad_options_exit_2_before_any_work(args, message, archive, tmp_path, capsys) -> None:
    assert main(["featurize", str(archive), str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "{not json" not in err
    assert not (tmp_path / "out" / "features").exists()


@pytest.mark.integration
def test_invalid_classes_exit_2_with_one_line(tmp_path) -> None:
    result = run_cli("train", str(tmp_path), str(tmp_path / "model"), "--classes", "angry,bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[
        -1
    ] == "ser-batch: error: classes: Value error, unknown classes ['bogus']; expected a subset of " + str(
        ["angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise", "boredom"]
    )
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_a_temporary_prefect_api_that_cannot_start_exits_2_with_one_line_naming_its_log(archive, tmp_path) -> None:
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(tmp_path / "home"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/prefect.db",
    )

    result = run_cli("featurize", str(archive), str(tmp_path / "out"), "--n-workers", "1", env=env)

    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr
    assert last.startswith("ser-batch: error: the temporary Prefect API server exited with status 3"), result.stderr
    assert "unable to open database file" in last and "Traceback" not in result.stderr + result.stdout, result.stderr
    log = last.rsplit("see ", 1)[1]
    assert "sqlite3.OperationalError" in Path(log).read_text()
    os.remove(log)


def test_a_busy_scoring_dest_is_reported_before_the_model_is_loaded(archive, tmp_path, capsys) -> None:
    # a catch-up run colliding with the nightly is told at once, not after seconds of loading TensorFlow and the model
    model = tmp_path / "model"
    model.mkdir()
    stats = feature_config("stats8k")
    metadata = {"format_version": FORMAT_VERSION, "model": "mlp", "classes": ["angry", "sad"],
                "feature_set": stats.name, "fingerprint": stats.fingerprint(), "n_features": 3}  # fmt: skip
    (model / "metadata.json").write_text(json.dumps(metadata))
    (model / "model.keras").write_bytes(b"not a Keras file: loading it would fail")
    dest = tmp_path / "scores"

    with hold_lease(str(dest), job="score"):
        assert main(["score", str(archive), str(dest), "--model", str(model), "--settle-s", "0"]) == 2

    assert "is in use by a score run" in capsys.readouterr().err.strip().splitlines()[-1]
