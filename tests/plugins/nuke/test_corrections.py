"""Corrections keep approved work in the Nuke node: on the fake `nuke`, against a real worker.

Correct -> span -> undo: Track after a correction re-tracks only the span it affects (the frames
beyond keep their mattes), Undo brings back the mattes and prompts the node shows; the node lists
the keyframes and locked ranges and says the chosen object's in its label; locked frames are never
rewritten; "show before" puts a frame's previous result in the viewer and never in a render.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List

import pytest

from samroto_nuke.jobs import JobResult
from samroto_nuke.settings import (BEFORE_KNOB, HISTORY_KNOB, LOCK_FRAMES_KNOB, MARKS_KNOB, OBJECT_KNOB,
                                   SESSION_KNOB)

from ...bridge.bridge_support import WorkerProcess
from . import fake_nuke
from .conftest import FIRST, HEIGHT, LAST, WIDTH
from .fake_render import Renderer
from . import test_host_worker
from .test_host_worker import click, inside, matte_pattern, press, samroto_on, settle, worker_prompts

import numpy as np  # noqa: E402  (after the plug-in's modules, as the other Nuke tests)

host: Any = None


@pytest.fixture(autouse=True)
def _host(nuke: object) -> None:
    global host
    import samroto_nuke.host as module

    host = test_host_worker.host = module  # its helpers (press, click, ...) use the host module too


def matte_hashes(node: fake_nuke.Node) -> Dict[int, str]:
    """Plate frame -> digest of object 1's matte file (the frames that have one)."""
    pattern = matte_pattern(node)
    out = {}
    for frame in range(FIRST, LAST + 1):
        path = Path(pattern.replace("####", "%04d" % frame))
        if path.is_file():
            out[frame] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def keys_line(node: fake_nuke.Node) -> str:
    """The label's keyframes line (the artist's lines and the review count are other lines)."""
    return next((line for line in node["label"].value().splitlines() if line.startswith("keys ")), "")


def changed(a: Dict[int, str], b: Dict[int, str]) -> List[int]:
    return sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))


def prompt_on(node: fake_nuke.Node, frame: int, x: float, y: float) -> JobResult:
    fake_nuke.control.current_frame = frame
    click(node, x, y)
    result = press(node, "prompts")
    assert result.state == "done", result.message
    settle(node)
    return result


@pytest.fixture
def tracked(nuke: object, worker_env: WorkerProcess, plate: str) -> Dict[str, Any]:
    """A node whose object 1 has keyframes on 1002 and 1007 and is tracked through the plate."""
    read = fake_nuke.control.make_read(plate.replace("####", "%04d"), FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    prompt_on(node, 1002, 80.0, 60.0)
    prompt_on(node, 1007, 80.0, 60.0)
    fake_nuke.control.current_frame = 1002
    result = press(node, "track")  # nothing tracked yet: both ways to the end
    assert result.state == "done", result.message
    settle(node)
    shown = {frame: Renderer(gui=True).render(node, frame)["rgba.alpha"] for frame in (1003, 1004, 1005)}
    return {"node": node, "first": result, "mattes": matte_hashes(node), "shown": shown}


def test_track_after_a_correction_re_tracks_only_its_span_and_undo_brings_back_what_was_shown(
        tracked: Dict[str, Any]) -> None:
    node, first = tracked["node"], tracked["first"]
    assert not first.span and sorted(first.tracked_frames) == list(range(FIRST, LAST + 1))
    assert keys_line(node) == "keys 1002 1007"
    # a correction on 1004: Track re-tracks object 1 from there up to its keyframes 1002 and 1007
    prompt_on(node, 1004, 30.0, 30.0)
    after_prompt = matte_hashes(node)
    result = press(node, "track")
    assert result.state == "done", result.message
    settle(node)
    assert result.span and result.tracked_frames == [1004, 1005, 1006, 1003]
    assert "re-tracked the span of a correction" in node[host.STATUS_KNOB].value()
    after_span = matte_hashes(node)
    assert changed(after_prompt, after_span) and set(changed(after_prompt, after_span)) <= {1003, 1004, 1005, 1006}
    assert not [f for f in changed(tracked["mattes"], after_span) if f < 1003 or f > 1006]  # beyond: untouched
    # the node lists the keyframes (Nuke frames) and its label says the chosen object's
    assert keys_line(node) == "keys 1002 1004 1007"
    assert node[MARKS_KNOB].value() == "obj1: keys 1002, 1004, 1007; locked none"
    spanned = {frame: Renderer(gui=True).render(node, frame)["rgba.alpha"] for frame in (1003, 1005)}

    # Undo: the span goes, its four frames' mattes come back byte for byte, and the viewer shows them
    result = press(node, "undo")
    assert result.state == "done", result.message
    settle(node)
    assert result.step == "span re-track from frame 1004" and result.changed_frames == [1003, 1004, 1005, 1006]
    assert changed(after_prompt, matte_hashes(node)) == []
    assert node[host.STATUS_KNOB].value() == "undid span re-track from frame 1004: 4 frames changed"
    assert node[HISTORY_KNOB].value() == "undo (4): points on frame 1004 (object 1) | redo (1): span re-track " \
                                         "from frame 1004"
    for frame in (1003, 1005):
        shown = Renderer(gui=True).render(node, frame)["rgba.alpha"]
        assert np.array_equal(shown, tracked["shown"][frame]) and not np.array_equal(shown, spanned[frame])
    # Undo again: the correction's click goes; the knobs show what the worker holds on this frame
    result = press(node, "undo")
    assert result.state == "done", result.message
    settle(node)
    assert 1004 not in worker_prompts(node)[1] and host.knob_view(node).positive == ()
    assert result.changed_frames == [1004] and keys_line(node) == "keys 1002 1007"
    # 1004's file held the click's quick result: the worker journaled it with the click's step, so the
    # undo put back the first track's file byte for byte
    assert changed(tracked["mattes"], matte_hashes(node)) == []
    assert np.array_equal(Renderer(gui=True).render(node, 1004)["rgba.alpha"], tracked["shown"][1004])
    # Redo twice: the correction and its span are back
    for _ in range(2):
        result = press(node, "redo")
        assert result.state == "done", result.message
        settle(node)
    assert changed(after_span, matte_hashes(node)) == [] and keys_line(node) == "keys 1002 1004 1007"
    assert host.knob_view(node).positive == ((30.0, 30.0),)
    result = press(node, "redo")
    assert result.state == "failed" and result.message == "nothing to redo"

    # show before: the viewer shows the frame's previous result (what the span overwrote); a render never
    fake_nuke.control.current_frame = 1005
    host.install_callbacks()
    fake_nuke.control.user_sets(node, BEFORE_KNOB, True)
    settle(node)
    # (the previous result comes as a 16-bit PNG of the worker's half-float alpha: within a half-float step
    # of the EXR matte, written from the same result)
    assert inside(node, "matte1_viewer")["file"].value().endswith("/samroto_before/plate_SamRoto_obj1_matte.####.png")
    assert node[host.STATUS_KNOB].value() == "showing the previous result of frame 1005"
    assert np.allclose(Renderer(gui=True).render(node, 1005)["rgba.alpha"], tracked["shown"][1005], atol=5e-4, rtol=0)
    assert not np.allclose(Renderer(gui=True).render(node, 1005)["rgba.alpha"], spanned[1005], atol=1e-2)
    assert np.array_equal(Renderer(gui=False).render(node, 1005)["rgba.alpha"], spanned[1005])
    # a new frame while it shows "before": that frame's previous result is fetched
    fake_nuke.control.change_frame(1003)
    settle(node)
    assert np.allclose(Renderer(gui=True).render(node, 1003)["rgba.alpha"], tracked["shown"][1003], atol=5e-4, rtol=0)
    fake_nuke.control.user_sets(node, BEFORE_KNOB, False)
    settle(node)
    assert np.array_equal(Renderer(gui=True).render(node, 1005)["rgba.alpha"], spanned[1005])


def test_locked_frames_are_shown_and_never_rewritten(tracked: Dict[str, Any]) -> None:
    node = tracked["node"]
    node["samroto_range"].setValue("custom")
    node["samroto_range_first"].setValue(1007)
    node["samroto_range_last"].setValue(1008)
    node[LOCK_FRAMES_KNOB].setValue("frame range")
    result = press(node, "lock")
    assert result.state == "done", result.message
    assert result.locks == {1: [[1007, 1008]]} and node[host.STATUS_KNOB].value() == "locked: obj1 1007-1008"
    assert keys_line(node) == "keys 1002 1007 | locked 1007-1008"
    assert node[MARKS_KNOB].value() == "obj1: keys 1002, 1007; locked 1007-1008"
    locked = matte_hashes(node)
    # a prompt on a locked frame is refused, and said so
    fake_nuke.control.current_frame = 1008
    click(node, 40.0, 40.0)
    result = press(node, "prompts")
    assert result.state == "failed" and "locked" in result.message
    assert 1008 not in worker_prompts(node)[1]
    # tracking to the end goes through the locked frames without rewriting them
    node["samroto_range"].setValue("input")
    fake_nuke.control.current_frame = 1002
    result = press(node, "forward")
    assert result.state == "done" and result.tracked_frames == list(range(1002, LAST + 1)), result.message
    after = matte_hashes(node)
    assert after[1007] == locked[1007] and after[1008] == locked[1008]
    # the current frame, unlocked
    fake_nuke.control.current_frame = 1008
    node[LOCK_FRAMES_KNOB].setValue("current frame")
    result = press(node, "unlock")
    assert result.state == "done" and result.locks == {1: [[1007, 1007]]}, result.message
    assert keys_line(node) == "keys 1002 1007 | locked 1007"
    # a lock on an object with nothing tracked is refused with a message, not a traceback
    node[OBJECT_KNOB].setValue(2)
    result = press(node, "lock")
    assert result.state == "failed" and result.message.startswith("object 2 has nothing tracked to lock yet")
    assert node[SESSION_KNOB].value()


def test_history_buttons_on_a_node_without_a_session_say_so(nuke: object, worker_env: WorkerProcess,
                                                            plate: str) -> None:
    read = fake_nuke.control.make_read(plate.replace("####", "%04d"), FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    fake_nuke.control.current_frame = 1003
    for action in ("undo", "lock"):
        result = press(node, action)
        assert result.state == "failed" and result.message.startswith("this node has no session yet"), action
    assert node[SESSION_KNOB].value() == ""  # and none was opened for it
