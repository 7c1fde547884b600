"""Nuke glue: the only module of the plug-in that imports `nuke`.

The SamRoto node is a Group, and it is the matte: its output is the plate with every tracked
object in a channel of the `samroto` layer and the chosen object (or all of them merged) in
alpha. Inside are stock nodes only (a Read per object on its matte sequence, Copy nodes, an
Expression for the alpha), managed by the plug-in: a script renders without the plug-in or the
worker, from the mattes on disk, and a missing matte fails the render (a `$gui` Switch shows it as
black in the viewer instead, while the artist is still tracking).

The worker holds the prompts. The node's point and box knobs are a view of them for the chosen
object on the current frame: they are read back (`export_prompts`) when the frame or the object
changes, and an edit (a knob change, a drag of a point's handle, a Ctrl+click in the viewer)
sends that frame's prompts after a short pause and shows the worker's quick result for the frame
as the node's output. The track buttons never send prompts.

Threading (Foundry's rules): knobs and nodes are read and written on the main thread only. The
runner thread hands everything UI-related back through `nuke.executeInMainThread`; the one Nuke
object it holds is its `nuke.ProgressTask`, which Nuke designs to be created and updated from a
worker thread (Python dev guide, Threading and Roto examples). The Group's inside is changed
from those queued calls, never from inside a knobChanged callback.

Types: the `types-nuke` stubs (Nuke 13.2) type `node[name]` as a plain `Knob` and lack some
signatures, so knobs are cast to their classes here (`_knob(node, name, nuke.XY_Knob)`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type, TypeVar, cast

import nuke
import nuke.rotopaint as rp

from . import connection
from .corrections import Marks, before_pattern, frames_to_ranges, lock_range, ranges_to_frames
from .corrections import with_label_line as with_keys_line
from .jobs import JobObserver, JobResult, JobRunner, Progress, WorkerJob, mode_text, preview_label
from .matte_group import ObjectMatte, object_names, plan_group, stereo_pattern
from .plate import (HostColour, PlateSource, ReadInfo, UnsupportedInput, UpstreamNode, config_source, find_plate,
                    frame_path, parse_viewer_process, plan_render, track_range, with_view)
from .preferences import (Preferences, load_preferences, parse_command, render_folder, save_preferences, start_worker,
                          worker_address)
from .prompt_view import FramePrompts, Gesture, apply_gesture, frame_prompts, sample_gesture, sample_to_pixels
from .prompts import BezierVertex, KnobPrompts, RotoShapeData
from .review import (NO_REVIEW, REVIEW_GO_KNOB, REVIEW_KNOB, ReviewItem, flagged_count, frame_of, review_entries,
                     with_label_line)
from .roto_plan import RotoPlan
from .settings import (ACTIONS, ADD_EXCLUDE_KNOB, ADD_INCLUDE_KNOB, ALPHA_KNOB, ALPHA_SOURCES, BOX_ENABLE_KNOB,
                       BOX_KNOB, CLICK_ADDS_KNOB, CLICK_KINDS, ConnectionSettings, DEFAULT_PREVIEW_RESOLUTION,
                       FINAL_KNOB, HOLES_KNOB, HOLE_MODES, MARKER_KNOB, MATTE_DIR_KNOB, MATTING_CHOICES, MATTING_KNOB,
                       MEMORY_KNOB, MODE_KNOB, NODE_CLASS_LABEL,
                       OBJECT_KNOB, OBJECT_NAMES_KNOB, PLATE_KEY_KNOB, PREVIEW_KNOB, PREVIEW_RESOLUTION_KNOB,
                       PREVIEW_TILE_COLOR, PROMPT_SOURCES, PROMPT_SOURCE_KNOB, PluginSettings, PromptLayout,
                       QUICK_RESULT_DELAY_S, RANGE_FIRST_KNOB, RANGE_KNOB, RANGE_LAST_KNOB, RANGE_MODES,
                       RENDER_DIR_KNOB, ROTO_GROUPINGS, ROTO_GROUPING_KNOB, ROTO_INPUT_KNOB, RotoSettings,
                       SESSIONS_KNOB, SESSION_KNOB, SESSION_RESOLUTION_KNOB, STATUS_KNOB, TOLERANCE_KNOB,
                       TrackSettings, VIEW_KNOB, WORKER_ACTIONS, WORKER_KNOB, BEFORE_KNOB, HISTORY_KNOB,
                       LOCK_FRAMES_KNOB, LOCK_FRAME_MODES, MARKS_KNOB, TRACK_KNOB, TRACKED_KNOB, negative_enable_knob,
                       negative_point_knob, positive_enable_knob, positive_point_knob)

KnobT = TypeVar("KnobT", bound=nuke.Knob)

OBJECTS_KNOB = "samroto_objects"  # hidden; JSON {obj_id: matte pattern} of the Group's Reads
MARKS_DATA_KNOB = "samroto_marks_data"  # hidden; JSON of the keyframes and locks last heard (corrections.Marks)
INPUT_NAME, OUTPUT_NAME, ALPHA_NAME = "plate", "Output1", "alpha"

# running jobs, by the SamRoto node's full name (one at a time per node)
_RUNNERS: Dict[str, JobRunner] = {}
# what the runners are built with; tests swap in their own (e.g. a shape fetcher)
runner_options: Dict[str, Any] = {}
# the pause after the last prompt edit before it is sent (seconds)
quick_delay_s = QUICK_RESULT_DELAY_S


@dataclass
class PromptCache:
    """The worker's prompts of a node's session (`export_prompts`) and what maps them onto the
    node: plate size, timeline offset."""

    sidecar: Dict[str, Any]
    width: int
    height: int
    offset: int


_PROMPTS: Dict[str, PromptCache] = {}       # by node full name
_WRITING: Set[str] = set()                  # nodes whose knobs the plug-in is writing (not the artist)
_TIMERS: Dict[str, threading.Timer] = {}    # pending quick sends, by node
_WANTS_VIEW: Set[str] = set()               # nodes to read the worker's prompts for once their job ends
_WANTS_BEFORE: Set[str] = set()             # nodes to fetch the frame's previous result for once their job ends
_DROPPED: Dict[str, Gesture] = {}           # an add-point handle's last position, by node, until it rests
_EDITS: Dict[str, KnobPrompts] = {}         # the prompts as the artist last left them (with their frame), by node
_WORKERS: List[Any] = []                    # worker processes started from this Nuke


def _knob(node: nuke.Node, name: str, kind: Type[KnobT]) -> KnobT:
    knob = node.knob(name)
    if knob is None:
        raise UnsupportedInput("%s has no knob %r: is it a SamRoto node made by this version of the plug-in?"
                               % (node.name(), name))
    return cast(KnobT, knob)


def run_on_main(function: Callable[..., None], *args: object) -> None:
    """Queue `function(*args)` for Nuke's main thread (returns at once; never call it from the
    main thread and wait for it: Nuke would hang)."""
    nuke.executeInMainThread(function, args=args)


def tell(text: str) -> None:
    """A message for the artist: a dialog in the GUI, the terminal otherwise."""
    if nuke.GUI:
        nuke.message(text)
    else:
        print("SamRoto: " + text)


# --- menus, callbacks and node creation ---------------------------------------------------------


def install_menus() -> None:
    """Add SamRoto to the Nodes toolbar and listen to knob and frame changes (menu.py, GUI only)."""
    toolbar = nuke.toolbar("Nodes")
    if toolbar is not None:
        menu = toolbar.addMenu("SamRoto")
        menu.addCommand("SamRoto (SAM 2 roto)", "import samroto_nuke.host\nsamroto_nuke.host.create_node()")
        menu.addCommand("Worker address...", "import samroto_nuke.host\nsamroto_nuke.host.ask_worker_address()")
        menu.addCommand("Render folder...", "import samroto_nuke.host\nsamroto_nuke.host.ask_render_folder()")
        menu.addCommand("Worker command...", "import samroto_nuke.host\nsamroto_nuke.host.ask_worker_command()")
        menu.addCommand("Start worker", "import samroto_nuke.host\nsamroto_nuke.host.start_local_worker()")
    install_callbacks()


def install_callbacks() -> None:
    """knobChanged callbacks: SamRoto Groups (prompt edits, object choice) and Viewers (frame)."""
    nuke.removeKnobChanged(on_knob_changed, nodeClass="Group")
    nuke.removeKnobChanged(on_viewer_changed, nodeClass="Viewer")
    nuke.addKnobChanged(on_knob_changed, nodeClass="Group")
    nuke.addKnobChanged(on_viewer_changed, nodeClass="Viewer")
    nuke.removeOnScriptClose(reset_state)
    nuke.addOnScriptClose(reset_state)


def create_node(layout: Optional[PromptLayout] = None) -> nuke.Node:
    """A SamRoto Group below the selected node, with the prompt knobs and buttons; its inside
    passes the plate through with an empty alpha until objects are tracked."""
    node = nuke.createNode("Group")
    node.setName(NODE_CLASS_LABEL, uncollide=True)
    add_knobs(node, layout or PromptLayout())
    write_prompt_knobs(node, FramePrompts(obj_id=1, frame=int(nuke.frame())))
    sync_group(node)
    return node


def add_knobs(node: nuke.Node, layout: PromptLayout) -> None:
    width, height = _format_size(node)
    node.addKnob(nuke.Tab_Knob("samroto_tab", "SamRoto"))
    for name, label in ((MARKER_KNOB, "samroto"), (SESSION_KNOB, "session"), (PLATE_KEY_KNOB, "plate"),
                        (SESSIONS_KNOB, "sessions"), (OBJECTS_KNOB, "objects")):
        hidden = nuke.String_Knob(name, label)
        hidden.setFlag(nuke.INVISIBLE)
        node.addKnob(hidden)
    _knob(node, MARKER_KNOB, nuke.String_Knob).setValue("1")
    session_resolution = nuke.Int_Knob(SESSION_RESOLUTION_KNOB, "session preview size")
    session_resolution.setFlag(nuke.INVISIBLE)
    node.addKnob(session_resolution)
    node.addKnob(nuke.Text_Knob(STATUS_KNOB, "status", "no session yet"))
    node.addKnob(nuke.Text_Knob(MODE_KNOB, "mattes", ""))
    obj = nuke.Int_Knob(OBJECT_KNOB, "object")
    obj.setValue(1)
    obj.setTooltip("the object the clicks and box below show and edit (1, 2, ...); the knobs show what the worker "
                   "holds for it on the current frame")
    node.addKnob(obj)
    names = nuke.String_Knob(OBJECT_NAMES_KNOB, "object names")
    names.setTooltip("names of objects 1, 2, ... separated by commas (hero, car): the samroto.<name> channels and "
                     "the Roto layers")
    node.addKnob(names)
    alpha = nuke.Enumeration_Knob(ALPHA_KNOB, "alpha", list(ALPHA_SOURCES))
    alpha.setTooltip("the output's alpha: every object merged, or the object chosen above; each object also has "
                     "its own channel in the samroto layer")
    node.addKnob(alpha)
    source = nuke.Enumeration_Knob(PROMPT_SOURCE_KNOB, "prompts from", list(PROMPT_SOURCES))
    source.setTooltip("knobs: clicks in the viewer (Ctrl+click include, Ctrl+Shift+click exclude, Shift+drag box) "
                      "and the knobs below; roto: the shapes of the Roto node named below, sent by Send prompts")
    node.addKnob(source)
    node.addKnob(nuke.String_Knob(ROTO_INPUT_KNOB, "Roto node"))
    node.addKnob(nuke.Enumeration_Knob(ROTO_GROUPING_KNOB, "one object per", list(ROTO_GROUPINGS)))
    groups = ((layout.positive_points, positive_enable_knob, positive_point_knob, "+"),
              (layout.negative_points, negative_enable_knob, negative_point_knob, "-"))
    for count, enable_name, point_name, sign in groups:
        for i in range(1, count + 1):
            enable = nuke.Boolean_Knob(enable_name(i), "%s%d" % (sign, i))
            enable.setFlag(nuke.STARTLINE)
            node.addKnob(enable)
            point = nuke.XY_Knob(point_name(i), "")
            point.clearFlag(nuke.STARTLINE)
            point.setValue([width * (0.5 + (0.05 * i if sign == "-" else 0.0)), height * (0.5 + 0.05 * (i - 1))])
            node.addKnob(point)
    clicks = nuke.Enumeration_Knob(CLICK_ADDS_KNOB, "Ctrl+click adds", list(CLICK_KINDS))
    clicks.setTooltip("with this node in the viewer, Ctrl+click adds an include point, Ctrl+Shift+click an "
                      "exclude point, Ctrl+Shift+drag sets the box; where Nuke cannot tell whether Shift is held, "
                      "a click adds this kind")
    clicks.setFlag(nuke.STARTLINE)
    node.addKnob(clicks)
    for name, label, x in ((ADD_INCLUDE_KNOB, "add include", 0.05), (ADD_EXCLUDE_KNOB, "add exclude", 0.12)):
        handle = nuke.XY_Knob(name, label)
        handle.setValue(list(_handle_home(width, height, x)))
        handle.setTooltip("drag this handle in the viewer onto the image and let go: a new %s point there (or "
                          "Ctrl+click / Ctrl+Shift+click in the viewer)" % label.split()[-1])
        handle.setFlag(nuke.STARTLINE)
        node.addKnob(handle)
    box_on = nuke.Boolean_Knob(BOX_ENABLE_KNOB, "box")
    box_on.setFlag(nuke.STARTLINE)
    node.addKnob(box_on)
    box = nuke.BBox_Knob(BOX_KNOB, "")
    box.setValue([width * 0.25, height * 0.25, width * 0.75, height * 0.75])
    node.addKnob(box)
    frames = nuke.Enumeration_Knob(RANGE_KNOB, "frame range", list(RANGE_MODES))
    frames.setTooltip("frames to track: the input's (handles included), the script's, or the custom range")
    frames.setFlag(nuke.STARTLINE)
    node.addKnob(frames)
    for name, label, value in ((RANGE_FIRST_KNOB, "first", nuke.root().firstFrame()),
                               (RANGE_LAST_KNOB, "last", nuke.root().lastFrame())):
        knob = nuke.Int_Knob(name, label)
        knob.setValue(int(value))
        knob.clearFlag(nuke.STARTLINE)
        node.addKnob(knob)
    view = nuke.String_Knob(VIEW_KNOB, "view")
    view.setTooltip("for a stereo plate (%V in the Read's file): the view this node tracks (left, right, ...); "
                    "each view gets its own session")
    node.addKnob(view)
    preview = nuke.Boolean_Knob(PREVIEW_KNOB, "preview")
    preview.setTooltip("new sessions track at the preview resolution for fast feedback; their mattes are a PREVIEW "
                       "(named *_preview_*) until you press Compute final mattes. Takes effect when a session opens "
                       "(the first prompt, Reset session, another plate)")
    preview.setFlag(nuke.STARTLINE)
    node.addKnob(preview)
    resolution = nuke.Int_Knob(PREVIEW_RESOLUTION_KNOB, "preview resolution")
    resolution.setValue(DEFAULT_PREVIEW_RESOLUTION)
    resolution.setTooltip("the preview's internal size in pixels: a multiple of 32 below the model's own "
                          "(1024 for the official checkpoints)")
    resolution.clearFlag(nuke.STARTLINE)
    node.addKnob(resolution)
    matting = nuke.Enumeration_Knob(MATTING_KNOB, "matting", list(MATTING_CHOICES))
    matting.setTooltip("production alpha: a learned matting model (ViTMatte) refines each matte's edge band on the "
                       "worker (it needs the checkpoint: samroto download vitmatte-small)")
    matting.setFlag(nuke.STARTLINE)
    node.addKnob(matting)
    modes = connection.memory_modes()
    memory = nuke.Enumeration_Knob(MEMORY_KNOB, "memory", [name for name, _ in modes])
    memory.setTooltip("which tracked frames enter each object's memory; takes effect when a session opens (the "
                      "first prompt, Reset session, another plate). " + " ".join("%s: %s" % mode for mode in modes))
    memory.clearFlag(nuke.STARTLINE)
    node.addKnob(memory)
    for i, (name, label, action) in enumerate(ACTIONS):
        button = nuke.PyScript_Knob(name, label, "import samroto_nuke.host\n"
                                                 "samroto_nuke.host.on_button(nuke.thisNode(), %r)" % action)
        if i in (0, 2, 6) or name in (FINAL_KNOB, TRACK_KNOB, "samroto_lock", "samroto_undo"):
            button.setFlag(nuke.STARTLINE)
        if name == TRACK_KNOB:
            button.setTooltip("after a correction (a prompt of the chosen object on a frame it was already tracked "
                              "on) re-track only the span it affects, up to the neighbouring keyframes: the frames "
                              "beyond keep their mattes. Elsewhere: both ways to the end. The direction buttons "
                              "always track to the end")
        node.addKnob(button)
        if name == "samroto_unlock":
            frames = nuke.Enumeration_Knob(LOCK_FRAMES_KNOB, "", list(LOCK_FRAME_MODES))
            frames.setTooltip("what Lock / Unlock apply to for the chosen object: the current frame, or the frame "
                              "range above. Locked frames are never rewritten by tracking, which goes through them")
            frames.clearFlag(nuke.STARTLINE)
            node.addKnob(frames)
        if name == "samroto_redo":
            before = nuke.Boolean_Knob(BEFORE_KNOB, "show before")
            before.setTooltip("the viewer shows each frame's previous result (what the last step that changed it "
                              "overwrote); renders always use the current mattes")
            before.clearFlag(nuke.STARTLINE)
            node.addKnob(before)
    node.addKnob(nuke.Text_Knob(HISTORY_KNOB, "history", "nothing to undo"))
    node.addKnob(nuke.Text_Knob(MARKS_KNOB, "keyframes", "no keyframes yet"))
    for name in (TRACKED_KNOB, MARKS_DATA_KNOB):
        hidden = nuke.String_Knob(name, name)
        hidden.setFlag(nuke.INVISIBLE)
        node.addKnob(hidden)
    _knob(node, FINAL_KNOB, nuke.PyScript_Knob).setEnabled(False)  # until the node has a preview session
    tolerance = nuke.Double_Knob(TOLERANCE_KNOB, "shape tolerance")
    tolerance.setValue(0.0)
    tolerance.setTooltip("largest distance in pixels between a Roto shape and the matte edge "
                         "(0: automatic, one model-input pixel)")
    tolerance.setFlag(nuke.STARTLINE)
    node.addKnob(tolerance)
    node.addKnob(nuke.Enumeration_Knob(HOLES_KNOB, "holes", list(HOLE_MODES)))
    node.addKnob(nuke.String_Knob(MATTE_DIR_KNOB, "matte folder"))
    worker = nuke.String_Knob(WORKER_KNOB, "worker")
    worker.setTooltip("the worker's address, tcp://host:port (empty: SamRoto > Worker address..., then "
                      "$SAMROTO_WORKER, then the worker started on this machine)")
    worker.setFlag(nuke.STARTLINE)
    node.addKnob(worker)
    render = nuke.String_Knob(RENDER_DIR_KNOB, "render folder")
    render.setTooltip("where a plate that is not a Read node is rendered for the worker: a folder the worker's "
                      "machine can read (empty: SamRoto > Render folder..., then $SAMROTO_RENDER_DIR, then the "
                      "temp folder, which only a worker on this machine sees)")
    node.addKnob(render)


def _handle_home(width: int, height: int, x: float) -> Tuple[float, float]:
    """Where an add-point handle waits: near the image's top-left corner."""
    return float(width) * x, float(height) * 0.95


def _format_size(node: nuke.Node) -> Tuple[int, int]:
    fmt = node.format()
    return int(fmt.width()), int(fmt.height())


def is_samroto_node(node: Optional[nuke.Node]) -> bool:
    return node is not None and node.knob(MARKER_KNOB) is not None


# --- the Group's inside ------------------------------------------------------------------------


def stored_objects(node: nuke.Node) -> Dict[int, str]:
    """obj_id -> matte pattern of the Group's Reads."""
    text = _knob(node, OBJECTS_KNOB, nuke.String_Knob).value() or "{}"
    return {int(k): str(v) for k, v in json.loads(text).items()}


def _names(node: nuke.Node, obj_ids: List[int]) -> Dict[int, str]:
    return object_names(_knob(node, OBJECT_NAMES_KNOB, nuke.String_Knob).value(), obj_ids)


def _chosen(node: nuke.Node) -> Optional[int]:
    if str(_knob(node, ALPHA_KNOB, nuke.Enumeration_Knob).value()) == "chosen object":
        return int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value())
    return None


def sync_group(node: nuke.Node, patterns: Optional[Dict[int, str]] = None, plate: Optional[PlateSource] = None,
               *, reload: bool = False) -> None:
    """Make the Group's inside match its objects: `patterns` (obj_id -> matte pattern) are added
    to or replace the ones it has; `plate` times the matte Reads (None: as they are)."""
    group = cast(nuke.Group, node)
    objects = stored_objects(node)
    objects.update(patterns or {})
    _knob(node, OBJECTS_KNOB, nuke.String_Knob).setValue(json.dumps({str(k): v for k, v in sorted(objects.items())}))
    names = _names(node, list(objects))
    mattes = [ObjectMatte(obj_id=o, name=names[o], pattern=p) for o, p in sorted(objects.items())]
    old_first = _group_child(group, "matte%d" % mattes[0].obj_id) if mattes else None
    if plate is not None:
        first, last, offset = plate.first, plate.last, plate.offset
    elif old_first is not None:
        first, last = int(_knob(old_first, "first", nuke.Int_Knob).value()), int(_knob(old_first, "last",
                                                                                       nuke.Int_Knob).value())
        offset = int(_knob(old_first, "frame", nuke.String_Knob).value() or 0)
    else:
        first = last = offset = 0
    plan = plan_group(mattes, chosen=_chosen(node), first=first, last=last, offset=offset)
    for layer, channels in plan.layers:
        try:
            nuke.Layer(layer, list(channels))
        except Exception:  # the layer exists already; setting a Copy's channel below adds a new channel to it
            pass
    group.begin()
    try:
        for name, node_class in ((INPUT_NAME, "Input"), (OUTPUT_NAME, "Output")):
            if group.node(name) is None:  # a Group Nuke made with its own Input1/Output1: use those
                found = [n for n in group.nodes() if n.Class() == node_class]
                if found:
                    found[0].setName(name, uncollide=False)
        source = _ensure(group, INPUT_NAME, "Input")
        output = _ensure(group, OUTPUT_NAME, "Output")
        upstream = source
        keep = {INPUT_NAME, OUTPUT_NAME, ALPHA_NAME}
        for obj in plan.objects:
            # two Reads of the same mattes: the render's fails on a missing matte (not tracked yet, or not
            # visible from a farm machine); the viewer's shows black there while the artist works
            reads = []
            for suffix, on_error in (("", "error"), ("_viewer", "black")):
                read = _ensure(group, "matte%d%s" % (obj.obj_id, suffix), "Read")
                # "show before": the viewer's Read shows the frames' previous results; a render never does
                shown = before_pattern(obj.pattern) if suffix and showing_before(node) else obj.pattern
                _knob(read, "file", nuke.File_Knob).setValue(shown)
                for name, value in (("first", plan.first), ("last", plan.last), ("origfirst", plan.first),
                                    ("origlast", plan.last)):
                    _knob(read, name, nuke.Int_Knob).setValue(value)
                for name in ("before", "after"):
                    _knob(read, name, nuke.Enumeration_Knob).setValue("black")  # outside the shot: no matte
                _knob(read, "on_error", nuke.Enumeration_Knob).setValue(on_error)
                _knob(read, "frame_mode", nuke.Enumeration_Knob).setValue("offset" if plan.offset else "expression")
                _knob(read, "frame", nuke.String_Knob).setValue(str(plan.offset) if plan.offset else "")
                _knob(read, "label", nuke.Multiline_Eval_String_Knob).setValue(obj.name)
                if reload:
                    _knob(read, "reload", nuke.Script_Knob).execute()
                reads.append(read)
            switch = _ensure(group, "matte%d_switch" % obj.obj_id, "Switch")
            switch.setInput(0, reads[0])
            switch.setInput(1, reads[1])
            _knob(switch, "which", nuke.Array_Knob).setExpression("$gui")  # 1 in the GUI, 0 in any render
            copy = _ensure(group, "channel%d" % obj.obj_id, "Copy")
            copy.setInput(0, upstream)
            copy.setInput(1, switch)
            _knob(copy, "from0", nuke.Channel_Knob).setValue("rgba.alpha")
            _knob(copy, "to0", nuke.Channel_Knob).setValue(plan.channels[obj.obj_id])
            upstream = copy
            keep.update({reads[0].name(), reads[1].name(), switch.name(), copy.name()})
        alpha = _ensure(group, ALPHA_NAME, "Expression")
        alpha.setInput(0, upstream)
        _knob(alpha, "channel3", nuke.ChannelMask_Knob).setValue("alpha")
        _knob(alpha, "expr3", nuke.String_Knob).setValue(plan.alpha)
        output.setInput(0, alpha)
        for child in group.nodes():
            if child.name() not in keep:
                nuke.delete(child)
    finally:
        group.end()


def showing_before(node: nuke.Node) -> bool:
    knob = node.knob(BEFORE_KNOB)
    return bool(knob is not None and knob.value())


def _group_child(group: nuke.Group, name: str) -> Optional[nuke.Node]:
    return group.node(name)  # no begin()/end(): this runs inside knobChanged callbacks too


def _ensure(group: nuke.Group, name: str, node_class: str) -> nuke.Node:
    """The Group's node called `name` (inside `group.begin()`), made when missing."""
    existing = group.node(name)
    if existing is not None and existing.Class() == node_class:
        return existing
    if existing is not None:
        nuke.delete(existing)
    constructor: nuke.NodeConstructor[nuke.Node] = getattr(nuke.nodes, node_class)
    created = constructor()
    created.setName(name, uncollide=False)
    return created


def _update_alpha(node: nuke.Node) -> None:
    """The alpha follows the alpha/object knobs (a knob value inside the Group: no rebuild)."""
    objects = stored_objects(node)
    names = _names(node, list(objects))
    plan = plan_group([ObjectMatte(o, names[o], p) for o, p in objects.items()], chosen=_chosen(node), first=0,
                      last=0)
    alpha = _group_child(cast(nuke.Group, node), ALPHA_NAME)
    if alpha is not None:
        _knob(alpha, "expr3", nuke.String_Knob).setValue(plan.alpha)


# --- buttons -----------------------------------------------------------------------------------


def on_button(node: nuke.Node, action: str, *, quiet: bool = False,
              edits: Optional[KnobPrompts] = None) -> Optional[JobRunner]:
    """A SamRoto button was pressed (main thread). Starts a worker job, or cancels one.
    quiet: failures go to the status line only (prompt edits and frame changes, which the artist
    did not ask a dialog for); edits: the prompts to send instead of the knobs' (a quick send)."""
    key = node.fullName()
    running = _RUNNERS.get(key)
    if action == "cancel":
        if running is not None and running.running:
            running.cancel()
            _set_status(node, "cancelling")
        return running
    if action == "start_worker":
        start_local_worker(node)
        return None
    if action not in WORKER_ACTIONS:
        tell("SamRoto: unknown action %r" % action)
        return None
    if running is not None and running.running:
        if not quiet:
            tell("SamRoto is still busy with %s on %s: wait for it or press Cancel"
                 % (running.job.action, node.name()))
        return None
    if action == "reset" and _knob(node, SESSION_KNOB, nuke.String_Knob).value() and not nuke.ask(
            "Reset session deletes the worker's prompts and tracking for %s (the matte files stay). Continue?"
            % node.name()):
        return None
    try:
        job = read_job(node, action, edits=edits)
    except Exception as exc:  # bad input: a message, never a stack trace in the artist's face
        message = connection.describe_error(exc)
        _set_status(node, message.splitlines()[0])
        if not quiet:
            tell(message)
        return None
    # a quick send after a prompt edit takes a moment: no progress bar flashing on every edit
    runner = JobRunner(job, run_on_main=run_on_main, observer=NukeObserver(quiet=quiet),
                       progress=None if quiet else NukeProgress, **runner_options)
    _RUNNERS[key] = runner
    if not quiet:
        _set_status(node, "%s: working..." % action)
    return runner.start()


def runner_for(node: nuke.Node) -> Optional[JobRunner]:
    return _RUNNERS.get(node.fullName())


def _sessions(node: nuke.Node) -> Dict[str, str]:
    """plate key -> session id: one session per plate (a stereo plate's views are two plates)."""
    sessions = dict(json.loads(_knob(node, SESSIONS_KNOB, nuke.String_Knob).value() or "{}"))
    key = _knob(node, PLATE_KEY_KNOB, nuke.String_Knob).value()
    session = _knob(node, SESSION_KNOB, nuke.String_Knob).value()
    if key and session:
        sessions.setdefault(key, session)
    return {str(k): str(v) for k, v in sessions.items()}


def read_job(node: nuke.Node, action: str, *, edits: Optional[KnobPrompts] = None) -> WorkerJob:
    """Everything the job needs, read from the node on the main thread; renders the upstream
    to EXR first when it is not a Read node (blocking, with Nuke's own progress bar)."""
    if not is_samroto_node(node):
        raise UnsupportedInput("%s is not a SamRoto node" % node.name())
    if node.Class() != "Group":
        raise UnsupportedInput("%s was made by an older SamRoto (a NoOp): create a new SamRoto node, which carries "
                               "the mattes itself" % node.name())
    settings = read_settings(node)
    frames = read_track_range(node)
    plate = read_plate(node, frames=frames, render=action != "load")  # showing prompts never renders
    sessions = _sessions(node)
    session_id = sessions.get(plate.key)
    if session_id is None and action == "load" and plate.rendered:  # the comp changed: the last render's prompts
        session_id = _knob(node, SESSION_KNOB, nuke.String_Knob).value() or None
    inherit = None
    stored_key = _knob(node, PLATE_KEY_KNOB, nuke.String_Knob).value()
    if session_id is None and plate.rendered and stored_key and stored_key != plate.key:
        inherit = sessions.get(stored_key)  # the upstream changed: the new render's session keeps the prompts
    session_resolution = int(_knob(node, SESSION_RESOLUTION_KNOB, nuke.Int_Knob).value()) if session_id else 0
    frame = int(nuke.frame())
    obj_id = int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value())
    knob_prompts: Optional[KnobPrompts] = None
    roto_shapes: Tuple[RotoShapeData, ...] = ()
    source = str(_knob(node, PROMPT_SOURCE_KNOB, nuke.Enumeration_Knob).value())
    grouping = str(_knob(node, ROTO_GROUPING_KNOB, nuke.Enumeration_Knob).value())
    if action == "prompts" and edits is not None:  # a prompt edit, on the frame it was made on
        knob_prompts, frame, obj_id = edits, edits.frame, edits.obj_id
    elif action == "prompts":  # the only job that sends prompts
        if source == "roto":
            roto_name = _knob(node, ROTO_INPUT_KNOB, nuke.String_Knob).value().strip()
            roto = nuke.toNode(roto_name) if roto_name else None
            if roto is None or roto.Class() not in ("Roto", "RotoPaint"):
                raise UnsupportedInput("prompts come from a Roto node, but %r is not the name of a Roto or RotoPaint "
                                       "node: type its name in the SamRoto node" % roto_name)
            roto_shapes = read_roto_shapes(roto, frame)
        else:
            knob_prompts = read_knob_prompts(node, settings.layout, frame)
    names = _names(node, sorted(set(stored_objects(node)) | {obj_id}))
    folder = matte_folder_template(node, plate)
    if folder is not None:
        settings = replace(settings, track=replace(settings.track, matte_dir=with_view(folder, plate.view)))
    locked: Optional[Tuple[int, int]] = None
    if action in ("lock", "unlock"):
        mode = node.knob(LOCK_FRAMES_KNOB)
        if mode is not None and str(mode.value()) == "frame range":
            locked = lock_range(plate.to_plate_frame(frames[0]), plate.to_plate_frame(frames[1]), plate.first,
                                plate.last)
        else:
            locked = lock_range(plate.plate_frame_at(frame), plate.plate_frame_at(frame), plate.first, plate.last)
    return WorkerJob(action=action, node_name=node.fullName(), plate=plate, nuke_frame=frame, session_id=session_id,
                     knob_prompts=knob_prompts, roto_shapes=roto_shapes, roto_grouping=grouping, settings=settings,
                     session_resolution=session_resolution, track_range=frames, inherit_session_id=inherit,
                     object_names=names, colour=read_colour(plate), obj_id=obj_id,
                     tracked=tuple(tracked_frames(node).get(obj_id, [])), lock_range=locked,
                     matte_patterns=stored_objects(node))


def matte_folder_template(node: nuke.Node, plate: PlateSource) -> Optional[str]:
    """The node's matte folder, `%V` standing for the view: the matte folder knob, else for a
    stereo plate `samroto_mattes/<node>` beside the Read's files (one folder per view, named
    alike), else None (the worker's default)."""
    knob = _knob(node, MATTE_DIR_KNOB, nuke.String_Knob).value().strip()
    if knob or not plate.view:
        return knob or None
    read = nuke.toNode(plate.origin)
    if read is None:
        return None
    raw = read_info(read).file
    return os.path.join(os.path.dirname(raw), "samroto_mattes", node.name())


def read_colour(plate: PlateSource) -> HostColour:
    """The plate's colourspace (its Read's knob) with the project's OCIO config and the active
    viewer's display and view: the worker shows the model the plate as this viewer shows it."""
    root = nuke.root()
    config_knob, custom_knob = root.knob("OCIO_config"), root.knob("customOCIOConfigPath")
    config = config_source(str(config_knob.value()) if config_knob is not None else "",
                           str(custom_knob.value()) if custom_knob is not None else "", os.environ.get("OCIO"))
    display = view = ""
    viewer = nuke.activeViewer()
    viewer_node = viewer.node() if viewer is not None else None
    process = viewer_node.knob("viewerProcess") if viewer_node is not None else None
    if process is not None:
        display, view = parse_viewer_process(str(process.value()))
    return HostColour(config=config, colorspace=plate.colorspace, display=display, view=view)


def read_settings(node: nuke.Node) -> PluginSettings:
    matte_dir = _knob(node, MATTE_DIR_KNOB, nuke.String_Knob).value().strip() or None
    if matte_dir is not None and not os.path.isabs(matte_dir):
        raise UnsupportedInput("the matte folder must be an absolute path, got %r" % matte_dir)
    tolerance = float(_knob(node, TOLERANCE_KNOB, nuke.Double_Knob).value())  # 0: the worker's default
    holes = str(_knob(node, HOLES_KNOB, nuke.Enumeration_Knob).value())
    roto = RotoSettings(tolerance=tolerance if tolerance > 0 else None, holes=holes)
    preview = _knob(node, PREVIEW_KNOB, nuke.Boolean_Knob).value()
    resolution = int(_knob(node, PREVIEW_RESOLUTION_KNOB, nuke.Int_Knob).value())
    matting_knob = node.knob(MATTING_KNOB)  # absent on nodes made before the matting choice existed
    matting = str(matting_knob.value()) if matting_knob is not None else "none"
    memory_knob = node.knob(MEMORY_KNOB)  # absent on nodes made before memory modes existed
    memory_mode = str(memory_knob.value()) if memory_knob is not None else "sam2"
    track = TrackSettings(matte_dir=matte_dir, preview_resolution=resolution if preview else None,
                          matting=None if matting == "none" else matting, memory_mode=memory_mode)
    address = worker_address(_knob(node, WORKER_KNOB, nuke.String_Knob).value(), load_preferences())
    return PluginSettings(connection=ConnectionSettings(address=address), track=track, roto=roto,
                          layout=_layout(node))


def _layout(node: nuke.Node) -> PromptLayout:
    positives = negatives = 0
    while node.knob(positive_point_knob(positives + 1)) is not None:
        positives += 1
    while node.knob(negative_point_knob(negatives + 1)) is not None:
        negatives += 1
    return PromptLayout(positive_points=max(1, positives), negative_points=negatives)


def read_track_range(node: nuke.Node) -> Tuple[int, int]:
    """The Nuke frames the frame-range knob asks for (not yet clipped to the plate)."""
    upstream = node.input(0)
    input_range = (upstream.firstFrame(), upstream.lastFrame()) if upstream is not None else (
        nuke.root().firstFrame(), nuke.root().lastFrame())
    return track_range(str(_knob(node, RANGE_KNOB, nuke.Enumeration_Knob).value()),
                       input_range=(int(input_range[0]), int(input_range[1])),
                       global_range=(int(nuke.root().firstFrame()), int(nuke.root().lastFrame())),
                       custom_range=(int(_knob(node, RANGE_FIRST_KNOB, nuke.Int_Knob).value()),
                                     int(_knob(node, RANGE_LAST_KNOB, nuke.Int_Knob).value())))


def read_knob_prompts(node: nuke.Node, layout: PromptLayout, frame: int) -> KnobPrompts:
    def clicks(count: int, enable: Callable[[int], str],
               point: Callable[[int], str]) -> Tuple[Tuple[float, float], ...]:
        out = []
        for i in range(1, count + 1):
            if _knob(node, enable(i), nuke.Boolean_Knob).value():
                xy = _knob(node, point(i), nuke.XY_Knob)
                out.append((float(xy.x()), float(xy.y())))
        return tuple(out)

    box = None
    if _knob(node, BOX_ENABLE_KNOB, nuke.Boolean_Knob).value():
        bbox = _knob(node, BOX_KNOB, nuke.BBox_Knob)
        box = (float(bbox.x()), float(bbox.y()), float(bbox.r()), float(bbox.t()))
    width, height = _format_size(node)
    return KnobPrompts(obj_id=int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value()), frame=frame,
                       positive=clicks(layout.positive_points, positive_enable_knob, positive_point_knob),
                       negative=clicks(layout.negative_points, negative_enable_knob, negative_point_knob), box=box,
                       space=(float(width), float(height)))


def read_plate(node: nuke.Node, *, frames: Optional[Tuple[int, int]] = None, render: bool = True) -> PlateSource:
    """The plate above the node: a Read node's files (the node's view of a stereo Read), or a
    render of the upstream to EXR in the shared render folder, keyed on the upstream's content:
    a changed comp renders again (unless `render` is False), an unchanged one reuses the files."""
    chain: List[UpstreamNode] = []
    upstream = node.input(0)
    while upstream is not None and len(chain) < 64:
        read = read_info(upstream) if upstream.Class() == "Read" else None
        chain.append(UpstreamNode(name=upstream.fullName(), node_class=upstream.Class(), read=read))
        if upstream.Class() != "Dot":
            break
        upstream = upstream.input(0)
    view = _knob(node, VIEW_KNOB, nuke.String_Knob).value().strip()
    plate, to_render = find_plate(chain, view=view, views=nuke.views())
    if plate is not None:
        return plate
    assert to_render is not None
    source = nuke.toNode(to_render.name)
    if source is None:
        raise UnsupportedInput("the node %s above SamRoto disappeared" % to_render.name)
    first, last = source.firstFrame(), source.lastFrame()
    if frames is not None:
        first, last = max(first, frames[0]), min(last, frames[1])
    folder = render_folder(_knob(node, RENDER_DIR_KNOB, nuke.String_Knob).value(), load_preferences())
    plan = plan_render(to_render.name, first, last, script_name=nuke.root().name(), folder=folder,
                       salt=upstream_hash(source))
    rendered = plan.plate()
    if render and not all(os.path.isfile(frame_path(plan.pattern, f)) for f in (plan.first, plan.last)):
        render_to_exr(source, plan.pattern, plan.first, plan.last)
    return rendered


def upstream_hash(node: nuke.Node, *, limit: int = 2000) -> str:
    """A digest of everything above and including `node` (classes, non-default knob values,
    wiring): any change to the comp changes it, the frame does not."""
    digest = hashlib.sha1()
    todo: List[Tuple[str, nuke.Node]] = [("", node)]
    seen: Set[str] = set()
    while todo and len(seen) < limit:
        path, current = todo.pop()
        name = current.fullName()
        digest.update(("%s<%s|%s|%s>" % (path, name, current.Class(),
                                         current.writeKnobs(nuke.WRITE_NON_DEFAULT_ONLY))).encode("utf-8"))
        if name in seen:
            continue
        seen.add(name)
        for i in range(current.inputs()):
            above = current.input(i)
            if above is not None:
                todo.append(("%s/%d" % (name, i), above))
    return digest.hexdigest()[:16]


def read_info(read: nuke.Node) -> ReadInfo:
    colorspace = read.knob("colorspace")
    file_name = nuke.filename(read) or str(_knob(read, "file", nuke.File_Knob).value())
    width, height = _format_size(read)
    return ReadInfo(name=read.fullName(), file=file_name, first=int(_knob(read, "first", nuke.Int_Knob).value()),
                    last=int(_knob(read, "last", nuke.Int_Knob).value()),
                    frame_mode=str(_knob(read, "frame_mode", nuke.Enumeration_Knob).value()),
                    frame=str(_knob(read, "frame", nuke.String_Knob).value()), width=width, height=height,
                    colorspace=str(colorspace.value()) if colorspace is not None else "")


def render_to_exr(source: nuke.Node, pattern: str, first: int, last: int) -> None:
    """Render `source` to an EXR sequence with a temporary Write node (main thread, blocking),
    at full resolution even in proxy mode (the prompts are in the plate's full-size pixels)."""
    os.makedirs(os.path.dirname(pattern), exist_ok=True)
    root = nuke.root()
    proxy = bool(root.proxy())
    write = nuke.nodes.Write()
    try:
        if proxy:
            root.setProxy(False)
        write.setInput(0, source)
        _knob(write, "file", nuke.File_Knob).setValue(pattern)
        _knob(write, "file_type", nuke.Enumeration_Knob).setValue("exr")
        _knob(write, "channels", nuke.Channel_Knob).setValue("rgb")
        nuke.execute(write, first, last)
    finally:
        nuke.delete(write)
        if proxy:
            root.setProxy(True)


# --- the prompt knobs as a view of the worker's prompts ----------------------------------------


def on_knob_changed() -> None:
    """knobChanged of Groups (main thread): prompt edits are sent after a pause; another object
    shows that object's prompts; alpha and names follow."""
    node = nuke.thisNode()
    if not is_samroto_node(node) or node.fullName() in _WRITING:
        return
    name = nuke.thisKnob().name()
    if name in (ADD_INCLUDE_KNOB, ADD_EXCLUDE_KNOB):
        # Nuke reports every step of a drag: the point is added where the handle comes to rest
        xy = _knob(node, name, nuke.XY_Knob)
        _DROPPED[node.fullName()] = Gesture("include" if name == ADD_INCLUDE_KNOB else "exclude",
                                            float(xy.x()), float(xy.y()))
        schedule_quick_result(node)
    elif name == OBJECT_KNOB:
        _update_alpha(node)
        request_view(node)
        nuke.executeInMainThread(_relabel, args=(node.fullName(),))
    elif name == BEFORE_KNOB:
        nuke.executeInMainThread(_before_toggled, args=(node.fullName(),))  # never rebuild inside knobChanged
    elif name == "showPanel" and _knob(node, SESSION_KNOB, nuke.String_Knob).value():
        request_view(node)  # the panel opens: show what the worker holds now
    elif name == ALPHA_KNOB:
        _update_alpha(node)
    elif name == OBJECT_NAMES_KNOB:
        nuke.executeInMainThread(_resync, args=(node.fullName(),))  # never rebuild inside knobChanged
    elif name == BOX_KNOB or name == BOX_ENABLE_KNOB or name.startswith(("samroto_pos", "samroto_neg")):
        schedule_quick_result(node)


def _relabel(node_name: str) -> None:
    """The label's keyframes line follows the chosen object."""
    node = nuke.toNode(node_name)
    if node is None:
        return
    marks = node_marks(node)
    cache = _PROMPTS.get(node.fullName())
    offset = cache.offset if cache is not None else 0
    chosen = int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value())
    label = _knob(node, "label", nuke.EvalString_Knob)
    label.setValue(with_keys_line(label.value(), marks.label_line(chosen, lambda f: f + offset)))


def _resync(node_name: str) -> None:
    node = nuke.toNode(node_name)
    if node is not None:
        sync_group(node)


def on_viewer_changed() -> None:
    """knobChanged of Viewers: on a new frame every SamRoto node with a session shows the
    worker's prompts of that frame; a Ctrl+click or Ctrl+Shift+drag on a viewed SamRoto node
    (Nuke's colour sampling, which sets the Viewer's colour_sample_bbox) edits its prompts."""
    name = nuke.thisKnob().name()
    if name == "colour_sample_bbox":
        viewer_sample(nuke.thisNode())
        return
    if name != "frame":
        return
    for node in nuke.allNodes("Group"):
        if is_samroto_node(node) and _knob(node, SESSION_KNOB, nuke.String_Knob).value():
            if showing_before(node):
                _WANTS_BEFORE.add(node.fullName())  # after the prompts are read back
            request_view(node)


def viewer_sample(viewer: nuke.Node) -> Optional[FramePrompts]:
    """The Viewer's colour sample as a prompt edit of the SamRoto node it shows (None when it
    shows another node: the colour picker keeps its own use there)."""
    try:
        index = int(nuke.activeViewer().activeInput() or 0)
    except Exception:  # no viewer window (terminal sessions)
        index = 0
    node = viewer.input(index)
    if not is_samroto_node(node):
        return None
    assert node is not None
    box = cast(nuke.BBox_Knob, viewer["colour_sample_bbox"])
    width, height = _format_size(node)
    pixels = sample_to_pixels((float(box.x()), float(box.y()), float(box.r()), float(box.t())), width=width,
                              height=height, pixel_aspect=float(node.pixelAspect()))
    default = str(_knob(node, CLICK_ADDS_KNOB, nuke.Enumeration_Knob).value())
    return viewer_gesture(node, sample_gesture(pixels, shift=shift_held(), default_kind=default))


def shift_held() -> Optional[bool]:
    """Whether Shift is down now, asked from Qt (None outside Nuke's GUI, or without Qt)."""
    for name in ("PySide6.QtGui", "PySide2.QtGui"):
        try:
            gui: Any = importlib.import_module(name)
        except ImportError:
            continue
        try:
            modifiers = gui.QGuiApplication.queryKeyboardModifiers()
            shift = importlib.import_module(name.replace("QtGui", "QtCore")).Qt.ShiftModifier
            return bool(modifiers & shift)
        except Exception:
            return None
    return None


def request_view(node: nuke.Node) -> None:
    """Read the worker's prompts into the knobs, soon: knobChanged callbacks call this, and the
    job it starts reads the plate, which Nuke does not allow inside a callback."""
    nuke.executeInMainThread(_load_view, args=(node.fullName(),))


def _load_view(node_name: str) -> Optional[JobRunner]:
    node = nuke.toNode(node_name)
    if node is None:
        return None
    running = runner_for(node)
    if running is not None and running.running:
        _WANTS_VIEW.add(node.fullName())
        return None
    cache = _PROMPTS.get(node.fullName())
    if cache is not None:
        show_prompts(node)  # at once from what the worker said last; the answer below confirms it
    return on_button(node, "load", quiet=True)


def show_prompts(node: nuke.Node) -> FramePrompts:
    """Write the worker's prompts for the chosen object on the current frame into the knobs."""
    cache = _PROMPTS.get(node.fullName())
    frame = int(nuke.frame())
    obj_id = int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value())
    layout = _layout(node)
    width, height = _format_size(node)
    if cache is None:
        view = FramePrompts(obj_id=obj_id, frame=frame)
    else:
        view = frame_prompts(cache.sidecar, obj_id, frame - cache.offset, frame, width=cache.width,
                             height=cache.height, space=(float(width), float(height)),
                             slots=(layout.positive_points, layout.negative_points))
    write_prompt_knobs(node, view)
    _set_status(node, view.describe())
    return view


def write_prompt_knobs(node: nuke.Node, view: FramePrompts) -> None:
    """The point and box knobs showing `view` (the artist's knobChanged is not triggered by it)."""
    layout = _layout(node)
    _WRITING.add(node.fullName())
    try:
        for points, count, enable_name, point_name in (
                (view.positive, layout.positive_points, positive_enable_knob, positive_point_knob),
                (view.negative, layout.negative_points, negative_enable_knob, negative_point_knob)):
            for i in range(1, count + 1):
                enable = _knob(node, enable_name(i), nuke.Boolean_Knob)
                point = _knob(node, point_name(i), nuke.XY_Knob)
                enable.setValue(i <= len(points))
                if i <= len(points):
                    point.setValue(list(points[i - 1]))
                # the viewer shows handles of the worker's points only; the next free slot stays visible to type in
                enable.setVisible(i <= len(points) + 1)
                point.setVisible(i <= len(points))
        _knob(node, BOX_ENABLE_KNOB, nuke.Boolean_Knob).setValue(view.box is not None)
        if view.box is not None:
            _knob(node, BOX_KNOB, nuke.BBox_Knob).setValue(list(view.box))
    finally:
        _WRITING.discard(node.fullName())


def knob_view(node: nuke.Node) -> FramePrompts:
    """What the knobs show now."""
    knobs = read_knob_prompts(node, _layout(node), int(nuke.frame()))
    return FramePrompts(obj_id=knobs.obj_id, frame=knobs.frame, positive=knobs.positive, negative=knobs.negative,
                        box=knobs.box)


def viewer_gesture(node: nuke.Node, gesture: Gesture) -> FramePrompts:
    """A click or drag in the viewer over the node (knob space): the knobs change and the
    frame's prompts are sent after the usual pause."""
    layout = _layout(node)
    view = apply_gesture(knob_view(node), gesture, slots=(layout.positive_points, layout.negative_points))
    write_prompt_knobs(node, view)
    schedule_quick_result(node)
    return view


def schedule_quick_result(node: nuke.Node) -> None:
    """Send the frame's prompts `quick_delay_s` after the last edit (edits in between restart the
    wait), and show the worker's result for the frame."""
    name = node.fullName()
    previous = _TIMERS.pop(name, None)
    if previous is not None:
        previous.cancel()
    if name not in _EDITS or _EDITS[name].frame == int(nuke.frame()):
        # what is sent is what the knobs hold now, on this frame, even if the frame changes before it goes
        _EDITS[name] = read_knob_prompts(node, _layout(node), int(nuke.frame()))
    timer = threading.Timer(quick_delay_s, nuke.executeInMainThread, args=(_send_quick, (name,)))
    timer.daemon = True
    _TIMERS[name] = timer
    _set_status(node, "prompt changed: sending in a moment...")
    timer.start()


def _send_quick(node_name: str) -> None:
    _TIMERS.pop(node_name, None)
    node = nuke.toNode(node_name)
    if node is None:
        return
    running = runner_for(node)
    if running is not None and running.running:
        schedule_quick_result(node)  # after the running job
        return
    edits = _EDITS.pop(node_name, None)
    dropped = _DROPPED.pop(node_name, None)
    if dropped is not None and edits is not None:  # an add-point handle came to rest: a point there
        layout = _layout(node)
        view = apply_gesture(FramePrompts(obj_id=edits.obj_id, frame=edits.frame, positive=edits.positive,
                                          negative=edits.negative, box=edits.box), dropped,
                             slots=(layout.positive_points, layout.negative_points))
        edits = view.as_knob_prompts(edits.space)
        if edits.frame == int(nuke.frame()) and edits.obj_id == int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value()):
            write_prompt_knobs(node, view)
    if dropped is not None:  # the handle goes home, ready for the next point
        width, height = _format_size(node)
        name, x = (ADD_INCLUDE_KNOB, 0.05) if dropped.kind == "include" else (ADD_EXCLUDE_KNOB, 0.12)
        _WRITING.add(node_name)
        try:
            _knob(node, name, nuke.XY_Knob).setValue(list(_handle_home(width, height, x)))
        finally:
            _WRITING.discard(node_name)
    on_button(node, "prompts", quiet=True, edits=edits)


def pending_quick_result(node: nuke.Node) -> bool:
    """Whether an edit waits to be sent."""
    return node.fullName() in _TIMERS


def reset_state() -> None:
    """Forget every node's pending edits, prompt caches and timers (a script closes)."""
    for timer in list(_TIMERS.values()):
        timer.cancel()
    for table in (_TIMERS, _PROMPTS, _DROPPED, _EDITS):
        table.clear()
    _WANTS_VIEW.clear()
    _WANTS_BEFORE.clear()
    _WRITING.clear()


# --- the worker: address, start -------------------------------------------------------------------


def ask_worker_address() -> None:
    """SamRoto > Worker address...: the preference every node without its own address uses."""
    preferences = load_preferences()
    text = nuke.getInput("SamRoto worker address (tcp://host:port; empty: the worker on this machine)",
                         preferences.worker_address)
    if text is None:
        return
    try:
        save_preferences(replace(preferences, worker_address=str(text).strip()))
    except ValueError as exc:
        tell(str(exc))


def ask_render_folder() -> None:
    """SamRoto > Render folder...: where plates of non-Read upstreams are rendered."""
    preferences = load_preferences()
    text = nuke.getInput("Folder for rendered plates, readable by the worker's machine", preferences.render_dir)
    if text is None:
        return
    try:
        save_preferences(replace(preferences, render_dir=str(text).strip()))
    except ValueError as exc:
        tell(str(exc))


def start_local_worker(node: Optional[nuke.Node] = None, *, wait_s: float = 180.0) -> Optional[threading.Thread]:
    """Start a worker on this machine (the preference's command) unless one answers already, and
    wait in the background until it answers a ping; the node's status (or a message) says how it
    went."""
    try:
        preferences: Preferences = load_preferences()
    except ValueError as exc:
        tell(str(exc))
        return None
    address = worker_address(_knob(node, WORKER_KNOB, nuke.String_Knob).value() if node is not None else "",
                             preferences)
    name = node.fullName() if node is not None else None
    if node is not None:
        _set_status(node, "starting the worker...")

    def report(text: str, failed: bool) -> None:
        target = nuke.toNode(name) if name else None
        if target is not None:
            _set_status(target, text)
        if failed or target is None:
            tell(text)

    def answers() -> bool:
        try:
            connection.connect(ConnectionSettings(address=address)).close()
        except Exception:
            return False
        return True

    def run() -> None:
        if answers():
            run_on_main(report, "a worker already answers: nothing started", False)
            return
        try:
            process = start_worker(list(preferences.worker_command))
        except ValueError as exc:
            run_on_main(report, str(exc), True)
            return
        _WORKERS.append(process)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                run_on_main(report, "the worker stopped at once (exit code %s): see its log in the temp folder "
                                    "(samroto_worker.log); command: %s"
                            % (process.returncode, " ".join(preferences.worker_command)), True)
                return
            if answers():
                run_on_main(report, "worker started", False)
                return
            time.sleep(0.5)
        run_on_main(report, "the worker did not answer within %d s: see samroto_worker.log in the temp folder"
                    % wait_s, True)

    thread = threading.Thread(target=run, name="samroto-start-worker", daemon=True)
    thread.start()
    return thread


def ask_worker_command() -> None:
    """SamRoto > Worker command...: what "Start worker" runs (e.g. `samroto worker --model
    sam2.1_hiera_large`)."""
    preferences = load_preferences()
    text = nuke.getInput("Command that starts a SamRoto worker on this machine",
                         " ".join(preferences.worker_command))
    if text is None:
        return
    try:
        save_preferences(replace(preferences, worker_command=parse_command(str(text))))
    except ValueError as exc:
        tell(str(exc))


def read_roto_shapes(roto: nuke.Node, frame: int) -> Tuple[RotoShapeData, ...]:
    """The Bezier shapes of a Roto/RotoPaint node (paint strokes are not prompts), each with its
    points on every frame it has a key (the current frame when it has none). Layer and shape
    transforms are not applied."""
    curves = cast(rp.CurveKnob, roto["curves"])
    view = nuke.views()[0]
    shapes: List[RotoShapeData] = []

    def visit(element: rp.Element, top_layer: str) -> None:
        if isinstance(element, rp.Layer):
            for child in element:
                visit(child, top_layer or element.name)
        elif isinstance(element, rp.Shape):
            shapes.append(_shape_data(element, top_layer, frame, view))

    for element in curves.rootLayer:
        visit(element, "")
    return tuple(shapes)


def _shape_data(shape: rp.Shape, layer: str, frame: int, view: str) -> RotoShapeData:
    times: Set[int] = set()
    for point in shape:
        times.update(int(round(t)) for t in point.center.getControlPointKeyTimes(view))
    keys: Dict[int, Tuple[BezierVertex, ...]] = {}
    for t in sorted(times) or [frame]:
        vertices = []
        for point in shape:
            c = point.center.getPosition(t, view)
            left = point.leftTangent.getPosition(t, view)
            right = point.rightTangent.getPosition(t, view)
            vertices.append(BezierVertex((float(c.x), float(c.y)), (float(left.x), float(left.y)),
                                         (float(right.x), float(right.y))))
        keys[t] = tuple(vertices)
    attrs = shape.getAttributes()
    inverted = bool(attrs.getValue(frame, rp.AnimAttributes.kInvertedAttribute, view))
    color = tuple(float(attrs.getValue(frame, name, view)) for name in (
        rp.AnimAttributes.kRedOverlayAttribute, rp.AnimAttributes.kGreenOverlayAttribute,
        rp.AnimAttributes.kBlueOverlayAttribute))
    return RotoShapeData(name=shape.name, layer=layer, keys=keys, color=(color[0], color[1], color[2]),
                         inverted=inverted)


# --- results back on the main thread -----------------------------------------------------------


def _set_status(node: nuke.Node, text: str) -> None:
    knob = node.knob(STATUS_KNOB)
    if knob is not None:
        cast(nuke.Text_Knob, knob).setValue(text)


def show_session_mode(node: nuke.Node, preview_resolution: int) -> None:
    """Say on the node whether its session is a PREVIEW (tracked at `preview_resolution` px) or
    final (0); "Compute final mattes" is enabled for a preview only."""
    _knob(node, SESSION_RESOLUTION_KNOB, nuke.Int_Knob).setValue(preview_resolution)
    _knob(node, MODE_KNOB, nuke.Text_Knob).setValue(mode_text(preview_resolution))
    _knob(node, FINAL_KNOB, nuke.PyScript_Knob).setEnabled(preview_resolution > 0)
    _mark_preview(node, preview_resolution)


def _mark_preview(node: nuke.Node, preview_resolution: int) -> None:
    """A "PREVIEW <size> px" label line and an orange tile, or (0) neither: the artist's own
    label lines and tile colour stay."""
    mark = preview_label(preview_resolution)
    label = _knob(node, "label", nuke.EvalString_Knob)
    lines = [line for line in label.value().splitlines() if not line.startswith("PREVIEW ")]
    label.setValue("\n".join(([mark] if mark else []) + lines))
    tile = _knob(node, "tile_color", nuke.Unsigned_Knob)
    if mark:
        tile.setValue(PREVIEW_TILE_COLOR)
    elif tile.value() == PREVIEW_TILE_COLOR:
        tile.setValue(0)  # 0: the node class's own colour


class NukeObserver(JobObserver):
    """Applies a job's results to the node graph (every method runs on the main thread).
    quiet: failures go to the status line only."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def session_opened(self, job: WorkerJob, session_id: str) -> None:
        node = nuke.toNode(job.node_name)
        if node is not None:
            sessions = _sessions(node)
            sessions[job.plate.key] = session_id
            _knob(node, SESSIONS_KNOB, nuke.String_Knob).setValue(json.dumps(sessions, sort_keys=True))
            _knob(node, SESSION_KNOB, nuke.String_Knob).setValue(session_id)
            _knob(node, PLATE_KEY_KNOB, nuke.String_Knob).setValue(job.plate.key)

    def session_mode(self, job: WorkerJob, preview_resolution: int) -> None:
        node = nuke.toNode(job.node_name)
        if node is not None:
            show_session_mode(node, preview_resolution)

    def status(self, job: WorkerJob, text: str) -> None:
        node = nuke.toNode(job.node_name)
        if node is not None:
            _set_status(node, text)

    def job_finished(self, job: WorkerJob, result: JobResult) -> None:
        node = nuke.toNode(job.node_name)
        if node is None:  # deleted while the worker was busy: nothing to update
            return
        _set_status(node, result.message.splitlines()[0] if result.message else result.state)
        if result.state == "failed":
            if not self.quiet:
                tell(result.message)
            self._follow_up(node)
            return
        try:
            if result.tracked_by_object:
                record_tracked(node, result.tracked_by_object)
            if result.history is not None or result.locks is not None or \
                    (result.sidecar is not None and job.action not in ("load", "prompts")):
                show_marks(node, job.plate, result)
            if result.tracked_frames:
                show_review(node, job.plate, result.review)
            if result.sidecar is not None:
                _PROMPTS[node.fullName()] = PromptCache(result.sidecar, result.width, result.height, job.plate.offset)
                view = show_prompts(node)
                if job.action == "load":
                    _set_status(node, view.describe())
            if result.matte_patterns:
                folder = matte_folder_template(node, job.plate) or ""
                patterns = {o: stereo_pattern(p, job.plate.view, folder) for o, p in result.matte_patterns.items()}
                sync_group(node, patterns, job.plate, reload=True)
            if result.roto_plan is not None:
                build_roto(result.roto_plan, node)
            if job.action in ("undo", "redo", "before"):
                sync_group(node, reload=True)  # the restored mattes (or the previous results) in the viewer
                if job.action != "before" and showing_before(node):
                    _WANTS_BEFORE.add(node.fullName())
            if job.action not in ("load", "prompts") and result.sidecar is not None:
                _set_status(node, result.message.splitlines()[0] if result.message else result.state)  # not the knobs'
        except Exception:  # a bug in the glue must not take the session down with it
            tell("SamRoto could not update the node graph:\n" + traceback.format_exc(limit=3))
        self._follow_up(node)

    @staticmethod
    def _follow_up(node: nuke.Node) -> None:
        if node.fullName() in _WANTS_VIEW:
            _WANTS_VIEW.discard(node.fullName())
            request_view(node)
        elif node.fullName() in _WANTS_BEFORE:
            _WANTS_BEFORE.discard(node.fullName())
            request_before(node)


def tracked_frames(node: nuke.Node) -> Dict[int, List[int]]:
    """obj_id -> plate frames the object has tracked results on (as the node recorded them)."""
    knob = node.knob(TRACKED_KNOB)
    try:
        data = json.loads(str(knob.value()) or "{}") if knob is not None else {}
        return {int(o): ranges_to_frames(r) for o, r in data.items()}
    except (ValueError, TypeError):
        return {}


def record_tracked(node: nuke.Node, frames: Dict[int, List[int]]) -> None:
    knob = node.knob(TRACKED_KNOB)
    if knob is None:
        return
    known = tracked_frames(node)
    for obj_id, new in frames.items():
        known[int(obj_id)] = sorted(set(known.get(int(obj_id), [])) | set(int(f) for f in new))
    cast(nuke.String_Knob, knob).setValue(json.dumps({str(o): frames_to_ranges(f) for o, f in sorted(known.items())}))


def node_marks(node: nuke.Node) -> Marks:
    """The keyframes and locked ranges the node last heard of."""
    knob = node.knob(MARKS_DATA_KNOB)
    try:
        return Marks.from_history(json.loads(str(knob.value()) or "{}")) if knob is not None else Marks()
    except (ValueError, TypeError, AttributeError):
        return Marks()


def show_marks(node: nuke.Node, plate: PlateSource, result: Optional[JobResult] = None) -> Marks:
    """Every object's keyframes and locked ranges on the node (Nuke frames), the chosen object's in
    its label, and the undo / redo steps: from the worker's history, else from its prompts and the
    locks last heard."""
    marks = node_marks(node)
    if result is not None and result.action == "reset":  # a new, empty session: nothing tracked, nothing locked
        marks = Marks()
        tracked = node.knob(TRACKED_KNOB)
        if tracked is not None:
            cast(nuke.String_Knob, tracked).setValue("")
    elif result is not None and result.history is not None:
        marks = Marks.from_history(result.history)
        history = _knob(node, HISTORY_KNOB, nuke.Text_Knob) if node.knob(HISTORY_KNOB) is not None else None
        if history is not None:
            undo = [str(s) for s in result.history.get("undo") or []]
            redo = [str(s) for s in result.history.get("redo") or []]
            history.setValue("undo (%d): %s | redo (%d): %s" % (len(undo), undo[-1] if undo else "nothing", len(redo),
                                                                redo[0] if redo else "nothing"))
    elif result is not None:
        cache = _PROMPTS.get(node.fullName())
        sidecar = result.sidecar if result.sidecar is not None else cache.sidecar if cache is not None else None
        marks = Marks.from_sidecar(sidecar, result.locks if result.locks is not None else marks.locks)
    data = node.knob(MARKS_DATA_KNOB)
    if data is not None:
        cast(nuke.String_Knob, data).setValue(json.dumps(marks.to_json(), sort_keys=True))
    names = _names(node, sorted(set(marks.keyframes) | set(marks.locks)))
    if node.knob(MARKS_KNOB) is not None:
        _knob(node, MARKS_KNOB, nuke.Text_Knob).setValue(marks.text(names, plate.to_nuke_frame))
    chosen = int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value())
    label = _knob(node, "label", nuke.EvalString_Knob)
    label.setValue(with_keys_line(label.value(), marks.label_line(chosen, plate.to_nuke_frame)))
    return marks


def request_before(node: nuke.Node) -> None:
    """Fetch the current frame's previous result for the viewer, soon (never inside a callback)."""
    nuke.executeInMainThread(_load_before, args=(node.fullName(),))


def _load_before(node_name: str) -> Optional[JobRunner]:
    node = nuke.toNode(node_name)
    if node is None or not showing_before(node) or not _knob(node, SESSION_KNOB, nuke.String_Knob).value():
        return None
    running = runner_for(node)
    if running is not None and running.running:
        _WANTS_BEFORE.add(node.fullName())
        return None
    return on_button(node, "before", quiet=True)


def _before_toggled(node_name: str) -> None:
    node = nuke.toNode(node_name)
    if node is None:
        return
    if showing_before(node):
        _load_before(node_name)
    else:
        sync_group(node, reload=True)


def show_review(node: nuke.Node, plate: PlateSource, review: List[ReviewItem]) -> None:
    """The node's "to review" list (Nuke frames; its knobs are added on first use) and, in its
    label, how many frames to review (the artist's own label lines stay)."""
    if node.knob(REVIEW_KNOB) is None:
        menu = nuke.Enumeration_Knob(REVIEW_KNOB, "to review", [NO_REVIEW])
        menu.setTooltip("frames whose mattes need a look: the object is lost or reappears, its score drops, its area "
                        "jumps or its edge is unstable (from the worker, after each track)")
        menu.setFlag(nuke.STARTLINE)
        node.addKnob(menu)
        go = nuke.PyScript_Knob(REVIEW_GO_KNOB, "Go to frame",
                                "import samroto_nuke.host\nsamroto_nuke.host.jump_to_review(nuke.thisNode())")
        go.clearFlag(nuke.STARTLINE)
        node.addKnob(go)
    entries = review_entries(review, plate.to_nuke_frame)
    menu = _knob(node, REVIEW_KNOB, nuke.Enumeration_Knob)
    menu.setValues(entries or [NO_REVIEW])
    menu.setValue(0)
    label = _knob(node, "label", nuke.EvalString_Knob)
    label.setValue(with_label_line(label.value(), flagged_count(review)))


def jump_to_review(node: nuke.Node) -> Optional[int]:
    """"Go to frame": the viewer to the chosen frame to review (None when there is none)."""
    knob = node.knob(REVIEW_KNOB)
    frame = frame_of(str(knob.value())) if knob is not None else None
    if frame is not None:
        nuke.frame(frame)
    return frame


def matte_nodes(node: nuke.Node, plate: PlateSource, patterns: Dict[int, str], *,
                preview_resolution: int = 0) -> Dict[int, Tuple[nuke.Node, nuke.Node]]:
    """Per object: a Read node on its matte sequence (EXR alpha, timed like the plate; black
    where a frame was not tracked; labelled PREVIEW for a preview's mattes) and a Copy node
    putting that matte into the plate's alpha. A re-run repoints the same nodes."""
    out: Dict[int, Tuple[nuke.Node, nuke.Node]] = {}
    base = node.name()
    for i, (obj_id, pattern) in enumerate(sorted(patterns.items())):
        read = _named_node("%s_obj%d_matte" % (base, obj_id), "Read", node)
        _knob(read, "file", nuke.File_Knob).setValue(pattern)
        for name, value in (("first", plate.first), ("last", plate.last), ("origfirst", plate.first),
                            ("origlast", plate.last)):
            _knob(read, name, nuke.Int_Knob).setValue(value)
        for name in ("before", "after", "on_error"):
            _knob(read, name, nuke.Enumeration_Knob).setValue("black")
        _knob(read, "frame_mode", nuke.Enumeration_Knob).setValue("offset" if plate.offset else "expression")
        _knob(read, "frame", nuke.String_Knob).setValue(str(plate.offset) if plate.offset else "")
        read.setXYpos(node.xpos() + 140 * (i + 1), node.ypos() - 40)
        _mark_preview(read, preview_resolution)
        copy = _named_node("%s_obj%d_alpha" % (base, obj_id), "Copy", node)
        copy.setInput(0, node)  # B: the plate, passed through the SamRoto NoOp
        copy.setInput(1, read)  # A: the matte
        _knob(copy, "from0", nuke.Channel_Knob).setValue("rgba.alpha")
        _knob(copy, "to0", nuke.Channel_Knob).setValue("rgba.alpha")
        copy.setXYpos(node.xpos() + 140 * (i + 1), node.ypos() + 60)
        out[obj_id] = (read, copy)
    return out


def _named_node(name: str, node_class: str, near: nuke.Node) -> nuke.Node:
    """The node called `name` (reused on a re-run), else a new one of `node_class`."""
    existing = nuke.toNode(name)
    if existing is not None and existing.Class() == node_class:
        return existing
    constructor: nuke.NodeConstructor[nuke.Node] = getattr(nuke.nodes, node_class)
    created = constructor()
    created.setName(name, uncollide=True)
    created.setXYpos(near.xpos(), near.ypos())
    return created


def build_roto(plan: RotoPlan, near: Optional[nuke.Node] = None) -> nuke.Node:
    """A Roto node below `near` (the SamRoto node, so it shows over the plate) with the plan's
    layers (named after the objects) and Bezier shapes (replacing layers of the same names from
    an earlier run), keyed on every tracked frame."""
    roto = nuke.toNode(plan.node_name)
    if roto is None or roto.Class() != "Roto":
        roto = nuke.nodes.Roto()
        roto.setName(plan.node_name.rsplit(".", 1)[-1], uncollide=True)
        if near is not None:
            roto.setXYpos(near.xpos(), near.ypos() + 80)
    if near is not None and roto.input(0) is None:
        roto.setInput(0, near)
    curves = cast(rp.CurveKnob, roto["curves"])
    root = curves.rootLayer
    names = {layer.name for layer in plan.layers}
    for index in reversed(range(len(root))):
        if root[index].name in names:
            root.remove(index)
    view = nuke.views()[0]
    for layer_plan in plan.layers:
        layer = rp.Layer(curves)
        layer.name = layer_plan.name
        for shape_plan in layer_plan.shapes:
            shape = rp.Shape(curves)
            shape.name = shape_plan.name
            first = shape_plan.keys[0]
            for i in range(shape_plan.point_count):
                shape.append(rp.ShapeControlPoint(first.centers[i][0], first.centers[i][1]))
            for key in shape_plan.keys:
                for i, point in enumerate(shape):
                    point.center.addPositionKey(key.frame, rp.CVec2(key.centers[i][0], key.centers[i][1]), view)
                    point.leftTangent.addPositionKey(key.frame, rp.CVec2(key.left[i][0], key.left[i][1]), view)
                    point.rightTangent.addPositionKey(key.frame, rp.CVec2(key.right[i][0], key.right[i][1]), view)
            shape.setVisible(shape_plan.first, True)
            for frame in shape_plan.hide_frames:
                shape.setVisible(frame, False)
            layer.append(shape)
        root.append(layer)
    curves.changed()
    return roto


class NukeProgress(Progress):
    """A `nuke.ProgressTask`, created and driven by the job's thread."""

    def __init__(self, title: str) -> None:
        self._task: Optional[nuke.ProgressTask] = nuke.ProgressTask(title)

    def set_message(self, text: str) -> None:
        if self._task is not None:
            self._task.setMessage(text)

    def set_progress(self, percent: int) -> None:
        if self._task is not None:
            self._task.setProgress(max(0, min(100, int(percent))))

    def is_cancelled(self) -> bool:
        return bool(self._task is not None and self._task.isCancelled())

    def close(self) -> None:
        self._task = None  # Nuke removes the progress bar when the task is released
