"""The add-on feels native to a Blender artist: checked in real Blender (the `bpy` module) by
`native_scenario.py`, which starts (and restarts) its own worker on the micro checkpoint.

Prompts stay what the worker holds after a failed send, an undo, a save and reload and a worker
restart; the Mask is layer shape keys that Blender's mask tools edit, an edit is kept and sent
back; the build runs in chunks and cancels; clips with frame offsets of every kind open; matte
nodes and strips survive save and reload; brush and lasso strokes reach the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from ...bridge.worker.test_worker_process import FIRST, HEIGHT, LAST, WIDTH, make_plate
from .test_blender_addon import _require_bpy

SCENARIO = Path(__file__).with_name("native_scenario.py")
MEDIA = Path(__file__).resolve().parents[3].parent / "shared" / "media"


@pytest.fixture(scope="module")
def native(built_extension, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    _require_bpy()
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("native")
    make_plate(root / "plate")
    movie = root / "take.avi"  # a real movie file: the plate's frames, 12 of them
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"MJPG"), 24, (WIDTH, HEIGHT))
    for frame in range(FIRST, LAST + 1):
        writer.write(cv2.imread(str(root / "plate" / ("shot.%04d.png" % frame))))
    writer.release()
    assert np.asarray(cv2.imread(str(root / "plate" / ("shot.%04d.png" % FIRST)))).shape == (HEIGHT, WIDTH, 3)
    out = root / "result.json"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(root / "blender"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("SAMROTO_WORKER", None)
    command = [sys.executable, str(SCENARIO), "--zip", str(built_extension.zip_path), "--plate-dir",
               str(root / "plate"), "--movie", str(movie), "--root", str(root / "work"), "--out", str(out)]
    (root / "work").mkdir()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text()) if out.exists() else {}
    if completed.returncode != 0 or "error" in result:
        pytest.fail("the Blender scenario failed (exit %d) after steps %s:\n%s\n--- stdout ---\n%s\n--- stderr ---\n%s"
                    % (completed.returncode, result.get("steps"), result.get("error", ""), completed.stdout[-3000:],
                       completed.stderr[-5000:]))
    return result


CLICK = {"points": [[80.0, 60.0]], "labels": [1]}
AFTER_RESTART = {"1003": {"points": [[80.0, 60.0], [100.0, 20.0]], "labels": [1, 0]},
                 "1008": {"points": [[40.0, 50.0]], "labels": [1]}}


def test_a_send_that_fails_is_rolled_back_and_reported(native: Dict[str, Any]) -> None:
    sync = native["sync"]
    # a dead worker is reported within about a second, before anything changes
    assert sync["dead_refused"].startswith("No SamRoto worker answers at tcp://127.0.0.1:")
    assert "Start Worker" in sync["dead_refused"] and sync["dead_refused_s"] < 5
    assert sync["after_refusal"] == {"1": {"1003": CLICK}}
    # a send queued just before the worker died: drawn at once, rolled back when it fails, with a popup
    assert sync["optimistic"] == ["1003", "1004"]
    assert sync["failed_state"][0] == "failed" and "stopped answering" in sync["failed_state"][1]
    assert sync["after_failure"] == {"1": {"1003": CLICK}}
    assert sync["popups"] and sync["popups"][0].startswith("Prompt failed: The worker stopped answering")
    assert sync["needs_sync"]


def test_a_restarted_worker_gets_what_is_drawn(native: Dict[str, Any]) -> None:
    sync = native["sync"]
    assert sync["restart_job"] == ["done", None]
    # the frame drawn while the worker was away reached the restarted worker with the new click
    assert sync["restart_drawn"] == {"1": AFTER_RESTART}
    assert sync["restart_worker"] == sync["restart_drawn"]


def test_undo_and_redo_take_the_worker_along(native: Dict[str, Any]) -> None:
    sync = native["sync"]
    assert sync["undo_push_available"]
    assert sync["before_undo_worker"]["1"]["1005"] == {"points": [[10.0, 10.0]], "labels": [0]}
    assert sync["after_undo_drawn"] == {"1": AFTER_RESTART} == sync["after_undo_worker"]
    assert "1005" in sync["after_redo_drawn"]["1"] and sync["after_redo_worker"] == sync["after_redo_drawn"]


def test_a_reloaded_file_gives_the_worker_its_prompts(native: Dict[str, Any]) -> None:
    sync = native["sync"]
    # the frame cleared after saving comes back with the file, on the worker too
    assert "1005" in sync["reload_saved"]["1"]
    assert sync["reload_drawn"] == sync["reload_saved"] == sync["reload_worker"]


def test_brush_and_lasso_strokes_reach_the_worker_as_clicks_and_masks(native: Dict[str, Any]) -> None:
    strokes = native["strokes"]
    state, error, brush = strokes["brush"]
    assert (state, error) == ("done", None)
    # a brush stroke becomes include clicks spread along it, from its start to its end
    assert 2 <= len(brush["points"]) <= 8 and set(brush["labels"]) == {1}
    assert brush["points"][0] == [30.0, 30.0] and brush["points"][-1] == [120.0, 60.0]
    # a lasso fills the object's mask (80x70 px), an exclude lasso cuts a 20x20 hole in it
    assert strokes["lasso"] == ["done", None, ["mask"]]
    assert 80 * 70 <= strokes["lasso_area"] <= 81 * 71
    assert 20 * 20 <= strokes["lasso_area"] - strokes["exclude_lasso_area"] <= 21 * 21 + 21
    # what is drawn is what the worker holds
    assert strokes["drawn"] == strokes["worker"]
    # the tool's gestures in region pixels (frame drawn at 2x from (10, 10)): an exclude click, a lasso
    assert strokes["tool_click"] == ["done", {"points": [[80.5, 60.0]], "labels": [0]}]
    assert strokes["tool_lasso"] == ["done", ["mask"]]


def test_the_mask_is_layer_shape_keys_an_edit_is_kept_and_sent_back(native: Dict[str, Any]) -> None:
    shapes = native["shapes"]
    assert shapes["propagate"] == ["done", None]
    # after tracking: the mattes are loaded, no shapes are built unless asked
    assert shapes["built_by_default"] is False and len(shapes["images"]) == 3  # Chair, Cup, Hat
    # shape keys on every tracked frame, no F-curves; the animation moves
    assert shapes["fcurves"] is False and shapes["keyed"] == list(range(1, 13)) and shapes["animated"]
    assert shapes["layers"] == ["Chair"]
    # a point moved on frame 5 with Blender's shape key tool stays after stepping away and back
    assert shapes["edit_insert"] == ["FINISHED"] and shapes["edit_kept_after_stepping"]
    assert shapes["edited_frames"] == [5]
    # rebuilding finds the renamed layer by its custom property: no second layer, the edit kept
    assert shapes["rebuilt_layers"] == ["Chair (hand fixed)"] and shapes["rebuilt_edit_kept"]
    assert "kept your edits on 1 frame(s)" in shapes["rebuilt_message"]
    # the edit goes back to the worker as a mask prompt on plate frame 1005; a layer as a prompt too
    assert shapes["sent"] == [["done", None]] and shapes["sent_frame_worker"] == ["mask"]
    assert shapes["layer_prompt"] == ["done", None, ["mask"]]


def test_the_build_runs_in_chunks_with_progress_and_cancels(native: Dict[str, Any]) -> None:
    shapes = native["shapes"]
    done, total = shapes["chunked_first_step"][1]
    assert shapes["chunked_first_step"][0] is False and 0 < done < total == 12
    # cancelled part-way: nothing half-built is left
    assert shapes["cancelled"] == ["cancelled", []]
    assert shapes["build"][:3] == ["done", "", 12] and "1 layer(s) rebuilt" in shapes["build"][3]
    assert shapes["progress_steps"] >= 3
    # the status bar shows the build's progress while it runs
    assert any(text.startswith("Building shapes ") and text.endswith("/12") for text in shapes["status_bar"])
    assert "SamRoto" in shapes["status_bar"]


def test_clips_with_frame_offsets_of_every_kind_open(native: Dict[str, Any]) -> None:
    offsets = native["offsets"]
    expected = {  # plate range, scene range, plate frame on the clip's start frame
        "seq+3": [FIRST, LAST, [-2, 9], 1004], "seq-2": [FIRST, LAST, [3, 14], 999],
        "seq_start101": [FIRST, LAST, [101, 112], 1001], "seq_start101+3_proxy": [FIRST, LAST, [98, 109], 1004],
        "movie+2": [0, 11, [-1, 10], 2], "movie-1_start10": [0, 11, [11, 22], -1],
    }
    for name, plate in expected.items():
        case = offsets[name]
        assert "error" not in case, (name, case)
        assert case["plate"] == plate, name
        assert case["session"] == ["done", None, plate[0], plate[1]], name
        # a click three frames after the clip's start lands on the plate frame Blender shows there
        state, error, frame, worker_frames = case["click"]
        assert (state, error) == ("done", None) and frame == plate[3] + 3 and worker_frames == [str(frame)], name
    assert offsets["movie+2"]["source"] == "MOVIE" and offsets["seq+3"]["source"] == "SEQUENCE"


def test_mattes_plug_into_the_compositor_and_sequencer_and_survive_reload(native: Dict[str, Any]) -> None:
    mattes = native["mattes"]
    frames, start, offset, fake_user = mattes["node"]
    assert (frames, start, offset, fake_user) == (12, 1, FIRST - 1, True)
    assert mattes["node_file_on_frame_5"] == FIRST + 4  # scene frame 5 shows plate frame 1005
    assert mattes["image"][1] == "SEQUENCE" and mattes["image"][2].endswith("shot_obj1_matte.%04d.png" % FIRST)
    assert mattes["strip"][:3] == [1.0, 12, "shot_obj1_matte.%04d.png" % FIRST]
    assert mattes["reloaded_node"] == [[12, 1, FIRST - 1, mattes["image"][0]]]
    assert mattes["reloaded_strips"] == [[1.0, 12]] and mattes["reloaded_image_fake_user"] is True


def test_the_worker_checks_and_the_panel(native: Dict[str, Any]) -> None:
    checks = native["checks"]
    assert checks["refused"].startswith("No SamRoto worker answers at tcp://127.0.0.1:9") and checks["refused_s"] < 5
    assert checks["start_worker_settings"] == "samroto worker" and checks["plain_settings"] == ""
    ui = native["ui"]
    assert ui["tab"] == "SamRoto" and ui["label"] == "SamRoto"
    assert "tcp://127.0.0.1:5795" in ui["address_tooltip"] and "5735" not in ui["address_tooltip"]
    assert ui["toolbar_panel"] == ["TOOLS", "CLIP_EDITOR"]
    assert {"start_worker", "prompt_tool", "layer_as_prompt", "send_edits", "add_matte_node",
            "add_matte_strip"} <= set(ui["operators"])
    assert ui["remove_confirms"] and "UNDO" in ui["remove_undo"] and ui["handlers"] == [True, True]
    assert ui["auto_results"] == [True, False]


def test_removing_an_object_is_undone_with_its_prompts(native: Dict[str, Any]) -> None:
    removal = native["removal"]
    assert removal["op"] == ["FINISHED"]
    assert "Hat" not in removal["objects_after"] and "3" not in removal["worker_after"]
    # Ctrl+Z: the object is back, and so are its prompts on the worker
    assert "Hat" in removal["objects_undone"]
    assert removal["worker_undone"] == {"1009": {"points": [[60.0, 70.0]], "labels": [1]}}
