from __future__ import annotations

import itertools

import numpy as np
import pydantic
import pytest
import scipy.signal
from signals_gen import reader

from ser_batch.config import ScoreConfig
from ser_batch.errors import AudioError, ConfigError
from ser_batch.features.highpass import high_pass
from ser_batch.scoring.segments import speech_spans, speech_windows, windows

RATES = (8000, 16000)
TOLERANCE_S = 0.1
CONFIG = ScoreConfig()
NO_TONE_CHECK = ScoreConfig(vad_max_tonality=1.0, vad_max_steadiness=1.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


def _voiced(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    # Speech-like: gliding F0 with vibrato, 1/k harmonics up to 3.4 kHz, a syllable-rate envelope.
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(110, 160) + 40 * t / max(t[-1], 1e-9) + 8 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    n_harmonics = 3400 // 200
    signal = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, n_harmonics + 1))
    return signal * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 2 * np.pi)))


def _burst(kind: str, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sample_rate
    if kind == "noise":
        signal = rng.standard_normal(n)
    elif kind == "voiced":
        signal = _voiced(n, sample_rate, rng)
    elif kind == "dtmf":  # digits of 0.1 s with 0.1 s pauses
        low, high = (
            rng.choice([697, 770, 852, 941], t.size // 1600 + 1),
            rng.choice([1209, 1336, 1477], t.size // 1600 + 1),
        )
        digit = (t / 0.2).astype(int)
        signal = (np.sin(2 * np.pi * low[digit] * t) + np.sin(2 * np.pi * high[digit] * t)) * ((t % 0.2) < 0.1)
    elif kind == "music":  # held three-note chords of harmonic tones, a new chord every 0.6 s
        note = 220.0 * 2 ** (rng.choice([0, 3, 5, 7, 10], (t.size // 4800 + 1, 3)) / 12)[(t / 0.6).astype(int)]
        signal = sum(np.sin(2 * np.pi * k * note[:, i] * t) / k for i in range(3) for k in range(1, 6))
        signal = signal * np.exp(-(t % 0.6))
    elif kind == "clicks":  # 1 ms clicks, 10 a second
        signal = np.zeros(n)
        width = max(2, sample_rate // 1000)
        for start in range(0, n - width, sample_rate // 10):
            signal[start : start + width] = np.hanning(width)
    elif kind == "sine":
        signal = np.sin(2 * np.pi * rng.uniform(300, 3000) * t)
    else:  # "dial" and friends: two steady telephone tones
        low, high = {"dial": (350, 440), "ringback": (440, 480), "busy": (480, 620)}[kind]
        signal = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)
    return signal / np.sqrt(np.mean(signal**2))


def _call(
    sample_rate: int,
    duration_s: float,
    bursts: list[tuple[float, float, str]],
    rng: np.random.Generator,
    *,
    burst_dbfs: float = -20.0,
    noise_dbfs: float | None = None,
) -> np.ndarray:
    waveform = np.zeros(round(duration_s * sample_rate))
    if noise_dbfs is not None:
        waveform += 10 ** (noise_dbfs / 20) * rng.standard_normal(waveform.size)
    for start_s, end_s, kind in bursts:
        begin, end = round(start_s * sample_rate), round(end_s * sample_rate)
        waveform[begin:end] += 10 ** (burst_dbfs / 20) * _burst(kind, end - begin, sample_rate, rng)
    return waveform.astype(np.float32)


def _assert_spans_match(found: list[tuple[float, float]], expected: list[tuple[float, float]]) -> None:
    assert len(found) == len(expected), f"{found} != {expected}"
    for (start, end), (want_start, want_end) in zip(found, expected, strict=True):
        assert abs(start - want_start) <= TOLERANCE_S, f"{found} != {expected}"
        assert abs(end - want_end) <= TOLERANCE_S, f"{found} != {expected}"


def _assert_well_formed(spans: list[tuple[float, float]], duration_s: float) -> None:
    for start, end in spans:
        assert 0.0 <= start < end <= duration_s
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert end < next_start


BURSTS = [(1.0, 3.0, "noise"), (4.5, 7.25, "voiced"), (9.0, 9.8, "noise"), (11.0, 14.0, "voiced")]


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("noise_dbfs", [None, -60.0, -45.0], ids=["silence", "quiet-line", "noisy-line"])
def test_spans_match_known_bursts(sample_rate: int, noise_dbfs: float | None, rng: np.random.Generator) -> None:
    waveform = _call(sample_rate, 15.0, BURSTS, rng, noise_dbfs=noise_dbfs)

    spans = speech_spans(waveform, sample_rate, CONFIG)

    _assert_spans_match(spans, [(start, end) for start, end, _ in BURSTS])
    _assert_well_formed(spans, 15.0)


@pytest.mark.parametrize("sample_rate", RATES)
def test_quiet_speaker_over_quiet_line_is_found(sample_rate: int, rng: np.random.Generator) -> None:
    waveform = _call(sample_rate, 6.0, [(2.0, 4.0, "voiced")], rng, burst_dbfs=-42.0, noise_dbfs=-70.0)

    _assert_spans_match(speech_spans(waveform, sample_rate, CONFIG), [(2.0, 4.0)])


@pytest.mark.parametrize("sample_rate", RATES)
def test_pure_tone_bursts_are_speech_without_tone_check(sample_rate: int, rng: np.random.Generator) -> None:
    bursts = [(0.5, 2.0, "sine"), (3.0, 5.5, "ringback"), (7.0, 8.0, "sine")]
    waveform = _call(sample_rate, 9.0, bursts, rng, noise_dbfs=-60.0)

    spans = speech_spans(waveform, sample_rate, NO_TONE_CHECK)

    _assert_spans_match(spans, [(start, end) for start, end, _ in bursts])


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("tone", ["sine", "dial", "ringback", "busy"])
@pytest.mark.parametrize("noise_dbfs", [None, -45.0], ids=["clean", "25dB-snr"])
def test_steady_tones_are_not_speech(
    sample_rate: int, tone: str, noise_dbfs: float | None, rng: np.random.Generator
) -> None:
    bursts = [(0.5, 3.0, tone), (4.0, 6.0, "voiced"), (7.0, 7.5, tone), (8.0, 8.4, tone)]
    waveform = _call(sample_rate, 9.0, bursts, rng, noise_dbfs=noise_dbfs)

    _assert_spans_match(speech_spans(waveform, sample_rate, CONFIG), [(4.0, 6.0)])


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("sound", ["dtmf", "music", "clicks"])
def test_dtmf_hold_music_and_clicks_are_not_speech(sample_rate: int, sound: str, rng: np.random.Generator) -> None:
    bursts = [(0.5, 3.5, sound), (4.5, 6.5, "voiced"), (7.5, 11.5, sound)]
    waveform = _call(sample_rate, 12.0, bursts, rng, noise_dbfs=-65.0)

    _assert_spans_match(speech_spans(waveform, sample_rate, CONFIG), [(4.5, 6.5)])


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("roll_off", ["brick wall", "6th-order Butterworth"])
def test_rumble_below_the_telephone_band_is_not_speech(
    sample_rate: int, roll_off: str, rng: np.random.Generator
) -> None:
    waveform = _call(sample_rate, 30.0, [(4.5, 6.5, "voiced")], rng, noise_dbfs=-65.0)
    noise = rng.standard_normal(waveform.size)
    if roll_off == "brick wall":
        spectrum = np.fft.rfft(noise)
        spectrum[np.fft.rfftfreq(waveform.size, 1 / sample_rate) > 200] = 0
        rumble = np.fft.irfft(spectrum, waveform.size)
    else:  # a real roll-off leaks into the band: its level there fluctuates frame to frame by +-4 dB
        rumble = scipy.signal.sosfilt(scipy.signal.butter(6, 200, btype="lowpass", fs=sample_rate, output="sos"), noise)
    waveform += (10 ** (-25 / 20) * rumble / np.sqrt(np.mean(rumble**2))).astype(np.float32)  # -25 dBFS
    decoded = high_pass(waveform, sample_rate)  # as decoding gives it to the VAD

    _assert_spans_match(speech_spans(decoded, sample_rate, CONFIG), [(4.5, 6.5)])


@pytest.mark.parametrize("sample_rate", RATES)
def test_speech_right_after_a_tone_keeps_its_span(sample_rate: int, rng: np.random.Generator) -> None:
    waveform = _call(sample_rate, 6.0, [(0.5, 2.5, "dial"), (2.5, 5.0, "voiced")], rng, noise_dbfs=-60.0)

    _assert_spans_match(speech_spans(waveform, sample_rate, CONFIG), [(2.5, 5.0)])


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("noise_dbfs", [None, -90.0, -60.0, -45.0])
def test_silence_and_steady_line_noise_give_no_spans(
    sample_rate: int, noise_dbfs: float | None, rng: np.random.Generator
) -> None:
    waveform = _call(sample_rate, 5.0, [], rng, noise_dbfs=noise_dbfs)

    assert speech_spans(waveform, sample_rate, CONFIG) == []
    assert speech_windows(reader(waveform), waveform.size, sample_rate, CONFIG) == []


@pytest.mark.parametrize("sample_rate", RATES)
def test_speech_without_pauses_is_one_span_of_the_whole_file(sample_rate: int, rng: np.random.Generator) -> None:
    waveform = _call(sample_rate, 4.0, [(0.0, 4.0, "voiced")], rng)

    assert speech_spans(waveform, sample_rate, CONFIG) == [(0.0, 4.0)]


@pytest.mark.parametrize("sample_rate", RATES)
def test_speech_touching_the_file_edges_reaches_them(sample_rate: int, rng: np.random.Generator) -> None:
    waveform = _call(sample_rate, 6.0, [(0.0, 1.5, "noise"), (4.5, 6.0, "voiced")], rng)

    spans = speech_spans(waveform, sample_rate, CONFIG)

    assert spans[0][0] == 0.0
    assert spans[-1][1] == 6.0
    _assert_spans_match(spans, [(0.0, 1.5), (4.5, 6.0)])


def test_pauses_shorter_than_min_gap_are_bridged(rng: np.random.Generator) -> None:
    config = ScoreConfig(min_gap_s=0.4)
    bursts = [(1.0, 2.0, "noise"), (2.2, 3.0, "noise"), (4.0, 5.0, "noise")]
    waveform = _call(8000, 6.0, bursts, rng)

    _assert_spans_match(speech_spans(waveform, 8000, config), [(1.0, 3.0), (4.0, 5.0)])


def test_spans_shorter_than_min_speech_are_dropped(rng: np.random.Generator) -> None:
    bursts = [(1.0, 1.1, "noise"), (2.0, 3.0, "noise"), (4.0, 4.15, "voiced")]
    waveform = _call(8000, 5.0, bursts, rng)

    _assert_spans_match(speech_spans(waveform, 8000, ScoreConfig(min_speech_s=0.3)), [(2.0, 3.0)])


@pytest.mark.parametrize("seed", range(4))
def test_random_bursts_give_sorted_spans_inside_the_file(seed: int) -> None:
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.uniform(0.0, 20.0, size=8))
    bursts = [(float(a), float(b), str(rng.choice(["noise", "voiced"]))) for a, b in edges.reshape(-1, 2)]
    waveform = _call(8000, 20.0, bursts, rng, noise_dbfs=-60.0)

    spans = speech_spans(waveform, 8000, CONFIG)

    _assert_well_formed(spans, 20.0)
    assert all(end - start >= CONFIG.min_speech_s for start, end in spans)
    assert spans == speech_spans(waveform, 8000, CONFIG)


def test_float64_input_gives_the_same_spans(rng: np.random.Generator) -> None:
    waveform = _call(8000, 5.0, [(1.0, 3.0, "voiced")], rng)

    assert speech_spans(waveform.astype(np.float64), 8000, CONFIG) == speech_spans(waveform, 8000, CONFIG)


@pytest.mark.parametrize("n_samples", [0, 1, 100, 240])
def test_waveform_shorter_than_a_frame_is_handled(n_samples: int) -> None:
    waveform = np.full(n_samples, 0.1, dtype=np.float32)

    spans = speech_spans(waveform, 8000, ScoreConfig(min_speech_s=0.0))

    _assert_well_formed(spans, n_samples / 8000)


@pytest.mark.parametrize(
    ("waveform", "match"),
    [
        (np.zeros((2, 800), dtype=np.float32), "1-D"),
        (np.zeros(800, dtype=np.int16), "floating point"),
        (np.array([0.0, np.nan] * 400, dtype=np.float32), "NaN"),
        (np.array([0.0, np.inf] * 400, dtype=np.float32), "NaN or inf"),
    ],
    ids=["stereo", "int", "nan", "inf"],
)
def test_bad_waveform_raises_audio_error(waveform: np.ndarray, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        speech_spans(waveform, 8000, CONFIG)


@pytest.mark.parametrize(("sample_rate", "match"), [(0, "sample_rate 0"), (100, "samples at 100 Hz")])
def test_bad_sample_rate_raises_config_error(sample_rate: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        speech_spans(np.zeros(800, dtype=np.float32), sample_rate, CONFIG)


def _assert_windows_inside_spans(
    found: list[tuple[float, float]], spans: list[tuple[float, float]], duration_s: float
) -> None:
    for start, end in found:
        assert 0.0 <= start < end <= duration_s
        assert any(span_start <= start and end <= span_end for span_start, span_end in spans), (start, end)


def _assert_windows_cover(found: list[tuple[float, float]], span: tuple[float, float]) -> None:
    inside = sorted(w for w in found if span[0] <= w[0] and w[1] <= span[1])
    assert inside[0][0] == span[0]
    assert inside[-1][1] == span[1]
    for (_, end), (next_start, _) in itertools.pairwise(inside):
        assert next_start <= end


WINDOW_CASES = [
    ([(0.0, 10.0)], 3.0, 1.5, 1.0, 10.0),
    ([(0.5, 3.2), (4.0, 4.6), (5.0, 12.3), (13.0, 14.0)], 3.0, 1.5, 1.0, 14.0),
    ([(1.0, 7.0), (8.0, 9.5)], 3.0, 3.0, 1.0, 10.0),
    ([(0.25, 9.99)], 2.0, 0.5, 0.5, 10.0),
    ([(2.0, 2.9)], 3.0, 1.5, 0.5, 3.0),
]


@pytest.mark.parametrize(("spans", "window_s", "hop_s", "min_window_s", "duration_s"), WINDOW_CASES)
def test_windows_stay_inside_spans_and_cover_them(
    spans: list[tuple[float, float]], window_s: float, hop_s: float, min_window_s: float, duration_s: float
) -> None:
    found = windows(spans, window_s=window_s, hop_s=hop_s, min_window_s=min_window_s, duration_s=duration_s)

    _assert_windows_inside_spans(found, spans, duration_s)
    for span in spans:
        if span[1] - span[0] >= min_window_s:
            _assert_windows_cover(found, span)
    assert found == sorted(found)
    assert all(end - start < window_s + hop_s for start, end in found)
    for span in spans:
        starts = [start for start, _ in found if span[0] <= start < span[1]]
        assert all(later - earlier >= hop_s - 1e-9 for earlier, later in itertools.pairwise(starts))


def test_windows_step_by_hop_and_the_last_one_ends_at_the_span_end() -> None:
    found = windows([(1.0, 7.0)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=8.0)

    assert found == [(1.0, 4.0), (2.5, 5.5), (4.0, 7.0)]


def test_last_window_runs_to_the_span_end_rather_than_start_within_a_hop_of_the_one_before() -> None:
    found = windows([(0.0, 7.2)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=7.2)

    assert found == [(0.0, 3.0), (1.5, 4.5), (3.0, 7.2)]


def test_span_of_an_exact_fit_gets_no_duplicate_window() -> None:
    found = windows([(0.0, 6.0)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=6.0)

    assert found == [(0.0, 3.0), (1.5, 4.5), (3.0, 6.0)]


def test_turn_just_over_a_window_is_one_window_not_two_near_duplicates() -> None:
    found = windows([(2.0, 5.02)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=10.0)

    assert found == [(2.0, 5.02)]


@pytest.mark.parametrize(
    ("length_s", "n_windows"), [(2.0, 1), (3.0, 1), (3.02, 1), (4.49, 1), (4.5, 2), (5.9, 2), (6.01, 3), (30.0, 19)]
)
def test_window_count_grows_by_one_per_hop_of_span_beyond_a_window(length_s: float, n_windows: int) -> None:
    found = windows([(1.0, 1.0 + length_s)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=40.0)

    assert len(found) == n_windows
    assert found[-1][1] == 1.0 + length_s


def test_short_span_is_one_window_of_its_own_length_or_none() -> None:
    found = windows([(1.0, 2.5), (3.0, 3.9)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=5.0)

    assert found == [(1.0, 2.5)]


def test_span_past_the_file_end_is_cut_at_the_end() -> None:
    found = windows([(-0.5, 2.0), (6.0, 12.0)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=10.0)

    assert found == [(0.0, 2.0), (6.0, 10.0)]


def test_no_spans_give_no_windows() -> None:
    assert windows([], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=10.0) == []


@pytest.mark.parametrize(
    ("window_s", "hop_s", "min_window_s", "duration_s"),
    [(0.0, 0.0, 0.0, 1.0), (3.0, 4.0, 1.0, 1.0), (3.0, 1.5, 4.0, 1.0), (3.0, 0.0, 1.0, 1.0), (3.0, 1.5, 1.0, -1.0)],
)
def test_bad_window_settings_raise_config_error(
    window_s: float, hop_s: float, min_window_s: float, duration_s: float
) -> None:
    with pytest.raises(ConfigError, match="window_s"):
        windows([(0.0, 1.0)], window_s=window_s, hop_s=hop_s, min_window_s=min_window_s, duration_s=duration_s)


def test_span_ending_before_it_starts_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="ends before it starts"):
        windows([(2.0, 1.0)], window_s=3.0, hop_s=1.5, min_window_s=1.0, duration_s=5.0)


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("noise_dbfs", [None, -60.0])
def test_no_window_starts_in_silence_or_passes_the_file_end(
    sample_rate: int, noise_dbfs: float | None, rng: np.random.Generator
) -> None:
    bursts = [(0.3, 4.1, "voiced"), (5.0, 5.6, "noise"), (6.5, 8.0, "noise"), (9.0, 15.0, "voiced")]
    waveform = _call(sample_rate, 15.0, bursts, rng, noise_dbfs=noise_dbfs)
    truth = [(start - 0.05, end + 0.05) for start, end, _ in bursts]

    found = speech_windows(reader(waveform), waveform.size, sample_rate, CONFIG)

    _assert_windows_inside_spans(found, truth, 15.0)
    assert found[-1][1] == 15.0
    for span in speech_spans(waveform, sample_rate, CONFIG):
        if span[1] - span[0] >= CONFIG.min_window_s:
            _assert_windows_cover(found, span)


@pytest.mark.parametrize("sample_rate", RATES)
def test_file_shorter_than_a_window(sample_rate: int, rng: np.random.Generator) -> None:
    burst = _call(sample_rate, 2.0, [(0.5, 1.8, "voiced")], rng)
    all_speech = _call(sample_rate, 2.0, [(0.0, 2.0, "noise")], rng)
    too_short = _call(sample_rate, 0.8, [(0.0, 0.8, "noise")], rng)

    (window,) = speech_windows(reader(burst), burst.size, sample_rate, CONFIG)
    assert window[0] == pytest.approx(0.5, abs=TOLERANCE_S)
    assert window[1] == pytest.approx(1.8, abs=TOLERANCE_S)
    assert speech_windows(reader(all_speech), all_speech.size, sample_rate, CONFIG) == [(0.0, 2.0)]
    assert speech_windows(reader(too_short), too_short.size, sample_rate, CONFIG) == []


def test_score_config_defaults() -> None:
    config = ScoreConfig()

    assert (config.window_s, config.hop_s, config.min_window_s) == (3.0, 1.5, 1.0)
    assert (config.vad_frame_s, config.vad_hop_s) == (0.03, 0.01)


@pytest.mark.parametrize(
    "settings",
    [
        {"hop_s": 4.0},
        {"min_window_s": 3.5},
        {"vad_hop_s": 0.05, "vad_frame_s": 0.02},
        {"window_s": 0.0},
        {"vad_max_tonality": 1.5},
        {"vad_floor_dbfs": 3.0},
        {"unknown": 1},
    ],
)
def test_score_config_rejects_bad_settings(settings: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ScoreConfig(**settings)


def test_score_config_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        ScoreConfig().window_s = 2.0  # type: ignore[misc]
