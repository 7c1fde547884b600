"""Region pixels -> clip pixels -> Mask space, without Blender."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from samroto.core.outputs.shapes import to_blender


@pytest.fixture(scope="module")
def coords(addon_module):
    return addon_module("coords")


def test_the_frame_corners_map_to_the_clip_corners(coords) -> None:
    # a 160x120 clip drawn 2x zoomed with its bottom-left corner at (50, 30) in the region
    rect = coords.FrameRect(50, 30, 370, 270)
    assert coords.region_to_clip_pixels(50, 270, rect, 160, 120) == (0.0, 0.0)  # top-left
    assert coords.region_to_clip_pixels(370, 30, rect, 160, 120) == (160.0, 120.0)  # bottom-right
    assert coords.region_to_clip_pixels(210, 150, rect, 160, 120) == (80.0, 60.0)  # centre
    # one region pixel is half a clip pixel at 2x zoom, and y runs down in clip pixels
    assert coords.region_to_clip_pixels(52, 268, rect, 160, 120) == pytest.approx((1.0, 1.0))


def test_a_click_outside_the_frame_is_detected(coords) -> None:
    rect = coords.FrameRect(50, 30, 370, 270)
    x, y = coords.region_to_clip_pixels(20, 150, rect, 160, 120)
    assert x < 0 and not coords.inside_frame(x, y, 160, 120)
    assert coords.inside_frame(*coords.region_to_clip_pixels(60, 40, rect, 160, 120), 160, 120)


@given(st.floats(0, 1920), st.floats(0, 1080), st.floats(-500, 500), st.floats(-500, 500), st.floats(0.1, 8))
def test_region_and_clip_pixels_round_trip(coords, x: float, y: float, ox: float, oy: float, zoom: float) -> None:
    rect = coords.FrameRect(ox, oy, ox + 1920 * zoom, oy + 1080 * zoom)
    back = coords.region_to_clip_pixels(*coords.clip_pixels_to_region(x, y, rect, 1920, 1080), rect, 1920, 1080)
    assert back == pytest.approx((x, y), abs=1e-6)


def test_drags_and_boxes(coords) -> None:
    assert not coords.is_drag((10, 10), (13, 14))
    assert coords.is_drag((10, 10), (10, 30))
    # corners in any order, clipped to the frame
    assert coords.box_from_corners((120, 100), (40, 20), 160, 120) == (40, 20, 120, 100)
    assert coords.box_from_corners((-30, 50), (90, 500), 160, 120) == (0, 50, 90, 120)
    with pytest.raises(ValueError, match="too small or outside the frame"):
        coords.box_from_corners((-50, -50), (-10, -20), 160, 120)
    with pytest.raises(ValueError, match="too small"):
        coords.box_from_corners((10, 10), (11, 60), 160, 120)


def test_a_press_and_release_become_a_click_or_a_box(coords) -> None:
    rect = coords.FrameRect(50, 30, 370, 270)  # 160x120 drawn at 2x
    click = coords.gesture((210, 150), (212, 151), rect, 160, 120)
    assert click.kind == "click" and click.positive and click.point == pytest.approx((81.0, 59.5))
    assert not coords.gesture((210, 150), (210, 150), rect, 160, 120, negative=True).positive
    box = coords.gesture((130, 230), (290, 70), rect, 160, 120)
    assert box.kind == "box" and box.box == pytest.approx((40.0, 20.0, 120.0, 100.0))
    with pytest.raises(ValueError, match="Click on the frame"):
        coords.gesture((10, 10), (12, 12), rect, 160, 120)
    with pytest.raises(ValueError, match="too small or outside"):
        coords.gesture((0, 0), (40, 20), rect, 160, 120)  # dragged entirely off the frame


@pytest.mark.parametrize("width, height, aspect", [(1920, 1080, 1.0), (1080, 1920, 1.0), (512, 512, 1.0),
                                                   (1440, 1080, 4 / 3), (720, 576, 1.0926)])
def test_mask_space_matches_core_shapes(coords, width: int, height: int, aspect: float) -> None:
    points = np.random.default_rng(width).uniform(-10, max(width, height) + 10, (50, 2))
    expected = to_blender(points, width, height, pixel_aspect=aspect)
    got = np.asarray(coords.pixels_to_mask(points.tolist(), width, height, pixel_aspect=aspect))
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert coords.pixels_to_mask([(960, 540)], 1920, 1080) == [(0.5, 0.5)]
    assert coords.pixels_to_mask([(0, 0)], 1920, 1080)[0] == pytest.approx((0.0, 0.78125))


def test_bad_sizes_and_rectangles_are_refused(coords) -> None:
    with pytest.raises(ValueError, match="clip size must be positive"):
        coords.view_to_clip_pixels(0.5, 0.5, 0, 1080)
    with pytest.raises(ValueError, match="empty or flipped"):
        coords.FrameRect(100, 0, 50, 10)
    with pytest.raises(ValueError, match="pixel_aspect"):
        coords.pixels_to_mask([(1, 1)], 10, 10, pixel_aspect=0)


@pytest.mark.parametrize("width, height, aspect", [(1920, 1080, 1.0), (1080, 1920, 1.0), (720, 576, 1.0926)])
def test_mask_space_back_to_clip_pixels(coords, width: int, height: int, aspect: float) -> None:
    points = np.random.default_rng(height).uniform(0, max(width, height), (20, 2)).tolist()
    back = coords.mask_to_pixels(coords.pixels_to_mask(points, width, height, pixel_aspect=aspect), width, height,
                                 pixel_aspect=aspect)
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_a_stroke_path_becomes_clip_pixels(coords) -> None:
    rect = coords.FrameRect(10.0, 10.0, 330.0, 250.0)  # a 160x120 clip drawn at 2x
    assert coords.stroke_to_clip_pixels([(10, 250), (10, 250), (170, 130)], rect, 160, 120) == [(0.0, 0.0),
                                                                                                 (80.0, 60.0)]
    with pytest.raises(ValueError, match="Drag to draw"):
        coords.stroke_to_clip_pixels([(50, 50), (50, 50)], rect, 160, 120)
    with pytest.raises(ValueError, match="outside the 160x120 clip"):
        coords.stroke_to_clip_pixels([(400, 400), (500, 500)], rect, 160, 120)
