"""The plug-in end to end: `samroto_nuke.host` on the fake `nuke`, talking to a real worker
process (micro checkpoint) through the bridge client.

Buttons are pressed by executing the node's PyScript knobs as Nuke would; the background job's
calls into Nuke arrive through `executeInMainThread` and run when the test pumps the fake's
main-thread queue. The fake refuses node and knob access from any other thread, so a job that
finishes "done" also proves the threading rule held.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from samroto_nuke import connection
from samroto_nuke.jobs import JobResult
from samroto_nuke.settings import (ACTIONS, BOX_ENABLE_KNOB, BOX_KNOB, FINAL_KNOB, MODE_KNOB, OBJECT_KNOB,
                                   PLATE_KEY_KNOB, PREVIEW_KNOB, PREVIEW_RESOLUTION_KNOB, PREVIEW_TILE_COLOR,
                                   PROMPT_SOURCE_KNOB, ROTO_INPUT_KNOB, SESSION_KNOB, SESSION_RESOLUTION_KNOB,
                                   STATUS_KNOB, ConnectionSettings, negative_enable_knob, positive_enable_knob,
                                   positive_point_knob)

from ...bridge.bridge_support import WorkerProcess
from . import fake_nuke
from .conftest import FIRST, HEIGHT, LAST, WIDTH, write_plate

KNOB_OF = {action: name for name, _, action in ACTIONS}
host: Any = None  # samroto_nuke.host: importable only once the fake `nuke` is in sys.modules


@pytest.fixture(autouse=True)
def _host(nuke: object) -> None:
    global host
    import samroto_nuke.host as module

    host = module


def press(node: fake_nuke.Node, action: str) -> JobResult:
    """Click a SamRoto button and pump Nuke's main thread until its job is over."""
    node[KNOB_OF[action]].execute()  # type: ignore[attr-defined]
    runner = host.runner_for(node)
    assert runner is not None, "the button started no job: %s" % fake_nuke.control.messages
    fake_nuke.control.run_until(lambda: not runner.running)
    assert runner.result is not None
    return runner.result


def samroto_on(read: fake_nuke.Node) -> fake_nuke.Node:
    fake_nuke.control.selected = read
    node = host.create_node()
    assert node.input(0) is read
    return node


def click(node: fake_nuke.Node, x: float, y: float, *, obj_id: int = 1) -> None:
    """One positive click at (x, y) in Nuke space for `obj_id`, nothing else enabled."""
    node[OBJECT_KNOB].setValue(obj_id)
    node[positive_enable_knob(1)].setValue(True)
    node[positive_point_knob(1)].setValue([x, y])


def worker_sessions() -> Dict[str, bool]:
    """The worker's sessions, asked with a client of the test's own: id -> whether it is a preview."""
    client = connection.connect(ConnectionSettings())
    try:
        return {str(info["session"]): bool(info["preview"]) for info in client.list_sessions()}
    finally:
        client.close()


def frame_file(pattern: str, frame: int) -> str:
    return pattern.replace("####", "%04d" % frame)


def test_track_forward_then_backward_from_a_read_node(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    read = control.make_read(plate.replace("####", "%04d"), FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    click(node, 80.0, 60.0)
    control.current_frame = 1003

    result = press(node, "forward")
    assert result.state == "done", result.message
    assert result.tracked_frames == list(range(1003, LAST + 1))
    assert result.prompted == [(1, 1003)] and result.obj_ids == [1]
    session_id = node[SESSION_KNOB].value()
    assert session_id == result.session_id and node[PLATE_KEY_KNOB].value() == "%s|%d-%d" % (plate, FIRST, LAST)
    assert node[STATUS_KNOB].value() == "1 prompt sent; tracked 6 frames; objects 1"

    matte = control.nodes["SamRoto_obj1_matte"]
    pattern = matte["file"].value()
    assert os.path.basename(pattern) == "plate_SamRoto_obj1_matte.####.exr"  # <plate>_<node>_<object>
    assert os.path.dirname(plate) in pattern  # next to the plate
    assert [matte[k].value() for k in ("first", "last", "on_error", "before", "after", "frame_mode")] == [
        FIRST, LAST, "black", "black", "black", "expression"]
    assert [os.path.exists(pattern.replace("####", "%04d" % f)) for f in range(FIRST, LAST + 1)] == [False] * 2 + [True] * 6
    copy = control.nodes["SamRoto_obj1_alpha"]
    assert copy.input(0) is node and copy.input(1) is matte
    assert (copy["from0"].value(), copy["to0"].value()) == ("rgba.alpha", "rgba.alpha")

    task = control.progress_tasks[-1]
    assert task.title == "SamRoto SamRoto: forward"
    assert [u for u in task.updates if u[0] == "progress"][-1] == ("progress", 100)
    assert control.posted == control.ran_on_main and control.posted >= 3
    assert control.main_queue.empty()

    result = press(node, "backward")  # same session, same output nodes, the first frames filled in
    assert result.state == "done", result.message
    assert result.tracked_frames == [1003, 1002, 1001]
    assert node[SESSION_KNOB].value() == session_id
    assert [n for n in control.nodes if n.startswith("SamRoto_obj")] == ["SamRoto_obj1_matte", "SamRoto_obj1_alpha"]
    assert all(os.path.exists(pattern.replace("####", "%04d" % f)) for f in range(FIRST, LAST + 1))


def test_a_shifted_read_tracks_both_ways_with_a_box_and_two_objects(nuke: object, worker_env: WorkerProcess,
                                                                     plate: str) -> None:
    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT, frame_mode="start at", frame="1")
    node = samroto_on(read)
    control.current_frame = 4  # plate frame 1004
    click(node, 80.0, 60.0, obj_id=1)
    assert press(node, "prompts").prompted == [(1, 1004)]
    node[positive_enable_knob(1)].setValue(False)
    node[OBJECT_KNOB].setValue(2)
    node[BOX_ENABLE_KNOB].setValue(True)
    node[BOX_KNOB].setValue([10.0, 10.0, 70.0, 60.0])
    result = press(node, "both")
    assert result.state == "done", result.message
    assert result.obj_ids == [1, 2] and result.prompted == [(2, 1004)]
    assert sorted(result.tracked_frames) == list(range(FIRST, LAST + 1))
    for obj_id in (1, 2):
        matte = control.nodes["SamRoto_obj%d_matte" % obj_id]
        # the files keep the plate's numbers; the Read shifts them onto Nuke frames 1-8 like the plate's Read
        assert (matte["first"].value(), matte["frame_mode"].value(), matte["frame"].value()) == (FIRST, "offset",
                                                                                                 "-1000")
        assert os.path.exists(matte["file"].value().replace("####", str(FIRST)))


def test_the_progress_bar_cancels_tracking(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    control.cancel_progress_after = 2  # the artist presses the progress bar's cancel after 2 frames
    result = press(node, "forward")
    assert result.state == "cancelled"
    assert 2 <= len(result.tracked_frames) < LAST - FIRST + 1
    assert node[STATUS_KNOB].value().startswith("1 prompt sent; cancelled")
    control.cancel_progress_after = None
    node[positive_enable_knob(1)].setValue(False)  # no prompts: keep tracking the object already there
    result = press(node, "forward")
    assert result.state == "done" and result.prompted == [] and len(result.tracked_frames) == LAST - FIRST + 1


def test_the_cancel_button_stops_a_running_job_and_a_second_job_waits(nuke: object, worker_env: WorkerProcess,
                                                                      plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    assert host.on_button(node, "cancel") is None  # nothing running: nothing to cancel
    node[KNOB_OF["forward"]].execute()
    runner = host.runner_for(node)
    node[KNOB_OF["backward"]].execute()  # refused while the first job runs
    assert host.runner_for(node) is runner and "still busy with forward" in control.messages[-1]
    node[KNOB_OF["cancel"]].execute()  # long before 8 frames of tracking are over
    assert node[STATUS_KNOB].value() == "cancelling"
    control.run_until(lambda: not runner.running)
    assert runner.result.state == "cancelled" and len(runner.result.tracked_frames) < LAST - FIRST + 1


def test_roto_shapes_as_prompts_then_roto_shapes_as_output(nuke: object, worker_env: WorkerProcess,
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
    control.current_frame = 1002
    result = press(node, "both")
    assert result.state == "done", result.message
    assert result.prompted == [(1, 1002), (1, 1006)]
    assert sorted(result.tracked_frames) == list(range(FIRST, LAST + 1))

    node["samroto_shape_tolerance"].setValue(1.5)
    result = press(node, "roto")  # the worker's get_shapes, in Nuke space
    assert result.state == "done", result.message
    plan = result.roto_plan
    assert plan is not None and plan.layers[0].name == "obj1"
    roto = control.nodes["SamRoto_roto"]
    assert roto.Class() == "Roto" and roto["curves"].changes == 1
    layers = list(roto["curves"].rootLayer)
    assert [layer.name for layer in layers] == [layer_plan.name for layer_plan in plan.layers]
    for built, planned in zip(layers[0], plan.layers[0].shapes):
        assert built.name == planned.name and len(built) == planned.point_count
        for key in planned.keys:
            for i, point in enumerate(built):
                assert point.center.keys[key.frame] == pytest.approx(key.centers[i])
                assert point.leftTangent.keys[key.frame] == pytest.approx(key.left[i])
                assert point.rightTangent.keys[key.frame] == pytest.approx(key.right[i])
        assert built.visibility[float(planned.first)] is True
        assert all(built.visibility[float(f)] is False for f in planned.hide_frames)
        assert set(built[0].center.keys) == {float(k.frame) for k in planned.keys}
    keyed = set().union(*(set(built[0].center.keys) for built in layers[0]))
    assert keyed == {float(f) for f in range(FIRST, LAST + 1)}  # every tracked frame has keys

    again = press(node, "roto")  # a re-run replaces the layers instead of adding more
    assert again.state == "done"
    assert [layer.name for layer in roto["curves"].rootLayer] == [layer.name for layer in layers]


def test_roto_shapes_follow_the_plate_offset_and_the_worker_default_tolerance(
        nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT, frame_mode="offset", frame="-1000")
    node = samroto_on(read)
    click(node, 80.0, 60.0)
    control.current_frame = 3  # plate frame 1003
    assert press(node, "forward").tracked_frames == list(range(1003, LAST + 1))
    result = press(node, "roto")
    assert result.state == "done", result.message
    assert result.roto_plan is not None
    layer = control.nodes["SamRoto_roto"]["curves"].rootLayer[0]
    keyed = set().union(*(set(shape[0].center.keys) for shape in layer))
    assert keyed == {float(f - 1000) for f in range(1003, LAST + 1)}  # Nuke frames 3-8, nothing before
    for shape in layer:
        assert len({frozenset(point.center.keys) for point in shape}) == 1  # every point keyed on the same frames
        xs = [x for point in shape for x, _ in point.center.keys.values()]
        ys = [y for point in shape for _, y in point.center.keys.values()]
        assert 0 <= min(xs) and max(xs) <= WIDTH and 0 <= min(ys) and max(ys) <= HEIGHT


def _write_exr(path: str, rgb: np.ndarray) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": np.ascontiguousarray(rgb, dtype=np.float32)}).write(path)


def test_a_node_that_is_not_a_read_is_rendered_to_exr_once(nuke: object, worker_env: WorkerProcess, plate: str,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    control = fake_nuke.control
    monkeypatch.setenv("SAMROTO_RENDER_DIR", str(tmp_path / "renders"))
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT)
    grade = control.make_node("Grade", input=read, frames=(1, 4))

    def render(write: fake_nuke.Node, frame: int, path: str) -> None:
        assert write.input(0) is grade and write["file_type"].value() == "exr"
        bgr = cv2.imread(plate.replace("####", "%04d" % (FIRST + frame - 1)))
        _write_exr(path, (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / 255.0) ** 2.2)  # linear, as a comp would be

    control.render = render
    node = samroto_on(grade)
    click(node, 80.0, 60.0)
    control.current_frame = 1
    result = press(node, "forward")
    assert result.state == "done", result.message
    assert control.executed == [("Write1", 1, 4)] and "Write1" in control.deleted
    assert result.tracked_frames == [1, 2, 3, 4]
    assert node[PLATE_KEY_KNOB].value().startswith(str(tmp_path / "renders"))
    matte = control.nodes["SamRoto_obj1_matte"]
    assert (matte["first"].value(), matte["last"].value(), matte["frame_mode"].value()) == (1, 4, "expression")
    assert press(node, "frame").state == "done"
    assert len(control.executed) == 1  # the session still uses the first render
    assert press(node, "reset").state == "done"
    assert len(control.executed) == 2  # a reset renders again


def test_clear_messages_for_no_worker_wrong_token_and_unsupported_input(
        nuke: object, worker_env: WorkerProcess, plate: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from samroto.bridge import auth

    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT)
    node = samroto_on(read)
    click(node, 80.0, 60.0)
    control.current_frame = FIRST

    # no worker: a port nobody listens on (short timeouts, to keep the test fast)
    monkeypatch.setenv("SAMROTO_WORKER", "tcp://127.0.0.1:9")
    host.runner_options["connect"] = lambda s: connection.connect(replace(s, timeout_s=0.3, retries=0))
    result = press(node, "forward")
    assert result.state == "failed"
    assert result.message.startswith("No SamRoto worker answers at tcp://127.0.0.1:9. Start one")
    assert control.messages[-1] == result.message and node[STATUS_KNOB].value().startswith("No SamRoto worker")

    # wrong token: another config folder with its own token
    monkeypatch.setenv("SAMROTO_WORKER", worker_env.address)
    other = tmp_path / "other_config"
    auth.load_or_create_token(auth.token_path(other))
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(other))
    result = press(node, "forward")
    assert result.state == "failed" and "refused SamRoto's token" in result.message
    assert "SAMROTO_CONFIG_DIR" in result.message

    # no token file at all
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(tmp_path / "empty_config"))
    result = press(node, "forward")
    assert result.state == "failed" and "token" in result.message

    # unsupported inputs are refused on the main thread, before any job starts
    messages = len(control.messages)
    psd = control.make_read("/shots/comp.psd", 1, 1, width=WIDTH, height=HEIGHT)
    node.setInput(0, psd)
    node[KNOB_OF["forward"]].execute()
    assert host.runner_for(node) is not None and not host.runner_for(node).running  # the old, finished job
    assert "SamRoto's worker reads EXR, DPX, PNG, JPEG and TIFF sequences" in control.messages[messages]
    node.setInput(0, None)
    node[KNOB_OF["forward"]].execute()
    assert "has no input" in control.messages[-1]
    assert "has no input" in node[STATUS_KNOB].value()


def test_nothing_to_track_is_said_plainly(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    node[positive_enable_knob(1)].setValue(False)
    control.current_frame = FIRST
    result = press(node, "forward")
    assert result.state == "failed"
    assert result.message.startswith("no prompt on object 1") or result.message.startswith("nothing to track yet")
    node[negative_enable_knob(1)].setValue(True)
    result = press(node, "prompts")
    assert result.state == "failed" and "only negative clicks" in result.message


def test_the_menu_command_creates_a_node_with_every_knob(nuke: object) -> None:
    control = fake_nuke.control
    host.install_menus()
    command = control.toolbars["Nodes"].menus["SamRoto"].commands["SamRoto (SAM 2 roto)"]
    control.selected = control.make_read("/s/p.####.exr", 1, 10, width=640, height=480)
    exec(command, {"nuke": fake_nuke})
    node = control.selected
    assert node.name() == "SamRoto" and host.is_samroto_node(node)
    for name, _, _ in ACTIONS:
        assert node.knob(name) is not None
    assert node[positive_point_knob(1)].value() == [320.0, 240.0]
    assert node[BOX_KNOB].value() == [160.0, 120.0, 480.0, 360.0]
    assert node[SESSION_KNOB].getFlag(fake_nuke.INVISIBLE)
    second = host.create_node()
    assert second.name() == "SamRoto1" and second.input(0) is node


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


def test_status_shows_each_step(nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    press(node, "forward")
    statuses: List[Any] = [v for n, k, v in control.knob_log if k == STATUS_KNOB]
    assert statuses[0] == "forward: working..."
    assert "sent 1 prompt" in statuses and any(str(s).startswith("tracked ") for s in statuses)
    assert statuses[-1] == "1 prompt sent; tracked 8 frames; objects 1"
    session: Dict[str, Any] = {"id": node[SESSION_KNOB].value()}
    result = press(node, "reset")
    assert result.state == "done" and result.session_id != session["id"] and node[SESSION_KNOB].value() == result.session_id
    assert ConnectionSettings().timeout_s > 0 and write_plate is not None


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

    result = press(node, "forward")
    assert result.state == "done", result.message
    assert result.preview_resolution == 128 and result.tracked_frames == list(range(1003, LAST + 1))
    preview_id = node[SESSION_KNOB].value()
    assert worker_sessions()[preview_id] is True  # the worker opened a preview session
    assert node[MODE_KNOB].value() == "PREVIEW at 128 px - not the final mattes"
    assert node[STATUS_KNOB].value() == "PREVIEW: 1 prompt sent; tracked 6 frames; objects 1"
    assert (node["label"].value(), node["tile_color"].value()) == ("PREVIEW 128 px\nhero", PREVIEW_TILE_COLOR)
    assert control.progress_tasks[-1].title == "SamRoto SamRoto: Preview forward (128 px)"
    matte = control.nodes["SamRoto_obj1_matte"]
    preview_pattern = matte["file"].value()
    assert os.path.basename(preview_pattern) == "plate_SamRoto_preview_obj1_matte.####.exr"
    assert (matte["label"].value(), matte["tile_color"].value()) == ("PREVIEW 128 px", PREVIEW_TILE_COLOR)
    assert node[FINAL_KNOB].enabled() and node[SESSION_RESOLUTION_KNOB].value() == 128

    result = press(node, "final")
    assert result.state == "done", result.message
    final_id = node[SESSION_KNOB].value()
    assert final_id == result.session_id and final_id != preview_id
    sessions = worker_sessions()
    assert sessions[final_id] is False and preview_id not in sessions  # the preview is deleted once replaced
    assert result.obj_ids == [1] and sorted(result.tracked_frames) == list(range(FIRST, LAST + 1))
    assert control.progress_tasks[-1].title == "SamRoto SamRoto: final mattes (full resolution)"
    assert control.nodes["SamRoto_obj1_matte"] is matte  # the same Read node, repointed
    assert [n for n in control.nodes if n.startswith("SamRoto_obj")] == ["SamRoto_obj1_matte", "SamRoto_obj1_alpha"]
    pattern = matte["file"].value()
    assert os.path.basename(pattern) == "plate_SamRoto_obj1_matte.####.exr"
    assert all(os.path.exists(frame_file(pattern, f)) for f in range(FIRST, LAST + 1))
    assert all(os.path.exists(frame_file(preview_pattern, f)) for f in range(1003, LAST + 1))  # mattes stay
    assert node[MODE_KNOB].value() == "final mattes (full resolution)"
    assert node[STATUS_KNOB].value() == "final mattes: tracked 8 frames; objects 1"
    assert (node["label"].value(), node["tile_color"].value()) == ("hero", 0)
    assert (matte["label"].value(), matte["tile_color"].value()) == ("", 0)
    assert not node[FINAL_KNOB].enabled() and node[SESSION_RESOLUTION_KNOB].value() == 0

    # the node keeps its final session although "preview" is still ticked; a second "final" is refused
    result = press(node, "frame")
    assert result.state == "done" and result.preview_resolution == 0 and node[SESSION_KNOB].value() == final_id
    assert control.progress_tasks[-1].title == "SamRoto SamRoto: frame"
    result = press(node, "final")
    assert result.state == "failed" and "already tracks at full resolution" in result.message


def test_the_progress_bar_cancels_computing_final_mattes(nuke: object, worker_env: WorkerProcess,
                                                         plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT, frame_mode="offset",
                                        frame="-1000"))
    node[PREVIEW_KNOB].setValue(True)
    node[PREVIEW_RESOLUTION_KNOB].setValue(128)
    click(node, 80.0, 60.0)
    control.current_frame = 1  # plate frame 1001
    assert press(node, "forward").preview_resolution == 128
    preview_id = node[SESSION_KNOB].value()
    control.cancel_progress_after = 2
    result = press(node, "final")
    assert result.state == "cancelled"
    assert 2 <= len(result.tracked_frames) < LAST - FIRST + 1
    # the final session is the node's already (the preview stays on the worker until one completes)
    assert node[SESSION_KNOB].value() == result.session_id != preview_id and preview_id in worker_sessions()
    assert node[MODE_KNOB].value() == "final mattes (full resolution)" and not node[FINAL_KNOB].enabled()
    assert node[STATUS_KNOB].value().startswith("final mattes: cancelled after")
    matte = control.nodes["SamRoto_obj1_matte"]
    assert "_preview" not in matte["file"].value() and matte["frame"].value() == "-1000"
    control.cancel_progress_after = None
    node[positive_enable_knob(1)].setValue(False)
    result = press(node, "forward")  # goes on at full resolution
    assert result.state == "done" and result.preview_resolution == 0 and len(result.tracked_frames) == LAST - FIRST + 1


def test_preview_resolutions_the_model_cannot_run_and_final_without_a_preview_are_said_plainly(
        nuke: object, worker_env: WorkerProcess, plate: str) -> None:
    control = fake_nuke.control
    node = samroto_on(control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT))
    click(node, 80.0, 60.0)
    control.current_frame = FIRST
    node[PREVIEW_KNOB].setValue(True)
    result = press(node, "forward")  # the default 512 is not below the micro model's 256: the worker refuses
    assert result.state == "failed"
    assert "track_resolution must be a multiple of 32 from 64 to below the model's 256, got 512" in result.message
    assert node[SESSION_KNOB].value() == "" and node[MODE_KNOB].value() == ""
    node[PREVIEW_RESOLUTION_KNOB].setValue(100)  # refused on the main thread, before any job starts
    messages = len(control.messages)
    node[KNOB_OF["forward"]].execute()
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
