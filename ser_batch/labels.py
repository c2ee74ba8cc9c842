"""Corpus, speaker and emotion from the file-name conventions of five SER corpora (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ser_batch.errors import LabelError


@dataclass(frozen=True)
class Labels:
    """What a file name says about a clip; ``emotion`` is None when unknown."""

    corpus: str
    speaker: str | None
    emotion: str | None


UNKNOWN = Labels(corpus="unknown", speaker=None, emotion=None)

_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}

_CREMA = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")
_CREMA_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_LEVELS = {"LO", "MD", "HI", "XX", "X"}

_TESS = re.compile(r"^(OAF|YAF)_([A-Za-z]+)_([A-Za-z_]+)$", re.IGNORECASE)
_TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprise",
    "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise",
    "sad": "sad",
}

_EMODB = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")
_EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}

_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_FLAT = re.compile(r"^(DC|JE|JK|KL)_([a-z]{1,2})(\d\d)$")
_SAVEE_NESTED = re.compile(r"^([a-z]{1,2})(\d\d)$")
_SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprise",
}


def labels_from_path(path: str) -> Labels:
    """Parse corpus, speaker and emotion from a file's name (and, for SAVEE, its folder).

    Args:
        path: local path or URI of the clip; only its last two components are read.

    Returns:
        The labels; ``UNKNOWN`` when no convention's shape matches.

    Raises:
        LabelError: the name has a convention's shape but an undefined code
            (for example RAVDESS emotion ``09``), so its label cannot be trusted.

    >>> labels_from_path("Actor_01/03-01-05-01-02-01-01.wav")
    Labels(corpus='ravdess', speaker='Actor_01', emotion='angry')
    >>> labels_from_path("x/YAF_bath_ps.wav").emotion
    'surprise'
    >>> labels_from_path("meeting.wav").corpus
    'unknown'
    """
    posix = PurePosixPath(path.replace("\\", "/"))
    stem, parent = posix.stem, posix.parent.name
    for parse in (_ravdess, _crema, _tess, _emodb):
        labels = parse(stem)
        if labels is not None:
            return labels
    return _savee(stem, parent) or UNKNOWN


def _lookup(table: dict[str, str], code: str, corpus: str, stem: str) -> str:
    try:
        return table[code]
    except KeyError:
        raise LabelError(f"{corpus} name {stem!r} has undefined emotion code {code!r}") from None


def _ravdess(stem: str) -> Labels | None:
    match = _RAVDESS.match(stem)
    if match is None:
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = {
        "modality": modality in {"01", "02", "03"},
        "vocal channel": channel in {"01", "02"},
        "intensity": intensity in {"01", "02"},
        "statement": statement in {"01", "02"},
        "repetition": repetition in {"01", "02"},
        "actor": 1 <= int(actor) <= 24,
    }
    bad = [field for field, ok in checks.items() if not ok]
    if bad:
        raise LabelError(f"ravdess name {stem!r} has undefined {', '.join(bad)}")
    return Labels("ravdess", f"Actor_{actor}", _lookup(_RAVDESS_EMOTIONS, emotion, "ravdess", stem))


def _crema(stem: str) -> Labels | None:
    match = _CREMA.match(stem)
    if match is None:
        return None
    actor, _sentence, emotion, level = match.groups()
    if level not in _CREMA_LEVELS:
        raise LabelError(f"crema name {stem!r} has undefined level {level!r}")
    return Labels("crema", actor, _lookup(_CREMA_EMOTIONS, emotion, "crema", stem))


def _tess(stem: str) -> Labels | None:
    match = _TESS.match(stem)
    if match is None:
        return None
    speaker, _word, emotion = match.groups()
    return Labels("tess", speaker.upper(), _lookup(_TESS_EMOTIONS, emotion.lower(), "tess", stem))


def _emodb(stem: str) -> Labels | None:
    match = _EMODB.match(stem)
    if match is None:
        return None
    speaker, _text, emotion, _version = match.groups()
    return Labels("emodb", speaker, _lookup(_EMODB_EMOTIONS, emotion, "emodb", stem))


def _savee(stem: str, parent: str) -> Labels | None:
    flat = _SAVEE_FLAT.match(stem)
    if flat is not None:
        speaker, code, _n = flat.groups()
    elif parent in _SAVEE_SPEAKERS and (nested := _SAVEE_NESTED.match(stem)) is not None:
        speaker, (code, _n) = parent, nested.groups()
    else:
        return None
    return Labels("savee", speaker, _lookup(_SAVEE_EMOTIONS, code, "savee", stem))
