"""The keyframe plan for a Mask layer, from shape tracks made by samroto.core.outputs.shapes."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from samroto.core.outputs.shapes import masks_to_shapes, shape_tracks_to_wire

WIDTH, HEIGHT = 160, 120
FRAMES = list(range(1001, 1011))


def _masks() -> list:
    """A disc moving right, with a hole inside it on frames 1004-1007 only."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    masks = []
    for i, frame in enumerate(FRAMES):
        cx, cy = 50 + 4 * i, 60
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 30 ** 2
        if 1004 <= frame <= 1007:
            disc &= (xx - cx) ** 2 + (yy - cy) ** 2 > 10 ** 2
        masks.append(disc)
    return masks


@pytest.fixture(scope="module")
def keyframes(addon_module):
    return addon_module("keyframes")


@pytest.fixture(scope="module")
def tracks() -> list:
    return masks_to_shapes(_masks(), FRAMES)


def _scene(frame: int) -> int:
    return frame - 1000  # plate 1001 on scene frame 1


def test_one_spline_per_track_with_a_constant_point_count(keyframes, tracks) -> None:
    wire = shape_tracks_to_wire(tracks, space="pixel", width=WIDTH, height=HEIGHT)
    assert sorted(t["kind"] for t in wire) == ["hole", "outer"]
    plan = keyframes.plan_layer("obj1", wire, to_scene=_scene, width=WIDTH, height=HEIGHT, scene_range=(1, 10))
    assert plan.name == "obj1" and len(plan.splines) == 2
    for track, spline in zip(wire, plan.splines):
        assert spline.kind == track["kind"] and spline.corners == track["corners"]
        assert all(len(k.points) == len(k.handles_left) == len(k.handles_right) == spline.point_count
                   for k in spline.keys)
        assert spline.tracked_frames == [_scene(f) for f in track["frames"]]
    outer = plan.splines[[t["kind"] for t in wire].index("outer")]
    hole = plan.splines[[t["kind"] for t in wire].index("hole")]
    # the outer shape covers the whole clip: no collapsed keys; the hole exists on scene frames 4-7
    assert [k.frame for k in outer.keys] == list(range(1, 11)) and not any(k.collapsed for k in outer.keys)
    assert [k.frame for k in hole.keys] == [3, 4, 5, 6, 7, 8]
    assert [k.collapsed for k in hole.keys] == [True, False, False, False, False, True]
    assert plan.tracked_frames == list(range(1, 11)) and plan.keyed_frames == list(range(1, 11))


def test_collapsed_keys_put_every_point_at_the_shapes_centre(keyframes, tracks) -> None:
    wire = shape_tracks_to_wire(tracks, space="pixel", width=WIDTH, height=HEIGHT)
    hole = next(t for t in wire if t["kind"] == "hole")
    spline = keyframes.plan_spline(hole, index=0, to_scene=_scene, width=WIDTH, height=HEIGHT, scene_range=(1, 10))
    before, first = spline.keys[0], spline.keys[1]
    centre = (np.mean([p[0] for p in first.points]), np.mean([p[1] for p in first.points]))
    for positions in (before.points, before.handles_left, before.handles_right):
        assert len(set(positions)) == 1 and positions[0] == pytest.approx(centre)
    # without a known clip range the collapsed keys are always added; inside the range they stop at its ends
    outer = next(t for t in wire if t["kind"] == "outer")
    assert [k.frame for k in keyframes.plan_spline(outer, index=0, to_scene=_scene, width=WIDTH,
                                                   height=HEIGHT).keys] == list(range(0, 12))
    assert [k.frame for k in keyframes.plan_spline(outer, index=0, to_scene=_scene, width=WIDTH, height=HEIGHT,
                                                   scene_range=(0, 10)).keys] == list(range(0, 11))


def test_pixel_tracks_land_where_core_puts_them_in_mask_space(keyframes, tracks) -> None:
    pixel = shape_tracks_to_wire(tracks, space="pixel", width=WIDTH, height=HEIGHT)
    blender = shape_tracks_to_wire(tracks, space="blender", width=WIDTH, height=HEIGHT)
    from_pixel = keyframes.plan_layer("a", pixel, to_scene=_scene, width=WIDTH, height=HEIGHT)
    from_blender = keyframes.plan_layer("a", blender, to_scene=_scene, width=WIDTH, height=HEIGHT)
    for a, b, track in zip(from_pixel.splines, from_blender.splines, blender):
        for key_a, key_b in zip(a.keys, b.keys):
            np.testing.assert_allclose(key_a.points, key_b.points, atol=1e-12)
            np.testing.assert_allclose(key_a.handles_left, key_b.handles_left, atol=1e-12)
            np.testing.assert_allclose(key_a.handles_right, key_b.handles_right, atol=1e-12)
        real = [k for k in b.keys if not k.collapsed]
        # handles_in is Blender's left handle, handles_out its right one
        np.testing.assert_allclose(real[0].handles_left, track["handles_in"][0])
        np.testing.assert_allclose(real[0].handles_right, track["handles_out"][0])


def _track() -> dict:
    return {"kind": "outer", "space": "pixel", "frames": [1, 2], "corners": [False, True, False],
            "points": [[[0, 0], [10, 0], [5, 5]]] * 2, "handles_in": [[[0, 0], [10, 0], [5, 5]]] * 2,
            "handles_out": [[[0, 0], [10, 0], [5, 5]]] * 2}


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update(kind="blob"), "kind must be one of"),
    (lambda t: t.update(space="nuke"), "space must be 'pixel' or 'blender'"),
    (lambda t: t.update(frames=[2, 1]), "strictly increasing"),
    (lambda t: t.update(frames=[]), "non-empty list of frame numbers"),
    (lambda t: t.update(corners=[]), "corners must be a non-empty list"),
    (lambda t: t["points"].__setitem__(1, [[0, 0], [1, 1]]), r"points\[1\] must hold 3 points"),
    (lambda t: t.update(handles_in=t["handles_in"][:1]), "handles_in must hold one list per frame"),
    (lambda t: t["handles_out"].__setitem__(0, [[0, "x"], [1, 1], [2, 2]]), "must hold \\[x, y\\] number pairs"),
])
def test_malformed_tracks_are_named_in_the_error(keyframes, change, message: str) -> None:
    track = copy.deepcopy(_track())
    change(track)
    with pytest.raises(keyframes.ShapeDataError, match="shape track 1.*" + message):
        keyframes.plan_layer("obj", [_track(), track], to_scene=lambda f: f, width=10, height=10)


def test_layer_arguments_and_data_paths(keyframes) -> None:
    with pytest.raises(keyframes.ShapeDataError, match="needs a name"):
        keyframes.plan_layer("", [], to_scene=lambda f: f, width=10, height=10)
    with pytest.raises(keyframes.ShapeDataError, match="must be a list"):
        keyframes.plan_layer("a", {"kind": "outer"}, to_scene=lambda f: f, width=10, height=10)
    assert keyframes.plan_layer("a", [], to_scene=lambda f: f, width=10, height=10).splines == []
    assert keyframes.point_data_path("Chair", 2, 7, "co") == 'layers["Chair"].splines[2].points[7].co'
    assert keyframes.point_data_path('Big "A"', 0, 0, "handle_left") == \
        'layers["Big \\"A\\""].splines[0].points[0].handle_left'


def test_a_layer_is_keyed_as_a_whole(keyframes, tracks) -> None:
    wire = shape_tracks_to_wire(tracks, space="pixel", width=WIDTH, height=HEIGHT)
    plan = keyframes.plan_layer("obj", wire, to_scene=_scene, width=WIDTH, height=HEIGHT, scene_range=(1, 10))
    keys = keyframes.layer_shape_keys(plan)
    # one shape key per keyed frame of any spline, each with every spline's shape
    assert [frame for frame, _ in keys] == plan.keyed_frames
    hole = next(s for s in plan.splines if s.kind == "hole")
    index = plan.splines.index(hole)
    for frame, shapes in keys:
        assert len(shapes) == len(plan.splines)
        assert [len(s[0]) for s in shapes] == [s.point_count for s in plan.splines]
        if frame < hole.keys[0].frame:  # before the hole's run: held collapsed
            assert shapes[index][0] == hole.keys[0].points
    # the fingerprint changes when one handle moves, and not when nothing does
    frame, shapes = keys[3]
    moved = copy.deepcopy(shapes)
    x, y = moved[0][2][1]
    moved[0][2][1] = (x + 1e-4, y)
    assert keyframes.shape_fingerprint(copy.deepcopy(shapes)) == keyframes.shape_fingerprint(shapes)
    assert abs(keyframes.shape_fingerprint(moved) - keyframes.shape_fingerprint(shapes)) > \
        keyframes.FINGERPRINT_TOLERANCE
