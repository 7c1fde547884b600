"""The Roto keyframe plan from the worker's shape tracks, without Nuke.

Tracks come from `samroto.core.outputs.shapes` (the code the worker's `get_shapes` serves), in Nuke
space, for a disc moving over a ring-shaped object with a hole.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from samroto.core.outputs.shapes import masks_to_shapes, shape_tracks_to_wire
from samroto_nuke.roto_plan import ShapeDataError, plan_roto
from samroto_nuke.settings import RotoSettings

W, H = 160, 120
FRAMES = list(range(1001, 1007))


def _answer(obj_id: int, masks: List[np.ndarray], frames: List[int], space: str = "nuke") -> Dict[str, Any]:
    tracks = masks_to_shapes(masks, frames, tolerance=0.5)
    return {"obj_id": obj_id, "width": W, "height": H,
            "shapes": shape_tracks_to_wire(tracks, space=space, width=W, height=H)}  # type: ignore[arg-type]


def _ring(frame: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    centre = (50 + 4 * (frame - FRAMES[0]), 60)
    cv2.circle(mask, centre, 30, 1, -1)
    cv2.circle(mask, centre, 12, 0, -1)
    return mask.astype(bool)


def _disc(frame: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (120, 30 + 3 * (frame - FRAMES[0])), 14, 1, -1)
    return mask.astype(bool)


@pytest.fixture(scope="module")
def answers() -> List[Dict[str, Any]]:
    return [_answer(1, [_ring(f) for f in FRAMES], FRAMES), _answer(2, [_disc(f) for f in FRAMES], FRAMES)]


def test_one_layer_per_object_one_shape_per_track_keyed_on_every_frame(answers: List[Dict[str, Any]]) -> None:
    plan = plan_roto("SamRoto1_roto", answers, settings=RotoSettings(holes="skip"))
    assert [(layer.name, layer.obj_id, [s.name for s in layer.shapes]) for layer in plan.layers] == [
        ("obj1", 1, ["obj1_outer1"]), ("obj2", 2, ["obj2_outer1"])]
    assert plan.skipped == ["object 1 shape 2 (a hole)"]
    assert (plan.width, plan.height) == (W, H)
    for layer in plan.layers:
        for shape in layer.shapes:
            assert [k.frame for k in shape.keys] == FRAMES
            assert {len(k.centers) for k in shape.keys} == {shape.point_count} and shape.point_count >= 4
            assert len(shape.corners) == shape.point_count


def test_keys_hold_absolute_centres_and_tangents_relative_to_them(answers: List[Dict[str, Any]]) -> None:
    plan = plan_roto("R", answers[1:])
    shape = plan.layers[0].shapes[0]
    track = answers[1]["shapes"][0]
    for key, points, ins, outs in zip(shape.keys, track["points"], track["handles_in"], track["handles_out"]):
        for i, (p, h_in, h_out) in enumerate(zip(points, ins, outs)):
            assert key.centers[i] == pytest.approx(tuple(p))
            assert key.left[i] == pytest.approx((h_in[0] - p[0], h_in[1] - p[1]))
            assert key.right[i] == pytest.approx((h_out[0] - p[0], h_out[1] - p[1]))
    # Nuke space is y up: the disc centre (plate row 30 on the first frame) sits at y = 120 - 30
    ys = [c[1] for c in shape.keys[0].centers]
    assert (max(ys) + min(ys)) / 2 == pytest.approx(H - 30, abs=1.0)


def test_the_bezier_keys_retrace_the_matte(answers: List[Dict[str, Any]]) -> None:
    shape = plan_roto("R", answers[1:]).layers[0].shapes[0]
    key = shape.keys[2]
    samples = []
    n = shape.point_count
    for i in range(n):
        j = (i + 1) % n
        p0, p3 = np.array(key.centers[i]), np.array(key.centers[j])
        p1, p2 = p0 + key.right[i], p3 + key.left[j]
        for t in np.linspace(0, 1, 8, endpoint=False):
            samples.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)
    centre = np.array([120.0, H - (30 + 3 * 2)])
    radii = [float(np.hypot(*(s - centre))) for s in samples]
    assert min(radii) > 13.0 and max(radii) < 15.5  # the disc's edge (radius 14 plus pixel rounding)


def test_frames_shift_by_the_plate_offset_and_shapes_hide_around_their_keys() -> None:
    frames = [1003, 1004, 1005]
    answer = _answer(1, [_disc(f) for f in frames], frames)
    plan = plan_roto("R", [answer], offset=-1000, shot_range=(1, 10))
    shape = plan.layers[0].shapes[0]
    assert (shape.first, shape.last, shape.hide_frames) == (3, 5, (2, 6))
    at_edges = plan_roto("R", [answer], offset=-1000, shot_range=(3, 5)).layers[0].shapes[0]
    assert at_edges.hide_frames == ()


def test_holes_can_go_to_their_own_layer(answers: List[Dict[str, Any]]) -> None:
    plan = plan_roto("R", answers[:1], settings=RotoSettings(holes="layer"))
    assert [(layer.name, [s.kind for s in layer.shapes]) for layer in plan.layers] == [
        ("obj1", ["outer"]), ("obj1_holes", ["hole"])]
    assert plan.skipped == []
    assert plan.shape_count == 2 and plan.key_count == 2 * len(FRAMES)


def test_malformed_or_foreign_shape_data_is_refused(answers: List[Dict[str, Any]]) -> None:
    pixel = _answer(2, [_disc(f) for f in FRAMES], FRAMES, space="pixel")
    with pytest.raises(ShapeDataError, match="space='nuke'"):
        plan_roto("R", [pixel])
    broken = {**answers[1], "shapes": [dict(answers[1]["shapes"][0])]}
    broken["shapes"][0]["points"] = broken["shapes"][0]["points"][:-1]
    with pytest.raises(ShapeDataError, match="one list per frame"):
        plan_roto("R", [broken])
    uneven = {**answers[1], "shapes": [dict(answers[1]["shapes"][0])]}
    uneven["shapes"][0]["points"] = [pts[:-1] if i == 3 else pts for i, pts in enumerate(uneven["shapes"][0]["points"])]
    with pytest.raises(ShapeDataError, match="keeps its point count"):
        plan_roto("R", [uneven])
    with pytest.raises(ShapeDataError, match="track an object first"):
        plan_roto("R", [])
    with pytest.raises(ShapeDataError, match="gave no shapes"):
        plan_roto("R", [{"obj_id": 3, "width": W, "height": H, "shapes": []}])
    with pytest.raises(ValueError, match="tolerance must be positive"):
        RotoSettings(tolerance=-1.0)
    assert math.isfinite(plan_roto("R", answers).layers[0].shapes[0].keys[0].centers[0][0])
