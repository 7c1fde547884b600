"""What the operators do: bpy glue between Movie Clips and the network thread.

Every function here runs on the main thread. Work that talks to the worker is submitted to the
`remote.Runner` (one background thread that owns the connection); its results come back as
callbacks through `tasks.post` and are applied to Blender data on the main thread. Functions
return the `remote.Job` so operators can follow progress and tests can wait for it
(`tasks.wait_for(lambda: job.finished)`).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import bpy

from . import keyframes, mask_builder, plates, props, remote, tasks
from .bridge import auth
from .bridge.client import FrameUpdate, RemoteSession
from .previews import object_colour
from .prompts import FramePrompt, PromptBook


@dataclass
class Runtime:
    """State that lives only while Blender runs (never saved)."""

    runner: Optional[remote.Runner] = None
    info: Optional[Any] = None  # bridge WorkerInfo after a successful hello
    address: str = ""
    # clip key -> RemoteSession; only the network thread touches the sessions themselves
    sessions: Dict[str, RemoteSession] = field(default_factory=dict)
    # clip key -> plate frame -> obj_id -> RLE preview dict
    previews: Dict[str, Dict[int, Dict[int, Dict[str, Any]]]] = field(default_factory=dict)
    tracked: Dict[Tuple[str, int], Set[int]] = field(default_factory=dict)
    propagation: Optional[remote.Job] = None
    propagation_active: bool = False  # until its result reached the main thread
    build: Optional[remote.Job] = None  # the latest Build Mask (also started after each propagation)
    message: str = ""
    message_is_error: bool = False
    overlay_version: int = 0
    drag_box: Optional[Tuple[float, float, float, float]] = None  # region pixels while dragging a box


runtime = Runtime()


def report(message: str, *, error: bool = False) -> None:
    """Show a message in the panel (and the console for errors)."""
    runtime.message = message
    runtime.message_is_error = error
    if error:
        print("samroto: %s" % message)
    redraw()


def redraw() -> None:
    """Ask every Clip Editor (and the status bar) to redraw; nothing to do without windows."""
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("CLIP_EDITOR", "STATUSBAR"):
                area.tag_redraw()


@bpy.app.handlers.persistent
def on_file_loaded(*_: Any) -> None:
    """Another .blend file: forget the previews and frame sets of the old file's clips (the
    connection and the worker's sessions stay; clips keep their session ids in the file)."""
    runtime.previews.clear()
    runtime.tracked.clear()
    runtime.overlay_version += 1


# ---------------------------------------------------------------------------------------------
# Clips


def clip_state(clip: bpy.types.MovieClip) -> Any:
    state = clip.samroto
    if not state.key:
        state.key = uuid.uuid4().hex
    return state


def find_clip(key: str) -> Optional[bpy.types.MovieClip]:
    for clip in bpy.data.movieclips:
        if clip.samroto.key == key:
            return clip
    return None


def clip_plate(clip: bpy.types.MovieClip, *, check_files: bool = True) -> plates.ClipPlate:
    """The clip as a worker plate; plates.PlateError (with the artist's message) if unusable."""
    path = bpy.path.abspath(clip.filepath, library=clip.library)
    return plates.describe_clip(os.path.normpath(path) if path else "", clip.source,
                                frame_start=clip.frame_start, frame_offset=clip.frame_offset,
                                frame_duration=clip.frame_duration, clip_name=clip.name,
                                exists=os.path.isfile if check_files else (lambda _: True))


def pixel_aspect(clip: bpy.types.MovieClip) -> float:
    x, y = clip.display_aspect
    return float(x) / float(y) if y else 1.0


def plate_frame(clip: bpy.types.MovieClip, scene_frame: int) -> int:
    return clip_plate(clip, check_files=False).plate_frame(scene_frame)


def active_object(clip: bpy.types.MovieClip) -> Optional[Any]:
    state = clip.samroto
    if 0 <= state.active_index < len(state.objects):
        return state.objects[state.active_index]
    return None


def find_object(clip: bpy.types.MovieClip, obj_id: int) -> Optional[Any]:
    for item in clip.samroto.objects:
        if item.obj_id == obj_id:
            return item
    return None


def prompt_book(clip: bpy.types.MovieClip) -> PromptBook:
    try:
        return PromptBook.from_json(clip.samroto.prompts)
    except ValueError as exc:
        report("%s; starting with no clicks" % exc, error=True)
        return PromptBook()


# ---------------------------------------------------------------------------------------------
# The network thread and connection


def _runner() -> remote.Runner:
    if runtime.runner is None or not runtime.runner.alive:
        runtime.runner = remote.Runner(tasks.post)
    return runtime.runner


def _check_online_access(settings: remote.Settings) -> None:
    address = remote.resolve_address(settings)
    if not auth.is_local_address(address) and not bpy.app.online_access:
        raise remote.AddonError("The worker %s is on another machine and Blender's online access is off: allow it "
                                "in Preferences > System > Network, or run the worker locally" % address)


def _ensure_connection(runner: remote.Runner, settings: remote.Settings) -> remote.Connection:
    """On the network thread: the current connection, connecting first if needed."""
    if runner.connection is None:
        connection = remote.connect(settings)
        runner.connection = connection
        tasks.post(lambda: _connected(connection))
    return runner.connection


def _connected(connection: remote.Connection) -> None:
    runtime.info = connection.info
    runtime.address = connection.address
    started = " (started with the start command)" if connection.started is not None else ""
    report("Connected to %s%s: %s on %s" % (connection.address, started, os.path.basename(connection.info.model),
                                            connection.info.device))


def _failed(job: remote.Job) -> None:
    if job.state == "cancelled":
        report("%s cancelled" % job.label)
    else:
        report("%s failed: %s" % (job.label, job.error), error=True)


def submit(context: bpy.types.Context, label: str, work: Callable[[remote.Connection, remote.Job], Any], *,
           on_done: Optional[Callable[[remote.Job], None]] = None,
           on_error: Optional[Callable[[remote.Job], None]] = None) -> remote.Job:
    """Run `work(connection, job)` on the network thread (connecting first when needed)."""
    settings = props.settings(context)
    _check_online_access(settings)
    runner = _runner()

    def run(job: remote.Job) -> Any:
        return work(_ensure_connection(runner, settings), job)

    def failed(job: remote.Job) -> None:
        _failed(job)
        if on_error is not None:
            on_error(job)

    return runner.submit(label, run, on_done=on_done, on_error=failed)


def connect(context: bpy.types.Context) -> remote.Job:
    """(Re)connect to the worker with the current preferences (a running propagation is cancelled)."""
    disconnect()
    report("Connecting...")
    return submit(context, "Connect", lambda connection, job: connection.info)


def disconnect() -> None:
    if runtime.propagation is not None and not runtime.propagation.finished:
        runtime.propagation.cancel()
    runtime.propagation_active = False
    if runtime.runner is not None:
        runtime.runner.stop()
        runtime.runner = None
    runtime.sessions.clear()
    runtime.info = None


# ---------------------------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True)
class SessionArgs:
    """What the network thread needs to find or open a clip's session (read on the main thread)."""

    key: str
    plate: plates.ClipPlate
    session_id: str
    matte_dir: Optional[str]
    matte_format: str
    prompts: str  # the clip's prompt book (JSON), replayed into a new session
    track_resolution: Optional[int] = None  # a preview session tracks at this size
    colour: plates.ClipColour = field(default_factory=plates.ClipColour)  # how Blender shows the clip


def _session(connection: remote.Connection, args: SessionArgs) -> RemoteSession:
    """On the network thread: the clip's open session, resumed or opened on first use."""
    session = runtime.sessions.get(args.key)
    if session is not None and session.client is connection.client:
        return session
    # no session name: the worker names the session and the matte files after the plate (`shot_obj1_matte.####.png`)
    session, resumed = remote.open_session(connection.client, args.plate, session_id=args.session_id,
                                           matte_dir=args.matte_dir, matte_format=args.matte_format,
                                           track_resolution=args.track_resolution, colour=args.colour)
    if not resumed and args.prompts:
        # the worker lost the clip's session (or never had it): give the new one every click made so far
        remote.replay_prompts(session, PromptBook.from_json(args.prompts))
    runtime.sessions[args.key] = session
    info = dict(session.info)
    tasks.post(lambda: _session_opened(args.key, info))
    return session


def _session_opened(key: str, info: Dict[str, Any]) -> None:
    clip = find_clip(key)
    if clip is None:
        return
    state = clip.samroto
    state.session_id = str(info["session"])
    state.first, state.last = int(info["first"]), int(info["last"])
    state.width, state.height = int(info["width"]), int(info["height"])
    state.matte_dir = str(info.get("matte_dir", ""))
    preview = bool(info.get("preview", False))
    if preview != state.preview_session:
        _forget_results(clip)  # the other kind's mattes, images and layers must not pass for this one's
    state.preview_session = preview
    state.track_resolution = int(info.get("track_resolution") or 0)
    known = {item.obj_id for item in state.objects}
    for obj_id in info.get("obj_ids") or []:  # objects of a resumed session made elsewhere
        if int(obj_id) not in known:
            _new_object(clip, int(obj_id))


def _session_args(clip: bpy.types.MovieClip) -> SessionArgs:
    """PlateError when the clip's files are not on disk."""
    state = clip_state(clip)
    plate = clip_plate(clip)
    state.plate = plate.pattern
    override = bpy.path.abspath(state.matte_dir_override) if state.matte_dir_override else None
    track_resolution = int(state.preview_resolution) if state.preview_mode else None
    return SessionArgs(state.key, plate, state.session_id, override, state.matte_format, state.prompts,
                       track_resolution, clip_colour(clip, bpy.context.scene))


def clip_colour(clip: bpy.types.MovieClip, scene: Optional[bpy.types.Scene]) -> plates.ClipColour:
    """The clip's colourspace and the scene's display and view transform, with the OCIO config
    Blender uses ($OCIO, else its own), so the worker shows the model what the Clip Editor shows."""
    config = os.environ.get("OCIO", "")
    if not config:
        bundled = os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles", "colormanagement", "config.ocio")
        config = bundled if os.path.isfile(bundled) else ""
    if not config:  # no config the worker could load: leave colour to the worker
        return plates.ClipColour()
    display = view = ""
    if scene is not None:
        display, view = str(scene.display_settings.display_device), str(scene.view_settings.view_transform)
    return plates.ClipColour(config=config, colorspace=str(clip.colorspace_settings.name), display=display,
                             view=view)


def _forget_results(clip: bpy.types.MovieClip) -> None:
    """Drop what the clip's objects got from their session (tracked frames, matte files, images,
    layer names): the session changed between preview and final. The old Mask stays in the file."""
    state = clip.samroto
    for item in state.objects:
        image = bpy.data.images.get(item.image_name) if item.image_name else None
        if image is not None and image.users == 0:
            bpy.data.images.remove(image)
        item.tracked = item.matte_path = item.image_name = item.layer_name = ""
        runtime.tracked.pop((state.key, item.obj_id), None)
    state.mask_name = ""
    runtime.previews.pop(state.key, None)
    runtime.overlay_version += 1


def preview_label(clip: bpy.types.MovieClip) -> str:
    """The warning the panel shows while the clip's session is a preview ("" when final)."""
    state = clip.samroto
    if not (state.session_id and state.preview_session):
        return ""
    return "PREVIEW at %d px \u2014 not the final mattes" % state.track_resolution


def open_session(context: bpy.types.Context, clip: bpy.types.MovieClip) -> remote.Job:
    """Open (or resume) the worker session of a clip. PlateError when the clip has no files."""
    args = _session_args(clip)
    plate = args.plate
    runtime.sessions.pop(args.key, None)

    def work(connection: remote.Connection, job: remote.Job) -> Dict[str, Any]:
        return dict(_session(connection, args).info)

    def done(job: remote.Job) -> None:
        info = job.result
        report("Session %s on %s, frames %d-%d (%dx%d)%s" % (
            info["session"], os.path.basename(plate.pattern), info["first"], info["last"], info["width"],
            info["height"], ", resumed" if info.get("resumed") else ""))

    return submit(context, "Open session", work, on_done=done)


# ---------------------------------------------------------------------------------------------
# Objects and prompts


def _new_object(clip: bpy.types.MovieClip, obj_id: int, name: str = "") -> Any:
    state = clip_state(clip)
    item = state.objects.add()
    item.obj_id = obj_id
    item.name = name or "Object %d" % obj_id
    item.color = object_colour(obj_id)
    return item


def add_object(clip: bpy.types.MovieClip, name: str = "") -> Any:
    """A new object on the clip (the worker learns about it with its first prompt); it becomes active."""
    state = clip_state(clip)
    obj_id = max([item.obj_id for item in state.objects] + [0]) + 1
    item = _new_object(clip, obj_id, name)
    state.active_index = len(state.objects) - 1
    return item


def _store_previews(key: str, update: FrameUpdate) -> None:
    frame_previews = runtime.previews.setdefault(key, {}).setdefault(update.frame, {})
    for obj_id in update.obj_ids:
        preview = update.previews.get(obj_id)
        if preview is not None:
            frame_previews[obj_id] = preview
        else:
            frame_previews.pop(obj_id, None)
    runtime.overlay_version += 1


def _check_frame(clip: bpy.types.MovieClip, frame: int) -> None:
    """Before a prompt changes the book: the frame must be one of the clip's (files checked too)."""
    plate = clip_plate(clip)
    if not plate.contains(frame):
        raise remote.AddonError("Frame %d is outside the clip's frames %d-%d" % (frame, plate.first, plate.last))


def _send_prompt(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
                 prompt: FramePrompt) -> remote.Job:
    args = _session_args(clip)
    key = args.key
    sent = FramePrompt(list(prompt.points), list(prompt.labels), prompt.box)

    def work(connection: remote.Connection, job: remote.Job) -> Optional[FrameUpdate]:
        session = _session(connection, args)
        return remote.send_prompt(session, frame, obj_id, sent)

    def done(job: remote.Job) -> None:
        update = job.result
        if update is None:
            runtime.previews.get(key, {}).get(frame, {}).pop(obj_id, None)
            runtime.overlay_version += 1
        else:
            _store_previews(key, update)
        redraw()

    return submit(context, "Prompt", work, on_done=done)


def add_click(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
              point: Tuple[float, float], *, positive: bool) -> remote.Job:
    """A click in clip pixels on a plate frame; the mask comes back as a preview at once."""
    _check_frame(clip, frame)
    book = prompt_book(clip)
    prompt = book.add_click(obj_id, frame, point, positive)
    clip.samroto.prompts = book.to_json()
    return _send_prompt(context, clip, obj_id, frame, prompt)


def set_box(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
            box: Tuple[float, float, float, float]) -> remote.Job:
    """A box (x0, y0, x1, y1) in clip pixels; the frame's clicks for the object are kept with it."""
    _check_frame(clip, frame)
    book = prompt_book(clip)
    prompt = book.set_box(obj_id, frame, box)
    clip.samroto.prompts = book.to_json()
    return _send_prompt(context, clip, obj_id, frame, prompt)


def undo_prompt(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int,
                frame: int) -> Optional[remote.Job]:
    """Remove the last click (or the box) of the object on the frame; None if there was none."""
    _check_frame(clip, frame)
    book = prompt_book(clip)
    prompt = book.undo(obj_id, frame)
    if prompt is None:
        return None
    clip.samroto.prompts = book.to_json()
    return _send_prompt(context, clip, obj_id, frame, prompt)


def clear_prompts(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int,
                  frame: int) -> Optional[remote.Job]:
    _check_frame(clip, frame)
    book = prompt_book(clip)
    if book.get(obj_id, frame).empty:
        return None
    book.clear(obj_id, frame)
    clip.samroto.prompts = book.to_json()
    return _send_prompt(context, clip, obj_id, frame, FramePrompt())


def remove_object(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int) -> remote.Job:
    """Remove an object from the worker session, then its layer, matte image, clicks and previews."""
    args = _session_args(clip)
    key = args.key

    def work(connection: remote.Connection, job: remote.Job) -> bool:
        session = _session(connection, args)
        if obj_id in session.obj_ids:
            session.remove_object(obj_id)
            return True
        return False

    def done(job: remote.Job) -> None:
        target = find_clip(key)
        if target is not None:
            _forget_object(target, obj_id)
        report("Removed object %d" % obj_id)

    return submit(context, "Remove object", work, on_done=done)


def _forget_object(clip: bpy.types.MovieClip, obj_id: int) -> None:
    state = clip.samroto
    for index, item in enumerate(state.objects):
        if item.obj_id != obj_id:
            continue
        mask = bpy.data.masks.get(state.mask_name) if state.mask_name else None
        if mask is not None and item.layer_name:
            mask_builder.remove_layer(mask, item.layer_name)
        image = bpy.data.images.get(item.image_name) if item.image_name else None
        if image is not None and image.users == 0:
            bpy.data.images.remove(image)
        state.objects.remove(index)
        break
    state.active_index = min(state.active_index, max(len(state.objects) - 1, 0))
    book = prompt_book(clip)
    book.remove_object(obj_id)
    state.prompts = book.to_json()
    for frames in runtime.previews.get(state.key, {}).values():
        frames.pop(obj_id, None)
    runtime.tracked.pop((state.key, obj_id), None)
    runtime.overlay_version += 1
    redraw()


# ---------------------------------------------------------------------------------------------
# Propagation


def propagation_running() -> bool:
    """True from the start of a propagation until its end has been handled on the main thread."""
    return runtime.propagation_active


def _record_update(key: str, update: FrameUpdate) -> None:
    """Main thread, once per propagated frame: previews, tracked frames, matte files."""
    _store_previews(key, update)
    clip = find_clip(key)
    if clip is None:
        return
    for obj_id in update.obj_ids:
        item = find_object(clip, obj_id)
        if item is None:
            item = _new_object(clip, obj_id)
        frames = runtime.tracked.get((key, obj_id))
        if frames is None:
            frames = set(plates.ranges_to_frames(item.tracked))
            runtime.tracked[(key, obj_id)] = frames
        frames.add(update.frame)
        item.tracked = plates.frames_to_ranges(frames)
        path = update.matte_paths.get(obj_id)
        if path and (not item.matte_path or update.frame <= min(frames)):
            item.matte_path = path
    redraw()


PREVIEW_LABEL = "Preview propagation"
FINAL_LABEL = "Final mattes"
_PREFIXES = {PREVIEW_LABEL: "Preview: ", FINAL_LABEL: "Final mattes: "}


def _what(job: remote.Job, verb: str) -> str:
    """'Tracking', 'Preview: tracking', 'Final mattes: tracking' (or any other verb)."""
    prefix = _PREFIXES.get(job.label)
    return prefix + verb if prefix else verb.capitalize()


def progress_text(job: remote.Job) -> str:
    """'Tracking 3/12' for the panel and the status bar; a preview or the final mattes say so."""
    done, total = job.progress or (0, 0)
    return "%s %d/%d" % (_what(job, "tracking"), done, total) if total else "%s: starting..." % job.label


def propagate(context: bpy.types.Context, clip: bpy.types.MovieClip, *, direction: str = "both",
              start: Optional[int] = None) -> remote.Job:
    """Track all objects of the clip. `start`: plate frame (None: the worker's earliest prompted
    frame). Progress is in `job.progress`; `cancel_propagation()` stops it within a frame."""
    args = _session_args(clip)
    return _run_propagation(context, clip, "Propagation", lambda connection: _session(connection, args),
                            direction=direction, start=start)


def compute_final(context: bpy.types.Context, clip: bpy.types.MovieClip) -> remote.Job:
    """The final mattes of a clip tracked as a preview: a full-resolution session gets the preview's
    prompts and tracks both ways from the earliest prompted frame; the clip then works on it."""
    state = clip_state(clip)
    if not (state.session_id and state.preview_session):
        raise remote.AddonError("The clip's session is not a preview: its mattes are already the final ones")
    args = _session_args(clip)
    preview_args = replace(args, track_resolution=state.track_resolution or args.track_resolution)
    key = args.key

    def open_final(connection: remote.Connection) -> RemoteSession:
        final = remote.open_final_session(connection.client, args.plate, _session(connection, preview_args),
                                          matte_dir=args.matte_dir, matte_format=args.matte_format,
                                          colour=args.colour)
        runtime.sessions[key] = final
        info = dict(final.info)
        tasks.post(lambda: _final_opened(key, info))  # queued before the frames: results land on the final
        return final

    return _run_propagation(context, clip, FINAL_LABEL, open_final, direction="both", start=None)


def _final_opened(key: str, info: Dict[str, Any]) -> None:
    clip = find_clip(key)
    if clip is not None:
        clip.samroto.preview_mode = False  # reopening the clip later must resume the final session
        _session_opened(key, info)


def _run_propagation(context: bpy.types.Context, clip: bpy.types.MovieClip, label: str,
                     session_for: Callable[[remote.Connection], RemoteSession], *, direction: str,
                     start: Optional[int]) -> remote.Job:
    """Propagate the session `session_for` gives (on the network thread), recording every frame
    on the clip; at the end load the mattes and build the mask when the clip asks for it."""
    if propagation_running():
        raise remote.AddonError("A propagation is already running; cancel it first (Esc)")
    if direction not in remote.DIRECTIONS:
        raise ValueError("direction must be one of %s" % ", ".join(remote.DIRECTIONS))
    key = clip_state(clip).key
    auto_results = bool(clip.samroto.auto_results)

    def work(connection: remote.Connection, job: remote.Job) -> remote.PropagationOutcome:
        session = session_for(connection)
        if session.preview:
            job.label = PREVIEW_LABEL  # before the first frame: progress and messages say "Preview"

        def on_update(update: FrameUpdate) -> None:
            job.progress = update.progress
            tasks.post(lambda: _record_update(key, update))

        return remote.propagate(session, direction=direction, start=start, on_update=on_update,
                                cancelled=job.cancel_event)

    def done(job: remote.Job) -> None:
        runtime.propagation_active = False
        outcome: remote.PropagationOutcome = job.result
        target = find_clip(key)
        if outcome.state == "done":
            note = " at %d px (not the final mattes)" % target.samroto.track_resolution \
                if target is not None and job.label == PREVIEW_LABEL else ""
            report("%s %d frames%s" % (_what(job, "tracked"), len(outcome.frames), note))
        else:
            report("%s %s after %d frames%s" % (
                job.label, outcome.state, len(outcome.frames), ": %s" % outcome.reason if outcome.reason else ""),
                error=outcome.state == "error")
        if target is not None and auto_results and outcome.frames:
            for item in target.samroto.objects:
                if item.matte_path:
                    load_mattes(target, item.obj_id)
            build_mask(bpy.context, target)  # the operator's context is gone by now

    def failed(job: remote.Job) -> None:
        runtime.propagation_active = False

    job = submit(context, label, work, on_done=done, on_error=failed)
    runtime.propagation = job
    runtime.propagation_active = True
    return job


def cancel_propagation() -> bool:
    """Ask the running propagation to stop; False when none runs."""
    if not propagation_running():
        return False
    assert runtime.propagation is not None
    runtime.propagation.cancel()
    report("Cancelling...")
    return True


# ---------------------------------------------------------------------------------------------
# Results: Mask layers and matte images


def mask_name_for(clip: bpy.types.MovieClip) -> str:
    state = clip_state(clip)
    # a preview's shapes live in a Mask of their own whose name says so
    return state.mask_name or "samroto %s%s" % (clip.name, " (preview)" if state.preview_session else "")


def apply_shapes(clip: bpy.types.MovieClip, obj_id: int, reply: Dict[str, Any]) -> bpy.types.MaskLayer:
    """Build the object's Mask layer from a `get_shapes` reply (pixel-space tracks)."""
    item = find_object(clip, obj_id)
    if item is None:
        raise remote.AddonError("The clip has no object %d" % obj_id)
    state = clip_state(clip)
    plate = clip_plate(clip, check_files=False)
    width = int(reply.get("width") or state.width or clip.size[0])
    height = int(reply.get("height") or state.height or clip.size[1])
    plan = keyframes.plan_layer(item.layer_name or item.name, reply.get("shapes") or [],
                                to_scene=plate.scene_frame, width=width, height=height,
                                pixel_aspect=pixel_aspect(clip), scene_range=plate.scene_range)
    lo, hi = plate.scene_range
    mask = mask_builder.ensure_mask(mask_name_for(clip), frame_start=lo, frame_end=hi)
    mask["samroto_clip"] = state.key
    mask["samroto_preview"] = bool(state.preview_session)
    if item.layer_name and item.layer_name != plan.name:
        mask_builder.remove_layer(mask, item.layer_name)
    layer = mask_builder.apply_layer(mask, plan)
    item.layer_name = layer.name
    state.mask_name = mask.name
    _show_mask(clip, mask)
    return layer


def _show_mask(clip: bpy.types.MovieClip, mask: bpy.types.Mask) -> None:
    """Put the mask on Clip Editors showing this clip that have no mask yet, or another samroto
    mask of the clip (the final mask replaces the preview's)."""
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type != "CLIP_EDITOR":
                continue
            space = area.spaces.active
            if space.clip == clip and (space.mask is None or space.mask.get("samroto_clip") == clip.samroto.key):
                space.mask = mask


def build_mask(context: bpy.types.Context, clip: bpy.types.MovieClip,
               obj_ids: Optional[List[int]] = None) -> Optional[remote.Job]:
    """Fetch every (or the given) tracked object's shapes and rebuild their Mask layers."""
    args = _session_args(clip)
    key = args.key
    state = clip.samroto
    wanted = [item.obj_id for item in state.objects if item.tracked and (obj_ids is None or item.obj_id in obj_ids)]
    if not wanted:
        report("Nothing tracked yet: propagate first", error=True)
        return None
    tolerance = float(state.tolerance) or None  # 0: the worker's default

    def work(connection: remote.Connection, job: remote.Job) -> Dict[int, Dict[str, Any]]:
        session = _session(connection, args)
        return {obj_id: remote.fetch_shapes(session, obj_id, tolerance=tolerance) for obj_id in wanted}

    def done(job: remote.Job) -> None:
        target = find_clip(key)
        if target is None:
            return
        try:
            for obj_id, reply in job.result.items():
                apply_shapes(target, obj_id, reply)
        except (ValueError, remote.AddonError) as exc:
            report("Building the mask failed: %s" % exc, error=True)
            return
        report("Mask %r: %d layer(s) rebuilt" % (target.samroto.mask_name, len(job.result)))

    report("Building the mask...")
    runtime.build = submit(context, "Build mask", work, on_done=done)
    return runtime.build


def load_mattes(clip: bpy.types.MovieClip, obj_id: int) -> bpy.types.Image:
    """Load (or reload) the object's matte sequence as an image datablock."""
    item = find_object(clip, obj_id)
    if item is None:
        raise remote.AddonError("The clip has no object %d" % obj_id)
    if not item.matte_path:
        raise remote.AddonError("%s has no mattes yet: propagate first" % item.name)
    if not os.path.isfile(item.matte_path):
        raise remote.AddonError("The matte file %s is not on disk (was the matte folder moved?)" % item.matte_path)
    image = bpy.data.images.get(item.image_name) if item.image_name else None
    if image is not None and bpy.path.abspath(image.filepath) != item.matte_path:
        image.filepath = item.matte_path
    if image is None:
        image = bpy.data.images.load(item.matte_path, check_existing=True)
        image.name = "%s %s%s matte" % (clip.name, item.name, " preview" if clip.samroto.preview_session else "")
    image.source = "SEQUENCE"
    try:
        image.colorspace_settings.name = "Non-Color"
    except TypeError:  # a colour configuration without that name: keep its default
        pass
    frames = plates.ranges_to_frames(item.tracked)
    plate = clip_plate(clip, check_files=False)
    first = frames[0] if frames else plate.first
    # an Image node / image user plays it in step with the clip with these settings
    image["samroto_first_frame"] = first
    image["samroto_scene_start"] = plate.scene_frame(first)
    image["samroto_frame_offset"] = first - 1
    image.reload()
    item.image_name = image.name
    return image
