from __future__ import annotations

import struct

from scored_tables import scored_call, write_scored

from flows.cli import main

STEREO = [[(1.0, 4.0, "neutral")], [(8.0, 11.0, "angry"), (9.5, 12.5, "angry")]]


def test_plot_call_writes_the_png_it_names(tmp_path, capsys) -> None:
    write_scored(tmp_path / "scores", [scored_call(str(tmp_path / "c1.wav"), STEREO)])
    output = tmp_path / "pictures" / "c1.png"

    status = main(["plot-call", str(tmp_path / "scores"), str(tmp_path / "c1.wav"), "--output", str(output)])

    assert status == 0
    assert capsys.readouterr().out.strip() == f"wrote {output}"
    assert struct.unpack(">II", output.read_bytes()[16:24]) == (1000, 520)


def test_plot_call_of_a_recording_never_scored_exits_2_with_one_line(tmp_path, capsys) -> None:
    write_scored(tmp_path / "scores", [scored_call(str(tmp_path / "c1.wav"), STEREO)])

    status = main(["plot-call", str(tmp_path / "scores"), str(tmp_path / "never.wav")])

    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("ser-batch: error: ")
    assert "never.wav: never scored into this DEST" in captured.err
