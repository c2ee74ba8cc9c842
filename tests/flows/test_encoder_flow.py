"""An ONNX encoder feature set through featurize -> train -> score on Dask, with a tiny model built here."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
import soundfile
from encoder_gen import frame_encoder, weights
from signals_gen import call_waveform

from flows.cli import main
from flows.featurize import featurize
from flows.score import score
from flows.train import train
from ser_batch import storage
from ser_batch.config import TrainConfig
from ser_batch.demo import synthetic_clip

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLASSES = ("angry", "happy", "sad")


@pytest.fixture(scope="module")
def cluster(prefect):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def write_clips(root: Path) -> None:
    rng = np.random.default_rng(0)
    for emotion, code in {"angry": "05", "happy": "03", "sad": "04"}.items():
        for i in range(4):
            path = root / f"Actor_{i % 2 + 1:02d}" / f"03-01-{code}-01-0{i % 2 + 1}-0{i // 2 + 1}-{i % 2 + 1:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, synthetic_clip(emotion, rng), 16_000)


def test_an_encoder_set_is_featurized_trained_and_scored_and_a_changed_file_refused(cluster, tmp_path, capsys) -> None:
    model_file, clips, features, model_dir = tmp_path / "enc.onnx", tmp_path / "clips", tmp_path / "f", tmp_path / "m"
    model_file.write_bytes(frame_encoder(weights(8)))
    write_clips(clips)
    name = f"onnx:{model_file}"

    summary = featurize(str(clips), str(features), feature_set=name, dask_address=cluster, augment=False, settle_s=0)

    config = storage.resolve_feature_set(name)
    assert (summary["featurized"], summary["failed"]) == (12, 0), summary
    assert [p.name for p in (features / "features").iterdir()] == [f"feature_set={config.name}"]
    table = storage.read_features(str(features), config=config)
    assert table.num_rows == 12 and len(table.column("features")[0]) == 16
    assert storage.read_feature_names(str(features), config.name)[::8] == ["enc_mean_0000", "enc_std_0000"]

    trained = train(str(features), str(model_dir), feature_set=name,
                    config=TrainConfig(model="logistic", epochs=3, split="none", classes=CLASSES))  # fmt: skip
    assert sum(part["n"] for part in trained["metrics"].values()) == 12  # train and validation rows
    model_file.rename(tmp_path / "elsewhere.onnx")  # by its name, the set is read from DEST: no file needed
    by_name = train(str(features), str(tmp_path / "m2"), feature_set=config.name,
                    config=TrainConfig(model="logistic", epochs=1, split="none", classes=CLASSES))  # fmt: skip
    assert by_name["metrics"]["train"]["n"] == trained["metrics"]["train"]["n"]
    assert storage.read_model_identity(str(tmp_path / "m2")).fingerprint == config.fingerprint()
    (tmp_path / "elsewhere.onnx").rename(model_file)

    archive, out = tmp_path / "calls", tmp_path / "out"
    (archive / "2026" / "11" / "24").mkdir(parents=True)
    waveform = call_waveform(6.0, 8000, [[(0.5, 5.5)]], np.random.default_rng(3))  # telephone rate: upsampled to 16 kHz
    soundfile.write(archive / "2026" / "11" / "24" / "c1.wav", waveform, 8000)
    scored = score(str(archive), str(out), str(model_dir), dask_address=cluster, run_date="2026-11-24", settle_s=0)
    assert (scored["scored"], scored["failed"]) == (1, 0), scored
    emotions = duckdb.sql(f"SELECT emotion FROM read_parquet('{out}/predictions/*/*.parquet')").fetchall()
    assert len(emotions) >= 2 and {emotion for (emotion,) in emotions} <= set(CLASSES), emotions

    model_file.write_bytes(frame_encoder(weights(8, seed=1)))  # the same path, another model
    capsys.readouterr()
    argv = ["score", str(archive), str(tmp_path / "out2"), "--model", str(model_dir), "--settle-s", "0"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith(f"ser-batch: error: {model_file}: the encoder file has changed")
        and config.sha256[:12] in error
    )
    assert "\n" not in error and not (tmp_path / "out2" / "calls").exists()


def test_featurize_refuses_a_file_that_is_not_an_encoder_in_one_line_before_any_work(prefect, tmp_path, capsys) -> None:
    clips, dest, bad = tmp_path / "clips", tmp_path / "out", tmp_path / "bad.onnx"
    write_clips(clips)
    bad.write_bytes(b"\x08\x07 not a protobuf")

    assert main(["featurize", str(clips), str(dest), "--feature-set", f"onnx:{bad}", "--settle-s", "0"]) == 2

    error = capsys.readouterr().err.strip()
    assert error.startswith(f"ser-batch: error: {bad}: not a readable ONNX model") and "\n" not in error, error
    assert not (dest / "features").exists()
