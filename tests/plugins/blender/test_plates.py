"""A Movie Clip's files as a worker plate, and Blender's frame mapping, without Blender."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def plates(addon_module):
    return addon_module("plates")


@pytest.mark.parametrize("path, pattern, number, padding", [
    ("/shots/sh010/plate.1001.exr", "/shots/sh010/plate.####.exr", 1001, 4),
    ("/s/plate_v002.0001.png", "/s/plate_v002.####.png", 1, 4),
    ("/s/shot1001.png", "/s/shot####.png", 1001, 4),
    ("/s/render_00042_final.jpg", "/s/render_#####_final.jpg", 42, 5),
])
def test_the_clip_file_becomes_a_frame_pattern(plates, path: str, pattern: str, number: int, padding: int) -> None:
    assert plates.sequence_pattern(path) == (pattern, number, padding)
    assert plates.frame_path(pattern, number) == path


def test_frame_paths(plates) -> None:
    assert plates.frame_path("/a/shot.####.png", 7) == "/a/shot.0007.png"
    assert plates.frame_path("/a/shot.##.png", 1234) == "/a/shot.1234.png"  # wider than the padding: in full
    with pytest.raises(plates.PlateError, match="no frame number"):
        plates.sequence_pattern("/a/still.png")


def _sequence(plates, files, **kwargs):
    defaults = dict(frame_start=1, frame_offset=0, frame_duration=12, clip_name="shot")
    defaults.update(kwargs)
    return plates.describe_clip("/p/shot.1001.png", "SEQUENCE", exists=lambda p: p in files, **defaults)


def test_a_sequence_clip_maps_scene_frames_to_plate_frames(plates) -> None:
    files = {"/p/shot.%04d.png" % f for f in range(1001, 1013)}
    plate = _sequence(plates, files)
    assert (plate.kind, plate.pattern, plate.first, plate.last) == ("SEQUENCE", "/p/shot.####.png", 1001, 1012)
    assert plate.plate_frame(1) == 1001 and plate.scene_frame(1012) == 12
    assert plate.scene_range == (1, 12)
    # the clip starts at scene frame 101 and skips its first two files (Blender's frame_offset):
    # the plate is still every file on disk, the first two before the clip's start frame
    plate = _sequence(plates, files, frame_start=101, frame_offset=2, frame_duration=10)
    assert (plate.first, plate.last) == (1001, 1012)
    assert plate.plate_frame(101) == 1003 and plate.scene_frame(1012) == 110
    # Blender's own formula: file number = number in the path + scene - frame_start + frame_offset
    for scene in range(101, 111):
        assert plate.plate_frame(scene) == 1001 + scene - 101 + 2
        assert plate.scene_frame(plate.plate_frame(scene)) == scene


@given(st.integers(-1000, 1000), st.integers(0, 50), st.integers(-5000, 5000))
def test_the_mapping_round_trips(plates, frame_start: int, frame_offset: int, scene: int) -> None:
    plate = plates.ClipPlate("SEQUENCE", "/p/s.####.png", 1, 2, 1001, frame_start, frame_offset)
    assert plate.scene_frame(plate.plate_frame(scene)) == scene


@pytest.mark.parametrize("frame_start", [1, 101, -5])
@pytest.mark.parametrize("frame_offset", [-2, 0, 3])
def test_a_sequence_is_the_files_on_disk_whatever_the_start_and_offset(plates, frame_start: int,
                                                                       frame_offset: int) -> None:
    files = {"/p/shot.%04d.png" % f for f in range(1001, 1013)}
    # Blender recounts frame_duration from the offset file on: it can be anything here
    plate = _sequence(plates, files, frame_start=frame_start, frame_offset=frame_offset, frame_duration=7)
    assert (plate.first, plate.last) == (1001, 1012)
    # what Blender shows on a scene frame: the clip's file number + scene - start + offset
    assert plate.plate_frame(frame_start) == 1001 + frame_offset
    assert plate.scene_range == (frame_start - frame_offset, frame_start - frame_offset + 11)
    # a gap ends the sequence, as it ends Blender's
    gap = files - {"/p/shot.1008.png"}
    assert _sequence(plates, gap, frame_start=frame_start, frame_offset=frame_offset).last == 1007


@pytest.mark.parametrize("frame_start, frame_offset", [(1, 2), (1, -1), (10, 0), (101, 5)])
def test_a_movie_is_all_its_frames_whatever_the_start_and_offset(plates, frame_start: int, frame_offset: int) -> None:
    plate = plates.describe_clip("/p/take.mov", "MOVIE", frame_start=frame_start, frame_offset=frame_offset,
                                 frame_duration=48, exists=lambda p: p == "/p/take.mov")
    # the worker opens the whole movie (offset +2 used to ask it for frames 2-49 of 48)
    assert (plate.first, plate.last) == (0, 47)
    assert plate.plate_frame(frame_start) == frame_offset
    assert plate.scene_range == (frame_start - frame_offset, frame_start - frame_offset + 47)


def test_a_movie_clip_is_passed_as_is_with_frames_from_zero(plates) -> None:
    plate = plates.describe_clip("/p/take.mov", "MOVIE", frame_start=1, frame_offset=0, frame_duration=48,
                                 exists=lambda p: p == "/p/take.mov")
    assert (plate.pattern, plate.first, plate.last) == ("/p/take.mov", 0, 47)
    assert plate.plate_frame(1) == 0 and plate.scene_frame(47) == 48


@pytest.mark.parametrize("kwargs, message", [
    (dict(filepath="/p/shot.1001.png", source="SEQUENCE", files=set()), "has no files on disk: /p/shot.1001.png"),
    (dict(filepath="/p/take.mov", source="MOVIE", files=set()), "has no file on disk: /p/take.mov"),
    (dict(filepath="", source="SEQUENCE", files=set()), "has no file path"),
    (dict(filepath="//plates/shot.1001.png", source="SEQUENCE", files=set()), "save the .blend file first"),
    (dict(filepath="/p/shot.1001.png", source="GENERATED", files=set()), "only image sequences and movie files"),
])
def test_clips_without_files_get_a_clear_message(plates, kwargs, message: str) -> None:
    files = kwargs.pop("files")
    with pytest.raises(plates.PlateError, match="clip 'shot' .*") as info:
        plates.describe_clip(kwargs["filepath"], kwargs["source"], frame_start=1, frame_offset=0, frame_duration=12,
                             clip_name="shot", exists=lambda p: p in files)
    assert message in str(info.value)


def test_frame_sets_as_ranges(plates) -> None:
    assert plates.frames_to_ranges([1005, 1001, 1002, 1003, 1010, 1011, 1003]) == "1001-1003,1005,1010-1011"
    assert plates.frames_to_ranges([]) == ""
    assert plates.ranges_to_frames("1001-1003,1005, 1010-1011") == [1001, 1002, 1003, 1005, 1010, 1011]
    assert plates.ranges_to_frames("") == []
    assert plates.ranges_to_frames("-3--1,2") == [-3, -2, -1, 2]
    with pytest.raises(ValueError, match="bad frame range 'x'"):
        plates.ranges_to_frames("1-3,x")
    with pytest.raises(ValueError, match="runs backwards"):
        plates.ranges_to_frames("9-3")


@given(st.sets(st.integers(-100, 3000), max_size=60))
def test_frame_ranges_round_trip(plates, frames: set) -> None:
    assert plates.ranges_to_frames(plates.frames_to_ranges(frames)) == sorted(frames)
