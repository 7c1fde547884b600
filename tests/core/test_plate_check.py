"""Plates checked before work (core.plate_check), missing frames held, prompts kept on the plate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samroto.core.frames import open_frames
from samroto.core.plate_check import HoldFrames, check_plate, format_frames, off_plate
from samroto.core.strokes import stroke_to_prompt
from samroto.core.video_session import SessionError, VideoSession

from .conftest import micro_model


def write_sequence(folder: Path, frames: list[int], size: tuple[int, int] = (40, 60)) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        image = np.full((*size, 3), frame % 256, np.uint8)
        cv2.imwrite(str(folder / f"plate.{frame:04d}.png"), image)
    return str(folder / "plate.####.png")


def test_every_missing_frame_is_listed_at_once(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, [1001, 1002, 1005, 1007, 1010])
    check = check_plate(pattern)
    assert check.missing == [1003, 1004, 1006, 1008, 1009] and (check.width, check.height) == (60, 40)
    [problem] = check.problems("error")
    assert "5 of 10 frames" in problem and "1003-1004, 1006, 1008-1009" in problem
    assert check.problems("hold") == [] and check.problems("skip") == []


def test_a_frame_of_another_size_or_unreadable_is_named(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, [1, 2, 3])
    cv2.imwrite(str(tmp_path / "plate.0002.png"), np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "plate.0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    problems = check_plate(pattern).problems()
    assert any("frame 2" in p and "10x10, but the sequence is 60x40" in p for p in problems), problems
    assert any("frame 3" in p for p in problems), problems


def test_hold_shows_the_previous_present_frame(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, [2, 3, 6])
    source = HoldFrames(open_frames(pattern, first=1, last=7), [1, 4, 5, 7])
    assert [source.held_frame(f) for f in range(1, 8)] == [2, 2, 3, 3, 3, 6, 6]
    assert source.read(5)[0, 0, 0] == 3 and source.read(1)[0, 0, 0] == 2


def test_a_single_numbered_image_keeps_its_frame_number(tmp_path: Path) -> None:
    write_sequence(tmp_path, [1001])
    assert open_frames(tmp_path / "plate.1001.png").frame_numbers == range(1001, 1002)
    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((4, 4, 3), np.uint8))
    assert open_frames(tmp_path / "still.png").frame_numbers == range(0, 1)


def test_format_frames() -> None:
    assert format_frames([5, 1, 2, 3, 9]) == "1-3, 5, 9"


def test_off_plate_prompts() -> None:
    assert off_plate(960, 540, points=[(0, 0), (960, 540)], box=(-20, -20, 100, 100)) is None
    assert "outside the 960x540 plate" in str(off_plate(960, 540, points=[(5000, 300)]))
    assert "outside the 960x540 plate" in str(off_plate(960, 540, points=[(-10, 300)]))
    assert "no area" in str(off_plate(960, 540, box=(10, 10, 10, 50)))
    assert "outside" in str(off_plate(960, 540, box=(970, 10, 990, 50)))


def test_the_session_refuses_prompts_off_the_plate() -> None:
    frames = np.zeros((2, 120, 160, 3), np.uint8)
    with VideoSession(micro_model("sam2.1"), frames, keep_in_memory=True) as session:
        with pytest.raises(SessionError, match="outside the 160x120 plate"):
            session.add_points(0, 1, [(5000, 60)], [1])
        with pytest.raises(SessionError, match="no area"):
            session.add_box(0, 1, (10, 10, 10, 40))
        assert session.obj_ids == [] or session.prompts() == {1: {}}


def test_a_brush_stroke_past_the_edge_stays_on_the_plate() -> None:
    prompt = stroke_to_prompt([(150, 60), (200, 60)], kind="brush", height=120, width=160)
    assert prompt.points is not None and np.all(np.asarray(prompt.points)[:, 0] <= 160)

