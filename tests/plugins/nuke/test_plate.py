"""Plate detection without Nuke: Read node values to the worker's plate and frame mapping."""

from __future__ import annotations

import os

import pytest

from samroto_nuke.plate import (PlateSource, ReadInfo, UnsupportedInput, UpstreamNode, find_plate, frame_path,
                                pattern_from_frame_path, plan_render, plate_from_read, to_hash_pattern,
                                to_printf_pattern)


@pytest.mark.parametrize("given, hashes, printf", [
    ("/s/plate.%04d.exr", "/s/plate.####.exr", "/s/plate.%04d.exr"),
    ("/s/plate.####.exr", "/s/plate.####.exr", "/s/plate.%04d.exr"),
    ("/s/plate.%d.png", "/s/plate.#.png", "/s/plate.%d.png"),
    ("/s/plate.#.png", "/s/plate.#.png", "/s/plate.%d.png"),
    ("/v1001/sh010_v%03d.%05d.dpx", "/v1001/sh010_v%03d.#####.dpx", "/v1001/sh010_v%03d.%05d.dpx"),
])
def test_padding_forms_convert_both_ways(given: str, hashes: str, printf: str) -> None:
    assert to_hash_pattern(given) == hashes
    assert to_printf_pattern(given) == printf


def test_frame_paths_pad_like_nuke_and_patterns_come_back_from_file_names() -> None:
    assert frame_path("/m/a.####.exr", 7) == "/m/a.0007.exr"
    assert frame_path("/m/a.####.exr", 12345) == "/m/a.12345.exr"
    assert pattern_from_frame_path("/m/plate_obj1_matte.1001.exr", 1001) == "/m/plate_obj1_matte.####.exr"
    # the frame number is the last run of digits equal to the frame, not the object id
    assert pattern_from_frame_path("/m/sh1001_obj1_matte.0003.exr", 3) == "/m/sh1001_obj1_matte.####.exr"
    with pytest.raises(ValueError, match="does not contain the frame number 12"):
        pattern_from_frame_path("/m/a.0011.exr", 12)


def test_a_sequence_read_gives_its_pattern_range_and_no_offset() -> None:
    plate = plate_from_read(ReadInfo(name="Read1", file="/s/plate.%04d.exr", first=1001, last=1100))
    assert plate == PlateSource(plate="/s/plate.####.exr", first=1001, last=1100, offset=0, kind="sequence",
                                origin="Read1")
    assert plate.plate_frame_at(1050) == 1050


@pytest.mark.parametrize("mode, frame, offset", [("start at", "1", -1000), ("offset", "24", 24), ("expression", "", 0),
                                                 ("start at", "1001", 0)])
def test_read_frame_modes_shift_nuke_frames_against_file_frames(mode: str, frame: str, offset: int) -> None:
    plate = plate_from_read(ReadInfo(name="Read1", file="/s/p.####.exr", first=1001, last=1010, frame_mode=mode,
                                     frame=frame))
    assert plate.offset == offset
    assert plate.to_nuke_frame(1001) == 1001 + offset
    assert plate.plate_frame_at(1001 + offset) == 1001
    with pytest.raises(UnsupportedInput, match="outside the plate"):
        plate.plate_frame_at(1011 + offset)


def test_a_movie_read_maps_nukes_one_based_frames_to_the_workers_zero_based_ones() -> None:
    plate = plate_from_read(ReadInfo(name="Read2", file="/s/clip.mov", first=1, last=48))
    assert (plate.kind, plate.first, plate.last, plate.offset) == ("video", 0, 47, 1)
    assert plate.plate_frame_at(1) == 0 and plate.to_nuke_frame(47) == 48
    trimmed = plate_from_read(ReadInfo(name="Read2", file="/s/clip.mov", first=5, last=48, frame_mode="offset",
                                       frame="1000"))
    assert (trimmed.first, trimmed.offset, trimmed.nuke_first) == (4, 1001, 1005)


@pytest.mark.parametrize("info, words", [
    (ReadInfo(name="Read1", file="", first=1, last=1), "has no file"),
    (ReadInfo(name="Read1", file="/s/comp.psd", first=1, last=1), "SamRoto's worker reads"),
    (ReadInfo(name="Read1", file="/s/still.exr", first=1, last=1), "single image"),
    (ReadInfo(name="Read1", file="/s/p.####.exr", first=10, last=1), "empty frame range"),
    (ReadInfo(name="Read1", file="/s/p.####.exr", first=1, last=9, frame_mode="expression", frame="5"),
     "freezes the clip"),
    (ReadInfo(name="Read1", file="/s/p.####.exr", first=1, last=9, frame_mode="start at", frame="frame*2"),
     "expression"),
])
def test_unsupported_reads_are_refused_with_a_reason(info: ReadInfo, words: str) -> None:
    with pytest.raises(UnsupportedInput, match=words):
        plate_from_read(info)


def test_find_plate_walks_through_dots_and_asks_for_a_render_otherwise() -> None:
    read = ReadInfo(name="Read1", file="/s/p.####.exr", first=1, last=5)
    plate, render = find_plate([UpstreamNode("Dot1", "Dot"), UpstreamNode("Dot2", "Dot"),
                                UpstreamNode("Read1", "Read", read)])
    assert plate is not None and plate.origin == "Read1" and render is None
    plate, render = find_plate([UpstreamNode("Grade1", "Grade"), UpstreamNode("Read1", "Read", read)])
    assert plate is None and render is not None and render.name == "Grade1"
    with pytest.raises(UnsupportedInput, match="has no input"):
        find_plate([UpstreamNode("Dot1", "Dot")])


def test_render_plans_are_per_script_and_node(tmp_path: object) -> None:
    a = plan_render("Grade1", 1, 10, script_name="/s/a.nk", folder=str(tmp_path))
    b = plan_render("Grade1", 1, 10, script_name="/s/b.nk", folder=str(tmp_path))
    assert a.pattern != b.pattern and a.pattern.endswith(os.path.join("plate.####.exr"))
    assert a.printf_pattern.endswith("plate.%04d.exr")
    assert a.plate() == PlateSource(plate=a.pattern, first=1, last=10, origin="Grade1", rendered=True,
                                    colorspace="scene_linear")
    assert a.plate().key != b.plate().key
    with pytest.raises(UnsupportedInput, match="empty"):
        plan_render("Grade1", 10, 1)


def test_colour_knobs_as_the_worker_takes_them() -> None:
    from samroto_nuke.plate import config_source, parse_viewer_process, read_colorspace

    assert read_colorspace("ACEScg") == "ACEScg"
    assert read_colorspace("default (scene_linear)") == "scene_linear"
    assert read_colorspace("default") == ""
    assert parse_viewer_process("ACES 2.0 - SDR 100 nits (Rec.709) (sRGB - Display)") == (
        "sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")
    assert parse_viewer_process("sRGB") == ("", "sRGB")
    assert parse_viewer_process("None") == ("", "")
    assert config_source("fn-nuke_studio-config-v2.1.0_aces-v1.3_ocio-v2.3", "", None) == \
        "ocio://studio-config-v2.1.0_aces-v1.3_ocio-v2.3"
    assert config_source("custom", "/show/config.ocio", None) == "/show/config.ocio"
    assert config_source("nuke-default", "", None) == ""
    assert config_source("custom", "/show/config.ocio", "/site/aces.ocio") == "/site/aces.ocio"
