from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile
from signals_gen import mp4, unfinalised, voice
from threadpoolctl import threadpool_limits

from flows.cli import main
from flows.featurize import featurize
from ser_batch import storage
from ser_batch.config import feature_config
from ser_batch.demo import synthetic_clip
from ser_batch.jobs.featurize import featurize_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = feature_config("seed268")


def table(dest):
    return storage.read_features(str(dest), config=SEED).sort_by("path")


def errors(dest):
    return ds.dataset(f"{dest}/errors", format="parquet", partitioning="hive").to_table()


def test_archive_with_bad_files_reruns_and_changes(prefect, archive, tmp_path) -> None:
    (archive / "empty.wav").write_bytes(b"")
    (archive / "random.wav").write_bytes(os.urandom(3000))
    (archive / "not-audio.wav").write_text("plain text with a .wav name")
    (archive / "dir.wav").mkdir()
    dest = tmp_path / "out"

    first = featurize(str(archive), str(dest), feature_set="seed268", n_workers=2, shard_size=3, settle_s=0)
    assert (first["files_seen"], first["featurized"], first["failed"]) == (10, 7, 3)
    assert sorted(os.listdir(dest / "features" / "feature_set=seed268")) == [
        "corpus=crema",
        "corpus=emodb",
        "corpus=ravdess",
        "corpus=savee",
        "corpus=tess",
        "corpus=unknown",
    ]
    assert table(dest).num_rows == 7
    assert sorted(errors(dest).column("message").to_pylist())[0] == "empty file (0 bytes)"

    again = featurize(str(archive), str(dest), feature_set="seed268", n_workers=2, shard_size=3, settle_s=0)
    assert (again["featurized"], again["already_done"], again["known_bad_skipped"]) == (0, 7, 3)
    assert table(dest).num_rows == 7 and errors(dest).num_rows == 3

    changed = archive / "emodb" / "03a01Wa.wav"
    soundfile.write(changed, voice(1.0, 16_000, seed=11), 16_000)
    soundfile.write(archive / "emodb" / "08a02Fb.wav", voice(0.75, 16_000, seed=12), 16_000)
    third = featurize(str(archive), str(dest), feature_set="seed268", n_workers=2, shard_size=3, settle_s=0)
    assert (third["featurized"], third["already_done"], third["superseded_rows_removed"]) == (2, 6, 1)
    rows = table(dest)
    assert rows.num_rows == 8
    paths = rows.column("path").to_pylist()
    assert len(paths) == len(set(paths))
    current = {info.uri: info.content_key for info in storage.list_files(str(archive))}
    assert all(current[p] == k for p, k in zip(paths, rows.column("content_key").to_pylist(), strict=True))


def test_labelled_clips_get_augmented_copies_once_and_a_changed_clip_new_ones(prefect, archive, tmp_path) -> None:
    stats = feature_config("stats8k")
    (archive / "random.wav").write_bytes(os.urandom(3000))
    dest = tmp_path / "out"
    labelled = {
        info.uri for info in storage.list_files(str(archive)) if "/calls/" not in info.uri and "random" not in info.uri
    }

    first = featurize(str(archive), str(dest), feature_set="stats8k", n_workers=1, shard_size=4, settle_s=0)
    copies = storage.read_features(str(dest), config=stats, dataset_name="augmented")
    assert first["augmented_copies"] == copies.num_rows == 2 * len(labelled) and first["clips_augmented"] == len(
        labelled
    )
    assert set(copies.column("path").to_pylist()) == labelled  # not the unlabelled call, not the bad file

    again = featurize(str(archive), str(dest), feature_set="stats8k", n_workers=1, shard_size=4, settle_s=0)
    assert (again["featurized"], again["augmented_copies"]) == (0, 0)

    changed = archive / "emodb" / "03a01Wa.wav"
    soundfile.write(changed, voice(0.75, 16_000, seed=13), 16_000)
    third = featurize(str(archive), str(dest), feature_set="stats8k", n_workers=1, shard_size=4, settle_s=0)
    assert (third["featurized"], third["augmented_copies"], third["superseded_rows_removed"]) == (1, 2, 3)
    copies = storage.read_features(str(dest), config=stats, dataset_name="augmented")
    current = {info.uri: info.content_key for info in storage.list_files(str(archive))}
    assert copies.num_rows == 2 * len(labelled)
    assert all(
        current[p] == k
        for p, k in zip(copies.column("path").to_pylist(), copies.column("content_key").to_pylist(), strict=True)
    )

    plain = featurize(
        str(archive), str(tmp_path / "plain"), feature_set="stats8k", n_workers=1, augment=False, settle_s=0
    )
    assert plain["augmented_copies"] == 0 and not (tmp_path / "plain" / "augmented").exists()


def test_dask_processes_match_in_process_featurization(prefect, archive, tmp_path) -> None:
    featurize(str(archive), str(tmp_path / "out"), feature_set="seed268", n_workers=2, shard_size=2, settle_s=0)
    with threadpool_limits(limits=1):  # as on the workers: BLAS summation order depends on threads
        expected, _ = featurize_files(list(storage.list_files(str(archive))), SEED)
    expected = expected.sort_by("path")
    actual = table(tmp_path / "out")
    assert actual.column("path").to_pylist() == expected.column("path").to_pylist()
    np.testing.assert_array_equal(
        np.stack(actual.column("features").to_numpy(zero_copy_only=False)),
        np.stack(expected.column("features").to_numpy(zero_copy_only=False)),
    )


def test_too_many_bad_files_fail_the_run(prefect, tmp_path) -> None:
    source = tmp_path / "bad"
    source.mkdir()
    for index in range(3):
        (source / f"{index}.wav").write_bytes(b"junk")
    state = featurize(
        str(source),
        str(tmp_path / "out"),
        feature_set="seed268",
        n_workers=1,
        max_error_ratio=0.5,
        return_state=True,
        settle_s=0,
    )
    assert state.is_failed()
    assert errors(tmp_path / "out").num_rows == 3


def test_unknown_feature_set_fails_before_any_work(prefect, archive, tmp_path) -> None:
    state = featurize(str(archive), str(tmp_path / "out"), feature_set="nope", return_state=True, settle_s=0)
    assert state.is_failed()
    assert not (tmp_path / "out").exists()


def test_a_max_error_ratio_out_of_range_fails_before_any_work(prefect, archive, tmp_path) -> None:
    # it is applied at the run's end: a deployment given 3 featurized the whole archive, then failed
    state = featurize(
        str(archive), str(tmp_path / "out"), n_workers=1, max_error_ratio=3, return_state=True, settle_s=0
    )
    assert state.is_failed() and "max_error_ratio 3" in str(state.message)
    assert not (tmp_path / "out").exists()


def _write_raw(path: bytes, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(handle, data)
    os.close(handle)


@pytest.fixture(scope="module")
def cluster(prefect):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def test_names_that_are_not_utf8_are_featurized_or_recorded_under_lossless_paths(
    cluster, write_wav, tmp_path, capsys
) -> None:
    clip = write_wav("clip.wav", duration_s=0.6).read_bytes()
    root = os.fsencode(tmp_path) + b"/archiv\xe9"  # Latin-1 names, as SMB and NFS archives hold them (and sys.argv)
    raw = {b"/Actor_01/03-01-05-01-02-01-01.wav": clip, b"/caf\xe9.wav": clip, b"/d\xe9fekt.wav": b"RIFF junk"}
    for name, data in raw.items():
        _write_raw(root + name, data)
    dest = tmp_path / "out"
    argv = ["featurize", os.fsdecode(root), str(dest), "--dask-address", cluster, "--settle-s", "0", "--json"]

    assert main(argv) == 0, capsys.readouterr().err
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert (first["featurized"], first["failed"], first["augmented_copies"]) == (2, 1, 2)
    stats = feature_config("stats8k")
    rows = storage.read_features(str(dest), config=stats).to_pylist()
    bad = errors(dest).to_pylist()
    stored = {os.fsencode(storage.local_path(row["path"])): row for row in [*rows, *bad]}
    assert set(stored) == {root + name for name in raw}  # every file once, its exact bytes recoverable
    assert all(row["path"].startswith("file://") for row in stored.values())
    assert stored[root + b"/Actor_01/03-01-05-01-02-01-01.wav"]["emotion"] == "angry"
    assert stored[root + b"/d\xe9fekt.wav"]["stage"] == "decode"

    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    counts = again["featurized"], again["already_done"], again["known_bad_skipped"], again["augmented_copies"]
    assert counts == (0, 2, 1, 0)

    assert main(["featurize", os.fsdecode(root), os.fsdecode(root + b"/out\xe9")]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err


def test_wav49_and_unfinalised_recordings_are_featurized_and_empty_or_m4a_ones_recorded(prefect, tmp_path) -> None:
    clip = synthetic_clip("angry", np.random.default_rng(7), sample_rate=8000, duration_s=2.0)
    src, dest = tmp_path / "src" / "Actor_01", tmp_path / "out"
    src.mkdir(parents=True)
    soundfile.write(src / "03-01-05-01-01-01-01.wav", clip, 8000, format="WAV", subtype="GSM610")  # Asterisk wav49
    soundfile.write(src / "03-01-05-01-01-02-01.wav", clip, 8000, subtype="PCM_16")
    unfinalised(src / "03-01-05-01-01-02-01.wav", data_size=0)  # a recorder that never finalised its header
    (src / "03-01-05-01-02-01-01.wav").write_bytes(b"")
    (src / "03-01-05-01-02-02-01.m4a").write_bytes(mp4(b"M4A "))

    summary = featurize(str(tmp_path / "src"), str(dest), feature_set="stats8k", n_workers=1, augment=False, settle_s=0)

    assert (summary["files_seen"], summary["featurized"], summary["failed"]) == (4, 2, 2)
    rows = storage.read_features(str(dest), config=feature_config("stats8k")).sort_by("path").to_pylist()
    assert [(row["emotion"], row["sample_rate"]) for row in rows] == [("angry", 8000)] * 2
    assert rows[0]["duration_s"] == pytest.approx(2.0, abs=0.05) and rows[1]["duration_s"] == 2.0
    messages = dict(zip(*errors(dest).select(["path", "message"]).to_pydict().values(), strict=True))
    assert messages == {
        str(src / "03-01-05-01-02-01-01.wav"): "empty file (0 bytes)",
        str(src / "03-01-05-01-02-02-01.m4a"): "unsupported format: MP4 (brand M4A), which libsndfile does not "
        "decode; convert it to FLAC or WAV first",
    }
