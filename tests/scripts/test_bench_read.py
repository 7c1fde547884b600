"""`samroto bench read` runs end to end on a small plate and reports every reader and view."""

from __future__ import annotations

import pytest

from samroto.scripts.cli import main


def test_bench_read_reports_readers_views_and_the_whole_path(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "read", "--size", "64x36", "--runs", "1"]) == 0
    printed = capsys.readouterr().out
    for line in ("exr_half_zip   OpenEXR", "dpx_10bit      FFmpeg", "same pixels: True",
                 "ACES 2.0 - SDR 100 nits (Rec.709)", "Un-tone-mapped", "srgb curve"):
        assert line in printed, line
    assert "same pixels: False" not in printed
    # the whole read path: float plates come out as float32 through the view, DPX as it is stored
    assert printed.count("-> float32") == 4 and printed.count("-> uint16") == 2
