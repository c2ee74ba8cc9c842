"""Settings for scoring long calls: voice-activity detection and windowing.

Kept apart from ``config.py`` for now; it is meant to move there as ``ScoreConfig``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScoreConfig(BaseModel):
    """How a call channel is cut into speech windows before it is scored.

    All durations are in seconds, all levels in dB relative to full scale (a
    constant signal of amplitude 1.0 is 0 dBFS, a full-scale sine -3 dBFS).

    >>> ScoreConfig().window_s, ScoreConfig().hop_s
    (3.0, 1.5)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(default=3.0, gt=0.0, le=60.0, description="length of one scored window")
    hop_s: float = Field(default=1.5, gt=0.0, le=60.0, description="start-to-start step between windows")
    min_window_s: float = Field(
        default=1.0, gt=0.0, le=60.0, description="speech spans shorter than this are not scored"
    )
    vad_frame_s: float = Field(default=0.03, ge=0.005, le=0.1, description="VAD analysis frame length")
    vad_hop_s: float = Field(default=0.01, ge=0.001, le=0.1, description="VAD frame step")
    vad_threshold_db: float = Field(
        default=10.0, ge=0.0, le=80.0, description="a speech frame is this far above the noise floor"
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
    min_speech_s: float = Field(default=0.3, ge=0.0, le=60.0, description="shorter speech spans are dropped")
    min_gap_s: float = Field(default=0.4, ge=0.0, le=60.0, description="shorter pauses inside speech are bridged")

    @model_validator(mode="after")
    def _check_lengths(self) -> ScoreConfig:
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s {self.hop_s} > window_s {self.window_s}: windows would skip speech")
        if self.min_window_s > self.window_s:
            raise ValueError(f"min_window_s {self.min_window_s} > window_s {self.window_s}")
        if self.vad_hop_s > self.vad_frame_s:
            raise ValueError(f"vad_hop_s {self.vad_hop_s} > vad_frame_s {self.vad_frame_s}: frames would skip samples")
        return self
