"""The node's list of frames to review: `samroto_nuke.host` on the fake `nuke`, a real worker process
(micro checkpoint) deciding which frames are flagged, the Nuke frames of a shifted Read."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from samroto_nuke.review import REVIEW_GO_KNOB, REVIEW_KNOB, frame_of, label_line, review_entries, with_label_line
from samroto_nuke.settings import ACTIONS, OBJECT_KNOB

from ...bridge.bridge_support import WorkerProcess
from . import fake_nuke
from .conftest import FIRST, HEIGHT, LAST, WIDTH

KNOB_OF = {action: name for name, _, action in ACTIONS}


def press(host: Any, node: fake_nuke.Node, action: str) -> Any:
    """Click a SamRoto button and pump Nuke's main thread until its job is over."""
    before = host.runner_for(node)
    node[KNOB_OF[action]].execute()  # type: ignore[attr-defined]
    runner = host.runner_for(node)
    assert runner is not None and runner is not before, "the button started no job: %s" % fake_nuke.control.messages
    fake_nuke.control.run_until(lambda: not runner.running)
    return runner.result


def test_flagged_frames_are_listed_on_the_node_with_a_jump_and_a_count(nuke: object, worker_env: WorkerProcess,
                                                                       plate: str) -> None:
    import samroto_nuke.host as host

    control = fake_nuke.control
    read = control.make_read(plate, FIRST, LAST, width=WIDTH, height=HEIGHT, frame_mode="start at", frame="1")
    control.selected = read
    node = host.create_node()
    node["label"].setValue("my note")
    node[OBJECT_KNOB].setValue(1)
    control.current_frame = 3  # plate frame 1003
    host.write_prompt_knobs(node, host.FramePrompts(obj_id=1, frame=3, positive=((80.0, 60.0),)))
    assert press(host, node, "prompts").state == "done"
    result = press(host, node, "both")
    assert result.state == "done", result.message

    # the worker's own report beside the mattes says which frames to review
    pattern = str(node._children["matte1"]["file"].value())  # type: ignore[attr-defined]  # the Group's Read
    report = json.loads(open(glob.glob(os.path.join(os.path.dirname(pattern), "*.confidence.json"))[0]).read())
    flagged = [(r["frame"], r["object_id"], tuple(r["reasons"])) for r in report["review"]]
    assert flagged, "the micro model flags frames of this plate"
    assert result.review == flagged

    # the list on the node: Nuke frames (the Read starts the plate at frame 1), object and reason
    entries = node[REVIEW_KNOB].values()
    nuke_frames = sorted({frame - FIRST + 1 for frame, _, _ in flagged})
    assert [frame_of(e) for e in entries] == nuke_frames
    assert entries == review_entries(flagged, lambda f: f - FIRST + 1)
    assert all("obj1 " in e for e in entries)
    # the count in the label, under the artist's own line and the chosen object's keyframes (Nuke frames)
    assert node["label"].value() == "my note\nkeys 3\n" + label_line(len(nuke_frames))

    # Go to frame: the viewer jumps to the chosen entry's frame
    node[REVIEW_KNOB].setValue(entries[-1])
    node[REVIEW_GO_KNOB].execute()  # type: ignore[attr-defined]
    control.pump()
    assert control.current_frame == nuke_frames[-1]

    # a second track replaces the list and the count (never a second label line)
    again = press(host, node, "forward")
    assert again.state == "done" and again.review
    assert node["label"].value().count(" to review") == 1 and node["label"].value().startswith("my note\n")
    assert [frame_of(e) for e in node[REVIEW_KNOB].values()] == sorted({f - FIRST + 1 for f, _, _ in again.review})


def test_the_review_text_without_nuke() -> None:
    items = [(1005, 2, ("area_jump",)), (1003, 1, ("score_below_zero",)), (1005, 1, ("low_stability", "x"))]
    assert review_entries(items, lambda f: f) == ["1003: obj1 lost", "1005: obj2 area jump; obj1 unstable edge, x"]
    assert frame_of("12: obj1 lost") == 12 and frame_of("none") is None
    assert label_line(0) == "" and label_line(1) == "1 frame to review" and label_line(3) == "3 frames to review"
    assert with_label_line("a\n2 frames to review\nb", 0) == "a\nb"
    assert with_label_line("", 4) == "4 frames to review"
