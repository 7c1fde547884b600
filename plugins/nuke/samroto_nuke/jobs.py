"""Worker jobs of a SamRoto node, run in a background thread.

A button press (or a prompt edit, or a frame change) becomes a `WorkerJob`: plain data read from
the node on Nuke's main thread (the plate, the prompts, the settings, the node's session id).
`JobRunner` runs it in its own thread with its own client (clients are not thread-safe): open or
resume the worker session, send the prompts of one frame and write that frame's quick result,
read the worker's prompts back (`load`), track, fetch the Roto shapes, or turn a PREVIEW session
(tracked at a lower internal resolution) into final mattes. Tracking never sends prompts: it
tracks what the worker holds. It never touches Nuke: everything the UI must show is
handed to the injected `run_on_main` function (Nuke's `executeInMainThread` in host.py, a queue
in the tests) as calls to the `JobObserver`. Progress goes to a `Progress` object (host.py wraps
`nuke.ProgressTask`, which Nuke designs to be driven from a worker thread) and its cancel button
stops the propagation within a frame, as does `JobRunner.cancel()`.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import connection
from .corrections import before_pattern, ranges_text, wants_span, write_before
from .plate import HostColour, PlateSource, pattern_from_frame_path
from .prompts import KnobPrompts, NoPrompts, RotoShapeData, click_prompt, roto_mask_prompts
from .roto_plan import RotoPlan, plan_roto
from .settings import HISTORY_ACTIONS, TRACK_ACTIONS, WORKER_ACTIONS, PluginSettings

if TYPE_CHECKING:
    from samroto.bridge.client import Client, FrameUpdate, RemoteSession

    from .settings import RotoSettings


@dataclass(frozen=True)
class WorkerJob:
    """One button press. action: "prompts" (send only), "forward", "backward", "both", "frame"
    (the current frame only), "roto" (build shapes of the tracked objects), "reset" (start a new
    session), "final" (full-resolution mattes from the node's preview session); nuke_frame: the
    current frame; session_id: the node's session (None: open one); session_resolution: that
    session's preview size as the node last heard it (0: final)."""

    action: str
    node_name: str
    plate: PlateSource
    nuke_frame: int
    session_id: Optional[str] = None
    knob_prompts: Optional[KnobPrompts] = None
    roto_shapes: Tuple[RotoShapeData, ...] = ()
    roto_grouping: str = "layer"
    settings: PluginSettings = field(default_factory=PluginSettings)
    session_resolution: int = 0
    track_range: Optional[Tuple[int, int]] = None  # Nuke frames to track (None: the whole plate)
    inherit_session_id: Optional[str] = None  # a new session replays this one's prompts (a re-rendered plate)
    object_names: Mapping[int, str] = field(default_factory=dict)  # obj_id -> name (Roto layers)
    colour: HostColour = field(default_factory=HostColour)  # how Nuke shows the plate (Read, viewer)
    obj_id: int = 1  # the chosen object (Track's span, Lock / Unlock)
    tracked: Tuple[int, ...] = ()  # plate frames the chosen object has tracked results on
    lock_range: Optional[Tuple[int, int]] = None  # plate frames Lock / Unlock apply to
    matte_patterns: Mapping[int, str] = field(default_factory=dict)  # obj_id -> matte pattern (before/after)

    def __post_init__(self) -> None:
        if self.action not in WORKER_ACTIONS:
            raise ValueError("unknown SamRoto action %r (one of %s)" % (self.action, ", ".join(WORKER_ACTIONS)))

    @property
    def preview_resolution(self) -> int:
        """The preview size of the session this job works on (0: final), known before connecting:
        the node's session, else the one the settings will open."""
        if self.session_id and self.action != "reset":
            return self.session_resolution
        return self.settings.track.preview_resolution or 0


@dataclass
class JobResult:
    """What a job did. state: "done", "cancelled" or "failed" (then `message` says why, in words
    for the artist). Frames are plate frames; `matte_patterns` maps obj_id to the `####`
    pattern of its matte files."""

    action: str
    state: str = "done"
    message: str = ""
    session_id: Optional[str] = None
    width: int = 0
    height: int = 0
    obj_ids: List[int] = field(default_factory=list)
    prompted: List[Tuple[int, int]] = field(default_factory=list)  # (obj_id, plate frame)
    tracked_frames: List[int] = field(default_factory=list)
    matte_patterns: Dict[int, str] = field(default_factory=dict)
    roto_plan: Optional[RotoPlan] = None
    preview_resolution: int = 0  # the session is a PREVIEW tracked at this size (0: final mattes)
    sidecar: Optional[Dict[str, Any]] = None  # the worker's prompts after the job (`export_prompts`)
    review: List[Tuple[int, int, Tuple[str, ...]]] = field(default_factory=list)  # (plate frame, obj_id, reasons)
    tracked_by_object: Dict[int, List[int]] = field(default_factory=dict)  # obj_id -> plate frames tracked now
    span: bool = False  # Track re-tracked only the span of a correction
    history: Optional[Dict[str, Any]] = None  # the worker's `history()` after the job (keyframes, locks, steps)
    locks: Optional[Dict[int, List[List[int]]]] = None  # every object's locked ranges after Lock / Unlock
    step: str = ""  # the step Undo / Redo took back or did again
    changed_frames: List[int] = field(default_factory=list)  # plate frames whose results Undo / Redo changed
    before_frame: Optional[int] = None  # the plate frame whose previous result was written for the viewer
    before_files: Dict[int, str] = field(default_factory=dict)  # obj_id -> that result's file

    @property
    def ok(self) -> bool:
        return self.state == "done"


class JobObserver:
    """What the UI is told; every method is called on the main thread (through `run_on_main`)."""

    def session_opened(self, job: WorkerJob, session_id: str) -> None:
        """A worker session (new, or resumed for the plate) now belongs to the node (store its id)."""

    def session_mode(self, job: WorkerJob, preview_resolution: int) -> None:
        """The node's session is a PREVIEW tracking at `preview_resolution` px, or final (0)."""

    def status(self, job: WorkerJob, text: str) -> None:
        """A one-line status for the node."""

    def job_finished(self, job: WorkerJob, result: JobResult) -> None:
        """The job ended (done, cancelled or failed)."""


class Progress:
    """A progress display; the default shows nothing and is never cancelled."""

    def set_message(self, text: str) -> None:
        pass

    def set_progress(self, percent: int) -> None:
        pass

    def is_cancelled(self) -> bool:
        return False

    def close(self) -> None:
        pass


RunOnMain = Callable[..., None]
"""run_on_main(function, *args): call `function(*args)` on the UI's main thread, soon."""
ShapeFetcher = Callable[["RemoteSession", int, "RotoSettings"], Mapping[str, Any]]
"""fetch(session, obj_id, roto settings) -> the worker's `get_shapes` answer in Nuke space."""


def fetch_shapes_from_worker(session: "RemoteSession", obj_id: int, settings: "RotoSettings") -> Mapping[str, Any]:
    answer: Mapping[str, Any] = session.get_shapes(obj_id, space="nuke", tolerance=settings.tolerance)
    return answer


class NotAPreview(ValueError):
    """"Compute final mattes" without a preview session to take the prompts from."""


class JobRunner:
    """Runs one `WorkerJob` in a daemon thread (`start`), or in the calling thread (`run`)."""

    def __init__(self, job: WorkerJob, *, run_on_main: RunOnMain, observer: Optional[JobObserver] = None,
                 progress: Optional[Callable[[str], Progress]] = None,
                 connect: Callable[..., "Client"] = connection.connect,
                 fetch_shapes: ShapeFetcher = fetch_shapes_from_worker) -> None:
        self.job = job
        self._run_on_main = run_on_main
        self._observer = observer or JobObserver()
        self._progress_factory = progress or (lambda title: Progress())
        self._connect = connect
        self._fetch_shapes = fetch_shapes
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._done = threading.Event()
        self.result: Optional[JobResult] = None

    # --- control (any thread) ------------------------------------------------------------------

    def start(self) -> "JobRunner":
        self._thread = threading.Thread(target=self.run, name="samroto-%s-%s" % (self.job.node_name, self.job.action),
                                        daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop at the next frame (the frames tracked so far stay, with their mattes)."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[JobResult]:
        self._done.wait(timeout)
        return self.result

    # --- the job (background thread) -----------------------------------------------------------

    def _post(self, method: Callable[..., None], *args: Any) -> None:
        self._run_on_main(method, self.job, *args)

    def run(self) -> JobResult:
        """The thread body. Never raises: failures become a "failed" result with a clear message."""
        job = self.job
        result = JobResult(action=job.action, session_id=job.session_id)
        # reading the prompts back is quick and happens on every frame change: no progress bar
        progress = Progress() if job.action == "load" else self._progress_factory(progress_title(job))
        client: Optional[Client] = None
        try:
            client = self._connect(job.settings.connection)
            self._work(client, progress, result)
            if self._cancelled(progress) and result.state == "done":
                result.state = "cancelled"
        except Exception as exc:  # every failure reaches the artist as a message, never a stack trace
            result.state = "failed"
            address = client.address if client is not None else job.settings.connection.address
            result.message = connection.describe_error(exc, address=address)
        finally:
            if client is not None:
                client.close()
            progress.close()
        if not result.message:
            result.message = summarize(result)
        self.result = result
        self._done.set()
        self._post(self._observer.job_finished, result)
        return result

    def _cancelled(self, progress: Progress) -> bool:
        if not self._cancel.is_set() and progress.is_cancelled():
            self._cancel.set()
        return self._cancel.is_set()

    def _work(self, client: "Client", progress: Progress, result: JobResult) -> None:
        job = self.job
        progress.set_message("connecting to the worker")
        client.hello()  # refuses a worker speaking another protocol major
        if job.action == "final":
            self._final(client, progress, result)
            return
        if job.action == "load":
            self._load(client, result)
            return
        if job.action in ("lock", "unlock", "before") + HISTORY_ACTIONS and not job.session_id:
            raise NoPrompts("this node has no session yet: prompt and track first (nothing to %s)" % job.action)
        session = self._session(client, result)
        result.width, result.height = session.width, session.height
        if job.action == "reset":
            result.obj_ids = list(session.obj_ids)
            result.sidecar = {"objects": []}  # the node's knobs empty with it
            return
        if job.action == "roto":
            result.obj_ids = list(session.obj_ids)
            result.roto_plan = self._roto_plan(session, progress)
            return
        if job.action in ("lock", "unlock"):
            self._lock(session, result)
            return
        if job.action in HISTORY_ACTIONS:
            self._step(session, result)
            return
        if job.action == "before":
            self._before(session, result)
            return
        if job.action == "prompts":
            self._send_prompts(session, result, required=True)
            self._quick_result(session, result)
            result.obj_ids = list(session.obj_ids)
            result.sidecar = export_prompts(session)
            return
        result.obj_ids = list(session.obj_ids)
        if not session.obj_ids:
            raise NoPrompts("nothing to track yet: Ctrl+click the object in the viewer (or place prompts in the Roto "
                            "node and press Send prompts), then track")
        self._track(session, progress, result)
        result.history = fetch_history(session)
        result.sidecar = try_export_prompts(session)  # the keyframes (from a worker without a history)

    def _lock(self, session: "RemoteSession", result: JobResult) -> None:
        """Lock / Unlock the chosen object's frames `job.lock_range`."""
        job = self.job
        if job.lock_range is None:
            raise NoPrompts("no frames to %s: pick the current frame or the frame range" % job.action)
        if job.obj_id not in session.obj_ids:
            raise NoPrompts("object %d has nothing tracked to lock yet: prompt and track it first" % job.obj_id)
        first, last = job.lock_range
        try:
            result.locks = session.lock(job.obj_id, first, last) if job.action == "lock" else \
                session.unlock(job.obj_id, first, last)
        except Exception as exc:
            if type(exc).__name__ == "BadRequest":
                raise NoPrompts("the worker cannot %s frames %d-%d: %s" % (
                    job.action, job.plate.to_nuke_frame(first), job.plate.to_nuke_frame(last),
                    getattr(exc, "message", exc))) from None
            raise
        result.obj_ids = list(session.obj_ids)
        result.history = fetch_history(session)
        result.sidecar = export_prompts(session)

    def _step(self, session: "RemoteSession", result: JobResult) -> None:
        """Undo / Redo the session's last step on the worker (a prompt change or a tracking run)."""
        job = self.job
        method = getattr(session, job.action, None)
        if method is None:
            raise NoPrompts("this plug-in's bridge client cannot %s on the worker: update the plug-in" % job.action)
        try:
            reply = method()
        except Exception as exc:
            if type(exc).__name__ == "BadRequest":
                raise NoPrompts(str(getattr(exc, "message", exc))) from None
            if type(exc).__name__ == "NotImplementedByWorker":
                raise NoPrompts("this worker cannot %s: update samroto on the worker" % job.action) from None
            raise
        result.step = str(reply.get("step", ""))
        result.changed_frames = sorted(int(f) for f in reply.get("frames") or [])
        result.history = dict(reply.get("history") or {}) or fetch_history(session)
        result.obj_ids = list(session.obj_ids)
        result.sidecar = try_export_prompts(session) or {"objects": []}  # the knobs show what the worker holds
        # the worker journals the quick result written after a prompt (`write_mattes`) with that prompt's
        # step, so its undo puts the previous matte files back: nothing to write here

    def _before(self, session: "RemoteSession", result: JobResult) -> None:
        """The current frame's previous result of every object, written beside its mattes for the
        viewer (a frame without one: no file, the viewer shows black)."""
        job = self.job
        frame = job.plate.plate_frame_at(job.nuke_frame)
        try:
            mattes = session.get_frame(frame, what="alpha", before=True)
        except TypeError:
            raise NoPrompts("this plug-in's bridge client cannot ask for a frame's previous result: update the "
                            "plug-in") from None
        result.before_frame = frame
        result.obj_ids = list(session.obj_ids)
        if mattes.mattes is None:
            return
        for obj_id in mattes.obj_ids:
            pattern = job.matte_patterns.get(int(obj_id))
            if not pattern:
                continue
            result.before_files[int(obj_id)] = write_before(before_pattern(pattern), frame, mattes.matte(obj_id),
                                                            session.width, session.height)

    def _load(self, client: "Client", result: JobResult) -> None:
        """The worker's prompts of the node's session (none when it has no session yet)."""
        job = self.job
        if not job.session_id:
            result.sidecar = {"objects": []}
            return
        try:
            session = client.resume_session(job.session_id)
        except Exception as exc:
            if type(exc).__name__ != "NoSuchSession":
                raise
            result.sidecar = {"objects": []}
            return
        result.session_id = session.id
        result.width, result.height = session.width, session.height
        result.obj_ids = list(session.obj_ids)
        result.sidecar = export_prompts(session)

    def _quick_result(self, session: "RemoteSession", result: JobResult) -> None:
        """The prompted frames' mattes, written now so the node shows the result at once."""
        frames = sorted({frame for _, frame in result.prompted})
        if not frames:
            return
        for frame, paths in session.write_mattes(frames).items():
            for obj_id, path in paths.items():
                result.matte_patterns.setdefault(obj_id, pattern_from_frame_path(path, frame))

    def _session(self, client: "Client", result: JobResult) -> "RemoteSession":
        job = self.job
        session: Optional[RemoteSession] = None
        if job.session_id and job.action == "reset":
            try:
                client.delete_session(job.session_id)
            except Exception as exc:
                if not connection.is_bridge_error(exc):
                    raise
        elif job.session_id:
            try:
                session = client.resume_session(job.session_id)
            except Exception as exc:  # the worker lost it (deleted, other session folder): open a new one
                if type(exc).__name__ != "NoSuchSession":
                    raise
        if session is None:
            track = job.settings.track
            session = client.open_session(job.plate.plate, job.plate.first, job.plate.last, name=session_name(job),
                                          matte_dir=track.matte_dir, matte_format=track.matte_format,
                                          track_resolution=track.preview_resolution, ocio=job.colour.config or None,
                                          colorspace=job.colour.colorspace or None,
                                          display=job.colour.display or None, view=job.colour.view or None,
                                          # only when chosen: a worker that predates memory modes opens the rest
                                          memory_mode=None if track.memory_mode == "sam2" else track.memory_mode)
            if job.inherit_session_id and job.action != "reset":
                self._inherit(client, session, job.inherit_session_id)
        self._post(self._observer.session_opened, session.id)  # new or resumed: the node's session now
        result.session_id = session.id
        result.preview_resolution = preview_resolution_of(session)
        self._post(self._observer.session_mode, result.preview_resolution)
        return session

    def _inherit(self, client: "Client", session: "RemoteSession", old_id: str) -> None:
        """Replay the prompts of the node's session on the previous plate (the upstream changed
        and was rendered again) so the artist's clicks survive the change."""
        try:
            old = client.resume_session(old_id)
            sidecar = export_prompts(old)
            if sidecar.get("objects"):
                session.import_prompts(sidecar)
        except Exception as exc:
            if not connection.is_bridge_error(exc):
                raise

    def _final(self, client: "Client", progress: Progress, result: JobResult) -> None:
        """Final mattes from the node's preview session: a full-resolution session on the same
        plate replays the preview's prompts, becomes the node's session and tracks the whole
        range both ways from the earliest prompted frame. The preview session is deleted once
        that is done (its mattes stay on disk)."""
        job = self.job
        if not job.session_id:
            raise NotAPreview("there is no preview session to compute final mattes from: tick \"preview\", place "
                              "prompts and track, then press \"Compute final mattes\"")
        preview = client.resume_session(job.session_id)
        if not preview.preview:
            raise NotAPreview("this node's session already tracks at full resolution: its mattes are the final ones")
        progress.set_message("replaying the preview's prompts at full resolution")
        sidecar = preview.export_prompts()
        track = job.settings.track
        final = client.open_session(job.plate.plate, job.plate.first, job.plate.last, name=session_name(job),
                                    matte_dir=track.matte_dir, matte_format=track.matte_format,
                                    ocio=job.colour.config or None, colorspace=job.colour.colorspace or None,
                                    display=job.colour.display or None, view=job.colour.view or None,
                                    # the preview's memory mode (only when it is not the default)
                                    memory_mode=None if preview.info.get("memory_mode", "sam2") == "sam2"
                                    else str(preview.info["memory_mode"]))
        try:
            result.obj_ids = final.import_prompts(sidecar)
        except Exception:
            client.delete_session(final.id)  # nothing refers to it yet
            raise
        self._post(self._observer.session_opened, final.id)
        self._post(self._observer.session_mode, 0)
        result.session_id, result.width, result.height = final.id, final.width, final.height
        self._track(final, progress, result)
        result.history = fetch_history(final)  # the final session's keyframes (the preview's locks stay there)
        if result.state == "done" and not self._cancelled(progress):
            try:
                client.delete_session(preview.id)
            except Exception as exc:  # the final mattes are there: a leftover preview must not fail the job
                if not connection.is_bridge_error(exc):
                    raise

    def _send_prompts(self, session: "RemoteSession", result: JobResult, *, required: bool) -> None:
        """The frame's prompts replace what the worker holds for the object there: knobs with
        nothing enabled clear that frame's prompts."""
        job = self.job
        sent = 0
        knobs = job.knob_prompts
        if knobs is not None and knobs.empty and knobs.obj_id in session.obj_ids:
            frame = job.plate.plate_frame_at(knobs.frame)
            session.clear_prompts(frame, knobs.obj_id)
            result.prompted.append((knobs.obj_id, frame))
            self._post(self._observer.status, "cleared object %d on frame %d" % (knobs.obj_id, knobs.frame))
            return
        if job.knob_prompts is not None and not job.knob_prompts.empty:
            prompt = click_prompt(job.knob_prompts, job.plate, width=session.width, height=session.height)
            if prompt.box is not None:
                session.add_box(prompt.frame, prompt.obj_id, prompt.box, points=list(prompt.points) or None,
                                labels=list(prompt.labels) or None, preview_size=0)
            else:
                session.add_points(prompt.frame, prompt.obj_id, list(prompt.points), list(prompt.labels),
                                   preview_size=0)
            result.prompted.append((prompt.obj_id, prompt.frame))
            sent += 1
        if job.roto_shapes:
            raw_array = importlib.import_module(type(session.client).__module__).RawArray
            for mask in roto_mask_prompts(job.roto_shapes, job.plate, width=session.width, height=session.height,
                                          grouping=job.roto_grouping):
                pixels = raw_array(bytes(mask.data), "uint8", (mask.height, mask.width))
                session.add_mask(mask.frame, mask.obj_id, pixels, preview_size=0)
                result.prompted.append((mask.obj_id, mask.frame))
                sent += 1
        if not sent and required:
            source = "Roto node" if job.knob_prompts is None else "SamRoto node"
            raise NoPrompts("nothing to track yet: place prompts in the %s (a positive click or a box on the object) "
                            "and press the button again" % source)
        if sent:
            self._post(self._observer.status, "sent %d prompt%s" % (sent, "" if sent == 1 else "s"))

    def _track(self, session: "RemoteSession", progress: Progress, result: JobResult) -> None:
        job = self.job
        frame = job.plate.plate_frame_at(job.nuke_frame)
        track = job.settings.track
        first, last = job.plate.first, job.plate.last
        if job.track_range is not None:  # the node's frame-range knob, in plate frames
            first = max(first, job.plate.to_plate_frame(job.track_range[0]))
            last = min(last, job.plate.to_plate_frame(job.track_range[1]))
        what = "tracking %s from frame %d" % (job.action, job.nuke_frame)
        matting = track.matting  # None: not sent (the client adds the field only when a model is chosen)
        if job.action == "final":  # the whole range, both ways from the earliest prompted frame
            run = session.propagate(first=first, last=last, direction="both", preview_size=0, credit=track.credit,
                                    matting=matting)
            what = "final mattes at full resolution"
        elif job.action == "frame":
            run = session.propagate(frame, first=frame, last=frame, direction="forward", preview_size=0,
                                    credit=track.credit, matting=matting)
        elif job.action == "track" and wants_span(try_export_prompts(session), job.obj_id, frame, job.tracked):
            # a correction: only the chosen object, from here up to its neighbouring keyframes
            run = session.propagate(frame, span=True, obj_id=job.obj_id, preview_size=0, credit=track.credit,
                                    matting=matting)
            result.span = True
            what = "re-tracking object %d around frame %d" % (job.obj_id, job.nuke_frame)
        else:
            if not first <= frame <= last:
                raise NoPrompts("frame %d is outside the frames to track (%d-%d): go to a frame in the range or "
                                "change the node's frame range" % (job.nuke_frame, job.plate.to_nuke_frame(first),
                                                                   job.plate.to_nuke_frame(last)))
            direction = "both" if job.action == "track" else job.action  # no correction here: both ways to the end
            run = session.propagate(frame, first=first, last=last, direction=direction, preview_size=0,
                                    credit=track.credit, matting=matting)
        progress.set_message(what)
        last_status = 0.0
        with run:
            for update in run:
                self._take_frame(update, result)
                total = run.total or len(result.tracked_frames)
                done = len(result.tracked_frames)
                progress.set_progress(int(100 * done / max(1, total)))
                progress.set_message("frame %d (%d of %d)" % (job.plate.to_nuke_frame(update.frame), done, total))
                now = time.monotonic()
                if now - last_status > 0.25 or done == total:  # keep the main thread's queue short
                    last_status = now
                    self._post(self._observer.status, "tracked %d of %d frames" % (done, total))
                if self._cancelled(progress):
                    run.cancel()
                    result.state = "cancelled"
                    break
        if run.state == "cancelled":
            result.state = "cancelled"
        if result.tracked_frames:
            result.review = fetch_review(session)

    def _take_frame(self, update: "FrameUpdate", result: JobResult) -> None:
        result.tracked_frames.append(update.frame)
        for obj_id in update.obj_ids:
            result.tracked_by_object.setdefault(int(obj_id), []).append(update.frame)
        for obj_id, path in update.matte_paths.items():
            if obj_id not in result.matte_patterns:
                result.matte_patterns[obj_id] = pattern_from_frame_path(path, update.frame)

    def _roto_plan(self, session: "RemoteSession", progress: Progress) -> RotoPlan:
        job = self.job
        if not session.obj_ids:
            raise NoPrompts("the session has no tracked object yet: prompt and track before creating Roto shapes")
        answers: List[Mapping[str, Any]] = []
        for i, obj_id in enumerate(session.obj_ids):
            if self._cancelled(progress):
                break
            progress.set_message("shapes of object %d" % obj_id)
            progress.set_progress(int(100 * i / len(session.obj_ids)))
            answers.append(self._fetch_shapes(session, obj_id, job.settings.roto))
        return plan_roto(job.node_name + "_roto", answers, offset=job.plate.offset,
                         shot_range=(job.plate.nuke_first, job.plate.nuke_last), settings=job.settings.roto,
                         object_names=job.object_names)


def export_prompts(session: "RemoteSession") -> Dict[str, Any]:
    """The session's prompts as a sidecar dict; `{"objects": []}` when it has none (the worker
    refuses to export an empty session)."""
    if not session.obj_ids:
        return {"objects": []}
    try:
        return dict(session.export_prompts())
    except Exception as exc:
        if type(exc).__name__ in ("BadRequest", "RemoteError") and "no prompts" in str(exc):
            return {"objects": []}
        raise


def try_export_prompts(session: "RemoteSession") -> Optional[Dict[str, Any]]:
    """`export_prompts`, or None when the worker cannot export this session's prompts (a plate
    pushed by the client has no file to name)."""
    try:
        return export_prompts(session)
    except Exception as exc:
        if connection.is_bridge_error(exc):
            return None
        raise


def fetch_history(session: "RemoteSession") -> Optional[Dict[str, Any]]:
    """The session's undo steps, keyframes and locks (`history()`); None from a worker (or a
    bundled client) that cannot tell."""
    history = getattr(session, "history", None)
    if history is None:
        return None
    try:
        return dict(history())
    except Exception as exc:
        if type(exc).__name__ == "NotImplementedByWorker":
            return None
        raise


def fetch_review(session: "RemoteSession") -> List[Tuple[int, int, Tuple[str, ...]]]:
    """The frames to review of the session's mattes: (plate frame, obj_id, reasons). None from a
    worker (or bundled client) older than `get_review`, or when asking fails: the mattes are there."""
    try:
        items = session.review()
    except AttributeError:
        return []
    except Exception as exc:
        if connection.is_bridge_error(exc):
            return []
        raise
    return [(int(item.frame), int(item.obj_id), tuple(str(r) for r in item.reasons)) for item in items]


def session_name(job: WorkerJob) -> str:
    """`<plate name>_<node name>[_<view>]`: names the worker's session and the matte files."""
    stem = os.path.basename(job.plate.plate)
    stem = re.split(r"[#%]", stem)[0] if "#" in stem or "%" in stem else os.path.splitext(stem)[0]
    node = job.node_name.rsplit(".", 1)[-1]
    name = "%s_%s" % (stem.rstrip("._-") or "plate", node)
    return "%s_%s" % (name, job.plate.view) if job.plate.view else name  # a stereo plate's views apart


def preview_resolution_of(session: "RemoteSession") -> int:
    """The size a PREVIEW session tracks at, 0 for a full-resolution session."""
    return int(session.info.get("track_resolution") or 0) if session.preview else 0


def progress_title(job: WorkerJob) -> str:
    """The progress bar's title, saying "Preview" when the job's session is one."""
    what = job.action
    if job.action == "final":
        what = "final mattes (full resolution)"
    elif job.preview_resolution:
        what = "Preview %s (%d px)" % (job.action, job.preview_resolution)
    return "SamRoto %s: %s" % (job.node_name, what)


def mode_text(preview_resolution: int) -> str:
    """The node's mode line: whether its mattes are a preview or the final ones."""
    if preview_resolution:
        return "PREVIEW at %d px - not the final mattes" % preview_resolution
    return "final mattes (full resolution)"


def preview_label(preview_resolution: int) -> str:
    """The label on the node and its matte Read nodes ("" once the mattes are final)."""
    return "PREVIEW %d px" % preview_resolution if preview_resolution else ""


def summarize(result: JobResult) -> str:
    """A one-line status for the node; a preview's says so first."""
    prefix = "PREVIEW: " if result.preview_resolution else "final mattes: " if result.action == "final" else ""
    if result.action == "reset":
        return prefix + "new session %s" % result.session_id
    if result.action == "load":
        return prefix + "prompts of objects %s" % (", ".join(str(o) for o in result.obj_ids) or "(none yet)")
    if result.action == "roto" and result.roto_plan is not None:
        plan = result.roto_plan
        return prefix + "Roto: %d shape%s, %d keys" % (plan.shape_count, "" if plan.shape_count == 1 else "s",
                                                      plan.key_count)
    if result.action in ("lock", "unlock") and result.locks is not None:
        return prefix + "locked: %s" % ("; ".join("obj%d %s" % (o, ranges_text(r)) for o, r in sorted(result.locks.items())
                                                  if r) or "nothing")
    if result.action in HISTORY_ACTIONS:
        return prefix + "%s %s: %d frame%s changed" % ("undid" if result.action == "undo" else "redid",
                                                       result.step or "the last step", len(result.changed_frames),
                                                       "" if len(result.changed_frames) == 1 else "s")
    if result.action == "before":
        return prefix + ("showing the previous result of frame %s" % result.before_frame if result.before_files
                         else "frame %s has no previous result" % result.before_frame)
    parts: List[str] = []
    if result.span:
        parts.append("re-tracked the span of a correction")
    if result.prompted:
        parts.append("%d prompt%s sent" % (len(result.prompted), "" if len(result.prompted) == 1 else "s"))
    if result.action in TRACK_ACTIONS or result.action == "final":
        count = len(result.tracked_frames)
        frames = "%d frame%s" % (count, "" if count == 1 else "s")
        parts.append("tracked " + frames if result.state == "done" else "%s after %s" % (result.state, frames))
    if result.obj_ids:
        parts.append("objects %s" % ", ".join(str(o) for o in result.obj_ids))
    return prefix + ("; ".join(parts) or result.state)
