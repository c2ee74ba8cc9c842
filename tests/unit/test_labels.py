from __future__ import annotations

import csv

import pytest

from ser_batch.labels import UNKNOWN, LabelError, Labels, labels_from_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Actor_01/03-01-05-01-02-01-01.wav", Labels("ravdess", "Actor_01", "angry")),
        ("03-01-02-02-01-02-16.flac", Labels("ravdess", "Actor_16", "calm")),
        ("03-01-08-01-01-01-24.wav", Labels("ravdess", "Actor_24", "surprise")),
        ("AudioWAV/1001_DFA_ANG_XX.wav", Labels("crema", "1001", "angry")),
        ("1091_IEO_HAP_HI.wav", Labels("crema", "1091", "happy")),
        ("1002_TIE_NEU_X.wav", Labels("crema", "1002", "neutral")),
        ("DC_a01.wav", Labels("savee", "DC", "angry")),
        ("KL/su15.wav", Labels("savee", "KL", "surprise")),
        ("JE/sa03.wav", Labels("savee", "JE", "sad")),
        ("YAF_back_ps.wav", Labels("tess", "YAF", "surprise")),
        ("TESS/OAF_Fear/OAF_bite_fear.wav", Labels("tess", "OAF", "fear")),
        ("YAF_bath_disgust.wav", Labels("tess", "YAF", "disgust")),
        ("wav/03a01Wa.wav", Labels("emodb", "03", "angry")),
        ("16b10Lb.wav", Labels("emodb", "16", "boredom")),
        ("s3://calls/archive/2026/11/24/call-123.wav", UNKNOWN),
        ("sa01.wav", UNKNOWN),  # a SAVEE code outside a SAVEE speaker folder says nothing
        ("JE_x01_notes.wav", UNKNOWN),
    ],
)
def test_conventions_give_corpus_speaker_emotion(path: str, expected: Labels) -> None:
    assert labels_from_path(path) == expected


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("03-01-09-01-01-01-01.wav", "undefined emotion code '09'"),
        ("03-01-05-03-01-01-01.wav", "undefined intensity"),
        ("03-01-05-01-01-01-30.wav", "undefined actor"),
        ("1001_DFA_XYZ_XX.wav", "undefined emotion code 'XYZ'"),
        ("1001_DFA_ANG_ZZ.wav", "undefined level"),
        ("YAF_back_bored.wav", "undefined emotion code 'bored'"),
        ("03a01Qa.wav", "undefined emotion code 'Q'"),
        ("DC_x01.wav", "undefined emotion code 'x'"),
    ],
)
def test_known_shape_with_undefined_code_is_mislabelled(path: str, match: str) -> None:
    with pytest.raises(LabelError, match=match):
        labels_from_path(path)


def test_labels_match_ser_dev_manifest(ser_dev) -> None:
    with open(ser_dev / "MANIFEST.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    mismatches = [
        row["relpath"]
        for row in rows
        if labels_from_path(row["relpath"]) != Labels(row["corpus"], row["speaker"], row["emotion"])
    ]
    assert len(rows) == 2636
    assert mismatches == []
