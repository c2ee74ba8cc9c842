"""Frozen, fingerprinted settings for feature sets, training and scoring."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ser_batch.errors import ConfigError

EMOTIONS: tuple[str, ...] = (
    "angry",
    "calm",
    "disgust",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprise",
    "boredom",
)
"""Every emotion a corpus convention can yield, in the one fixed order used everywhere."""

SEED_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad")
"""The original recipe's six classes (calm, surprise and boredom dropped)."""

CORPORA: tuple[str, ...] = ("crema", "ravdess", "savee", "tess", "emodb", "unknown")
"""Every corpus value a row can carry; also the only values used in partition paths."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def fingerprint(self) -> str:
        """Return a short hash of the canonical JSON of these settings.

        >>> FEATURE_SETS["seed268"].fingerprint() == FEATURE_SETS["seed268"].fingerprint()
        True
        """
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class FeatureConfig(_Frozen):
    """Settings of one named feature set; every librosa argument comes from here."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    kind: Literal["seed"] = "seed"
    sample_rate: int = Field(gt=0, le=384_000)
    n_fft: int = Field(gt=0)
    hop_length: int = Field(gt=0)
    n_mfcc: int = Field(gt=0)
    n_mels: int = Field(gt=0)
    n_chroma: int = Field(gt=0)
    resample_quality: Literal["soxr_hq", "soxr_vhq", "soxr_mq"] = "soxr_hq"
    silence_peak: float = Field(default=1e-4, ge=0.0, description="peak |x| at or below which a clip counts as silent")

    @property
    def min_samples(self) -> int:
        """Shortest waveform (samples at ``sample_rate``) the featurizer accepts: one frame."""
        return self.n_fft


FEATURE_SETS: dict[str, FeatureConfig] = {
    # The original recipe: librosa defaults at 22,050 Hz, 128 MFCC + 12 chroma + 128 mel.
    "seed268": FeatureConfig(
        name="seed268",
        sample_rate=22_050,
        n_fft=2048,
        hop_length=512,
        n_mfcc=128,
        n_mels=128,
        n_chroma=12,
    ),
}
DEFAULT_FEATURE_SET = "seed268"


def feature_config(name: str) -> FeatureConfig:
    """Look up a feature set by name.

    Raises:
        ConfigError: if no feature set has that name.

    >>> feature_config("seed268").sample_rate
    22050
    """
    try:
        return FEATURE_SETS[name]
    except KeyError:
        known = ", ".join(sorted(FEATURE_SETS))
        raise ConfigError(f"unknown feature set {name!r}; known: {known}") from None


MODELS: tuple[str, ...] = ("seed-mlp",)
"""Model names ``TrainConfig.model`` accepts; each has a builder in ``ser_batch.model.MODEL_BUILDERS``."""


class TrainConfig(_Frozen):
    """How to train one model: architecture, classes, split protocol and fitting budget.

    ``classes`` is stored in ``EMOTIONS`` order whatever order it is given in, so the
    model's output columns never depend on how a user typed them.

    >>> TrainConfig(classes=("sad", "angry")).classes
    ('angry', 'sad')
    """

    # A later model is added here and in ser_batch.model.MODEL_BUILDERS.
    model: Literal["seed-mlp"] = "seed-mlp"
    split: Literal["random", "speaker", "none"] = "random"
    classes: tuple[str, ...] = SEED_CLASSES
    epochs: int = Field(default=100, ge=1, le=100_000)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0, description="fraction of rows held out for test")
    validation_size: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="fraction of the non-test rows held out for validation"
    )

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in classes if name not in EMOTIONS]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; expected a subset of {list(EMOTIONS)}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes {list(classes)} repeat a name")
        if len(classes) < 2:
            raise ValueError(f"classes {list(classes)}: need at least 2")
        return tuple(name for name in EMOTIONS if name in classes)
