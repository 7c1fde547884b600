"""What the operators do: bpy glue between Movie Clips and the network thread.

Every function here runs on the main thread. Work that talks to the worker is submitted to the
`remote.Runner` (one background thread that owns the connection); its results come back as
callbacks through `tasks.post` and are applied to Blender data on the main thread. Functions
return the `remote.Job` so operators can follow progress and tests can wait for it
(`tasks.wait_for(lambda: job.finished)`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import bpy

from . import coords, corrections, keyframes, mask_builder, plates, props, rasterize, remote, tasks
from .bridge import auth
from .bridge.client import FrameUpdate, NoSuchSession, RemoteSession
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
    drag_path: List[Tuple[float, float]] = field(default_factory=list)  # region pixels of a brush / lasso
    # clip key -> the prompts the worker is known to hold (after the last sync or successful send)
    synced: Dict[str, PromptBook] = field(default_factory=dict)
    # clip keys whose worker prompts must be compared with the drawn ones before the next request
    needs_sync: Set[str] = field(default_factory=set)
    popups: List[str] = field(default_factory=list)  # errors shown in a popup (kept for tests and the panel)
    last_ping: float = 0.0  # monotonic time of the last successful quick ping
    building: Optional[Any] = None  # the running chunked mask build (mask_builder.Build)
    holding: bool = False  # an operator runs: jobs wait for its end (`hold_jobs`)
    # clip key -> plate frame -> obj_id -> RLE preview of the frame's previous result (before/after)
    before: Dict[str, Dict[int, Dict[int, Dict[str, Any]]]] = field(default_factory=dict)
    # clip key -> the worker's undo history (labels oldest first) after the last action
    undo_steps: Dict[str, List[str]] = field(default_factory=dict)
    redo_steps: Dict[str, List[str]] = field(default_factory=dict)


runtime = Runtime()


def report(message: str, *, error: bool = False) -> None:
    """Show a message in the panel (and the console for errors). Errors that arrive after the
    operator finished (network results) also open a popup, so they are not missed."""
    runtime.message = message
    runtime.message_is_error = error
    if error:
        print("SamRoto: %s" % message)
    redraw()


def popup(message: str) -> None:
    """An error popup at the mouse (what `self.report` does for an operator that is still running)."""
    runtime.popups.append(message)
    del runtime.popups[:-20]
    wm = bpy.context.window_manager
    if wm is None or bpy.app.background or not wm.windows:
        return

    def draw(menu: Any, _context: Any) -> None:
        for line in message.split(". "):
            menu.layout.label(text=line)

    wm.popup_menu(draw, title="SamRoto", icon="ERROR")


def late_error(message: str) -> None:
    report(message, error=True)
    popup(message)


def push_undo(message: str) -> bool:
    """One undo step for a change the add-on made outside an operator with the UNDO flag (a click
    of the prompt tool, a prompt rolled back). False where Blender has no undo (no window)."""
    try:
        if bpy.ops.ed.undo_push.poll():
            bpy.ops.ed.undo_push(message=message)
            return True
    except RuntimeError:
        pass
    return False


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
def before_data_change(*_: Any) -> None:
    """Before an undo, redo or file load replaces Blender's data: stop a Mask build, which holds
    references into it."""
    cancel_build()
    runtime.building = None


@bpy.app.handlers.persistent
def on_file_loaded(*_: Any) -> None:
    """Another .blend file: forget the previews and frame sets of the old file's clips (the
    connection and the worker's sessions stay; clips keep their session ids in the file), and
    give the worker the loaded prompts of every clip that has a session."""
    runtime.building = None
    runtime.previews.clear()
    runtime.before.clear()
    runtime.tracked.clear()
    runtime.sessions.clear()
    runtime.synced.clear()
    runtime.overlay_version += 1
    for clip in bpy.data.movieclips:
        if clip.samroto.session_id:
            runtime.needs_sync.add(clip_state(clip).key)
    if runtime.runner is not None:  # connected (or was): failures are reported
        _sync_pending()


@bpy.app.handlers.persistent
def on_undo_redo(*_: Any) -> None:
    """Undo or redo restored the clips' prompts and objects: where they differ from what the
    worker holds, send the difference (what is drawn is what the worker holds)."""
    runtime.building = None
    for clip in bpy.data.movieclips:
        state = clip.samroto
        if not state.session_id or not state.key:
            continue
        held = runtime.synced.get(state.key)
        objects = {item.obj_id for item in state.objects}
        if held is None or prompt_book(clip).diff(held) or not set(held.objects()) <= objects:
            runtime.needs_sync.add(state.key)
    runtime.overlay_version += 1
    _sync_pending()


def _sync_pending() -> None:
    for clip in bpy.data.movieclips:
        if clip.samroto.key in runtime.needs_sync:
            try:
                sync_clip(bpy.context, clip, check=False)
            except (remote.AddonError, plates.PlateError) as exc:
                report("The prompts of %s could not be sent: %s" % (clip.name, exc), error=True)


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


_plates: Dict[Tuple[str, str, int, int, int], plates.ClipPlate] = {}


def clip_plate(clip: bpy.types.MovieClip, *, check_files: bool = True) -> plates.ClipPlate:
    """The clip as a worker plate; plates.PlateError (with the artist's message) if unusable.
    `check_files=False` may answer from the last look at the disk (drawing calls it on every redraw)."""
    path = bpy.path.abspath(clip.filepath, library=clip.library)
    path = os.path.normpath(path) if path else ""
    key = (path, clip.source, int(clip.frame_start), int(clip.frame_offset), int(clip.frame_duration))
    if not check_files and key in _plates:
        return _plates[key]
    plate = plates.describe_clip(path, clip.source, frame_start=clip.frame_start, frame_offset=clip.frame_offset,
                                 frame_duration=clip.frame_duration, clip_name=clip.name)
    if len(_plates) > 256:
        _plates.clear()
    _plates[key] = plate
    return plate


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
        if runtime.holding:
            runtime.runner.hold()
    return runtime.runner


def hold_jobs() -> None:
    """An operator starts: the jobs it submits reach the network thread only when `release_jobs`
    runs, after Blender has finished the operator call (its undo push included). A network thread
    that runs Python meanwhile corrupts Blender's memory when Python called the operator inside
    `context.temp_override` (scripts, tests): Blender releases the GIL for the call and reads the
    override's members without taking it back as long as any thread holds it (Python 3.11)."""
    runtime.holding = True
    if runtime.runner is not None:
        runtime.runner.hold()


def release_jobs() -> None:
    runtime.holding = False
    if runtime.runner is not None:
        runtime.runner.release()


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
    runner.connection.client.timeout = settings.timeout_s  # the preferences apply from the next request
    return runner.connection


def _connected(connection: remote.Connection) -> None:
    runtime.info = connection.info
    runtime.address = connection.address
    started = " (started with the start command)" if connection.started is not None else ""
    report("Connected to %s%s: %s on %s" % (connection.address, started, os.path.basename(connection.info.model),
                                            connection.info.device))


def _failed(job: remote.Job) -> None:
    runtime.last_ping = 0.0  # ask again before the next request
    if job.state == "cancelled":
        report("%s cancelled" % job.label)
    else:
        late_error("%s failed: %s" % (job.label, job.error))


PING_CACHE_S = 3.0
"""A worker that answered this recently is not pinged again before the next request."""


def check_worker(settings: remote.Settings) -> None:
    """The quick check before queueing work: a worker that does not answer within a second is
    reported at once (or started, with Auto-start on) instead of after the reply timeout."""
    import time

    if time.monotonic() - runtime.last_ping < PING_CACHE_S:
        return
    if remote.ping(settings):
        runtime.last_ping = time.monotonic()
        return
    if settings.start_command.strip():
        return  # auto-start: connecting starts it
    address = remote.resolve_address(settings)
    runtime.info = None
    raise remote.WorkerUnavailable("No SamRoto worker answers at %s: press Start Worker in the SamRoto panel, "
                                   "or run `samroto worker` in a terminal" % address)


def submit(context: bpy.types.Context, label: str, work: Callable[[remote.Connection, remote.Job], Any], *,
           on_done: Optional[Callable[[remote.Job], None]] = None,
           on_error: Optional[Callable[[remote.Job], None]] = None, check: bool = True) -> remote.Job:
    """Run `work(connection, job)` on the network thread (connecting first when needed).
    `check`: ping the worker first (WorkerUnavailable at once when none answers)."""
    settings = props.settings(context)
    _check_online_access(settings)
    if check:
        check_worker(settings)
    runner = _runner()

    def run(job: remote.Job) -> Any:
        return work(_ensure_connection(runner, settings), job)

    def failed(job: remote.Job) -> None:
        _failed(job)
        if on_error is not None:
            on_error(job)

    return runner.submit(label, run, on_done=on_done, on_error=failed)


def connect(context: bpy.types.Context, *, start: bool = False) -> remote.Job:
    """(Re)connect to the worker with the current preferences (a running propagation is cancelled).
    `start`: start one with the preferences' start command when none answers (Start Worker)."""
    disconnect()
    report("Starting the worker..." if start else "Connecting...")
    settings = props.settings(context, start=start)

    def work(connection: remote.Connection, job: remote.Job) -> Any:
        return connection.info

    def done(job: remote.Job) -> None:
        _sync_pending()

    runner = _runner()
    _check_online_access(settings)

    def run(job: remote.Job) -> Any:
        return work(_ensure_connection(runner, settings), job)

    return runner.submit("Start worker" if start else "Connect", run, on_done=done, on_error=_failed)


def disconnect() -> None:
    if runtime.propagation is not None and not runtime.propagation.finished:
        runtime.propagation.cancel()
    runtime.propagation_active = False
    if runtime.runner is not None:
        runtime.runner.stop()
        runtime.runner = None
    runtime.sessions.clear()
    runtime.info = None
    runtime.last_ping = 0.0
    for key in runtime.synced:
        runtime.needs_sync.add(key)  # a worker restarted meanwhile gets the drawn prompts again
    runtime.synced.clear()


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
    prompts: str  # the clip's prompt book (JSON), what the worker must hold
    track_resolution: Optional[int] = None  # a preview session tracks at this size
    colour: plates.ClipColour = field(default_factory=plates.ClipColour)  # how Blender shows the clip
    objects: Tuple[int, ...] = ()  # the clip's object ids (the worker's others are removed on sync)
    sync: bool = False  # compare the worker's prompts with `prompts` before using the session
    memory_mode: str = "sam2"  # which tracked frames enter memory (chosen when the session opens)


def _with_session(connection: remote.Connection, args: SessionArgs, work: Callable[[RemoteSession], Any]) -> Any:
    """`work(session)` on the clip's session; when the worker no longer has it loaded (it restarted),
    the session is resumed, given the drawn prompts, and `work` runs once more. A quick ping first:
    a worker that died since the request was queued fails it in a second or two, not minutes."""
    remote.quick_ping(connection.client)
    try:
        return work(_session(connection, args))
    except NoSuchSession:
        runtime.sessions.pop(args.key, None)
        return work(_session(connection, args))


def _session(connection: remote.Connection, args: SessionArgs) -> RemoteSession:
    """On the network thread: the clip's open session, resumed or opened on first use."""
    session = runtime.sessions.get(args.key)
    if session is not None and session.client is connection.client:
        if args.sync:
            _sync_session(session, args)
        return session
    # no session name: the worker names the session and the matte files after the plate (`shot_obj1_matte.####.png`)
    session, resumed = remote.open_session(connection.client, args.plate, session_id=args.session_id,
                                           matte_dir=args.matte_dir, matte_format=args.matte_format,
                                           track_resolution=args.track_resolution, colour=args.colour,
                                           memory_mode=args.memory_mode)
    info = dict(session.info)
    tasks.post(lambda: _session_opened(args.key, info))
    # a new session, or one resumed after a restart, a file load or an undo: it must hold what is drawn
    _sync_session(session, args)
    runtime.sessions[args.key] = session
    return session


def _sync_session(session: RemoteSession, args: SessionArgs) -> remote.SyncOutcome:
    """On the network thread: make the worker hold the clip's prompts; the main thread learns
    what it holds afterwards (and draws that)."""
    book = PromptBook.from_json(args.prompts)
    outcome = remote.sync_prompts(session, book, list(args.objects) or book.objects())
    history = remote.fetch_history(session)
    tasks.post(lambda: _synced(args.key, args.prompts, outcome))
    tasks.post(lambda: apply_marks(args.key, history))
    return outcome


def _synced(key: str, sent_json: str, outcome: remote.SyncOutcome) -> None:
    runtime.synced[key] = outcome.book
    runtime.needs_sync.discard(key)
    clip = find_clip(key)
    if clip is None:
        return
    for obj_id, frame in outcome.sent:  # their previews are stale: the worker's mask changed
        runtime.previews.get(key, {}).get(frame, {}).pop(obj_id, None)
    runtime.overlay_version += 1
    current = clip.samroto.prompts
    if current == sent_json and PromptBook.from_json(current).diff(outcome.book):
        # frames the worker cannot hold (outside its range) are not drawn either
        clip.samroto.prompts = outcome.book.to_json()
    redraw()


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
    mode = str(info.get("memory_mode") or "sam2")
    if mode in {item[0] for item in remote.memory_mode_items()}:
        state.memory_mode = mode  # a resumed session keeps its mode
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
                       track_resolution, clip_colour(clip, bpy.context.scene),
                       tuple(item.obj_id for item in state.objects), state.key in runtime.needs_sync,
                       memory_mode=str(state.memory_mode))


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
        if image is not None and _unused(image):
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


def _change_prompts(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
                    change: Callable[[PromptBook], Optional[FramePrompt]], undo: str) -> Optional[remote.Job]:
    """Apply `change` to the clip's book (drawn at once), push an undo step named `undo` (when
    given) and send the frame's new prompt. Nothing is changed when the worker cannot be reached;
    a send that fails later rolls the book back to what the worker holds."""
    _check_frame(clip, frame)
    args = _session_args(clip)  # PlateError before anything changes
    before = clip.samroto.prompts
    book = prompt_book(clip)
    prompt = change(book)
    if prompt is None:
        return None
    clip.samroto.prompts = book.to_json()
    try:
        job = _send_prompt(context, clip, obj_id, frame, prompt, before=before, args=replace(
            args, prompts=clip.samroto.prompts))
    except BaseException:
        clip.samroto.prompts = before  # never queued: the worker has not seen it
        raise
    if undo:
        push_undo(undo)
    redraw()
    return job


def _rollback(key: str, before: str, reason: str) -> None:
    """A prompt did not reach the worker: draw what the worker holds again (the book before the
    change when that is not known yet), and compare both before the next request."""
    clip = find_clip(key)
    runtime.needs_sync.add(key)
    if clip is None:
        return
    held = runtime.synced.get(key)
    clip.samroto.prompts = held.to_json() if held is not None else before
    runtime.overlay_version += 1
    push_undo("SamRoto: prompt not sent")
    redraw()


def _send_prompt(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
                 prompt: FramePrompt, *, before: str, args: Optional[SessionArgs] = None) -> remote.Job:
    args = args or _session_args(clip)
    key = args.key
    sent = FramePrompt.from_json(prompt.to_json())

    def work(connection: remote.Connection, job: remote.Job) -> Optional[FrameUpdate]:
        return _with_session(connection, args, lambda session: remote.send_prompt(session, frame, obj_id, sent))

    def done(job: remote.Job) -> None:
        held = runtime.synced.get(key)
        if held is not None:
            held.set(obj_id, frame, sent)
        update = job.result
        if update is None:
            runtime.previews.get(key, {}).get(frame, {}).pop(obj_id, None)
            runtime.overlay_version += 1
        else:
            _store_previews(key, update)
        redraw()

    def failed(job: remote.Job) -> None:
        if job.lost_worker:
            runtime.sessions.pop(key, None)
        _rollback(key, before, job.error or "")

    return submit(context, "Prompt", work, on_done=done, on_error=failed)


def sync_clip(context: bpy.types.Context, clip: bpy.types.MovieClip, *, check: bool = True) -> remote.Job:
    """Compare the worker's prompts for the clip with the drawn ones and send the difference
    (after an undo, a file load or a failure). The clip needs a session."""
    key = clip_state(clip).key
    runtime.needs_sync.add(key)
    args = _session_args(clip)

    def work(connection: remote.Connection, job: remote.Job) -> Any:
        session = runtime.sessions.get(key)
        if session is not None and session.client is connection.client:
            return _sync_session(session, args)
        _session(connection, args)  # opening it syncs it
        return None

    def failed(job: remote.Job) -> None:
        if job.lost_worker:
            runtime.sessions.pop(key, None)

    return submit(context, "Sync prompts", work, on_error=failed, check=check)


def add_click(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
              point: Tuple[float, float], *, positive: bool, undo: str = "") -> remote.Job:
    """A click in clip pixels on a plate frame; the mask comes back as a preview at once."""
    job = _change_prompts(context, clip, obj_id, frame, lambda book: book.add_click(obj_id, frame, point, positive),
                          undo)
    assert job is not None
    return job


def set_box(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
            box: Tuple[float, float, float, float], *, undo: str = "") -> remote.Job:
    """A box (x0, y0, x1, y1) in clip pixels; the frame's clicks for the object are kept with it."""
    job = _change_prompts(context, clip, obj_id, frame, lambda book: book.set_box(obj_id, frame, box), undo)
    assert job is not None
    return job


def set_mask(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
             mask: Dict[str, Any], *, undo: str = "") -> remote.Job:
    """A mask prompt (run-length dict at the clip's size): replaces the frame's clicks and box."""
    job = _change_prompts(context, clip, obj_id, frame, lambda book: book.set_mask(obj_id, frame, mask), undo)
    assert job is not None
    return job


def undo_prompt(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int,
                frame: int, *, undo: str = "") -> Optional[remote.Job]:
    """Remove the last click (or the box, or the mask) of the object on the frame; None if there was none."""
    return _change_prompts(context, clip, obj_id, frame, lambda book: book.undo(obj_id, frame), undo)


def clear_prompts(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int,
                  frame: int, *, undo: str = "") -> Optional[remote.Job]:
    def change(book: PromptBook) -> Optional[FramePrompt]:
        if book.get(obj_id, frame).empty:
            return None
        book.clear(obj_id, frame)
        return FramePrompt()

    return _change_prompts(context, clip, obj_id, frame, change, undo)


def add_stroke(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int,
               points: List[Tuple[float, float]], *, kind: str, positive: bool, radius: float = 8.0,
               undo: str = "") -> remote.Job:
    """A brush stroke (clicks spread along it) or a lasso (filled into the object's mask), in clip
    pixels. The worker converts it; the frame's prompt it then holds is drawn, with an undo step."""
    _check_frame(clip, frame)
    if len(points) < 2:
        raise ValueError("Draw a longer %s" % kind)
    args = _session_args(clip)
    key = args.key
    before = clip.samroto.prompts

    def work(connection: remote.Connection, job: remote.Job) -> Tuple[FrameUpdate, FramePrompt]:
        return _with_session(connection, args, lambda session: remote.send_stroke(
            session, frame, obj_id, list(points), kind=kind, label=1 if positive else 0, radius=radius))

    def done(job: remote.Job) -> None:
        update, held_prompt = job.result
        target = find_clip(key)
        held = runtime.synced.get(key)
        if held is not None:
            held.set(obj_id, frame, held_prompt)
        if target is not None:
            book = prompt_book(target)
            book.set(obj_id, frame, held_prompt)
            target.samroto.prompts = book.to_json()
            if undo:
                push_undo(undo)
        _store_previews(key, update)
        redraw()

    def failed(job: remote.Job) -> None:
        if job.lost_worker:
            runtime.sessions.pop(key, None)
        _rollback(key, before, job.error or "")

    return submit(context, "Stroke", work, on_done=done, on_error=failed)


def remove_object(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int) -> remote.Job:
    """Remove an object: its layer, matte image, prompts and previews at once (so the operator's undo
    step holds the clip without it; undoing it gives the worker the object's prompts back), then
    from the worker session."""
    check_worker(props.settings(context))
    _forget_object(clip, obj_id)
    args = _session_args(clip)
    key = args.key

    def work(connection: remote.Connection, job: remote.Job) -> bool:
        session = _session(connection, args)
        if obj_id in session.obj_ids:
            session.remove_object(obj_id)
            return True
        return False

    def done(job: remote.Job) -> None:
        held = runtime.synced.get(key)
        if held is not None:
            held.remove_object(obj_id)  # an undo that brings it back must send its prompts again
        report("Removed object %d" % obj_id)

    def failed(job: remote.Job) -> None:
        runtime.needs_sync.add(key)  # the next request removes it on the worker

    return submit(context, "Remove object", work, on_done=done, on_error=failed, check=False)


def _unused(image: Optional[bpy.types.Image]) -> bool:
    """Nothing but the add-on's fake user keeps the image."""
    return image is not None and image.users <= (1 if image.use_fake_user else 0)


def _forget_object(clip: bpy.types.MovieClip, obj_id: int) -> None:
    state = clip.samroto
    for index, item in enumerate(state.objects):
        if item.obj_id != obj_id:
            continue
        mask = bpy.data.masks.get(state.mask_name) if state.mask_name else None
        if mask is not None:
            mask_builder.remove_layer(mask, obj_id)
        image = bpy.data.images.get(item.image_name) if item.image_name else None
        if image is not None and _unused(image):
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
    for frames in runtime.before.get(state.key, {}).values():
        frames.pop(obj_id, None)
    show_marks(bpy.context.scene, clip, clip_marks(clip).without(obj_id))
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
SPAN_LABEL = "Span re-track"
_PREFIXES = {PREVIEW_LABEL: "Preview: ", FINAL_LABEL: "Final mattes: ", SPAN_LABEL: "Span: "}


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


def object_tracked(clip: bpy.types.MovieClip, obj_id: Optional[int]) -> List[int]:
    """The object's tracked plate frames (as recorded on the clip)."""
    item = find_object(clip, obj_id) if obj_id is not None else None
    if item is None:
        return []
    frames = runtime.tracked.get((clip.samroto.key, item.obj_id))
    return sorted(frames) if frames is not None else plates.ranges_to_frames(item.tracked)


def track_plan(context: bpy.types.Context, clip: bpy.types.MovieClip, *, extent: str = "AUTO",
               direction: str = "both", from_current: bool = True) -> corrections.TrackPlan:
    """What Track does on the current frame: after a correction of the active object (a prompt on
    a frame it already had a tracked result on) only the span it affects; else to the end."""
    item = active_object(clip)
    obj_id = item.obj_id if item is not None else None
    frame = plate_frame(clip, context.scene.frame_current)
    return corrections.plan_track(prompt_book(clip), obj_id, frame, object_tracked(clip, obj_id), extent=extent,
                                  direction=direction, from_current=from_current)


def track(context: bpy.types.Context, clip: bpy.types.MovieClip, *, extent: str = "AUTO", direction: str = "both",
          from_current: bool = True) -> remote.Job:
    """The Track action: `extent` AUTO re-tracks the span after a correction (else tracks to the
    end), SPAN always the span, FULL to the end in `direction`."""
    plan = track_plan(context, clip, extent=extent, direction=direction, from_current=from_current)
    args = _session_args(clip)
    return _run_propagation(context, clip, SPAN_LABEL if plan.span else "Propagation",
                            lambda connection: _session(connection, args), direction=plan.direction, start=plan.start,
                            span=plan.span, obj_id=plan.obj_id)


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
                     start: Optional[int], span: bool = False, obj_id: Optional[int] = None) -> remote.Job:
    """Propagate the session `session_for` gives (on the network thread), recording every frame
    on the clip; at the end load the mattes and build the mask when the clip asks for it."""
    if propagation_running():
        raise remote.AddonError("A propagation is already running; cancel it first (Esc)")
    if direction not in remote.DIRECTIONS:
        raise ValueError("direction must be one of %s" % ", ".join(remote.DIRECTIONS))
    key = clip_state(clip).key
    auto_results = bool(clip.samroto.auto_results)
    auto_shapes = bool(clip.samroto.auto_shapes)
    matting = str(clip.samroto.matting)  # read on the main thread; the network thread only sends it

    def work(connection: remote.Connection, job: remote.Job) -> remote.PropagationOutcome:
        session = session_for(connection)
        if session.preview:
            job.label = PREVIEW_LABEL  # before the first frame: progress and messages say "Preview"

        def on_update(update: FrameUpdate) -> None:
            job.progress = update.progress
            tasks.post(lambda: _record_update(key, update))

        return remote.propagate(session, direction=direction, start=start, on_update=on_update,
                                cancelled=job.cancel_event, matting=matting, span=span, obj_id=obj_id)

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
        for frame in outcome.frames:  # their previous results changed with them
            runtime.before.get(key, {}).pop(frame, None)
        apply_marks(key, outcome.history)
        if target is not None and outcome.frames:
            from . import review  # timeline markers and the Review list

            review.apply_review(bpy.context.scene, target, outcome.review)
        if target is not None and auto_results and outcome.frames:
            for item in target.samroto.objects:
                if item.matte_path:
                    load_mattes(target, item.obj_id)
        if target is not None and auto_shapes and outcome.frames:
            build_mask(bpy.context, target, check=False)  # the operator's context is gone by now

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


def _mask_for(clip: bpy.types.MovieClip) -> bpy.types.Mask:
    state = clip_state(clip)
    lo, hi = clip_plate(clip, check_files=False).scene_range
    mask = mask_builder.ensure_mask(mask_name_for(clip), frame_start=lo, frame_end=hi)
    mask["samroto_clip"] = state.key
    mask["samroto_preview"] = bool(state.preview_session)
    state.mask_name = mask.name
    return mask


def plan_shapes(clip: bpy.types.MovieClip, obj_id: int, reply: Dict[str, Any]) -> keyframes.LayerPlan:
    """The layer plan of a `get_shapes` reply (pixel-space tracks) on the clip's scene frames."""
    item = find_object(clip, obj_id)
    if item is None:
        raise remote.AddonError("The clip has no object %d" % obj_id)
    state = clip_state(clip)
    plate = clip_plate(clip, check_files=False)
    width = int(reply.get("width") or state.width or clip.size[0])
    height = int(reply.get("height") or state.height or clip.size[1])
    return keyframes.plan_layer(item.name, reply.get("shapes") or [], to_scene=plate.scene_frame, width=width,
                                height=height, pixel_aspect=pixel_aspect(clip), scene_range=plate.scene_range)


def start_build(clip: bpy.types.MovieClip, replies: Dict[int, Dict[str, Any]]) -> mask_builder.Build:
    """Write the objects' shapes as Mask layer shape keys, a few frames per timer tick (status bar
    progress; Esc or `cancel_build()` stops it and leaves the old layers)."""
    cancel_build()
    plans = [(obj_id, plan_shapes(clip, obj_id, reply)) for obj_id, reply in sorted(replies.items())]
    mask = _mask_for(clip)
    build = mask_builder.Build(clip, mask, plans, bpy.context.scene)
    runtime.building = build
    key = clip.samroto.key

    def step(budget: float) -> bool:
        runner = runtime.runner
        if runner is not None and not runner.idle and not build.finished:
            return False  # a job runs Python on the network thread: the mask operators wait (see hold_jobs)
        hold_jobs()  # and none starts while they run
        try:
            finished = build.step(budget)
        finally:
            release_jobs()
        redraw()
        if finished:
            _build_finished(key, build)
        return finished

    tasks.run_chunked(step)
    _show_mask(clip, mask)
    return build


def _build_finished(key: str, build: mask_builder.Build) -> None:
    clip = find_clip(key)
    if clip is None:
        return
    if build.state == "failed":
        late_error("Building the mask failed: %s" % build.error)
        return
    if build.state == "cancelled":
        report("Building the mask cancelled; the previous layers stay")
        return
    for obj_id, name in build.layers.items():
        item = find_object(clip, obj_id)
        if item is not None:
            item.layer_name = name
    kept = sum(len(v) for v in build.kept.values())
    lost = sum(len(v) for v in build.lost.values())
    note = ""
    if kept:
        note += "; kept your edits on %d frame(s) (Send Edits as Corrections gives them to the worker)" % kept
    if lost:
        note += "; %d edited frame(s) could not be kept (the shapes changed point counts)" % lost
    report("Mask %r: %d layer(s) rebuilt%s" % (build.mask.name, len(build.layers), note))


def cancel_build() -> bool:
    """Stop the running Mask build (the old layers stay); False when none runs."""
    build = runtime.building
    if build is None or build.finished:
        return False
    build.cancel()
    report("Building the mask cancelled; the previous layers stay")
    return True


def build_running() -> bool:
    return runtime.building is not None and not runtime.building.finished


def apply_shapes(clip: bpy.types.MovieClip, obj_id: int, reply: Dict[str, Any]) -> bpy.types.MaskLayer:
    """Build one object's layer at once (scripts and tests; the operators build in chunks)."""
    build = start_build(clip, {obj_id: reply})
    while not build.step(1.0):
        pass
    _build_finished(clip.samroto.key, build)
    if build.state != "done":
        raise remote.AddonError("Building the mask failed: %s" % (build.error or build.state))
    return build.mask.layers[build.layers[obj_id]]


def edited_frames(clip: bpy.types.MovieClip, obj_id: int) -> Dict[int, Any]:
    """Scene frames where an artist changed the object's layer since the add-on wrote it -> shapes."""
    mask = bpy.data.masks.get(clip.samroto.mask_name) if clip.samroto.mask_name else None
    if mask is None:
        return {}
    return mask_builder.edited_frames(mask, obj_id, bpy.context.scene)


def _layer_mask_prompt(clip: bpy.types.MovieClip, shapes: List[Any]) -> Dict[str, Any]:
    """A Mask layer's splines (Mask space) rasterised at the clip's size as a run-length mask."""
    state = clip_state(clip)
    width, height = int(state.width or clip.size[0]), int(state.height or clip.size[1])
    polygons = []
    for points, left, right in shapes:
        if len(points) < 2:
            continue
        polygon = rasterize.spline_polygon(points, left, right)
        polygons.append(coords.mask_to_pixels(polygon, width, height, pixel_aspect=pixel_aspect(clip)))
    if not polygons:
        raise remote.AddonError("The mask layer has no spline with two or more points")
    return rasterize.encode_rle(rasterize.fill_polygons(polygons, height, width))


def layer_as_prompt(context: bpy.types.Context, clip: bpy.types.MovieClip, layer: bpy.types.MaskLayer,
                    obj_id: int, *, undo: str = "") -> remote.Job:
    """The layer's splines on the current frame, rasterised, as the object's mask prompt there."""
    frame = plate_frame(clip, context.scene.frame_current)
    return set_mask(context, clip, obj_id, frame, _layer_mask_prompt(clip, mask_builder.layer_shapes(layer)),
                    undo=undo)


def send_edits(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int) -> List[remote.Job]:
    """Every frame an artist edited in the object's layer goes to the worker as a mask prompt."""
    plate = clip_plate(clip, check_files=False)
    jobs = []
    for scene_frame, shapes in sorted(edited_frames(clip, obj_id).items()):
        frame = plate.plate_frame(scene_frame)
        if plate.contains(frame):
            jobs.append(set_mask(context, clip, obj_id, frame, _layer_mask_prompt(clip, shapes)))
    return jobs


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
               obj_ids: Optional[List[int]] = None, *, check: bool = True) -> Optional[remote.Job]:
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
            start_build(target, job.result)
        except (ValueError, remote.AddonError) as exc:
            late_error("Building the mask failed: %s" % exc)

    report("Building the mask...")
    runtime.build = submit(context, "Build mask", work, on_done=done, check=check)
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
    image["samroto_frames"] = (frames[-1] - first + 1) if frames else 1
    image.use_fake_user = True  # kept in the file even while nothing uses it yet
    image.reload()
    item.image_name = image.name
    return image


def matte_frame_settings(image: bpy.types.Image) -> Tuple[int, int, int]:
    """(frames, start, offset) an Image node or image user needs to play the matte sequence in
    step with the clip: on scene frame `start` it shows file number `offset + 1` (the first matte)."""
    return int(image.get("samroto_frames", 1)), int(image.get("samroto_scene_start", 1)), \
        int(image.get("samroto_frame_offset", 0))


def _compositor_tree(scene: bpy.types.Scene) -> Any:
    """The scene's compositing node tree, made when missing (Blender 5 keeps it in a node group)."""
    if hasattr(scene, "compositing_node_group"):
        tree = scene.compositing_node_group
        if tree is None:
            tree = bpy.data.node_groups.new("Compositor Nodes", "CompositorNodeTree")
            scene.compositing_node_group = tree
        return tree
    scene.use_nodes = True
    return scene.node_tree


def add_matte_node(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int) -> Any:
    """An Image node in the scene's compositor playing the object's mattes in step with the clip."""
    image = load_mattes(clip, obj_id)
    tree = _compositor_tree(context.scene)
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    node.label = image.name
    frames, start, offset = matte_frame_settings(image)
    node.frame_duration, node.frame_start, node.frame_offset = frames, start, offset
    node.use_auto_refresh = True
    node["samroto_clip"] = clip.samroto.key
    node["samroto_obj_id"] = obj_id
    return node


def add_matte_strip(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int) -> Any:
    """An image strip in the scene's Sequencer with the object's mattes, starting on the scene
    frame of the first matte (one element per matte file)."""
    item = find_object(clip, obj_id)
    image = load_mattes(clip, obj_id)
    frames = plates.ranges_to_frames(item.tracked) if item is not None else []
    if item is None or not frames:
        raise remote.AddonError("%s has no tracked frames yet: propagate first" % (item.name if item else obj_id))
    _, start, _ = matte_frame_settings(image)
    scene = context.scene
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    first_path = item.matte_path
    folder = os.path.dirname(first_path)
    run = [frames[0]]
    for frame in frames[1:]:  # a strip plays consecutive files: stop at the first gap
        if frame != run[-1] + 1:
            break
        run.append(frame)
    used = {s.channel for s in strips}
    channel = next(c for c in range(2, 129) if c not in used) if len(used) < 127 else 128
    strip = strips.new_image(name=image.name, filepath=first_path, channel=channel, frame_start=start)
    pattern, _, _ = plates.sequence_pattern(first_path)
    for frame in run[1:]:
        strip.elements.append(os.path.basename(plates.frame_path(pattern, frame)))
    strip.colorspace_settings.name = image.colorspace_settings.name
    strip["samroto_clip"] = clip.samroto.key
    strip["samroto_obj_id"] = obj_id
    strip.directory = folder + os.sep
    return strip


# ---------------------------------------------------------------------------------------------
# Corrections that keep approved work: keyframes and locks on the timeline, the session's undo
# and redo, and the frame's previous result (before/after)


def clip_marks(clip: bpy.types.MovieClip) -> corrections.Marks:
    """The clip's keyframes and locked ranges as last heard from the worker."""
    try:
        data = json.loads(clip.samroto.marks or "{}")
        return corrections.Marks.from_history(data)
    except (ValueError, TypeError, AttributeError):
        return corrections.Marks()


def show_marks(scene: Optional[bpy.types.Scene], clip: bpy.types.MovieClip, marks: corrections.Marks) -> int:
    """Replace the clip's keyframe and lock markers on the scene's timeline with `marks` (the
    markers this clip placed are remembered on the clip, so other markers stay). Returns how many."""
    state = clip.samroto
    state.marks = json.dumps(marks.to_json(), sort_keys=True)
    if scene is None:
        return 0
    try:
        placed = [(str(name), int(frame)) for name, frame in json.loads(state.markers or "[]")]
    except (ValueError, TypeError):
        placed = []
    for name, frame in placed:
        for marker in [m for m in scene.timeline_markers if m.name == name and m.frame == frame]:
            scene.timeline_markers.remove(marker)
            break
    names = {item.obj_id: item.name for item in state.objects}
    try:
        plate = clip_plate(clip, check_files=False)
    except plates.PlateError:  # the clip's files are gone: no frames to put markers on
        state.markers = "[]"
        return 0
    plan = corrections.marker_plan(marks, names, plate.scene_frame)
    for name, frame in plan:
        scene.timeline_markers.new(name, frame=frame)
    state.markers = json.dumps(plan)
    redraw()
    return len(plan)


def apply_marks(key: str, history: Optional[Dict[str, Any]], locks: Optional[Dict[int, List[List[int]]]] = None) -> None:
    """Main thread: the worker's history (or, from a worker without one, the drawn prompts and the
    last locks heard) becomes the clip's markers and its undo/redo lists."""
    clip = find_clip(key)
    if clip is None:
        return
    if history is not None:
        marks = corrections.Marks.from_history(history)
        runtime.undo_steps[key] = [str(s) for s in history.get("undo") or []]
        runtime.redo_steps[key] = [str(s) for s in history.get("redo") or []]
    else:
        known = clip_marks(clip).locks if locks is None else locks
        marks = corrections.Marks.from_book(prompt_book(clip), known)
    show_marks(bpy.context.scene, clip, marks)


def _lock_frames(context: bpy.types.Context, clip: bpy.types.MovieClip, mode: str, first: int,
                 last: int) -> Tuple[int, int]:
    """The plate frames a lock applies to: CURRENT frame, the scene's PREVIEW range (its in/out,
    else the current frame), or CUSTOM plate frames."""
    plate = clip_plate(clip)
    scene = context.scene
    if mode == "CUSTOM":
        return corrections.lock_range(first, last, plate.first, plate.last)
    if mode == "PREVIEW" and scene.use_preview_range:
        return corrections.lock_range(plate.plate_frame(scene.frame_preview_start),
                                      plate.plate_frame(scene.frame_preview_end), plate.first, plate.last)
    frame = plate.plate_frame(scene.frame_current)
    return corrections.lock_range(frame, frame, plate.first, plate.last)


def set_lock(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, *, locked: bool = True,
             mode: str = "PREVIEW", first: int = 0, last: int = 0) -> remote.Job:
    """Lock (or unlock) an approved range of the object: propagation never rewrites it."""
    if find_object(clip, obj_id) is None:
        raise remote.AddonError("The clip has no object %d" % obj_id)
    lo, hi = _lock_frames(context, clip, mode, first, last)
    args = _session_args(clip)
    key = args.key

    def work(connection: remote.Connection, job: remote.Job) -> Any:
        def run(session: RemoteSession) -> Any:
            locks = remote.set_lock(session, obj_id, lo, hi, locked=locked)
            return locks, remote.fetch_history(session)

        return _with_session(connection, args, run)

    def done(job: remote.Job) -> None:
        locks, history = job.result
        apply_marks(key, history, locks)
        target = find_clip(key)
        item = find_object(target, obj_id) if target is not None else None
        ranges = locks.get(obj_id, [])
        report("%s frames %d-%d of %s; locked: %s" % ("Locked" if locked else "Unlocked", lo, hi,
                                                      item.name if item is not None else obj_id,
                                                      corrections.ranges_text(ranges) or "none"))

    return submit(context, "Lock" if locked else "Unlock", work, on_done=done)


def session_step(context: bpy.types.Context, clip: bpy.types.MovieClip, *, redo: bool = False) -> remote.Job:
    """Undo (or redo) the session's last step on the worker (a prompt change or a propagation):
    the changed frames' mattes are reloaded and the drawn prompts become what the worker holds."""
    if propagation_running():
        raise remote.AddonError("A propagation is running; cancel it first (Esc)")
    args = _session_args(clip)
    key = args.key
    frame = plate_frame(clip, context.scene.frame_current)
    before = bool(clip.samroto.show_before)

    def work(connection: remote.Connection, job: remote.Job) -> Any:
        def run(session: RemoteSession) -> Any:
            outcome = remote.step_history(session, redo=redo)
            try:
                shown = remote.frame_previews(session, frame)
                previous = remote.frame_previews(session, frame, before=True) if before else None
            except remote.AddonError:
                shown, previous = {}, None
            return outcome, shown, previous

        return _with_session(connection, args, run)

    def done(job: remote.Job) -> None:
        outcome, shown, previous = job.result
        _stepped(key, outcome, frame, shown, previous, redo)

    return submit(context, "Redo" if redo else "Undo", work, on_done=done)


def _stepped(key: str, outcome: remote.StepOutcome, frame: int, shown: Dict[int, Dict[str, Any]],
             previous: Optional[Dict[int, Dict[str, Any]]], redo: bool) -> None:
    """Main thread, after an undo or redo on the worker: draw what the worker holds now."""
    runtime.synced[key] = outcome.book
    runtime.needs_sync.discard(key)
    clip = find_clip(key)
    if clip is None:
        return
    clip.samroto.prompts = outcome.book.to_json()
    cache = runtime.previews.setdefault(key, {})
    for changed in outcome.frames:
        cache.pop(changed, None)
        runtime.before.get(key, {}).pop(changed, None)
    if shown:
        cache[frame] = dict(shown)
    if previous is not None:
        runtime.before.setdefault(key, {})[frame] = dict(previous)
    runtime.overlay_version += 1
    apply_marks(key, outcome.history)
    for item in clip.samroto.objects:  # the matte files of the changed frames are the restored ones
        image = bpy.data.images.get(item.image_name) if item.image_name else None
        if image is not None:
            image.reload()
    what = "Redid" if redo else "Undid"
    push_undo("SamRoto: %s %s" % (what.lower(), outcome.step))
    report("%s %s (%d frame%s changed)" % (what, outcome.step or "the last step", len(outcome.frames),
                                          "" if len(outcome.frames) == 1 else "s"))


def fetch_before(context: bpy.types.Context, clip: bpy.types.MovieClip, frame: Optional[int] = None, *,
                 check: bool = True) -> remote.Job:
    """Ask the worker for the frame's previous result (what the last step that changed it
    overwrote) and its current one, for the before/after toggle."""
    args = _session_args(clip)
    key = args.key
    frame = plate_frame(clip, context.scene.frame_current) if frame is None else frame

    def work(connection: remote.Connection, job: remote.Job) -> Any:
        return _with_session(connection, args, lambda session: (remote.frame_previews(session, frame, before=True),
                                                                remote.frame_previews(session, frame)))

    def done(job: remote.Job) -> None:
        previous, current = job.result
        runtime.before.setdefault(key, {})[frame] = previous
        if current:
            runtime.previews.setdefault(key, {})[frame] = current
        runtime.overlay_version += 1
        redraw()

    return submit(context, "Before/after", work, on_done=done, check=check)


def set_before(context: bpy.types.Context, clip: bpy.types.MovieClip, on: bool) -> Optional[remote.Job]:
    """The before/after toggle: the overlay shows the frame's previous result while it is on."""
    clip.samroto.show_before = on
    runtime.overlay_version += 1
    redraw()
    if not on:
        return None
    return fetch_before(context, clip)


def shown_previews(clip: bpy.types.MovieClip, frame: int) -> Optional[Dict[int, Dict[str, Any]]]:
    """The previews the overlay draws on a plate frame: the previous result while before/after
    shows "before", else the current one."""
    source = runtime.before if clip.samroto.show_before else runtime.previews
    return source.get(clip.samroto.key, {}).get(frame)


@bpy.app.handlers.persistent
def on_frame_changed(scene: bpy.types.Scene, *_: Any) -> None:
    """A new frame while before/after shows "before": fetch that frame's previous result (not
    while the timeline plays: one request per frame would queue behind each other)."""
    screen = getattr(bpy.context, "screen", None)
    if runtime.runner is None or (screen is not None and screen.is_animation_playing):
        return
    for clip in bpy.data.movieclips:
        state = clip.samroto
        if not (state.show_before and state.session_id and state.key):
            continue
        try:
            frame = plate_frame(clip, scene.frame_current)
            if frame not in runtime.before.get(state.key, {}) and clip_plate(clip, check_files=False).contains(frame):
                fetch_before(bpy.context, clip, frame, check=False)
        except (remote.AddonError, plates.PlateError, ValueError) as exc:
            report(str(exc), error=True)
