from __future__ import annotations

import numpy as np
import pytest
from signals_gen import reader

from ser_batch.config import ScoreConfig
from ser_batch.demo import Turn, conversation, synthetic_clip
from ser_batch.errors import ConfigError
from ser_batch.scoring import crosstalk
from ser_batch.scoring.crosstalk import (
    attributed_spans,
    band_levels,
    duplicate_channels,
    max_correlation,
    similar_levels,
)
from ser_batch.scoring.segments import speech_spans

RATE = 8000
CONFIG = ScoreConfig()
ECHO_S = 0.012
# Turn content: speech-like synthetic voices (the demo's "sad" and "disgust" look like tones to the VAD).
EMOTIONS = ("angry", "neutral", "happy", "fear", "angry", "neutral", "happy", "fear")


def stereo_call(seed: int) -> tuple[np.ndarray, list[Turn]]:
    rng = np.random.default_rng(seed)
    clips = [
        (synthetic_clip(emotion, rng, sample_rate=RATE, duration_s=float(rng.uniform(2.5, 5.0))), emotion)
        for emotion in EMOTIONS
    ]
    return conversation(clips, rng, sample_rate=RATE)


def with_crosstalk(call: np.ndarray, leak_db: float, echo_s: float = ECHO_S) -> np.ndarray:
    """Each party leaks into the other's channel, leak_db down and echo_s late."""
    delay, gain = round(echo_s * RATE), np.float32(10 ** (leak_db / 20))
    leaked = call.copy()
    leaked[delay:, 0] += gain * call[:-delay, 1]
    leaked[delay:, 1] += gain * call[:-delay, 0]
    return leaked


def spans_and_levels(call: np.ndarray, config: ScoreConfig = CONFIG) -> tuple[list, list]:
    channels = [np.ascontiguousarray(call[:, c]) for c in range(call.shape[1])]
    spans = [speech_spans(x, RATE, config) for x in channels]
    levels = [band_levels(reader(x), x.size, RATE, config) for x in channels]
    return spans, levels


def seconds(spans: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def turn_seconds(turns: list[Turn], channel: int) -> float:
    return sum(t.end_s - t.start_s for t in turns if t.channel == channel)


def inside_turns(span: tuple[float, float], turns: list[Turn], channel: int, tolerance: float = 0.1) -> bool:
    return any(
        t.start_s - tolerance <= span[0] and span[1] <= t.end_s + tolerance for t in turns if t.channel == channel
    )


@pytest.mark.parametrize("leak_db", [-20.0, -30.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_crosstalk_is_attributed_to_the_channel_that_carries_it(leak_db: float, seed: int) -> None:
    call, turns = stereo_call(seed)
    spans, levels = spans_and_levels(with_crosstalk(call, leak_db))

    attributed = attributed_spans(spans, levels, RATE, CONFIG)

    for channel in (0, 1):
        truth = turn_seconds(turns, channel)
        assert seconds(spans[channel]) > 1.6 * truth  # the fault: the leak is speech to the voice detector
        assert seconds(attributed[channel]) == pytest.approx(truth, rel=0.1)
        assert all(inside_turns(span, turns, channel) for span in attributed[channel]), attributed[channel]


def test_without_crosstalk_attribution_keeps_every_span() -> None:
    call, _ = stereo_call(3)
    spans, levels = spans_and_levels(call)

    assert attributed_spans(spans, levels, RATE, CONFIG) == spans


def test_two_parties_talking_at_once_both_keep_their_speech() -> None:
    rng = np.random.default_rng(4)
    a = synthetic_clip("angry", rng, sample_rate=RATE, duration_s=4.0)
    b = synthetic_clip("happy", rng, sample_rate=RATE, duration_s=4.0)
    call = np.zeros((6 * RATE, 2), np.float32)
    call[RATE : 5 * RATE, 0] = a / np.sqrt(np.mean(a**2)) * 0.1
    call[RATE : 5 * RATE, 1] = b / np.sqrt(np.mean(b**2)) * 0.05  # 6 dB quieter, talking over the other
    spans, levels = spans_and_levels(with_crosstalk(call, -20.0))

    attributed = attributed_spans(spans, levels, RATE, CONFIG)

    assert [seconds(s) for s in attributed] == pytest.approx([seconds(s) for s in spans], abs=0.3)
    assert all(seconds(s) > 3.0 for s in attributed)


def test_channels_shorter_than_the_smoothing_keep_their_own_speech_and_lose_a_leak() -> None:
    loud, leak = np.full(20, -20.0), np.full(18, -40.0)  # 0.2 s: shorter than the half-second average

    assert attributed_spans([[(0.0, 0.2)], [(0.0, 0.2)]], [loud, leak], RATE, ScoreConfig(min_speech_s=0.1)) == [
        [(0.0, 0.2)],
        [],
    ]


def test_one_channel_is_returned_as_it_is() -> None:
    assert attributed_spans([[(0.5, 2.0)]], [np.zeros(300)], RATE, CONFIG) == [[(0.5, 2.0)]]


def test_spans_and_levels_of_different_channel_counts_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="channels"):
        attributed_spans([[], []], [np.zeros(10)], RATE, CONFIG)


@pytest.mark.parametrize(
    ("offset", "frequency", "most_db"), [(0.02, 0.0, -50.0), (0.0, 60.0, -45.0), (0.0, 150.0, -38.0)]
)
def test_band_levels_keep_dc_hum_and_rumble_well_below_their_level(
    offset: float, frequency: float, most_db: float
) -> None:
    t = np.arange(2 * RATE) / RATE
    amplitude = np.sqrt(2) * 10 ** (-25 / 20)  # -25 dBFS, as the rumble
    low = (offset + amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    speechy = (amplitude * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)

    assert band_levels(reader(low), low.size, RATE, CONFIG)[1:].max() < most_db
    assert band_levels(reader(speechy), speechy.size, RATE, CONFIG) == pytest.approx(-25.0, abs=0.2)


def test_band_levels_read_in_blocks_equal_one_read(monkeypatch) -> None:
    x = np.random.default_rng(5).normal(0, 0.1, 3 * RATE + 37).astype(np.float32)
    whole = band_levels(reader(x), x.size, RATE, CONFIG)

    monkeypatch.setattr(crosstalk, "_BLOCK_HOPS", 7)
    blocks = band_levels(reader(x), x.size, RATE, CONFIG)

    np.testing.assert_allclose(blocks, whole, atol=1e-4)
    assert whole.shape == (x.size // 80 - 2,)


def test_band_levels_of_short_and_empty_channels() -> None:
    short = np.full(100, 0.1, np.float32)

    assert band_levels(reader(short), short.size, RATE, CONFIG).shape == (1,)
    assert band_levels(reader(short), 0, RATE, CONFIG).shape == (0,)


def test_max_correlation_finds_a_lagged_scaled_copy_and_not_another_voice() -> None:
    call, _ = stereo_call(6)
    mixed = call[:, 0] + call[:, 1]
    copy = 0.3 * np.roll(mixed, 40) + 0.01  # 5 ms late, 10 dB down, a DC offset

    assert max_correlation(mixed, copy, 80) > 0.999
    assert max_correlation(mixed, copy, 20) < 0.9  # the lag is outside the search
    assert abs(max_correlation(call[:, 0], call[:, 1], 80)) < 0.1
    assert max_correlation(np.zeros(100), mixed[:100], 5) == 0.0


def test_similar_levels_tells_copies_from_turn_taking() -> None:
    call, _ = stereo_call(7)
    mixed = call[:, 0] + call[:, 1]
    spans, levels = spans_and_levels(np.stack([mixed, 0.5 * mixed], axis=1))
    _, apart = spans_and_levels(with_crosstalk(call, -20.0))
    speaking = np.ones(levels[0].size, bool)

    assert similar_levels(levels[0], levels[1], speaking)
    assert not similar_levels(apart[0], apart[1], speaking)
    assert not similar_levels(levels[0], levels[1], speaking[:50] & False)


@pytest.mark.parametrize(("gain", "lag", "noise_dbfs"), [(1.0, 0, None), (0.5, 16, -60.0)])
def test_a_mono_call_copied_onto_both_channels_is_one_channel(gain: float, lag: int, noise_dbfs: float | None) -> None:
    call, _ = stereo_call(8)
    mixed = call[:, 0] + call[:, 1]
    copy = gain * np.roll(mixed, lag)
    if noise_dbfs is not None:
        copy = copy + 10 ** (noise_dbfs / 20) * np.random.default_rng(0).standard_normal(copy.size)
    stereo = np.stack([mixed, copy], axis=1).astype(np.float32)
    spans, levels = spans_and_levels(stereo)

    copies = duplicate_channels(spans, levels, lambda c, a, b: stereo[a:b, c], [stereo.shape[0]] * 2, RATE, CONFIG)

    assert copies == {1: 0}


@pytest.mark.parametrize("leak_db", [None, -20.0])
def test_two_parties_are_not_copies(leak_db: float | None) -> None:
    call, _ = stereo_call(9)
    stereo = call if leak_db is None else with_crosstalk(call, leak_db)
    spans, levels = spans_and_levels(stereo)
    read = []

    copies = duplicate_channels(
        spans, levels, lambda c, a, b: read.append(c) or stereo[a:b, c], [stereo.shape[0]] * 2, RATE, CONFIG
    )

    assert copies == {}
    assert read == []  # the level test alone tells them apart: no samples are read again


def test_three_channels_two_of_them_copies_of_the_first() -> None:
    call, _ = stereo_call(10)
    mixed = call[:, 0] + call[:, 1]
    three = np.stack([mixed, mixed, 0.8 * mixed], axis=1)
    spans, levels = spans_and_levels(three)

    copies = duplicate_channels(spans, levels, lambda c, a, b: three[a:b, c], [three.shape[0]] * 3, RATE, CONFIG)

    assert copies == {1: 0, 2: 0}
