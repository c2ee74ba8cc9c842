from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import soundfile
from signals_gen import sine, voice

from ser_batch import schema, shards, storage
from ser_batch.config import ScoreConfig, feature_config
from ser_batch.features.extract import feature_names
from ser_batch.jobs.featurize import featurize_files, featurize_shard
from ser_batch.scoring.segments import speech_spans
from ser_batch.shards import plan_shards

SEED = feature_config("seed268")


def test_every_input_gives_exactly_one_row_good_or_error(archive, tmp_path) -> None:
    (archive / "empty.wav").write_bytes(b"")
    (archive / "random.wav").write_bytes(os.urandom(2048))
    (archive / "header.wav").write_bytes(b"RIFF\x24\x08\x00\x00WAVEfmt ")
    (archive / "text.flac").write_text("this is not audio")
    soundfile.write(archive / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    soundfile.write(archive / "short.wav", np.full(200, 0.3, np.float32), 16_000)
    soundfile.write(archive / "03-01-09-01-01-01-01.wav", np.full(16_000, 0.3, np.float32), 16_000)
    files = list(storage.list_files(str(archive)))
    features, errors = featurize_files(files, SEED)
    assert features.num_rows == 7 and errors.num_rows == 7
    assert sorted(features.column("path").to_pylist() + errors.column("path").to_pylist()) == sorted(
        f.uri for f in files
    )
    reasons = dict(
        zip(
            [os.path.basename(p) for p in errors.column("path").to_pylist()],
            errors.column("message").to_pylist(),
            strict=True,
        )
    )
    assert reasons["empty.wav"] == "empty file (0 bytes)"
    assert reasons["random.wav"].startswith("undecodable")
    assert reasons["header.wav"].startswith("undecodable")
    assert reasons["text.flac"].startswith("undecodable")
    assert reasons["silent.wav"].startswith("no speech")
    assert reasons["short.wav"].startswith("no speech")
    assert "undefined emotion code '09'" in reasons["03-01-09-01-01-01-01.wav"]


def test_files_without_speech_are_error_rows_not_training_rows(tmp_path) -> None:
    rate = 16_000
    rng = np.random.default_rng(7)
    clicks = np.zeros(2 * rate, np.float32)
    clicks[:: rate // 10] = 0.5
    signals = {
        "clicks": clicks,
        "dc": np.full(2 * rate, 0.2, np.float32),
        "hiss": (1e-4 * rng.standard_normal(2 * rate)).astype(np.float32),  # -80 dBFS
        "short": voice(0.15, rate),
        "tone": sine(2.0, rate),
        "speech": voice(2.0, rate),
    }
    for name, signal in signals.items():
        soundfile.write(tmp_path / f"03-01-05-01-01-01-01_{name}.wav", signal, rate, subtype="FLOAT")
    features, errors = featurize_files(list(storage.list_files(str(tmp_path))), SEED)

    assert [os.path.basename(p) for p in features.column("path").to_pylist()] == ["03-01-05-01-01-01-01_speech.wav"]
    assert errors.num_rows == 5
    assert all(m.startswith("no speech") for m in errors.column("message").to_pylist())
    assert set(errors.column("error_type").to_pylist()) == {"AudioError"}


def test_a_dc_offset_changes_neither_features_nor_speech_found(tmp_path) -> None:
    rate = 16_000
    speech = np.concatenate([np.zeros(rate // 2, np.float32), voice(3.0, rate, seed=3)])
    soundfile.write(tmp_path / "03-01-05-01-01-01-01.wav", speech, rate, subtype="FLOAT")
    soundfile.write(tmp_path / "03-01-05-01-01-01-02.wav", speech + np.float32(0.02), rate, subtype="FLOAT")
    stats = feature_config("stats16k")
    features, errors = featurize_files(list(storage.list_files(str(tmp_path))), stats)
    assert errors.num_rows == 0
    clean, offset = np.asarray(features.column("features").to_pylist(), np.float64)

    # relative to each feature's own scale (+1): 0.16% measured after high-passing at decode, 151% before
    assert np.max(np.abs(offset - clean) / (np.abs(clean) + 1.0)) < 0.005
    spans = [speech_spans(storage.read_channel(str(p), 0), rate, ScoreConfig()) for p in sorted(tmp_path.iterdir())]
    assert spans[0] == spans[1] and spans[0]


def test_labels_and_original_rate_land_in_rows(archive) -> None:
    features, _ = featurize_files(list(storage.list_files(str(archive))), SEED)
    by_name = {
        os.path.basename(row["path"]): row
        for row in features.select(["path", "corpus", "speaker", "emotion", "sample_rate"]).to_pylist()
    }
    assert by_name["03-01-05-01-01-01-01.wav"] == {
        "path": str(archive / "ravdess/Actor_01/03-01-05-01-01-01-01.wav"),
        "corpus": "ravdess",
        "speaker": "Actor_01",
        "emotion": "angry",
        "sample_rate": 16_000,
    }
    assert by_name["YAF_bath_fear.wav"]["sample_rate"] == 8_000
    assert by_name['agent 7 – café "quoted".wav']["corpus"] == "unknown"
    assert by_name['agent 7 – café "quoted".wav']["emotion"] is None


def test_retried_shard_replaces_its_own_files(archive, tmp_path) -> None:
    files = list(storage.list_files(str(archive)))
    (shard,) = plan_shards(files, shards.DoneIndex({}), fingerprint=SEED.fingerprint(), shard_size=100).shards
    first = featurize_shard(shard, str(tmp_path / "out"), SEED)
    second = featurize_shard(shard, str(tmp_path / "out"), SEED)
    assert first.part_files == second.part_files
    assert storage.read_features(str(tmp_path / "out"), config=SEED).num_rows == len(files)
    assert sum(pq.read_metadata(part).num_rows for part in second.part_files) == len(files)


def test_unreadable_file_is_an_error_row_not_a_failure(archive, unprivileged) -> None:
    target = archive / "emodb" / "03a01Wa.wav"
    target.chmod(0)
    try:
        with unprivileged():
            _, errors = featurize_files(list(storage.list_files(str(archive))), SEED)
    finally:
        target.chmod(0o644)
    assert errors.column("error_type").to_pylist() == ["PermissionError"]


STATS = feature_config("stats8k")


def test_augmented_copies_are_two_seeded_rows_per_clip_and_errors_name_their_stage(archive) -> None:
    from ser_batch.jobs.featurize import augment_files

    (archive / "ravdess" / "Actor_03" / "03-01-03-01-01-01-03.wav").parent.mkdir(parents=True)
    (archive / "ravdess" / "Actor_03" / "03-01-03-01-01-01-03.wav").write_bytes(os.urandom(3000))
    files = [info for info in storage.list_files(str(archive)) if "calls" not in info.uri]
    augmented, errors = augment_files(files, STATS)
    assert augmented.num_rows == 2 * (len(files) - 1)
    assert errors.column("stage").to_pylist() == [schema.AUGMENT_STAGE]
    assert errors.column("path").to_pylist() == [str(archive / "ravdess" / "Actor_03" / "03-01-03-01-01-01-03.wav")]
    transforms = augmented.column("augmentation").to_pylist()
    assert transforms[0::2] == ["telephone"] * (len(files) - 1) and transforms[1::2] == ["vtlp"] * (len(files) - 1)
    assert augmented.schema == schema.augmented_schema(STATS, feature_names(STATS))
    again, _ = augment_files(files, STATS)
    assert again.column("features").equals(augmented.column("features"))  # seeded by path + content key
    clean, _ = featurize_files(files[:1], STATS)
    assert augmented.column("features")[0] != clean.column("features")[0]
