"""The plug-in end to end: `samroto_nuke.host` on the fake `nuke`, talking to a real worker
process (micro checkpoint) through the bridge client.

Buttons are pressed by executing the node's PyScript knobs as Nuke would; the background job's
calls into Nuke arrive through `executeInMainThread` and run when the test pumps the fake's
main-thread queue. The fake refuses node and knob access from any other thread, so a job that
finishes "done" also proves the threading rule held. The SamRoto Group's output is rendered by
`fake_render` from the files on disk, without the plug-in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from samroto_nuke import connection
from samroto_nuke.jobs import JobResult
from samroto_nuke.corrections import with_label_line as with_keys_line
from samroto_nuke.review import with_label_line
from samroto_nuke.settings import (ACTIONS, ALPHA_KNOB, BOX_ENABLE_KNOB, BOX_KNOB, FINAL_KNOB, MODE_KNOB,
                                   OBJECT_KNOB, OBJECT_NAMES_KNOB, PLATE_KEY_KNOB, PREVIEW_KNOB,
                                   PREVIEW_RESOLUTION_KNOB, PREVIEW_TILE_COLOR, PROMPT_SOURCE_KNOB, ROTO_INPUT_KNOB,
                                   SESSION_KNOB, SESSION_RESOLUTION_KNOB, STATUS_KNOB, ConnectionSettings,
                                   negative_enable_knob, positive_enable_knob, positive_point_knob)

from ...bridge.bridge_support import WorkerProcess
from . import fake_nuke
from .conftest import FIRST, HEIGHT, LAST, WIDTH
from .fake_render import Renderer, RenderError

KNOB_OF = {action: name for name, _, action in ACTIONS}
host: Any = None  # samroto_nuke.host: importable only once the fake `nuke` is in sys.modules


@pytest.fixture(autouse=True)
def _host(nuke: object) -> None:
    global host
    import samroto_nuke.host as module

    host = module


def press(node: fake_nuke.Node, action: str) -> JobResult:
    """Click a SamRoto button and pump Nuke's main thread until its job is over."""
    before = host.runner_for(node)
    node[KNOB_OF[action]].execute()  # type: ignore[attr-defined]
    runner = host.runner_for(node)
    assert runner is not None and runner is not before, "the button started no job: %s" % fake_nuke.control.messages
    fake_nuke.control.run_until(lambda: not runner.running)
    assert runner.result is not None
    return runner.result


def settle(node: fake_nuke.Node) -> None:
    """Pump until no edit waits to be sent and no job runs on the node."""
    def idle() -> bool:
        runner = host.runner_for(node)
        return not host.pending_quick_result(node) and (runner is None or not runner.running) \
            and fake_nuke.control.main_queue.empty()
    fake_nuke.control.run_until(idle)


def samroto_on(read: fake_nuke.Node) -> fake_nuke.Node:
    fake_nuke.control.selected = read
    node = host.create_node()
    assert node.input(0) is read and node.Class() == "Group"
    return node


def click(node: fake_nuke.Node, x: float, y: float, *, obj_id: int = 1) -> None:
    """One positive click at (x, y) in Nuke space for `obj_id`, nothing else enabled."""
    node[OBJECT_KNOB].setValue(obj_id)
    host.write_prompt_knobs(node, host.FramePrompts(obj_id=obj_id, frame=fake_nuke.control.current_frame,
                                                    positive=((x, y),)))


def worker_prompts(node: fake_nuke.Node) -> Dict[int, Dict[int, Dict[str, Any]]]:
    """The worker's prompts of the node's session, asked with a client of the test's own:
    obj_id -> plate frame -> prompt."""
    client = connection.connect(ConnectionSettings())
    try:
        session = client.resume_session(node[SESSION_KNOB].value())
        if not session.obj_ids:
            return {}
        sidecar = session.export_prompts()
    finally:
        client.close()
    return {int(o["obj_id"]): {int(p["frame"]): p for p in o["prompts"]} for o in sidecar["objects"]}


def worker_sessions() -> Dict[str, bool]:
    """The worker's sessions: id -> whether it is a preview."""
    client = connection.connect(ConnectionSettings())
    try:
        return {str(info["session"]): bool(info["preview"]) for info in client.list_sessions()}
    finally:
        client.close()


def without_keys(label: str) -> str:
    """The label without its keyframes line (test_corrections.py checks that one)."""
    return with_keys_line(label, "")


def frame_file(pattern: str, frame: int) -> str:
    return pattern.replace("####", "%04d" % frame)


def inside(node: fake_nuke.Node, name: str) -> Optional[fake_nuke.Node]:
    return node._children.get(name)  # type: ignore[attr-defined]


def matte_pattern(node: fake_nuke.Node, obj_id: int = 1) -> str:
    read = inside(node, "matte%d" % obj_id)
    assert read is not None, "the Group has no Read for object %d" % obj_id
    return str(read["file"].value())


# --- prompts: only explicit sends, the knobs show the worker's ----------------------------------


def test_track_buttons_never_send_prompts(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    read = control.make_read(plate.replace("####", "%04d"), FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    control.current_frame = 1003
    result = press(node, "forward")  # nothing on the worker yet: nothing to track, and nothing sent
    assert result.state == "failed" and result.message.startswith("nothing to track yet")
    assert node[SESSION_KNOB].value() != ""  # the session is opened, empty
    assert worker_prompts(node) == {}

    click(node, 80.0, 60.0)
    result = press(node, "prompts")
    assert result.state == "done", result.message
    assert result.prompted == [(1, 1003)] and result.obj_ids == [1]
    assert os.path.isfile(frame_file(matte_pattern(node), 1003))  # the quick result of the frame

    result = press(node, "forward")
    assert result.state == "done", result.message
    assert result.prompted == [] and result.tracked_frames == list(range(1003, LAST + 1))
    control.current_frame = 1006  # the knobs still hold the click: tracking from here must not resend it
    assert node[positive_enable_knob(1)].value()
    for action in ("backward", "frame", "both"):
        result = press(node, action)
        assert result.state == "done" and result.prompted == [], result.message
    assert sorted(worker_prompts(node)[1]) == [1003]
    assert node[STATUS_KNOB].value().startswith("tracked 8 frames")
    assert all(os.path.isfile(frame_file(matte_pattern(node), f)) for f in range(FIRST, LAST + 1))
    task = control.progress_tasks[-1]
    assert task.title == "SamRoto SamRoto: both"
    assert control.posted == control.ran_on_main and control.main_queue.empty()


def test_the_knobs_show_the_worker_prompts_of_the_object_and_frame(nuke: object, worker_env: WorkerProcess,
                                                                    plate: str) -> None:
    control = fake_nuke.control
    host.install_callbacks()
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    control.current_frame = 1002
    click(node, 80.0, 60.0, obj_id=1)
    assert press(node, "prompts").state == "done"
    control.change_frame(1005)  # the knobs empty at once (nothing there), and the worker confirms it
    settle(node)
    assert not node[positive_enable_knob(1)].value() and not node[BOX_ENABLE_KNOB].value()
    assert node[STATUS_KNOB].value() == "object 1, frame 1005: no prompts"
    node[OBJECT_KNOB].setValue(2)
    host.write_prompt_knobs(node, host.FramePrompts(obj_id=2, frame=1005, negative=((20.0, 100.0),),
                                                    box=(10.0, 10.0, 70.0, 60.0)))
    assert press(node, "prompts").state == "done"
    prompt = worker_prompts(node)[2][1005]
    assert prompt["box"] == [10.0, HEIGHT - 60.0, 70.0, HEIGHT - 10.0]  # plate pixels, y down
    assert prompt["points"] == [[20.0, HEIGHT - 100.0]] and prompt["labels"] == [0]

    control.change_frame(1002)  # object 2 has nothing on 1002
    settle(node)
    assert not node[negative_enable_knob(1)].value() and not node[BOX_ENABLE_KNOB].value()
    control.user_sets(node, OBJECT_KNOB, 1)  # object 1's click, from the worker
    settle(node)
    assert node[positive_enable_knob(1)].value() and node[positive_point_knob(1)].value() == [80.0, 60.0]
    assert node[STATUS_KNOB].value() == "object 1, frame 1002: 1 include"
    control.change_frame(1005)
    control.user_sets(node, OBJECT_KNOB, 2)
    settle(node)
    assert node[BOX_ENABLE_KNOB].value() and node[BOX_KNOB].value() == [10.0, 10.0, 70.0, 60.0]
    assert node[negative_enable_knob(1)].value() and not node[positive_enable_knob(1)].value()
    write_knob = node[BOX_KNOB]
    host.write_prompt_knobs(node, host.FramePrompts(obj_id=2, frame=1005))  # stale knobs ...
    control.fire_knob_changed(node, fake_nuke.Knob("showPanel"))  # ... until the panel opens again
    settle(node)
    assert node[BOX_ENABLE_KNOB].value() and write_knob.value() == [10.0, 10.0, 70.0, 60.0]
    # no edit was sent by showing prompts: the worker holds exactly what was sent
    assert {o: sorted(f) for o, f in worker_prompts(node).items()} == {1: [1002], 2: [1005]}

    # an emptied frame is cleared on the worker (the knobs are its view)
    host.write_prompt_knobs(node, host.FramePrompts(obj_id=2, frame=1005))
    assert press(node, "prompts").state == "done"
    assert 2 not in worker_prompts(node) or 1005 not in worker_prompts(node)[2]


def test_a_knob_edit_sends_the_frame_after_a_pause_and_shows_its_result(nuke: object, worker_env: WorkerProcess,
                                                                         plate: str) -> None:
    control = fake_nuke.control
    host.install_callbacks()
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    control.current_frame = 1004
    # the artist drags the first point's handle twice, then ticks it: one send, with the last position
    control.user_sets(node, positive_point_knob(1), [40.0, 40.0])
    control.user_sets(node, positive_point_knob(1), [80.0, 60.0])
    control.user_sets(node, positive_enable_knob(1), True)
    assert host.pending_quick_result(node) and host.runner_for(node) is None  # nothing sent yet
    tasks = len(control.progress_tasks)
    assert node[STATUS_KNOB].value() == "prompt changed: sending in a moment..."
    settle(node)
    runner = host.runner_for(node)
    assert runner.job.action == "prompts" and runner.result.state == "done", runner.result.message
    assert runner.result.prompted == [(1, 1004)]
    assert worker_prompts(node)[1][1004]["points"] == [[80.0, HEIGHT - 60.0]]
    assert len(control.progress_tasks) == tasks  # no progress bar for a quick send
    alpha = Renderer().render(node, 1004)["rgba.alpha"]  # the node's output is the quick result
    assert alpha.shape == (HEIGHT, WIDTH) and alpha.max() > 0.5 and alpha[HEIGHT - 60, 80] > 0.5

    # a viewer gesture (Ctrl+Shift+click: exclude) edits the knobs and is sent the same way
    view = host.viewer_gesture(node, host.Gesture("exclude", 10.0, 110.0))
    assert view.negative == ((10.0, 110.0),) and node[negative_enable_knob(1)].value()
    settle(node)
    assert worker_prompts(node)[1][1004]["labels"] == [1, 0]
    assert host.runner_for(node).job.action == "prompts"

    # Nuke's own viewer convention: drag the "add include" handle onto the image; it adds a point where it rests
    home = node["samroto_add_include"].value()
    sent = host.runner_for(node)
    control.user_sets(node, "samroto_add_include", [100.0, 30.0])
    control.user_sets(node, "samroto_add_include", [120.0, 50.0])
    settle(node)
    assert host.runner_for(node) is not sent and host.runner_for(node).result.state == "done"
    assert node["samroto_add_include"].value() == home  # back, ready for the next point
    assert node[positive_point_knob(2)].value() == [120.0, 50.0] and node[positive_point_knob(2)].visible()
    assert not node[positive_point_knob(3)].visible()  # only the worker's points have handles
    assert worker_prompts(node)[1][1004]["points"] == [[80.0, HEIGHT - 60.0], [120.0, HEIGHT - 50.0],
                                                       [10.0, HEIGHT - 110.0]]

    # Nuke's colour sampling on the viewed node: Ctrl+click adds a point, Ctrl+Shift+drag sets the box
    node["samroto_click_adds"].setValue("exclude")  # (what a click adds where Qt cannot say if Shift is down)
    aspect = WIDTH / HEIGHT
    at = (40 / WIDTH * 2 - 1, (90 / HEIGHT - 0.5) * 2 / aspect)  # pixel (40, 90) in the viewer's units
    control.viewer_sample(node, (at[0], at[1], at[0], at[1]))
    control.viewer_sample(node, (-0.75, -0.375 / aspect * 2, 0.25, 0.5 / aspect))  # a drag: pixels 20-100, 15-90
    settle(node)
    prompt = worker_prompts(node)[1][1004]
    assert prompt["points"][-1] == [40.0, HEIGHT - 90.0] and prompt["labels"][-1] == 0
    assert prompt["box"] == pytest.approx([20.0, HEIGHT - 90.0, 100.0, HEIGHT - 15.0])
    other = control.make_node("Grade", input=node)
    control.viewer_sample(other, (0.0, 0.0, 0.0, 0.0))  # the colour picker on another node stays the colour picker
    assert not host.pending_quick_result(node)

    # an edit goes to the frame it was made on, even when the artist moves on before it is sent
    control.user_sets(node, positive_point_knob(1), [70.0, 60.0])
    control.change_frame(1006)
    settle(node)
    prompts = worker_prompts(node)[1]
    assert prompts[1004]["points"][0] == [70.0, HEIGHT - 60.0] and 1006 not in prompts
    assert not node[positive_enable_knob(1)].value()  # the knobs show frame 1006: nothing there


# --- the node is the matte ---------------------------------------------------------------------


def test_the_group_carries_alpha_and_a_channel_per_object_and_renders_without_the_plugin(
        nuke: object, worker_env: WorkerProcess, plate: str, monkeypatch: pytest.MonkeyPatch) -> None:
    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT, frame_mode="offset", frame="-1000")
    node = samroto_on(read)
    node[OBJECT_NAMES_KNOB].setValue("hero, car")
    control.current_frame = 3  # plate frame 1003
    click(node, 80.0, 60.0, obj_id=1)
    assert press(node, "prompts").state == "done"
    host.write_prompt_knobs(node, host.FramePrompts(obj_id=2, frame=3, box=(5.0, 5.0, 50.0, 40.0)))
    node[OBJECT_KNOB].setValue(2)
    assert press(node, "prompts").state == "done"
    result = press(node, "both")
    assert result.state == "done" and result.obj_ids == [1, 2], result.message
    assert control.layers == {"samroto": ["samroto.hero", "samroto.car"]}
    hero = inside(node, "matte1")
    assert (hero["frame_mode"].value(), hero["frame"].value(), hero["on_error"].value()) == ("offset", "-1000",
                                                                                             "error")
    assert inside(node, "channel2")["to0"].value() == "samroto.car"
    assert sorted(n.name() for n in node.nodes()) == [
        "Output1", "alpha", "channel1", "channel2", "matte1", "matte1_switch", "matte1_viewer", "matte2",
        "matte2_switch", "matte2_viewer", "plate"]
    assert inside(node, "matte1_viewer")["on_error"].value() == "black"

    # the farm: no plug-in (importing it fails), and nothing asks the worker; the mattes on disk are the output
    with monkeypatch.context() as farm:
        for name in [m for m in sys.modules if m == "samroto_nuke" or m.startswith("samroto_nuke.")]:
            farm.setitem(sys.modules, name, None)
        renderer = Renderer()
        image = renderer.render(node, 5)
    assert sorted(os.path.basename(p) for p in renderer.reads) == [
        "plate.1005.png", "plate_SamRoto_obj1_matte.1005.exr", "plate_SamRoto_obj2_matte.1005.exr"]
    merged = np.maximum(image["samroto.hero"], image["samroto.car"])
    assert image["samroto.hero"].max() > 0.5 and image["samroto.car"].max() > 0.5
    np.testing.assert_array_equal(image["rgba.alpha"], merged)
    assert image["rgba.red"].shape == (HEIGHT, WIDTH) and image["rgba.red"].max() > 0  # the plate passes through

    host.install_callbacks()
    control.user_sets(node, ALPHA_KNOB, "chosen object")  # the chosen object alone
    settle(node)
    image = Renderer().render(node, 5)
    np.testing.assert_array_equal(image["rgba.alpha"], image["samroto.car"])
    control.user_sets(node, OBJECT_KNOB, 1)
    settle(node)
    image = Renderer().render(node, 5)
    np.testing.assert_array_equal(image["rgba.alpha"], image["samroto.hero"])
    assert inside(node, "alpha")["expr3"].value() == "samroto.hero"


def test_missing_mattes_fail_the_render(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    image = Renderer().render(node, FIRST)  # nothing tracked: the plate with an empty alpha
    assert image["rgba.alpha"].max() == 0
    control.current_frame = 1004
    click(node, 80.0, 60.0)
    assert press(node, "prompts").state == "done"
    assert Renderer().render(node, 1004)["rgba.alpha"].max() > 0.5
    with pytest.raises(RenderError, match="missing file .*1005"):  # prompted on 1004 only, not tracked yet
        Renderer().render(node, 1005)
    assert Renderer(gui=True).render(node, 1005)["rgba.alpha"].max() == 0  # the viewer shows no matte there
    os.remove(frame_file(matte_pattern(node), 1004))  # a farm machine that cannot see the mattes
    with pytest.raises(RenderError, match="missing file"):
        Renderer().render(node, 1004)


# --- tracking: range, cancel ---------------------------------------------------------------------


def test_the_frame_range_knob_limits_tracking(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    control.current_frame = 1003
    click(node, 80.0, 60.0)
    assert press(node, "prompts").state == "done"
    node["samroto_range"].setValue("custom")
    node["samroto_range_first"].setValue(1002)
    node["samroto_range_last"].setValue(1005)
    result = press(node, "both")
    assert result.state == "done" and sorted(result.tracked_frames) == [1002, 1003, 1004, 1005], result.message
    control.root._frames = (1003, 1004)
    node["samroto_range"].setValue("global")
    result = press(node, "forward")
    assert sorted(result.tracked_frames) == [1003, 1004]
    node["samroto_range"].setValue("input")
    result = press(node, "forward")
    assert result.tracked_frames == list(range(1003, LAST + 1))
    control.current_frame = FIRST
    node["samroto_range"].setValue("custom")
    node["samroto_range_first"].setValue(1006)
    node["samroto_range_last"].setValue(1008)
    result = press(node, "forward")
    assert result.state == "failed" and "frame 1001 is outside the frames to track (1006-1008)" in result.message
    node["samroto_range_last"].setValue(1005)  # refused on the main thread
    node[KNOB_OF["forward"]].execute()
    assert control.messages[-1] == "the custom frame range 1006-1005 is empty"


def test_the_progress_bar_cancels_tracking(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    assert press(node, "prompts").state == "done"
    control.cancel_progress_after = 2  # the artist presses the progress bar's cancel after 2 frames
    result = press(node, "forward")
    assert result.state == "cancelled"
    assert 2 <= len(result.tracked_frames) < LAST - FIRST + 1
    assert node[STATUS_KNOB].value().startswith("cancelled after")
    control.cancel_progress_after = None
    result = press(node, "forward")
    assert result.state == "done" and result.prompted == [] and len(result.tracked_frames) == LAST - FIRST + 1


def test_the_cancel_button_stops_a_running_job_and_a_second_job_waits(nuke: object, worker_env: WorkerProcess,
                                                                      plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    assert press(node, "prompts").state == "done"
    assert host.on_button(node, "cancel").running is False  # nothing running: nothing to cancel
    node[KNOB_OF["forward"]].execute()
    runner = host.runner_for(node)
    node[KNOB_OF["backward"]].execute()  # refused while the first job runs
    assert host.runner_for(node) is runner and "still busy with forward" in control.messages[-1]
    node[KNOB_OF["cancel"]].execute()  # long before 8 frames of tracking are over
    assert node[STATUS_KNOB].value() == "cancelling"
    control.run_until(lambda: not runner.running)
    assert runner.result.state == "cancelled" and len(runner.result.tracked_frames) < LAST - FIRST + 1


# --- plates: renders, proxy, stereo ---------------------------------------------------------------


def _write_exr(path: str, rgb: np.ndarray) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": np.ascontiguousarray(rgb, dtype=np.float32)}).write(path)


def test_an_upstream_change_renders_the_plate_again_in_the_shared_folder(
        nuke: object, worker_env: WorkerProcess, plate: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    control = fake_nuke.control
    monkeypatch.setenv("SAMROTO_NUKE_PREFERENCES", str(tmp_path / "prefs.json"))
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT)
    grade = control.make_node("Grade", input=read, frames=(1, 4))
    grade.addKnob(fake_nuke.Double_Knob("white"))
    grade["white"].setValue(1.0)

    def render(write: fake_nuke.Node, frame: int, path: str) -> None:
        assert write.input(0) is grade and write["file_type"].value() == "exr"
        bgr = cv2.imread(plate.replace("####", "%04d" % (FIRST + frame - 1)))
        gain = float(grade["white"].value())
        _write_exr(path, gain * (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / 255.0) ** 2.2)  # linear, as a comp would be

    control.render = render
    node = samroto_on(grade)
    node["samroto_render_dir"].setValue(str(tmp_path / "shared"))
    control.root["proxy"].setValue(True)  # proxy mode: the plate is still rendered at full size
    click(node, 80.0, 60.0)
    control.current_frame = 1
    assert press(node, "prompts").state == "done"
    result = press(node, "forward")
    assert result.state == "done", result.message
    assert control.executed == [("Write1", 1, 4)] and control.executed_in_proxy == [False]
    assert control.root.proxy() is True and "Write1" in control.deleted
    assert result.tracked_frames == [1, 2, 3, 4]
    first_key = node[PLATE_KEY_KNOB].value()
    assert first_key.startswith(str(tmp_path / "shared"))
    assert press(node, "frame").state == "done"
    assert len(control.executed) == 1  # unchanged upstream: the render is reused
    first_session = node[SESSION_KNOB].value()

    grade["white"].setValue(1.5)  # the comp changes: a new render, a new session with the same prompts
    result = press(node, "forward")
    assert result.state == "done", result.message
    assert len(control.executed) == 2 and node[PLATE_KEY_KNOB].value() != first_key
    assert node[SESSION_KNOB].value() != first_session
    assert worker_prompts(node)[1][1]["points"] == [[80.0, HEIGHT - 60.0]]
    assert result.tracked_frames == [1, 2, 3, 4]


def test_prompts_stay_in_plate_pixels_when_the_format_is_not_the_files(nuke: object, worker_env: WorkerProcess,
                                                                        plate: str) -> None:
    control = fake_nuke.control
    # the Read's format is twice the files' size (a proxy-sized plate, or a format set by hand)
    read = control.make_read(plate, FIRST, LAST, width=WIDTH * 2, height=HEIGHT * 2)
    node = samroto_on(read)
    control.current_frame = FIRST
    click(node, 160.0, 120.0)
    assert press(node, "prompts").state == "done"
    assert worker_prompts(node)[1][FIRST]["points"] == [[80.0, 60.0]]  # the plate's own pixels
    host.request_view(node)
    settle(node)
    assert node[positive_point_knob(1)].value() == [160.0, 120.0]  # and back in the node's space


def test_a_stereo_read_asks_for_a_view_then_tracks_one_session_per_view(nuke: object, worker_env: WorkerProcess,
                                                                         tmp_path: Path) -> None:
    from .conftest import write_plate

    control = fake_nuke.control
    control.views = ["left", "right"]
    for view in ("left", "right"):
        write_plate(tmp_path / view)
    read = control.make_read(str(tmp_path / "%V" / "plate.####.png"), FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    control.current_frame = FIRST
    click(node, 80.0, 60.0)
    node[KNOB_OF["prompts"]].execute()
    assert "is a stereo plate" in control.messages[-1] and "left, right" in control.messages[-1]
    sessions: List[str] = []
    for view in ("left", "right"):
        node["samroto_view"].setValue(view)
        click(node, 80.0, 60.0)
        result = press(node, "prompts")
        assert result.state == "done", result.message
        sessions.append(node[SESSION_KNOB].value())
        assert os.path.join(str(tmp_path), view) in node[PLATE_KEY_KNOB].value()
    assert sessions[0] != sessions[1]
    node["samroto_view"].setValue("left")  # back to the left view: its own session again
    assert press(node, "forward").state == "done"
    assert node[SESSION_KNOB].value() == sessions[0]
    # the Group's Read names the view as %V: each view of the render gets its own mattes
    assert matte_pattern(node) == str(tmp_path / "%V" / "samroto_mattes" / "SamRoto"
                                      / "plate_SamRoto_%V_obj1_matte.####.exr")
    for view in ("left", "right"):
        renderer = Renderer(view)
        assert renderer.render(node, FIRST)["rgba.alpha"].max() > 0.5
        assert len(renderer.reads) == 2 and all(p.startswith(str(tmp_path / view) + os.sep) for p in renderer.reads)


# --- Roto ------------------------------------------------------------------------------------------


def test_roto_shapes_as_prompts_then_a_connected_roto_with_named_layers(nuke: object, worker_env: WorkerProcess,
                                                                        plate: str) -> None:
    rp = fake_nuke.rotopaint
    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT)
    roto_in = fake_nuke.nodes.Roto()
    curves = roto_in["curves"]
    layer = rp.Layer(curves)
    layer.name = "hero"
    shape = rp.Shape(curves)
    shape.name = "Bezier1"
    corners = [(40.0, 30.0), (120.0, 30.0), (120.0, 90.0), (40.0, 90.0)]
    for x, y in corners:
        shape.append(rp.ShapeControlPoint(x, y))
    for frame, dx in ((1002, 0.0), (1006, 10.0)):
        for point, (x, y) in zip(shape, corners):
            point.center.addPositionKey(frame, rp.CVec2(x + dx, y), "main")
    layer.append(shape)
    curves.rootLayer.append(layer)

    node = samroto_on(read)
    node[PROMPT_SOURCE_KNOB].setValue("roto")
    node[ROTO_INPUT_KNOB].setValue(roto_in.name())
    node[OBJECT_NAMES_KNOB].setValue("hero")
    control.current_frame = 1002
    assert press(node, "both").state == "failed"  # tracking never takes the shapes itself
    result = press(node, "prompts")
    assert result.state == "done", result.message
    assert result.prompted == [(1, 1002), (1, 1006)]
    result = press(node, "both")
    assert result.state == "done" and sorted(result.tracked_frames) == list(range(FIRST, LAST + 1))

    node["samroto_shape_tolerance"].setValue(1.5)
    result = press(node, "roto")  # the worker's get_shapes, in Nuke space
    assert result.state == "done", result.message
    plan = result.roto_plan
    assert plan is not None and plan.layers[0].name == "hero"
    roto = control.nodes["SamRoto_roto"]
    assert roto.Class() == "Roto" and roto["curves"].changes == 1 and roto.input(0) is node
    layers = list(roto["curves"].rootLayer)
    assert [layer.name for layer in layers] == ["hero"]
    for built, planned in zip(layers[0], plan.layers[0].shapes):
        assert built.name == planned.name and len(built) == planned.point_count
        for key in planned.keys:
            for i, point in enumerate(built):
                assert point.center.keys[key.frame] == pytest.approx(key.centers[i])
                assert point.leftTangent.keys[key.frame] == pytest.approx(key.left[i])
                assert point.rightTangent.keys[key.frame] == pytest.approx(key.right[i])
        assert built.visibility[float(planned.first)] is True
        assert all(built.visibility[float(f)] is False for f in planned.hide_frames)
    keyed = set().union(*(set(built[0].center.keys) for built in layers[0]))
    assert keyed == {float(f) for f in range(FIRST, LAST + 1)}  # every tracked frame has keys

    again = press(node, "roto")  # a re-run replaces the layers instead of adding more
    assert again.state == "done"
    assert [layer.name for layer in roto["curves"].rootLayer] == ["hero"]


# --- the worker ------------------------------------------------------------------------------------


def test_the_worker_address_comes_from_the_knob_or_the_preference_and_a_dead_one_fails_the_ping(
        nuke: object, worker_env: WorkerProcess, plate: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samroto_nuke.preferences import Preferences, save_preferences

    control = fake_nuke.control
    monkeypatch.setenv("SAMROTO_NUKE_PREFERENCES", str(tmp_path / "prefs.json"))
    monkeypatch.setenv("SAMROTO_WORKER", "tcp://127.0.0.1:9")  # the environment points nowhere
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    result = press(node, "prompts")
    assert result.state == "failed"
    assert result.message.startswith("No SamRoto worker answers at tcp://127.0.0.1:9 (no reply to a ping within "
                                     "1.0 s). Press \"Start worker\"")
    assert control.messages[-1] == result.message and node[STATUS_KNOB].value().startswith("No SamRoto worker")

    save_preferences(Preferences(worker_address=worker_env.address))  # SamRoto > Worker address...
    assert press(node, "prompts").state == "done"
    node["samroto_worker"].setValue("tcp://127.0.0.1:9")  # the node's own knob wins
    assert press(node, "forward").state == "failed"
    node["samroto_worker"].setValue("")
    assert press(node, "forward").state == "done"

    from samroto_nuke.preferences import load_preferences

    control.answers = ["tcp://127.0.0.1:1234", "samroto worker --model 'my model.pt'", "127.0.0.1:99"]
    host.ask_worker_address()  # the menu commands store the preferences
    host.ask_worker_command()
    assert load_preferences().worker_address == "tcp://127.0.0.1:1234"
    assert load_preferences().worker_command == ["samroto", "worker", "--model", "my model.pt"]
    host.ask_worker_address()  # not an address: said plainly, nothing stored
    assert "must look like tcp://host:port" in control.messages[-1]
    assert load_preferences().worker_address == "tcp://127.0.0.1:1234"


def test_clear_messages_for_a_wrong_token_and_unsupported_input(
        nuke: object, worker_env: WorkerProcess, plate: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samroto.bridge import auth

    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    other = tmp_path / "other_config"
    auth.load_or_create_token(auth.token_path(other))
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(other))
    result = press(node, "prompts")
    assert result.state == "failed" and "refused SamRoto's token" in result.message
    assert "SAMROTO_CONFIG_DIR" in result.message
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(tmp_path / "empty_config"))
    result = press(node, "prompts")
    assert result.state == "failed" and "token" in result.message

    # unsupported inputs are refused on the main thread, before any job starts
    messages = len(control.messages)
    psd = control.make_read("/shots/comp.psd", 1, 1, width=WIDTH, height=HEIGHT)
    node.setInput(0, psd)
    node[KNOB_OF["forward"]].execute()
    assert not host.runner_for(node).running
    assert "SamRoto's worker reads EXR, DPX, PNG, JPEG and TIFF sequences" in control.messages[messages]
    node.setInput(0, None)
    node[KNOB_OF["forward"]].execute()
    assert "has no input" in control.messages[-1]
    assert "has no input" in node[STATUS_KNOB].value()


def test_reset_asks_first(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    control.current_frame = FIRST
    click(node, 80.0, 60.0)
    assert press(node, "prompts").state == "done"
    session = node[SESSION_KNOB].value()
    control.answers = [False]
    before = host.runner_for(node)
    node[KNOB_OF["reset"]].execute()
    assert host.runner_for(node) is before and "deletes the worker's prompts" in control.asked[-1]
    assert worker_prompts(node) != {}
    control.answers = [True]
    result = press(node, "reset")
    assert result.state == "done" and node[SESSION_KNOB].value() == result.session_id != session
    assert worker_prompts(node) == {}
    assert not node[positive_enable_knob(1)].value()  # the knobs show the new, empty session


def test_the_menu_command_creates_a_group_with_every_knob(nuke: object) -> None:
    control = fake_nuke.control
    host.install_menus()
    menu = control.toolbars["Nodes"].menus["SamRoto"]
    assert set(menu.commands) >= {"SamRoto (SAM 2 roto)", "Worker address...", "Start worker"}
    control.selected = control.make_read("/s/p.####.exr", 1, 10, width=640, height=480)
    exec(menu.commands["SamRoto (SAM 2 roto)"], {"nuke": fake_nuke})
    node = control.selected
    assert node.name() == "SamRoto" and host.is_samroto_node(node) and node.Class() == "Group"
    for name, _, _ in ACTIONS:
        assert node.knob(name) is not None
    assert node[positive_point_knob(1)].value() == [320.0, 240.0] and not node[positive_enable_knob(1)].value()
    assert node[BOX_KNOB].value() == [160.0, 120.0, 480.0, 360.0]
    assert node[SESSION_KNOB].getFlag(fake_nuke.INVISIBLE)
    assert sorted(n.name() for n in node.nodes()) == ["Output1", "alpha", "plate"]
    assert [c[3] for c in control.knob_changed] == ["Group", "Viewer"]
    second = host.create_node()
    assert second.name() == "SamRoto1" and second.input(0) is node
    made = fake_nuke.nodes.Group()  # a Group that comes with its own Input1 and Output1
    with made:
        fake_nuke.nodes.Input()
        fake_nuke.nodes.Output()
    host.add_knobs(made, host.PromptLayout())
    host.sync_group(made)
    assert sorted(n.name() for n in made.nodes()) == ["Output1", "alpha", "plate"]


def test_init_and_menu_never_stop_nuke_from_starting(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import PLUGIN_DIR

    for name in ("init.py", "menu.py"):
        source = (PLUGIN_DIR / name).read_text()
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "samroto_nuke", None)  # a broken install: the import fails
            exec(compile(source, name, "exec"), {"__name__": "__main__"})
        captured = capsys.readouterr()
        assert "SamRoto: %s failed" % name in captured.out
        assert "Traceback" in captured.err and "ModuleNotFoundError" in captured.err


# --- preview sessions ------------------------------------------------------------------------------


def test_a_preview_is_labelled_as_one_until_final_mattes_replace_it(nuke: object, worker_env: WorkerProcess,
                                                                    plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    assert (node[PREVIEW_KNOB].value(), node[PREVIEW_RESOLUTION_KNOB].value()) == (False, 512)
    assert not node[FINAL_KNOB].enabled() and node[SESSION_RESOLUTION_KNOB].getFlag(fake_nuke.INVISIBLE)
    node[PREVIEW_KNOB].setValue(True)
    node[PREVIEW_RESOLUTION_KNOB].setValue(128)  # below the micro model's 256
    node["label"].setValue("hero")  # the artist's own label stays throughout
    click(node, 80.0, 60.0)
    control.current_frame = 1003
    assert press(node, "prompts").state == "done"
    result = press(node, "forward")
    assert result.state == "done", result.message
    assert result.preview_resolution == 128 and result.tracked_frames == list(range(1003, LAST + 1))
    preview_id = node[SESSION_KNOB].value()
    assert worker_sessions()[preview_id] is True  # the worker opened a preview session
    assert node[MODE_KNOB].value() == "PREVIEW at 128 px - not the final mattes"
    assert node[STATUS_KNOB].value() == "PREVIEW: tracked 6 frames; objects 1"
    # (the label's last line counts the frames to review: test_review_list.py)
    assert (without_keys(with_label_line(node["label"].value(), 0)), node["tile_color"].value()) == ("PREVIEW 128 px\nhero",
                                                                                       PREVIEW_TILE_COLOR)
    assert control.progress_tasks[-1].title == "SamRoto SamRoto: Preview forward (128 px)"
    preview_pattern = matte_pattern(node)
    assert os.path.basename(preview_pattern) == "plate_SamRoto_preview_obj1_matte.####.exr"
    assert node[FINAL_KNOB].enabled() and node[SESSION_RESOLUTION_KNOB].value() == 128

    result = press(node, "final")
    assert result.state == "done", result.message
    final_id = node[SESSION_KNOB].value()
    assert final_id == result.session_id and final_id != preview_id
    sessions = worker_sessions()
    assert sessions[final_id] is False and preview_id not in sessions  # the preview is deleted once replaced
    assert result.obj_ids == [1] and sorted(result.tracked_frames) == list(range(FIRST, LAST + 1))
    assert control.progress_tasks[-1].title == "SamRoto SamRoto: final mattes (full resolution)"
    pattern = matte_pattern(node)  # the same Read inside the Group, repointed
    assert os.path.basename(pattern) == "plate_SamRoto_obj1_matte.####.exr"
    assert all(os.path.exists(frame_file(pattern, f)) for f in range(FIRST, LAST + 1))
    assert all(os.path.exists(frame_file(preview_pattern, f)) for f in range(1003, LAST + 1))  # mattes stay
    assert node[MODE_KNOB].value() == "final mattes (full resolution)"
    assert node[STATUS_KNOB].value() == "final mattes: tracked 8 frames; objects 1"
    assert (without_keys(with_label_line(node["label"].value(), 0)), node["tile_color"].value()) == ("hero", 0)
    assert not node[FINAL_KNOB].enabled() and node[SESSION_RESOLUTION_KNOB].value() == 0

    result = press(node, "frame")
    assert result.state == "done" and result.preview_resolution == 0 and node[SESSION_KNOB].value() == final_id
    result = press(node, "final")
    assert result.state == "failed" and "already tracks at full resolution" in result.message


# a worker process on the bridge tests' fake engine: the real server, sockets and protocol, started in
# well under a second (the model itself is not what "Start worker" is about)
_FAKE_WORKER = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.bridge.worker.bridge_fakes import FakeEngine
from samroto.bridge.worker.server import Worker, WorkerConfig
config = WorkerConfig(bind="tcp://127.0.0.1:0", session_dir=Path(sys.argv[2]), config_dir=Path(sys.argv[3]))
worker = Worker(config, FakeEngine())
worker.bind()
sys.exit(worker.serve())
"""


def test_start_worker_launches_a_local_worker_and_waits_for_its_ping(
        nuke: object, plate: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samroto_nuke.preferences import Preferences, save_preferences

    from .conftest import PLUGIN_DIR

    control = fake_nuke.control
    script = tmp_path / "fake_worker.py"
    script.write_text(_FAKE_WORKER)
    monkeypatch.setenv("SAMROTO_NUKE_PREFERENCES", str(tmp_path / "prefs.json"))
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("SAMROTO_WORKER", raising=False)  # the client finds the address the worker announces
    save_preferences(Preferences(worker_command=[sys.executable, str(script), str(PLUGIN_DIR.parents[1]),
                                                 str(tmp_path / "sessions"), str(tmp_path / "config")]))
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    started = len(host._WORKERS)
    node[KNOB_OF["start_worker"]].execute()
    assert node[STATUS_KNOB].value() == "starting the worker..."
    control.run_until(lambda: node[STATUS_KNOB].value() != "starting the worker...", timeout=120)
    assert len(host._WORKERS) == started + 1
    process = host._WORKERS[-1]
    try:
        assert node[STATUS_KNOB].value() == "worker started", control.messages
        client = connection.connect(ConnectionSettings())  # found through the announced address
        assert client.hello().worker_version and client.close() is None
        node[KNOB_OF["start_worker"]].execute()  # one answers already: no second worker
        control.run_until(lambda: node[STATUS_KNOB].value() != "starting the worker...", timeout=60)
        assert node[STATUS_KNOB].value() == "a worker already answers: nothing started"
        assert len(host._WORKERS) == started + 1
    finally:
        process.terminate()
        process.wait(30)
    save_preferences(Preferences(worker_command=[sys.executable, "-c", "raise SystemExit(3)"]))
    node[KNOB_OF["start_worker"]].execute()
    control.run_until(lambda: node[STATUS_KNOB].value() != "starting the worker...", timeout=60)
    assert "the worker stopped at once (exit code 3)" in control.messages[-1]


def test_preview_resolutions_the_model_cannot_run_and_final_without_a_preview_are_said_plainly(
        nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    node[PREVIEW_KNOB].setValue(True)
    result = press(node, "prompts")  # the default 512 is not below the micro model's 256: the worker refuses
    assert result.state == "failed"
    assert "track_resolution must be a multiple of 32 from 64 to below the model's 256, got 512" in result.message
    assert node[SESSION_KNOB].value() == "" and node[MODE_KNOB].value() == ""
    node[PREVIEW_RESOLUTION_KNOB].setValue(100)  # refused on the main thread, before any job starts
    messages = len(control.messages)
    node[KNOB_OF["prompts"]].execute()
    assert not host.runner_for(node).running and host.runner_for(node).result is result
    assert control.messages[messages:] == ["the preview resolution must be a multiple of 32 from 64 up (e.g. 512), "
                                           "got 100"]
    node[PREVIEW_KNOB].setValue(False)
    result = press(node, "final")
    assert result.state == "failed" and result.message.startswith("there is no preview session to compute final")
    assert node[SESSION_KNOB].value() == ""  # no session was opened for it


def test_the_reads_colourspace_and_the_viewers_display_and_view_reach_the_worker(
        nuke: object, worker_env: WorkerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import OpenEXR

    monkeypatch.delenv("OCIO", raising=False)
    control = fake_nuke.control
    linear = np.linspace(0.0, 4.0, HEIGHT * WIDTH * 3, dtype=np.float32).reshape(HEIGHT, WIDTH, 3)
    for frame in (FIRST, FIRST + 1):
        channels = {c: np.ascontiguousarray(linear[..., i]) for i, c in enumerate("RGB")}
        OpenEXR.File({}, channels).write(str(tmp_path / ("lin.%04d.exr" % frame)))
    read = control.make_read(str(tmp_path / "lin.%04d.exr"), FIRST, FIRST + 1, width=WIDTH, height=HEIGHT)
    read["colorspace"].setValue("ACEScg")
    control.root["OCIO_config"].setValue("fn-nuke_cg-config-v2.1.0_aces-v1.3_ocio-v2.3")
    control.make_viewer("Un-tone-mapped (Display P3 - Display)")
    node = samroto_on(read)
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    result = press(node, "prompts")
    assert result.state == "done", result.message

    client = connection.connect(ConnectionSettings())
    try:
        colour = client.resume_session(result.session_id).info["colour"]
    finally:
        client.close()
    assert colour == {"config": "ocio://cg-config-v2.1.0_aces-v1.3_ocio-v2.3", "colorspace": "ACEScg",
                      "display": "Display P3 - Display", "view": "Un-tone-mapped"}


def test_the_memory_menu_reaches_the_preview_and_its_final_session(nuke: object, worker_env: WorkerProcess,
                                                                  plate: str) -> None:
    from samroto_nuke.settings import MEMORY_KNOB

    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    node[MEMORY_KNOB].setValue("presence")
    node[PREVIEW_KNOB].setValue(True)
    node[PREVIEW_RESOLUTION_KNOB].setValue(128)
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    assert press(node, "prompts").state == "done"

    def memory_mode() -> str:
        client = connection.connect(ConnectionSettings())
        try:
            return str({str(s["session"]): s for s in client.list_sessions()}[node[SESSION_KNOB].value()]["memory_mode"])
        finally:
            client.close()

    preview_id = node[SESSION_KNOB].value()
    assert memory_mode() == "presence"
    assert press(node, "forward").state == "done"
    result = press(node, "final")
    assert result.state == "done", result.message
    assert node[SESSION_KNOB].value() != preview_id and memory_mode() == "presence"
