"""The artist's preferences file and the frame-range and stereo rules (plain Python, no Nuke)."""

from __future__ import annotations

from pathlib import Path

import pytest

from samroto_nuke.plate import PlateSource, ReadInfo, UnsupportedInput, is_stereo, plate_from_read, track_range
from samroto_nuke.preferences import (Preferences, load_preferences, parse_command, render_folder, save_preferences,
                                      worker_address)


def test_preferences_round_trip_and_precedence(tmp_path: Path) -> None:
    path = str(tmp_path / "nuke" / "prefs.json")
    assert load_preferences(path) == Preferences()
    saved = Preferences(worker_address="tcp://gpu01:5555", render_dir=str(tmp_path / "shared"),
                        worker_command=["samroto", "worker", "--model", "large"])
    save_preferences(saved, path)
    assert load_preferences(path) == saved
    assert worker_address("", saved) == "tcp://gpu01:5555" and worker_address(" tcp://x:1 ", saved) == "tcp://x:1"
    assert worker_address("", Preferences()) is None
    assert render_folder("", saved) == str(tmp_path / "shared") and render_folder("", Preferences()) is None
    with pytest.raises(ValueError, match="absolute path"):
        render_folder("relative/dir", Preferences())
    with pytest.raises(ValueError, match="tcp://host:port"):
        Preferences(worker_address="gpu01:5555")
    Path(path).write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        load_preferences(path)
    assert parse_command("samroto worker --model 'my model.pt'") == ["samroto", "worker", "--model", "my model.pt"]


def test_frame_range_modes_clip_to_the_plate() -> None:
    plate = PlateSource(plate="/p/plate.####.exr", first=1001, last=1100)
    ranges = dict(input_range=(993, 1108), global_range=(1001, 1050), custom_range=(1090, 1200))
    assert track_range("input", plate=plate, **ranges) == (1001, 1100)  # the handles beyond the files drop
    assert track_range("global", plate=plate, **ranges) == (1001, 1050)
    assert track_range("custom", plate=plate, **ranges) == (1090, 1100)
    with pytest.raises(UnsupportedInput, match="does not overlap the plate"):
        track_range("custom", plate=plate, input_range=(1, 2), global_range=(1, 2), custom_range=(1, 5))
    with pytest.raises(UnsupportedInput, match="unknown frame range"):
        track_range("shot", **ranges)


def test_a_stereo_read_needs_a_view() -> None:
    info = ReadInfo(name="Read1", file="/p/plate_%V.####.exr", first=1, last=9)
    assert is_stereo(info.file) and not is_stereo("/p/plate.####.exr")
    with pytest.raises(UnsupportedInput, match=r"stereo plate .* \(left, right\)"):
        plate_from_read(info, views=["left", "right"])
    assert plate_from_read(info, view="right", views=["left", "right"]).plate == "/p/plate_right.####.exr"
    short = ReadInfo(name="Read1", file="/p/plate_%v.####.exr", first=1, last=9)
    assert plate_from_read(short, view="left").plate == "/p/plate_l.####.exr"
    with pytest.raises(UnsupportedInput, match="not one of this script's views"):
        plate_from_read(info, view="centre", views=["left", "right"])
