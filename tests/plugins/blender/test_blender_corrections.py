"""Corrections keep approved work in the Blender add-on: checked in real Blender (the `bpy` module)
by `corrections_scenario.py`, which starts its own worker on the micro checkpoint.

A correction re-tracks only its span (the frames beyond keep their mattes), undo brings the mattes
and prompts back and redo the correction, keyframes and locked ranges are timeline markers that
follow every action, reload and the object's removal, locked frames are never rewritten, and the
before/after toggle shows a frame's previous result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from ...bridge.worker.test_worker_process import make_plate
from .test_blender_addon import _require_bpy

SCENARIO = Path(__file__).with_name("corrections_scenario.py")
SPAN = [1004, 1005, 1006, 1007, 1008]  # from the correction on 1006 to the keyframes 1003 and 1009, exclusive


@pytest.fixture(scope="module")
def scenario(built_extension, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    _require_bpy()
    root = tmp_path_factory.mktemp("corrections")
    make_plate(root / "plate")
    out = root / "result.json"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(root / "blender"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("SAMROTO_WORKER", None)
    (root / "work").mkdir()
    command = [sys.executable, str(SCENARIO), "--zip", str(built_extension.zip_path), "--plate-dir",
               str(root / "plate"), "--root", str(root / "work"), "--out", str(out)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text()) if out.exists() else {}
    if completed.returncode != 0 or "error" in result:
        pytest.fail("the Blender corrections scenario failed (exit %d) after steps %s:\\n%s\\n--- stdout ---\\n%s\\n"
                    "--- stderr ---\\n%s" % (completed.returncode, result.get("steps"), result.get("error", ""),
                                            completed.stdout[-3000:], completed.stderr[-5000:]))
    return result


def test_a_correction_re_tracks_only_its_span(scenario: Dict[str, Any]) -> None:
    first = scenario["first"]
    # before any tracking, Track tracks both ways from the prompted frame, to the ends
    assert first["plan"] == [False, 1003, None, "both"]
    assert first["job"] == ["done", None, list(range(1001, 1013))] and first["matte_frames"] == list(range(1001, 1013))
    span = scenario["span"]
    # a click on a tracked frame is a correction: Track (the button's default) re-tracks its span only
    assert span["plan"] == [True, 1006, 1] and span["operator"] == ["FINISHED"]
    assert span["job"] == ["done", None, "Span re-track"]
    # forward from the correction up to the next keyframe, then backward down to the previous one
    assert span["order"] == [1006, 1007, 1008, 1005, 1004]
    assert span["changed_by_prompt"] == [] and span["changed_by_span"] == SPAN
    assert span["kept_beyond"]  # 1001-1003 and 1009-1012 keep their matte files byte for byte


def test_keyframes_and_locks_are_timeline_markers_that_follow_every_action(scenario: Dict[str, Any]) -> None:
    assert scenario["first"]["markers"] == [[3, "key: Chair"], [9, "key: Chair"]]
    assert scenario["span"]["markers"] == [[3, "key: Chair"], [6, "key: Chair"], [9, "key: Chair"]]
    locks = scenario["locks"]
    assert locks["marks"]["locks"] == {"1": [[1010, 1012]]}
    assert locks["markers"] == [[3, "key: Chair"], [6, "key: Chair"], [9, "key: Chair"],
                                [10, "locked: Chair 1010-1012"], [12, "locked: Chair 1010-1012"]]
    assert locks["unlock_markers"][-2:] == [[10, "locked: Chair 1010"], [12, "locked: Chair 1012"]]
    reload = scenario["reload"]
    assert reload["markers"] == locks["unlock_markers"]
    assert reload["marks"]["locks"] == {"1": [[1010, 1010], [1012, 1012]]}
    # the removed object's markers go with it
    assert scenario["remove"] == {"job": ["done", None], "markers": []}


def test_locks_are_respected_and_errors_reach_the_artist(scenario: Dict[str, Any]) -> None:
    locks = scenario["locks"]
    # the In/Out range (scene frames 10-12) locked with the panel's operator
    assert locks["operator"] == ["FINISHED"] and locks["message"] == "Locked frames 1010-1012 of Chair; locked: 1010-1012"
    # a prompt on a locked frame: refused by the worker, rolled back, shown in a popup
    assert locks["locked_prompt"][0] == "failed" and "is locked: unlock it first" in locks["locked_prompt"][1]
    assert locks["locked_prompt_drawn"] == ["1003", "1006", "1009"]
    assert locks["popup"].startswith("Prompt failed: ") and "locked" in locks["popup"]
    # tracking to the end goes through the locked frames without rewriting them
    assert locks["full_job"] == ["done", None, list(range(1003, 1013))] and locks["locked_kept"]
    assert locks["bad_range"] == "Frames 2000-2005 are outside the clip's frames 1001-1012"
    assert locks["unlock"] == ["done", None, {"1": [[1010, 1010], [1012, 1012]]}]


def test_the_panels_offer_the_span_to_the_end_undo_and_locks(scenario: Dict[str, Any]) -> None:
    track = scenario["locks"]["panels"]["SAMROTO_PT_track"]
    # on a corrected frame the first button re-tracks the span; tracking to the end is one click away
    assert track[:2] == [["samroto.propagate", "Re-track Span"], ["label", "To the end:"]]
    assert track[2:5] == [["samroto.propagate", "Backward"], ["samroto.propagate", "Both"],
                          ["samroto.propagate", "Forward"]]
    corrections = scenario["locks"]["panels"]["SAMROTO_PT_corrections"]
    assert corrections == [
        ["samroto.session_undo", "Undo lock frames 1010-1012 (object 1)"], ["samroto.session_undo", "Redo"],
        ["samroto.before_after", "Showing: After"], ["label", "Keyframes: 1003, 1006, 1009"],
        ["label", "Locked: 1010-1012"], ["samroto.lock", "Lock"], ["samroto.lock", "Unlock"],
        ["label", "Frames: in/out 10-12"]]


def test_undo_brings_back_the_mattes_and_prompts_the_add_on_shows_and_redo_the_correction(
        scenario: Dict[str, Any]) -> None:
    undo = scenario["undo"]
    # the first undo takes back the span re-track: its five frames, byte for byte
    assert undo["job"] == ["done", None] and undo["step"] == "span re-track from frame 1006"
    assert undo["frames"] == SPAN and undo["restored"] == []
    assert undo["message"] == "Undid span re-track from frame 1006 (5 frames changed)"
    # what the overlay draws on the current frame (1005) is the worker's, and the result before the span
    assert undo["shown"] == undo["worker_shown"] == scenario["span"]["before_preview"]
    # the second takes back the correction's click: the drawn prompts follow the worker's
    assert undo["prompt_job"] == ["done", None] and undo["tracked_restored"] == []
    assert undo["drawn"] == undo["worker"] and sorted(undo["drawn"]["1"]) == ["1003", "1009"]
    assert undo["markers"] == [[3, "key: Chair"], [9, "key: Chair"]]
    # redo twice: the correction and its span are back, byte for byte; then nothing is left to redo
    assert undo["redo_job"] == ["done", None] and undo["redone"] == []
    assert sorted(undo["redo_drawn"]["1"]) == ["1003", "1006", "1009"]
    assert undo["redo_markers"] == [[3, "key: Chair"], [6, "key: Chair"], [9, "key: Chair"]]
    # Ctrl+Z / Ctrl+Shift+Z (Cmd on macOS) in the prompt tool: the session's undo and redo
    assert undo["keys"] == [[["RUNNING_MODAL"], "Undid span re-track from frame 1006 (5 frames changed)"],
                            [["RUNNING_MODAL"], "Redid span re-track from frame 1006 (5 frames changed)"]]
    assert undo["keys_kept"] == []
    assert undo["nothing_to_redo"] == ["failed", "Nothing to redo"]


def test_before_after_shows_the_previous_result_of_the_frame(scenario: Dict[str, Any]) -> None:
    before, span = scenario["before"], scenario["span"]
    assert span["before_preview"] != span["after_preview"]  # the span changed frame 1005
    assert before["operator"] == ["FINISHED"] and before["state"] is True
    assert before["shown"] == span["before_preview"]  # "before": what the span overwrote
    assert before["after_shown"] == span["after_preview"]  # toggled back: the current result
    # a frame only the first track wrote: before it there was nothing
    (empty,) = before["unchanged_frame"].values()
    assert empty["counts"] == [empty["height"] * empty["width"]]
