from __future__ import annotations

import os
import struct
from datetime import UTC, date, datetime

import pytest
from scored_tables import scored_call, write_scored

from ser_batch.errors import ConfigError
from ser_batch.jobs.timeline import read_call_timeline, timeline_uri, write_call_timeline
from ser_batch.storage.files import local_uri

STEREO = [[(1.0, 4.0, "neutral"), (2.5, 5.5, "neutral")], [(8.0, 11.0, "angry"), (9.5, 12.5, "sad")]]


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_a_scored_stereo_call_is_drawn_under_dest_plots_at_1000_by_520(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "calls" / "c1.wav")
    write_scored(tmp_path / "out", [scored_call(path, STEREO)])
    monkeypatch.chdir(tmp_path)

    written = write_call_timeline("out", "calls/c1.wav")  # relative PATH, as a user types it

    assert written == timeline_uri("out", path)
    assert png_size(tmp_path / written) == (1000, 520)


def test_the_timeline_is_the_latest_scoring_unless_a_model_is_named_and_a_call_date_narrows_the_search(
    tmp_path,
) -> None:
    path = str(tmp_path / "c1.wav")
    old = scored_call(
        path,
        STEREO,
        model_id="mlp-stats8k-aaaaaaaaaaaa",
        scored_at=datetime(2026, 11, 1, tzinfo=UTC),
        run_date=date(2026, 11, 1),
    )
    new = scored_call(
        path,
        [[(0.0, 3.0, "sad")], []],
        model_id="mlp-stats8k-bbbbbbbbbbbb",
        scored_at=datetime(2026, 11, 2, tzinfo=UTC),
        run_date=date(2026, 11, 2),
        roles=("agent", "customer"),
    )
    write_scored(tmp_path / "out", [old], shard="a")
    write_scored(tmp_path / "out", [new], shard="b")

    latest = read_call_timeline(str(tmp_path / "out"), path)
    old_id = "mlp-stats8k-aaaaaaaaaaaa"
    named = read_call_timeline(str(tmp_path / "out"), path, model_id=old_id)
    that_day = read_call_timeline(str(tmp_path / "out"), path, call_date="2026-11-23")

    assert (latest.model_id, latest.run_date) == ("mlp-stats8k-bbbbbbbbbbbb", "2026-11-02")
    assert latest.call_date == "2026-11-23"
    assert [c.emotion for c in latest.channels] == [("sad",), ()]  # the silent channel is kept, empty
    assert [c.role for c in latest.channels] == ["agent", "customer"]
    assert [c.role for c in read_call_timeline(str(tmp_path / "out"), path, model_id=old_id).channels] == [None, None]
    assert (named.model_id, named.run_date) == ("mlp-stats8k-aaaaaaaaaaaa", "2026-11-01")
    assert [list(c.start_s) for c in named.channels] == [[1.0, 2.5], [8.0, 9.5]]
    assert (that_day.model_id, [c.emotion for c in that_day.channels]) == (latest.model_id, [("sad",), ()])
    with pytest.raises(ConfigError, match="not scored by model 'nope'"):
        read_call_timeline(str(tmp_path / "out"), path, model_id="nope")
    with pytest.raises(ConfigError, match="never scored"):
        read_call_timeline(str(tmp_path / "out"), path, call_date="2026-11-24")


@pytest.mark.parametrize("scored", [True, False], ids=["dest-holds-other-calls", "dest-empty"])
def test_a_recording_never_scored_is_a_config_error_naming_it(tmp_path, scored) -> None:
    if scored:
        write_scored(tmp_path / "out", [scored_call(str(tmp_path / "c1.wav"), STEREO)])

    with pytest.raises(ConfigError, match=r"other\.wav: never scored into this DEST"):
        write_call_timeline(str(tmp_path / "out"), str(tmp_path / "other.wav"))
    assert not (tmp_path / "out" / "plots").exists()


@pytest.mark.parametrize("others", [False, True], ids=["alone", "beside-a-call-with-speech"])
def test_a_recording_without_speech_is_drawn_with_empty_channels(tmp_path, others) -> None:
    # silence or line noise: calls rows, no predictions rows (before: ArrowNotImplementedError from an empty mask)
    path = str(tmp_path / "silence.wav")
    recordings = [scored_call(path, [[], []])]
    if others:
        recordings.append(scored_call(str(tmp_path / "c1.wav"), STEREO))
    write_scored(tmp_path / "out", recordings)

    timeline = read_call_timeline(str(tmp_path / "out"), path)
    written = write_call_timeline(str(tmp_path / "out"), path)

    assert [c.emotion for c in timeline.channels] == [(), ()]
    assert png_size(written) == (1000, 520)


def test_a_recording_whose_name_is_not_utf8_is_drawn_from_its_name_or_its_stored_uri(tmp_path) -> None:
    # scoring stores such a path as a file:// URI; the name as typed held lone surrogates, which pyarrow refused
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.wav")
    stored = local_uri(name)
    write_scored(tmp_path / "out", [scored_call(stored, STEREO)])

    for given in (name, stored):
        written = write_call_timeline(str(tmp_path / "out"), given)
        assert written == timeline_uri(str(tmp_path / "out"), stored)
        assert png_size(written) == (1000, 520)
