"""The add-on in real Blender (the `bpy` module) against a real worker on the micro checkpoint.

One subprocess (`blender_scenario.py`) installs the built extension zip the way Blender does,
enables it, loads a generated image-sequence clip, goes through session / prompts / propagation /
correction / cancel / removal and the error cases, and writes what it saw as JSON; the tests below
check that record. bpy runs in its own process because it is heavy and keeps global state.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from ...bridge.bridge_support import WorkerProcess, running_worker
from ...bridge.worker.test_worker_process import FIRST, HEIGHT, LAST, WIDTH, make_plate

SCENARIO = Path(__file__).with_name("blender_scenario.py")
FRAMES = LAST - FIRST + 1


def _require_bpy() -> None:
    if importlib.util.find_spec("bpy") is None:
        pytest.fail("the Blender tests need Blender as a Python module: pip install bpy (Python 3.11; bpy 4.2 to "
                    "5.0), or pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("blender_worker")) as process:
        yield process


@pytest.fixture(scope="module")
def scenario(built_extension, worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    _require_bpy()
    root = tmp_path_factory.mktemp("blender_scenario")
    make_plate(root / "plate")
    with socket.socket() as sock:  # a port nobody listens on, for the "no worker" message
        sock.bind(("127.0.0.1", 0))
        dead = "tcp://127.0.0.1:%d" % sock.getsockname()[1]
    out = root / "result.json"
    env = dict(os.environ, SAMROTO_CONFIG_DIR=str(worker.config_dir), BLENDER_USER_RESOURCES=str(root / "blender"),
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("SAMROTO_WORKER", None)
    command = [sys.executable, str(SCENARIO), "--zip", str(built_extension.zip_path), "--address", worker.address,
               "--dead-address", dead, "--plate", str(root / "plate" / ("shot.%04d.png" % FIRST)), "--out", str(out)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text()) if out.exists() else {}
    if completed.returncode != 0 or "error" in result:
        pytest.fail("the Blender scenario failed (exit %d) after steps %s:\n%s\n--- stdout ---\n%s\n--- stderr ---\n%s"
                    % (completed.returncode, result.get("steps"), result.get("error", ""), completed.stdout[-3000:],
                       completed.stderr[-5000:]))
    result["worker_log"] = worker.log()
    return result


def test_the_extension_installs_registers_and_unregisters(scenario: Dict[str, Any]) -> None:
    assert scenario["install"] == ["FINISHED"] and scenario["enabled"]
    registered = scenario["registered"]
    assert {"connect", "open_session", "add_object", "prompt_tool", "propagate", "cancel", "remove_object",
            "build_mask", "load_mattes"} <= set(registered["operators"])
    assert registered["panel"] and registered["clip_property"] and registered["timer"] and registered["load_post"]
    # the client comes from the extension's own bundled copy, its wheels were installed by Blender
    assert scenario["bridge_module"].endswith(os.path.join("extensions", "user_default", "samroto", "bridge",
                                                           "client.py"))
    assert {"zmq", "msgpack"} <= set(scenario["wheels_installed"])
    assert scenario["disabled"] == {"panel": False, "clip_property": False, "timer": False, "load_post": False,
                                    "runner": False}


def test_connect_and_open_a_session_on_the_clips_files(scenario: Dict[str, Any]) -> None:
    assert scenario["connect_op"] == ["FINISHED"]
    assert scenario["connect"]["device"] == "cpu" and "Connected to tcp://127.0.0.1:" in scenario["connect"]["message"]
    opened = scenario["open"]
    assert opened["state"] == "done" and opened["error"] is None and opened["session"]
    assert (opened["first"], opened["last"], opened["size"]) == (FIRST, LAST, [WIDTH, HEIGHT])
    assert opened["plate"].endswith(os.path.join("plate", "shot.####.png"))


def test_clicks_and_boxes_show_the_mask_at_once(scenario: Dict[str, Any]) -> None:
    prompts = scenario["prompts"]
    assert prompts["states"] == ["done", "done"] and prompts["errors"] == [None, None]
    assert prompts["objects"] == [[1, "Chair"], [2, "Object 2"]]
    assert prompts["preview_frames"] == [FIRST, 1006]
    # the click's mask covers part of the frame (structure, not quality: the micro model is random)
    assert 0 < prompts["preview_1006"]["1"] < 1 and 0 < prompts["preview_1001"]["2"] < 1
    assert prompts["frame_rgba"] == [HEIGHT, WIDTH, 4]
    assert prompts["book"] == {"1": {"1006": {"points": [[80.0, 60.0]], "labels": [1]}},
                               "2": {"1001": {"points": [], "labels": [], "box": [40.0, 20.0, 120.0, 100.0]}}}


def test_propagation_reports_progress_and_records_the_mattes(scenario: Dict[str, Any]) -> None:
    run = scenario["propagate"]
    assert scenario["running_during"]
    assert run["state"] == "done" and run["error"] is None
    assert sorted(run["frames"]) == list(range(FIRST, LAST + 1))
    assert run["last_progress"] == [FRAMES, FRAMES] and run["progress_seen"] >= 2
    assert run["tracked"] == {"1": "%d-%d" % (FIRST, LAST), "2": "%d-%d" % (FIRST, LAST)}
    for obj_id in ("1", "2"):
        assert run["matte_paths"][obj_id].endswith("shot_obj%s_matte.%04d.png" % (obj_id, FIRST))


def test_flagged_frames_are_timeline_markers_and_a_list_to_jump_through(scenario: Dict[str, Any]) -> None:
    review = scenario["review"]
    # what the worker's confidence report flags (the micro model's masks are unstable: it flags plenty)
    expected = [(r["frame"], r["object_id"]) for r in review["report"]]
    assert expected, "the micro model flags frames on this plate"
    listed = review["listed"]
    assert [(frame, obj_id) for frame, _, obj_id, _, _ in listed] == expected
    # scene frame 1 shows plate frame FIRST; each row names its object and why
    assert all(scene == frame - FIRST + 1 for frame, scene, _, _, _ in listed)
    assert all(name == review["names"][str(obj_id)] and reasons for _, _, obj_id, name, reasons in listed)
    # a timeline marker per flagged frame and object, named with the object
    assert review["markers"] == sorted([scene, "review: " + name] for _, scene, _, name, _ in listed)
    # the panel lists them with a jump button each, and previous / next
    frames = sorted({frame for frame, _, _, _, _ in listed})
    assert ["label", "%d frame%s to review (markers on the timeline)" % (len(frames), "" if len(frames) == 1 else "s")] \
        in review["drawn"]
    buttons = [entry[2] for entry in review["drawn"] if entry[0] == "operator" and entry[1] == "samroto.jump_to_review"]
    assert buttons[:2] == ["Previous", "Next"]
    assert buttons[2:] == ["%d  %s: %s" % (frame, name, why) for frame, _, _, name, why in listed][:40]
    # the buttons move the scene: next from frame 0, straight to the last, then back one
    scenes = sorted({scene for _, scene, _, _, _ in listed})
    jumps = review["jumps"]
    assert jumps["next"] == [["FINISHED"], scenes[0]] and jumps["to_last"] == [["FINISHED"], listed[-1][1]]
    if len(scenes) > 1:
        assert jumps["previous"] == [["FINISHED"], max(s for s in scenes if s < listed[-1][1])]
    # a later propagation replaces the clip's markers (never piles them up)
    correct = scenario["correct"]
    assert correct["review_markers"] == correct["review_listed"]


def test_each_object_is_a_mask_layer_with_constant_point_counts_and_keys(scenario: Dict[str, Any]) -> None:
    # the end of the propagation built the mask from the worker's shapes and loaded the mattes
    assert scenario["auto_build"] and scenario["shapes_from"] == "worker", scenario.get("build_job")
    assert scenario["build_job"][:2] == ["done", None] and "2 layer(s) rebuilt" in scenario["build_job"][2]
    assert scenario["auto_images"] == ["shot.%04d.png Chair matte" % FIRST, "shot.%04d.png Object 2 matte" % FIRST]
    mask = scenario["mask"]
    assert mask["frame_range"] == [1, FRAMES] and mask["scene_range"] == [1, FRAMES]
    assert mask["layer_names"] == ["Chair", "Object 2"]
    for obj_id, layer in mask["layers"].items():
        assert layer["fill_holes"] and layer["splines"]
        assert [s["kind"] for s in layer["splines"]].count("outer") >= 1
        keyed_union = set()
        for spline in layer["splines"]:
            # layer shape keys (no F-curves), with a constant point count per spline
            assert spline["cyclic"] and spline["points"] == spline["track_points"] >= 3
            assert spline["animation"] is False
            tracked = spline["tracked_scene_frames"]
            expected = ([tracked[0] - 1] if tracked[0] > 1 else []) + tracked + \
                ([tracked[-1] + 1] if tracked[-1] < FRAMES else [])
            assert set(expected) <= set(spline["key_frames"])
            keyed_union |= set(expected)
        assert sorted(keyed_union) == layer["splines"][0]["key_frames"]
        # the evaluated animation puts the points where the worker's shape is on that frame
        assert layer["co_error"] < 1e-5 and layer["handle_error"] < 1e-5


def test_the_matte_sequence_is_loaded_as_an_image(scenario: Dict[str, Any]) -> None:
    for obj_id, image in scenario["images"].items():
        assert image["source"] == "SEQUENCE" and image["colorspace"] == "Non-Color"
        assert image["filepath"] == scenario["propagate"]["matte_paths"][obj_id]
        assert image["first"] == FIRST and image["offset"] == FIRST - 1
        assert image["grey_1006"] and 0 < image["inside_1006"] < WIDTH * HEIGHT
    # the matte Blender reads on frame 1006 is the mask the click made there (the prompt's preview
    # is at full size for this small clip)
    assert scenario["images"]["1"]["inside_1006"] == round(scenario["prompts"]["preview_1006"]["1"] * WIDTH * HEIGHT)


def test_a_correction_re_propagates_and_esc_cancels(scenario: Dict[str, Any]) -> None:
    correct = scenario["correct"]
    assert correct["state"] == "done" and correct["error"] is None
    assert correct["frames"] == [1009, 1010, 1011, 1012] and correct["book_frames"] == ["1006", "1009"]
    assert correct["preview_changed"]
    cancel = scenario["cancel"]
    assert cancel["asked"] and cancel["error"] is None
    assert cancel["state"] == "cancelled" and cancel["outcome"] == "cancelled"
    assert 1 <= len(cancel["frames"]) < FRAMES and not cancel["running_after"]


def test_the_operators_run_on_the_clip_in_context(scenario: Dict[str, Any]) -> None:
    ops = scenario["operators"]
    assert ops["add_object"] == ["FINISHED"] and ops["active"] == "Hat"
    assert "Hat has no clicks on this frame" in ops["clear_frame"]
    assert ops["cancel_poll"] is False
    # Propagate from the current frame: scene frame 9 is plate frame 1009, which has the correction
    assert ops["propagate"] == ["FINISHED"]
    assert ops["propagate_poll_while_running"] is False and ops["cancel_poll_while_running"] is True
    assert ops["propagate_job"] == ["done", None, [1009, 1010, 1011, 1012]]
    assert ops["load_mattes"] == ["FINISHED"] and ops["build_mask_poll"] is True
    assert ops["remove_object"] == ["FINISHED"] and ops["objects_after"] == ["Chair", "Object 2"]


def test_removing_an_object_removes_its_layer_and_clicks(scenario: Dict[str, Any]) -> None:
    removed = scenario["remove"]
    assert removed["state"] == "done" and removed["removed_on_worker"] is True
    assert removed["objects"] == [1] and removed["layers"] == ["Chair"] and removed["removed_layer"] == "Object 2"
    assert removed["record_left"] is False and removed["book_objects"] == ["1"]


def test_a_lost_session_is_reopened_with_every_click(scenario: Dict[str, Any]) -> None:
    lost = scenario["lost"]
    assert lost["state"] == "done" and lost["error"] is None
    assert lost["new"] not in ("", lost["old"], "lost-00000000")
    # the clicks on 1006 and 1009 were replayed, the new one on 1003 sent
    assert lost["worker_frames"] == [1003, 1006, 1009]


def test_clear_messages_when_things_are_missing(scenario: Dict[str, Any]) -> None:
    errors = scenario["errors"]
    assert errors["no_worker"]["state"] == "failed"
    assert errors["no_worker"]["error"].startswith("No samroto worker answers at tcp://127.0.0.1:")
    assert "Connect failed: No samroto worker answers" in errors["no_worker"]["message"]
    assert errors["wrong_token"]["state"] == "failed"
    assert "refused this add-on's token" in errors["wrong_token"]["error"]
    assert "wrong_token is not the worker's token file" in errors["wrong_token"]["error"]
    assert errors["missing_token"]["state"] == "failed"
    assert errors["missing_token"]["error"].startswith("No worker token at ")
    assert errors["reconnect"] == "done"
    assert errors["no_files"]["raised"] == "PlateError"
    assert "clip 'gone.0001.png' has no files on disk" in errors["no_files"]["message"]
    assert scenario["runner_replaced"]


def test_a_preview_is_labelled_and_compute_final_mattes_makes_the_final_ones(scenario: Dict[str, Any]) -> None:
    run = scenario["preview"]
    assert run["bad_size"][0] == "failed" and "track_resolution must be a multiple of 32" in run["bad_size"][1]
    warning = "PREVIEW at 128 px \u2014 not the final mattes"
    preview = run["preview"]
    assert preview["job"] == ["done", None, "Preview propagation", list(range(FIRST, LAST + 1))]
    assert preview["messages"][:2] == ["Preview: tracked %d frames at 128 px (not the final mattes)" % FRAMES,
                                       "Building the mask..."]
    assert preview["messages"][-1] == "Mask %r: 1 layer(s) rebuilt" % preview["mask"]
    assert preview["progress_texts"] and all(t.startswith("Preview: tracking ") for t in preview["progress_texts"])
    assert (preview["preview_session"], preview["track_resolution"], preview["worker_preview"]) == (True, 128, True)
    assert preview["label"] == warning
    # the sidebar shows the warning (alert, error icon) and offers the final mattes
    assert ["label", warning, "ERROR", True] in preview["panel"]
    assert ["operator", "samroto.compute_final"] in preview["panel"]
    assert preview["matte_paths"][0].endswith("shot_preview_obj1_matte.%04d.png" % FIRST)
    name, path = preview["images"][0]
    assert name.endswith(" Cup preview matte") and path == preview["matte_paths"][0]
    assert preview["mask"].endswith(" (preview)") and preview["mask_preview"] is True
    assert preview["build"] == ["done", None] and preview["layers"] == ["Cup"]
    assert preview["tracked"] == ["%d-%d" % (FIRST, LAST)] and preview["worker_frames"] == list(range(FIRST, LAST + 1))

    assert run["final_poll"] is True and run["final_poll_first_clip"] is False
    assert "not a preview" in run["final_first_clip"]
    assert run["final_op"] == ["FINISHED"]
    final = run["final"]
    assert final["job"] == ["done", None, "Final mattes", list(range(FIRST, LAST + 1))], final["messages"]
    assert final["job"] == ["done", None, "Final mattes", list(range(FIRST, LAST + 1))]
    assert final["messages"][0] == "Final mattes: tracked %d frames" % FRAMES
    assert final["messages"][-1] == "Mask %r: 1 layer(s) rebuilt" % final["mask"]
    assert final["progress_texts"] and all(t.startswith("Final mattes: tracking ") for t in final["progress_texts"])
    # the clip now works on a new full-resolution session: nothing says preview any more
    assert final["session"] not in ("", preview["session"])
    assert (final["preview_session"], final["track_resolution"], final["preview_mode"]) == (False, 0, False)
    assert final["worker_preview"] is False and final["label"] == ""
    assert not any(entry[0] == "label" and "PREVIEW" in entry[1] for entry in final["panel"])
    assert ["operator", "samroto.compute_final"] not in final["panel"]
    assert final["matte_paths"][0].endswith(os.sep + "shot_obj1_matte.%04d.png" % FIRST)
    name, path = final["images"][0]
    assert name.endswith(" Cup matte") and "preview" not in name and path == final["matte_paths"][0]
    assert final["mask"] == preview["mask"][:-len(" (preview)")] and final["mask_preview"] is False
    assert final["build"] == ["done", None] and final["layers"] == ["Cup"]
    assert final["tracked"] == ["%d-%d" % (FIRST, LAST)] and final["worker_frames"] == list(range(FIRST, LAST + 1))
    # the memory mode chosen in the panel (its items explain each mode) reaches both sessions
    from samroto.core.memory_modes import explanations

    assert [(item[0], item[2]) for item in run["memory_items"]] == list(explanations().items())
    assert run["memory_items"][0][1] == "Exact SAM 2"
    assert (preview["memory_mode"], preview["worker_memory_mode"]) == ("presence", "presence")
    assert (final["memory_mode"], final["worker_memory_mode"]) == ("presence", "presence")
    # the preview's mask and matte files stay, labelled, beside the final ones
    assert preview["mask"] in run["masks"] and final["mask"] in run["masks"]
    for frame in range(FIRST, LAST + 1):
        assert "shot_preview_obj1_matte.%04d.png" % frame in run["preview_matte_files"]
        assert "shot_obj1_matte.%04d.png" % frame in run["preview_matte_files"]


def test_the_clips_colourspace_and_the_scenes_view_reach_the_worker(scenario: Dict[str, Any]) -> None:
    colour = scenario["colour"]
    assert (colour["clip_colorspace"], colour["display"], colour["view"]) == ("sRGB", "sRGB", "Standard")
    # the worker loaded Blender's own config and converts the plate as the Clip Editor shows it
    assert colour["worker"] == {"config": colour["config"], "colorspace": "sRGB", "display": "sRGB",
                                "view": "Standard"}
