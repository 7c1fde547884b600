"""Prompt collection without Nuke: knob values and Roto shapes to worker prompts."""

from __future__ import annotations

import numpy as np
import pytest

from samroto_nuke.plate import PlateSource, UnsupportedInput
from samroto_nuke.prompts import (BezierVertex, KnobPrompts, NoPrompts, RotoShapeData, click_prompt, fill_polygon,
                                  group_shapes, roto_mask_prompts)

PLATE = PlateSource(plate="/s/p.####.exr", first=1001, last=1010, offset=0)
W, H = 160, 120


def test_knob_clicks_flip_y_from_nukes_bottom_left_origin() -> None:
    knobs = KnobPrompts(obj_id=2, frame=1003, positive=((10.0, 100.0), (50.5, 0.0)), negative=((80.0, 60.0),))
    prompt = click_prompt(knobs, PLATE, width=W, height=H)
    assert prompt.obj_id == 2 and prompt.frame == 1003
    assert prompt.points == ((10.0, 20.0), (50.5, 120.0), (80.0, 60.0))
    assert prompt.labels == (1, 1, 0)
    assert prompt.box is None


def test_a_box_knob_becomes_a_top_left_box_clipped_to_the_plate() -> None:
    knobs = KnobPrompts(obj_id=1, frame=1001, box=(150.0, 10.0, -5.0, 100.0))  # dragged "backwards"
    prompt = click_prompt(knobs, PLATE, width=W, height=H)
    assert prompt.box == (0.0, 20.0, 150.0, 110.0)
    assert prompt.points == () and prompt.labels == ()


def test_knob_prompts_use_the_plate_frame_under_the_nuke_frame() -> None:
    shifted = PlateSource(plate="/s/p.####.exr", first=1001, last=1010, offset=-1000)
    prompt = click_prompt(KnobPrompts(obj_id=1, frame=5, positive=((1.0, 1.0),)), shifted, width=W, height=H)
    assert prompt.frame == 1005


@pytest.mark.parametrize("knobs, error, words", [
    (KnobPrompts(obj_id=1, frame=1001), NoPrompts, "switch on a click or the box"),
    (KnobPrompts(obj_id=1, frame=1001, negative=((5.0, 5.0),)), NoPrompts, "only negative clicks"),
    (KnobPrompts(obj_id=1, frame=999, positive=((5.0, 5.0),)), UnsupportedInput, "outside the plate"),
    (KnobPrompts(obj_id=1, frame=1001, positive=((500.0, 5.0),)), ValueError, "outside the 160x120 plate"),
    (KnobPrompts(obj_id=1, frame=1001, box=(200.0, 200.0, 300.0, 300.0)), ValueError, "does not cover the plate"),
    (KnobPrompts(obj_id=0, frame=1001, positive=((5.0, 5.0),)), ValueError, "object number"),
])
def test_bad_knob_prompts_say_what_is_wrong(knobs: KnobPrompts, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        click_prompt(knobs, PLATE, width=W, height=H)


def _inside_reference(polygon: np.ndarray, width: int, height: int) -> np.ndarray:
    """Even-odd test of every pixel centre, the slow obvious way."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inside = np.zeros((height, width), bool)
    n = len(polygon)
    for i in range(n):
        (x0, y0), (x1, y1) = polygon[i], polygon[(i + 1) % n]
        crosses = (y0 <= ys) != (y1 <= ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at)
    return inside


@pytest.mark.parametrize("seed", range(6))
def test_polygon_fill_matches_an_even_odd_test_of_pixel_centres(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, height = 37, 29
    polygon = rng.uniform([-5, -5], [width + 5, height + 5], size=(int(rng.integers(3, 9)), 2))
    mask = bytearray(width * height)
    fill_polygon(mask, [tuple(p) for p in polygon], width=width, height=height, value=1)
    got = np.frombuffer(bytes(mask), np.uint8).reshape(height, width).astype(bool)
    assert np.array_equal(got, _inside_reference(polygon, width, height))


def _square(x0: float, y0: float, x1: float, y1: float) -> tuple:
    return tuple(BezierVertex((x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))


def test_roto_shapes_group_into_objects_by_layer_or_colour() -> None:
    shapes = [RotoShapeData("a", "person", {1: _square(0, 0, 1, 1)}, color=(1, 0, 0)),
              RotoShapeData("b", "person", {1: _square(0, 0, 1, 1)}, color=(0, 1, 0)),
              RotoShapeData("c", "", {1: _square(0, 0, 1, 1)}, color=(1, 0, 0)),
              RotoShapeData("d", "car", {1: _square(0, 0, 1, 1)}, color=(0, 1, 0))]
    by_layer = group_shapes(shapes, grouping="layer")
    assert {k: [s.name for s in v] for k, v in by_layer.items()} == {1: ["a", "b"], 2: ["c"], 3: ["d"]}
    by_colour = group_shapes(shapes, grouping="colour")
    assert {k: [s.name for s in v] for k, v in by_colour.items()} == {1: ["a", "c"], 2: ["b", "d"]}
    with pytest.raises(ValueError, match="grouping"):
        group_shapes(shapes, grouping="name")


def test_roto_masks_are_per_object_and_keyed_frame_with_inverted_shapes_cutting() -> None:
    outer = RotoShapeData("outer", "obj", {1002: _square(20, 20, 100, 100), 1005: _square(40, 20, 120, 100)})
    # nuke space: y up, so this hole spans plate rows 120-80=40 .. 120-60=60
    hole = RotoShapeData("hole", "obj", {1002: _square(50, 60, 70, 80)}, inverted=True)
    other = RotoShapeData("other", "", {1003: _square(0, 0, 10, 10)})
    prompts = roto_mask_prompts([outer, hole, other], PLATE, width=W, height=H)
    assert [(p.obj_id, p.frame) for p in prompts] == [(1, 1002), (1, 1005), (2, 1003)]
    first = np.frombuffer(bytes(prompts[0].data), np.uint8).reshape(H, W)
    assert first[120 - 50, 30] == 1          # inside the outer square
    assert first[50, 60] == 0                # inside the hole
    assert first.sum() == 80 * 80 - 20 * 20
    assert prompts[0].sources == ["outer", "hole"]
    # the hole has no key on 1005: it holds its 1002 shape there
    later = np.frombuffer(bytes(prompts[1].data), np.uint8).reshape(H, W)
    assert later[50, 60] == 0 and later[50, 110] == 1
    assert prompts[2].area == 100


def test_bezier_tangents_bulge_the_mask() -> None:
    straight = RotoShapeData("s", "", {1001: _square(40, 40, 80, 80)})
    curved_vertices = list(_square(40, 40, 80, 80))
    curved_vertices[0] = BezierVertex((40.0, 40.0), left=(0.0, 0.0), right=(10.0, -20.0))  # pulls the bottom edge down
    curved = RotoShapeData("c", "", {1001: tuple(curved_vertices)})
    a = roto_mask_prompts([straight], PLATE, width=W, height=H)[0]
    b = roto_mask_prompts([curved], PLATE, width=W, height=H)[0]
    assert b.area > a.area


def test_roto_shapes_outside_the_plate_give_no_prompts() -> None:
    shape = RotoShapeData("s", "", {5: _square(0, 0, 10, 10)})
    with pytest.raises(NoPrompts, match="keys outside the plate: s@5"):
        roto_mask_prompts([shape], PLATE, width=W, height=H)
    empty = RotoShapeData("e", "", {1001: _square(500, 500, 600, 600)})
    with pytest.raises(NoPrompts, match="no mask"):
        roto_mask_prompts([empty], PLATE, width=W, height=H)
