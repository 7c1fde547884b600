"""Nuke glue: the only module of the plug-in that imports `nuke`.

It reads the SamRoto node, its upstream plate and the prompt knobs or Roto shapes into the plain
dataclasses of the other modules, starts a `jobs.JobRunner` thread for each button press,
and turns the results into nodes: a Read node per object on its matte sequence with a Copy node
putting that matte into the plate's alpha, and on request a Roto node with the tracked shapes.
A PREVIEW session (tracked at a lower internal resolution) is labelled as one on the node and
its matte Read nodes until "Compute final mattes" replaces it with a full-resolution session.

Threading (Foundry's rules): knobs and nodes are read and written on the main thread only. The
runner thread hands everything UI-related back through `nuke.executeInMainThread`; the one Nuke
object it holds is its `nuke.ProgressTask`, which Nuke designs to be created and updated from a
worker thread (Python dev guide, Threading and Roto examples).

Types: the `types-nuke` stubs (Nuke 13.2) type `node[name]` as a plain `Knob` and lack some
signatures, so knobs are cast to their classes here (`_knob(node, name, nuke.XY_Knob)`).
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type, TypeVar, cast

import nuke
import nuke.rotopaint as rp

from . import connection
from .jobs import JobObserver, JobResult, JobRunner, Progress, WorkerJob, mode_text, preview_label
from .plate import (HostColour, PlateSource, ReadInfo, UnsupportedInput, UpstreamNode, config_source, find_plate,
                    frame_path, parse_viewer_process, plan_render)
from .prompts import BezierVertex, KnobPrompts, RotoShapeData
from .roto_plan import RotoPlan
from .settings import (ACTIONS, BOX_ENABLE_KNOB, BOX_KNOB, DEFAULT_PREVIEW_RESOLUTION, FINAL_KNOB, HOLE_MODES,
                       HOLES_KNOB, MARKER_KNOB, MATTE_DIR_KNOB, MODE_KNOB, NODE_CLASS_LABEL, OBJECT_KNOB,
                       PLATE_KEY_KNOB, PREVIEW_KNOB, PREVIEW_RESOLUTION_KNOB, PREVIEW_TILE_COLOR, PROMPT_SOURCE_KNOB,
                       PROMPT_SOURCES, ROTO_GROUPING_KNOB, ROTO_GROUPINGS, ROTO_INPUT_KNOB, SESSION_KNOB,
                       SESSION_RESOLUTION_KNOB, STATUS_KNOB, TOLERANCE_KNOB, WORKER_ACTIONS, PluginSettings,
                       PromptLayout, RotoSettings, TrackSettings, negative_enable_knob, negative_point_knob,
                       positive_enable_knob, positive_point_knob)

KnobT = TypeVar("KnobT", bound=nuke.Knob)

# running jobs, by the SamRoto node's full name (one at a time per node)
_RUNNERS: Dict[str, JobRunner] = {}
# what the runners are built with; tests swap in their own (e.g. a shape fetcher)
runner_options: Dict[str, Any] = {}


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


# --- menus and node creation -------------------------------------------------------------------


def install_menus() -> None:
    """Add SamRoto to the Nodes toolbar (called from menu.py)."""
    toolbar = nuke.toolbar("Nodes")
    if toolbar is None:
        return
    menu = toolbar.addMenu("SamRoto")
    menu.addCommand("SamRoto (SAM 2 roto)", "import samroto_nuke.host\nsamroto_nuke.host.create_node()")


def create_node(layout: Optional[PromptLayout] = None) -> nuke.Node:
    """A SamRoto node below the selected node (a NoOp that passes the plate through, with the
    prompt knobs and buttons)."""
    node = nuke.createNode("NoOp")
    node.setName(NODE_CLASS_LABEL, uncollide=True)
    add_knobs(node, layout or PromptLayout())
    return node


def add_knobs(node: nuke.Node, layout: PromptLayout) -> None:
    width, height = _format_size(node)
    node.addKnob(nuke.Tab_Knob("samroto_tab", "SamRoto"))
    for name, label in ((MARKER_KNOB, "samroto"), (SESSION_KNOB, "session"), (PLATE_KEY_KNOB, "plate")):
        hidden = nuke.String_Knob(name, label)
        hidden.setFlag(nuke.INVISIBLE)
        node.addKnob(hidden)
    _knob(node, MARKER_KNOB, nuke.String_Knob).setValue("1")
    session_resolution = nuke.Int_Knob(SESSION_RESOLUTION_KNOB, "session preview size")
    session_resolution.setFlag(nuke.INVISIBLE)
    node.addKnob(session_resolution)
    node.addKnob(nuke.Text_Knob(STATUS_KNOB, "status", "no session yet"))
    node.addKnob(nuke.Text_Knob(MODE_KNOB, "mattes", ""))
    source = nuke.Enumeration_Knob(PROMPT_SOURCE_KNOB, "prompts from", list(PROMPT_SOURCES))
    source.setTooltip("knobs: the clicks and box below; roto: the shapes of the Roto node named below "
                      "(one object per layer or per colour, every keyed frame is a prompt)")
    node.addKnob(source)
    obj = nuke.Int_Knob(OBJECT_KNOB, "object")
    obj.setValue(1)
    obj.setTooltip("the object the clicks and box below belong to (1, 2, ...)")
    node.addKnob(obj)
    node.addKnob(nuke.String_Knob(ROTO_INPUT_KNOB, "Roto node"))
    node.addKnob(nuke.Enumeration_Knob(ROTO_GROUPING_KNOB, "one object per", list(ROTO_GROUPINGS)))
    groups = ((layout.positive_points, positive_enable_knob, positive_point_knob, "+"),
              (layout.negative_points, negative_enable_knob, negative_point_knob, "-"))
    for count, enable_name, point_name, sign in groups:
        for i in range(1, count + 1):
            enable = nuke.Boolean_Knob(enable_name(i), "%s%d" % (sign, i))
            enable.setValue(sign == "+" and i == 1)
            enable.setFlag(nuke.STARTLINE)
            node.addKnob(enable)
            point = nuke.XY_Knob(point_name(i), "")
            point.clearFlag(nuke.STARTLINE)
            point.setValue([width * (0.5 + (0.05 * i if sign == "-" else 0.0)), height * (0.5 + 0.05 * (i - 1))])
            node.addKnob(point)
    box_on = nuke.Boolean_Knob(BOX_ENABLE_KNOB, "box")
    box_on.setFlag(nuke.STARTLINE)
    node.addKnob(box_on)
    box = nuke.BBox_Knob(BOX_KNOB, "")
    box.setValue([width * 0.25, height * 0.25, width * 0.75, height * 0.75])
    node.addKnob(box)
    preview = nuke.Boolean_Knob(PREVIEW_KNOB, "preview")
    preview.setTooltip("new sessions track at the preview resolution for fast feedback; their mattes are a PREVIEW "
                       "(named *_preview_*) until you press Compute final mattes. Takes effect when a session opens "
                       "(the first track, Reset session, another plate)")
    preview.setFlag(nuke.STARTLINE)
    node.addKnob(preview)
    resolution = nuke.Int_Knob(PREVIEW_RESOLUTION_KNOB, "preview resolution")
    resolution.setValue(DEFAULT_PREVIEW_RESOLUTION)
    resolution.setTooltip("the preview's internal size in pixels: a multiple of 32 below the model's own "
                          "(1024 for the official checkpoints)")
    resolution.clearFlag(nuke.STARTLINE)
    node.addKnob(resolution)
    for i, (name, label, action) in enumerate(ACTIONS):
        button = nuke.PyScript_Knob(name, label, "import samroto_nuke.host\n"
                                                 "samroto_nuke.host.on_button(nuke.thisNode(), %r)" % action)
        if i in (0, 1, 5) or name == FINAL_KNOB:
            button.setFlag(nuke.STARTLINE)
        node.addKnob(button)
    _knob(node, FINAL_KNOB, nuke.PyScript_Knob).setEnabled(False)  # until the node has a preview session
    tolerance = nuke.Double_Knob(TOLERANCE_KNOB, "shape tolerance")
    tolerance.setValue(0.0)
    tolerance.setTooltip("largest distance in pixels between a Roto shape and the matte edge "
                         "(0: automatic, one model-input pixel)")
    tolerance.setFlag(nuke.STARTLINE)
    node.addKnob(tolerance)
    node.addKnob(nuke.Enumeration_Knob(HOLES_KNOB, "holes", list(HOLE_MODES)))
    node.addKnob(nuke.String_Knob(MATTE_DIR_KNOB, "matte folder"))


def _format_size(node: nuke.Node) -> Tuple[int, int]:
    fmt = node.format()
    return int(fmt.width()), int(fmt.height())


def is_samroto_node(node: Optional[nuke.Node]) -> bool:
    return node is not None and node.knob(MARKER_KNOB) is not None


# --- buttons -----------------------------------------------------------------------------------


def on_button(node: nuke.Node, action: str) -> Optional[JobRunner]:
    """A SamRoto button was pressed (main thread). Starts a worker job, or cancels one."""
    key = node.fullName()
    running = _RUNNERS.get(key)
    if action == "cancel":
        if running is not None and running.running:
            running.cancel()
            _set_status(node, "cancelling")
        return running
    if action not in WORKER_ACTIONS:
        tell("SamRoto: unknown action %r" % action)
        return None
    if running is not None and running.running:
        tell("SamRoto is still busy with %s on %s: wait for it or press Cancel" % (running.job.action, node.name()))
        return None
    try:
        job = read_job(node, action)
    except Exception as exc:  # bad input: a message, never a stack trace in the artist's face
        message = connection.describe_error(exc)
        _set_status(node, message.splitlines()[0])
        tell(message)
        return None
    runner = JobRunner(job, run_on_main=run_on_main, observer=NukeObserver(), progress=NukeProgress,
                       **runner_options)
    _RUNNERS[key] = runner
    _set_status(node, "%s: working..." % action)
    return runner.start()


def runner_for(node: nuke.Node) -> Optional[JobRunner]:
    return _RUNNERS.get(node.fullName())


def read_job(node: nuke.Node, action: str) -> WorkerJob:
    """Everything the job needs, read from the node on the main thread; renders the upstream
    to EXR first when it is not a Read node (blocking, with Nuke's own progress bar)."""
    if not is_samroto_node(node):
        raise UnsupportedInput("%s is not a SamRoto node" % node.name())
    settings = read_settings(node)
    session_id = _knob(node, SESSION_KNOB, nuke.String_Knob).value() or None
    stored_key = _knob(node, PLATE_KEY_KNOB, nuke.String_Knob).value()
    plate = read_plate(node, reuse_key=None if action == "reset" else stored_key)
    if plate.key != stored_key and action != "reset":
        session_id = None  # another plate: a new session (reset deletes the old one first)
    session_resolution = int(_knob(node, SESSION_RESOLUTION_KNOB, nuke.Int_Knob).value()) if session_id else 0
    frame = int(nuke.frame())
    knob_prompts: Optional[KnobPrompts] = None
    roto_shapes: Tuple[RotoShapeData, ...] = ()
    source = str(_knob(node, PROMPT_SOURCE_KNOB, nuke.Enumeration_Knob).value())
    grouping = str(_knob(node, ROTO_GROUPING_KNOB, nuke.Enumeration_Knob).value())
    if action not in ("roto", "reset", "final"):
        if source == "roto":
            roto_name = _knob(node, ROTO_INPUT_KNOB, nuke.String_Knob).value().strip()
            roto = nuke.toNode(roto_name) if roto_name else None
            if roto is None or roto.Class() not in ("Roto", "RotoPaint"):
                raise UnsupportedInput("prompts come from a Roto node, but %r is not the name of a Roto or RotoPaint "
                                       "node: type its name in the SamRoto node" % roto_name)
            roto_shapes = read_roto_shapes(roto, frame)
        else:
            knob_prompts = read_knob_prompts(node, settings.layout, frame)
    return WorkerJob(action=action, node_name=node.fullName(), plate=plate, nuke_frame=frame, session_id=session_id,
                     knob_prompts=knob_prompts, roto_shapes=roto_shapes, roto_grouping=grouping, settings=settings,
                     session_resolution=session_resolution, colour=read_colour(plate))


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
    positives = negatives = 0
    while node.knob(positive_point_knob(positives + 1)) is not None:
        positives += 1
    while node.knob(negative_point_knob(negatives + 1)) is not None:
        negatives += 1
    roto = RotoSettings(tolerance=tolerance if tolerance > 0 else None, holes=holes)
    preview = _knob(node, PREVIEW_KNOB, nuke.Boolean_Knob).value()
    resolution = int(_knob(node, PREVIEW_RESOLUTION_KNOB, nuke.Int_Knob).value())
    track = TrackSettings(matte_dir=matte_dir, preview_resolution=resolution if preview else None)
    return PluginSettings(track=track, roto=roto,
                          layout=PromptLayout(positive_points=max(1, positives), negative_points=negatives))


def read_knob_prompts(node: nuke.Node, layout: PromptLayout, frame: int) -> KnobPrompts:
    def clicks(count: int, enable: Callable[[int], str], point: Callable[[int], str]) -> Tuple[Tuple[float, float], ...]:
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
    return KnobPrompts(obj_id=int(_knob(node, OBJECT_KNOB, nuke.Int_Knob).value()), frame=frame,
                       positive=clicks(layout.positive_points, positive_enable_knob, positive_point_knob),
                       negative=clicks(layout.negative_points, negative_enable_knob, negative_point_knob), box=box)


def read_plate(node: nuke.Node, *, reuse_key: Optional[str]) -> PlateSource:
    """The plate above the node: a Read node's files, or a render of the upstream to EXR (kept
    while the node's session uses it: `reuse_key` is the plate key stored on the node)."""
    chain: List[UpstreamNode] = []
    upstream = node.input(0)
    while upstream is not None and len(chain) < 64:
        read = read_info(upstream) if upstream.Class() == "Read" else None
        chain.append(UpstreamNode(name=upstream.fullName(), node_class=upstream.Class(), read=read))
        if upstream.Class() != "Dot":
            break
        upstream = upstream.input(0)
    plate, to_render = find_plate(chain)
    if plate is not None:
        return plate
    assert to_render is not None
    source = nuke.toNode(to_render.name)
    if source is None:
        raise UnsupportedInput("the node %s above SamRoto disappeared" % to_render.name)
    plan = plan_render(to_render.name, source.firstFrame(), source.lastFrame(), script_name=nuke.root().name())
    rendered = plan.plate()
    if reuse_key == rendered.key and os.path.isfile(frame_path(plan.pattern, plan.first)):
        return rendered
    render_to_exr(source, plan.pattern, plan.first, plan.last)
    return rendered


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
    """Render `source` to an EXR sequence with a temporary Write node (main thread, blocking)."""
    os.makedirs(os.path.dirname(pattern), exist_ok=True)
    write = nuke.nodes.Write()
    try:
        write.setInput(0, source)
        _knob(write, "file", nuke.File_Knob).setValue(pattern)
        _knob(write, "file_type", nuke.Enumeration_Knob).setValue("exr")
        _knob(write, "channels", nuke.Channel_Knob).setValue("rgb")
        nuke.execute(write, first, last)
    finally:
        nuke.delete(write)


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
    """Applies a job's results to the node graph (every method runs on the main thread)."""

    def session_opened(self, job: WorkerJob, session_id: str) -> None:
        node = nuke.toNode(job.node_name)
        if node is not None:
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
            tell(result.message)
            return
        try:
            if result.matte_patterns:
                matte_nodes(node, job.plate, result.matte_patterns, preview_resolution=result.preview_resolution)
            if result.roto_plan is not None:
                build_roto(result.roto_plan, node)
        except Exception:  # a bug in the glue must not take the session down with it
            tell("SamRoto could not update the node graph:\n" + traceback.format_exc(limit=3))


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
    """A Roto node with the plan's layers and Bezier shapes (replacing layers of the same names
    from an earlier run), keyed on every tracked frame."""
    roto = nuke.toNode(plan.node_name)
    if roto is None or roto.Class() != "Roto":
        roto = nuke.nodes.Roto()
        roto.setName(plan.node_name.rsplit(".", 1)[-1], uncollide=True)
        if near is not None:
            roto.setXYpos(near.xpos() - 160, near.ypos() + 60)
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
