"""Frozen, fingerprinted settings for feature sets, training and scoring."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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

ANGRY = "angry"
"""The emotion a call centre acts on: calls report its peak, evaluations its detection figures."""

DEFAULT_MIN_CONFIDENCE = 0.5
"""Calibrated top-class probability below which a scored window is marked ``uncertain`` (see README)."""

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


def _fmax_below_nyquist(cls: type, fmax: float, info: Any) -> float:
    rate = info.data.get("sample_rate")
    if rate is not None and fmax > rate / 2:
        raise ValueError(f"fmax {fmax} > sample_rate / 2 = {rate / 2}")
    return fmax


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


class StatsFeatureConfig(FeatureConfig):
    """A pooled-statistics feature set at a fixed rate.

    Spectral, cepstral and prosodic frames from one shared STFT, silence trimmed, pooled
    with mean, std and percentiles.

    ``n_chroma`` is unused (0). The pitch track is an autocorrelation pitch computed
    from the same power spectrum, so ``n_fft`` must cover two periods of ``f0_min``.
    """

    kind: Literal["stats"] = "stats"  # type: ignore[assignment]
    n_chroma: int = Field(default=0, ge=0)
    fmin: float = Field(default=50.0, ge=0.0, description="lowest mel band edge (Hz)")
    fmax: float = Field(gt=0.0, description="highest mel band edge (Hz), at most sample_rate / 2")
    contrast_fmin: float = Field(default=200.0, gt=0.0, description="lower edge of the first contrast band (Hz)")
    n_contrast_bands: int = Field(default=5, ge=1, le=8)
    f0_min: float = Field(default=60.0, gt=0.0)
    f0_max: float = Field(default=500.0, gt=0.0)
    voicing_threshold: float = Field(default=0.45, gt=0.0, lt=1.0, description="normalised autocorrelation peak")
    trim_db: float = Field(default=40.0, gt=0.0, description="edge frames this far below the loudest are trimmed")
    band_limited: bool = Field(
        default=False,
        description="drop STFT bins outside [fmin, fmax] before every feature (zero-crossing rate then comes "
        "from the band's spectral moments), so wideband and telephone audio give the same frames",
    )

    _below_nyquist = field_validator("fmax")(_fmax_below_nyquist)


class ProsodyFeatureConfig(StatsFeatureConfig):
    """A ``stats`` set followed by prosody and voice-quality descriptors (``ser_batch.features.prosody``).

    F0 statistics and slopes, voicing runs, jitter, shimmer, harmonics-to-noise ratio,
    loudness, spectral balance and LPC formants, all from the set's own frames and pitch track.
    """

    kind: Literal["stats-prosody"] = "stats-prosody"  # type: ignore[assignment]
    lpc_order: int = Field(default=10, ge=4, le=40, description="LPC order for formants (about 2 + kHz of rate)")
    pitch_hysteresis_st: float = Field(
        default=0.5, gt=0.0, description="smallest F0 movement (semitones) that counts as a rise or fall"
    )


class FramesFeatureConfig(FeatureConfig):
    """Per-frame log-mel for sequence models (``crnn``): one fixed-size ``(n_frames, n_mels)`` matrix a clip.

    Silence is trimmed and the level normalised as in the ``stats`` sets; a clip longer
    than ``n_frames`` keeps its centre, a shorter one is repeated until the matrix is full
    (so pooling over time never sees padding). ``n_mfcc`` and ``n_chroma`` are unused (0).
    """

    kind: Literal["frames"] = "frames"  # type: ignore[assignment]
    n_mfcc: int = Field(default=0, ge=0)
    n_chroma: int = Field(default=0, ge=0)
    fmin: float = Field(default=50.0, ge=0.0, description="lowest mel band edge (Hz)")
    fmax: float = Field(gt=0.0, description="highest mel band edge (Hz), at most sample_rate / 2")
    n_frames: int = Field(gt=0, le=10_000, description="frames per clip after cropping or repeating")
    trim_db: float = Field(default=40.0, gt=0.0, description="edge frames this far below the loudest are trimmed")

    _below_nyquist = field_validator("fmax")(_fmax_below_nyquist)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(n_frames, n_mels)``: how a flat feature vector of this set reshapes into frames."""
        return self.n_frames, self.n_mels


ONNX_PREFIX = "onnx:"
"""How a user names an encoder feature set: ``onnx:<local path or s3:// URI of an ONNX file>``, optionally
``#<output name>`` appended to take another output than the model's first."""


ENCODER_SET_NAME = r"^onnx-[0-9a-f]{12}(-[0-9a-f]{8})?$"
"""The pattern of an encoder set's name (``encoder_set_name``)."""


def encoder_set_name(sha256: str, output: str | None = None) -> str:
    """The name (and ``feature_set=`` partition value) of the encoder set of an ONNX file with this SHA-256.

    ``onnx-<first 12 hex digits>`` for the model's first output; a chosen ``output`` adds 8 hex
    digits of its name's hash, so two outputs of one file never share a folder.

    >>> encoder_set_name("0123456789abcdef" * 4), encoder_set_name("0123456789abcdef" * 4, "hidden_6")
    ('onnx-0123456789ab', 'onnx-0123456789ab-ba9d787a')
    """
    chosen = "" if output is None else "-" + hashlib.sha256(output.encode()).hexdigest()[:8]
    return f"onnx-{sha256[:12]}{chosen}"


class EncoderFeatureConfig(FeatureConfig):
    """A pretrained encoder in an ONNX file, its frame embeddings pooled to mean and std over time.

    The model takes a mono float32 waveform at ``sample_rate`` of shape ``(1, n_samples)`` and
    returns frame embeddings ``(1, T, D)`` or ``(T, D)`` (``ser_batch.features.encoder``). The
    set's name holds the file's SHA-256 (``encoder_set_name``), as does its fingerprint, so a
    changed file is another feature set. ``model_uri`` says where the file was found and is left
    out of the fingerprint: the same file elsewhere gives the same features.
    ``n_fft``, ``hop_length``, ``n_mfcc``, ``n_mels`` and ``n_chroma`` are unused (0).
    """

    kind: Literal["onnx"] = "onnx"  # type: ignore[assignment]
    sample_rate: int = Field(default=16_000, gt=0, le=384_000)
    n_fft: int = Field(default=0, ge=0)
    hop_length: int = Field(default=0, ge=0)
    n_mfcc: int = Field(default=0, ge=0)
    n_mels: int = Field(default=0, ge=0)
    n_chroma: int = Field(default=0, ge=0)
    model_uri: str = Field(min_length=1, description="the ONNX file: local path or s3:// URI")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the ONNX file's bytes")
    output: str | None = Field(
        default=None, min_length=1, description="the model output taken as frame embeddings; None: its first"
    )
    n_dims: int = Field(gt=0, le=65_536, description="D: the width of one frame embedding")
    min_input_samples: int = Field(
        default=400, gt=0, description="shortest waveform fed to the model: WavLM's first frame is 400 samples (25 ms)"
    )
    chunk_s: float = Field(
        default=20.0, gt=0.0, le=600.0, description="longer clips are encoded in near-equal chunks of at most this"
    )

    @property
    def min_samples(self) -> int:
        """Shortest waveform (samples at ``sample_rate``) the featurizer accepts."""
        return self.min_input_samples

    @model_validator(mode="after")
    def _name_holds_the_hash(self) -> EncoderFeatureConfig:
        if self.name != encoder_set_name(self.sha256, self.output):
            raise ValueError(
                f"name {self.name!r} != {encoder_set_name(self.sha256, self.output)!r} (from sha256, output)"
            )
        return self

    def fingerprint(self) -> str:
        """A short hash of these settings without ``model_uri``: where the file lies does not change the features."""
        canonical = json.dumps(
            self.model_dump(mode="json", exclude={"model_uri"}), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_STATS8K = StatsFeatureConfig(
    name="stats8k", sample_rate=8_000, n_fft=512, hop_length=80, n_mfcc=20, n_mels=40, fmax=4000.0, contrast_fmin=100.0
)

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
    # Wideband statistics: 16 kHz, 64 ms frames every 10 ms, 64 log-mel, 20 MFCC (+ deltas),
    # contrast, ZCR, energy, spectral shape and an autocorrelation pitch, silence trimmed.
    "stats16k": StatsFeatureConfig(
        name="stats16k", sample_rate=16_000, n_fft=1024, hop_length=160, n_mfcc=20, n_mels=64, fmax=8000.0
    ),
    # The same statistics on narrowband audio (8 kHz, up to 4 kHz): what a telephone call carries.
    "stats8k": _STATS8K,
    # Only the 300-3400 Hz band every telephone line carries: channel-robust by construction.
    "stats8k-tel": StatsFeatureConfig(
        name="stats8k-tel",
        sample_rate=8_000,
        n_fft=512,
        hop_length=80,
        n_mfcc=20,
        n_mels=32,
        fmin=300.0,
        fmax=3400.0,
        contrast_fmin=300.0,
        n_contrast_bands=3,
        band_limited=True,
    ),
    # stats8k plus prosody and voice quality: F0 slopes, voicing runs, jitter, shimmer, HNR, loudness,
    # spectral balance and LPC formants (eGeMAPS-like descriptors, our own code).
    "stats8k-prosody": ProsodyFeatureConfig(**{**_STATS8K.model_dump(exclude={"kind"}), "name": "stats8k-prosody"}),
    # Log-mel frames for the crnn model: 8 kHz, 64 ms frames every 20 ms, 40 bands, 3 s (150 frames).
    "frames8k": FramesFeatureConfig(
        name="frames8k", sample_rate=8_000, n_fft=512, hop_length=160, n_mels=40, fmax=4000.0, n_frames=150
    ),
}
DEFAULT_FEATURE_SET = "stats8k"
"""Narrowband statistics: what a telephone call carries; see benchmarks/accuracy.py for the comparison."""

DEFAULT_SETTLE_S = 300.0
"""Files modified less than this many seconds before a run lists them are still being written: left for a later run."""

DEFAULT_FILE_TIMEOUT_S = 600.0
"""Default per-file time limit on a worker (s, ``ser_batch.jobs.guard``): ~60 times the slowest legitimate
file measured (a 10-minute clip with its augmented copies, an hour-long call)."""


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
        raise ConfigError(f"unknown feature set {name!r}; known: {known}, or {ONNX_PREFIX}PATH (an encoder)") from None


def stored_feature_config(name: str, settings: dict[str, Any]) -> FeatureConfig:
    """The feature set a table or model directory names, with the settings it stored beside the name.

    A named set is this code's own (``feature_config``); an encoder set is rebuilt from its
    stored settings, which hold the ONNX file's location and SHA-256.

    Raises:
        ConfigError: if the name is unknown, or an encoder set's settings are invalid or name another set.

    >>> stored_feature_config("stats8k", {}).name
    'stats8k'
    """
    if settings.get("kind") != "onnx":
        return feature_config(name)
    try:
        config = EncoderFeatureConfig.model_validate(settings)
    except ValidationError as error:
        problem = error.errors()[0]
        raise ConfigError(
            f"encoder feature set {name!r}: {'.'.join(map(str, problem['loc']))}: {problem['msg']}"
        ) from None
    if config.name != name:
        raise ConfigError(f"encoder feature set {name!r}: its stored settings are for {config.name!r}")
    return config


MODELS: tuple[str, ...] = ("seed-mlp", "mlp", "mlp-ensemble", "logistic", "crnn")
"""Model names ``TrainConfig.model`` accepts; each has a builder in ``ser_batch.model.networks`` (``MODEL_BUILDERS`` or ``SEQUENCE_BUILDERS``)."""


DEFAULT_PATIENCE = 20
"""Early-stopping patience (epochs) of every model except the recipe's ``seed-mlp``."""


class TrainConfig(_Frozen):
    """How to train one model: architecture, classes, split protocol and fitting budget.

    ``classes`` is stored in ``EMOTIONS`` order whatever order it is given in, so the
    model's output columns never depend on how a user typed them.

    >>> TrainConfig(classes=("sad", "angry")).classes
    ('angry', 'sad')
    """

    # A later model is added here and in ser_batch.model.networks.MODEL_BUILDERS (or SEQUENCE_BUILDERS).
    model: Literal["seed-mlp", "mlp", "mlp-ensemble", "logistic", "crnn"] = "mlp-ensemble"
    split: Literal["random", "speaker", "none"] = "random"
    classes: tuple[str, ...] = SEED_CLASSES
    epochs: int = Field(default=100, ge=1, le=100_000)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0, description="fraction of rows held out for test")
    validation_size: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="fraction of the non-test rows held out for validation"
    )
    class_weight: Literal["auto", "none", "balanced"] = Field(
        default="auto",
        description="balanced: weight each class by n_rows / (n_classes * n_class_rows) in the loss; "
        "auto: none for seed-mlp (the recipe), balanced otherwise",
    )
    augmented: bool = Field(
        default=True,
        description="add the augmented copies DEST holds of training clips (never of validation or test clips) "
        "to the training part",
    )
    voice_norm: bool = Field(
        default=False,
        description="z-score features per voice (a training speaker, a call channel when scoring) with its own "
        "statistics shrunk towards the training population's (ser_batch.model.voice); helps when a voice has audio of "
        "several emotions, hurts when a call is one emotion throughout (see the README)",
    )
    calibrate: bool = Field(
        default=False,
        description="fit a temperature on the validation part and scale every probability by it "
        "(ser_batch.model.calibration); off by default: on speaker-grouped CV it raised the calibration "
        "error on unseen voices (see the README)",
    )
    voice_prior_weight: float = Field(
        default=10.0, ge=0.0, le=1e6, description="pseudo-clips of the population statistics in each voice's statistics"
    )
    patience: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="stop after this many epochs without a lower validation loss and keep the best weights; "
        "0 = off; None (auto): off for seed-mlp (the recipe), 20 otherwise",
    )

    def resolved_class_weight(self) -> Literal["none", "balanced"]:
        """``class_weight`` with ``auto`` resolved for ``model``.

        >>> TrainConfig(model="seed-mlp").resolved_class_weight(), TrainConfig(model="mlp").resolved_class_weight()
        ('none', 'balanced')
        """
        if self.class_weight == "auto":
            return "none" if self.model == "seed-mlp" else "balanced"
        return self.class_weight

    def resolved_patience(self) -> int:
        """``patience`` with None resolved for ``model`` (0 means no early stopping).

        >>> TrainConfig(model="seed-mlp").resolved_patience(), TrainConfig(model="mlp").resolved_patience()
        (0, 20)
        """
        if self.patience is None:
            return 0 if self.model == "seed-mlp" else DEFAULT_PATIENCE
        return self.patience

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


class ScoreConfig(_Frozen):
    """How a call channel is cut into speech windows before it is scored (``ser_batch.scoring.segments``).

    Also what the channels are called (``channel_roles``) and in which time zone the day of a
    recording without a date folder is taken (``timezone``).
    ``min_confidence`` says how sure a window's top class must be not to be marked ``uncertain``.

    All durations are in seconds, all levels in dB relative to full scale (a
    constant signal of amplitude 1.0 is 0 dBFS, a full-scale sine -3 dBFS).

    >>> ScoreConfig().window_s, ScoreConfig().hop_s
    (3.0, 1.5)
    """

    window_s: float = Field(default=3.0, gt=0.0, le=60.0, description="length of one scored window")
    hop_s: float = Field(default=1.5, gt=0.0, le=60.0, description="start-to-start step between windows")
    min_window_s: float = Field(
        default=1.0, gt=0.0, le=60.0, description="speech spans shorter than this are not scored"
    )
    vad_frame_s: float = Field(default=0.03, ge=0.005, le=0.1, description="VAD analysis frame length")
    vad_hop_s: float = Field(default=0.01, ge=0.001, le=0.1, description="VAD frame step")
    vad_threshold_db: float = Field(
        default=15.0, ge=0.0, le=80.0, description="a speech frame is this far above the noise floor"
    )
    vad_floor_dbfs: float = Field(
        default=-55.0, ge=-120.0, le=0.0, description="a speech frame is at least this loud, whatever the noise floor"
    )
    vad_noise_cap_dbfs: float = Field(
        default=-40.0,
        ge=-120.0,
        le=0.0,
        description="the estimated noise floor is never taken above this, so a call with no pauses is still speech",
    )
    vad_max_tonality: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="a steady frame with more than this share of its power in its two strongest spectral peaks "
        "is a tone, not speech (dial, ringback, busy tones, beeps); 1.0 turns the check off",
    )
    vad_max_steadiness: float = Field(
        default=0.97,
        gt=0.0,
        le=1.0,
        description="a frame whose magnitude spectrum has a cosine similarity above this with the frame 0.1 s before "
        "or after is a held sound (hold music's notes, a tone), not speech; 1.0 turns the check off",
    )
    vad_mode: int | None = Field(
        default=None,
        ge=0,
        le=3,
        description="if set, speech frames must also pass WebRTC's VAD at this aggressiveness (0 keeps the most, "
        "3 rejects the most); None (measured best: benchmarks/vad.py) uses the band-energy, steadiness and click tests",
    )
    min_speech_s: float = Field(default=0.3, ge=0.0, le=60.0, description="shorter speech spans are dropped")
    min_gap_s: float = Field(default=0.4, ge=0.0, le=60.0, description="shorter pauses inside speech are bridged")
    crosstalk_db: float = Field(
        default=10.0,
        gt=0.0,
        le=80.0,
        description="on a call of several channels, a channel's speech where another channel is this much louder "
        "in the speech band is that channel's leak (crosstalk, echo), not this channel's speech",
    )
    channel_roles: tuple[str, ...] | None = Field(
        default=None,
        description="a role per channel, in channel order (e.g. agent, customer): the role column of recordings "
        "with that many channels; null for other recordings (mono ones included) and when not given",
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of a recording's date when it has no YYYY/MM/DD folder: its modification "
        "time's date there (SER_BATCH_TIMEZONE)",
    )

    @field_validator("channel_roles")
    @classmethod
    def _check_roles(cls, roles: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if roles is None else channel_roles(roles)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return name

    min_confidence: float = Field(
        default=DEFAULT_MIN_CONFIDENCE,
        ge=0.0,
        le=1.0,
        description="a window whose calibrated top-class probability is below this is marked uncertain",
    )

    @model_validator(mode="after")
    def _check_lengths(self) -> ScoreConfig:
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s {self.hop_s} > window_s {self.window_s}: windows would skip speech")
        if self.min_window_s > self.window_s:
            raise ValueError(f"min_window_s {self.min_window_s} > window_s {self.window_s}")
        if self.vad_hop_s > self.vad_frame_s:
            raise ValueError(f"vad_hop_s {self.vad_hop_s} > vad_frame_s {self.vad_frame_s}: frames would skip samples")
        return self


def channel_roles(roles: str | Sequence[str]) -> tuple[str, ...]:
    """Channel role names, one per channel in channel order, checked: at least two, none empty, all different.

    Args:
        roles: the names, or one comma-separated text of them (``--channel-roles agent,customer``).

    Raises:
        ConfigError: naming what is wrong, in one line.

    >>> channel_roles("agent, customer")
    ('agent', 'customer')
    """
    shown = roles if isinstance(roles, str) else ",".join(str(role) for role in roles)
    names = tuple(str(role).strip() for role in (roles.split(",") if isinstance(roles, str) else roles))
    if len(names) < 2:
        raise ConfigError(
            f"channel roles {shown!r}: give one name per channel, at least two, comma-separated (e.g. agent,customer)"
        )
    if not all(names):
        raise ConfigError(f"channel roles {shown!r}: a role name is empty (e.g. agent,customer)")
    if len(set(names)) < len(names):
        raise ConfigError(f"channel roles {shown!r}: each channel needs a different name")
    return names


def score_config(**settings: Any) -> ScoreConfig:
    """Build a ``ScoreConfig`` from user-given settings, as one ``ConfigError`` line when they are invalid.

    Raises:
        ConfigError: naming each bad setting and why.

    >>> score_config(window_s=2.0, hop_s=1.0).hop_s
    1.0
    """
    try:
        return ScoreConfig(**settings)
    except ValidationError as error:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid score settings: {reasons}") from None
