"""Speaker-independent accuracy: grouped 5-fold cross-validation on ser-dev, one table.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/accuracy.py [--data DIR] [--cache DIR] [--only NAME ...]

Folds group clips by corpus + speaker (``ser_batch.model.split.group_kfold``), so no test voice is
ever trained on. Inside each fold, one grouped fifth of the training speakers is an inner
validation part for early stopping; the test fold is never looked at until the model is
fixed. Normalisation is fitted on training rows inside the model. Augmented copies
(``ser_batch.features.augment.augmented_copies``) are made for every clip once and cached, but a
fold trains only on copies of its own training clips (``ser_batch.model.split.copies_of``).
"Telephone" scores the same test clips after ``telephone_channel`` (8 kHz, 300-3400 Hz,
mu-law), resampled to the feature set's rate as the decoder would.

Calibration as ``ser-batch train --calibrate`` does it: one temperature per fold, fitted on the inner
validation part (``ser_batch.model.calibration``); ECE (15 bins) of the pooled test clips before and after. The
call-centre figures: 'angry' against the rest on the telephone test clips, precision and recall at
the top class and the ROC AUC of the calibrated p(angry).

Featurized matrices are cached as .npz under ``--cache`` (delete it to recompute).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_batch.config import ANGRY, SEED_CLASSES, feature_config  # noqa: E402
from ser_batch.errors import AudioError  # noqa: E402
from ser_batch.features.augment import (  # noqa: E402
    TELEPHONE_RATE,
    VOICE_KINDS,
    add_noise,
    apply_gain,
    augmented_copies,
    change_speed,
    shift_voice,
    telephone_channel,
    voice_copies,
)
from ser_batch.features.extract import feature_names, feature_vector  # noqa: E402
from ser_batch.features.prosody import PROSODY_NAMES  # noqa: E402
from ser_batch.features.resample import resample  # noqa: E402
from ser_batch.labels import labels_from_path  # noqa: E402
from ser_batch.model.calibration import calibrated_probabilities, fit_temperature  # noqa: E402
from ser_batch.model.metrics import detection_summary, expected_calibration_error  # noqa: E402
from ser_batch.model.voice import normalise_voices, voice_prior  # noqa: E402

DEFAULT_LABEL = "stats8k + mlp-ensemble + aug"
"""The configuration ``ser-batch featurize`` and ``ser-batch train`` default to."""

NEUTRAL = SEED_CLASSES.index("neutral")

CALL_CLIPS = 20
"""Test clips per simulated call (about a minute of speech) for voice normalisation."""

LEARNING_CURVE_LABEL = "stats8k + mlp"
"""The configuration the learning curve retrains (a single MLP: five times cheaper than the ensemble)."""

FEATURE_SETS = ("seed268", "stats16k", "stats8k", "stats8k-tel", "stats8k-prosody", "frames8k")
AUGMENTED_SETS = ("stats16k", "stats8k", "stats8k-tel", "stats8k-prosody", "frames8k")  # never the recipe baseline
VARIANTS = ("clean", "tel", "aug0", "aug1")
VOICE_SETS = ("stats8k",)  # the sets whose new-voice copies (``voice_copies``) are cached, in {set}-voices.npz
VOICE_VARIANTS = (*VOICE_KINDS, "vtlp-telephone", "formant-telephone", "resynthesis", "speed-noise")
"""Copies cached beside a set: each new-voice kind, two through the telephone channel, WORLD resynthesis alone (a
control), and the speed + noise copy the default made before the VTLP copy replaced it (``previous_speed_copy``)."""

PREVIOUS = ("aug0", "speed-noise")
PREVIOUS_LABEL = "stats8k + mlp-ensemble + telephone + speed-noise copies (the previous default)"


@dataclass(frozen=True)
class Clips:
    paths: list[str]
    corpus: np.ndarray
    speaker: np.ndarray
    emotion: np.ndarray


def list_clips(data: Path) -> Clips:
    rows = []
    for path in sorted(data.rglob("*.flac")):
        labels = labels_from_path(str(path))
        if labels.emotion in SEED_CLASSES:
            rows.append((str(path), labels.corpus, labels.speaker, labels.emotion))
    paths, corpus, speaker, emotion = zip(*rows, strict=True)
    return Clips(list(paths), np.array(corpus, object), np.array(speaker, object), np.array(emotion, object))


def _featurize(set_name: str, waveform: np.ndarray, rate: int) -> np.ndarray:
    config = feature_config(set_name)
    return feature_vector(
        resample(waveform, rate, config.sample_rate, quality=config.resample_quality), config.sample_rate, config
    )


def featurize_clip(task: tuple[int, str, tuple[str, ...]]) -> dict[str, object]:
    index, path, set_names = task
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    waveform = np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32))
    rng = np.random.default_rng(zlib.crc32(Path(path).name.encode()))
    phone = telephone_channel(waveform, rate)
    copies = augmented_copies(waveform, rate, rng)
    inputs = {"clean": (waveform, rate), "tel": (phone, TELEPHONE_RATE)}
    inputs.update({f"aug{i}": (c.waveform, c.sample_rate) for i, c in enumerate(copies)})
    out: dict[str, object] = {"index": index, "seconds": {}}
    for set_name in set_names:
        for variant, (audio, audio_rate) in inputs.items():
            if variant.startswith("aug") and set_name not in AUGMENTED_SETS:
                continue
            start = time.perf_counter()
            try:
                out[(set_name, variant)] = _featurize(set_name, audio, audio_rate)
            except AudioError:
                out[(set_name, variant)] = None
            if variant == "clean":
                out["seconds"][set_name] = time.perf_counter() - start  # type: ignore[index]
    return out


def build_cache(clips: Clips, cache: Path, n_processes: int, set_names: tuple[str, ...]) -> None:
    from multiprocessing import Pool

    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: list[dict[str, object]] = []
    with Pool(n_processes) as pool:
        for n, result in enumerate(
            pool.imap_unordered(featurize_clip, [(i, p, set_names) for i, p in enumerate(clips.paths)], chunksize=16), 1
        ):
            results.append(result)
            if n % 250 == 0:
                print(f"featurized {n}/{len(clips.paths)} clips in {time.perf_counter() - start:.0f} s", flush=True)
    results.sort(key=lambda r: r["index"])  # type: ignore[arg-type, return-value]
    for set_name in set_names:
        arrays: dict[str, np.ndarray] = {}
        for variant in VARIANTS:
            rows = [r.get((set_name, variant)) for r in results]
            if all(row is None for row in rows):
                continue
            width = next(row.size for row in rows if row is not None)  # type: ignore[union-attr]
            arrays[variant] = np.stack([row if row is not None else np.full(width, np.nan, np.float32) for row in rows])
        ms = 1000 * np.array([r["seconds"][set_name] for r in results])  # type: ignore[index]
        np.savez(
            cache / f"{set_name}.npz",
            paths=np.array(clips.paths),
            corpus=clips.corpus.astype(str),
            speaker=clips.speaker.astype(str),
            emotion=clips.emotion.astype(str),
            ms=ms,
            fingerprint=feature_config(set_name).fingerprint(),
            **arrays,
        )
    print(f"cache built in {time.perf_counter() - start:.0f} s", flush=True)


def previous_speed_copy(waveform: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """The second copy ``augmented_copies`` made before the VTLP copy: speed 0.9-1.1, gain, noise at 10-30 dB SNR.

    Draws from ``rng`` exactly as that policy did after its telephone copy, so its rows are the ones measured then.
    """
    add_noise(
        apply_gain(waveform, float(rng.uniform(-6.0, 6.0))), float(rng.uniform(15.0, 35.0)), rng
    )  # telephone's draws
    fast = apply_gain(change_speed(waveform, float(rng.uniform(0.9, 1.1))), float(rng.uniform(-6.0, 6.0)))
    return np.clip(add_noise(fast, float(rng.uniform(10.0, 30.0)), rng), -1.0, 1.0).astype(np.float32)


def featurize_voices(task: tuple[int, str, str, tuple[str, ...]]) -> dict[str, object]:
    """One clip's new-voice copies (``voice_copies`` at the set's rate), featurized; ms to make and featurize them."""
    index, path, set_name, variants = task
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    waveform = np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32))
    seed = [zlib.crc32(Path(path).name.encode()), 1]  # apart from augmented_copies' stream
    out: dict[str, object] = {"index": index}
    config = feature_config(set_name)
    for variant in variants:
        kind, _, channel = variant.partition("-")
        start = time.perf_counter()
        if variant == "speed-noise":
            copy_audio, copy_rate = (
                previous_speed_copy(waveform, rate, np.random.default_rng(zlib.crc32(Path(path).name.encode()))),
                rate,
            )
        elif kind == "resynthesis":  # the control: WORLD analysis and synthesis, nothing shifted, no noise
            audio = resample(waveform, rate, config.sample_rate, quality=config.resample_quality)
            copy_audio, copy_rate = shift_voice(audio, config.sample_rate), config.sample_rate
        else:  # a fresh generator per variant: the same copy as one call making all three (each kind has its own child)
            (copy,) = voice_copies(
                waveform,
                rate,
                np.random.default_rng(seed),
                kinds=(kind,),
                rate=config.sample_rate,
                telephone=bool(channel),
            )
            copy_audio, copy_rate = copy.waveform, copy.sample_rate
        made = time.perf_counter()
        try:
            out[variant] = _featurize(set_name, copy_audio, copy_rate)
        except AudioError:
            out[variant] = None
        out[f"ms_{variant}"] = 1000 * (made - start)
        out[f"ms_features_{variant}"] = 1000 * (time.perf_counter() - made)
    return out


def build_voice_cache(clips: Clips, cache: Path, n_processes: int, set_name: str, variants: tuple[str, ...]) -> None:
    """Featurize ``variants`` of every clip's new-voice copies into {set}-voices.npz, beside those already there."""
    from multiprocessing import Pool

    start = time.perf_counter()
    path = cache / f"{set_name}-voices.npz"
    arrays: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key not in ("paths", "fingerprint")}
    tasks = [(i, p, set_name, variants) for i, p in enumerate(clips.paths)]
    with Pool(n_processes) as pool:
        results = []
        for n, result in enumerate(pool.imap_unordered(featurize_voices, tasks, chunksize=16), 1):
            results.append(result)
            if n % 250 == 0:
                print(f"voices: {n}/{len(clips.paths)} clips in {time.perf_counter() - start:.0f} s", flush=True)
    results.sort(key=lambda r: r["index"])  # type: ignore[arg-type, return-value]
    for kind in variants:
        rows = [r[kind] for r in results]
        width = next(row.size for row in rows if row is not None)  # type: ignore[union-attr]
        blank = np.full(width, np.nan, np.float32)
        arrays[kind] = np.stack([row if row is not None else blank for row in rows])  # type: ignore[misc]
        arrays[f"ms_{kind}"] = np.array([r[f"ms_{kind}"] for r in results])
        arrays[f"ms_features_{kind}"] = np.array([r[f"ms_features_{kind}"] for r in results])
    partial = path.with_suffix(".partial.npz")  # a run reading the cache meanwhile sees the old file or the new one
    np.savez(partial, paths=np.array(clips.paths), fingerprint=feature_config(set_name).fingerprint(), **arrays)
    partial.replace(path)
    print(f"voice cache built in {time.perf_counter() - start:.0f} s", flush=True)


PROSODY = "^(" + "|".join(PROSODY_NAMES) + ")$"
"""The descriptors stats8k-prosody adds to stats8k."""

TELEPHONE_ROBUST = r"^(?!slope_0_500_|f1_hz_|f0_st_p80$|f0_st_range$|f0_st_rise_slope$)"
"""stats8k-prosody without the descriptors a telephone line scrambles: correlation between a clip's clean and
telephone value under 0.5 on ser-dev (slope 0-500 Hz -0.01, F1 0.25-0.46, F0 p80 0.26, range 0.52, rise 0.41)."""


@dataclass(frozen=True)
class Setup:
    """One configuration in the table."""

    label: str
    feature_set: str
    model: str
    augment: bool = False
    copies: tuple[str, ...] = (
        "aug0",
        "aug1",
    )  # aug0: telephone copy, aug1: speed + noise copy; VOICE_KINDS: new voices
    epochs: int = 100  # TrainConfig's default; class weighting and patience are the model's defaults too
    speaker_norm: str = ""  # z-score features per speaker: "all" clips or "20-half-neutral" (see _speaker_norm)
    voice_norm: str = ""  # "zscore" (ser_batch.model.voice), "cepstral" or "neutral" (below); tests in 20-clip calls
    columns: str = ""  # a regular expression: only the set's features whose names match it (default: all)
    raw_too: bool = False  # with voice_norm: the model sees the raw features beside the normalised ones
    call_training: float | None = None  # with voice_norm: train on random calls of 1-20 clips, this share one emotion
    prior_weight: float = 10.0  # with voice_norm: pseudo-clips of the population in each voice's statistics


SETUPS: tuple[Setup, ...] = (
    Setup("recipe: seed268 + seed-mlp", "seed268", "seed-mlp"),
    Setup("seed268 + mlp", "seed268", "mlp"),
    Setup("stats16k + logistic", "stats16k", "logistic"),
    Setup("stats16k + mlp", "stats16k", "mlp"),
    Setup("stats16k + mlp + aug", "stats16k", "mlp", augment=True),
    Setup("stats8k + logistic", "stats8k", "logistic"),
    Setup("stats8k + logistic + aug", "stats8k", "logistic", augment=True),
    Setup("MFCC statistics (stats8k's mfcc_*) + logistic", "stats8k", "logistic", columns=r"^mfcc_"),
    Setup("stats8k + mlp", "stats8k", "mlp"),
    Setup("stats8k + mlp + aug", "stats8k", "mlp", augment=True),
    Setup("stats16k + mlp-ensemble + aug", "stats16k", "mlp-ensemble", augment=True),
    Setup("stats8k + mlp-ensemble + aug", "stats8k", "mlp-ensemble", augment=True),
    Setup(
        "stats8k + mlp-ensemble + aug + formant",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        copies=("aug0", "aug1", "formant"),
    ),
    Setup(PREVIOUS_LABEL, "stats8k", "mlp-ensemble", augment=True, copies=PREVIOUS),
    *(
        Setup(f"{PREVIOUS_LABEL} + {v}", "stats8k", "mlp-ensemble", augment=True, copies=(*PREVIOUS, v))
        for v in (*VOICE_KINDS, "vtlp-telephone", "formant-telephone", "resynthesis")
    ),
    Setup(
        f"{PREVIOUS_LABEL} + voices (all three)",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        copies=(*PREVIOUS, *VOICE_KINDS),
    ),
    *(
        Setup(
            f"stats8k + mlp-ensemble + telephone copy + {kind} copy",
            "stats8k",
            "mlp-ensemble",
            augment=True,
            copies=("aug0", kind),
        )
        for kind in ("vtlp", "formant")
    ),
    Setup("stats8k-tel + mlp", "stats8k-tel", "mlp"),
    Setup("stats8k-tel + mlp + aug", "stats8k-tel", "mlp", augment=True),
    Setup("stats8k-tel + mlp-ensemble + aug", "stats8k-tel", "mlp-ensemble", augment=True),
    Setup("stats8k + mlp-ensemble", "stats8k", "mlp-ensemble"),
    Setup("stats8k + mlp-ensemble + telephone-copy only", "stats8k", "mlp-ensemble", augment=True, copies=("aug0",)),
    Setup("stats16k + mlp + aug + speaker-norm(all)", "stats16k", "mlp", augment=True, speaker_norm="all"),
    Setup(
        "stats8k + mlp-ensemble + aug + speaker-norm(all)", "stats8k", "mlp-ensemble", augment=True, speaker_norm="all"
    ),
    Setup(
        "stats8k + mlp-ensemble + aug + speaker-norm(20, half neutral)",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        speaker_norm="20-half-neutral",
    ),
    Setup("stats8k + mlp-ensemble + aug + voice-norm", "stats8k", "mlp-ensemble", augment=True, voice_norm="zscore"),
    Setup(
        "stats8k + mlp-ensemble + aug + voice-norm cepstral",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        voice_norm="cepstral",
    ),
    Setup("stats8k + mlp + aug + voice-norm", "stats8k", "mlp", augment=True, voice_norm="zscore"),
    Setup("stats8k + mlp + aug + voice-norm cepstral", "stats8k", "mlp", augment=True, voice_norm="cepstral"),
    Setup(
        "stats8k + mlp + aug + raw and voice-norm, trained on calls",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="zscore",
        raw_too=True,
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp + aug + voice-norm, trained on calls",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="zscore",
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp + aug + voice-norm cepstral, trained on calls",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="cepstral",
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp + aug + raw and voice-norm cepstral, trained on calls",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="cepstral",
        raw_too=True,
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp + aug + voice-norm cepstral, 40 pseudo-clips",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="cepstral",
        prior_weight=40.0,
    ),
    Setup(
        "stats8k + mlp + aug + voice-norm, 40 pseudo-clips, trained on calls",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="zscore",
        call_training=0.33,
        prior_weight=40.0,
    ),
    Setup(
        "stats8k + mlp + aug + neutral-baseline norm, trained on calls",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="neutral",
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp + aug + neutral-baseline norm",
        "stats8k",
        "mlp",
        augment=True,
        voice_norm="neutral",
    ),
    Setup(
        "stats8k + mlp-ensemble + aug + neutral-baseline norm",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        voice_norm="neutral",
    ),
    Setup(
        "stats8k + mlp-ensemble + aug + voice-norm cepstral, trained on calls",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        voice_norm="cepstral",
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp-ensemble + aug + voice-norm, trained on calls",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        voice_norm="zscore",
        call_training=0.33,
    ),
    Setup(
        "stats8k + mlp-ensemble + aug + raw and voice-norm, trained on calls, 2/3 one emotion",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        voice_norm="zscore",
        raw_too=True,
        call_training=0.67,
    ),
    Setup(
        "stats8k + mlp-ensemble + aug + raw and voice-norm, trained on calls",
        "stats8k",
        "mlp-ensemble",
        augment=True,
        voice_norm="zscore",
        raw_too=True,
        call_training=0.33,
    ),
    Setup("stats8k-prosody + logistic", "stats8k-prosody", "logistic"),
    Setup("stats8k-prosody + logistic + aug", "stats8k-prosody", "logistic", augment=True),
    Setup(
        "prosody descriptors only (stats8k-prosody's own) + logistic", "stats8k-prosody", "logistic", columns=PROSODY
    ),
    Setup("stats8k-prosody + mlp-ensemble", "stats8k-prosody", "mlp-ensemble"),
    Setup("stats8k-prosody + mlp-ensemble + aug", "stats8k-prosody", "mlp-ensemble", augment=True),
    Setup(
        "stats8k-prosody, telephone-robust descriptors + mlp-ensemble + aug",
        "stats8k-prosody",
        "mlp-ensemble",
        augment=True,
        columns=TELEPHONE_ROBUST,
    ),
    Setup("frames8k + crnn", "frames8k", "crnn"),
    Setup("frames8k + crnn + aug", "frames8k", "crnn", augment=True),
)


def load_cache(cache: Path, set_name: str) -> dict[str, np.ndarray]:
    with np.load(cache / f"{set_name}.npz", allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    if str(data["fingerprint"]) != feature_config(set_name).fingerprint():
        raise SystemExit(f"{cache}/{set_name}.npz is stale (fingerprint); delete it and rerun")
    voices = cache / f"{set_name}-voices.npz"
    if voices.exists():
        with np.load(voices, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != str(data["fingerprint"]) or list(npz["paths"]) != list(data["paths"]):
                raise SystemExit(f"{voices} is stale; delete it and rerun")
            data.update({kind: npz[kind] for kind in VOICE_VARIANTS if kind in npz.files})
    return data


def _speaker_norm(features: np.ndarray, groups: np.ndarray, emotion: np.ndarray, policy: str) -> np.ndarray:
    # "all": z-score with every clip of the voice. "20-half-neutral": only 20 clips, 10 of them neutral,
    # as a call that is mostly calm would give; labels pick the subset only to simulate that skew.
    out = np.empty_like(features)
    rng = np.random.default_rng(0)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        basis = rows
        if policy == "20-half-neutral":
            neutral, other = rows[emotion[rows] == "neutral"], rows[emotion[rows] != "neutral"]
            basis = np.concatenate(
                [rng.permutation(neutral)[:10], rng.permutation(other)[: 20 - min(10, neutral.size)]]
            )
        block = features[basis]
        out[rows] = (features[rows] - np.nanmean(block, axis=0)) / (np.nanstd(block, axis=0) + 1e-6)
    return out


def _names(setup: Setup) -> list[str]:
    names = feature_names(feature_config(setup.feature_set))
    return [name for name in names if re.search(setup.columns, name)] if setup.columns else names


def _matrices(data: dict[str, np.ndarray], setup: Setup, groups: np.ndarray) -> dict[str, np.ndarray]:
    variants = {v: data[v] for v in (*VARIANTS, *VOICE_VARIANTS) if v in data}
    if setup.columns:
        names = feature_names(feature_config(setup.feature_set))
        keep = [i for i, name in enumerate(names) if re.search(setup.columns, name)]
        variants = {v: m[:, keep] for v, m in variants.items()}
    if setup.speaker_norm:
        variants = {v: _speaker_norm(m, groups, data["emotion"], setup.speaker_norm) for v, m in variants.items()}
    return variants


def run_fold(
    setup: Setup,
    matrices: dict[str, np.ndarray],
    targets: np.ndarray,
    groups: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train one fold; return the test clips' predicted classes per variant and their probabilities.

    The probabilities (``clean`` and ``tel``, uncalibrated, plus ``temperature``, shape ``()``) come
    with the temperature fitted on the inner validation part, as ``ser-batch train`` fits it.
    """
    import keras

    from ser_batch.config import TrainConfig
    from ser_batch.model.fit import class_weights
    from ser_batch.model.networks import build_model
    from ser_batch.model.split import group_kfold

    config = TrainConfig(model=setup.model, seed=seed, epochs=setup.epochs)  # type: ignore[arg-type]
    patience = config.resolved_patience()
    fit_rows, validation = train, train[:0]
    if patience:  # inner grouped validation part: a fifth of the training speakers
        inner_fit, inner_val = next(group_kfold(targets[train], groups[train], n_splits=5, seed=seed))
        fit_rows, validation = train[inner_fit], train[inner_val]
    blocks = [matrices["clean"][fit_rows]]
    labels = [targets[fit_rows]]
    if setup.augment:  # copies of the fitting clips only; never of validation or test clips
        for variant in setup.copies:
            blocks.append(matrices[variant][fit_rows])
            labels.append(targets[fit_rows])
    x, y = np.concatenate(blocks), np.concatenate(labels)
    ok = np.isfinite(x).all(axis=1)
    x, y = x[ok], y[ok]
    validation_x = matrices["clean"][validation]

    def normalised(features: np.ndarray, voices: np.ndarray) -> np.ndarray:  # unlabelled rows, as scoring would
        if setup.voice_norm == "cepstral":
            out = _cepstral(features, voices, prior)
        elif setup.voice_norm == "neutral":  # the model's p(neutral) of each clip against the population's baseline
            first = model.predict(features - prior, batch_size=1024, verbose=0)[:, NEUTRAL]
            out = _neutral_baseline(features, voices, first, prior, setup.prior_weight)
        else:
            out = normalise_voices(features, voices, prior)
        return np.hstack([features, out]).astype(np.float32) if setup.raw_too else out

    if setup.voice_norm:  # as ser_batch.jobs.train does: each training voice (and channel) with all its clips
        if setup.raw_too and setup.voice_norm == "neutral":
            raise SystemExit("raw_too is measured with zscore and cepstral only")
        variants = ("clean", *setup.copies)
        voices = np.concatenate([np.char.add(groups[fit_rows], f"/{v}") for v in variants])[ok]
        validation_voices = groups[validation]
        if setup.call_training is not None:  # statistics of random calls (labels only choose the calls)
            rng = np.random.default_rng(seed)
            voices = np.concatenate(
                [
                    np.char.add(_training_calls(groups[fit_rows], targets[fit_rows], rng, setup.call_training), f"/{v}")
                    for v in variants
                ]
            )[ok]
            validation_voices = _training_calls(groups[validation], targets[validation], rng, setup.call_training)
        raw_x, raw_validation = x, validation_x
        if setup.voice_norm == "cepstral":
            prior = _cepstral_prior(x, voices, setup.prior_weight, _names(setup))
            x = _cepstral(x, voices, prior)
            validation_x = _cepstral(validation_x, validation_voices, prior)
        elif setup.voice_norm == "neutral":  # training and validation baselines from their labels
            prior = np.mean(
                [x[(voices == v) & (y == NEUTRAL)].mean(axis=0) for v in np.unique(voices[y == NEUTRAL])], 0
            )
            x = _neutral_baseline(x, voices, (y == NEUTRAL).astype(float), prior, setup.prior_weight)
            validation_x = _neutral_baseline(
                validation_x,
                validation_voices,
                (targets[validation] == NEUTRAL).astype(float),
                prior,
                setup.prior_weight,
            )
        else:
            prior = voice_prior(x, voices, weight=setup.prior_weight)
            x = normalise_voices(x, voices, prior)
            validation_x = normalise_voices(validation_x, validation_voices, prior)
        if setup.raw_too:
            x, validation_x = np.hstack([raw_x, x]), np.hstack([raw_validation, validation_x])

    model = build_model(
        x.shape[1],
        6,
        config,
        normalizer_data=x,
        frame_shape=getattr(feature_config(setup.feature_set), "frame_shape", None),
    )
    callbacks = []
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        )
    model.fit(
        x,
        y,
        validation_data=(validation_x, targets[validation]) if validation.size else None,
        epochs=setup.epochs,
        batch_size=64,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
        class_weight=class_weights(y, 6) if config.resolved_class_weight() == "balanced" else None,
    )
    out, probabilities = {}, {}
    for variant in ("clean", "tel"):
        features = np.nan_to_num(matrices[variant][test])
        if setup.voice_norm:
            features = normalised(features, _calls(groups[test], targets[test], seed, mixed=True))
        probabilities[variant] = model.predict(features, batch_size=1024, verbose=0)
        out[variant] = probabilities[variant].argmax(axis=1)
    held_out = model.predict(validation_x, batch_size=1024, verbose=0) if validation.size else np.zeros((0, 6))
    probabilities["temperature"] = np.array(fit_temperature(held_out, targets[validation]))
    if setup.voice_norm:  # stress tests: one clip alone, and calls of a single emotion
        clean = np.nan_to_num(matrices["clean"][test])
        for name, voices in (
            ("single", np.arange(test.size)),
            ("one_emotion", _calls(groups[test], targets[test], seed, mixed=False)),
        ):
            out[name] = model.predict(normalised(clean, voices), batch_size=1024, verbose=0).argmax(axis=1)
    return out, probabilities


def _calls(groups: np.ndarray, targets: np.ndarray, seed: int, *, mixed: bool) -> np.ndarray:
    # Test clips of one voice cut into "calls" of CALL_CLIPS clips: random mixes, or one emotion each.
    rng = np.random.default_rng(seed)
    calls = np.empty(groups.size, dtype=object)
    for group, target in sorted({(g, -1 if mixed else int(t)) for g, t in zip(groups, targets, strict=True)}):
        rows = rng.permutation(np.flatnonzero((groups == group) & ((targets == target) | mixed)))
        for start in range(0, rows.size, CALL_CLIPS):
            calls[rows[start : start + CALL_CLIPS]] = f"{group}/{target}/{start}"
    return calls


CEPSTRAL_LEVELS = r"^mfcc_(0[4-9]|1[0-9]|20)_(mean|p10|p50|p90)$"
"""The levels of MFCC 4-20 (vocal tract and line; not c0 = loudness, nor MFCC 2-3 = spectral tilt)."""


def _cepstral_prior(x: np.ndarray, voices: np.ndarray, weight: float, names: list[str]) -> dict[str, object]:
    # cepstral mean subtraction, robust: the average per-voice median of the cepstral levels
    columns = np.array([i for i, name in enumerate(names) if re.search(CEPSTRAL_LEVELS, name)])
    x = np.asarray(x, np.float64)
    medians = [np.median(x[voices == v][:, columns], axis=0) for v in np.unique(voices)]
    return {"columns": columns, "level": np.mean(medians, axis=0), "weight": weight}


def _cepstral(features: np.ndarray, voices: np.ndarray, prior: dict[str, object]) -> np.ndarray:
    # each voice's cepstral levels less its median, shrunk towards the population's by `weight` pseudo-clips
    columns, level, weight = prior["columns"], prior["level"], prior["weight"]
    features = np.asarray(features, np.float64)
    out = features.copy()
    for voice in np.unique(voices):
        rows = np.flatnonzero(voices == voice)
        block = features[np.ix_(rows, columns)]  # type: ignore[arg-type]
        own = (rows.size * np.median(block, axis=0) + weight * level) / (rows.size + weight)  # type: ignore[operator]
        out[np.ix_(rows, columns)] = block - own  # type: ignore[arg-type]
    return out.astype(np.float32)


def _neutral_baseline(
    features: np.ndarray, voices: np.ndarray, neutral: np.ndarray, base: np.ndarray, prior_weight: float
) -> np.ndarray:
    # Less each voice's neutral baseline: its clips' mean weighted by how neutral each is (labels in training,
    # the model's p(neutral) when testing), shrunk towards the training voices' average neutral mean `base` by
    # prior_weight pseudo-clips (a call with no neutral-looking clip keeps the population's baseline).
    out = np.empty(features.shape, np.float32)
    for voice in np.unique(voices):
        rows = voices == voice
        own = neutral[rows] @ features[rows] + prior_weight * base
        out[rows] = features[rows] - own / (neutral[rows].sum() + prior_weight)
    return out


def _training_calls(
    groups: np.ndarray, targets: np.ndarray, rng: np.random.Generator, one_emotion: float
) -> np.ndarray:
    # Each voice's clips cut into random calls of 1 to CALL_CLIPS clips: a share of the clips in calls of one
    # emotion, the rest in calls of mixed emotions.
    calls = np.empty(groups.size, dtype=object)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        alone = rng.random(rows.size) < one_emotion
        pools = [rows[alone & (targets[rows] == t)] for t in np.unique(targets[rows])] + [rows[~alone]]
        for p, pool in enumerate(pools):
            pool, start = rng.permutation(pool), 0
            while start < pool.size:
                size = int(rng.integers(1, CALL_CLIPS + 1))
                calls[pool[start : start + size]] = f"{group}/{p}/{start}"
                start += size
    return calls.astype(str)


def learning_curve(
    cache: Path,
    folds: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    setup: Setup,
    fractions: tuple[float, ...] = (0.33, 0.67, 1.0),
    draws: int = 2,
) -> list[tuple[float, float, float, float]]:
    """Accuracy against the number of training voices: each fold trains on a random share of its voices.

    Returns ``(fraction, mean training voices, mean accuracy, std over folds and draws)`` per fraction.
    """
    data = load_cache(cache, setup.feature_set)
    targets = np.array([list(SEED_CLASSES).index(e) for e in data["emotion"]], dtype=np.int64)
    groups = np.char.add(np.char.add(data["corpus"], "/"), data["speaker"])
    matrices = _matrices(data, setup, groups)
    rows = []
    for fraction in fractions:
        accuracies, voices = [], []
        for draw in range(draws if fraction < 1.0 else 1):
            rng = np.random.default_rng(seed + 100 * draw)
            for k, (train, test) in enumerate(folds):
                names = np.unique(groups[train])
                keep = rng.choice(names, max(5, round(fraction * names.size)), replace=False)
                subset = train[np.isin(groups[train], keep)]
                result, _ = run_fold(setup, matrices, targets, groups, subset, test, seed + k)
                accuracies.append(float(np.mean(result["clean"] == targets[test])))
                voices.append(keep.size)
        rows.append((fraction, float(np.mean(voices)), float(np.mean(accuracies)), float(np.std(accuracies))))
        print(f"learning curve {fraction:.2f}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def _bal(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)]))


def evaluate_setup(
    setup: Setup, cache: Path, folds: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> dict[str, object]:
    data = load_cache(cache, setup.feature_set)
    classes = list(SEED_CLASSES)
    targets = np.array([classes.index(e) for e in data["emotion"]], dtype=np.int64)
    groups = np.char.add(np.char.add(data["corpus"], "/"), data["speaker"])
    matrices = _matrices(data, setup, groups)
    predicted: dict[str, np.ndarray] = {}
    raw = {v: np.zeros((targets.size, len(classes))) for v in ("clean", "tel")}
    calibrated = {v: np.zeros((targets.size, len(classes))) for v in ("clean", "tel")}
    per_fold: dict[str, list[float]] = {"acc": [], "bal": [], "tel": [], "tel_bal": [], "temperature": []}
    start = time.perf_counter()
    for k, (train, test) in enumerate(folds):
        result, probabilities = run_fold(setup, matrices, targets, groups, train, test, seed + k)
        for variant, values in result.items():
            predicted.setdefault(variant, np.full(targets.size, -1))[test] = values
        temperature = float(probabilities["temperature"])
        per_fold["temperature"].append(temperature)
        for variant in raw:
            raw[variant][test] = probabilities[variant]
            calibrated[variant][test] = calibrated_probabilities(probabilities[variant], temperature)
        y = targets[test]
        for stress in ("single", "one_emotion"):
            if stress in result:
                per_fold.setdefault(stress, []).append(float(np.mean(result[stress] == y)))
        per_fold["acc"].append(float(np.mean(result["clean"] == y)))
        per_fold["bal"].append(_bal(y, result["clean"]))
        per_fold["tel"].append(float(np.mean(result["tel"] == y)))
        per_fold["tel_bal"].append(_bal(y, result["tel"]))
        names = np.array(classes, object)[y]
        for variant, kind, probs in (("clean", "raw", raw), ("tel", "raw", raw), ("clean", "cal", calibrated)):
            ece_fold = expected_calibration_error(names, probs[variant][test], classes=classes)
            per_fold.setdefault(f"ece_{variant}_{kind}", []).append(ece_fold)
        per_fold.setdefault("ece_tel_cal", []).append(
            expected_calibration_error(names, calibrated["tel"][test], classes=classes)
        )
        angry_fold = detection_summary(names, raw["tel"][test], classes=classes, positive=ANGRY)
        for key in ("precision", "recall", "roc_auc"):
            per_fold.setdefault(f"angry_{key}", []).append(angry_fold[key] if angry_fold[key] is not None else np.nan)
    corpora = {
        c: float(np.mean(predicted["clean"][data["corpus"] == c] == targets[data["corpus"] == c]))
        for c in ("ravdess", "tess", "emodb")
    }
    pooled = float(np.mean(predicted["clean"] == targets))
    confusion = np.zeros((6, 6), dtype=np.int64)
    np.add.at(confusion, (targets, predicted["clean"]), 1)
    index = np.arange(len(classes))
    ece = {
        (variant, kind): expected_calibration_error(targets, probs[variant], classes=index)
        for kind, probs in (("raw", raw), ("calibrated", calibrated))
        for variant in raw
    }
    angry = detection_summary(np.array(classes, object)[targets], raw["tel"], classes=classes, positive=ANGRY)
    return {
        "setup": setup,
        "folds": per_fold,
        "corpora": corpora,
        "pooled": pooled,
        "ece": ece,
        "angry_tel": angry,
        "probabilities": {"as trained": raw, "--calibrate": calibrated},
        "targets": targets,
        "seconds": time.perf_counter() - start,
        "confusion": confusion,
        "ms": float(np.median(data["ms"])),
    }


def random_split_reference(cache: Path, seed: int) -> float:
    """The recipe's own protocol: random stratified 80/20, 10 % of train for validation, 100 epochs."""
    from ser_batch.config import TrainConfig
    from ser_batch.model.networks import build_model
    from ser_batch.model.split import split_indices

    data = load_cache(cache, "seed268")
    classes = list(SEED_CLASSES)
    targets = np.array([classes.index(e) for e in data["emotion"]], dtype=np.int64)
    train, validation, test = split_indices(
        targets, None, split="random", test_size=0.2, validation_size=0.1, seed=seed
    )
    config = TrainConfig(seed=seed)
    model = build_model(data["clean"].shape[1], 6, config, normalizer_data=data["clean"][train])
    model.fit(
        data["clean"][train],
        targets[train],
        validation_data=(data["clean"][validation], targets[validation]),
        epochs=100,
        batch_size=64,
        verbose=0,
    )
    return float(np.mean(model.predict(data["clean"][test], verbose=0).argmax(axis=1) == targets[test]))


def reliability(results: list[dict[str, object]], label: str) -> None:
    """Print one configuration's reliability: accuracy and share of clips at or above each confidence floor."""
    rows = [r for r in results if r["setup"].label == label]  # type: ignore[union-attr]
    if not rows:
        return
    r, floors = rows[0], (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    targets = r["targets"]
    print(f"\nreliability of {label}: accuracy (share) of the test clips whose top-class probability is >= a floor")
    print(
        "| probabilities | clips | "
        + " | ".join(f">= {t:.1f}" for t in floors)
        + " |\n|---|---|"
        + "---|" * len(floors)
    )
    for kind, variants in r["probabilities"].items():  # type: ignore[union-attr]
        for variant, name in (("clean", "studio"), ("tel", "telephone")):
            probs = variants[variant]
            confidence, top = probs.max(axis=1), probs.argmax(axis=1)
            cells = []
            for floor in floors:
                kept = confidence >= floor
                cells.append(f"{np.mean(top[kept] == targets[kept]):.3f} ({kept.mean():.0%})" if kept.any() else "n/a")  # type: ignore[index]
            print(f"| {kind} | {name} | " + " | ".join(cells) + " |")


def _ms(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def print_table(results: list[dict[str, object]], reference: float | None) -> None:
    header = (
        "configuration",
        "accuracy",
        "pooled acc",
        "balanced acc",
        "ravdess",
        "tess",
        "emodb",
        "worst",
        "telephone acc",
        "telephone bal",
        "ECE raw → --calibrate",
        "telephone ECE raw → --calibrate",
        "angry P / R, telephone",
        "angry AUC, telephone",
        "ms/clip",
        "train s",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        f, c = r["folds"], r["corpora"]  # type: ignore[index]
        cells = [
            r["setup"].label,
            _ms(f["acc"]),
            f"{r['pooled']:.3f}",
            _ms(f["bal"]),  # type: ignore[union-attr, index]
            *(f"{c[k]:.3f}" for k in ("ravdess", "tess", "emodb")),
            f"{min(c.values()):.3f}",  # type: ignore[index, union-attr]
            _ms(f["tel"]),
            _ms(f["tel_bal"]),
            f"{_ms(f['ece_clean_raw'])} → {_ms(f['ece_clean_cal'])}",
            f"{_ms(f['ece_tel_raw'])} → {_ms(f['ece_tel_cal'])}",
            f"{_ms(f['angry_precision'])} / {_ms(f['angry_recall'])}",
            _ms(f["angry_roc_auc"]),
            f"{r['ms']:.1f}",
            f"{r['seconds']:.0f}",
        ]  # type: ignore[index]
        print("| " + " | ".join(cells) + " |")
    print(
        "\naccuracy / balanced / telephone: mean ± std over the 5 speaker-grouped folds (each fold counts once; "
        "the TESS fold holds 1,199 of the 2,140 clips); pooled acc: every clip once; per corpus: pooled over "
        "the folds (every clip is tested once; TESS's single speaker sits in one fold, trained on RAVDESS + EmoDB "
        "voices only); ms/clip: median featurization of one clean clip at the set's rate. ECE: 15 equal-width "
        "bins of top-class confidence of each fold's test clips, as trained (the default) and with the fold's "
        "temperature fitted on its inner validation part (--calibrate); angry: against the other five classes on "
        "each fold's telephone test clips, precision and recall of the top class, ROC AUC of p(angry) as trained. "
        "The pooled figures (every clip once; TESS's 200 angry clips are half of all) are printed on stderr."
    )
    stressed = [r for r in results if "single" in r["folds"]]  # type: ignore[operator]
    if stressed:
        print(
            f"\nvoice normalisation: test voices cut into calls of {CALL_CLIPS} clips (mixed emotions, as in the "
            "table), compared with each clip alone and with calls of one emotion; accuracy, mean ± std over folds"
        )
        print("| configuration | mixed calls | single clip | one-emotion calls |\n|---|---|---|---|")
        for r in stressed:
            f = r["folds"]  # type: ignore[index]
            print(f"| {r['setup'].label} | {_ms(f['acc'])} | {_ms(f['single'])} | {_ms(f['one_emotion'])} |")  # type: ignore[union-attr]
    if reference is not None:
        print(
            f"reference, the recipe's original protocol (random 80/20 split, same speakers on both sides): "
            f"accuracy {reference:.3f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ser-dev")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ser-acc"))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="exact labels of the setups to run (default: all)")
    parser.add_argument(
        "--confusion", type=Path, help="write the default setup's pooled confusion matrix here (.csv and .png)"
    )
    parser.add_argument(
        "--learning-curve", action="store_true", help="also print accuracy against the number of training voices"
    )
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    start = time.perf_counter()
    unknown = set(args.only or ()) - {s.label for s in SETUPS}
    if unknown:
        raise SystemExit(f"unknown setups {sorted(unknown)}; known: {[s.label for s in SETUPS]}")
    setups = [s for s in SETUPS if not args.only or s.label in args.only]
    needed = {s.feature_set for s in setups} | ({"seed268"} if setups[0] is SETUPS[0] else set())
    needed |= {s.feature_set for s in SETUPS if args.learning_curve and s.label == LEARNING_CURVE_LABEL}
    missing = tuple(s for s in FEATURE_SETS if s in needed and not (args.cache / f"{s}.npz").exists())
    if missing:  # only the sets the chosen rows use
        build_cache(list_clips(args.data), args.cache, args.processes, missing)
    for set_name in VOICE_SETS:
        wanted = {v for s in setups if s.feature_set == set_name for v in s.copies if v in VOICE_VARIANTS}
        path = args.cache / f"{set_name}-voices.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as npz:
                wanted -= set(npz.files)
        if wanted:
            variants = tuple(v for v in VOICE_VARIANTS if v in wanted)
            build_voice_cache(list_clips(args.data), args.cache, args.processes, set_name, variants)
    from ser_batch.model.split import group_kfold

    meta = load_cache(args.cache, setups[0].feature_set)  # every set's cache lists the same clips in the same order
    groups = np.char.add(np.char.add(meta["corpus"], "/"), meta["speaker"])
    folds = list(group_kfold(meta["emotion"], groups, n_splits=5, seed=args.seed))
    results = []
    for setup in setups:
        results.append(evaluate_setup(setup, args.cache, folds, args.seed))
        f, c = results[-1]["folds"], results[-1]["corpora"]
        print(
            f"done {setup.label} in {results[-1]['seconds']:.0f} s: acc {_ms(f['acc'])} bal {_ms(f['bal'])} "
            f"tel {_ms(f['tel'])} corpora {c} temperature {_ms(f['temperature'])} ece {results[-1]['ece']} "
            f"angry on telephone {results[-1]['angry_tel']}",
            file=sys.stderr,
            flush=True,
        )
    reference = random_split_reference(args.cache, args.seed) if setups[0] is SETUPS[0] else None  # with the recipe row
    print_table(results, reference)
    reliability(results, DEFAULT_LABEL)
    defaults = [r for r in results if r["setup"].label == DEFAULT_LABEL]  # type: ignore[union-attr]
    if args.confusion is not None and defaults:
        from ser_batch.model.plots import confusion_csv, confusion_png

        matrix = defaults[0]["confusion"]
        title = f"{DEFAULT_LABEL}: speaker-grouped 5-fold CV on ser-dev"
        args.confusion.with_suffix(".csv").write_bytes(confusion_csv(matrix, SEED_CLASSES))  # type: ignore[arg-type]
        args.confusion.with_suffix(".png").write_bytes(confusion_png(matrix, SEED_CLASSES, title=title))  # type: ignore[arg-type]
    if args.learning_curve:
        curve_setup = next(s for s in SETUPS if s.label == LEARNING_CURVE_LABEL)
        print(
            f"\nlearning curve ({curve_setup.label}): a random share of each fold's training voices, same test voices"
        )
        print("| share of training voices | voices (mean) | accuracy |\n|---|---|---|")
        for fraction, voices, mean, std in learning_curve(args.cache, folds, args.seed, curve_setup):
            print(f"| {fraction:.2f} | {voices:.1f} | {mean:.3f} ± {std:.3f} |")
    print(f"\nwall time {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
