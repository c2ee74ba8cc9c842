from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from signals_gen import burst, reader

from ser_batch.config import ScoreConfig
from ser_batch.scoring.calls import trend_columns
from ser_batch.scoring.conversation import (
    CONVERSATION_COLUMNS,
    conversation_columns,
    speech_loudness,
    speech_rate,
    speech_turns,
)
from ser_batch.scoring.crosstalk import band_levels

CONFIG = ScoreConfig()

# Agent turns 1-8 (a 0.5 s pause bridged), 12-16, 21-25; the customer cuts in at 7 for 4 s, says "mm" at 13
# for 0.4 s (a backchannel, not an interruption), answers at 18 and is cut in on at 21, and speaks at 27-28.
AGENT = [(1.0, 5.0), (5.5, 8.0), (12.0, 16.0), (21.0, 25.0)]
CUSTOMER = [(7.0, 11.0), (13.0, 13.4), (18.0, 22.0), (27.0, 28.0)]


def test_turns_bridge_pauses_shorter_than_the_gap() -> None:
    assert speech_turns(AGENT) == [(1.0, 8.0), (12.0, 16.0), (21.0, 25.0)]
    assert speech_turns(AGENT, max_gap_s=0.4) == AGENT


def test_a_stereo_call_with_known_turns_gives_every_figure() -> None:
    agent, customer = conversation_columns([AGENT, CUSTOMER], 30.0)

    assert list(agent) == list(CONVERSATION_COLUMNS)
    expected_agent = {
        "talk_s": 14.5,
        "talk_share": 14.5 / 30.0,
        "n_turns": 3,
        "mean_turn_s": 5.0,
        "longest_turn_s": 7.0,
        "silence_s": 8.5,  # 30 s less the union 1-5, 5.5-11, 12-16, 18-25, 27-28
        "longest_silence_s": 2.0,
        "n_interruptions_made": 1,
        "n_interruptions_suffered": 1,
        "overlap_s": 2.4,
        "response_latency_s": 1.0,  # 12.0 after the customer's 11.0; 21 starts in the customer's turn
    }
    expected_customer = {
        **expected_agent,
        "talk_s": 9.4,
        "talk_share": 9.4 / 30.0,
        "n_turns": 4,
        "mean_turn_s": 2.35,
        "longest_turn_s": 4.0,
        "response_latency_s": 2.0,  # 18 after 16, 27 after 25
    }
    assert agent == pytest.approx(expected_agent, abs=1e-9)
    assert customer == pytest.approx(expected_customer, abs=1e-9)


def test_an_interruption_needs_the_interrupter_to_keep_going_past_the_threshold() -> None:
    short = [(3.0, 4.0)]  # exactly 1.0 s: not more than INTERRUPTION_MIN_S
    long = [(3.0, 4.2)]

    assert conversation_columns([[(0.0, 6.0)], short], 8.0)[0]["n_interruptions_suffered"] == 0
    assert conversation_columns([[(0.0, 6.0)], long], 8.0)[0]["n_interruptions_suffered"] == 1
    assert conversation_columns([[(0.0, 6.0)], [(6.0, 9.0)]], 10.0)[1]["n_interruptions_made"] == 0  # a handover


def test_a_mono_call_has_no_interruptions_overlap_or_latency() -> None:
    (row,) = conversation_columns([[(1.0, 4.0), (6.0, 9.0)]], 10.0)

    assert (row["talk_s"], row["n_turns"], row["silence_s"], row["longest_silence_s"]) == (6.0, 2, 4.0, 2.0)
    assert [row[name] for name in ("n_interruptions_made", "n_interruptions_suffered", "overlap_s")] == [None] * 3
    assert row["response_latency_s"] is None


def test_a_one_sided_call_and_a_silent_one_give_values_not_errors() -> None:
    talker, silent = conversation_columns([[(1.0, 5.0)], []], 6.0)
    (nothing,) = conversation_columns([[]], 0.0)

    assert (talker["talk_s"], talker["n_interruptions_made"], talker["overlap_s"]) == (4.0, 0, 0.0)
    assert talker["response_latency_s"] is None and talker["longest_silence_s"] is None
    assert (silent["talk_s"], silent["talk_share"], silent["n_turns"], silent["silence_s"]) == (0.0, 0.0, 0, 2.0)
    assert silent["mean_turn_s"] is None and silent["longest_turn_s"] is None
    assert (nothing["talk_s"], nothing["talk_share"], nothing["silence_s"]) == (0.0, None, 0.0)


def test_spans_past_the_end_of_the_call_are_cut_off() -> None:
    (row,) = conversation_columns([[(-1.0, 2.0), (8.0, 12.0)]], 10.0)

    assert (row["talk_s"], row["silence_s"]) == (4.0, 6.0)


def _tone(duration_s: float, sample_rate: int, amplitude: float) -> np.ndarray:
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    return amplitude * np.sin(2 * np.pi * 1000.0 * t)


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("lufs", [-23.0, -33.0])
def test_a_calibrated_1khz_tone_reads_its_loudness_within_1_lu(sample_rate, lufs) -> None:
    # BS.1770: a full-scale 1 kHz sine reads -3.01 LUFS, so amplitude 10 ** ((lufs + 3.01) / 20) reads lufs.
    waveform = np.zeros(10 * sample_rate)
    waveform[2 * sample_rate : 7 * sample_rate] = _tone(5.0, sample_rate, 10 ** ((lufs + 3.01) / 20))

    measured = speech_loudness(reader(waveform), [(2.0, 7.0)], sample_rate)

    assert measured == pytest.approx(lufs, abs=1.0)


def test_loudness_is_pyloudnorms_of_the_speech_concatenated(rng) -> None:
    waveform = np.concatenate([burst("voiced", 8000 * 4, 8000, rng) * gain for gain in (1.0, 0.3, 0.05, 1.0)] * 4)
    spans = [(0.5, 3.2), (4.0, 19.7), (25.3, 31.9)]  # longer than one 10 s filtering chunk

    concatenated = np.concatenate([waveform[round(a * 8000) : round(b * 8000)] for a, b in spans])

    expected = pyloudnorm.Meter(8000).integrated_loudness(concatenated)
    assert speech_loudness(reader(waveform), spans, 8000) == pytest.approx(expected, abs=1e-6)


def test_loudness_is_null_below_one_gating_block_and_on_digital_silence() -> None:
    tone = _tone(2.0, 8000, 0.1)

    assert speech_loudness(reader(tone), [(0.0, 0.2), (1.0, 1.19)], 8000) is None
    assert speech_loudness(reader(np.zeros(16000)), [(0.0, 2.0)], 8000) is None
    assert speech_loudness(reader(tone), [(0.0, 0.2), (1.0, 1.2)], 8000) is not None


def _syllables(rate_hz: float, duration_s: float, amplitude: float) -> np.ndarray:
    t = np.arange(round(duration_s * 8000)) / 8000
    envelope = 0.6 - 0.4 * np.cos(2 * np.pi * rate_hz * t)
    voice = sum(np.sin(2 * np.pi * k * 140.0 * t) / k for k in range(1, 20))
    return amplitude * envelope * voice


@pytest.mark.parametrize("rate_hz", [2.5, 4.0, 6.0])
@pytest.mark.parametrize("amplitude", [0.3, 0.01])
def test_speech_rate_counts_the_syllable_envelope_peaks(rate_hz, amplitude) -> None:
    waveform = np.concatenate((np.zeros(8000), _syllables(rate_hz, 8.0, amplitude), np.zeros(8000)))
    levels = band_levels(reader(waveform), waveform.size, 8000, CONFIG)

    assert speech_rate(levels, [(1.0, 9.0)], 8000, CONFIG) == pytest.approx(rate_hz, abs=0.25)


def test_speech_rate_counts_only_peaks_inside_speech_and_is_null_below_a_second() -> None:
    waveform = _syllables(4.0, 10.0, 0.3)
    levels = band_levels(reader(waveform), waveform.size, 8000, CONFIG)

    assert speech_rate(levels, [(0.0, 2.0), (6.0, 8.0)], 8000, CONFIG) == pytest.approx(4.0, abs=0.25)
    assert speech_rate(levels, [(0.0, 0.9)], 8000, CONFIG) is None


def _windows(n: int) -> list[tuple[float, float]]:
    return [(3.0 * k, 3.0 * k + 3.0) for k in range(n)]


def _angry(shares: list[float]) -> np.ndarray:
    return np.array([[0.9, 0.1] if angry else [0.1, 0.9] for angry in shares])


@pytest.mark.parametrize(
    ("angry", "first", "last", "trend"),
    [
        ([0, 0, 0, 0, 0, 1, 1, 1], 0.0, 1.0, "rising"),
        ([1, 1, 1, 1, 0, 0, 0, 0], 1.0, 0.0, "falling"),
        ([1, 0, 0, 0, 0, 0, 0, 1], 0.5, 0.5, "steady"),
    ],
)
def test_trend_compares_the_angry_share_of_the_first_and_last_quarter_of_speech(angry, first, last, trend) -> None:
    # 8 windows of 3 s: 24 s of speech, quarters of 6 s (two windows each).
    row = trend_columns(_windows(8), _angry(angry), ("angry", "sad"))

    assert row == {"share_angry_first": pytest.approx(first), "share_angry_last": pytest.approx(last), "trend": trend}


def test_trend_rule_is_a_change_of_at_least_0_15_in_the_angry_share() -> None:
    # 20 windows of 3 s (60 s, quarters of 15 s = 5 windows): the last quarter holds one angry window of five.
    angry = [0] * 19 + [1]
    assert trend_columns(_windows(20), _angry(angry), ("angry", "sad"))["trend"] == "rising"  # +0.2
    angry = [0] * 20
    angry[0:1] = [1]
    angry[-1] = 1
    assert trend_columns(_windows(20), _angry(angry), ("angry", "sad"))["trend"] == "steady"  # 0.2 -> 0.2


def test_trend_is_null_with_little_speech_or_without_an_angry_class() -> None:
    assert trend_columns(_windows(3), _angry([0, 0, 1]), ("angry", "sad"))["trend"] is None
    assert set(trend_columns(_windows(8), _angry([1] * 8), ("happy", "sad")).values()) == {None}
    assert trend_columns([], np.zeros((0, 2)), ("angry", "sad"))["share_angry_first"] is None


def test_a_change_of_exactly_0_15_is_a_trend_whatever_the_floating_point_rounding() -> None:
    # 80 windows of 3 s, quarters of 20: 4 angry windows in the first (0.2), 7 in the last (0.35).
    angry = [1] * 4 + [0] * 69 + [1] * 7

    row = trend_columns(_windows(80), _angry(angry), ("angry", "sad"))

    assert (row["share_angry_first"], row["share_angry_last"]) == pytest.approx((0.2, 0.35))
    assert row["trend"] == "rising"
