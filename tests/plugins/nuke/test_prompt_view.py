"""The prompt knobs as a view of the worker's prompts, and viewer gestures (plain Python, no Nuke)."""

from __future__ import annotations

import pytest

from samroto_nuke.prompt_view import (FramePrompts, Gesture, apply_gesture, frame_prompts, gesture_for, prompted_frames,
                                      sample_gesture, sample_to_pixels)
from samroto_nuke.prompts import KnobPrompts, click_prompt
from samroto_nuke.plate import PlateSource

SIDECAR = {"format": "samroto.sidecar", "version": 1, "objects": [
    {"obj_id": 1, "prompts": [{"frame": 1003, "points": [[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]],
                               "labels": [1, 0, 1]},
                              {"frame": 1005, "mask": {"height": 2, "width": 2, "counts": [0, 4]}}]},
    {"obj_id": 2, "prompts": [{"frame": 1003, "box": [10.0, 20.0, 110.0, 80.0]}]},
]}


def test_the_worker_prompts_of_one_object_and_frame_in_knob_space() -> None:
    view = frame_prompts(SIDECAR, 1, 1003, 3, width=160, height=120)
    assert view == FramePrompts(obj_id=1, frame=3, positive=((10.0, 100.0), (50.0, 60.0)), negative=((30.0, 80.0),))
    assert view.describe() == "object 1, frame 3: 2 include, 1 exclude"
    box = frame_prompts(SIDECAR, 2, 1003, 3, width=160, height=120).box
    assert box == (10.0, 40.0, 110.0, 100.0)  # (x, y, r, t) with y up, as a BBox knob holds it
    assert frame_prompts(SIDECAR, 1, 1005, 5, width=160, height=120).mask
    assert frame_prompts(SIDECAR, 1, 1004, 4, width=160, height=120).empty
    assert frame_prompts(None, 3, 1003, 3, width=160, height=120).empty
    assert prompted_frames(SIDECAR, 1) == [1003, 1005]
    # a node format twice the plate's: the knobs hold twice the coordinates
    doubled = frame_prompts(SIDECAR, 1, 1003, 3, width=160, height=120, space=(320.0, 240.0), slots=(1, 8))
    assert doubled.positive == ((20.0, 200.0),) and doubled.hidden == 1


def test_knob_view_and_sent_prompt_round_trip_through_plate_pixels() -> None:
    plate = PlateSource(plate="/p/plate.####.exr", first=1001, last=1010, offset=-1000)
    view = frame_prompts(SIDECAR, 2, 1003, 3, width=160, height=120, space=(320.0, 240.0))
    prompt = click_prompt(view.as_knob_prompts((320.0, 240.0)), plate, width=160, height=120)
    assert prompt.frame == 1003 and prompt.box == (10.0, 20.0, 110.0, 80.0)
    with pytest.raises(ValueError, match="outside the 160x120 plate"):
        click_prompt(KnobPrompts(obj_id=1, frame=3, positive=((330.0, 10.0),), space=(320.0, 240.0)), plate,
                     width=160, height=120)


@pytest.mark.parametrize("ctrl, shift, alt, dragged, expected", [
    (True, False, False, False, "include"), (True, True, False, False, "exclude"), (False, True, False, True, "box"),
    (True, False, True, False, "remove"), (False, False, False, False, None), (False, False, False, True, None),
    (True, True, False, True, None)])
def test_mouse_modifiers_map_to_gestures(ctrl: bool, shift: bool, alt: bool, dragged: bool,
                                         expected: object) -> None:
    assert gesture_for(ctrl=ctrl, shift=shift, alt=alt, dragged=dragged) == expected


def test_gestures_edit_the_view() -> None:
    view = FramePrompts(obj_id=1, frame=3)
    view = apply_gesture(view, Gesture("include", 10, 10))
    view = apply_gesture(view, Gesture("exclude", 50, 50))
    view = apply_gesture(view, Gesture("box", 40, 90, 5, 20))
    assert view.positive == ((10.0, 10.0),) and view.negative == ((50.0, 50.0),) and view.box == (5, 20, 40, 90)
    assert apply_gesture(view, Gesture("box", 3, 3, 3.5, 80)).box == view.box  # too thin: a click, not a box
    moved = apply_gesture(view, Gesture("move", 48, 52, 60, 60))
    assert moved.negative == ((60.0, 60.0),) and moved.positive == view.positive
    assert apply_gesture(view, Gesture("remove", 12, 9)).positive == ()
    full = FramePrompts(obj_id=1, frame=3, positive=((1.0, 1.0), (2.0, 2.0)))
    assert apply_gesture(full, Gesture("include", 3, 3), slots=(2, 0)).positive == ((2.0, 2.0), (3.0, 3.0))
    masked = FramePrompts(obj_id=1, frame=3, mask=True)
    assert apply_gesture(masked, Gesture("include", 3, 3)) == FramePrompts(obj_id=1, frame=3, positive=((3.0, 3.0),))
    with pytest.raises(ValueError, match="unknown viewer gesture"):
        Gesture("lasso", 0, 0)
    with pytest.raises(ValueError, match="no exclude point knobs"):
        apply_gesture(view, Gesture("exclude", 1, 1), slots=(8, 0))


def test_viewer_colour_samples_become_clicks_or_boxes() -> None:
    # x runs from -1 to 1 across the image; y in the same units, centred (a 200x100 image: -0.5 to 0.5)
    assert sample_to_pixels((-1.0, -0.5, 1.0, 0.5), width=200, height=100) == (0.0, 0.0, 200.0, 100.0)
    assert sample_to_pixels((0.0, 0.25, 0.0, 0.25), width=200, height=100) == (100.0, 75.0, 100.0, 75.0)
    # anamorphic pixels: the viewer shows the image twice as wide
    assert sample_to_pixels((0.0, 0.5, 0.0, 0.5), width=100, height=100, pixel_aspect=2.0)[1] == 100.0
    assert sample_gesture((10.0, 10.0, 11.0, 11.0), shift=None) == Gesture("include", 10.5, 10.5)
    assert sample_gesture((10.0, 10.0, 10.0, 10.0), shift=True).kind == "exclude"
    assert sample_gesture((10.0, 10.0, 10.0, 10.0), shift=None, default_kind="exclude").kind == "exclude"
    assert sample_gesture((10.0, 10.0, 50.0, 30.0), shift=True) == Gesture("box", 10.0, 10.0, 50.0, 30.0)
